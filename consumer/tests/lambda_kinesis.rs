//! One `spillway-consumer` binary for both buffers: the real Lambda runtime loop (against the
//! emulator of [`common::lambda`]) is given an SQS event and then a Kinesis event, tells them
//! apart by `eventSource`, answers each with its `batchItemFailures`, and sends the Kinesis
//! batch's poison record to the dead-letter queue (`DEAD_LETTER_QUEUE_URL`, on the local SQS)
//! with its origin as message attributes.

mod common;

use common::lambda::{response, run_function};
use common::*;
use serde_json::{json, Value};
use spillway_support::{LocalSqs, Moto};

const REGION: &str = "us-east-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_binary_answers_sqs_and_kinesis_events_and_dead_letters_kinesis_poison() {
    let pg = migrated_pg().await;
    let moto = Moto::start().expect("moto");
    let sqs = LocalSqs::new(moto.port(), REGION);
    let dlq = sqs
        .create_queue("spillway-kinesis-dlq", &[])
        .expect("create the DLQ");
    let sqs_event = std::fs::read_to_string(fixture("spillway_mixed.json")).expect("fixture");
    let kinesis_event =
        std::fs::read_to_string(kinesis_fixture("spillway_poison.json")).expect("fixture");
    let run = run_function(
        &[
            ("DATABASE_URL", pg.url()),
            ("DEAD_LETTER_QUEUE_URL", dlq.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "ASIATESTKEY".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_SESSION_TOKEN", "test".to_owned()),
        ],
        vec![
            ("sqs-1".to_owned(), sqs_event),
            ("kinesis-1".to_owned(), kinesis_event),
        ],
    )
    .await;
    let log = &run.raw_log;
    let (id, body) = response(&run.replies[0], log);
    assert_eq!(id, "sqs-1");
    assert_eq!(
        body,
        json!({"batchItemFailures": [{"itemIdentifier": "c0ffee00-1111-4222-8333-944455556666"}]})
    );
    let (id, body) = response(&run.replies[1], log);
    assert_eq!(id, "kinesis-1");
    assert_eq!(body, json!({"batchItemFailures": []}), "{log}");
    // The SQS fixture's 2 events (ids 0192f0c1-..., 3a59cd1f-...) and the Kinesis one's 4.
    assert_eq!(stored(&pg), 6);

    let emf: Vec<&Value> = run
        .lines
        .iter()
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 2, "{log}");
    assert!(emf[0].get("RecordsDeadLettered").is_none());
    assert_eq!(emf[1]["RecordsDeadLettered"], 1);
    assert_eq!(emf[1]["RecordsFailed"], 0);
    assert_eq!(emf[1]["EventsStored"], 4);

    let out = sqs
        .call(
            "ReceiveMessage",
            &json!({"QueueUrl": dlq, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0,
                    "MessageAttributeNames": ["All"]}),
        )
        .expect("receive");
    let messages = out["Messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(messages.len(), 1, "{out}");
    let m = &messages[0];
    assert_eq!(m["Body"], r#"{"v":2,"events":"not a list"}"#);
    let attr = |name: &str| m["MessageAttributes"][name]["StringValue"].clone();
    assert_eq!(attr("spillway.source"), "kinesis");
    assert_eq!(
        attr("spillway.stream_arn"),
        "arn:aws:kinesis:us-east-1:000000000000:stream/spillway-events"
    );
    assert_eq!(attr("spillway.shard_id"), "shardId-000000000001");
    assert_eq!(
        attr("spillway.sequence_number"),
        "49658312345678901234567890123456789012345678901234567906"
    );
    assert_eq!(
        attr("spillway.partition_key"),
        "0b7e4c2d-95a1-4f3e-b6d8-7a9c1e2f3d4e"
    );
    assert!(attr("spillway.reason")
        .as_str()
        .unwrap_or_default()
        .starts_with("unverified: "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dead_letter_queue_the_poison_record_is_reported_not_dropped() {
    let pg = migrated_pg().await;
    let kinesis_event =
        std::fs::read_to_string(kinesis_fixture("spillway_poison.json")).expect("fixture");
    let run = run_function(
        &[("DATABASE_URL", pg.url())],
        vec![("kinesis-1".to_owned(), kinesis_event)],
    )
    .await;
    let (_, body) = response(&run.replies[0], &run.raw_log);
    // Reported, so Lambda delivers it (and what follows it) again until its retry budget.
    assert_eq!(
        body,
        json!({"batchItemFailures": [
            {"itemIdentifier": "49658312345678901234567890123456789012345678901234567906"}
        ]})
    );
    assert_eq!(stored(&pg), 4);
    assert!(
        run.raw_log.contains("DEAD_LETTER_QUEUE_URL is not set"),
        "{}",
        run.raw_log
    );
}
