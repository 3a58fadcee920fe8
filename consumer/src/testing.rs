//! The consumer's test fixtures, written once for its unit tests, its integration tests
//! (`consumer/tests`) and the fuzz targets: an event, and a message body carrying events as the
//! edge seals them. Never used by a deployment (the key that seals them is public: see
//! [`crate::keys::testing`]).
//!
//! A test that needs another value of a field says so where it builds its event
//! (`Event { received_at: .., ..event(1) }`), so what it depends on is in sight.

use chrono::DateTime;
use spillway_shared::{pack, BufferLimits, Event};
use uuid::Uuid;

use crate::keys::testing::test_key;

/// Event `n`: id `n` as a UUID, a `page_view` of key `web`, occurred 9 s before it was
/// received at 2026-11-28T07:59:59Z, data naming `n`.
pub fn event(n: u128) -> Event {
    let at = |ms| DateTime::from_timestamp_millis(ms).unwrap_or_default();
    Event {
        id: Uuid::from_u128(n),
        event_type: "page_view".into(),
        occurred_at: Some(at(1_795_852_790_000)),
        received_at: at(1_795_852_799_000),
        key_id: "web".into(),
        edge: None,
        source: Default::default(),
        data: serde_json::json!({"n": n as u64, "path": "/"})
            .to_string()
            .parse()
            .unwrap_or_else(|e| panic!("the fixture's data is JSON: {e}")),
    }
}

/// One message body carrying `events`, sealed with the test key; panics unless the packer
/// put them all in one message.
pub fn body(events: &[Event]) -> String {
    let batches = pack(events, &BufferLimits::default(), &test_key())
        .unwrap_or_else(|e| panic!("the fixture's events pack: {e}"));
    assert_eq!(batches.len(), 1);
    assert_eq!(
        batches[0].entries.len(),
        1,
        "events must fit in one message"
    );
    batches[0].entries[0].body.clone()
}
