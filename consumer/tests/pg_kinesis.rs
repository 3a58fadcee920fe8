//! The Kinesis handler against a real PostgreSQL: AWS's documented event and one with what the
//! edge writes, a poison record in the middle of a batch (stored once around it, dead-lettered
//! with its origin, nothing reported), rows the database refuses, the database down (every
//! decoded record reported by sequence number), and batches delivered again the way Lambda's
//! Kinesis event source does (from the lowest reported sequence number on), which store
//! nothing twice.

mod common;

use aws_lambda_events::event::kinesis::KinesisEvent;
use common::*;
use spillway_consumer::dead_letter::{attr, AttrValue, DeadLetter};
use spillway_consumer::handler::handle_kinesis;
use spillway_consumer::kinesis::SeqNum;

fn fixture_event(name: &str) -> KinesisEvent {
    let raw = std::fs::read_to_string(kinesis_fixture(name)).expect("fixture");
    serde_json::from_str(&raw).expect("the documented shape parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_documented_event_dead_letters_both_records_and_stores_nothing() {
    let pg = migrated_pg().await;
    let d = kinesis_deps(&pg.url());
    let event = fixture_event("aws_documented.json");
    let o = handle_kinesis(&d, &event, "doc").await;
    // "Hello, this is a test." is not a Spillway envelope: both can never be stored.
    assert!(failed_seqs(&o).is_empty());
    assert_eq!(o.metrics.records_dead_lettered, Some(2));
    assert_eq!(o.metrics.records_rejected, 2);
    assert_eq!(stored(&pg), 0);
    let sent = d.dead_letters.sent.lock().expect("lock").clone();
    assert_eq!(sent[0].data, b"Hello, this is a test.");
    assert_eq!(sent[1].data, b"This is only a test.");
    assert_eq!(sent[0].shard_id, "shardId-000000000006");
    assert_eq!(
        sent[1].stream_arn,
        "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"
    );
    // The arrival timestamp is from 2018: the lag is years.
    assert!(o.metrics.queue_lag_ms.unwrap_or(0) > 200 * 24 * 3_600_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_in_the_middle_is_dead_lettered_and_the_rest_stored_once() {
    let pg = migrated_pg().await;
    let d = kinesis_deps(&pg.url());
    let event = fixture_event("spillway_poison.json");
    let o = handle_kinesis(&d, &event, "poison").await;
    assert_eq!(
        serde_json::to_value(&o.response).expect("json"),
        serde_json::json!({"batchItemFailures": []}),
        "nothing is reported: the shard moves on"
    );
    assert_eq!(o.metrics.events_stored, 4);
    assert_eq!(o.metrics.duplicates_skipped, 1);
    assert_eq!(stored(&pg), 4);
    // Each row keeps its record's sequence number, in the contract's column.
    assert_eq!(
        pg.psql("SELECT string_agg(right(sqs_message_id, 4), ',' ORDER BY id) FROM events")
            .expect("psql"),
        "7890,7890,7922,7938"
    );

    let sent = d.dead_letters.sent.lock().expect("lock").clone();
    assert_eq!(sent.len(), 1);
    let poison = &event.records[1];
    assert_eq!(
        sent[0].data, poison.kinesis.data.0,
        "the record itself, unchanged"
    );
    assert_eq!(sent[0].data, br#"{"v":2,"events":"not a list"}"#);
    assert_eq!(
        sent[0].stream_arn,
        "arn:aws:kinesis:us-east-1:000000000000:stream/spillway-events"
    );
    assert_eq!(sent[0].shard_id, "shardId-000000000001");
    assert_eq!(
        sent[0].sequence_number,
        "49658312345678901234567890123456789012345678901234567906"
    );
    assert_eq!(
        sent[0].partition_key,
        "0b7e4c2d-95a1-4f3e-b6d8-7a9c1e2f3d4e"
    );
    // A version-2 envelope without its seal: never stored, whoever wrote it.
    assert!(
        sent[0].reason.starts_with("unverified: "),
        "{}",
        sent[0].reason
    );
    // As an SQS message: the data is the body, the origin in attributes a tool reads back.
    let message = sent[0].to_message();
    assert_eq!(message.body, r#"{"v":2,"events":"not a list"}"#);
    let attrs = message.attributes.clone();
    let back = DeadLetter::from_message(&message.body, &move |n| {
        attrs.iter().find(|(a, _)| *a == n).map(|(_, v)| v.clone())
    })
    .expect("readable")
    .expect("a kinesis dead letter");
    assert_eq!(back, sent[0]);
    assert!(message
        .attributes
        .contains(&(attr::SOURCE, AttrValue::Text("kinesis".into()))));

    // The same batch delivered again (the function was killed before it answered): nothing
    // is stored twice; the poison record's dead letter is sent again (a duplicate, harmless:
    // redriving both stores its events once).
    let again = handle_kinesis(&d, &event, "again").await;
    assert!(failed_seqs(&again).is_empty());
    assert_eq!(again.metrics.events_stored, 0);
    assert_eq!(again.metrics.duplicates_skipped, 5);
    assert_eq!(stored(&pg), 4);
    assert_eq!(d.dead_letters.sent.lock().expect("lock").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_postgres_refuses_are_dead_lettered_alone() {
    let pg = migrated_pg().await;
    let d = kinesis_deps(&pg.url());
    let e = kinesis_event(vec![
        kinesis_record(1, body(&[event(1)]).as_bytes()),
        kinesis_record(2, body(&[event(2), nul_event(3)]).as_bytes()),
        kinesis_record(3, body(&[event(4)]).as_bytes()),
    ]);
    let o = handle_kinesis(&d, &e, "nul").await;
    assert!(failed_seqs(&o).is_empty());
    assert_eq!(stored(&pg), 2);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM events WHERE id IN ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000003')"),
        0,
        "the refused record is all or nothing"
    );
    let sent = d.dead_letters.sent.lock().expect("lock").clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].sequence_number, kinesis_seq(2));
    assert!(
        sent[0].reason.starts_with("store_data: "),
        "{}",
        sent[0].reason
    );
    assert!(sent[0].reason.contains("22P05"), "{}", sent[0].reason);
}

/// Plays Lambda's Kinesis event source: after each invocation, delivers again every record
/// from the lowest reported sequence number on (and stops when nothing is reported).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_reports_every_decoded_record_then_redelivery_stores_each_once() {
    let pg = migrated_pg().await;
    pg.stop().expect("stop");
    let d = kinesis_deps(&pg.url());
    let records = vec![
        kinesis_record(1, body(&[event(1), event(2)]).as_bytes()),
        kinesis_record(2, b"poison"),
        kinesis_record(3, body(&[event(2), event(3)]).as_bytes()),
        kinesis_record(4, body(&[event(4)]).as_bytes()),
    ];
    let e = kinesis_event(records.clone());
    let o = handle_kinesis(&d, &e, "down").await;
    // Every decoded record, by sequence number; the poison record comes after the lowest
    // one, so it comes back anyway and is reported too, not dead-lettered yet.
    assert_eq!(
        failed_seqs(&o),
        [
            kinesis_seq(1),
            kinesis_seq(2),
            kinesis_seq(3),
            kinesis_seq(4)
        ]
    );
    assert!(d.dead_letters.sent.lock().expect("lock").is_empty());
    assert_eq!(o.metrics.events_stored, 0);

    pg.start_again().expect("start");
    let mut pending = records;
    let mut deliveries = 1;
    loop {
        let o = handle_kinesis(&d, &kinesis_event(pending.clone()), "again").await;
        deliveries += 1;
        let seq = |s: &str| SeqNum::parse(s).expect("a sequence number");
        let Some(lowest) = failed_seqs(&o).iter().map(|s| seq(s)).min() else {
            break;
        };
        pending.retain(|r| seq(&r.kinesis.sequence_number) >= lowest);
        assert!(deliveries < 10, "still failing: {:?}", failed_seqs(&o));
    }
    assert_eq!(stored(&pg), 4, "every event once");
    assert_eq!(d.dead_letters.sequences(), [kinesis_seq(2)]);

    // And a redelivery of everything changes nothing but the (duplicate) dead letter.
    let o = handle_kinesis(&d, &e, "replay").await;
    assert!(failed_seqs(&o).is_empty());
    assert_eq!(o.metrics.events_stored, 0);
    assert_eq!(stored(&pg), 4);
}
