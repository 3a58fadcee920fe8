//! The consumer against a real Kinesis API (kinesis-local, the emulator the local pipeline
//! runs): records the stream really holds (PutRecords, then GetRecords, turned into the event
//! Lambda's Kinesis event source would deliver) decode through `KinesisEventRecord` exactly as
//! SQS bodies do; and a poison record the handler dead-letters to the local SQS is listed by
//! `spillway-dlq` with its origin and redriven into its stream, on the shard it came from.
//!
//! kinesis-local is started here, from the repository's `node_modules` (`npm ci`) or, until
//! the stack installs it there, from `/tmp/kl/node_modules`; without either the tests say so
//! and skip. The support crate's own starter replaces this one when it lands.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEventRecord;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use base64::Engine as _;
use common::*;
use serde_json::json;
use spillway_consumer::dead_letter::SqsDeadLetters;
use spillway_consumer::handler::{handle_kinesis, Deps, SystemClock};
use spillway_consumer::keys::testing::{test_keyring, TEST_KEYS};
use spillway_consumer::plan::Plan;
use spillway_consumer::testing::MemStore;
use spillway_support::{free_port, run_dir, wait_for_port, LocalSqs, Moto, Service};

const REGION: &str = "us-east-1";
const STREAM: &str = "spillway-test";

struct KinesisLocal {
    _service: Service,
    endpoint: String,
    arn: String,
}

fn main_js() -> Option<PathBuf> {
    [
        spillway_support::repo_root().join("node_modules/kinesis-local/main.js"),
        PathBuf::from("/tmp/kl/node_modules/kinesis-local/main.js"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// kinesis-local with a stream of `shards` shards, ACTIVE; `None` when it is not installed.
async fn kinesis_local(shards: u32) -> Option<(KinesisLocal, aws_sdk_kinesis::Client)> {
    let Some(main) = main_js() else {
        eprintln!("SKIPPED: kinesis-local is not installed (npm ci)");
        return None;
    };
    let dir = main.parent().expect("its folder").to_owned();
    let (port, tls) = (free_port().expect("port"), free_port().expect("port"));
    let mut cmd = Command::new("node");
    cmd.arg(&main)
        .env("KINESIS_MOCK_CERT_PATH", dir.join("server.json"))
        .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
        .env("KINESIS_MOCK_TLS_PORT", tls.to_string())
        .env("INITIALIZE_STREAMS", format!("{STREAM}:{shards}"))
        .env("LOG_LEVEL", "WARN");
    let log = run_dir().join(format!("kinesis-local-{}-{port}.log", std::process::id()));
    let service = Service::spawn("kinesis-local", cmd, &log).expect("start kinesis-local");
    wait_for_port(port, Duration::from_secs(60)).expect("kinesis-local listens");
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(&endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    let client = aws_sdk_kinesis::Client::from_conf(config);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client
            .describe_stream_summary()
            .stream_name(STREAM)
            .send()
            .await
            .ok()
            .and_then(|o| {
                o.stream_description_summary()
                    .map(|s| s.stream_status().clone())
            });
        if status == Some(StreamStatus::Active) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream is not ACTIVE within 60 s: {}",
            service.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let arn = format!("arn:aws:kinesis:{REGION}:000000000000:stream/{STREAM}");
    Some((
        KinesisLocal {
            _service: service,
            endpoint,
            arn,
        },
        client,
    ))
}

/// Puts each `(data, partition key)`; every result entry must carry a sequence number.
async fn put(client: &aws_sdk_kinesis::Client, records: &[(Vec<u8>, String)]) {
    let entries = records
        .iter()
        .map(|(data, key)| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(data.clone()))
                .partition_key(key)
                .build()
                .expect("entry")
        })
        .collect();
    let out = client
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(out.records().len(), records.len());
    for r in out.records() {
        assert!(r.sequence_number().is_some(), "refused: {r:?}");
    }
}

/// Every record of the stream, shard by shard from its start, as Lambda's Kinesis event
/// source would deliver it; waits (with a deadline) until there are `want`.
async fn read_all(
    client: &aws_sdk_kinesis::Client,
    arn: &str,
    want: usize,
) -> Vec<KinesisEventRecord> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut got = Vec::new();
        let shards = client
            .list_shards()
            .stream_name(STREAM)
            .send()
            .await
            .expect("ListShards");
        for shard in shards.shards() {
            let mut iterator = client
                .get_shard_iterator()
                .stream_name(STREAM)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("GetShardIterator")
                .shard_iterator()
                .map(str::to_owned);
            while let Some(it) = iterator.take() {
                let out = client
                    .get_records()
                    .shard_iterator(it)
                    .send()
                    .await
                    .expect("GetRecords");
                for r in out.records() {
                    got.push(lambda_record(arn, shard.shard_id(), r));
                }
                if out.records().is_empty() || out.millis_behind_latest() == Some(0) {
                    break;
                }
                iterator = out.next_shard_iterator().map(str::to_owned);
            }
        }
        if got.len() >= want {
            return got;
        }
        assert!(Instant::now() < deadline, "{} of {want} records", got.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A record read from the stream in the shape of Lambda's Kinesis event (built from JSON).
fn lambda_record(arn: &str, shard: &str, r: &aws_sdk_kinesis::types::Record) -> KinesisEventRecord {
    let arrival = r
        .approximate_arrival_timestamp()
        .map(|t| t.as_secs_f64())
        .unwrap_or_default();
    serde_json::from_value(json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": r.partition_key(),
            "sequenceNumber": r.sequence_number(),
            "data": base64::engine::general_purpose::STANDARD.encode(r.data().as_ref()),
            "approximateArrivalTimestamp": arrival
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{shard}:{}", r.sequence_number()),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::000000000000:role/spillway-consumer",
        "awsRegion": REGION,
        "eventSourceARN": arn
    }))
    .expect("record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_read_from_kinesis_local_decode_as_sqs_bodies_do() {
    let Some((kl, client)) = kinesis_local(2).await else {
        return;
    };
    let bodies = [
        body(&[event(1), event(2)]),
        body(&[event(3)]),
        body(&[event(4), event(5), event(6)]),
    ];
    let mut records: Vec<(Vec<u8>, String)> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (b.as_bytes().to_vec(), format!("request-{i}")))
        .collect();
    records.push((b"not an envelope".to_vec(), "request-poison".to_owned()));
    put(&client, &records).await;

    let got = read_all(&client, &kl.arn, 4).await;
    assert_eq!(got.len(), 4);
    let plan = Plan::from_records(&got, &test_keyring());
    assert_eq!(plan.accepted.len(), 3);
    assert_eq!(plan.failed.len(), 1);
    let mut ids: Vec<u128> = plan
        .accepted
        .iter()
        .flat_map(|a| a.events.iter().map(|e| e.id.as_u128()))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    // The same bytes an SQS body carries decode to the same events.
    for a in &plan.accepted {
        let record = &got[a.index];
        let text = std::str::from_utf8(&record.kinesis.data.0).expect("utf-8");
        assert!(bodies.iter().any(|b| b == text));
        let sqs = Plan::from_records(&[common::record("m", text)], &test_keyring());
        assert_eq!(sqs.accepted[0].events, a.events);
        assert_eq!(a.record_id, record.kinesis.sequence_number);
        assert!(a.record_id.len() >= 56, "{}", a.record_id);
    }
}

fn dlq_tool(moto: &Moto, kl: &KinesisLocal, dlq: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_spillway-dlq"))
        .args(args)
        .env_remove("SQS_DLQ_URL")
        .env_remove("SQS_QUEUE_URL")
        .env("DEAD_LETTER_QUEUE_URL", dlq)
        .env("BUFFER", "kinesis")
        .env("SQS_ENDPOINT", moto.endpoint())
        .env("KINESIS_ENDPOINT", &kl.endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("ENVELOPE_KEYS", TEST_KEYS)
        .output()
        .expect("run spillway-dlq");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "spillway-dlq {args:?} failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_record_is_listed_and_redriven_into_its_shard() {
    let Some((kl, client)) = kinesis_local(2).await else {
        return;
    };
    let moto = Moto::start().expect("moto");
    let sqs = LocalSqs::new(moto.port(), REGION);
    let dlq = sqs.create_queue("spillway-kinesis-dlq", &[]).expect("DLQ");
    let sqs_client = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(moto.endpoint())
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build(),
    );
    let deps = Deps {
        store: MemStore::default(),
        clock: SystemClock,
        metrics_namespace: "Test".into(),
        metrics_service: "svc".into(),
        keys: test_keyring(),
        dead_letters: SqsDeadLetters::new(sqs_client, &dlq),
    };

    let poison = br#"{"v":2,"events":[]}"#.to_vec();
    put(
        &client,
        &[
            (body(&[event(1)]).into_bytes(), "a".to_owned()),
            (poison.clone(), "poison-key".to_owned()),
        ],
    )
    .await;
    let got = read_all(&client, &kl.arn, 2).await;
    let poison_record = got
        .iter()
        .find(|r| r.kinesis.data.0 == poison)
        .expect("the poison record")
        .clone();
    let shard = poison_record
        .event_id
        .as_deref()
        .and_then(|id| id.split_once(':'))
        .map(|(s, _)| s.to_owned())
        .expect("shard");
    let event = serde_json::from_value(json!({ "Records": got })).expect("event");
    let o = handle_kinesis(&deps, &event, "r").await;
    assert!(o.response.batch_item_failures.is_empty());
    assert_eq!(o.metrics.records_dead_lettered, Some(1));
    assert_eq!(o.metrics.events_stored, 1);

    let listed = dlq_tool(&moto, &kl, &dlq, &["list"]);
    assert!(
        listed.contains(&format!(
            "kinesis stream {} shard {shard} sequence {} partition key poison-key: unverified",
            kl.arn, poison_record.kinesis.sequence_number
        )),
        "{listed}"
    );
    assert!(listed.contains("1 message in"), "{listed}");

    let moved = dlq_tool(&moto, &kl, &dlq, &["redrive"]);
    assert!(moved.contains("moved 1 message(s)"), "{moved}");
    assert!(
        moved.contains(&format!("-> {shard}/")),
        "on its shard: {moved}"
    );
    assert_eq!(sqs.depth(&dlq).expect("depth"), (0, 0), "deleted once put");
    let again = read_all(&client, &kl.arn, 3).await;
    let copies: Vec<_> = again
        .iter()
        .filter(|r| r.kinesis.data.0 == poison)
        .collect();
    assert_eq!(copies.len(), 2, "the original and the redriven copy");
    assert!(copies.iter().all(|r| r
        .event_id
        .as_deref()
        .is_some_and(|id| id.starts_with(&shard))));
}
