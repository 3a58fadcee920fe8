//! `spillway_shared::decode` on arbitrary message bodies.
//!
//! SQS hands the consumer whatever a sender put on the queue, so the decoder sees arbitrary
//! text. It must never panic, must only accept version 1, and whatever it accepts must survive
//! being packed again: encoding the decoded events (one message, and through the packer) and
//! decoding the result gives back the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spillway_shared::envelope::encode_event;
use spillway_shared::{
    decode, encode_message, open, pack, BufferLimits, Keyring, SigningKey, Unsigned,
};

fuzz_target!(|data: &[u8]| {
    // Message bodies are strings: SQS only carries valid Unicode (Lambda and the poller hand
    // the consumer a `String`).
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(events) = decode(body) else {
        return;
    };
    assert!(!events.is_empty(), "decode accepted an empty envelope");
    // serde_json skips unknown fields without checking their escapes (a lone surrogate there
    // is accepted), so only bodies that are strict JSON are checked for their version here.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        assert!(
            v["v"] == 1 || v["v"] == 2,
            "decode accepted a version other than 1 and 2: {body}"
        );
    }
    // Nothing the fuzzer writes carries a valid seal under this key: opening must refuse it.
    let key = SigningKey::new("fuzz", &[b'k'; 32]).expect("key");
    let keys = Keyring::new(vec![key.clone()], Unsigned::Refuse);
    assert!(open(body, &keys).is_err(), "a fuzzed body verified: {body}");

    // One message holding every event.
    let encoded: Vec<Vec<u8>> = events
        .iter()
        .map(|e| encode_event(e).expect("a decoded event encodes"))
        .collect();
    let message = encode_message(encoded.iter().map(Vec::as_slice), &key);
    let again =
        open(&message, &keys).unwrap_or_else(|e| panic!("re-encoded body fails: {e}\n{message}"));
    // Compared as they go on the wire: the envelope escapes U+FFFE and U+FFFF (SQS refuses
    // them raw), so a `data` text holding them raw comes back escaped, which is the same JSON.
    let wire = |events: &[spillway_shared::Event]| -> Vec<Vec<u8>> {
        events
            .iter()
            .map(|e| encode_event(e).expect("a decoded event encodes"))
            .collect()
    };
    assert_eq!(
        wire(&again),
        wire(&events),
        "one-message round trip changed the events\n{message}"
    );

    // Through the packer, as the edge sends them: every message decodes, in order.
    let limits = BufferLimits {
        bytes_per_entry: 1024 * 1024,
        ..BufferLimits::default()
    };
    if let Ok(batches) = pack(&events, &limits, &key) {
        let mut unpacked = Vec::with_capacity(events.len());
        for entry in batches.iter().flat_map(|b| &b.entries) {
            assert!(entry.body.len() <= limits.bytes_per_entry);
            let part = open(&entry.body, &keys)
                .unwrap_or_else(|e| panic!("packed body fails: {e}\n{}", entry.body));
            let ids: Vec<_> = part.iter().map(|e| e.id).collect();
            assert_eq!(ids, entry.event_ids);
            unpacked.extend(part);
        }
        assert_eq!(
            wire(&unpacked),
            wire(&events),
            "packed round trip changed the events"
        );
    }
});
