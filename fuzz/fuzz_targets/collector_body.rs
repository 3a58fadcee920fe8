//! The collector routes' body path on arbitrary bodies: decoding (base64, gzip by its magic
//! bytes, with the decompression cap), then Segment's or PostHog's protocol, ids, enrichment
//! and packing, in the order the handler runs them for a collector route.
//!
//! The first byte picks the route and the settings: `% 8` the route (0 PostHog, 1 Segment
//! `/v1/batch`, 2..=7 Segment's single calls), bit `0x40` adds `?compression=base64` (PostHog),
//! bit `0x80` swaps the default limits for tiny ones so every limit is hit. The rest is the body.
//!
//! Properties: never panics; every refusal is a `400` on these routes (the SDKs drop what will
//! never pass instead of retrying it), except two different keys in the body (`401
//! conflicting_keys`, as for a wrong key); every accepted message has a type of 1 to 128
//! characters without NUL, is within the event limit and is JSON (by syntax, numbers of any
//! size); its stored `data` is JSON too, no longer than the message, and holds no member where
//! the protocol carries a key (taking keys out again changes nothing); what is accepted packs
//! into messages that decode back to exactly the events, with the protocol as their `source`.
#![no_main]

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use spillway_edge::protocol::collector::{decode_body, parse};
use spillway_edge::protocol::Collector;
use spillway_edge::EdgeError;
use spillway_shared::collector::segment::{Call, MessageType};
use spillway_shared::collector::{assign_ids, into_events, posthog, segment, without_keys};
use spillway_shared::{
    open, pack, BufferLimits, IdSource, Keyring, PackError, RequestLimits, SigningKey, Unsigned,
    MAX_TYPE_CHARS,
};

const NOW_MS: u64 = 1_795_852_800_000;

fn small() -> (RequestLimits, BufferLimits) {
    let request = RequestLimits {
        max_body_bytes: 512,
        max_decompressed_bytes: 1024,
        max_event_bytes: 200,
        max_events_per_request: 3,
        max_json_depth: 4,
    };
    let buffer = BufferLimits {
        // 200 + ENRICHMENT_BYTES + ENVELOPE_OVERHEAD_BYTES: one event of the limit per message.
        bytes_per_entry: 872,
        bytes_per_call: 1744,
        ..BufferLimits::default()
    };
    (request, buffer)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let collector = match sel % 8 {
        0 => Collector::Posthog,
        1 => Collector::Segment(Call::Batch),
        n => Collector::Segment(Call::Single(MessageType::ALL[usize::from(n - 2)])),
    };
    let (limits, buffer) = if sel & 0x80 != 0 {
        small()
    } else {
        (RequestLimits::default(), BufferLimits::default())
    };
    assert_eq!(spillway_shared::limits::validate(&limits, &buffer), Ok(()));
    if body.len() > limits.max_body_bytes {
        return; // the edge refuses it before reading (payload_too_large)
    }
    let query = (sel & 0x40 != 0).then_some("compression=base64");
    let refused = |e: EdgeError| {
        let reply = e.reply_collector();
        let status = if e == EdgeError::ConflictingKeys {
            401
        } else {
            400
        };
        assert_eq!(reply.status, status, "{e:?} -> {}", reply.body);
        assert!(reply.body.contains(reply.code));
    };
    let decoded = match decode_body(body.to_vec(), None, None, query, collector, &limits) {
        Ok(d) => d,
        Err(e) => return refused(e),
    };
    assert!(decoded.len() <= limits.max_decompressed_bytes.max(body.len()));
    let now = DateTime::from_timestamp_millis(NOW_MS as i64).expect("time");
    let parsed = match parse(&decoded, collector, &limits, now) {
        Ok(b) => b,
        Err(e) => return refused(e),
    };
    assert!(!parsed.messages.is_empty());
    assert!(parsed.messages.len() <= limits.max_events_per_request);
    for m in &parsed.messages {
        let chars = m.event_type.chars().count();
        assert!((1..=MAX_TYPE_CHARS).contains(&chars), "{:?}", m.event_type);
        assert!(!m.event_type.contains('\0'));
        assert!(m.raw.len() <= limits.max_event_bytes);
        // JSON by syntax: numbers are kept as the client wrote them and PostgreSQL's numeric
        // takes far more than f64 (`1e400`), so a `Value` (f64 numbers) is the wrong oracle.
        assert!(
            serde_json::from_str::<&RawValue>(m.raw).is_ok(),
            "{}",
            m.raw
        );
        assert!(
            serde_json::from_str::<&RawValue>(&m.data).is_ok(),
            "{}",
            m.data
        );
        assert!(m.data.len() <= m.raw.len());
        let places = match collector {
            Collector::Posthog => &posthog::KEY_PLACES,
            Collector::Segment(_) => &segment::KEY_PLACES,
        };
        assert_eq!(
            without_keys(&m.data, places).as_deref(),
            Ok(m.data.as_ref())
        );
    }
    let mut n = 0u8;
    let mut random = || {
        n = n.wrapping_add(1);
        [n; 10]
    };
    let source = collector.source();
    let ids = assign_ids(
        &parsed.messages,
        source,
        "web",
        &IdSource::Generated { unix_ms: NOW_MS },
        &mut random,
    );
    let events = into_events(parsed.messages, &ids, source, now, "web", None);
    assert!(events.iter().all(|e| e.source == source));
    let key = SigningKey::new("fuzz", &[b'k'; 32]).expect("key");
    let batches = match pack(&events, &buffer, &key) {
        Ok(b) => b,
        // An event near the limit whose name, now also its `type`, is long may outgrow a
        // message under tiny limits: refused whole, never cut.
        Err(e @ PackError::EventTooLarge { .. }) => return refused(EdgeError::Pack(e)),
        Err(e) => panic!("{e}"),
    };
    let back: Vec<_> = batches
        .iter()
        .flat_map(|b| &b.entries)
        .flat_map(|e| {
            open(&e.body, &Keyring::new(vec![key.clone()], Unsigned::Refuse))
                .expect("our own envelope opens")
        })
        .collect();
    assert_eq!(back, events);
});
