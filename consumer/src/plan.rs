//! The pure core of an invocation: one delivered batch of buffered records in (any
//! [`BufferedRecord`]: an SQS message or a Kinesis record), their events and per-record
//! failures out.
//!
//! No I/O and no clock: [`Plan::from_records`] verifies and decodes each record on its own
//! (one bad body never fails its neighbours; one whose seal does not verify is never stored),
//! [`mod@crate::write`] decides what to insert, and [`Plan::response`] turns the failures into
//! the `batchItemFailures` Lambda expects of an SQS batch (the Kinesis handler reports by
//! sequence number instead, [`crate::kinesis`]).

use std::collections::HashMap;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use chrono::{DateTime, Utc};
use spillway_shared::{open, DecodeError, Event, Keyring};
use thiserror::Error;

use crate::source::BufferedRecord;
use crate::store::StoreError;

/// Why one record is reported as failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordFailure {
    /// The record has no body at all. Permanent.
    #[error("record has no body")]
    MissingBody,
    /// The record has no id (SQS: message id), so it cannot be acknowledged on its own.
    #[error("record has no message id")]
    MissingMessageId,
    /// The body is not an envelope this build reads, or its seal does not verify under the
    /// consumer's keys. Permanent: it goes to the DLQ, where `spillway-dlq` says why.
    #[error("undecodable body: {0}")]
    Undecodable(#[from] DecodeError),
    /// Writing its events failed; [`StoreError::kind`] says whether a retry can help.
    #[error("write failed: {0}")]
    Store(StoreError),
}

impl RecordFailure {
    /// Whether delivering the same record again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RecordFailure::MissingBody | RecordFailure::Undecodable(_) => false,
            // Failing it fails the whole batch (see `Plan::response`), which is retried.
            RecordFailure::MissingMessageId => true,
            RecordFailure::Store(e) => e.is_retryable(),
        }
    }

    /// A short stable label for logs.
    pub fn label(&self) -> &'static str {
        match self {
            RecordFailure::MissingBody => "missing_body",
            RecordFailure::MissingMessageId => "missing_message_id",
            RecordFailure::Undecodable(DecodeError::Seal(_)) => "unverified",
            RecordFailure::Undecodable(_) => "undecodable",
            RecordFailure::Store(e) if e.is_retryable() => "store_retryable",
            RecordFailure::Store(_) => "store_data",
        }
    }
}

/// A record whose body decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// Position of the record in the delivered batch.
    pub index: usize,
    /// Its [`BufferedRecord::record_id`] (SQS: the message id).
    pub record_id: String,
    pub events: Vec<Event>,
}

/// A record that is reported as failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub index: usize,
    /// `None` only if SQS sent a record without an id (never in practice); see
    /// [`Plan::response`].
    pub record_id: Option<String>,
    pub reason: RecordFailure,
}

/// What one invocation has to do, and what already went wrong.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub batch_size: usize,
    pub accepted: Vec<Accepted>,
    pub failed: Vec<Failed>,
}

impl Plan {
    /// Verifies and decodes every record on its own, with `keys`.
    pub fn from_records<R: BufferedRecord>(records: &[R], keys: &Keyring) -> Self {
        let mut plan = Plan {
            batch_size: records.len(),
            ..Plan::default()
        };
        for (index, record) in records.iter().enumerate() {
            let decoded = match record.body() {
                None => Err(RecordFailure::MissingBody),
                Some(body) => decode(body, keys),
            };
            match (decoded, record.record_id()) {
                (Ok(events), Some(record_id)) => plan.accepted.push(Accepted {
                    index,
                    record_id: record_id.to_owned(),
                    events,
                }),
                // Without a message id the record cannot be acknowledged on its own; it is
                // still decoded so that the reason is logged, and failed as a whole.
                (Ok(_), None) => plan.failed.push(Failed {
                    index,
                    record_id: None,
                    reason: RecordFailure::MissingMessageId,
                }),
                (Err(reason), record_id) => plan.failed.push(Failed {
                    index,
                    record_id: record_id.map(str::to_owned),
                    reason,
                }),
            }
        }
        plan
    }

    /// Marks accepted records as failed (their write failed), by record index, in one pass.
    pub fn fail_accepted(&mut self, failures: Vec<(usize, StoreError)>) {
        if failures.is_empty() {
            return;
        }
        let mut by_index: HashMap<usize, StoreError> = failures.into_iter().collect();
        let accepted = std::mem::take(&mut self.accepted);
        for record in accepted {
            match by_index.remove(&record.index) {
                Some(error) => self.failed.push(Failed {
                    index: record.index,
                    record_id: Some(record.record_id),
                    reason: RecordFailure::Store(error),
                }),
                None => self.accepted.push(record),
            }
        }
        self.failed.sort_by_key(|f| f.index);
    }

    /// The answer to Lambda: one `batchItemFailures` entry per failed record.
    ///
    /// A failed record without a message id is reported with an empty identifier, which Lambda
    /// treats as a failure of the whole batch: every record comes back, and the `ON CONFLICT`
    /// insert makes that harmless.
    pub fn response(&self) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for failed in &self.failed {
            response.add_failure(failed.record_id.clone().unwrap_or_default());
        }
        response
    }

    /// The oldest `received_at` among the events of the accepted records.
    pub fn oldest_received_at(&self) -> Option<DateTime<Utc>> {
        self.accepted
            .iter()
            .flat_map(|a| a.events.iter().map(|e| e.received_at))
            .min()
    }
}

/// The events of one body: an envelope is JSON, and JSON is UTF-8 (RFC 8259), so a body that
/// is not UTF-8 is not JSON. (SQS bodies are strings, so only another buffer can send one.)
fn decode(body: &[u8], keys: &Keyring) -> Result<Vec<Event>, RecordFailure> {
    let body = std::str::from_utf8(body)
        .map_err(|e| DecodeError::InvalidJson(format!("body is not UTF-8: {e}")))?;
    Ok(open(body, keys)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testing::test_keyring;
    use crate::source::oldest_sent_at;
    use crate::store::FailureKind;
    use crate::testing::{body, event};
    use aws_lambda_events::event::sqs::SqsMessage;

    fn record(id: &str, body: Option<String>) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = body;
        m
    }

    #[test]
    fn a_message_shared_by_several_requests_keeps_each_events_own_key_id() {
        // The edge's group commit puts the events of many requests, of any keys, in one
        // message: each event carries its own id and key id, nothing is per message.
        let mut events: Vec<Event> = (1..=4).map(event).collect();
        events[1].key_id = "mobile".into();
        events[3].key_id = "app".into();
        let plan = Plan::from_records(&[record("shared", Some(body(&events)))], &test_keyring());
        assert_eq!(plan.accepted.len(), 1);
        let got: Vec<(u128, &str)> = plan.accepted[0]
            .events
            .iter()
            .map(|e| (e.id.as_u128(), e.key_id.as_str()))
            .collect();
        assert_eq!(got, [(1, "web"), (2, "mobile"), (3, "web"), (4, "app")]);
    }

    #[test]
    fn each_record_is_decoded_on_its_own() {
        let records = vec![
            record("a", Some(body(&[event(1), event(2)]))),
            record("b", Some("not json".into())),
            record("c", Some(r#"{"v":9,"events":[]}"#.into())),
            record("d", None),
            record("e", Some(body(&[event(3)]))),
        ];
        let plan = Plan::from_records(&records, &test_keyring());
        assert_eq!(plan.batch_size, 5);
        let ok: Vec<_> = plan.accepted.iter().map(|a| a.record_id.as_str()).collect();
        assert_eq!(ok, ["a", "e"]);
        let failed: Vec<_> = plan
            .failed
            .iter()
            .map(|f| (f.record_id.as_deref(), f.reason.label()))
            .collect();
        assert_eq!(
            failed,
            [
                (Some("b"), "undecodable"),
                (Some("c"), "undecodable"),
                (Some("d"), "missing_body")
            ]
        );
        assert!(matches!(
            plan.failed[1].reason,
            RecordFailure::Undecodable(DecodeError::UnsupportedVersion(9))
        ));
        let ids: Vec<_> = plan
            .response()
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        assert_eq!(ids, ["b", "c", "d"]);
    }

    #[test]
    fn failing_accepted_records_reports_them_in_order() {
        let records = vec![
            record("a", Some(body(&[event(1)]))),
            record("b", Some("x".into())),
            record("c", Some(body(&[event(2)]))),
        ];
        let mut plan = Plan::from_records(&records, &test_keyring());
        plan.fail_accepted(vec![(0, StoreError::unavailable("down"))]);
        assert_eq!(plan.accepted.len(), 1);
        let failed: Vec<_> = plan
            .failed
            .iter()
            .map(|f| (f.index, f.reason.is_retryable()))
            .collect();
        assert_eq!(failed, [(0, true), (1, false)]);
        assert!(matches!(
            &plan.failed[0].reason,
            RecordFailure::Store(e) if e.kind == FailureKind::Unavailable
        ));
    }

    #[test]
    fn many_failures_in_any_order_each_fail_their_own_record() {
        let records: Vec<_> = (0..2_000u128)
            .map(|n| record(&format!("m{n}"), Some(body(&[event(n + 1)]))))
            .collect();
        let mut plan = Plan::from_records(&records, &test_keyring());
        // Every odd record failed, reported in reverse, plus an index that is not accepted.
        let mut failures: Vec<_> = (0..2_000)
            .filter(|i| i % 2 == 1)
            .rev()
            .map(|i| (i, StoreError::unavailable("down")))
            .collect();
        failures.push((5_000, StoreError::unavailable("down")));
        plan.fail_accepted(failures);
        assert_eq!(plan.accepted.len(), 1_000);
        assert!(plan.accepted.iter().all(|a| a.index % 2 == 0));
        let failed: Vec<_> = plan.failed.iter().map(|f| f.index).collect();
        assert_eq!(
            failed,
            (0..2_000).filter(|i| i % 2 == 1).collect::<Vec<_>>()
        );
        assert_eq!(plan.failed[0].record_id.as_deref(), Some("m1"));
    }

    /// Anyone who can send to the queue could write rows with any `key_id`: a body the edge
    /// did not seal, or one altered after sealing, is failed for good (towards the DLQ), alone.
    #[test]
    fn unsealed_or_altered_bodies_are_never_accepted() {
        let good = body(&[event(1)]);
        let altered = good.replacen(r#""key_id":"web""#, r#""key_id":"victim""#, 1);
        assert_ne!(altered, good);
        let unsigned = r#"{"v":1,"events":[{"id":"00000000-0000-0000-0000-000000000009","type":"t","received_at":"2020-01-01T00:00:00Z","key_id":"victim","data":{}}]}"#;
        let records = [
            record("good", Some(good)),
            record("altered", Some(altered)),
            record("unsigned", Some(unsigned.to_owned())),
        ];
        let plan = Plan::from_records(&records, &test_keyring());
        assert_eq!(plan.accepted.len(), 1);
        assert_eq!(plan.accepted[0].record_id, "good");
        assert_eq!(plan.failed.len(), 2);
        for failed in &plan.failed {
            assert!(matches!(
                failed.reason,
                RecordFailure::Undecodable(DecodeError::Seal(_))
            ));
            assert!(!failed.reason.is_retryable());
            assert_eq!(failed.reason.label(), "unverified");
        }
        // While an upgrade drains, unsigned bodies may be accepted; altered ones never.
        let draining = Keyring::new(
            vec![crate::keys::testing::test_key()],
            spillway_shared::Unsigned::Accept,
        );
        let plan = Plan::from_records(&records, &draining);
        let accepted: Vec<&str> = plan.accepted.iter().map(|a| a.record_id.as_str()).collect();
        assert_eq!(accepted, ["good", "unsigned"]);
    }

    #[test]
    fn good_record_without_id_is_retryable() {
        let mut r = record("x", Some(body(&[event(1)])));
        r.message_id = None;
        let plan = Plan::from_records(&[r], &test_keyring());
        assert!(plan.accepted.is_empty());
        assert_eq!(plan.failed[0].reason, RecordFailure::MissingMessageId);
        assert!(plan.failed[0].reason.is_retryable());
    }

    #[test]
    fn record_without_id_fails_the_whole_batch() {
        let mut r = record("x", Some("bad".into()));
        r.message_id = None;
        let plan = Plan::from_records(&[r], &test_keyring());
        let response = plan.response();
        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(response.batch_item_failures[0].item_identifier, "");
    }

    #[test]
    fn lags_use_the_oldest_record_and_event() {
        // Event `n` received `n` seconds after the epoch.
        let event = |n: u128| Event {
            received_at: DateTime::from_timestamp_millis(1_000 * n as i64).unwrap_or_default(),
            event_time: None,
            ..event(n)
        };
        let mut a = record("a", Some(body(&[event(5), event(2)])));
        a.attributes
            .insert("SentTimestamp".into(), "1700000000500".into());
        let mut b = record("b", Some(body(&[event(3)])));
        b.attributes
            .insert("SentTimestamp".into(), "1700000000100".into());
        let c = record("c", Some(body(&[event(9)])));
        let records = vec![a, b, c];
        assert_eq!(
            oldest_sent_at(&records),
            DateTime::from_timestamp_millis(1_700_000_000_100)
        );
        let plan = Plan::from_records(&records, &test_keyring());
        assert_eq!(
            plan.oldest_received_at(),
            DateTime::from_timestamp_millis(2_000)
        );
        assert_eq!(oldest_sent_at::<SqsMessage>(&[]), None);
    }
}
