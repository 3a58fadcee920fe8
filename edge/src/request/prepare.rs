//! The pure middle of the request path: events validated (or a collector's messages read),
//! given ids, enriched with what the edge knows and encoded; packed for the queue when asked
//! ([`prepare`]). `received_at` and the choice of id source are made here, once, for every
//! protocol.
//!
//! It does not read the request (`request::head`, `request::body`) nor send (`deliver`).

use chrono::{DateTime, Utc};
use spillway_shared::collector::{self, Message};
use spillway_shared::event_time::{self, SendTime};
use spillway_shared::{
    assign_ids, encode_events, pack_encoded, validate_events, BufferCall, BufferLimits, Code,
    EdgeInfo, EncodedEvent, Event, IdSource, RequestLimits, SigningKey,
};
use uuid::Uuid;

use crate::error::EdgeError;
use crate::protocol::events::{malformed, split_events, Format};
use crate::protocol::Collector;

/// What enrichment stamps on every event of a request.
#[derive(Debug, Clone)]
pub struct Stamp<'a> {
    /// Which ingest key sent the request.
    pub key_id: &'a str,
    /// The request's `Idempotency-Key`, if any.
    pub idempotency_key: Option<&'a str>,
    /// The edge clock when the request arrived (ms since the Unix epoch).
    pub now_ms: u64,
    /// Where the edge saw the request, when the runtime says.
    pub edge: Option<EdgeInfo>,
    /// When the client says it sent the request, in its clock (`Sent-At`, `?sent_at=`, PostHog's
    /// `?_=`): corrects the timestamps of events whose body names no send time.
    pub sent_at: Option<DateTime<Utc>>,
}

impl Stamp<'_> {
    /// When the edge received the request, as events carry it.
    pub fn received_at(&self) -> DateTime<Utc> {
        received_at(self.now_ms)
    }

    /// Where the ids of events without their own come from: the `Idempotency-Key` when the
    /// request has one (so a retry gets the same ids), else fresh UUIDv7s.
    fn id_source(&self) -> IdSource<'_> {
        match self.idempotency_key {
            Some(idempotency_key) => IdSource::Idempotency {
                key_id: self.key_id,
                idempotency_key,
            },
            None => IdSource::Generated {
                unix_ms: self.now_ms,
            },
        }
    }
}

/// `now_ms` (the edge clock, ms since the Unix epoch) as the `received_at` events carry.
pub fn received_at(now_ms: u64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(now_ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// A request's events, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Every event's id, in request order.
    pub ids: Vec<Uuid>,
    pub calls: Vec<BufferCall>,
}

/// The pure middle of the request path: parse -> validate -> ids and enrichment -> pack.
///
/// `limits` are the request's, `buffer` the buffer's (an event must fit one of its entries).
/// `random` supplies the random bytes of UUIDv7 ids.
pub fn prepare(
    body: &[u8],
    format: Format,
    limits: &RequestLimits,
    buffer: &BufferLimits,
    key: &SigningKey,
    stamp: &Stamp<'_>,
    random: &mut dyn FnMut() -> [u8; 10],
) -> Result<Prepared, EdgeError> {
    let items = split_events(body, format, limits)?;
    prepare_events(&items, limits, buffer, key, stamp, random)
}

/// [`prepare`] once the body is split into the raw text of each event (by
/// [`split_events`] or [`parse`](crate::protocol::events::parse)).
pub fn prepare_events(
    items: &[&str],
    limits: &RequestLimits,
    buffer: &BufferLimits,
    key: &SigningKey,
    stamp: &Stamp<'_>,
    random: &mut dyn FnMut() -> [u8; 10],
) -> Result<Prepared, EdgeError> {
    let (ids, encoded) = prepare_encoded(items, limits, buffer, stamp, random)?;
    let calls = pack_encoded(&encoded, buffer, key);
    Ok(Prepared { ids, calls })
}

/// [`prepare_events`] up to the encoded events, before packing: what `deliver` takes.
pub fn prepare_encoded(
    items: &[&str],
    limits: &RequestLimits,
    buffer: &BufferLimits,
    stamp: &Stamp<'_>,
    random: &mut dyn FnMut() -> [u8; 10],
) -> Result<(Vec<Uuid>, Vec<EncodedEvent>), EdgeError> {
    let received_at = stamp.received_at();
    let valid = validate_events(items, limits, received_at).map_err(|problems| {
        // A body of one object reaches validation unchecked (`split_events`). When validation
        // could not read it, it may be no JSON at all: then the answer is `parse`'s.
        let unreadable = problems
            .iter()
            .any(|p| p.code == Code::InvalidJson && p.field.is_none());
        match items {
            [single] if unreadable => malformed(single, limits),
            _ => None,
        }
        .unwrap_or(EdgeError::Invalid(problems))
    })?;
    let ids = assign_ids(&valid, items, &stamp.id_source(), random).map_err(EdgeError::Invalid)?;
    let events: Vec<Event> = valid
        .into_iter()
        .zip(&ids)
        .map(|(v, &id)| {
            let send = SendTime::live(stamp.sent_at, None);
            let event_time = event_time::carried(received_at, v.occurred_at, &send);
            Event {
                event_time,
                ..v.enrich(id, received_at, stamp.key_id, stamp.edge.clone())
            }
        })
        .collect();
    let encoded = encode_events(&events, buffer).map_err(EdgeError::Pack)?;
    Ok((ids, encoded))
}

/// A collector's messages (read by [`crate::protocol::collector::parse`]) given ids, enriched
/// and encoded: what `deliver` takes. A message's own id (Segment's `messageId`, PostHog's
/// `uuid`) is kept or derived from; the others come from the stamp's id source.
pub fn prepare_messages(
    messages: Vec<Message<'_>>,
    collector: Collector,
    buffer: &BufferLimits,
    stamp: &Stamp<'_>,
    random: &mut dyn FnMut() -> [u8; 10],
) -> Result<(Vec<Uuid>, Vec<EncodedEvent>), EdgeError> {
    let source = collector.source();
    let ids = collector::assign_ids(&messages, source, stamp.key_id, &stamp.id_source(), random);
    // A message's own send time, or its body's, comes before the request's.
    let messages = messages
        .into_iter()
        .map(|m| Message {
            send: m.send.or_request(stamp.sent_at),
            ..m
        })
        .collect();
    let events = collector::into_events(
        messages,
        &ids,
        source,
        stamp.received_at(),
        stamp.key_id,
        stamp.edge.clone(),
    );
    let encoded = encode_events(&events, buffer).map_err(EdgeError::Pack)?;
    Ok((ids, encoded))
}

#[cfg(test)]
mod tests {
    // `prepare` on broken single-object bodies: the error is the one `parse` gives when it checks
    // every event before validation sees it (`checked_first`), pinned here for the cases a client
    // is likely to send and compared for every truncation and one-byte edit of an event.

    use spillway_shared::{Code, Problem};

    use super::*;
    use crate::protocol::events::parse;

    fn stamp() -> Stamp<'static> {
        Stamp {
            key_id: "web",
            idempotency_key: None,
            now_ms: 1_795_852_800_000,
            edge: Some(EdgeInfo {
                colo: Some("FRA".into()),
                country: None,
                ..Default::default()
            }),
            sent_at: None,
        }
    }

    /// Distinct random bytes for every id, the same sequence on every call.
    fn counter() -> impl FnMut() -> [u8; 10] {
        let mut n = 0u8;
        move || {
            n = n.wrapping_add(1);
            [n; 10]
        }
    }

    fn fast(body: &[u8], limits: &RequestLimits) -> Result<Prepared, EdgeError> {
        prepare(
            body,
            Format::Json,
            limits,
            &BufferLimits::default(),
            &crate::testkit::envelope_key(),
            &stamp(),
            &mut counter(),
        )
    }

    /// The request path with every event checked to be well-formed JSON before validation.
    fn checked_first(body: &[u8], limits: &RequestLimits) -> Result<Prepared, EdgeError> {
        let items = parse(body, Format::Json, limits)?;
        prepare_events(
            &items,
            limits,
            &BufferLimits::default(),
            &crate::testkit::envelope_key(),
            &stamp(),
            &mut counter(),
        )
    }

    /// Both paths refuse each body with exactly the error given.
    #[track_caller]
    fn both_refuse(cases: &[(&str, EdgeError)], limits: &RequestLimits) {
        for (body, expected) in cases {
            assert_eq!(
                fast(body.as_bytes(), limits),
                Err(expected.clone()),
                "{body}"
            );
            assert_eq!(
                checked_first(body.as_bytes(), limits),
                Err(expected.clone()),
                "{body}"
            );
        }
    }

    fn invalid_json(message: &str) -> EdgeError {
        EdgeError::InvalidJson {
            message: message.to_owned(),
            index: None,
        }
    }

    fn problem(code: Code, message: &str, field: Option<&str>) -> EdgeError {
        EdgeError::Invalid(vec![Problem {
            code,
            message: message.to_owned(),
            index: Some(0),
            field: field.map(str::to_owned),
        }])
    }

    /// The events a request's encoded events decode to.
    fn decoded(encoded: &[EncodedEvent]) -> Vec<Event> {
        encoded
            .iter()
            .map(|e| serde_json::from_str(&e.text).expect("an event"))
            .collect()
    }

    #[test]
    fn a_send_time_corrects_events_and_only_then_travels() {
        let limits = RequestLimits::default();
        // The edge clock is 2026-11-28T08:00:00Z; the client's is an hour fast.
        let body = [
            r#"{"type":"a","timestamp":"2026-11-28T08:59:58.000Z"}"#,
            r#"{"type":"b"}"#,
        ];
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&Utc)
        };
        let sent = Stamp {
            sent_at: Some(at("2026-11-28T09:00:00Z")),
            ..stamp()
        };
        let (_, encoded) = prepare_encoded(
            &body,
            &limits,
            &BufferLimits::default(),
            &sent,
            &mut counter(),
        )
        .expect("valid");
        let events = decoded(&encoded);
        assert_eq!(events[0].occurred_at, Some(at("2026-11-28T08:59:58Z")));
        assert_eq!(events[0].event_time, Some(at("2026-11-28T07:59:58Z")));
        // No timestamp: the consumer derives `received_at`; nothing travels.
        assert_eq!(events[1].event_time, None);
        // Without a send time the envelope is what it always was.
        let (_, plain) = prepare_encoded(
            &body,
            &limits,
            &BufferLimits::default(),
            &stamp(),
            &mut counter(),
        )
        .expect("valid");
        assert!(decoded(&plain).iter().all(|e| e.event_time.is_none()));
        assert!(plain.iter().all(|e| !e.text.contains("event_time")));

        // A collector: the body's own send time wins over the request's.
        let messages = |text| {
            crate::protocol::collector::parse(
                text,
                Collector::Posthog,
                &limits,
                at("2026-11-28T08:00:00Z"),
            )
            .expect("valid")
            .messages
        };
        let own = br#"{"sent_at":"2026-11-28T07:00:00Z","batch":[{"event":"e","distinct_id":"d","timestamp":"2026-11-28T06:59:59Z"}]}"#;
        let bare = br#"[{"event":"e","distinct_id":"d","timestamp":"2026-11-28T08:59:59Z"}]"#;
        for (text, want) in [
            (&own[..], "2026-11-28T07:59:59Z"),
            (&bare[..], "2026-11-28T07:59:59Z"),
        ] {
            let (_, encoded) = prepare_messages(
                messages(text),
                Collector::Posthog,
                &BufferLimits::default(),
                &sent,
                &mut counter(),
            )
            .expect("valid");
            assert_eq!(decoded(&encoded)[0].event_time, Some(at(want)));
        }
    }

    #[test]
    fn malformed_single_objects_are_invalid_json_without_an_index() {
        let limits = RequestLimits::default();
        let cases = [
        (
            r#"{"type":"a""#,
            invalid_json("EOF while parsing an object at line 1 column 11"),
        ),
        (
            r#"{"type":"a",}"#,
            invalid_json("key must be a string at line 1 column 13"),
        ),
        (
            r#"{type:"a"}"#,
            invalid_json("key must be a string at line 1 column 2"),
        ),
        (
            r#"{"type":"a"} x"#,
            invalid_json("trailing characters at line 1 column 14"),
        ),
        (
            r#"{"type":"a"}{"type":"b"}"#,
            invalid_json("trailing characters at line 1 column 13"),
        ),
        (
            r#"{"type":"a","data":{"s":"\x"}}"#,
            invalid_json("invalid escape at line 1 column 27"),
        ),
        (
            "{\"type\":\"a\u{1}\"}",
            invalid_json("control character (\\u0000-\\u001F) found while parsing a string at line 1 column 10"),
        ),
        // Malformed after a repeated key: the body is not JSON, whatever else is wrong.
        (
            r#"{"type":"a","type":"b","#,
            invalid_json("EOF while parsing an object at line 1 column 23"),
        ),
        // Not objects at all, and broken.
        (r#""abc"#, invalid_json("EOF while parsing a string at line 1 column 4")),
        ("tru", invalid_json("EOF while parsing a value at line 1 column 3")),
    ];
        both_refuse(&cases, &limits);
    }

    #[test]
    fn well_formed_single_objects_keep_their_validation_errors() {
        let limits = RequestLimits::default();
        let cases = [
            (
                r#"{"type":"a","type":"b"}"#,
                problem(
                    Code::InvalidJson,
                    "duplicate key `type` at line 1 column 23",
                    None,
                ),
            ),
            (
                r#"{"type":"a","\ud800":1}"#,
                problem(
                    Code::InvalidJson,
                    "unexpected end of hex escape at line 1 column 20",
                    None,
                ),
            ),
            (
                "42",
                problem(
                    Code::InvalidEvent,
                    "an event must be a JSON object, not a number",
                    None,
                ),
            ),
            (
                r#"{"type":"a","data":{"s":"\u0000"}}"#,
                problem(
                    Code::InvalidField,
                    "`data.s` contains U+0000 (NUL), which PostgreSQL cannot store",
                    Some("data"),
                ),
            ),
        ];
        both_refuse(&cases, &limits);
    }

    #[test]
    fn nesting_past_the_parser_and_the_limit_is_too_deep() {
        let limits = RequestLimits::default();
        for levels in [40, 130, 300] {
            let body = format!(
                r#"{{"type":"t","data":{{"a":{}1{}}}}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            );
            let expected = problem(
                Code::TooDeep,
                "event nests more than 32 levels deep; the limit is 32",
                Some("data"),
            );
            assert_eq!(
                fast(body.as_bytes(), &limits),
                Err(expected.clone()),
                "{levels}"
            );
            assert_eq!(
                checked_first(body.as_bytes(), &limits),
                Err(expected),
                "{levels}"
            );
            // Unclosed: malformed, whatever its depth.
            let open = &body[..body.len() - 1];
            let err = fast(open.as_bytes(), &limits).expect_err("unclosed");
            assert!(
                matches!(&err, EdgeError::InvalidJson { index: None, .. }),
                "{levels}: {err:?}"
            );
            assert_eq!(checked_first(open.as_bytes(), &limits), Err(err));
        }
    }

    /// Every prefix of an event and every one-byte deletion or replacement of it answer exactly
    /// as when the body is checked before validation.
    #[test]
    fn every_truncation_and_edit_answers_as_when_checked_first() {
        let limits = RequestLimits::default();
        let event = r#" {"type":"page_view","id":"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10","timestamp":"2026-11-28T07:59:00.123Z","data":{"s":"a\"b\\\u00e9\ud83d\ude00","n":[1,-0.5e3,true,false,null],"o":{}}} "#;
        let fast_ok = fast(event.as_bytes(), &limits).expect("the event is valid");
        assert_eq!(fast_ok.ids.len(), 1);
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        for cut in 0..event.len() {
            bodies.push(event.as_bytes()[..cut].to_vec());
            let mut deleted = event.as_bytes().to_vec();
            deleted.remove(cut);
            bodies.push(deleted);
            for byte in [b'"', b'{', b'}', b',', b':', b'\\', b'x', b'1', b' '] {
                let mut replaced = event.as_bytes().to_vec();
                replaced[cut] = byte;
                bodies.push(replaced);
            }
        }
        let mut malformed = 0;
        for body in &bodies {
            let expected = checked_first(body, &limits);
            if matches!(expected, Err(EdgeError::InvalidJson { index: None, .. })) {
                malformed += 1;
            }
            assert_eq!(
                fast(body, &limits),
                expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Most edits break the JSON; the comparison above covered those.
        assert!(
            malformed > bodies.len() / 2,
            "{malformed} of {}",
            bodies.len()
        );
    }
}
