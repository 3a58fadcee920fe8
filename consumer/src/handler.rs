//! The handler: a plain async function over a [`Deps`] struct built once per execution
//! environment. Lambda's `main` and the local poller both call [`handle`] (an SQS event) or
//! [`handle_kinesis`] (a Kinesis event, in `handler/kinesis.rs`); tests call them directly. It
//! only runs the I/O: what to decode, write and report is decided by the pure [`Plan`] and
//! [`WritePolicy`], and for Kinesis by [`crate::kinesis`].
//!
//! Order of work: decode every record on its own ([`Plan`]); write the events of every decoded
//! record in one transaction with one bulk statement; if the database refuses the rows
//! themselves, write message by message to find the culprit and report only it; if the
//! database is unreachable, report every decoded record as failed. The function never fails as
//! a whole: every outcome is a `batchItemFailures` list, so Lambda never retries a batch
//! because of a panic or an error return.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use spillway_shared::Keyring;
use tracing::{error, info, warn, Instrument};

use crate::dead_letter::NoDeadLetters;
use crate::metrics::{emf_line, lag_ms, InvocationMetrics};
use crate::plan::Plan;
use crate::store::{EventStore, FailureKind, StoreError, WriteCounts};
use crate::write::{Recorded, WriteFailure, WritePolicy};

mod kinesis;

pub use kinesis::{handle_kinesis, KinesisOutcome};

/// The source of "now": the system clock in production, a fixed one in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Everything the handler needs, built once and reused by every invocation.
#[derive(Debug)]
pub struct Deps<S, C = SystemClock, D = NoDeadLetters> {
    pub store: S,
    pub clock: C,
    /// CloudWatch namespace of the EMF record.
    pub metrics_namespace: String,
    /// Value of the `Service` dimension.
    pub metrics_service: String,
    /// The envelope keys: only bodies sealed with one of them are stored.
    pub keys: Keyring,
    /// Where [`handle_kinesis`] puts records it can never store
    /// ([`crate::dead_letter::SqsDeadLetters`] on `DEAD_LETTER_QUEUE_URL`). SQS batches never
    /// use it: SQS moves such messages to its own DLQ after `maxReceiveCount`.
    pub dead_letters: D,
}

/// What one invocation produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The answer to Lambda (or the poller).
    pub response: SqsBatchResponse,
    pub metrics: InvocationMetrics,
    /// The EMF record, one JSON line, to print to stdout.
    pub emf: String,
    /// Whether a write found the database unavailable ([`FailureKind::Unavailable`]): what
    /// opens the poller's [`crate::breaker::Breaker`].
    pub database_unavailable: bool,
}

/// Handles one SQS event. Never fails: failures are per record.
pub async fn handle<S, C, D>(deps: &Deps<S, C, D>, event: &SqsEvent, request_id: &str) -> Outcome
where
    S: EventStore,
    C: Clock,
{
    let span = tracing::info_span!("invocation", request_id);
    handle_inner(deps, event, request_id).instrument(span).await
}

async fn handle_inner<S, C, D>(deps: &Deps<S, C, D>, event: &SqsEvent, request_id: &str) -> Outcome
where
    S: EventStore,
    C: Clock,
{
    let mut plan = Plan::from_records(&event.records, &deps.keys);
    let (written, db_write_ms, database_unavailable) = write_plan(deps, &mut plan).await;

    let now = deps.clock.now();
    let metrics = InvocationMetrics::of(&plan, &event.records, written, db_write_ms, now);
    log_handled(&metrics);
    Outcome {
        response: plan.response(),
        emf: emf_line(
            &deps.metrics_namespace,
            &deps.metrics_service,
            request_id,
            &metrics,
            now,
        ),
        metrics,
        database_unavailable,
    }
}

/// Logs the records the plan rejected, runs the write policy, and marks in `plan` the records
/// whose write failed. The same for every buffer. Returns what was written, how long the
/// writes took, and whether a write found the database unavailable.
async fn write_plan<S, C, D>(deps: &Deps<S, C, D>, plan: &mut Plan) -> (WriteCounts, u64, bool)
where
    S: EventStore,
    C: Clock,
{
    for f in &plan.failed {
        warn!(
            message_id = f.record_id.as_deref().unwrap_or(""),
            reason = %f.reason,
            kind = f.reason.label(),
            "record rejected"
        );
    }

    let write_started = deps.clock.now();
    let mut policy = WritePolicy::new(plan);
    while let Some(rows) = policy.next_write() {
        let result = deps.store.write(&rows).await;
        if let Recorded::Isolating(e) = policy.record(result) {
            warn!(error = %e, "bulk write refused; writing message by message to isolate it");
        }
    }
    let (written, failures) = policy.finish();
    let db_write_ms = lag_ms(deps.clock.now(), write_started);
    log_failures(&failures, plan.accepted.len());
    let database_unavailable = failures
        .iter()
        .any(|f| f.error.kind == FailureKind::Unavailable);
    let failures: Vec<(usize, StoreError)> = failures
        .into_iter()
        .map(|f| (f.record.index, f.error))
        .collect();
    plan.fail_accepted(failures);
    (written, db_write_ms, database_unavailable)
}

fn log_handled(metrics: &InvocationMetrics) {
    info!(
        batch_size = metrics.batch_size,
        events_stored = metrics.events_stored,
        duplicates_skipped = metrics.duplicates_skipped,
        records_failed = metrics.records_failed,
        records_dead_lettered = metrics.records_dead_lettered,
        db_write_ms = metrics.db_write_ms,
        "batch handled"
    );
}

/// One line when the whole batch failed for one reason (the database is down; batches reach
/// 10,000 records), else one line per failed record.
fn log_failures(failures: &[WriteFailure<'_>], accepted: usize) {
    let whole_batch = failures.len() > 1
        && failures.len() == accepted
        && failures.windows(2).all(|w| w[0].error == w[1].error);
    if let (true, Some(first)) = (whole_batch, failures.first()) {
        warn!(records = failures.len(), error = %first.error, "batch not stored, every record will be retried");
        return;
    }
    for f in failures {
        let message_id = f.record.record_id.as_str();
        if f.error.is_retryable() {
            warn!(message_id, error = %f.error, "record not stored, will be retried");
        } else {
            error!(message_id, error = %f.error, "record refused by the database");
        }
    }
}

#[cfg(test)]
mod tests {
    //! The handler over an in-memory store; the same behaviour against PostgreSQL is covered
    //! in `tests/`.
    use super::*;

    use crate::keys::testing::test_keyring;
    use crate::testing::{body, FixedClock, MemStore};
    use aws_lambda_events::event::sqs::SqsMessage;
    use spillway_shared::Event;
    use uuid::Uuid;

    fn deps(store: MemStore) -> Deps<MemStore, FixedClock> {
        Deps {
            store,
            clock: FixedClock(DateTime::from_timestamp_millis(10_000).unwrap_or_default()),
            metrics_namespace: "Test".into(),
            metrics_service: "svc".into(),
            keys: test_keyring(),
            dead_letters: NoDeadLetters,
        }
    }

    /// The fixture's event `n`, of type `t` (the store refuses type `bad`), received 6 s
    /// before the clock of [`deps`].
    fn event(n: u128, t: &str) -> Event {
        Event {
            event_type: t.into(),
            received_at: DateTime::from_timestamp_millis(4_000).unwrap_or_default(),
            event_time: None,
            ..crate::testing::event(n)
        }
    }

    fn record(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m.attributes.insert("SentTimestamp".into(), "9000".into());
        m
    }

    fn sqs(records: Vec<SqsMessage>) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = records;
        e
    }

    fn failed_ids(o: &Outcome) -> Vec<&str> {
        o.response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn good_duplicate_and_poison_records() {
        let d = deps(MemStore::default());
        let e = sqs(vec![
            record("a", &body(&[event(1, "t"), event(2, "t")])),
            record("b", "{}"),
            record("c", &body(&[event(2, "t"), event(3, "t")])),
        ]);
        let o = handle(&d, &e, "r1").await;
        assert_eq!(failed_ids(&o), ["b"]);
        // A poison record is not an outage: the breaker stays closed.
        assert!(!o.database_unavailable);
        assert_eq!(o.metrics.events_stored, 3);
        assert_eq!(o.metrics.duplicates_skipped, 1);
        assert_eq!(o.metrics.records_failed, 1);
        assert_eq!(o.metrics.records_rejected, 1);
        assert_eq!(o.metrics.queue_lag_ms, Some(1_000));
        assert_eq!(o.metrics.end_to_end_lag_ms, Some(6_000));
        // Delivered again: nothing new, everything a duplicate.
        let o = handle(&d, &e, "r2").await;
        assert_eq!(o.metrics.events_stored, 0);
        assert_eq!(o.metrics.duplicates_skipped, 4);
        assert!(o.emf.contains("\"RequestId\":\"r2\""));
    }

    #[tokio::test]
    async fn refused_data_is_isolated_to_its_message() {
        let d = deps(MemStore {
            poison_type: Some("bad"),
            ..MemStore::default()
        });
        let e = sqs(vec![
            record("a", &body(&[event(1, "t")])),
            record("b", &body(&[event(2, "t"), event(3, "bad")])),
            record("c", &body(&[event(4, "t")])),
        ]);
        let o = handle(&d, &e, "r").await;
        assert_eq!(failed_ids(&o), ["b"]);
        assert!(!o.database_unavailable, "refused data is not an outage");
        assert_eq!(o.metrics.events_stored, 2);
        assert_eq!(o.metrics.records_rejected, 1);
        // One bulk attempt, then one write per message.
        assert_eq!(*d.store.writes.lock().expect("lock"), 4);
        let ids = d.store.ids.lock().expect("lock");
        assert!(ids.contains(&Uuid::from_u128(1)) && ids.contains(&Uuid::from_u128(4)));
        assert!(!ids.contains(&Uuid::from_u128(2)), "b is all or nothing");
    }

    #[tokio::test]
    async fn database_down_fails_every_record_without_panicking() {
        let d = deps(MemStore {
            down: true,
            ..MemStore::default()
        });
        let e = sqs(vec![
            record("a", &body(&[event(1, "t")])),
            record("b", "nope"),
            record("c", &body(&[event(2, "t")])),
        ]);
        let o = handle(&d, &e, "r").await;
        assert_eq!(failed_ids(&o), ["a", "b", "c"]);
        assert!(o.database_unavailable, "what opens the breaker");
        assert_eq!(o.metrics.records_failed, 3);
        // Only the undecodable one is permanent.
        assert_eq!(o.metrics.records_rejected, 1);
        assert_eq!(o.metrics.events_stored, 0);
    }

    #[tokio::test]
    async fn empty_event_writes_nothing() {
        let d = deps(MemStore::default());
        let o = handle(&d, &sqs(vec![]), "r").await;
        assert!(o.response.batch_item_failures.is_empty());
        assert_eq!(o.metrics.batch_size, 0);
        assert_eq!(*d.store.writes.lock().expect("lock"), 0);
        assert_eq!(o.metrics.queue_lag_ms, None);
    }
}
