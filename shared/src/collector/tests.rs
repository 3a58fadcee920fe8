//! Tests of the collector messages: reading, mapping to events, ids, and their envelope.

use super::*;

#[test]
fn message_ids_are_stable_and_distinct() {
    let a = message_id(Source::Segment, "web", "node-next-1-abc");
    assert_eq!(a, message_id(Source::Segment, "web", "node-next-1-abc"));
    assert_eq!(a.get_version_num(), 5);
    assert_ne!(a, message_id(Source::Segment, "app", "node-next-1-abc"));
    assert_ne!(a, message_id(Source::Posthog, "web", "node-next-1-abc"));
    assert_ne!(a, message_id(Source::Segment, "web", "node-next-1-abd"));
    // Length prefixes keep the boundaries apart.
    assert_ne!(
        message_id(Source::Segment, "ab", "c"),
        message_id(Source::Segment, "a", "bc")
    );
}

#[test]
fn message_id_is_pinned() {
    // Changing this makes SDK retries across a deploy store their messages twice.
    assert_eq!(
        message_id(Source::Segment, "web", "node-next-1-abc").to_string(),
        "a65bb8e3-c4b9-5fdb-972a-a14155287eb5"
    );
}

#[test]
fn uuid_message_ids_are_kept_and_others_derived() {
    assert_eq!(
        MessageId::from_text("0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10".into()),
        MessageId::Uuid(Uuid::from_u128(0x0192f0c1_7a44_7cc3_9e2b_6d1c4b6f2a10))
    );
    // Upper case is a UUID too.
    assert!(matches!(
        MessageId::from_text("0192F0C1-7A44-7CC3-9E2B-6D1C4B6F2A10".into()),
        MessageId::Uuid(_)
    ));
    for text in [
        "00000000-0000-0000-0000-000000000000",
        "0192f0c17a447cc39e2b6d1c4b6f2a10",
        "{0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10}",
        "ajs-next-1764316800000-3a59cd1f",
    ] {
        assert!(
            matches!(MessageId::from_text(text.into()), MessageId::Text(_)),
            "{text}"
        );
    }
}

#[test]
fn ids_by_kind_of_message_id() {
    let raw = r#"{"type":"track"}"#;
    let msg = |id| Message {
        raw,
        data: Cow::Borrowed(raw),
        event_type: "x".into(),
        occurred_at: None,
        send: Default::default(),
        id,
    };
    let u = Uuid::from_u128(0x0192f0c1_7a44_7cc3_9e2b_6d1c4b6f2a10);
    let messages = [
        msg(MessageId::Uuid(u)),
        msg(MessageId::Text("m-1".into())),
        msg(MessageId::Absent),
    ];
    let fallback = IdSource::Idempotency {
        key_id: "web",
        idempotency_key: "req-1",
    };
    let mut no_random = || panic!("no random bytes with an Idempotency-Key");
    let ids = assign_ids(&messages, Source::Segment, "web", &fallback, &mut no_random);
    assert_eq!(ids[0], u);
    assert_eq!(ids[1], message_id(Source::Segment, "web", "m-1"));
    assert_eq!(ids[2], crate::derive_id("web", "req-1", 2, raw));
    let mut drawn = 0;
    let mut random = || {
        drawn += 1;
        [7; 10]
    };
    let ids = assign_ids(
        &messages[2..],
        Source::Segment,
        "web",
        &IdSource::Generated { unix_ms: 5 },
        &mut random,
    );
    assert_eq!(ids[0].get_version_num(), 7);
    assert_eq!(drawn, 1);
}

#[test]
fn long_event_names_are_cut_and_nul_refused() {
    let long = "é".repeat(MAX_TYPE_CHARS + 5);
    assert_eq!(
        event_name(&long, "event").expect("ok").chars().count(),
        MAX_TYPE_CHARS
    );
    assert!(event_name("a\0b", "event").is_err());
    assert!(event_name("", "event").is_err());
}

/// The envelope a collector message travels in.
mod envelope {
    use super::super::*;
    use crate::{decode, pack};

    #[test]
    fn source_travels_only_when_not_spillway() {
        use crate::seal::test_key;
        let t = DateTime::parse_from_rfc3339("2026-11-28T08:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let mut event = Event {
            id: Uuid::from_u128(1),
            event_type: "Order Completed".into(),
            occurred_at: None,
            received_at: t,
            event_time: None,
            key_id: "web".into(),
            edge: None,
            source: Source::Segment,
            data: RawJson::from_json(r#"{"type":"track"}"#).expect("json"),
        };
        let body = &pack(
            std::slice::from_ref(&event),
            &crate::limits::BufferLimits::default(),
            &test_key(),
        )
        .expect("pack")[0]
            .entries[0]
            .body;
        assert!(body.contains(r#""source":"segment""#), "{body}");
        assert_eq!(decode(body).expect("decodes"), vec![event.clone()]);
        event.source = Source::Spillway;
        let body = &pack(
            std::slice::from_ref(&event),
            &crate::limits::BufferLimits::default(),
            &test_key(),
        )
        .expect("pack")[0]
            .entries[0]
            .body;
        assert!(!body.contains("source"), "{body}");
        assert_eq!(decode(body).expect("decodes")[0].source, Source::Spillway);
    }
}

/// Event times of collector messages: corrected with their send time as the peers do.
mod event_time {
    use super::super::*;
    use crate::collector::{posthog, segment};
    use crate::limits::RequestLimits;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    /// The edge clock: the request arrived at 08:00:00.
    fn now() -> DateTime<Utc> {
        t("2026-11-28T08:00:00Z")
    }

    /// Every message's event time, as stored, and what the envelope carries.
    fn times(messages: Vec<Message<'_>>) -> Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> {
        let ids = vec![Uuid::from_u128(1); messages.len()];
        into_events(messages, &ids, Source::Segment, now(), "web", None)
            .into_iter()
            .map(|e| {
                let stored = e
                    .event_time
                    .unwrap_or(crate::event_time::derived(e.received_at, e.occurred_at));
                (stored, e.event_time)
            })
            .collect()
    }

    #[test]
    fn segment_batch_and_message_sent_at() {
        // A client clock an hour fast: batch `sentAt` 09:00:00, events 5 s and 1 s before it;
        // the third message has its own `sentAt` (an hour slow), which wins over the batch's.
        let body = r#"{"writeKey":"k","sentAt":"2026-11-28T09:00:00.000Z","batch":[
            {"type":"track","event":"A","userId":"u","timestamp":"2026-11-28T08:59:55.000Z"},
            {"type":"track","event":"B","userId":"u","timestamp":"2026-11-28T08:59:59.000Z"},
            {"type":"track","event":"C","userId":"u","timestamp":"2026-11-28T06:59:58.000Z","sentAt":"2026-11-28T07:00:00Z"},
            {"type":"track","event":"D","userId":"u"},
            {"type":"track","event":"E","userId":"u","timestamp":"2026-11-28T08:59:59.000Z","sentAt":"not a time"}]}"#;
        let b = segment::parse(body, segment::Call::Batch, &RequestLimits::default(), now())
            .expect("valid");
        // The raw values stay in `data` and `occurred_at` as sent.
        assert!(b.messages[2]
            .data
            .contains(r#""sentAt":"2026-11-28T07:00:00Z""#));
        assert_eq!(b.messages[0].occurred_at, Some(t("2026-11-28T08:59:55Z")));
        let got = times(b.messages);
        assert_eq!(
            got,
            vec![
                (t("2026-11-28T07:59:55Z"), Some(t("2026-11-28T07:59:55Z"))),
                (t("2026-11-28T07:59:59Z"), Some(t("2026-11-28T07:59:59Z"))),
                (t("2026-11-28T07:59:58Z"), Some(t("2026-11-28T07:59:58Z"))),
                // No timestamp: received_at, derived by the consumer.
                (now(), None),
                // An unreadable own `sentAt` is ignored: the batch's corrects.
                (t("2026-11-28T07:59:59Z"), Some(t("2026-11-28T07:59:59Z"))),
            ]
        );
        // A single call: its body is the message, `sentAt` included.
        let b = segment::parse(
            r#"{"userId":"u","event":"S","timestamp":"2026-11-28T07:00:00Z","sentAt":"2026-11-28T07:00:01Z"}"#,
            segment::Call::Single(segment::MessageType::Track),
            &RequestLimits::default(),
            now(),
        )
        .expect("valid");
        assert_eq!(times(b.messages)[0].0, t("2026-11-28T07:59:59Z"));
    }

    #[test]
    fn an_import_is_not_corrected() {
        let body = r#"{"sentAt":"2026-11-28T09:00:00Z","batch":[
            {"type":"track","event":"A","userId":"u","timestamp":"2018-06-01T00:00:00Z"}]}"#;
        let b = segment::parse(
            body,
            segment::Call::Import,
            &RequestLimits::default(),
            now(),
        )
        .expect("valid");
        assert!(!b.messages[0].send.correctable);
        assert_eq!(times(b.messages), vec![(t("2018-06-01T00:00:00Z"), None)]);
        let body = r#"{"api_key":"k","historical_migration":true,"sent_at":"2026-11-28T09:00:00Z","batch":[
            {"event":"e","distinct_id":"d","timestamp":"2019-03-01T12:00:00Z"}]}"#;
        let b = posthog::parse(body, &RequestLimits::default(), now()).expect("valid");
        assert_eq!(times(b.messages), vec![(t("2019-03-01T12:00:00Z"), None)]);
    }

    #[test]
    fn posthog_sent_at_offset_and_ignore_sent_at() {
        // A clock an hour slow; one event with only `offset`, one with `$ignore_sent_at`.
        let body = r#"{"api_key":"k","sent_at":"2026-11-28T07:00:00.000Z","batch":[
            {"event":"a","distinct_id":"d","timestamp":"2026-11-28T06:59:58.000Z"},
            {"event":"b","distinct_id":"d","offset":1500},
            {"event":"c","distinct_id":"d","timestamp":"2026-11-28T06:59:58.000Z","properties":{"$ignore_sent_at":true}},
            {"event":"d","distinct_id":"d","timestamp":"2026-11-28T06:59:58.000Z","offset":"soon"}]}"#;
        let b = posthog::parse(body, &RequestLimits::default(), now()).expect("valid");
        assert!(b.messages[1].data.contains(r#""offset":1500"#));
        assert_eq!(b.messages[1].occurred_at, None);
        let got: Vec<DateTime<Utc>> = times(b.messages).into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            got,
            vec![
                t("2026-11-28T07:59:58Z"),
                t("2026-11-28T07:59:58.500Z"),
                t("2026-11-28T06:59:58Z"),
                t("2026-11-28T07:59:58Z"),
            ]
        );
        // A bare array has no batch `sent_at`: the request's (`?_=`) may stand in for it.
        let b = posthog::parse(
            r#"[{"event":"a","distinct_id":"d","timestamp":"2026-11-28T06:59:58.000Z"}]"#,
            &RequestLimits::default(),
            now(),
        )
        .expect("valid");
        assert_eq!(b.messages[0].send.sent_at, None);
        let mut messages = b.messages;
        for m in &mut messages {
            m.send = m.send.or_request(Some(t("2026-11-28T07:00:00Z")));
        }
        assert_eq!(times(messages)[0].0, t("2026-11-28T07:59:58Z"));
    }
}
