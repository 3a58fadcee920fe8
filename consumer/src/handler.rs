//! The handler: a plain async function over a [`Deps`] struct built once per execution
//! environment. Lambda's `main` and the local poller both call [`handle`]; tests call it
//! directly.
//!
//! Order of work: decode every record on its own ([`Plan`]); write the events of every decoded
//! record in one transaction with one bulk statement; if the database refuses the rows
//! themselves, write message by message to find the culprit and report only it; if the
//! database is unreachable, report every decoded record as failed. The function never fails as
//! a whole: every outcome is a `batchItemFailures` list, so Lambda never retries a batch
//! because of a panic or an error return.

use std::convert::Infallible;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use tracing::{error, info, warn, Instrument};

use crate::batch::{oldest_sent_timestamp, Plan};
use crate::metrics::{emf_line, lag_ms, InvocationMetrics};
use crate::store::{EventStore, FailureKind, Row, StoreError, WriteCounts};

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
pub struct Deps<S, C = SystemClock> {
    pub store: S,
    pub clock: C,
    /// CloudWatch namespace of the EMF record.
    pub metrics_namespace: String,
    /// Value of the `Service` dimension.
    pub metrics_service: String,
}

/// What one invocation produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The answer to Lambda (or the poller).
    pub response: SqsBatchResponse,
    pub metrics: InvocationMetrics,
    /// The EMF record, one JSON line, to print to stdout.
    pub emf: String,
}

/// Handles one SQS event. Never fails: failures are per record.
pub async fn handle<S, C>(deps: &Deps<S, C>, event: &SqsEvent, request_id: &str) -> Outcome
where
    S: EventStore,
    C: Clock,
{
    let span = tracing::info_span!("invocation", request_id);
    handle_inner(deps, event, request_id).instrument(span).await
}

async fn handle_inner<S, C>(deps: &Deps<S, C>, event: &SqsEvent, request_id: &str) -> Outcome
where
    S: EventStore,
    C: Clock,
{
    let mut plan = Plan::from_records(&event.records);
    for f in &plan.failed {
        warn!(
            message_id = f.message_id.as_deref().unwrap_or(""),
            reason = %f.reason,
            kind = f.reason.label(),
            "record rejected"
        );
    }

    let write_started = deps.clock.now();
    let (counts, store_failures) = write_with_fallback(&deps.store, &plan).await;
    let db_write_ms = lag_ms(deps.clock.now(), write_started);

    let whole_batch = store_failures.len() > 1
        && store_failures.len() == plan.accepted.len()
        && store_failures.windows(2).all(|w| w[0].1 == w[1].1);
    if let (true, Some((_, e))) = (whole_batch, store_failures.first()) {
        // The database is down: one line, not one per record (batches reach 10,000).
        warn!(records = store_failures.len(), error = %e, "batch not stored, every record will be retried");
    } else {
        for (index, e) in &store_failures {
            let message_id = plan
                .accepted
                .iter()
                .find(|a| a.index == *index)
                .map(|a| a.message_id.as_str())
                .unwrap_or("");
            if e.is_retryable() {
                warn!(message_id, error = %e, "record not stored, will be retried");
            } else {
                error!(message_id, error = %e, "record refused by the database");
            }
        }
    }
    plan.fail_accepted(store_failures);

    let now = deps.clock.now();
    let metrics = InvocationMetrics {
        batch_size: plan.batch_size as u64,
        events_stored: counts.inserted,
        duplicates_skipped: counts.duplicates,
        records_failed: plan.failed.len() as u64,
        records_rejected: plan
            .failed
            .iter()
            .filter(|f| !f.reason.is_retryable())
            .count() as u64,
        db_write_ms,
        queue_lag_ms: oldest_sent_timestamp(&event.records).map(|t| lag_ms(now, t)),
        end_to_end_lag_ms: plan.oldest_received_at().map(|t| lag_ms(now, t)),
    };
    info!(
        batch_size = metrics.batch_size,
        events_stored = metrics.events_stored,
        duplicates_skipped = metrics.duplicates_skipped,
        records_failed = metrics.records_failed,
        db_write_ms = metrics.db_write_ms,
        "batch handled"
    );
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
    }
}

/// Writes the accepted records: in bulk, then message by message if the data was refused.
/// Returns what was written and the failed records (by index).
async fn write_with_fallback<S: EventStore>(
    store: &S,
    plan: &Plan,
) -> (WriteCounts, Vec<(usize, StoreError)>) {
    let (rows, in_batch_duplicates) = plan.rows();
    if rows.is_empty() {
        return (WriteCounts::default(), Vec::new());
    }
    match store.write(&rows).await {
        Ok(mut counts) => {
            counts.duplicates += in_batch_duplicates;
            (counts, Vec::new())
        }
        Err(e) if e.kind == FailureKind::Data => {
            warn!(error = %e, "bulk write refused; writing message by message to isolate it");
            drop(rows);
            isolate(store, plan).await
        }
        Err(e) => {
            let failures = plan.accepted.iter().map(|a| (a.index, e.clone())).collect();
            (WriteCounts::default(), failures)
        }
    }
}

/// One transaction per message: only the messages whose own rows are refused fail. If the
/// database goes away meanwhile, that message and all after it fail (retryable).
async fn isolate<S: EventStore>(store: &S, plan: &Plan) -> (WriteCounts, Vec<(usize, StoreError)>) {
    let mut counts = WriteCounts::default();
    let mut failures = Vec::new();
    let mut unavailable: Option<StoreError> = None;
    for accepted in &plan.accepted {
        if let Some(e) = &unavailable {
            failures.push((accepted.index, e.clone()));
            continue;
        }
        let rows: Vec<Row<'_>> = accepted
            .events
            .iter()
            .map(|event| Row {
                event,
                message_id: &accepted.message_id,
            })
            .collect();
        match store.write(&rows).await {
            Ok(c) => counts.add(c),
            Err(e) => {
                if e.kind == FailureKind::Unavailable {
                    unavailable = Some(e.clone());
                }
                failures.push((accepted.index, e));
            }
        }
    }
    (counts, failures)
}

/// The Lambda adapter: handles the event, prints the EMF record, answers the batch response.
pub async fn lambda_handler<S, C>(
    deps: &Deps<S, C>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Infallible>
where
    S: EventStore,
    C: Clock,
{
    let outcome = handle(deps, &event.payload, &event.context.request_id).await;
    println!("{}", outcome.emf);
    Ok(outcome.response)
}

#[cfg(test)]
mod tests {
    //! The handler over an in-memory store; the same behaviour against PostgreSQL is covered
    //! in `tests/`.
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    use aws_lambda_events::event::sqs::SqsMessage;
    use spillway_shared::{pack, Event, Limits};
    use uuid::Uuid;

    #[derive(Default)]
    struct MemStore {
        ids: Mutex<HashSet<Uuid>>,
        /// Event types the "database" refuses, as PostgreSQL refuses a NUL.
        poison_type: Option<&'static str>,
        down: bool,
        writes: Mutex<usize>,
    }

    impl EventStore for MemStore {
        async fn write(&self, rows: &[Row<'_>]) -> Result<WriteCounts, StoreError> {
            *self.writes.lock().expect("lock") += 1;
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
            let mut ids = self.ids.lock().expect("lock");
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

    struct FixedClock(DateTime<Utc>);
    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn deps(store: MemStore) -> Deps<MemStore, FixedClock> {
        Deps {
            store,
            clock: FixedClock(DateTime::from_timestamp_millis(10_000).unwrap_or_default()),
            metrics_namespace: "Test".into(),
            metrics_service: "svc".into(),
        }
    }

    fn event(n: u128, t: &str) -> Event {
        Event {
            id: Uuid::from_u128(n),
            event_type: t.into(),
            occurred_at: None,
            received_at: DateTime::from_timestamp_millis(4_000).unwrap_or_default(),
            key_id: "k".into(),
            edge: None,
            source: Default::default(),
            data: Default::default(),
        }
    }

    fn record(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m.attributes.insert("SentTimestamp".into(), "9000".into());
        m
    }

    fn body(events: &[Event]) -> String {
        pack(events, &Limits::default()).expect("pack")[0].entries[0]
            .body
            .clone()
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
