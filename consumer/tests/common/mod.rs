//! Helpers shared by the consumer's integration tests: a migrated PostgreSQL, events, SQS and
//! Kinesis records in the shape Lambda delivers, and handler deps over the real store.
#![allow(dead_code)] // each test binary uses a different part

pub mod lambda;

use std::path::PathBuf;
use std::time::Duration;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use serde_json::json;
use spillway_consumer::config::DbConfig;
use spillway_consumer::dead_letter::NoDeadLetters;
use spillway_consumer::handler::{Deps, KinesisOutcome, Outcome, SystemClock};
use spillway_consumer::keys::testing::test_keyring;
use spillway_consumer::migrate;
use spillway_consumer::pg::PgStore;
use spillway_consumer::testing::MemDeadLetters;
#[allow(unused_imports)] // as above: not every test binary builds bodies
pub use spillway_consumer::testing::{body, event};
use spillway_shared::Event;
use spillway_support::Postgres;

pub fn fixture(name: &str) -> PathBuf {
    spillway_support::repo_root()
        .join("tests/fixtures/sqs")
        .join(name)
}

pub fn db_config(url: &str, statement_timeout_ms: u64) -> DbConfig {
    let url = url.to_owned();
    let timeout = statement_timeout_ms.to_string();
    DbConfig::from_lookup(&move |k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "DB_STATEMENT_TIMEOUT_MS" => Some(timeout.clone()),
        "DB_CONNECT_TIMEOUT_MS" => Some("2000".to_owned()),
        _ => None,
    })
    .expect("db config")
}

/// A fresh PostgreSQL with the migrations applied.
pub async fn migrated_pg() -> Postgres {
    // `free_port` can race with another test binding a port; one retry on a new port.
    let pg = Postgres::start()
        .or_else(|e| {
            eprintln!("PostgreSQL did not start ({e:#}); retrying on another port");
            Postgres::start()
        })
        .expect("start PostgreSQL");
    migrate_url(&pg.url()).await;
    pg
}

/// The application_name of the helper's migration connection: not `spillway-consumer`, so a
/// test that looks for the consumer's backends in `pg_stat_activity` never sees this one
/// (closing a connection does not wait for its backend to exit).
pub const MIGRATE_APP: &str = "spillway-test-migrate";

pub async fn migrate_url(url: &str) -> migrate::Report {
    let url = with_application_name(url, MIGRATE_APP);
    let store = PgStore::new(&db_config(&url, 10_000)).expect("store");
    let mut client = store.open().await.expect("connect");
    migrate::run(&mut client, migrate::MIGRATIONS)
        .await
        .expect("migrate")
}

/// `url` with `application_name` set, so that a test can find its own backends exactly.
pub fn with_application_name(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={name}")
}

pub fn deps(url: &str) -> Deps<PgStore> {
    deps_with_timeout(url, 10_000)
}

pub fn deps_with_timeout(url: &str, statement_timeout_ms: u64) -> Deps<PgStore> {
    Deps {
        store: PgStore::new(&db_config(url, statement_timeout_ms)).expect("store"),
        clock: SystemClock,
        metrics_namespace: "SpillwayTest".into(),
        metrics_service: "spillway-consumer".into(),
        keys: test_keyring(),
        dead_letters: NoDeadLetters,
    }
}

pub fn count(pg: &Postgres, sql: &str) -> u64 {
    pg.psql(sql).expect("psql").parse().expect("a number")
}

pub fn stored(pg: &Postgres) -> u64 {
    count(pg, "SELECT count(*) FROM events")
}

pub fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("time")
}

/// An event PostgreSQL refuses although it decodes: a NUL inside a jsonb string.
pub fn nul_event(n: u128) -> Event {
    let mut e = event(n);
    // The edge refuses this; a message written by anything else may still carry it.
    e.data = json!({"n": n as u64, "note": "a\u{0}b"})
        .to_string()
        .parse()
        .expect("json");
    e
}

/// A record shaped as Lambda delivers it (built from JSON, not from struct fields).
pub fn record(message_id: &str, body: &str) -> SqsMessage {
    serde_json::from_value(json!({
        "messageId": message_id,
        "receiptHandle": format!("AQEB{message_id}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": Utc::now().timestamp_millis().to_string(),
            "SenderId": "AROAEXAMPLE:spillway-edge",
            "ApproximateFirstReceiveTimestamp": Utc::now().timestamp_millis().to_string()
        },
        "messageAttributes": {},
        "md5OfBody": "00000000000000000000000000000000",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:spillway-events",
        "awsRegion": "us-east-1"
    }))
    .expect("record")
}

pub fn sqs_event(records: Vec<SqsMessage>) -> SqsEvent {
    serde_json::from_value(json!({ "Records": records })).expect("event")
}

pub fn failed_ids(o: &Outcome) -> Vec<String> {
    let mut ids: Vec<String> = o
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

/// Polls `check` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The columns of the `events` table's primary key, in order, comma-separated.
pub fn primary_key(pg: &Postgres) -> String {
    pg.psql(
        "SELECT string_agg(a.attname, ',' ORDER BY array_position(i.indkey::int2[], a.attnum))
           FROM pg_index i JOIN pg_attribute a
             ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
          WHERE i.indrelid = 'events'::regclass AND i.indisprimary",
    )
    .expect("psql")
}

pub fn kinesis_fixture(name: &str) -> PathBuf {
    spillway_support::repo_root()
        .join("tests/fixtures/kinesis")
        .join(name)
}

pub const KINESIS_STREAM: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/spillway-events";

/// A 56-digit sequence number (as Kinesis writes them) ending in `n`.
pub fn kinesis_seq(n: u32) -> String {
    format!("4965831234567890123456789012345678901234567890123{n:07}")
}

/// A Kinesis record shaped as Lambda delivers it (built from JSON, not from struct fields),
/// on shard 1, arrived now.
pub fn kinesis_record(n: u32, data: &[u8]) -> KinesisEventRecord {
    use base64::Engine as _;
    let seq = kinesis_seq(n);
    let now = Utc::now().timestamp_millis() as f64 / 1000.0;
    serde_json::from_value(json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": format!("pk-{n}"),
            "sequenceNumber": seq,
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "approximateArrivalTimestamp": now
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("shardId-000000000001:{seq}"),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::000000000000:role/spillway-consumer",
        "awsRegion": "us-east-1",
        "eventSourceARN": KINESIS_STREAM
    }))
    .expect("record")
}

pub fn kinesis_event(records: Vec<KinesisEventRecord>) -> KinesisEvent {
    serde_json::from_value(json!({ "Records": records })).expect("event")
}

/// Handler deps over the real store, with an in-memory dead-letter queue.
pub fn kinesis_deps(url: &str) -> Deps<PgStore, SystemClock, MemDeadLetters> {
    let d = deps(url);
    Deps {
        store: d.store,
        clock: d.clock,
        metrics_namespace: d.metrics_namespace,
        metrics_service: d.metrics_service,
        keys: d.keys,
        dead_letters: MemDeadLetters::default(),
    }
}

/// The reported sequence numbers, in the order of the response.
pub fn failed_seqs(o: &KinesisOutcome) -> Vec<String> {
    o.response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}
