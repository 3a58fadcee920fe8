//! The Kinesis mapping (`tools::poller::kinesis`) against a real local Kinesis (kinesis-local,
//! the emulator the stack runs) with a fake function in place of the consumer's handler:
//! every record put concurrently to a 4-shard stream is delivered, a reported failure is
//! delivered again from its sequence number, a poison record is given up on to the
//! on-failure destination (a local SQS queue, moto) after its retry budget, and a mapping killed mid-stream resumes
//! from its checkpoint file.
//!
//! Last, the `spillway-poller` binary itself with `BUFFER=kinesis`, the consumer's handler and a
//! real PostgreSQL: every event stored once across a SIGKILL and a restart from the checkpoint
//! file, and SIGTERM honoured.
//!
//! The emulator is started here, on free ports, from `KINESIS_LOCAL_MAIN` or the repository's
//! `node_modules/kinesis-local/main.js` (`npm ci`).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use common::{body, count, event, migrated_pg, stored};
use serde_json::Value;
use spillway_consumer::tools::poller::kinesis::{
    run, Function, FunctionError, KinesisPollerConfig, MappingStats, SeqNum, SqsDestination,
};
use spillway_support::{free_port, repo_root, run_dir, wait_for_port, LocalSqs, Moto, Service};
use tokio::sync::watch;
use tokio::time::Instant;

const STREAM: &str = "poller-test";

struct KinesisLocal {
    _service: Service,
    port: u16,
}

impl KinesisLocal {
    /// Starts the emulator with a `shards`-shard stream and waits (bounded) until it is ACTIVE.
    async fn start(shards: u32) -> (KinesisLocal, aws_sdk_kinesis::Client) {
        let main = std::env::var_os("KINESIS_LOCAL_MAIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("node_modules/kinesis-local/main.js"));
        assert!(
            main.exists(),
            "{} is missing: run `npm ci` or set KINESIS_LOCAL_MAIN",
            main.display()
        );
        let cert = main.with_file_name("server.json");
        let (port, tls) = (free_port().expect("port"), free_port().expect("port"));
        let mut cmd = Command::new("node");
        cmd.arg(&main)
            .env("KINESIS_MOCK_CERT_PATH", &cert)
            .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
            .env("KINESIS_MOCK_TLS_PORT", tls.to_string())
            .env("INITIALIZE_STREAMS", format!("{STREAM}:{shards}"))
            .env("LOG_LEVEL", "WARN");
        let log = run_dir().join(format!("kinesis-local-{port}.log"));
        let service = Service::spawn("kinesis-local", cmd, &log).expect("start kinesis-local");
        wait_for_port(port, Duration::from_secs(60)).expect("kinesis-local listening");
        let client = client(port);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = client
                .describe_stream_summary()
                .stream_name(STREAM)
                .send()
                .await
                .ok()
                .and_then(|o| o.stream_description_summary)
                .map(|s| s.stream_status);
            if status == Some(StreamStatus::Active) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "stream not ACTIVE within 60 s: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (
            KinesisLocal {
                _service: service,
                port,
            },
            client,
        )
    }

    fn arn(&self) -> String {
        format!("arn:aws:kinesis:us-east-1:000000000000:stream/{STREAM}")
    }
}

fn client(port: u16) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// An acknowledged record: shard, sequence number, partition key, data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Put {
    shard: String,
    seq: String,
    key: String,
    data: String,
}

/// Puts `n` records from `tasks` concurrent writers, resending entries Kinesis refuses
/// (throughput), and returns every acknowledged one.
async fn put_concurrently(
    client: &aws_sdk_kinesis::Client,
    tag: &str,
    n: usize,
    tasks: usize,
) -> Vec<Put> {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let client = client.clone();
        let tag = tag.to_owned();
        handles.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mine: Vec<usize> = (0..n).filter(|i| i % tasks == t).collect();
            for chunk in mine.chunks(10) {
                let mut pending: Vec<(String, String)> = chunk
                    .iter()
                    // 40 keys: several per shard and lane, each with many records.
                    .map(|i| (format!("key-{}", i % 40), format!("{tag}-{i}")))
                    .collect();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !pending.is_empty() {
                    assert!(Instant::now() < deadline, "puts refused for 60 s");
                    let entries = pending
                        .iter()
                        .map(|(k, d)| {
                            PutRecordsRequestEntry::builder()
                                .partition_key(k)
                                .data(Blob::new(d.as_bytes()))
                                .build()
                                .expect("entry")
                        })
                        .collect();
                    let Ok(out) = client
                        .put_records()
                        .stream_name(STREAM)
                        .set_records(Some(entries))
                        .send()
                        .await
                    else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let mut again = Vec::new();
                    for (entry, (k, d)) in out.records.iter().zip(pending) {
                        match (entry.shard_id(), entry.sequence_number()) {
                            (Some(s), Some(q)) => acked.push(Put {
                                shard: s.to_owned(),
                                seq: q.to_owned(),
                                key: k,
                                data: d,
                            }),
                            _ => again.push((k, d)),
                        }
                    }
                    pending = again;
                    if !pending.is_empty() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            acked
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("writer"));
    }
    assert_eq!(all.len(), n);
    all
}

/// One delivery of one record, as the function saw it.
#[derive(Debug, Clone)]
struct Delivery {
    shard: String,
    seq: String,
    key: String,
    data: String,
    /// Whether the function reported it failed (or failed the whole batch).
    failed: bool,
}

/// The fake function: records every delivery; reports `fail_seq` failed `fail_times` times;
/// fails every batch holding `poison` as a whole; waits `delay` per invocation.
#[derive(Default)]
struct Fake {
    deliveries: Mutex<Vec<Delivery>>,
    fail_seq: Option<String>,
    fail_times: Mutex<u32>,
    poison: Option<String>,
    delay: Duration,
    shape_errors: Mutex<Vec<String>>,
}

impl Function for Fake {
    async fn invoke(
        &self,
        event: KinesisEvent,
        _request_id: String,
    ) -> Result<KinesisEventResponse, FunctionError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let seqs: Vec<&str> = event
            .records
            .iter()
            .map(|r| r.kinesis.sequence_number.as_str())
            .collect();
        let poisoned = self.poison.as_deref().is_some_and(|p| seqs.contains(&p));
        let mut response = KinesisEventResponse::default();
        if let Some(f) = self.fail_seq.as_deref().filter(|f| seqs.contains(f)) {
            let mut left = self.fail_times.lock().expect("lock");
            if *left > 0 {
                *left -= 1;
                response.add_failure(f);
            }
        }
        let failed_from = response
            .batch_item_failures
            .first()
            .and_then(|f| f.item_identifier.clone());
        let mut seen_failure = false;
        let mut deliveries = self.deliveries.lock().expect("lock");
        for r in &event.records {
            let id = r.event_id.clone().unwrap_or_default();
            let (shard, seq) = id.split_once(':').unwrap_or(("", ""));
            if seq != r.kinesis.sequence_number
                || r.event_source.as_deref() != Some("aws:kinesis")
                || r.event_name.as_deref() != Some("aws:kinesis:record")
                || r.aws_region.as_deref() != Some("us-east-1")
                || r.event_source_arn
                    .as_deref()
                    .is_none_or(|a| !a.ends_with(STREAM))
            {
                self.shape_errors.lock().expect("lock").push(id.clone());
            }
            seen_failure |= failed_from.as_deref() == Some(seq);
            deliveries.push(Delivery {
                shard: shard.to_owned(),
                seq: seq.to_owned(),
                key: r.kinesis.partition_key.clone(),
                data: String::from_utf8_lossy(&r.kinesis.data).into_owned(),
                failed: poisoned || seen_failure,
            });
        }
        if poisoned {
            return Err(FunctionError("poison".into()));
        }
        Ok(response)
    }
}

fn config(arn: &str, port: u16, extra: &[(&str, &str)]) -> KinesisPollerConfig {
    let mut env: HashMap<String, String> = [
        ("KINESIS_STREAM_ARN", arn.to_owned()),
        ("KINESIS_ENDPOINT", format!("http://127.0.0.1:{port}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    KinesisPollerConfig::from_lookup(&|k| env.get(k).cloned()).expect("config")
}

fn checkpoint_path(name: &str) -> PathBuf {
    let dir = run_dir().join(format!("kinesis-poller-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join("checkpoints.json")
}

/// Waits (bounded) until `done` holds.
async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn succeeded(fake: &Fake) -> HashSet<String> {
    fake.deliveries
        .lock()
        .expect("lock")
        .iter()
        .filter(|d| !d.failed)
        .map(|d| d.data.clone())
        .collect()
}

fn file_checkpoints(path: &PathBuf) -> BTreeMap<String, Option<String>> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default())
        .unwrap_or(Value::Null);
    v["shards"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, c)| (k.clone(), c["checkpoint"].as_str().map(str::to_owned)))
                .collect()
        })
        .unwrap_or_default()
}

fn seq(s: &str) -> SeqNum {
    SeqNum::parse(s).expect("sequence number")
}

async fn stop(
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<MappingStats, impl std::fmt::Debug>>,
) -> MappingStats {
    stop.send(true).expect("mapping alive");
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("stopped within 30 s after the batches in flight")
        .expect("task")
        .expect("mapping")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_delivered_and_a_reported_failure_is_delivered_again_from_it() {
    let (kl, client) = KinesisLocal::start(4).await;
    let puts = put_concurrently(&client, "a", 1_000, 8).await;
    let shards: HashSet<&str> = puts.iter().map(|p| p.shard.as_str()).collect();
    assert_eq!(shards.len(), 4, "the keys spread over the 4 shards");

    // Fail a record in the middle of its shard 3 times.
    let mut on_shard: Vec<&Put> = puts.iter().filter(|p| p.shard == puts[0].shard).collect();
    on_shard.sort_by_key(|p| seq(&p.seq));
    let target = on_shard[on_shard.len() / 2].clone();
    let fake = Arc::new(Fake {
        fail_seq: Some(target.seq.clone()),
        fail_times: Mutex::new(3),
        ..Fake::default()
    });
    let cp = checkpoint_path("all");
    let cfg = config(
        &kl.arn(),
        kl.port,
        &[
            ("BATCH_SIZE", "25"),
            ("PARALLELIZATION_FACTOR", "3"),
            ("CHECKPOINT_FILE", cp.to_str().expect("utf-8")),
        ],
    );
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run(
        client.clone(),
        cfg,
        fake.clone(),
        None::<SqsDestination>,
        rx,
    ));

    let all: HashSet<String> = puts.iter().map(|p| p.data.clone()).collect();
    wait_until("every record delivered", Duration::from_secs(120), || {
        succeeded(&fake).is_superset(&all)
    })
    .await;
    // The checkpoint file reaches each shard's last record.
    let mut last: BTreeMap<String, SeqNum> = BTreeMap::new();
    for p in &puts {
        let e = last.entry(p.shard.clone()).or_insert_with(|| seq(&p.seq));
        if seq(&p.seq) > *e {
            *e = seq(&p.seq);
        }
    }
    wait_until(
        "checkpoints at each shard's end",
        Duration::from_secs(30),
        || {
            let got = file_checkpoints(&cp);
            last.iter()
                .all(|(s, q)| got.get(s).cloned().flatten().as_deref() == Some(q.as_str()))
        },
    )
    .await;
    let stats = stop(tx, task).await;
    assert_eq!(stats.shards, 4);
    assert_eq!(stats.records_discarded, 0);

    assert!(fake.shape_errors.lock().expect("lock").is_empty());
    let deliveries = fake.deliveries.lock().expect("lock").clone();
    // Delivered with the data, key and shard Kinesis acknowledged.
    let by_data: HashMap<&str, &Put> = puts.iter().map(|p| (p.data.as_str(), p)).collect();
    for d in &deliveries {
        let p = by_data[d.data.as_str()];
        assert_eq!((&d.shard, &d.seq, &d.key), (&p.shard, &p.seq, &p.key));
    }
    // The reported record: 3 failed deliveries, then one that succeeded.
    let of_target: Vec<bool> = deliveries
        .iter()
        .filter(|d| d.seq == target.seq)
        .map(|d| d.failed)
        .collect();
    assert_eq!(of_target, [true, true, true, false]);
    // Records of its lane after it came again with it (delivery resumes from it), and
    // nothing else was delivered twice.
    let twice: HashSet<&str> = {
        let mut seen = HashSet::new();
        deliveries
            .iter()
            .filter(|d| !seen.insert(d.seq.as_str()))
            .map(|d| d.seq.as_str())
            .collect()
    };
    for s in &twice {
        let p = puts.iter().find(|p| p.seq == *s).expect("put");
        assert_eq!(
            p.shard, target.shard,
            "{s} delivered twice on another shard"
        );
        assert!(
            seq(s) >= seq(&target.seq),
            "{s} before the failure delivered twice"
        );
    }
    // Per partition key, first deliveries come in sequence order.
    let mut first: HashMap<&str, Vec<SeqNum>> = HashMap::new();
    let mut seen = HashSet::new();
    for d in &deliveries {
        if seen.insert(d.seq.as_str()) {
            first.entry(d.key.as_str()).or_default().push(seq(&d.seq));
        }
    }
    for (k, v) in &first {
        assert!(v.windows(2).all(|w| w[0] < w[1]), "key {k} out of order");
    }
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&cp).expect("file")).expect("json");
    assert_eq!(v["stream_arn"], kl.arn());
    for s in last.keys() {
        assert!(v["shards"][s]["millis_behind_latest"].is_u64());
        assert!(v["shards"][s]["updated_at_ms"]
            .as_u64()
            .is_some_and(|t| t > 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_goes_to_the_on_failure_destination_after_its_retries() {
    let (kl, client) = KinesisLocal::start(2).await;
    // The destination is a real (local) SQS queue, through the binary's adapter.
    let moto = Moto::start().expect("moto");
    let sqs = LocalSqs::new(moto.port(), "us-east-1");
    let queue = sqs.create_queue("on-failure", &[]).expect("queue");
    let dest = SqsDestination {
        client: aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
                .region(aws_sdk_sqs::config::Region::new("us-east-1"))
                .endpoint_url(moto.endpoint())
                .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                    "test", "test", None, None, "test",
                ))
                .build(),
        ),
        queue_url: queue.clone(),
    };
    let puts = put_concurrently(&client, "p", 200, 4).await;
    let poison = puts[77].clone();
    let fake = Arc::new(Fake {
        poison: Some(poison.seq.clone()),
        ..Fake::default()
    });
    let cfg = config(
        &kl.arn(),
        kl.port,
        &[
            ("BATCH_SIZE", "16"),
            ("BISECT_BATCH_ON_FUNCTION_ERROR", "true"),
            ("MAXIMUM_RETRY_ATTEMPTS", "2"),
        ],
    );
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run(client.clone(), cfg, fake.clone(), Some(dest), rx));
    let others: HashSet<String> = puts
        .iter()
        .filter(|p| p.seq != poison.seq)
        .map(|p| p.data.clone())
        .collect();
    let mut sent: Vec<Value> = Vec::new();
    wait_until(
        "every other record delivered and the poison given up on",
        Duration::from_secs(120),
        || {
            sent.extend(
                sqs.receive(&queue, 30)
                    .unwrap_or_default()
                    .iter()
                    .map(|b| serde_json::from_str::<Value>(b).expect("JSON")),
            );
            succeeded(&fake).is_superset(&others) && !sent.is_empty()
        },
    )
    .await;
    let stats = stop(tx, task).await;
    assert_eq!(stats.records_discarded, 1);
    sent.extend(
        sqs.receive(&queue, 30)
            .expect("receive")
            .iter()
            .map(|b| serde_json::from_str::<Value>(b).expect("JSON")),
    );
    assert_eq!(sent.len(), 1, "{sent:?}");
    let info = &sent[0]["KinesisBatchInfo"];
    assert_eq!(info["shardId"], poison.shard.as_str());
    assert_eq!(info["startSequenceNumber"], poison.seq.as_str());
    assert_eq!(info["endSequenceNumber"], poison.seq.as_str());
    assert_eq!(info["batchSize"], 1);
    assert_eq!(info["streamArn"], kl.arn());
    assert_eq!(
        sent[0]["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(sent[0]["responseContext"]["functionError"], "Unhandled");
    // Delivered in every batch that held it (the bisections, then alone once and twice
    // more: the retry budget), as many times as the record says; it never succeeded.
    let invocations = fake
        .deliveries
        .lock()
        .expect("lock")
        .iter()
        .filter(|d| d.seq == poison.seq)
        .count();
    assert!(invocations >= 3, "delivered {invocations} times");
    assert_eq!(
        sent[0]["requestContext"]["approximateInvokeCount"],
        invocations
    );
    assert!(!succeeded(&fake).contains(&poison.data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_mapping_resumes_after_its_checkpoint_file() {
    let (kl, client) = KinesisLocal::start(4).await;
    let first = put_concurrently(&client, "k1", 1_000, 8).await;
    let fake = Arc::new(Fake {
        // Slow enough to be killed mid-stream.
        delay: Duration::from_millis(50),
        ..Fake::default()
    });
    let cp = checkpoint_path("kill");
    let settings = [
        ("BATCH_SIZE", "10"),
        ("PARALLELIZATION_FACTOR", "2"),
        ("CHECKPOINT_FILE", cp.to_str().expect("utf-8")),
    ];
    let (_tx, rx) = watch::channel(false);
    let task = tokio::spawn(run(
        client.clone(),
        config(&kl.arn(), kl.port, &settings),
        fake.clone(),
        None::<SqsDestination>,
        rx,
    ));
    wait_until("some records delivered", Duration::from_secs(120), || {
        succeeded(&fake).len() >= 300
    })
    .await;
    // Killed: no shutdown, batches in flight lost, nothing more written.
    task.abort();
    let _ = task.await;
    let at_kill = file_checkpoints(&cp);
    let before = succeeded(&fake);
    assert!(before.len() < 1_000, "killed too late to mean anything");
    assert!(
        at_kill.values().any(Option::is_some),
        "no checkpoint written: {at_kill:?}"
    );

    let second = put_concurrently(&client, "k2", 200, 4).await;
    let again = Arc::new(Fake::default());
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run(
        client.clone(),
        config(&kl.arn(), kl.port, &settings),
        again.clone(),
        None::<SqsDestination>,
        rx,
    ));
    let behind_checkpoint = |p: &Put| {
        at_kill
            .get(&p.shard)
            .cloned()
            .flatten()
            .is_some_and(|c| seq(&p.seq) <= seq(&c))
    };
    let expected: HashSet<String> = first
        .iter()
        .chain(&second)
        .filter(|p| !behind_checkpoint(p))
        .map(|p| p.data.clone())
        .collect();
    wait_until(
        "every record after the checkpoint delivered",
        Duration::from_secs(120),
        || succeeded(&again).is_superset(&expected),
    )
    .await;
    stop(tx, task).await;
    let delivered = succeeded(&again);
    // Nothing at or before the checkpoint came again...
    for p in first.iter().filter(|p| behind_checkpoint(p)) {
        assert!(!delivered.contains(&p.data), "{} redelivered", p.seq);
    }
    // ...and nothing was lost: every record was delivered by one run or the other.
    let everything: HashSet<String> = first
        .iter()
        .chain(&second)
        .map(|p| p.data.clone())
        .collect();
    let union: HashSet<String> = before.union(&delivered).cloned().collect();
    assert!(union.is_superset(&everything));
    // Redelivered: at most what was finished or in flight past the checkpoint.
    let redelivered = before.intersection(&delivered).count();
    assert!(redelivered < before.len(), "restarted from the beginning");
}

/// Puts one record per element of `bodies`, 10 per call, with keys spread over the shards.
async fn put_bodies(client: &aws_sdk_kinesis::Client, bodies: &[String]) {
    for (c, chunk) in bodies.chunks(10).enumerate() {
        let mut pending: Vec<(String, String)> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("ingest-{}", (c * 10 + i) % 16), b.clone()))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pending.is_empty() {
            assert!(Instant::now() < deadline, "puts refused for 60 s");
            let entries = pending
                .iter()
                .map(|(k, d)| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(k)
                        .data(Blob::new(d.as_bytes()))
                        .build()
                        .expect("entry")
                })
                .collect();
            if let Ok(out) = client
                .put_records()
                .stream_name(STREAM)
                .set_records(Some(entries))
                .send()
                .await
            {
                pending = out
                    .records
                    .iter()
                    .zip(pending)
                    .filter(|(e, _)| e.sequence_number().is_none())
                    .map(|(_, p)| p)
                    .collect();
            }
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_stores_every_event_once_across_a_sigkill_and_stops_on_sigterm() {
    let pg = migrated_pg().await;
    let (kl, client) = KinesisLocal::start(4).await;
    // 400 records of 3 events.
    let bodies = |from: u128, to: u128| -> Vec<String> {
        (from..to)
            .map(|r| body(&[event(r * 3 + 1), event(r * 3 + 2), event(r * 3 + 3)]))
            .collect()
    };
    put_bodies(&client, &bodies(0, 400)).await;
    let cp = checkpoint_path("binary");
    let spawn = |n: u32| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_spillway-poller"));
        cmd.env("BUFFER", "kinesis")
            .env("KINESIS_STREAM_ARN", kl.arn())
            .env("KINESIS_ENDPOINT", format!("http://127.0.0.1:{}", kl.port))
            .env("BATCH_SIZE", "10")
            .env("PARALLELIZATION_FACTOR", "2")
            .env("CHECKPOINT_FILE", &cp)
            .env("DATABASE_URL", pg.url())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("ENVELOPE_KEYS", spillway_consumer::keys::testing::TEST_KEYS)
            .env("RUST_LOG", "info");
        let log = cp.with_file_name(format!("poller-{n}.log"));
        Service::spawn("poller", cmd, &log).expect("spawn the poller")
    };
    let mut first = spawn(1);
    let started = common::eventually(Duration::from_secs(120), || stored(&pg) > 0).await;
    assert!(started, "nothing stored\n{}", first.log_tail(40));
    first.kill();
    let at_kill = file_checkpoints(&cp);
    eprintln!(
        "killed with {} events stored; checkpoints {at_kill:?}",
        stored(&pg)
    );

    put_bodies(&client, &bodies(400, 500)).await;
    let mut second = spawn(2);
    let done = common::eventually(Duration::from_secs(120), || stored(&pg) == 1_500).await;
    assert!(
        done,
        "stored {} of 1500\n{}",
        stored(&pg),
        second.log_tail(40)
    );
    assert_eq!(count(&pg, "SELECT count(DISTINCT id) FROM events"), 1_500);
    // The checkpoints reach the end of every shard, and the file has the contract's shape.
    let settled = common::eventually(Duration::from_secs(30), || {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&cp).unwrap_or_default())
            .unwrap_or(Value::Null);
        v["stream_arn"] == kl.arn()
            && v["shards"].as_object().is_some_and(|m| {
                m.len() == 4
                    && m.values().all(|c| {
                        c["checkpoint"].is_string()
                            && c["millis_behind_latest"] == 0
                            && c["updated_at_ms"].as_u64().is_some_and(|t| t > 0)
                    })
            })
    })
    .await;
    assert!(
        settled,
        "{}",
        std::fs::read_to_string(&cp).unwrap_or_default()
    );
    second.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = second.exited() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}\n{}", second.log_tail(20));
}
