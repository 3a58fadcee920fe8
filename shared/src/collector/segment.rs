//! Segment's HTTP tracking API: `/v1/batch` bodies `{"batch": [...], "writeKey": ...}` and the
//! single-message bodies of `/v1/track`, `/v1/identify`, ... (also spoken by RudderStack's and
//! Jitsu's SDKs).
//!
//! Segment's own limits apply: 32 KB per message and 500 KB per request, besides Spillway's
//! [`RequestLimits`]. A message needs a `userId` or an `anonymousId`, as Segment requires; a `track`
//! needs its `event` name. A single-message call's type is its path's: a `type` in the body
//! that names another is refused, not stored as a row whose `type` and `data.type` disagree.
//! A message's `writeKey` is taken out of what is stored ([`KEY_PLACES`]).
//!
//! Historical imports: Segment documents no marker (its API takes old timestamps on any call),
//! so Spillway's window for live traffic would refuse them. A batch sent to `/v1/import`
//! ([`Call::Import`], a batch body) is an import and may carry timestamps back to the Unix
//! epoch ([`Window::Historical`]); point an SDK's path option there to import (analytics-node's
//! `path: '/v1/import'`).

use chrono::{DateTime, Utc};

use super::{
    array_elements, check_all, check_message, event_name, object_fields, one_key, Body,
    BodyProblem, KeyPlaces, Kind, SendFields, Window,
};
use crate::event::Source;
use crate::limits::RequestLimits;

/// Segment's limit on one message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Segment's limit on one request, in bytes (after decompression).
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

/// Where a message carries the write key: `writeKey` at its top level (a single call's body is
/// the message; a batch's own `writeKey` is in no message, but libraries that batch single
/// calls leave one in each).
pub const KEY_PLACES: KeyPlaces = KeyPlaces {
    top: &["writeKey"],
    nested: &[],
};

/// The protocol these messages come by.
pub const SOURCE: Source = Source::Segment;

/// The message types of the tracking API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl MessageType {
    pub const ALL: [MessageType; 6] = [
        MessageType::Track,
        MessageType::Identify,
        MessageType::Page,
        MessageType::Screen,
        MessageType::Group,
        MessageType::Alias,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Track => "track",
            MessageType::Identify => "identify",
            MessageType::Page => "page",
            MessageType::Screen => "screen",
            MessageType::Group => "group",
            MessageType::Alias => "alias",
        }
    }

    pub fn from_name(name: &str) -> Option<MessageType> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// Which call a body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `/v1/batch` (`/v1/b`): messages of any type under `batch`.
    Batch,
    /// `/v1/import`: a batch body that is a historical import (old timestamps accepted).
    Import,
    /// `/v1/track` (`/v1/t`) and the others: the body is one message of this type.
    Single(MessageType),
}

/// Reads a Segment body (decoded, UTF-8). `now` is the edge clock.
pub fn parse<'a>(
    body: &'a str,
    call: Call,
    limits: &RequestLimits,
    now: DateTime<Utc>,
) -> Result<Body<'a>, BodyProblem> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(BodyProblem::TooLarge {
            limit: MAX_BATCH_BYTES,
        });
    }
    let body = body.trim_matches(|c: char| c.is_ascii_whitespace());
    if body.is_empty() {
        return Err(BodyProblem::Empty);
    }
    let top = object_fields(body).map_err(|m| BodyProblem::Malformed(format!("the body {m}")))?;
    let string = |fields: &super::Fields<'_>, name| {
        fields
            .string(name)
            .map_err(BodyProblem::Malformed)
            .map(Option::unwrap_or_default)
    };
    let mut keys = vec![string(&top, "writeKey")?];
    let raws = match call {
        Call::Single(_) => vec![body],
        Call::Batch | Call::Import => match top.get("batch") {
            Some(b) => array_elements(b.get())
                .map_err(|e| BodyProblem::Malformed(format!("`batch` must be an array: {e}")))?,
            None => {
                return Err(BodyProblem::Malformed(
                    "a /v1/batch body needs a `batch` array of messages".to_owned(),
                ))
            }
        },
    };
    if matches!(call, Call::Batch | Call::Import) {
        // A message may carry the key itself (libraries that batch single calls).
        for raw in &raws {
            if let Ok(fields) = object_fields(raw) {
                keys.push(fields.string("writeKey").ok().flatten().unwrap_or_default());
            }
        }
    }
    let key = one_key(keys)?;
    let window = match call {
        Call::Import => Window::Historical,
        Call::Batch | Call::Single(_) => Window::Live,
    };
    let max_bytes = MAX_MESSAGE_BYTES.min(limits.max_event_bytes);
    // Segment's `sentAt`: a message's own, else the batch's (analytics-node and analytics-next
    // put it on the batch, a single call has it in its body, which is the message).
    let send = SendFields::of_body("sentAt", Some(&top), false);
    let messages = check_all(&raws, limits, |raw, index| {
        check_message(
            raw,
            index,
            max_bytes,
            limits,
            (now, window, &send),
            &KEY_PLACES,
            |f| kind(f, call),
        )
    })?;
    Ok(Body { key, messages })
}

fn kind(fields: &super::Fields<'_>, call: Call) -> Result<Kind, (String, String)> {
    let message_type = match call {
        Call::Single(t) => {
            // Segment's API takes the type from the path; a body naming another type is a
            // client bug, and storing it would give a row whose `type` contradicts its `data`.
            match fields.string("type").map_err(|m| ("type".to_owned(), m))? {
                Some(name) if name != t.as_str() => {
                    return Err((
                        "type".to_owned(),
                        format!(
                            "`type` is {:?}, but this path takes {} messages: send the message to its own type's path or to /v1/batch, or leave `type` out",
                            name.chars().take(40).collect::<String>(),
                            t.as_str(),
                        ),
                    ))
                }
                _ => t,
            }
        }
        Call::Batch | Call::Import => {
            let name = fields
                .string("type")
                .map_err(|m| ("type".to_owned(), m))?
                .ok_or_else(|| ("type".to_owned(), "`type` is required".to_owned()))?;
            MessageType::from_name(&name).ok_or_else(|| {
                (
                    "type".to_owned(),
                    format!(
                        "`type` must be one of track, identify, page, screen, group, alias; got {:?}",
                        name.chars().take(40).collect::<String>()
                    ),
                )
            })?
        }
    };
    if !fields.has_id("userId") && !fields.has_id("anonymousId") {
        return Err((
            "userId".to_owned(),
            "a message needs a `userId` or an `anonymousId`".to_owned(),
        ));
    }
    let event_type = match message_type {
        MessageType::Track => {
            let event = fields
                .string("event")
                .map_err(|m| ("event".to_owned(), m))?
                .ok_or_else(|| {
                    (
                        "event".to_owned(),
                        "a track needs its `event` name".to_owned(),
                    )
                })?;
            event_name(&event, "event")?
        }
        other => other.as_str().to_owned(),
    };
    Ok(Kind {
        event_type,
        id_field: "messageId",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::MessageId;
    use crate::event::Code;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T08:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    fn parse_ok(body: &str, call: Call) -> Body<'_> {
        parse(body, call, &RequestLimits::default(), now()).expect("valid")
    }

    fn problems(body: &str, call: Call) -> Vec<crate::Problem> {
        match parse(body, call, &RequestLimits::default(), now()) {
            Err(BodyProblem::Invalid(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    /// What `@segment/analytics-node` 3.1.0 sends (its `Publisher`), shortened.
    const NODE_BATCH: &str = r#"{"batch":[
        {"userId":"u-1","event":"Order Completed","properties":{"total":12.5},"type":"track",
         "context":{"library":{"name":"@segment/analytics-node","version":"3.1.0"}},
         "timestamp":"2026-11-28T07:59:58.250Z","integrations":{},
         "messageId":"node-next-1764316798250-4e1c8a7b-0d9a-4d2c-9f7e-3c1b2a6d5e4f",
         "_metadata":{"jsRuntime":"node"}},
        {"anonymousId":"a-1","traits":{"plan":"pro"},"type":"identify",
         "timestamp":"2026-11-28T07:59:59.000Z",
         "messageId":"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10"},
        {"userId":"u-1","type":"page","name":"Pricing","properties":{}}
    ],"writeKey":"k-1","sentAt":"2026-11-28T08:00:00.000Z"}"#;

    #[test]
    fn node_sdk_batch() {
        let b = parse_ok(NODE_BATCH, Call::Batch);
        assert_eq!(b.key.as_deref(), Some("k-1"));
        assert_eq!(b.messages.len(), 3);
        let [track, identify, page] = &b.messages[..] else {
            panic!("three messages")
        };
        assert_eq!(track.event_type, "Order Completed");
        assert_eq!(
            track.occurred_at.map(|t| t.to_rfc3339()),
            Some("2026-11-28T07:59:58.250+00:00".to_owned())
        );
        assert!(matches!(&track.id, MessageId::Text(t) if t.starts_with("node-next-")));
        assert!(track.raw.starts_with(r#"{"userId":"u-1""#) && track.raw.ends_with('}'));
        assert_eq!(identify.event_type, "identify");
        assert!(matches!(identify.id, MessageId::Uuid(_)));
        assert_eq!(page.event_type, "page");
        assert_eq!(page.id, MessageId::Absent);
        assert_eq!(page.occurred_at, None);
    }

    #[test]
    fn single_calls_take_their_type_from_the_path() {
        let b = parse_ok(
            r#"{"userId":"u","groupId":"g","writeKey":"k-2"}"#,
            Call::Single(MessageType::Group),
        );
        assert_eq!(b.key.as_deref(), Some("k-2"));
        assert_eq!(b.messages[0].event_type, "group");
        let b = parse_ok(
            r#"{"anonymousId":"a","event":"Signed Up"}"#,
            Call::Single(MessageType::Track),
        );
        assert_eq!(b.key, None);
        assert_eq!(b.messages[0].event_type, "Signed Up");
    }

    #[test]
    fn write_key_in_a_single_message_is_not_stored() {
        let body = r#"{"userId":"u","event":"Signed Up","writeKey":"k-1","properties":{"n":1e400,"writeKey":"kept: not a key place"}}"#;
        let b = parse_ok(body, Call::Single(MessageType::Track));
        assert_eq!(b.key.as_deref(), Some("k-1"));
        assert_eq!(b.messages[0].raw, body);
        assert_eq!(
            b.messages[0].data,
            r#"{"userId":"u","event":"Signed Up","properties":{"n":1e400,"writeKey":"kept: not a key place"}}"#
        );
    }

    #[test]
    fn write_key_inside_batch_messages_is_not_stored() {
        let body = r#"{"writeKey":"k-1","batch":[
            {"writeKey":"k-1","userId":"u","type":"page","name":"P\u00e9"},
            {"userId":"u","type":"identify","traits":{"plan":"pro"}}]}"#;
        let b = parse_ok(body, Call::Batch);
        assert_eq!(b.key.as_deref(), Some("k-1"));
        let data: Vec<&str> = b.messages.iter().map(|m| m.data.as_ref()).collect();
        assert_eq!(
            data,
            [
                r#"{"userId":"u","type":"page","name":"P\u00e9"}"#,
                r#"{"userId":"u","type":"identify","traits":{"plan":"pro"}}"#,
            ]
        );
    }

    #[test]
    fn a_single_call_refuses_a_type_of_another_path() {
        let p = problems(
            r#"{"userId":"u","type":"track","event":"e"}"#,
            Call::Single(MessageType::Identify),
        );
        assert_eq!(
            (p[0].index, p[0].code, p[0].field.as_deref()),
            (Some(0), Code::InvalidField, Some("type"))
        );
        assert!(p[0].message.contains("identify"), "{}", p[0].message);
        let p = problems(
            r#"{"userId":"u","type":7}"#,
            Call::Single(MessageType::Page),
        );
        assert_eq!(p[0].field.as_deref(), Some("type"));
        // The path's own type, or none, is fine.
        for body in [
            r#"{"userId":"u","type":"identify"}"#,
            r#"{"userId":"u","type":null}"#,
            r#"{"userId":"u"}"#,
        ] {
            let b = parse_ok(body, Call::Single(MessageType::Identify));
            assert_eq!(b.messages[0].event_type, "identify", "{body}");
        }
    }

    #[test]
    fn invalid_messages_are_named() {
        let p = problems(
            r#"{"batch":[{"userId":"u","type":"track","event":"ok"},
                          {"type":"track","event":"no user"},
                          {"userId":"u","type":"track"},
                          {"userId":"u","type":"launch"},
                          {"userId":"u","type":"page","timestamp":"yesterday"},
                          {"userId":"u","type":"page","messageId":7},
                          "not an object"]}"#,
            Call::Batch,
        );
        let at: Vec<(Option<usize>, Code, Option<&str>)> = p
            .iter()
            .map(|p| (p.index, p.code, p.field.as_deref()))
            .collect();
        assert_eq!(
            at,
            vec![
                (Some(1), Code::MissingField, Some("userId")),
                (Some(2), Code::MissingField, Some("event")),
                (Some(3), Code::InvalidField, Some("type")),
                (Some(4), Code::InvalidField, Some("timestamp")),
                (Some(5), Code::InvalidField, Some("messageId")),
                (Some(6), Code::InvalidEvent, None),
            ]
        );
    }

    #[test]
    fn segment_size_limits() {
        let big = format!(
            r#"{{"batch":[{{"userId":"u","type":"track","event":"e","properties":{{"s":"{}"}}}}]}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        let p = problems(&big, Call::Batch);
        assert_eq!((p[0].index, p[0].code), (Some(0), Code::EventTooLarge));
        // Just under 32 KB is fine.
        let fits = format!(
            r#"{{"batch":[{{"userId":"u","type":"track","event":"e","properties":{{"s":"{}"}}}}]}}"#,
            "x".repeat(MAX_MESSAGE_BYTES - 100)
        );
        assert_eq!(parse_ok(&fits, Call::Batch).messages.len(), 1);
        // Our own limit applies when it is lower.
        let tight = RequestLimits {
            max_event_bytes: 1000,
            ..RequestLimits::default()
        };
        assert!(matches!(
            parse(&fits, Call::Batch, &tight, now()),
            Err(BodyProblem::Invalid(p)) if p[0].code == Code::EventTooLarge
        ));
        let message = format!(
            r#"{{"userId":"u","type":"track","event":"e","properties":{{"s":"{}"}}}}"#,
            "x".repeat(20 * 1024)
        );
        let over = format!(r#"{{"batch":[{}]}}"#, vec![message; 26].join(","));
        assert_eq!(
            parse(&over, Call::Batch, &RequestLimits::default(), now()),
            Err(BodyProblem::TooLarge {
                limit: MAX_BATCH_BYTES
            })
        );
    }

    #[test]
    fn malformed_bodies() {
        for body in ["[]", "{", r#"{"batch":{}}"#, r#"{"writeKey":"k"}"#, "42"] {
            assert!(
                matches!(
                    parse(body, Call::Batch, &RequestLimits::default(), now()),
                    Err(BodyProblem::Malformed(_))
                ),
                "{body}"
            );
        }
        assert_eq!(
            parse(
                r#"{"batch":[]}"#,
                Call::Batch,
                &RequestLimits::default(),
                now()
            ),
            Err(BodyProblem::Empty)
        );
        assert_eq!(
            parse(" ", Call::Batch, &RequestLimits::default(), now()),
            Err(BodyProblem::Empty)
        );
        assert_eq!(
            parse(
                r#"{"writeKey":"a","batch":[{"userId":"u","type":"page","writeKey":"b"}]}"#,
                Call::Batch,
                &RequestLimits::default(),
                now()
            ),
            Err(BodyProblem::ConflictingKeys)
        );
    }

    #[test]
    fn what_postgres_cannot_store_is_refused() {
        let p = problems(
            r#"{"batch":[{"userId":"u","type":"identify","traits":{"n":"a\u0000b"}}]}"#,
            Call::Batch,
        );
        assert_eq!(p[0].code, Code::InvalidField);
        let p = problems(
            r#"{"batch":[{"userId":"u","type":"identify","userId":"v"}]}"#,
            Call::Batch,
        );
        assert_eq!(p[0].code, Code::InvalidEvent);
    }

    #[test]
    fn an_import_batch_may_be_older_than_the_window() {
        let body = r#"{"writeKey":"k","batch":[{"type":"track","event":"E","userId":"u","timestamp":"2018-06-01T00:00:00Z"}]}"#;
        let p = problems(body, Call::Batch);
        assert_eq!(p[0].code, Code::TimestampOutOfRange);
        let b = parse_ok(body, Call::Import);
        assert_eq!(b.key.as_deref(), Some("k"));
        assert_eq!(
            b.messages[0].occurred_at.map(|t| t.to_rfc3339()),
            Some("2018-06-01T00:00:00+00:00".to_owned())
        );
        let future = r#"{"batch":[{"type":"track","event":"E","userId":"u","timestamp":"2026-12-01T00:00:00Z"}]}"#;
        assert_eq!(
            problems(future, Call::Import)[0].code,
            Code::TimestampOutOfRange
        );
    }
}
