//! Property tests: packing respects every limit and loses, duplicates or reorders nothing.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use spillway_shared::limits::{SQS_MAX_BATCH_ENTRIES, SQS_MAX_MESSAGE_BYTES};
use spillway_shared::{
    open, pack, BufferLimits, EdgeInfo, Event, Keyring, PackError, RawJson, SigningKey, Unsigned,
};
use uuid::Uuid;

fn key() -> SigningKey {
    SigningKey::new("pack-props", &[b'k'; 32]).expect("key")
}

fn event(i: u128, data_len: usize, text: &str) -> Event {
    let mut data = Map::new();
    data.insert(
        "pad".into(),
        Value::String(text.repeat(data_len / text.len().max(1))),
    );
    data.insert("n".into(), json!(i as u64));
    Event {
        id: Uuid::from_u128(i + 1),
        event_type: "t".into(),
        occurred_at: None,
        received_at: DateTime::<Utc>::from_timestamp_millis(1_764_316_800_123).expect("time"),
        event_time: None,
        key_id: "web".into(),
        edge: i.is_multiple_of(2).then(|| EdgeInfo {
            colo: Some("FRA".into()),
            country: Some("DE".into()),
            ..Default::default()
        }),
        source: Default::default(),
        data: RawJson::from_json(&Value::Object(data).to_string()).expect("json"),
    }
}

/// The event with `data` written in one canonical spelling.
fn normalised(e: &Event) -> Event {
    let value: Value = serde_json::from_str(e.data.get()).expect("data is JSON");
    Event {
        source: Default::default(),
        data: RawJson::from_json(&value.to_string()).expect("json"),
        ..e.clone()
    }
}

fn arb_events() -> impl Strategy<Value = Vec<Event>> {
    // Sizes from tiny to near the event cap; strings include non-ASCII and the two
    // non-characters that must be escaped for SQS.
    let texts = prop::sample::select(vec!["a", "é", "\u{FFFE}", "\u{FFFF}x", "\"\\", "🦀"]);
    prop::collection::vec((0usize..3_000, texts), 0..120).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (len, t))| event(i as u128, len, t))
            .collect()
    })
}

fn arb_limits() -> impl Strategy<Value = BufferLimits> {
    (8_192usize..40_000, 1usize..4).prop_map(|(message, batch_factor)| BufferLimits {
        bytes_per_entry: message,
        bytes_per_call: (message * batch_factor).min(SQS_MAX_MESSAGE_BYTES),
        ..BufferLimits::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn packing_respects_limits_and_keeps_every_event_in_order(
        events in arb_events(),
        limits in arb_limits(),
    ) {
        let batches = pack(&events, &limits, &key()).expect("all events fit");
        let mut seen = Vec::new();
        let mut entry_ids = std::collections::HashSet::new();
        for batch in &batches {
            prop_assert!(!batch.entries.is_empty());
            prop_assert!(batch.entries.len() <= SQS_MAX_BATCH_ENTRIES);
            prop_assert!(batch.body_bytes() <= limits.bytes_per_call);
            prop_assert!(batch.body_bytes() <= SQS_MAX_MESSAGE_BYTES);
            for entry in &batch.entries {
                prop_assert!(entry.body.len() <= limits.bytes_per_entry);
                let raw_nonchar = entry.body.contains(['\u{FFFE}', '\u{FFFF}']);
                prop_assert!(!raw_nonchar, "U+FFFE/U+FFFF must be escaped for SQS");
                prop_assert!(entry_ids.insert(entry.id.clone()), "entry ids unique");
                let decoded = open(&entry.body, &Keyring::new(vec![key()], Unsigned::Refuse))
                    .expect("the seal verifies");
                let ids: Vec<Uuid> = decoded.iter().map(|e| e.id).collect();
                prop_assert_eq!(&ids, &entry.event_ids);
                seen.extend(decoded);
            }
        }
        // Round trip: the same events, in the same order, none lost or duplicated (`data` the
        // same JSON; U+FFFE/U+FFFF now spelled as escapes).
        let same: Vec<Event> = events.iter().map(normalised).collect();
        prop_assert_eq!(seen.iter().map(normalised).collect::<Vec<_>>(), same);
    }

    #[test]
    fn packing_is_deterministic(events in arb_events(), limits in arb_limits()) {
        prop_assert_eq!(pack(&events, &limits, &key()), pack(&events, &limits, &key()));
    }
}

#[test]
fn no_events_pack_to_no_requests() {
    assert_eq!(pack(&[], &BufferLimits::default(), &key()), Ok(vec![]));
}

#[test]
fn an_event_that_cannot_fit_in_a_message_is_refused_with_its_index() {
    // The client's event limit is validation's (on the bytes sent); the packer refuses only
    // what no message can hold.
    let limits = BufferLimits {
        bytes_per_entry: 2_000,
        ..BufferLimits::default()
    };
    let events = vec![event(0, 1_500, "a"), event(1, 2_000, "a")];
    match pack(&events, &limits, &key()) {
        Err(PackError::EventTooLarge { index, size, max }) => {
            assert_eq!(index, 1);
            assert!(size > max);
            // The envelope around one event, with the longest key id and the signature.
            let longest = format!(
                r#"{{"v":2,"kid":"{}","events":[],"sig":"{}"}}"#,
                "k".repeat(32),
                "0".repeat(64)
            );
            assert_eq!(max, 2_000 - longest.len());
        }
        other => panic!("expected EventTooLarge, got {other:?}"),
    }
}

#[test]
fn ten_entries_per_request_at_most() {
    // Each event alone fills a message, so 25 events -> 25 messages -> 3 requests.
    let limits = BufferLimits {
        bytes_per_entry: 4_000,
        ..BufferLimits::default()
    };
    let events: Vec<Event> = (0..25).map(|i| event(i, 2_500, "a")).collect();
    let batches = pack(&events, &limits, &key()).expect("fits");
    let sizes: Vec<usize> = batches.iter().map(|b| b.entries.len()).collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    let ids: Vec<&str> = batches
        .iter()
        .flat_map(|b| b.entries.iter().map(|e| e.id.as_str()))
        .collect();
    assert_eq!(ids.first(), Some(&"m0"));
    assert_eq!(ids.last(), Some(&"m24"));
}

#[test]
fn small_events_share_one_message() {
    let events: Vec<Event> = (0..100).map(|i| event(i, 50, "a")).collect();
    let batches = pack(&events, &BufferLimits::default(), &key()).expect("fits");
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].entries.len(), 1);
    assert_eq!(batches[0].entries[0].event_ids.len(), 100);
}

#[test]
fn fifo_dedup_id_is_stable_and_content_specific() {
    let events: Vec<Event> = (0..3).map(|i| event(i, 10, "a")).collect();
    let a = pack(&events, &BufferLimits::default(), &key()).expect("fits");
    let b = pack(&events[..2], &BufferLimits::default(), &key()).expect("fits");
    let da = &a[0].entries[0].dedup_id();
    assert_eq!(
        da,
        &pack(&events, &BufferLimits::default(), &key()).expect("fits")[0].entries[0].dedup_id()
    );
    assert_ne!(da, &b[0].entries[0].dedup_id());
    assert!(da.len() <= 128, "SQS allows 128 characters");
}

fn encoded(lens: &[usize]) -> Vec<spillway_shared::EncodedEvent> {
    lens.iter()
        .enumerate()
        .map(|(i, &len)| spillway_shared::EncodedEvent {
            id: Uuid::from_u128(i as u128 + 1),
            text: "x".repeat(len),
        })
        .collect()
}

proptest! {
    /// `CallBudget` agrees with the packer: the events it accepts pack into exactly one
    /// `SendMessageBatch`, and the first one it refuses would have made a second.
    #[test]
    fn call_budget_agrees_with_the_packer(
        lens in proptest::collection::vec(1usize..40_000, 1..80),
        message_kib in 8usize..=256,
        batch_kib in 16usize..=1024,
    ) {
        let limits = BufferLimits {
            bytes_per_entry: message_kib * 1024,
            bytes_per_call: batch_kib * 1024,
            ..BufferLimits::default()
        };
        // Only events the packer can hold at all (encode_events refuses the others).
        let cap = (message_kib * 1024).min(SQS_MAX_MESSAGE_BYTES) - 140;
        let lens: Vec<usize> = lens.into_iter().map(|l| l.min(cap)).collect();
        let mut one = spillway_shared::CallBudget::new(&limits);
        let taken = lens.iter().take_while(|&&len| one.add(len)).count();
        prop_assert!(taken >= 1, "the first event always fits");
        let packed = spillway_shared::pack_encoded(&encoded(&lens[..taken]), &limits, &key());
        prop_assert_eq!(packed.len(), 1);
        if taken < lens.len() {
            let more = spillway_shared::pack_encoded(&encoded(&lens[..=taken]), &limits, &key());
            prop_assert_eq!(more.len(), 2, "the refused event needed a second request");
            // Refusing leaves the state as it was: the same event is refused again.
            prop_assert!(!one.add(lens[taken]));
        }
    }
}
