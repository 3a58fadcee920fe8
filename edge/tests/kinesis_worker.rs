//! The Kinesis build of the worker (made with `--no-default-features --features kinesis`, as
//! wrangler.toml's `[env.kinesis.build]` builds it, and kept where `cargo xtask` puts it:
//! `worker_dir(root, BufferKind::Kinesis)`, target/worker-kinesis) under `wrangler dev`, against
//! the local Kinesis (kinesis-local, a 4-shard stream) behind the fault proxy: `202` comes only
//! once every record of the request is in the stream, each event is in it once, in the envelope
//! the consumer decodes; records refused one by one (the proxy takes them out of the
//! `PutRecords` call and answers an error entry at their positions, with `FailedRecordCount`
//! honest or `0`) are resent until stored; while the stream refuses or cannot be reached the
//! request is answered `503` naming exactly the events not stored, and retrying it stores
//! nothing that is lost or new.
//!
//! Runs without libtest's harness (`main`), the scenarios in order on one stack. It skips (with a
//! message, as `worker.rs` does) when the Kinesis build is missing, unless
//! `SPILLWAY_REQUIRE_KINESIS_WASM` (or `SPILLWAY_REQUIRE_WASM`) is set, which makes that a
//! failure; `cargo xtask test` builds it and sets both. kinesis-local comes from `npm ci`
//! (node_modules/kinesis-local).

mod harness;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use harness::*;
use libtest_mimic::{Arguments, Trial};
use serde_json::{json, Value};
use spillway_shared::open;
use spillway_support::stack::check_worker_build;
use spillway_support::{
    repo_root, run_dir, worker_built_for, BufferKind, Count, FaultMode, FaultProxy, KinesisOptions,
    KinesisServer, Pick, RecordError, RecordPlan, Service,
};
use uuid::Uuid;

const STREAM: &str = "spillway-edge-it";
/// The edge's deadline for this stack: long enough for a request of ~5 records to get through
/// when every other record is refused (a few rounds of 50-400 ms back-off) on a loaded machine.
const KINESIS_DEADLINE_MS: u64 = 5_000;

/// Whether the Kinesis build is where `cargo xtask` puts it; a missing one is a failure under
/// `SPILLWAY_REQUIRE_KINESIS_WASM`, else the test is skipped (or fails under
/// `SPILLWAY_REQUIRE_WASM`, see [`worker_built_for`]).
fn kinesis_built() -> Result<bool> {
    if std::env::var_os("SPILLWAY_REQUIRE_KINESIS_WASM").is_some() {
        check_worker_build(&repo_root(), BufferKind::Kinesis)
            .context("SPILLWAY_REQUIRE_KINESIS_WASM is set")?;
        return Ok(true);
    }
    Ok(worker_built_for("kinesis_worker", BufferKind::Kinesis))
}

struct Stack {
    kinesis: Option<KinesisServer>,
    proxy: FaultProxy,
    edge: Service,
    port: u16,
}

impl Stack {
    fn start(dir: &Path) -> Result<Stack> {
        std::fs::create_dir_all(dir)?;
        let kinesis = KinesisServer::start(&KinesisOptions {
            stream: STREAM.to_owned(),
            shards: 4,
            persist_dir: None,
        })?;
        let proxy = FaultProxy::start(kinesis.port())?;
        let vars = [
            ("BUFFER", "kinesis".to_owned()),
            ("KINESIS_STREAM_ARN", kinesis.stream_arn()),
            ("KINESIS_ENDPOINT", proxy.endpoint()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("INGEST_KEYS", format!("web:{KEY_WEB},burst:{KEY_BURST}")),
            ("ENVELOPE_KEYS", ENVELOPE_KEYS.to_owned()),
            ("SQS_DEADLINE_MS", KINESIS_DEADLINE_MS.to_string()),
            ("SQS_RETRY_BASE_MS", "50".to_owned()),
            ("SQS_RETRY_MAX_MS", "400".to_owned()),
            ("RETRY_AFTER_SECS", "2".to_owned()),
            ("MAX_BODY_BYTES", "65536".to_owned()),
            // Small records, so one request spans several of them.
            ("MAX_EVENT_BYTES", "7000".to_owned()),
            ("MAX_MESSAGE_BYTES", "8192".to_owned()),
            ("BATCH_WINDOW_MS", "0".to_owned()),
        ];
        let (edge, port) = wrangler_dev_for(dir, &vars, 200, Spill::Off, BufferKind::Kinesis)?;
        Ok(Stack {
            kinesis: Some(kinesis),
            proxy,
            edge,
            port,
        })
    }

    /// Posts `body` with `Idempotency-Key: key`, so that a retry carries the same event ids.
    fn post(&self, body: &Value, key: &str) -> Result<Answer> {
        let bearer = format!("Bearer {KEY_WEB}");
        request(
            self.port,
            "POST",
            "/v1/events",
            &[
                ("content-type", "application/json"),
                ("authorization", bearer.as_str()),
                ("idempotency-key", key),
            ],
            Body::Fixed(body.to_string().as_bytes()),
        )
    }

    fn kinesis(&self) -> Result<&KinesisServer> {
        self.kinesis
            .as_ref()
            .ok_or_else(|| anyhow!("kinesis-local is not running"))
    }

    /// Every record in the stream, read from the start of each shard straight from
    /// kinesis-local (not through the proxy): (partition key, event ids).
    fn records(&self) -> Result<Vec<(String, Vec<Uuid>)>> {
        let mut out = Vec::new();
        for r in self.kinesis()?.client().read_all(STREAM)? {
            let text = std::str::from_utf8(&r.data)?;
            let events = open(text, &keyring())
                .map_err(|e| anyhow!("not a sealed envelope: {e}: {text}"))?;
            out.push((r.partition_key, events.iter().map(|e| e.id).collect()));
        }
        Ok(out)
    }

    /// How many times each event id is in the stream.
    fn counts(&self) -> Result<HashMap<Uuid, usize>> {
        let mut counts = HashMap::new();
        for (_, ids) in self.records()? {
            for id in ids {
                *counts.entry(id).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Checks that each of `ids` is in the stream exactly once.
    fn each_once(&self, ids: &[Uuid]) -> Result<()> {
        let counts = self.counts()?;
        for id in ids {
            ensure!(
                counts.get(id) == Some(&1),
                "{id} is in the stream {:?} times",
                counts.get(id)
            );
        }
        Ok(())
    }
}

fn events(n: usize, pad: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"type": format!("t{i}"), "data": {"pad": "x".repeat(pad)}}))
            .collect(),
    )
}

fn unacknowledged(a: &Answer) -> Vec<Uuid> {
    a.json()["error"]["unacknowledged"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// `202` once every record is in the stream: each accepted event is there exactly once, with
/// random partition keys, whatever the number of records the request took.
fn accepted_events_are_in_the_stream_once(s: &mut Stack) -> Result<()> {
    let one = s.post(&events(1, 10), "k-once-1")?;
    ensure!(one.status == 202, "{} {}", one.status, one.text());
    let many = s.post(&events(30, 1_000), "k-once-30")?;
    ensure!(many.status == 202, "{} {}", many.status, many.text());
    let accepted: Vec<Uuid> = one.ids().into_iter().chain(many.ids()).collect();
    ensure!(accepted.len() == 31, "ids: {accepted:?}");
    // The answer came after Kinesis acknowledged: the records are readable now, no waiting.
    s.each_once(&accepted)?;
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

/// Records refused one by one (every other record the proxy sees, taken out of the call before
/// kinesis-local gets it): `202` only once each is resent and stored, and each event is in the
/// stream exactly once, since a refused record never reached it. With `count` = `Zero` the
/// answer's `FailedRecordCount` says nothing failed (vectordotdev/vector#16954): the same.
fn refused_one_by_one(s: &Stack, count: Count, error: RecordError, key: &str) -> Result<()> {
    let refused = s.proxy.records_refused();
    s.proxy.refuse_records(RecordPlan {
        pick: Pick::EveryNth(2),
        count,
        error,
    });
    let body = events(30, 1_000);
    let a = s.post(&body, key);
    s.proxy.set_mode(FaultMode::Pass);
    let a = a?;
    ensure!(a.status == 202, "{} {}", a.status, a.text());
    ensure!(a.ids().len() == 30, "{}", a.text());
    // At least one record of the first call (positions 1, 3, ...) and the resends were refused.
    let now_refused = s.proxy.records_refused() - refused;
    ensure!(now_refused >= 2, "the proxy refused {now_refused} records");
    s.each_once(&a.ids())?;
    eprintln!(
        "{key}: {now_refused} records refused one by one ({count:?}, {}), 30 events stored once",
        error.code()
    );
    Ok(())
}

fn refused_records_are_resent(s: &mut Stack) -> Result<()> {
    refused_one_by_one(s, Count::Honest, RecordError::Throughput, "k-refused")
}

fn refused_records_are_resent_when_the_count_lies(s: &mut Stack) -> Result<()> {
    refused_one_by_one(s, Count::Zero, RecordError::Internal, "k-refused-lying")
}

/// Every call throttled whole (Kinesis's `ProvisionedThroughputExceededException`) until the
/// deadline: `503` naming every event, none of them in the stream; the same request retried once
/// the stream takes records again is stored once.
fn throttled_until_the_deadline(s: &mut Stack) -> Result<()> {
    let throttled = s.proxy.faulted_in(FaultMode::Throttle);
    s.proxy.set_mode(FaultMode::Throttle);
    let body = events(5, 1_000);
    let started = Instant::now();
    let a = s.post(&body, "k-throttled");
    let took = started.elapsed();
    s.proxy.set_mode(FaultMode::Pass);
    let a = a?;
    ensure!(
        a.status == 503 && a.code() == "queue_unavailable",
        "{} {}",
        a.status,
        a.text()
    );
    let unacked = unacknowledged(&a);
    ensure!(unacked.len() == 5, "{}", a.text());
    ensure!(
        s.proxy.faulted_in(FaultMode::Throttle) >= throttled + 2,
        "the edge tried {} times before the deadline",
        s.proxy.faulted_in(FaultMode::Throttle) - throttled
    );
    ensure!(
        took < Duration::from_millis(KINESIS_DEADLINE_MS + 5_000),
        "answered after {took:?}"
    );
    let counts = s.counts()?;
    ensure!(
        unacked.iter().all(|id| !counts.contains_key(id)),
        "a throttled event is in the stream"
    );
    let again = s.post(&body, "k-throttled")?;
    ensure!(
        again.status == 202 && again.ids() == unacked,
        "{} {}",
        again.status,
        again.text()
    );
    s.each_once(&again.ids())
}

/// Half the records of the first call stored, every record after refused until the deadline:
/// `503` naming exactly the events not stored (the stored ones are in the stream once, the named
/// ones not at all). Retrying the same request with the same ids stores the named ones; the
/// half accepted ones are then in the stream twice, which the consumer's dedupe by id absorbs:
/// the stream holds exactly the request's ids, none lost, none new.
fn half_accepted_then_refused(s: &mut Stack) -> Result<()> {
    s.proxy.refuse_records(RecordPlan {
        pick: Pick::OddThenAll { calls: 1 },
        count: Count::Honest,
        error: RecordError::Throughput,
    });
    let body = events(30, 1_000);
    let a = s.post(&body, "k-half");
    s.proxy.set_mode(FaultMode::Pass);
    let a = a?;
    ensure!(
        a.status == 503 && a.code() == "queue_unavailable",
        "{} {}",
        a.status,
        a.text()
    );
    let unacked: HashSet<Uuid> = unacknowledged(&a).into_iter().collect();
    ensure!(
        !unacked.is_empty() && unacked.len() < 30,
        "half accepted: {} of 30 unacknowledged",
        unacked.len()
    );
    let again = s.post(&body, "k-half")?;
    ensure!(again.status == 202, "{} {}", again.status, again.text());
    let ids = again.ids();
    ensure!(
        ids.len() == 30 && unacked.iter().all(|id| ids.contains(id)),
        "the retry carries the same ids"
    );
    let counts = s.counts()?;
    let mut twice = 0;
    for id in &ids {
        // Named in the 503: stored by the retry only. Not named: stored by both tries.
        let want = if unacked.contains(id) { 1 } else { 2 };
        ensure!(
            counts.get(id) == Some(&want),
            "{id} is in the stream {:?} times, want {want}",
            counts.get(id)
        );
        twice += usize::from(want == 2);
    }
    let distinct: HashSet<&Uuid> = ids.iter().filter(|id| counts.contains_key(id)).collect();
    ensure!(distinct.len() == 30, "{} distinct ids", distinct.len());
    eprintln!(
        "k-half: {} of 30 events named in the 503; after the retry 30 distinct ids, {twice} of them twice",
        unacked.len()
    );
    Ok(())
}

/// With the stream unreachable (kinesis-local stopped), no `202`: `503` naming every event,
/// within the deadline. Once a stream is back, requests are accepted and stored again.
fn no_202_without_the_stream(s: &mut Stack) -> Result<()> {
    let kinesis = s
        .kinesis
        .take()
        .ok_or_else(|| anyhow!("no kinesis-local"))?;
    kinesis.stop();
    let started = Instant::now();
    let down = s.post(&events(3, 10), "k-down")?;
    ensure!(
        down.status == 503 && down.code() == "queue_unavailable",
        "{} {}",
        down.status,
        down.text()
    );
    ensure!(unacknowledged(&down).len() == 3, "{}", down.text());
    ensure!(
        started.elapsed() < Duration::from_millis(KINESIS_DEADLINE_MS + 5_000),
        "answered after {:?}",
        started.elapsed()
    );

    // A fresh kinesis-local comes up on a port of its own: the proxy (the edge's endpoint)
    // forwards there from now on.
    let kinesis = KinesisServer::start(&KinesisOptions {
        stream: STREAM.to_owned(),
        shards: 4,
        persist_dir: None,
    })?;
    s.proxy.forward_to(kinesis.port());
    s.kinesis = Some(kinesis);
    let up = s.post(&events(3, 10), "k-up")?;
    ensure!(up.status == 202, "{} {}", up.status, up.text());
    s.each_once(&up.ids())
}

type Scenario = fn(&mut Stack) -> Result<()>;

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let dir = run_dir().join(format!("edge-kinesis-it-{}", std::process::id()));
    let run_dir_for_trial = dir.clone();
    let trial = Trial::test("kinesis_worker", move || {
        if !kinesis_built().map_err(|e| format!("{e:#}"))? {
            return Ok(());
        }
        let mut stack = Stack::start(&run_dir_for_trial).map_err(|e| format!("{e:#}"))?;
        let scenarios: [(&str, Scenario); 6] = [
            (
                "accepted_events_are_in_the_stream_once",
                accepted_events_are_in_the_stream_once,
            ),
            ("refused_records_are_resent", refused_records_are_resent),
            (
                "refused_records_are_resent_when_the_count_lies",
                refused_records_are_resent_when_the_count_lies,
            ),
            ("throttled_until_the_deadline", throttled_until_the_deadline),
            ("half_accepted_then_refused", half_accepted_then_refused),
            ("no_202_without_the_stream", no_202_without_the_stream),
        ];
        let mut result = Ok(());
        for (name, scenario) in scenarios {
            let started = Instant::now();
            result = scenario(&mut stack).context(name);
            if result.is_err() {
                break;
            }
            eprintln!("ok: {name} ({:.1} s)", started.elapsed().as_secs_f64());
        }
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
