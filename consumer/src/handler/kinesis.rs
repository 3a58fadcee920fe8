//! [`handle_kinesis`]: one Kinesis event (Lambda's Kinesis event source, or the local poller
//! playing it), with the same decoding and write policy as an SQS batch, answered with
//! `batchItemFailures` naming sequence numbers.
//!
//! What differs from SQS is what a failure means. SQS retries only the messages reported and
//! moves one that keeps failing to its DLQ; Kinesis retries from the lowest reported sequence
//! number on, in order, and has no DLQ, so one record that can never be stored would hold its
//! shard until the mapping's retry budget ends. Hence:
//! - a record that can never be stored (no data, undecodable, unsealed or altered, or rows the
//!   database refuses, found by the write policy's record-by-record fallback) is sent to the
//!   dead-letter queue ([`crate::dead_letter`]) and counted done, not reported;
//! - a record whose write can succeed later (the database down, a timeout) is reported;
//! - a dead letter that could not be sent is reported (the record comes back and is tried
//!   again), and so is a record that cannot be stored but comes after the lowest reported one:
//!   Lambda delivers it again anyway, and its dead letter is sent then, once.
//!
//! Redelivery, and what it costs: a batch delivered again (a failure reported, the function
//! killed mid-batch) stores nothing twice (events are keyed by `(key_id, id)`), but a record
//! dead-lettered by the earlier attempt is dead-lettered again: the DLQ may hold duplicates.
//! That is harmless: redriving both puts the same events into the stream twice, and they are
//! stored once. Dead letters are sent one `SendMessage` at a time, in batch order (poison
//! records are rare; a batch made only of them costs one call each).

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use tracing::{error, warn, Instrument};

use super::{log_handled, write_plan, Clock, Deps};
use crate::dead_letter::DeadLetterSink;
use crate::kinesis::{dead_letter, Redelivery};
use crate::metrics::{emf_line, InvocationMetrics};
use crate::plan::Plan;
use crate::store::EventStore;

/// What one Kinesis invocation produced.
#[derive(Debug, Clone)]
pub struct KinesisOutcome {
    /// The answer to Lambda (or the poller): the sequence numbers to deliver again from.
    pub response: KinesisEventResponse,
    /// `records_failed` counts the reported records; `records_dead_lettered` is `Some`.
    pub metrics: InvocationMetrics,
    /// The EMF record, one JSON line, to print to stdout.
    pub emf: String,
    /// Whether a write found the database unavailable (as [`super::Outcome`]).
    pub database_unavailable: bool,
}

/// Handles one Kinesis event. Never fails: failures are per record (see the module
/// documentation for which are reported and which dead-lettered).
pub async fn handle_kinesis<S, C, D>(
    deps: &Deps<S, C, D>,
    event: &KinesisEvent,
    request_id: &str,
) -> KinesisOutcome
where
    S: EventStore,
    C: Clock,
    D: DeadLetterSink,
{
    let span = tracing::info_span!("invocation", request_id, source = "kinesis");
    handle_inner(deps, event, request_id).instrument(span).await
}

async fn handle_inner<S, C, D>(
    deps: &Deps<S, C, D>,
    event: &KinesisEvent,
    request_id: &str,
) -> KinesisOutcome
where
    S: EventStore,
    C: Clock,
    D: DeadLetterSink,
{
    let records = &event.records;
    let mut plan = Plan::from_records(records, &deps.keys);
    let (written, db_write_ms, database_unavailable) = write_plan(deps, &mut plan).await;

    // Positions in `plan.failed` of the records to report.
    let mut reported: Vec<usize> = Vec::new();
    let mut redelivery = Redelivery::default();
    for (i, f) in plan.failed.iter().enumerate() {
        if f.reason.is_retryable() {
            redelivery.report(f.record_id.as_deref());
            reported.push(i);
        }
    }
    let mut dead_lettered = 0u64;
    for (i, f) in plan.failed.iter().enumerate() {
        if f.reason.is_retryable() {
            continue;
        }
        let sequence_number = f.record_id.as_deref();
        if redelivery.covers(sequence_number) {
            // Delivered again from an earlier record anyway; dead-lettered then.
            reported.push(i);
            continue;
        }
        let Some(record) = records.get(f.index) else {
            continue;
        };
        let letter = dead_letter(record, format!("{}: {}", f.reason.label(), f.reason));
        match deps.dead_letters.send(&letter).await {
            Ok(()) => {
                dead_lettered += 1;
                warn!(
                    sequence_number = letter.sequence_number,
                    shard_id = letter.shard_id,
                    reason = %f.reason,
                    "record can never be stored; sent to the dead-letter queue"
                );
            }
            Err(e) => {
                error!(
                    sequence_number = letter.sequence_number,
                    shard_id = letter.shard_id,
                    error = %e,
                    "record can never be stored and its dead letter was not sent; reported failed"
                );
                redelivery.report(sequence_number);
                reported.push(i);
            }
        }
    }
    reported.sort_unstable();
    let mut response = KinesisEventResponse::default();
    for i in &reported {
        // An empty identifier (a record without a sequence number, never seen in practice)
        // makes Lambda retry the whole batch, which the `ON CONFLICT` insert makes harmless.
        response.add_failure(plan.failed[*i].record_id.clone().unwrap_or_default());
    }

    let now = deps.clock.now();
    let mut metrics = InvocationMetrics::of(&plan, records, written, db_write_ms, now);
    metrics.records_failed = reported.len() as u64;
    metrics.records_dead_lettered = Some(dead_lettered);
    log_handled(&metrics);
    KinesisOutcome {
        response,
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use aws_lambda_events::event::kinesis::KinesisEventRecord;
    use base64::Engine as _;
    use chrono::DateTime;
    use spillway_shared::Event;
    use uuid::Uuid;

    use super::*;
    use crate::dead_letter::attr;
    use crate::keys::testing::test_keyring;
    use crate::testing::{body, FixedClock, MemDeadLetters, MemStore};

    const STREAM: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/spillway";

    fn deps(store: MemStore, dlq: MemDeadLetters) -> Deps<MemStore, FixedClock, MemDeadLetters> {
        Deps {
            store,
            clock: FixedClock(DateTime::from_timestamp_millis(10_000).unwrap_or_default()),
            metrics_namespace: "Test".into(),
            metrics_service: "svc".into(),
            keys: test_keyring(),
            dead_letters: dlq,
        }
    }

    fn event(n: u128, t: &str) -> Event {
        Event {
            event_type: t.into(),
            ..crate::testing::event(n)
        }
    }

    /// A 129-digit sequence number ending in `n` (beyond any machine integer).
    fn seq(n: u32) -> String {
        format!("4{}{n:04}", "9".repeat(124))
    }

    /// A record shaped as Lambda delivers it, arrived at 9 s after the epoch.
    fn record(n: u32, data: &str) -> KinesisEventRecord {
        let seq = seq(n);
        serde_json::from_value(serde_json::json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": format!("pk-{n}"),
                "sequenceNumber": seq,
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "approximateArrivalTimestamp": 9.0
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("shardId-000000000002:{seq}"),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::000000000000:role/consumer",
            "awsRegion": "us-east-1",
            "eventSourceARN": STREAM
        }))
        .expect("record")
    }

    fn kinesis(records: Vec<KinesisEventRecord>) -> KinesisEvent {
        serde_json::from_value(serde_json::json!({ "Records": records })).expect("event")
    }

    fn failed(o: &KinesisOutcome) -> Vec<String> {
        o.response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone().unwrap_or_default())
            .collect()
    }

    #[tokio::test]
    async fn a_poison_record_is_dead_lettered_and_nothing_is_reported() {
        let d = deps(MemStore::default(), MemDeadLetters::default());
        let e = kinesis(vec![
            record(1, &body(&[event(1, "t"), event(2, "t")])),
            record(2, "not an envelope"),
            record(3, &body(&[event(3, "t")])),
        ]);
        let o = handle_kinesis(&d, &e, "r1").await;
        assert!(failed(&o).is_empty(), "{:?}", failed(&o));
        assert_eq!(o.metrics.events_stored, 3);
        assert_eq!(o.metrics.records_failed, 0);
        assert_eq!(o.metrics.records_rejected, 1);
        assert_eq!(o.metrics.records_dead_lettered, Some(1));
        assert_eq!(o.metrics.queue_lag_ms, Some(1_000));
        assert!(o.emf.contains("\"RecordsDeadLettered\":1"));
        let sent = d.dead_letters.sent.lock().expect("lock").clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].data, b"not an envelope");
        assert_eq!(sent[0].stream_arn, STREAM);
        assert_eq!(sent[0].shard_id, "shardId-000000000002");
        assert_eq!(sent[0].sequence_number, seq(2));
        assert_eq!(sent[0].partition_key, "pk-2");
        assert!(
            sent[0].reason.starts_with("undecodable: "),
            "{}",
            sent[0].reason
        );
        let m = sent[0].to_message();
        assert!(m.attributes.contains(&(
            attr::SOURCE,
            crate::dead_letter::AttrValue::Text("kinesis".into())
        )));

        // Delivered again (a retry of the whole batch): nothing stored twice; the poison
        // record is dead-lettered again (a duplicate dead letter; redrive is idempotent).
        let o = handle_kinesis(&d, &e, "r2").await;
        assert!(failed(&o).is_empty());
        assert_eq!(o.metrics.events_stored, 0);
        assert_eq!(o.metrics.duplicates_skipped, 3);
        assert_eq!(d.dead_letters.sequences(), [seq(2), seq(2)]);
    }

    #[tokio::test]
    async fn rows_the_database_refuses_are_dead_lettered_alone() {
        let d = deps(
            MemStore {
                poison_type: Some("bad"),
                ..MemStore::default()
            },
            MemDeadLetters::default(),
        );
        let e = kinesis(vec![
            record(1, &body(&[event(1, "t")])),
            record(2, &body(&[event(2, "t"), event(3, "bad")])),
            record(3, &body(&[event(4, "t")])),
        ]);
        let o = handle_kinesis(&d, &e, "r").await;
        assert!(failed(&o).is_empty());
        assert_eq!(o.metrics.events_stored, 2);
        let sent = d.dead_letters.sent.lock().expect("lock").clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].sequence_number, seq(2));
        assert!(
            sent[0].reason.starts_with("store_data: "),
            "{}",
            sent[0].reason
        );
        let ids = d.store.ids.lock().expect("lock");
        assert!(
            !ids.contains(&Uuid::from_u128(2)),
            "its record is all or nothing"
        );
        assert!(ids.contains(&Uuid::from_u128(4)));
    }

    #[tokio::test]
    async fn database_down_reports_every_decoded_record_and_defers_later_poison() {
        let d = deps(
            MemStore {
                down: true,
                ..MemStore::default()
            },
            MemDeadLetters::default(),
        );
        let e = kinesis(vec![
            record(1, "poison before"),
            record(2, &body(&[event(1, "t")])),
            record(3, "poison after"),
            record(4, &body(&[event(2, "t")])),
        ]);
        let o = handle_kinesis(&d, &e, "r").await;
        // Record 1 is before the checkpoint (record 2): dead-lettered now. Record 3 comes back
        // with records 2-4: reported, and dead-lettered on a later delivery.
        assert_eq!(failed(&o), [seq(2), seq(3), seq(4)]);
        assert_eq!(d.dead_letters.sequences(), [seq(1)]);
        assert_eq!(o.metrics.records_failed, 3);
        assert_eq!(o.metrics.records_rejected, 2);
        assert_eq!(o.metrics.records_dead_lettered, Some(1));
        assert_eq!(o.metrics.events_stored, 0);
    }

    #[tokio::test]
    async fn a_dead_letter_not_sent_is_reported_and_holds_what_follows() {
        let dlq = MemDeadLetters {
            refuse: HashSet::from([seq(2)]),
            ..MemDeadLetters::default()
        };
        let d = deps(MemStore::default(), dlq);
        let e = kinesis(vec![
            record(1, &body(&[event(1, "t")])),
            record(2, "poison, refused by the DLQ"),
            record(3, &body(&[event(2, "t")])),
            record(4, "poison after it"),
        ]);
        let o = handle_kinesis(&d, &e, "r").await;
        assert_eq!(failed(&o), [seq(2), seq(4)]);
        assert!(d.dead_letters.sequences().is_empty());
        assert_eq!(o.metrics.events_stored, 2, "the good records are stored");
        assert_eq!(o.metrics.records_dead_lettered, Some(0));
    }

    #[tokio::test]
    async fn the_response_is_lambdas_batch_item_failures() {
        let d = deps(
            MemStore {
                down: true,
                ..MemStore::default()
            },
            MemDeadLetters::default(),
        );
        let e = kinesis(vec![record(7, &body(&[event(1, "t")]))]);
        let o = handle_kinesis(&d, &e, "r").await;
        assert_eq!(
            serde_json::to_value(&o.response).expect("json"),
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": seq(7)}]})
        );
        let empty = handle_kinesis(&d, &kinesis(vec![]), "r").await;
        assert_eq!(
            serde_json::to_value(&empty.response).expect("json"),
            serde_json::json!({"batchItemFailures": []})
        );
        assert_eq!(*d.store.writes.lock().expect("lock"), 1);
    }
}
