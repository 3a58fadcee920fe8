//! The consumer's test fixtures, written once for its unit tests, its integration tests
//! (`consumer/tests`) and the fuzz targets: an event, a message body carrying events as the
//! edge seals them, an in-memory store and dead-letter queue, and a fixed clock. Never used by
//! a deployment (the key that seals them is public: see [`crate::keys::testing`]).
//!
//! A test that needs another value of a field says so where it builds its event
//! (`Event { received_at: .., ..event(1) }`), so what it depends on is in sight.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use spillway_shared::{pack, BufferLimits, Event};
use uuid::Uuid;

use crate::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink};
use crate::handler::Clock;
use crate::keys::testing::test_key;
use crate::store::{EventStore, FailureKind, Row, StoreError, WriteCounts};

/// Event `n`: id `n` as a UUID, a `page_view` of key `web`, occurred 9 s before it was
/// received at 2026-11-28T07:59:59Z, data naming `n`.
pub fn event(n: u128) -> Event {
    let at = |ms| DateTime::from_timestamp_millis(ms).unwrap_or_default();
    Event {
        id: Uuid::from_u128(n),
        event_type: "page_view".into(),
        occurred_at: Some(at(1_795_852_790_000)),
        received_at: at(1_795_852_799_000),
        event_time: None,
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

/// An in-memory [`EventStore`]: ids it holds, a "database" that refuses one event type (as
/// PostgreSQL refuses a NUL), or one that is down; it counts its writes.
#[derive(Debug, Default)]
pub struct MemStore {
    pub ids: Mutex<HashSet<Uuid>>,
    /// Event types the "database" refuses, with a data error.
    pub poison_type: Option<&'static str>,
    pub down: bool,
    pub writes: Mutex<usize>,
}

impl EventStore for MemStore {
    async fn probe(&self) -> Result<(), StoreError> {
        if self.down {
            return Err(StoreError::unavailable("connection refused"));
        }
        Ok(())
    }

    async fn write(&self, rows: &[Row<'_>]) -> Result<WriteCounts, StoreError> {
        *self.writes.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        if self.down {
            return Err(StoreError::unavailable("connection refused"));
        }
        if rows
            .iter()
            .any(|r| Some(r.event.event_type.as_str()) == self.poison_type)
        {
            return Err(StoreError {
                kind: FailureKind::Data,
                code: Some("22P05".into()),
                message: "refused".into(),
            });
        }
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let mut c = WriteCounts::default();
        for r in rows {
            if ids.insert(r.event.id) {
                c.inserted += 1;
            } else {
                c.duplicates += 1;
            }
        }
        Ok(c)
    }
}

/// An in-memory dead-letter queue; sends of the sequence numbers in `refuse` fail.
#[derive(Debug, Default)]
pub struct MemDeadLetters {
    pub sent: Mutex<Vec<DeadLetter>>,
    pub refuse: HashSet<String>,
}

impl MemDeadLetters {
    /// The sequence numbers sent so far, in order.
    pub fn sequences(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|l| l.sequence_number.clone())
            .collect()
    }
}

impl DeadLetterSink for MemDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        if self.refuse.contains(&letter.sequence_number) {
            return Err(DeadLetterError("refused by the fake".into()));
        }
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(letter.clone());
        Ok(())
    }
}

/// A clock that always says the same time.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}
