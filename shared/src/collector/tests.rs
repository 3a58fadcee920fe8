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
