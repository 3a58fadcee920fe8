//! The SQS message envelope: `{"v":1,"events":[...]}`.
//!
//! One SQS message carries several events, which keeps the message count (and SQS's per-request
//! bill) low. The version field comes first so a consumer can refuse a format it does not know
//! instead of misreading it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::event::{EdgeInfo, Event};
use crate::timestamp;

/// The envelope version this crate writes and reads.
pub const ENVELOPE_VERSION: u64 = 1;

pub(crate) const PREFIX: &[u8] = b"{\"v\":1,\"events\":[";
pub(crate) const SUFFIX: &[u8] = b"]}";

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u64,
    pub events: Vec<Event>,
}

/// Why a message body is not a usable envelope. Every variant is permanent: retrying the same
/// body cannot succeed, so the consumer sends it towards the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("body is not JSON: {0}")]
    InvalidJson(String),
    #[error("body has no numeric `v` field")]
    MissingVersion,
    #[error("envelope version {0} is not supported (this build reads version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u64),
    #[error("envelope does not match version {ENVELOPE_VERSION}: {0}")]
    InvalidEnvelope(String),
    #[error("envelope holds no events")]
    Empty,
}

/// Serialises one event as it is embedded in a message body.
///
/// SQS refuses message bodies with characters outside XML's character set. serde_json already
/// escapes control characters; the two non-characters U+FFFE and U+FFFF it leaves raw, so they
/// are escaped here (they only ever occur inside JSON strings, where `\uFFFE` means the same).
pub fn encode_event(event: &Event) -> Result<Vec<u8>, serde_json::Error> {
    // Room for the event's own text and the fields around it, so the writer never regrows.
    let mut json = Vec::with_capacity(event.data.get().len() + event.event_type.len() + 256);
    write_event(&mut json, event)?;
    const FFFE: &[u8] = "\u{FFFE}".as_bytes();
    const FFFF: &[u8] = "\u{FFFF}".as_bytes();
    // Both start with 0xEF, which is rare in text: look for that byte first.
    let has_non_character = memchr::memchr_iter(0xEF, &json)
        .any(|i| matches!(json.get(i..i + 3), Some(w) if w == FFFE || w == FFFF));
    if !has_non_character {
        return Ok(json);
    }
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut i = 0;
    while i < json.len() {
        match json.get(i..i + 3) {
            Some(w) if w == FFFE => {
                out.extend_from_slice(b"\\ufffe");
                i += 3;
            }
            Some(w) if w == FFFF => {
                out.extend_from_slice(b"\\uffff");
                i += 3;
            }
            _ => {
                out.push(json[i]);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Writes `event` exactly as `serde_json::to_writer` writes it through its derived `Serialize`
/// (same fields, order, spelling and escapes; a test holds the two equal), with the field names
/// as constants: serde's per-field path escaped every name again and wrote it in pieces, and an
/// event is encoded on every request.
fn write_event(out: &mut Vec<u8>, event: &Event) -> Result<(), serde_json::Error> {
    // Every field by name, so that one added to `Event` cannot be left out here unnoticed.
    let Event {
        id,
        event_type,
        occurred_at,
        received_at,
        key_id,
        edge,
        source,
        data,
    } = event;
    out.extend_from_slice(b"{\"id\":\"");
    // Hex digits and hyphens: nothing to escape.
    out.extend_from_slice(
        id.hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"type\":");
    serde_json::to_writer(&mut *out, event_type)?;
    if let Some(t) = occurred_at {
        out.extend_from_slice(b",\"occurred_at\":");
        write_time(out, t)?;
    }
    out.extend_from_slice(b",\"received_at\":");
    write_time(out, received_at)?;
    out.extend_from_slice(b",\"key_id\":");
    serde_json::to_writer(&mut *out, key_id)?;
    if let Some(EdgeInfo { colo, country }) = edge {
        out.extend_from_slice(b",\"edge\":{");
        if let Some(colo) = colo {
            out.extend_from_slice(b"\"colo\":");
            serde_json::to_writer(&mut *out, colo)?;
        }
        if let Some(country) = country {
            if colo.is_some() {
                out.push(b',');
            }
            out.extend_from_slice(b"\"country\":");
            serde_json::to_writer(&mut *out, country)?;
        }
        out.push(b'}');
    }
    if !source.is_spillway() {
        out.extend_from_slice(b",\"source\":");
        serde_json::to_writer(&mut *out, source)?;
    }
    // Raw JSON goes out as written, as serde_json writes a `RawValue`.
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.get().as_bytes());
    out.push(b'}');
    Ok(())
}

/// A timestamp as [`timestamp::serialize_rfc3339`] writes it.
fn write_time(out: &mut Vec<u8>, t: &DateTime<Utc>) -> Result<(), serde_json::Error> {
    let mut buf = [0u8; 32];
    match timestamp::write_rfc3339(t, &mut buf) {
        Some(len) => {
            // ASCII digits and punctuation: nothing to escape.
            out.push(b'"');
            out.extend_from_slice(&buf[..len]);
            out.push(b'"');
            Ok(())
        }
        None => timestamp::serialize_rfc3339(t, &mut serde_json::Serializer::new(out)),
    }
}

/// Size of a message holding events of the given encoded sizes.
pub(crate) fn message_len(event_lens_sum: usize, count: usize) -> usize {
    PREFIX.len() + event_lens_sum + count.saturating_sub(1) + SUFFIX.len()
}

/// Builds a message body from already encoded events (see [`encode_event`]).
pub fn encode_message<'a>(encoded_events: impl IntoIterator<Item = &'a [u8]>) -> String {
    write_message(Vec::from(PREFIX), encoded_events)
}

/// [`encode_message`] for the packer, which knows the message's size ([`message_len`]): the
/// body is written into one allocation of that size instead of growing as it goes.
pub(crate) fn encode_message_sized(encoded_events: &[Vec<u8>], len: usize) -> String {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(PREFIX);
    write_message(out, encoded_events.iter().map(Vec::as_slice))
}

/// Appends the events and the suffix to `out`, which holds the prefix.
fn write_message<'a>(
    mut out: Vec<u8>,
    encoded_events: impl IntoIterator<Item = &'a [u8]>,
) -> String {
    for (i, e) in encoded_events.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.extend_from_slice(SUFFIX);
    // Every piece is serde_json output or ASCII, hence UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[derive(Deserialize)]
struct VersionProbe {
    v: Option<serde_json::Value>,
}

/// Decodes a message body into its events, refusing versions it does not know.
pub fn decode(body: &str) -> Result<Vec<Event>, DecodeError> {
    let probe: VersionProbe =
        serde_json::from_str(body).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    match probe.v.as_ref().and_then(serde_json::Value::as_u64) {
        None => return Err(DecodeError::MissingVersion),
        Some(ENVELOPE_VERSION) => {}
        Some(other) => return Err(DecodeError::UnsupportedVersion(other)),
    }
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| DecodeError::InvalidEnvelope(e.to_string()))?;
    if envelope.events.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(envelope.events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;
    use crate::json::RawJson;
    use chrono::{NaiveDate, NaiveTime};
    use proptest::prelude::*;

    /// Instants the fast timestamp path writes and those it leaves to chrono: every fraction
    /// width, years outside 0-9999 and a leap second.
    fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
        let fast = (0i64..253_402_300_800, 0u32..1_000_000_000, 0usize..4).prop_map(
            |(secs, nanos, width)| {
                let nanos = match width {
                    0 => 0,
                    1 => nanos / 1_000_000 * 1_000_000,
                    2 => nanos / 1_000 * 1_000,
                    _ => nanos,
                };
                DateTime::from_timestamp(secs, nanos).expect("in range")
            },
        );
        let slow = prop_oneof![
            Just(DateTime::from_timestamp(-62_167_219_201, 0).expect("year -1")),
            Just(DateTime::from_timestamp(253_402_300_800, 5_000).expect("year 10000")),
            Just(
                NaiveDate::from_ymd_opt(2016, 12, 31)
                    .expect("date")
                    .and_time(
                        NaiveTime::from_hms_nano_opt(23, 59, 59, 1_250_000_000).expect("leap")
                    )
                    .and_utc()
            ),
        ];
        prop_oneof![4 => fast, 1 => slow]
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            Just(String::new()),
            Just("\"\\/\u{0}\u{1f}\u{7f}\u{FFFE}\u{FFFF}\u{2028}é🦀".to_owned()),
        ]
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        let edge = prop::option::of((prop::option::of(arb_text()), prop::option::of(arb_text())))
            .prop_map(|e| e.map(|(colo, country)| EdgeInfo { colo, country }));
        let source = prop::sample::select(vec![Source::Spillway, Source::Segment, Source::Posthog]);
        let data = prop::sample::select(vec![
            "{}",
            r#"{ "n" : 1e400, "s": "a\u0041\"" , "a":[ ]}"#,
            "{\"k\":\"\u{FFFE}\"}",
        ]);
        (
            any::<u128>(),
            arb_text(),
            prop::option::of(arb_time()),
            arb_time(),
            arb_text(),
            edge,
            source,
            data,
        )
            .prop_map(
                |(id, event_type, occurred_at, received_at, key_id, edge, source, data)| Event {
                    id: Uuid::from_u128(id),
                    event_type,
                    occurred_at,
                    received_at,
                    key_id,
                    edge,
                    source,
                    data: RawJson::from_json(data).expect("json"),
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// The envelope's own writer and the derived `Serialize` agree byte for byte.
        #[test]
        fn write_event_is_serde_json_of_the_event(event in arb_event()) {
            let mut ours = Vec::new();
            write_event(&mut ours, &event).expect("writes");
            let serde = serde_json::to_vec(&event).expect("serialises");
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&serde));
        }
    }

    #[test]
    fn unknown_version_is_typed() {
        assert_eq!(
            decode(r#"{"v":2,"events":[]}"#),
            Err(DecodeError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn missing_or_odd_version() {
        assert_eq!(decode(r#"{"events":[]}"#), Err(DecodeError::MissingVersion));
        assert_eq!(decode(r#"{"v":"1"}"#), Err(DecodeError::MissingVersion));
        assert_eq!(decode(r#"{"v":-1}"#), Err(DecodeError::MissingVersion));
    }

    #[test]
    fn not_json() {
        assert!(matches!(decode("hello"), Err(DecodeError::InvalidJson(_))));
        assert!(matches!(decode("[1,2]"), Err(DecodeError::InvalidJson(_))));
    }

    #[test]
    fn empty_and_malformed_envelopes() {
        assert_eq!(decode(r#"{"v":1,"events":[]}"#), Err(DecodeError::Empty));
        assert!(matches!(
            decode(r#"{"v":1,"events":[{"type":"x"}]}"#),
            Err(DecodeError::InvalidEnvelope(_))
        ));
    }
}
