//! PostHog's capture API: bodies `{"api_key"|"token": ..., "batch": [...]}`, a bare array of
//! events, or one event; the key may also sit in each event (`api_key`, `token`,
//! `properties.token`). Every one of those places is taken out of what is stored
//! ([`KEY_PLACES`]), with `properties.api_key` too.
//!
//! PostHog's own limit on one event is what its capture service can produce to Kafka:
//! `message.max.bytes`, 1,000,000 bytes by default (`KAFKA_PRODUCER_MESSAGE_MAX_BYTES` in
//! `rust/capture`); Spillway's [`RequestLimits`] (64 KiB by default) are lower and apply on top. An
//! event needs its `event` name and a `distinct_id`, as PostHog requires.
//!
//! A batch body with `"historical_migration": true` (posthog-node's `historicalMigration`
//! option, PostHog's own importers) is a historical import: its events may be older than the
//! live window ([`Window::Historical`]), as PostHog's capture service routes such batches to
//! its historical topic instead of refusing them. Only a batch body can say so: PostHog reads
//! the flag from the request, never from one event.

use chrono::{DateTime, Utc};

use super::{
    array_elements, check_all, check_message, event_name, object_fields, one_key, Body,
    BodyProblem, Fields, KeyPlaces, Kind, SendFields, Window,
};
use crate::event::Source;
use crate::limits::RequestLimits;

/// PostHog's limit on one event, in bytes.
pub const MAX_EVENT_BYTES: usize = 1_000_000;

/// The protocol these events come by.
pub const SOURCE: Source = Source::Posthog;

/// Where an event carries the project key: `api_key` and `token` at its top level (a single
/// capture's body is the event, key included), and `properties.token` (posthog-js and
/// posthog-node put it there); `properties.api_key` is no PostHog field, but it names the key
/// too, so it is not stored either.
pub const KEY_PLACES: KeyPlaces = KeyPlaces {
    top: &["api_key", "token"],
    nested: &[("properties", &["token", "api_key"])],
};

/// The keys a JSON object names (`api_key`, `token`).
fn keys_in(fields: &Fields<'_>) -> Vec<String> {
    ["api_key", "token"]
        .into_iter()
        .filter_map(|name| fields.string(name).ok().flatten())
        .collect()
}

/// Reads a PostHog body (decoded, UTF-8). `now` is the edge clock.
pub fn parse<'a>(
    body: &'a str,
    limits: &RequestLimits,
    now: DateTime<Utc>,
) -> Result<Body<'a>, BodyProblem> {
    let body = body.trim_matches(|c: char| c.is_ascii_whitespace());
    if body.is_empty() {
        return Err(BodyProblem::Empty);
    }
    let mut keys = Vec::new();
    let mut window = Window::Live;
    let mut send = SendFields::of_body("sent_at", None, true);
    let raws = if body.starts_with('[') {
        array_elements(body).map_err(|e| BodyProblem::Malformed(format!("the body: {e}")))?
    } else {
        let top =
            object_fields(body).map_err(|m| BodyProblem::Malformed(format!("the body {m}")))?;
        match top.get("batch") {
            Some(b) => {
                keys.extend(keys_in(&top));
                send = SendFields::of_body("sent_at", Some(&top), true);
                if top
                    .get("historical_migration")
                    .is_some_and(|v| v.get() == "true")
                {
                    window = Window::Historical;
                }
                array_elements(b.get())
                    .map_err(|e| BodyProblem::Malformed(format!("`batch` must be an array: {e}")))?
            }
            None => vec![body],
        }
    };
    for raw in &raws {
        let Ok(fields) = object_fields(raw) else {
            continue;
        };
        keys.extend(keys_in(&fields));
        if let Some(props) = fields
            .get("properties")
            .and_then(|p| object_fields(p.get()).ok())
        {
            keys.extend(props.string("token").ok().flatten());
        }
    }
    let key = one_key(keys)?;
    let max_bytes = MAX_EVENT_BYTES.min(limits.max_event_bytes);
    let messages = check_all(&raws, limits, |raw, index| {
        check_message(
            raw,
            index,
            max_bytes,
            limits,
            (now, window, &send),
            &KEY_PLACES,
            kind,
        )
    })?;
    Ok(Body { key, messages })
}

fn kind(fields: &Fields<'_>) -> Result<Kind, (String, String)> {
    let event = fields
        .string("event")
        .map_err(|m| ("event".to_owned(), m))?
        .ok_or_else(|| {
            (
                "event".to_owned(),
                "an event needs its `event` name".to_owned(),
            )
        })?;
    let event_type = event_name(&event, "event")?;
    let in_properties = fields
        .get("properties")
        .and_then(|p| object_fields(p.get()).ok())
        .is_some_and(|p| p.has_id("distinct_id"));
    if !fields.has_id("distinct_id") && !in_properties {
        return Err((
            "distinct_id".to_owned(),
            "an event needs a `distinct_id` (or `properties.distinct_id`)".to_owned(),
        ));
    }
    Ok(Kind {
        event_type,
        id_field: "uuid",
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

    fn parse_ok(body: &str) -> Body<'_> {
        parse(body, &RequestLimits::default(), now()).expect("valid")
    }

    /// What `posthog-node` 5.70.0 sends to `/batch/` (its `sendBatch`), shortened.
    const NODE_BATCH: &str = r#"{"api_key":"phc_k","batch":[
        {"distinct_id":"u-1","event":"order completed","properties":{"total":12.5,
          "$lib":"posthog-node","$lib_version":"5.70.0","$geoip_disable":true},
         "type":"capture","library":"posthog-node","library_version":"5.70.0",
         "timestamp":"2026-11-28T07:59:58.250Z","uuid":"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10"},
        {"distinct_id":"u-1","event":"$identify","properties":{"$set":{"plan":"pro"}},
         "type":"identify","timestamp":"2026-11-28T07:59:59.000Z",
         "uuid":"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a11"}
    ],"sent_at":"2026-11-28T08:00:00.000Z"}"#;

    #[test]
    fn node_sdk_batch() {
        let b = parse_ok(NODE_BATCH);
        assert_eq!(b.key.as_deref(), Some("phc_k"));
        assert_eq!(b.messages.len(), 2);
        assert_eq!(b.messages[0].event_type, "order completed");
        assert_eq!(b.messages[1].event_type, "$identify");
        assert!(matches!(b.messages[0].id, MessageId::Uuid(_)));
        assert!(b.messages[0].occurred_at.is_some());
        assert!(b.messages[1].raw.contains(r#""$set":{"plan":"pro"}"#));
    }

    #[test]
    fn every_body_shape_and_key_place() {
        let b = parse_ok(r#"{"token":"t","batch":[{"event":"e","distinct_id":"d"}]}"#);
        assert_eq!(b.key.as_deref(), Some("t"));
        let b = parse_ok(
            r#"[{"event":"a","distinct_id":"d","api_key":"t"},{"event":"b","distinct_id":"d"}]"#,
        );
        assert_eq!((b.key.as_deref(), b.messages.len()), (Some("t"), 2));
        let b = parse_ok(r#"{"event":"$pageview","properties":{"distinct_id":"d","token":"t"}}"#);
        assert_eq!(b.key.as_deref(), Some("t"));
        assert_eq!(b.messages[0].event_type, "$pageview");
        assert_eq!(b.messages[0].id, MessageId::Absent);
        let b = parse_ok(r#"{"event":"e","distinct_id":42,"uuid":"not-a-uuid"}"#);
        assert_eq!(b.key, None);
        assert_eq!(b.messages[0].id, MessageId::Text("not-a-uuid".into()));
        assert_eq!(
            parse(
                r#"[{"event":"a","distinct_id":"d","token":"t"},{"event":"b","distinct_id":"d","properties":{"token":"u"}}]"#,
                &RequestLimits::default(),
                now()
            ),
            Err(BodyProblem::ConflictingKeys)
        );
    }

    /// The stored text of each message of a valid body.
    fn stored(body: &str) -> Vec<String> {
        parse_ok(body)
            .messages
            .into_iter()
            .map(|m| m.data.into_owned())
            .collect()
    }

    #[test]
    fn top_level_api_key_is_not_stored() {
        // A single capture: the body is the event, key included.
        let body = r#"{"api_key":"phc_k","event":"e","distinct_id":"d","properties":{"n":1e400}}"#;
        assert_eq!(parse_ok(body).key.as_deref(), Some("phc_k"));
        assert_eq!(
            stored(body),
            [r#"{"event":"e","distinct_id":"d","properties":{"n":1e400}}"#]
        );
        // In each event of a bare array.
        assert_eq!(
            stored(
                r#"[{"event":"a","distinct_id":"d","api_key":"phc_k"},{"event":"b","distinct_id":"d"}]"#
            ),
            [
                r#"{"event":"a","distinct_id":"d"}"#,
                r#"{"event":"b","distinct_id":"d"}"#
            ]
        );
    }

    #[test]
    fn top_level_token_is_not_stored() {
        let body = r#"{"event":"e","token":"phc_k","distinct_id":"d","uuid":"u-1"}"#;
        assert_eq!(parse_ok(body).key.as_deref(), Some("phc_k"));
        assert_eq!(
            stored(body),
            [r#"{"event":"e","distinct_id":"d","uuid":"u-1"}"#]
        );
        // Spelled with an escape, as PostgreSQL would read it: still the key.
        let body = r#"{"event":"e","distinct_id":"d","tok\u0065n":"phc_k"}"#;
        assert_eq!(parse_ok(body).key.as_deref(), Some("phc_k"));
        assert_eq!(stored(body), [r#"{"event":"e","distinct_id":"d"}"#]);
    }

    #[test]
    fn properties_token_in_a_batch_event_is_not_stored() {
        let body = r#"{"api_key":"phc_k","batch":[
            {"event":"e","distinct_id":"d","properties":{"token":"phc_k","$lib":"web","n":18446744073709551616,"s":"\u00e9\n"}},
            {"event":"f","distinct_id":"d","properties":{"api_key":"phc_k"}}]}"#;
        assert_eq!(parse_ok(body).key.as_deref(), Some("phc_k"));
        assert_eq!(
            stored(body),
            [
                r#"{"event":"e","distinct_id":"d","properties":{"$lib":"web","n":18446744073709551616,"s":"\u00e9\n"}}"#,
                r#"{"event":"f","distinct_id":"d","properties":{}}"#,
            ]
        );
    }

    #[test]
    fn properties_token_in_a_single_capture_is_not_stored() {
        // What posthog-js sends to /e/: the key only in `properties.token`.
        let body = r#"{"event":"$pageview","properties":{"distinct_id":"d","token":"phc_k","$current_url":"https://x.example/"},"timestamp":"2026-11-28T07:59:58Z"}"#;
        let b = parse_ok(body);
        assert_eq!(b.key.as_deref(), Some("phc_k"));
        // The id source still sees the message as sent (ids derived from its text are stable).
        assert_eq!(b.messages[0].raw, body);
        assert_eq!(
            b.messages[0].data,
            r#"{"event":"$pageview","properties":{"distinct_id":"d","$current_url":"https://x.example/"},"timestamp":"2026-11-28T07:59:58Z"}"#
        );
        // A message without a key is stored byte for byte.
        let plain = r#"{ "event" : "e", "distinct_id":"d" }"#;
        assert!(
            matches!(parse_ok(plain).messages[0].data, std::borrow::Cow::Borrowed(t) if t == plain)
        );
    }

    #[test]
    fn invalid_events_are_named() {
        let p = match parse(
            r#"[{"event":"ok","distinct_id":"d"},{"distinct_id":"d"},{"event":"e"},
                {"event":"e","distinct_id":"d","timestamp":"2020-01-01T00:00:00Z"},
                {"event":"e","distinct_id":"d","uuid":{}}, 3]"#,
            &RequestLimits::default(),
            now(),
        ) {
            Err(BodyProblem::Invalid(p)) => p,
            other => panic!("{other:?}"),
        };
        let at: Vec<(Option<usize>, Code)> = p.iter().map(|p| (p.index, p.code)).collect();
        assert_eq!(
            at,
            vec![
                (Some(1), Code::MissingField),
                (Some(2), Code::MissingField),
                (Some(3), Code::TimestampOutOfRange),
                (Some(4), Code::InvalidField),
                (Some(5), Code::InvalidEvent),
            ]
        );
    }

    #[test]
    fn event_limit_is_the_lower_of_posthogs_and_ours() {
        let event = |n| {
            format!(
                r#"{{"event":"e","distinct_id":"d","properties":{{"s":"{}"}}}}"#,
                "x".repeat(n)
            )
        };
        let ours = RequestLimits::default().max_event_bytes;
        assert!(parse(&event(ours - 100), &RequestLimits::default(), now()).is_ok());
        assert!(matches!(
            parse(&event(ours), &RequestLimits::default(), now()),
            Err(BodyProblem::Invalid(p)) if p[0].code == Code::EventTooLarge
        ));
        let roomy = RequestLimits {
            max_event_bytes: 1024 * 1024,
            ..RequestLimits::default()
        };
        assert!(parse(&event(MAX_EVENT_BYTES - 100), &roomy, now()).is_ok());
        assert!(matches!(
            parse(&event(MAX_EVENT_BYTES), &roomy, now()),
            Err(BodyProblem::Invalid(p)) if p[0].code == Code::EventTooLarge
        ));
    }

    #[test]
    fn malformed_bodies() {
        for body in ["{", "[1,", r#"{"batch":"x"}"#, "\"str\""] {
            assert!(
                matches!(
                    parse(body, &RequestLimits::default(), now()),
                    Err(BodyProblem::Malformed(_))
                ),
                "{body}"
            );
        }
        assert_eq!(
            parse("[]", &RequestLimits::default(), now()),
            Err(BodyProblem::Empty)
        );
        assert_eq!(
            parse(
                r#"{"api_key":"k","batch":[]}"#,
                &RequestLimits::default(),
                now()
            ),
            Err(BodyProblem::Empty)
        );
    }

    #[test]
    fn a_historical_migration_batch_may_be_older_than_the_window() {
        let old = r#"{"event":"e","distinct_id":"d","timestamp":"2019-03-01T12:00:00Z"}"#;
        let live = format!(r#"{{"api_key":"k","batch":[{old}]}}"#);
        let Err(BodyProblem::Invalid(p)) = parse(&live, &RequestLimits::default(), now()) else {
            panic!("a live batch keeps the window");
        };
        assert_eq!(p[0].code, Code::TimestampOutOfRange);
        let import = format!(r#"{{"api_key":"k","historical_migration":true,"batch":[{old}]}}"#);
        let b = parse_ok(&import);
        assert_eq!(
            b.messages[0].occurred_at.map(|t| t.to_rfc3339()),
            Some("2019-03-01T12:00:00+00:00".to_owned())
        );
        // Only `true` marks an import; the future stays refused; an event cannot mark itself.
        for body in [
            format!(r#"{{"api_key":"k","historical_migration":false,"batch":[{old}]}}"#),
            r#"{"api_key":"k","historical_migration":true,"batch":[{"event":"e","distinct_id":"d","timestamp":"2026-12-01T08:00:00Z"}]}"#.to_owned(),
            r#"{"api_key":"k","historical_migration":true,"batch":[{"event":"e","distinct_id":"d","timestamp":"1969-12-31T23:59:59Z"}]}"#.to_owned(),
            r#"[{"event":"e","distinct_id":"d","historical_migration":true,"timestamp":"2019-03-01T12:00:00Z"}]"#.to_owned(),
        ] {
            let Err(BodyProblem::Invalid(p)) = parse(&body, &RequestLimits::default(), now())
            else {
                panic!("{body}");
            };
            assert_eq!(p[0].code, Code::TimestampOutOfRange, "{body}");
        }
    }
}
