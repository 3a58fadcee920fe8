//! Event ids: kept from the client, derived from an `Idempotency-Key`, or made as UUIDv7.

use uuid::{Builder, Uuid};

/// Namespace of Spillway's name-based (v5) ids. Fixed forever: changing it would change every
/// id derived from an `Idempotency-Key`, and retried requests would then be stored twice.
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d5c_1f7e_8a1b_4f0e_9c3d_2b7a_5e4f_1a20);

/// The id of the event at `index` of a request sent with `Idempotency-Key: idempotency_key`,
/// where the client wrote the event as `event` (its JSON text, as sent).
///
/// Deterministic, so a retried request (same key, same events) maps to the same ids. The
/// event's own text is part of the name, so reusing an idempotency key for a different body
/// gives different ids and both bodies are stored, never one silently dropped as a duplicate
/// of the other. The `key_id` is part of the name, so two tenants using the same idempotency
/// key never collide. Every part is length-prefixed so that no two different inputs hash the
/// same name.
pub fn derive_id(key_id: &str, idempotency_key: &str, index: usize, event: &str) -> Uuid {
    let mut name = format!(
        "{}:{key_id}{}:{idempotency_key}{index}:{}:",
        key_id.len(),
        idempotency_key.len(),
        event.len()
    )
    .into_bytes();
    name.extend_from_slice(event.as_bytes());
    Uuid::new_v5(&ID_NAMESPACE, &name)
}

/// A UUIDv7 from a Unix time in milliseconds and 10 random bytes (passed in by the caller).
pub fn uuid_v7(unix_ms: u64, random: [u8; 10]) -> Uuid {
    Builder::from_unix_timestamp_millis(unix_ms, &random).into_uuid()
}

/// How the edge names events that came without an `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource<'a> {
    /// The request carried `Idempotency-Key`: ids derive from it and the event's position.
    Idempotency {
        key_id: &'a str,
        idempotency_key: &'a str,
    },
    /// No idempotency key: a fresh UUIDv7 per event.
    Generated { unix_ms: u64 },
}

impl IdSource<'_> {
    /// The id of the event at `index`: the client's own when it sent one, otherwise from this
    /// source. `event` is the event's JSON text as sent; `random` is called only when a
    /// UUIDv7 is made.
    pub fn id_for(
        &self,
        client_id: Option<Uuid>,
        index: usize,
        event: &str,
        random: &mut dyn FnMut() -> [u8; 10],
    ) -> Uuid {
        if let Some(id) = client_id {
            return id;
        }
        match *self {
            IdSource::Idempotency {
                key_id,
                idempotency_key,
            } => derive_id(key_id, idempotency_key, index, event),
            IdSource::Generated { unix_ms } => uuid_v7(unix_ms, random()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_random() -> [u8; 10] {
        panic!("random bytes must not be drawn here")
    }

    #[test]
    fn client_id_is_kept() {
        let id = Uuid::from_u128(42);
        let src = IdSource::Generated { unix_ms: 0 };
        assert_eq!(src.id_for(Some(id), 3, "{}", &mut no_random), id);
        let src = IdSource::Idempotency {
            key_id: "k",
            idempotency_key: "abc",
        };
        assert_eq!(src.id_for(Some(id), 3, "{}", &mut no_random), id);
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let e = r#"{"type":"a"}"#;
        let a = derive_id("web", "req-1", 0, e);
        assert_eq!(a, derive_id("web", "req-1", 0, e));
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, derive_id("web", "req-1", 1, e));
        assert_ne!(a, derive_id("web", "req-2", 0, e));
        assert_ne!(a, derive_id("app", "req-1", 0, e));
        // The same key reused for a different event names a different event.
        assert_ne!(a, derive_id("web", "req-1", 0, r#"{"type":"b"}"#));
        // Length prefixes keep the boundaries apart.
        assert_ne!(derive_id("ab", "c", 0, e), derive_id("a", "bc", 0, e));
        assert_ne!(derive_id("a", "1", 11, e), derive_id("a", "11", 1, e));
        assert_ne!(derive_id("a", "1", 1, "1{}"), derive_id("a", "1", 11, "{}"));
    }

    #[test]
    fn derived_id_is_pinned() {
        // Changing this breaks idempotency for clients retrying across a deploy.
        assert_eq!(
            derive_id("web", "req-1", 0, r#"{"type":"page_view"}"#).to_string(),
            include_str!("../../tests/fixtures/envelope/derived_id_web_req-1_0_page_view.txt")
                .trim()
        );
    }

    #[test]
    fn v7_carries_time_and_randomness() {
        let ms = 1_764_316_800_000;
        let id = uuid_v7(ms, [0xab; 10]);
        assert_eq!(id.get_version_num(), 7);
        let (secs, nanos) = id.get_timestamp().expect("v7 has a timestamp").to_unix();
        assert_eq!(secs * 1000 + u64::from(nanos) / 1_000_000, ms);
        assert_ne!(id, uuid_v7(ms, [0xac; 10]));
        assert!(
            uuid_v7(ms + 1, [0; 10]) > uuid_v7(ms, [0xff; 10]),
            "v7 sorts by time"
        );
    }

    #[test]
    fn generated_source_draws_random_bytes() {
        let mut calls = 0;
        let mut rng = || {
            calls += 1;
            [calls as u8; 10]
        };
        let src = IdSource::Generated { unix_ms: 5 };
        let a = src.id_for(None, 0, "{}", &mut rng);
        let b = src.id_for(None, 1, "{}", &mut rng);
        assert_ne!(a, b);
        assert_eq!(calls, 2);
    }
}
