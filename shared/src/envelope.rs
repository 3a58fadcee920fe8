//! The buffer's message envelope: `{"v":2,"kid":"k1","events":[...],"sig":"..."}`, the body of
//! an SQS message or the data of a Kinesis record, byte for byte the same.
//!
//! One message carries several events, which keeps the message count (and SQS's per-request or
//! Kinesis's per-record bill) low. The version field comes first so a consumer can refuse a
//! format it does not know instead of misreading it. Version 2 is sealed: the edge signs the body with a key the
//! consumer holds ([`crate::seal`]), and the consumer stores only what [`open`] verifies.
//! Version 1 (`{"v":1,"events":[...]}`, unsigned) is what edges before the seal wrote; [`open`]
//! refuses it unless the consumer is told to accept it while an upgrade drains.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::event::{EdgeInfo, Event};
use crate::seal::{self, Keyring, SealError, SigningKey, Unsigned, MAX_KID_BYTES, SEAL_SUFFIX_LEN};
use crate::timestamp;

/// The envelope version this crate writes: sealed. It also reads version 1 (see [`open`]).
pub const ENVELOPE_VERSION: u64 = 2;

const KID_TEXT: &str = "{\"v\":2,\"kid\":\"";
const EVENTS_TEXT: &str = "\",\"events\":[";
const EVENTS_END_TEXT: &str = "]";
/// Bytes around the events of a sealed body, with the longest key id: what the packer budgets,
/// so a message never outgrows its cap whichever key signs it.
pub const WRAPPER_MAX: usize =
    KID_TEXT.len() + MAX_KID_BYTES + EVENTS_TEXT.len() + EVENTS_END_TEXT.len() + SEAL_SUFFIX_LEN;
// Validated limits leave this much room around an event (`RequestLimits::validate`).
const _: () = assert!(WRAPPER_MAX <= crate::limits::ENVELOPE_OVERHEAD_BYTES);

/// A decoded envelope.
///
/// The seal's fields (`kid`, `sig`) are not part of it: [`open`] checks them on the body's own
/// bytes before the events are read.
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
    #[error("envelope version {0} is not supported (this build reads versions 1 and {ENVELOPE_VERSION})")]
    UnsupportedVersion(u64),
    #[error("envelope does not match its version: {0}")]
    InvalidEnvelope(String),
    #[error("envelope holds no events")]
    Empty,
    /// The seal does not hold: not written by an edge holding one of the consumer's keys, or
    /// changed since.
    #[error("{0}")]
    Seal(#[from] SealError),
}

/// Serialises one event as it is embedded in a message body.
///
/// SQS refuses message bodies with characters outside XML's character set. serde_json already
/// escapes control characters; the two non-characters U+FFFE and U+FFFF it leaves raw, so they
/// are escaped here (they only ever occur inside JSON strings, where `\uFFFE` means the same).
pub fn encode_event(event: &Event) -> Result<Vec<u8>, serde_json::Error> {
    encode_event_text(event).map(String::into_bytes)
}

/// [`encode_event`] as text, which is what a message body is made of: kept as a `String` from
/// the start, the body never has to be checked to be UTF-8 again.
pub(crate) fn encode_event_text(event: &Event) -> Result<String, serde_json::Error> {
    // Room for the event's own text and the fields around it, so the writer never regrows.
    let mut json = String::with_capacity(event.data.get().len() + event.event_type.len() + 256);
    write_event(&mut json, event)?;
    const FFFE: &[u8] = "\u{FFFE}".as_bytes();
    const FFFF: &[u8] = "\u{FFFF}".as_bytes();
    // Both start with 0xEF, which is rare in text: look for that byte first.
    let bytes = json.as_bytes();
    let has_non_character = memchr::memchr_iter(0xEF, bytes)
        .any(|i| matches!(bytes.get(i..i + 3), Some(w) if w == FFFE || w == FFFF));
    if !has_non_character {
        return Ok(json);
    }
    Ok(json
        .replace('\u{FFFE}', "\\ufffe")
        .replace('\u{FFFF}', "\\uffff"))
}

/// Writes `event` exactly as `serde_json::to_writer` writes it through its derived `Serialize`
/// (same fields, order, spelling and escapes; a test holds the two equal), with the field names
/// as constants: serde's per-field path escaped every name again and wrote it in pieces, and an
/// event is encoded on every request.
fn write_event(out: &mut String, event: &Event) -> Result<(), serde_json::Error> {
    // Every field by name, so that one added to `Event` cannot be left out here unnoticed.
    let Event {
        id,
        event_type,
        occurred_at,
        received_at,
        event_time,
        key_id,
        edge,
        source,
        data,
    } = event;
    out.push_str("{\"id\":\"");
    // Hex digits and hyphens: nothing to escape.
    out.push_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    out.push_str("\",\"type\":");
    write_str(out, event_type)?;
    if let Some(t) = occurred_at {
        out.push_str(",\"occurred_at\":");
        write_time(out, t)?;
    }
    out.push_str(",\"received_at\":");
    write_time(out, received_at)?;
    if let Some(t) = event_time {
        out.push_str(",\"event_time\":");
        write_time(out, t)?;
    }
    out.push_str(",\"key_id\":");
    write_str(out, key_id)?;
    if let Some(edge) = edge {
        out.push_str(",\"edge\":");
        write_edge(out, edge)?;
    }
    if !source.is_spillway() {
        out.push_str(",\"source\":");
        out.push_str(&serde_json::to_string(source)?);
    }
    // Raw JSON goes out as written, as serde_json writes a `RawValue`.
    out.push_str(",\"data\":");
    out.push_str(data.get());
    out.push('}');
    Ok(())
}

/// The edge's context as its derived `Serialize` writes it: the filled fields, in declaration
/// order, each named once here so that one added to [`EdgeInfo`] is not left out unnoticed.
fn write_edge(out: &mut String, edge: &EdgeInfo) -> Result<(), serde_json::Error> {
    let EdgeInfo {
        colo,
        country,
        region,
        region_code,
        city,
        postal_code,
        continent,
        timezone,
        latitude,
        longitude,
        asn,
        as_organization,
        is_eu_country,
        ip,
    } = edge;
    let mut first = true;
    let mut name = |out: &mut String, name: &str| {
        out.push_str(if first { "\"" } else { ",\"" });
        first = false;
        out.push_str(name);
        out.push_str("\":");
    };
    out.push('{');
    for (field, value) in [
        ("colo", colo),
        ("country", country),
        ("region", region),
        ("region_code", region_code),
        ("city", city),
        ("postal_code", postal_code),
        ("continent", continent),
        ("timezone", timezone),
    ] {
        if let Some(v) = value {
            name(out, field);
            write_str(out, v)?;
        }
    }
    for (field, value) in [("latitude", latitude), ("longitude", longitude)] {
        if let Some(v) = value {
            name(out, field);
            out.push_str(&serde_json::to_string(v)?);
        }
    }
    if let Some(v) = asn {
        name(out, "asn");
        out.push_str(&v.to_string());
    }
    if let Some(v) = as_organization {
        name(out, "as_organization");
        write_str(out, v)?;
    }
    if let Some(v) = is_eu_country {
        name(out, "is_eu_country");
        out.push_str(if *v { "true" } else { "false" });
    }
    if let Some(v) = ip {
        name(out, "ip");
        write_str(out, v)?;
    }
    out.push('}');
    Ok(())
}

/// A JSON string as serde_json writes it. One with nothing to escape (no control character,
/// quote or backslash), which is nearly every one, is the text between quotes; serde_json
/// itself writes the rest.
fn write_str(out: &mut String, s: &str) -> Result<(), serde_json::Error> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s)?);
    }
    Ok(())
}

/// A timestamp as [`timestamp::serialize_rfc3339`] writes it.
fn write_time(out: &mut String, t: &DateTime<Utc>) -> Result<(), serde_json::Error> {
    let mut buf = [0u8; 32];
    match timestamp::write_rfc3339(t, &mut buf) {
        Some(len) => {
            // Only ASCII digits and punctuation were written: nothing to escape.
            let text = std::str::from_utf8(&buf[..len]).map_err(serde::ser::Error::custom)?;
            out.push('"');
            out.push_str(text);
            out.push('"');
        }
        None => out.push_str(&serde_json::to_string(t)?),
    }
    Ok(())
}

/// Size of a message holding events of the given encoded sizes, at most (the key id's length
/// budgeted at its maximum).
pub(crate) fn message_len(event_lens_sum: usize, count: usize) -> usize {
    WRAPPER_MAX + event_lens_sum + count.saturating_sub(1)
}

/// Builds a sealed message body from already encoded events (see [`encode_event`]), signed
/// with `key`.
pub fn encode_message<'a>(
    encoded_events: impl IntoIterator<Item = &'a [u8]>,
    key: &SigningKey,
) -> String {
    // Every piece is serde_json output, hence UTF-8.
    let texts: Vec<std::borrow::Cow<'a, str>> = encoded_events
        .into_iter()
        .map(String::from_utf8_lossy)
        .collect();
    encode_message_sized(texts.iter().map(AsRef::as_ref), 0, key)
}

/// [`encode_message`] for the packer, which knows the message's size ([`message_len`]) and has
/// the events as text ([`encode_event_text`]): the body is written into one allocation of that
/// size instead of growing as it goes, and is text without being checked again.
pub(crate) fn encode_message_sized<'a>(
    encoded_events: impl IntoIterator<Item = &'a str>,
    len: usize,
    key: &SigningKey,
) -> String {
    let mut out = String::with_capacity(len);
    out.push_str(KID_TEXT);
    out.push_str(key.kid());
    out.push_str(EVENTS_TEXT);
    for (i, e) in encoded_events.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    close_message(out, key)
}

/// Ends the events, signs everything so far and appends the signature.
fn close_message(mut out: String, key: &SigningKey) -> String {
    out.push_str(EVENTS_END_TEXT);
    let sig = key.sign(out.as_bytes());
    out.push_str(seal::SIG_FIELD);
    out.push_str(&sig);
    out.push_str("\"}");
    out
}

#[derive(Deserialize)]
struct VersionProbe {
    v: Option<serde_json::Value>,
    kid: Option<serde_json::Value>,
}

/// The version of a body and its key id, as far as the body says.
fn probe(body: &str) -> Result<(u64, Option<String>), DecodeError> {
    // serde reads a struct from an array too; an envelope is an object.
    if !body.trim_start().starts_with('{') {
        return Err(DecodeError::InvalidJson("not a JSON object".into()));
    }
    let probe: VersionProbe =
        serde_json::from_str(body).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    let v = match probe.v.as_ref().and_then(serde_json::Value::as_u64) {
        None => return Err(DecodeError::MissingVersion),
        Some(v @ (1 | ENVELOPE_VERSION)) => v,
        Some(other) => return Err(DecodeError::UnsupportedVersion(other)),
    };
    let kid = match probe.kid {
        Some(serde_json::Value::String(kid)) => Some(kid),
        _ => None,
    };
    Ok((v, kid))
}

fn events_of(body: &str) -> Result<Vec<Event>, DecodeError> {
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| DecodeError::InvalidEnvelope(e.to_string()))?;
    if envelope.events.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(envelope.events)
}

/// Reads a message body into its events **without checking its seal**, refusing versions it
/// does not know: for tools that show what a body holds (the dead-letter tool). What is
/// stored goes through [`open`].
pub fn decode(body: &str) -> Result<Vec<Event>, DecodeError> {
    probe(body)?;
    events_of(body)
}

/// Reads a message body into its events once its seal verifies under one of `keys`. A version
/// 1 body (unsigned) is read only where `keys` accepts unsigned bodies.
pub fn open(body: &str, keys: &Keyring) -> Result<Vec<Event>, DecodeError> {
    match probe(body)? {
        (1, _) if keys.unsigned() == Unsigned::Accept => {}
        (1, _) => return Err(SealError::Unsigned.into()),
        (_, kid) => seal::verify(body, kid.as_deref(), keys)?,
    }
    events_of(body)
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

    /// Every field of the edge's context, each present or not; numbers of every magnitude
    /// serde writes (with and without an exponent).
    fn arb_edge() -> impl Strategy<Value = EdgeInfo> {
        let text = || prop::option::of(arb_text());
        let degrees = || prop::option::of(prop_oneof![-180.0f64..180.0, Just(1e-7), Just(-0.0)]);
        (
            (
                text(),
                text(),
                text(),
                text(),
                text(),
                text(),
                text(),
                text(),
            ),
            (
                degrees(),
                degrees(),
                prop::option::of(any::<u32>()),
                text(),
                prop::option::of(any::<bool>()),
                text(),
            ),
        )
            .prop_map(
                |(
                    (colo, country, region, region_code, city, postal_code, continent, timezone),
                    (latitude, longitude, asn, as_organization, is_eu_country, ip),
                )| EdgeInfo {
                    colo,
                    country,
                    region,
                    region_code,
                    city,
                    postal_code,
                    continent,
                    timezone,
                    latitude,
                    longitude,
                    asn,
                    as_organization,
                    is_eu_country,
                    ip,
                },
            )
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        let edge = prop::option::of(arb_edge());
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
            prop::option::of(arb_time()),
            arb_text(),
            edge,
            source,
            data,
        )
            .prop_map(
                |(
                    id,
                    event_type,
                    occurred_at,
                    received_at,
                    event_time,
                    key_id,
                    edge,
                    source,
                    data,
                )| Event {
                    id: Uuid::from_u128(id),
                    event_type,
                    occurred_at,
                    received_at,
                    event_time,
                    key_id,
                    edge,
                    source,
                    data: RawJson::from_json(data).expect("json"),
                },
            )
    }

    /// The U+FFFE and U+FFFF escape, byte by byte, as `encode_event` first did it.
    fn escaped_for_sqs(json: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < json.len() {
            match json.get(i..i + 3) {
                Some(b"\xEF\xBF\xBE") => {
                    out.extend_from_slice(b"\\ufffe");
                    i += 3;
                }
                Some(b"\xEF\xBF\xBF") => {
                    out.extend_from_slice(b"\\uffff");
                    i += 3;
                }
                _ => {
                    out.push(json[i]);
                    i += 1;
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// What goes into a message: serde_json's output with the two non-characters escaped.
        #[test]
        fn encoded_events_are_serde_json_escaped_for_sqs(event in arb_event()) {
            let serde = serde_json::to_vec(&event).expect("serialises");
            let expected = escaped_for_sqs(&serde);
            prop_assert_eq!(encode_event(&event).expect("encodes"), expected.clone());
            prop_assert_eq!(
                encode_event_text(&event).expect("encodes").into_bytes(),
                expected
            );
        }

        /// The envelope's own writer and the derived `Serialize` agree byte for byte.
        #[test]
        fn write_event_is_serde_json_of_the_event(event in arb_event()) {
            let mut ours = String::new();
            write_event(&mut ours, &event).expect("writes");
            let serde = serde_json::to_string(&event).expect("serialises");
            prop_assert_eq!(ours, serde);
        }
    }

    use crate::seal::test_key as key;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// A sealed body opens to its events; the same body with any one byte changed never
        /// opens (to these or any other events).
        #[test]
        fn sealed_bodies_open_and_altered_ones_do_not(
            events in prop::collection::vec(arb_event(), 1..4),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let encoded: Vec<Vec<u8>> =
                events.iter().map(|e| encode_event(e).expect("encodes")).collect();
            let body = encode_message(encoded.iter().map(Vec::as_slice), &key());
            let keys = Keyring::new(vec![key()], Unsigned::Refuse);
            let opened = open(&body, &keys).expect("opens");
            prop_assert_eq!(opened.len(), events.len());
            let mut bytes = body.into_bytes();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            if let Ok(altered) = String::from_utf8(bytes) {
                prop_assert!(open(&altered, &keys).is_err(), "byte {} changed and still opens", i);
            }
        }
    }

    /// An `edge` written before the context had more than two fields reads as those two; a
    /// full context travels with its numbers as JSON numbers and reads back the same.
    #[test]
    fn old_and_full_edge_contexts_read_back() {
        let old = r#"{"v":1,"events":[{"id":"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10","type":"t","received_at":"2026-11-28T08:00:00.123Z","key_id":"web","edge":{"colo":"FRA","country":"DE"},"data":{}}]}"#;
        let events = decode(old).expect("decodes");
        let edge = events[0].edge.clone().expect("edge");
        assert_eq!(edge.colo.as_deref(), Some("FRA"));
        assert_eq!(edge.country.as_deref(), Some("DE"));
        assert_eq!(edge.city, None);
        assert_eq!(edge.ip, None);

        let mut event = events[0].clone();
        event.edge = Some(EdgeInfo {
            city: Some("Frankfurt am Main".into()),
            latitude: Some(50.1109),
            longitude: Some(-8.5),
            asn: Some(3320),
            is_eu_country: Some(true),
            ..edge
        });
        let text = String::from_utf8(encode_event(&event).expect("encodes")).expect("utf-8");
        assert!(
            text.contains(r#""edge":{"colo":"FRA","country":"DE","city":"Frankfurt am Main","latitude":50.1109,"longitude":-8.5,"asn":3320,"is_eu_country":true}"#),
            "{text}"
        );
        let body = encode_message([text.as_bytes()], &key());
        let opened = open(&body, &Keyring::new(vec![key()], Unsigned::Refuse)).expect("opens");
        assert_eq!(opened, vec![event]);
    }

    #[test]
    fn unknown_version_is_typed() {
        assert_eq!(
            decode(r#"{"v":3,"events":[]}"#),
            Err(DecodeError::UnsupportedVersion(3))
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
