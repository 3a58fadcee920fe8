//! The Kinesis build of the worker (edge/build, made with `--no-default-features --features
//! kinesis`, as wrangler.toml's `[env.kinesis]` builds it) under `wrangler dev`, against the
//! local Kinesis (kinesis-local, a 4-shard stream): `202` comes only once every record of the
//! request is in the stream, each event is in it once, in the envelope the consumer decodes,
//! and while the stream cannot be reached the request is answered `503` naming its events.
//!
//! Runs without libtest's harness (`main`), the scenarios in order on one stack. It skips (with a
//! message, as `worker.rs` does) when edge/build does not hold the Kinesis build, unless
//! `SPILLWAY_REQUIRE_KINESIS_WASM` is set, which makes that a failure. Build it by hand with
//! `cargo run -q -p spillway-worker-build -- --profile worker --no-default-features --features
//! kinesis edge`; kinesis-local comes from `npm ci` (node_modules/kinesis-local).

mod harness;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::ShardIteratorType;
use harness::*;
use libtest_mimic::{Arguments, Trial};
use serde_json::{json, Value};
use spillway_shared::{open, Event};
use spillway_support::{free_port, repo_root, run_dir, Service};
use uuid::Uuid;

const STREAM: &str = "spillway-edge-it";
/// kinesis-local's account and region.
const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/spillway-edge-it";

/// Whether edge/build holds the Kinesis build: its wasm carries the Kinesis API's target prefix
/// and not SQS's (each build carries one client).
fn kinesis_built() -> Result<bool> {
    let wasm = repo_root().join("edge/build/index_bg.wasm");
    let built = match std::fs::read(&wasm) {
        Ok(bytes) => has(&bytes, b"Kinesis_20131202") && !has(&bytes, b"AmazonSQS"),
        Err(_) => false,
    };
    if !built {
        ensure!(
            std::env::var_os("SPILLWAY_REQUIRE_KINESIS_WASM").is_none(),
            "edge/build does not hold the Kinesis build but SPILLWAY_REQUIRE_KINESIS_WASM is set"
        );
        eprintln!(
            "SKIPPED kinesis_worker: edge/build does not hold the Kinesis build (cargo run -q -p \
             spillway-worker-build -- --profile worker --no-default-features --features kinesis edge)"
        );
    }
    Ok(built)
}

fn has(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// kinesis-local on `port`, with a fresh 4-shard stream (it keeps nothing across restarts).
struct LocalKinesis {
    service: Service,
    port: u16,
    log: PathBuf,
}

impl LocalKinesis {
    fn start(dir: &Path, port: u16) -> Result<LocalKinesis> {
        let module = repo_root().join("node_modules/kinesis-local");
        ensure!(
            module.join("main.js").is_file(),
            "{} is missing: run `npm ci`",
            module.display()
        );
        let tls_port = free_port()?;
        let mut cmd = Command::new("node");
        cmd.arg(module.join("main.js"))
            .env("KINESIS_MOCK_CERT_PATH", module.join("server.json"))
            .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
            .env("KINESIS_MOCK_TLS_PORT", tls_port.to_string())
            .env("INITIALIZE_STREAMS", format!("{STREAM}:4"))
            .env("LOG_LEVEL", "WARN");
        let log = dir.join("kinesis-local.log");
        let service = Service::spawn("kinesis-local-edge-it", cmd, &log)?;
        Ok(LocalKinesis { service, port, log })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

struct Stack {
    dir: PathBuf,
    kinesis: Option<LocalKinesis>,
    kinesis_port: u16,
    client: aws_sdk_kinesis::Client,
    tokio: tokio::runtime::Runtime,
    edge: Service,
    port: u16,
}

impl Stack {
    fn start(dir: &Path) -> Result<Stack> {
        std::fs::create_dir_all(dir)?;
        let kinesis_port = free_port()?;
        let kinesis = LocalKinesis::start(dir, kinesis_port)?;
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "test"))
                .endpoint_url(kinesis.endpoint())
                .build(),
        );
        let mut stack_kinesis = Some(kinesis);
        wait_active(&tokio, &client, stack_kinesis.as_mut())?;
        let vars = [
            ("BUFFER", "kinesis".to_owned()),
            ("KINESIS_STREAM_ARN", STREAM_ARN.to_owned()),
            (
                "KINESIS_ENDPOINT",
                format!("http://127.0.0.1:{kinesis_port}"),
            ),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("INGEST_KEYS", format!("web:{KEY_WEB},burst:{KEY_BURST}")),
            ("ENVELOPE_KEYS", ENVELOPE_KEYS.to_owned()),
            ("SQS_DEADLINE_MS", DEADLINE_MS.to_string()),
            ("SQS_RETRY_BASE_MS", "50".to_owned()),
            ("SQS_RETRY_MAX_MS", "400".to_owned()),
            ("RETRY_AFTER_SECS", "2".to_owned()),
            ("MAX_BODY_BYTES", "65536".to_owned()),
            // Small records, so one request spans several of them.
            ("MAX_EVENT_BYTES", "7000".to_owned()),
            ("MAX_MESSAGE_BYTES", "8192".to_owned()),
            ("BATCH_WINDOW_MS", "0".to_owned()),
        ];
        let (edge, port) = wrangler_dev(dir, &vars, 200, Spill::Off)?;
        Ok(Stack {
            dir: dir.to_owned(),
            kinesis: stack_kinesis,
            kinesis_port,
            client,
            tokio,
            edge,
            port,
        })
    }

    fn post(&self, body: &Value) -> Result<Answer> {
        let bearer = format!("Bearer {KEY_WEB}");
        request(
            self.port,
            "POST",
            "/v1/events",
            &[
                ("content-type", "application/json"),
                ("authorization", bearer.as_str()),
            ],
            Body::Fixed(body.to_string().as_bytes()),
        )
    }

    /// Every record in the stream, from the start of each shard: (partition key, events).
    fn records(&self) -> Result<Vec<(String, Vec<Event>)>> {
        self.tokio.block_on(async {
            let shards = self
                .client
                .list_shards()
                .stream_arn(STREAM_ARN)
                .send()
                .await?;
            let mut out = Vec::new();
            for shard in shards.shards() {
                let mut iterator = self
                    .client
                    .get_shard_iterator()
                    .stream_arn(STREAM_ARN)
                    .shard_id(shard.shard_id())
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await?
                    .shard_iterator;
                while let Some(it) = iterator {
                    let page = self
                        .client
                        .get_records()
                        .stream_arn(STREAM_ARN)
                        .shard_iterator(it)
                        .send()
                        .await?;
                    for r in page.records() {
                        let text = std::str::from_utf8(r.data().as_ref())?;
                        let events = open(text, &keyring())
                            .map_err(|e| anyhow!("not a sealed envelope: {e}: {text}"))?;
                        out.push((r.partition_key().unwrap_or_default().to_owned(), events));
                    }
                    // Read up to the tip: an empty page with nothing behind it.
                    if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
                        break;
                    }
                    iterator = page.next_shard_iterator;
                }
            }
            anyhow::Ok(out)
        })
    }

    /// How many times each event id is in the stream.
    fn counts(&self) -> Result<HashMap<Uuid, usize>> {
        let mut counts = HashMap::new();
        for (_, events) in self.records()? {
            for e in events {
                *counts.entry(e.id).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}

/// Waits for the stream to be ACTIVE (kinesis-local creates it shortly after it starts).
fn wait_active(
    tokio: &tokio::runtime::Runtime,
    client: &aws_sdk_kinesis::Client,
    kinesis: Option<&mut LocalKinesis>,
) -> Result<()> {
    let kinesis = kinesis.ok_or_else(|| anyhow!("kinesis-local is not running"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = tokio
            .block_on(
                client
                    .describe_stream_summary()
                    .stream_arn(STREAM_ARN)
                    .send(),
            )
            .ok()
            .and_then(|s| s.stream_description_summary)
            .map(|s| s.stream_status);
        if status == Some(aws_sdk_kinesis::types::StreamStatus::Active) {
            return Ok(());
        }
        if let Some(status) = kinesis.service.exited() {
            bail!(
                "kinesis-local exited ({status}): {}",
                kinesis.service.log_tail(20)
            );
        }
        ensure!(
            Instant::now() < deadline,
            "the stream is not ACTIVE after 60 s; log: {}",
            kinesis.log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn events(n: usize, pad: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"type": format!("t{i}"), "data": {"pad": "x".repeat(pad)}}))
            .collect(),
    )
}

/// `202` once every record is in the stream: each accepted event is there exactly once, with
/// random partition keys, whatever the number of records the request took.
fn accepted_events_are_in_the_stream_once(s: &Stack) -> Result<()> {
    let one = s.post(&events(1, 10))?;
    ensure!(one.status == 202, "{} {}", one.status, one.text());
    let many = s.post(&events(30, 1_000))?;
    ensure!(many.status == 202, "{} {}", many.status, many.text());
    let accepted: Vec<Uuid> = one.ids().into_iter().chain(many.ids()).collect();
    ensure!(accepted.len() == 31, "ids: {accepted:?}");
    // The answer came after Kinesis acknowledged: the records are readable now, no waiting.
    let counts = s.counts()?;
    for id in &accepted {
        ensure!(
            counts.get(id) == Some(&1),
            "{id} is in the stream {:?} times",
            counts.get(id)
        );
    }
    let records = s.records()?;
    ensure!(
        records.len() >= 4,
        "30 events of 1 KB in 8 KiB records: {}",
        records.len()
    );
    ensure!(
        records
            .iter()
            .all(|(key, _)| key.len() == 32 && key.chars().all(|c| c.is_ascii_hexdigit())),
        "random partition keys"
    );
    Ok(())
}

/// With the stream unreachable, no `202`: `503` naming every event, within the deadline. Once
/// it is back, requests are accepted and stored again.
fn no_202_without_the_stream(s: &mut Stack) -> Result<()> {
    let mut kinesis = s
        .kinesis
        .take()
        .ok_or_else(|| anyhow!("no kinesis-local"))?;
    kinesis.service.stop(Duration::from_secs(5));
    let started = Instant::now();
    let down = s.post(&events(3, 10))?;
    ensure!(
        down.status == 503 && down.code() == "queue_unavailable",
        "{} {}",
        down.status,
        down.text()
    );
    let unacked = down.json()["error"]["unacknowledged"]
        .as_array()
        .map(Vec::len);
    ensure!(unacked == Some(3), "{}", down.text());
    ensure!(
        started.elapsed() < Duration::from_millis(DEADLINE_MS + 5_000),
        "answered after {:?}",
        started.elapsed()
    );

    s.kinesis = Some(LocalKinesis::start(&s.dir.join("again"), s.kinesis_port)?);
    wait_active(&s.tokio, &s.client, s.kinesis.as_mut())?;
    let up = s.post(&events(3, 10))?;
    ensure!(up.status == 202, "{} {}", up.status, up.text());
    let counts = s.counts()?;
    for id in up.ids() {
        ensure!(counts.get(&id) == Some(&1), "{id} not in the stream once");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let dir = run_dir().join(format!("edge-kinesis-it-{}", std::process::id()));
    let run_dir_for_trial = dir.clone();
    let trial = Trial::test("kinesis_worker", move || {
        if !kinesis_built().map_err(|e| format!("{e:#}"))? {
            return Ok(());
        }
        let mut stack = Stack::start(&run_dir_for_trial).map_err(|e| format!("{e:#}"))?;
        let result = accepted_events_are_in_the_stream_once(&stack)
            .context("accepted_events_are_in_the_stream_once")
            .and_then(|()| {
                no_202_without_the_stream(&mut stack).context("no_202_without_the_stream")
            });
        let log = stack.edge.log_path().display().to_string();
        drop(stack);
        result.map_err(|e| format!("{e:#}\nwrangler log: {log}").into())
    });
    let conclusion = libtest_mimic::run(&args, vec![trial]);
    if !conclusion.has_failed() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    conclusion.exit_code()
}
