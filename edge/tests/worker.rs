//! The built worker (edge/build) under `wrangler dev` (workerd), against the local SQS (moto)
//! with a fault proxy in between: events sent over HTTP arrive on the queue as the envelopes the
//! consumer decodes, errors come back as the contract says, and SQS trouble turns into retries
//! and, past the deadline, into `503` naming the events.
//!
//! Each scenario is a test of its own (this file runs without libtest's harness, see `main`),
//! and they share one `wrangler dev`. Each skips (with a message) when the worker has not been
//! built and `SPILLWAY_REQUIRE_WASM` is unset; `cargo xtask test` builds it first and sets the
//! variable, so there they always run.
//! Build by hand with `cargo run -q -p spillway-worker-build -- --profile worker edge` (wrangler.toml's `[build]` command).

mod harness;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use harness::*;
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{json, Value};
use spillway_shared::{derive_id, open};
use spillway_support::{gzip, run_dir, worker_built, FaultMode};
use uuid::Uuid;

/// A second worker in front of a FIFO queue: entries carry the key id as message group and a
/// deduplication id derived from the event ids, so a retried request is not enqueued twice.
fn fifo_queue(s: &Stack) -> Result<()> {
    let url = s
        .tokio
        .block_on(
            s.sqs
                .create_queue()
                .queue_name("spillway-edge-it.fifo")
                .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
                .send(),
        )?
        .queue_url
        .ok_or_else(|| anyhow!("moto returned no queue URL"))?;
    let vars = [
        ("SQS_QUEUE_URL", url.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("INGEST_KEYS", format!("web:{KEY_WEB}")),
        ("ENVELOPE_KEYS", ENVELOPE_KEYS.to_owned()),
    ];
    let (_edge, port) = wrangler_dev(&s.dir.join("fifo"), &vars, 200, Spill::Off)?;
    let bearer = format!("Bearer {KEY_WEB}");
    let body = br#"[{"type":"fifo_a"},{"type":"fifo_b"}]"#;
    let headers = [
        ("authorization", bearer.as_str()),
        ("idempotency-key", "it-fifo"),
    ];
    let first = request(port, "POST", "/v1/events", &headers, Body::Fixed(body))?;
    let again = request(port, "POST", "/v1/events", &headers, Body::Fixed(body))?;
    ensure!(
        first.status == 202 && again.status == 202,
        "{} {}",
        first.text(),
        again.text()
    );
    ensure!(first.ids() == again.ids());
    let out = s.tokio.block_on(
        s.sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send(),
    )?;
    let messages = out.messages();
    ensure!(
        messages.len() == 1,
        "the retry was deduplicated: {} messages",
        messages.len()
    );
    let m = messages.first().ok_or_else(|| anyhow!("no message"))?;
    let group = m
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId));
    ensure!(
        group.map(String::as_str) == Some("web"),
        "{:?}",
        m.attributes()
    );
    let events = open(m.body().unwrap_or(""), &keyring())?;
    ensure!(ids_of(&events) == first.ids(), "{events:?}");
    Ok(())
}

/// A worker whose settings are unusable answers `500 misconfigured` and says why in its log,
/// naming variables, never their values.
fn misconfigured_worker(dir: &Path) -> Result<()> {
    let vars = [
        ("SQS_QUEUE_URL", "not a url".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "it-secret-never-logged".to_owned()),
        ("INGEST_KEYS", "web:short-key".to_owned()),
    ];
    let (edge, port) = wrangler_dev(dir, &vars, 500, Spill::Off)?;
    let a = request(
        port,
        "POST",
        "/v1/events",
        &[("x-api-key", "short-key")],
        Body::Fixed(b"{}"),
    )?;
    ensure!(
        a.status == 500 && a.code() == "misconfigured",
        "{} {}",
        a.status,
        a.text()
    );
    ensure!(!a.text().contains("short-key"), "{}", a.text());
    let request_id = a.header("x-request-id").unwrap_or("-").to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let log = std::fs::read_to_string(edge.log_path())?;
        if let Some(l) = log
            .lines()
            .find(|l| l.starts_with('{') && l.contains(&request_id))
        {
            break l.to_owned();
        }
        ensure!(Instant::now() < deadline, "no log line for {request_id}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let line: Value = serde_json::from_str(&line)?;
    let note = line["note"].as_str().unwrap_or("");
    ensure!(
        note.contains("SQS_QUEUE_URL") && note.contains("INGEST_KEYS"),
        "{line}"
    );
    ensure!(
        !note.contains("short-key") && !note.contains("it-secret"),
        "{line}"
    );
    Ok(())
}

/// The scenarios that share the stack, in the order they run.
const ON_THE_STACK: [(&str, Step); 10] = [
    ("events_arrive_as_envelopes", events_arrive_as_envelopes),
    (
        "concurrent_requests_share_sqs_calls",
        concurrent_requests_share_sqs_calls,
    ),
    ("body_shapes_and_key_forms", body_shapes_and_key_forms),
    ("many_events_several_batches", many_events_several_batches),
    ("errors_as_the_contract_says", errors_as_the_contract_says),
    ("faults_are_retried", faults_are_retried),
    (
        "deadline_gives_503_and_retry_is_safe",
        deadline_gives_503_and_retry_is_safe,
    ),
    (
        "stalled_sqs_is_cut_by_the_deadline",
        stalled_sqs_is_cut_by_the_deadline,
    ),
    ("rate_limit_per_key", rate_limit_per_key),
    ("fifo_queue", fifo_queue),
];

/// Each scenario is a trial of its own (filter by name as with any test: `cargo test -p
/// spillway-edge --test worker faults`), and all share one stack, started by the first trial
/// that needs it and stopped once the trials are done: a `wrangler dev` start costs seconds of
/// CPU, and a stack held in a `#[test]`'s static would never be stopped.
fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // The scenarios switch the one fault proxy's mode and check that nothing else reached the
    // one queue: they cannot overlap.
    args.test_threads = Some(1);
    let dir = run_dir().join(format!("edge-it-{}", std::process::id()));
    let shared = Arc::new(Shared {
        dir: dir.clone(),
        stack: Mutex::new(None),
    });
    let mut trials: Vec<Trial> = ON_THE_STACK
        .into_iter()
        .map(|(name, step)| {
            let shared = Arc::clone(&shared);
            Trial::test(name, move || shared.run(name, step))
        })
        .collect();
    let misconfigured = dir.join("misconfigured");
    trials.push(Trial::test("misconfigured_worker", move || {
        if !worker_built("misconfigured_worker") {
            return Ok(());
        }
        misconfigured_worker(&misconfigured).map_err(|e| {
            format!(
                "{e:#}\nwrangler log: {}",
                misconfigured.join("wrangler.log").display()
            )
            .into()
        })
    }));
    let conclusion = libtest_mimic::run(&args, trials);
    // Stops moto, the proxy and `wrangler dev` (their `Drop`) before the process exits.
    drop(shared.take());
    if !conclusion.has_failed() {
        // Passed: the logs and wrangler's state are of no further use.
        let _ = std::fs::remove_dir_all(&dir);
    }
    conclusion.exit_code()
}

/// The stack the scenarios share: `None` until the first of them starts it; the error text if
/// it failed to start (every scenario on it then fails saying so, without trying again).
struct Shared {
    dir: PathBuf,
    stack: Mutex<Option<Result<Stack, String>>>,
}

impl Shared {
    /// Runs the scenario `name` against the stack, starting it first if no scenario has.
    fn run(&self, name: &str, step: Step) -> Result<(), Failed> {
        if !worker_built(name) {
            return Ok(());
        }
        // A scenario that panicked poisons the lock; the stack itself is still usable.
        let mut slot = self.stack.lock().unwrap_or_else(PoisonError::into_inner);
        // Without the spill queue: SQS trouble past the deadline is answered 503 (spill.rs has
        // the worker with it).
        let stack = slot
            .get_or_insert_with(|| {
                Stack::start(&self.dir, Spill::Off).map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| format!("the stack did not start: {e}"))?;
        let started = Instant::now();
        step(stack).map_err(|e| {
            // A scenario that failed half-way may leave SQS faulted or messages queued: put
            // the stack back as the next scenario expects it, so one failure stays one.
            stack.proxy.set_mode(FaultMode::Pass);
            let _ = stack.drain(&[], Duration::from_secs(2));
            format!(
                "{e:#}\n(after {:.1} s; wrangler log: {})",
                started.elapsed().as_secs_f64(),
                stack.edge.log_path().display()
            )
            .into()
        })
    }

    fn take(&self) -> Option<Result<Stack, String>> {
        self.stack
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

fn events_arrive_as_envelopes(s: &Stack) -> Result<()> {
    let client_id = Uuid::parse_str("0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10")?;
    let events = json!([
        {"type": "page_view", "id": client_id, "data": {"path": "/pricing"}},
        {"type": "click", "timestamp": "2026-11-28T07:00:00Z", "data": {"button": "buy"}},
        {"type": "signup"}
    ]);
    let z = gzip(events.to_string().as_bytes());
    let bearer = format!("Bearer {KEY_WEB}");
    let a = s.post(
        "/v1/events",
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("content-encoding", "gzip"),
            ("authorization", &bearer),
            ("idempotency-key", "it-happy-1"),
            ("origin", ORIGIN),
        ],
        &z,
    )?;
    ensure!(a.status == 202, "{} {}", a.status, a.text());
    ensure!(a.json()["accepted"] == 3, "{}", a.text());
    ensure!(
        a.header("access-control-allow-origin") == Some(ORIGIN),
        "{:?}",
        a.headers
    );
    let ids = a.ids();
    ensure!(
        ids == vec![
            client_id,
            derive_id("web", "it-happy-1", 1, &events[1].to_string()),
            derive_id("web", "it-happy-1", 2, &events[2].to_string())
        ],
        "ids: {ids:?}"
    );

    let queued = s.drain(&ids, Duration::from_secs(10))?;
    ensure!(
        ids_of(&queued) == ids,
        "queued {:?}, answered {ids:?}",
        ids_of(&queued)
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    for e in &queued {
        ensure!(e.key_id == "web", "{e:?}");
        ensure!(
            (now_ms - e.received_at.timestamp_millis()).abs() < 60_000,
            "received_at {}",
            e.received_at
        );
        ensure!(
            e.edge.as_ref().is_some_and(|edge| edge.colo.is_some()),
            "edge location from request.cf: {e:?}"
        );
    }
    ensure!(
        queued[0].event_type == "page_view" && queued[0].data.get() == r#"{"path":"/pricing"}"#
    );
    ensure!(
        queued[1].occurred_at.map(|t| t.to_rfc3339()) == Some("2026-11-28T07:00:00+00:00".into())
    );
    ensure!(queued[2].data.get() == "{}");

    let line = s.log_line(a.header("x-request-id").unwrap_or("-"))?;
    ensure!(
        line["status"] == 202 && line["events"] == 3 && line["key_id"] == "web",
        "{line}"
    );
    ensure!(line["bytes"] == z.len() && line["sqs_calls"] == 1, "{line}");
    let raw = std::fs::read_to_string(s.edge.log_path())?;
    let json_lines: Vec<&str> = raw.lines().filter(|l| l.starts_with('{')).collect();
    // The check below is about these lines: they must be there, this request's among them.
    ensure!(
        json_lines
            .iter()
            .any(|l| l.contains(a.header("x-request-id").unwrap_or("-"))),
        "this request's log line is not among the JSON lines: {json_lines:?}"
    );
    ensure!(
        json_lines
            .iter()
            .all(|l| !l.contains(KEY_WEB) && !l.contains("pricing")),
        "secrets or payloads in log lines"
    );
    Ok(())
}

fn body_shapes_and_key_forms(s: &Stack) -> Result<()> {
    let nd = b"{\"type\":\"nd1\"}\n\n{\"type\":\"nd2\"}\n";
    let a = s.post(
        "/v1/events",
        &[
            ("content-type", "application/x-ndjson"),
            ("x-api-key", KEY_WEB),
        ],
        nd,
    )?;
    ensure!(
        a.status == 202 && a.json()["accepted"] == 2,
        "{} {}",
        a.status,
        a.text()
    );
    let mut ids = a.ids();
    // navigator.sendBeacon: text/plain, key in the query string.
    let beacon = format!("/v1/events?key={KEY_WEB}");
    let a = s.post(
        &beacon,
        &[("content-type", "text/plain;charset=UTF-8")],
        br#"{"type":"beacon"}"#,
    )?;
    ensure!(a.status == 202, "{} {}", a.status, a.text());
    ids.extend(a.ids());
    let queued = s.drain(&ids, Duration::from_secs(10))?;
    let types: Vec<&str> = queued.iter().map(|e| e.event_type.as_str()).collect();
    ensure!(types == ["nd1", "nd2", "beacon"], "{types:?}");
    Ok(())
}

fn many_events_several_batches(s: &Stack) -> Result<()> {
    let pad = "x".repeat(900);
    let events: Vec<Value> = (0..120)
        .map(|i| json!({"type": "bulk", "data": {"i": i, "pad": pad}}))
        .collect();
    // About 110 KiB of JSON: over MAX_BODY_BYTES as is, fine gzipped (the cap after inflating
    // is 1 MiB).
    let z = gzip(Value::Array(events).to_string().as_bytes());
    let bearer = format!("Bearer {KEY_WEB}");
    let a = s.post(
        "/v1/events",
        &[("authorization", &bearer), ("content-encoding", "gzip")],
        &z,
    )?;
    ensure!(a.status == 202, "{} {}", a.status, a.text());
    let ids = a.ids();
    ensure!(ids.len() == 120);
    let line = s.log_line(a.header("x-request-id").unwrap_or("-"))?;
    ensure!(
        line["sqs_calls"].as_u64() >= Some(2),
        "expected several batch requests: {line}"
    );
    let queued = s.drain(&ids, Duration::from_secs(20))?;
    let mut got = ids_of(&queued);
    got.sort();
    let mut want = ids.clone();
    want.sort();
    ensure!(
        got == want,
        "every event exactly once: {} queued for {} ids",
        got.len(),
        want.len()
    );
    Ok(())
}

fn errors_as_the_contract_says(s: &Stack) -> Result<()> {
    let bearer = format!("Bearer {KEY_WEB}");
    let auth = ("authorization", bearer.as_str());
    let check = |a: Answer, status: u16, code: &str| -> Result<Answer> {
        ensure!(
            a.status == status && a.code() == code,
            "wanted {status} {code}, got {} {}",
            a.status,
            a.text()
        );
        ensure!(
            a.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            a.headers
        );
        Ok(a)
    };
    let a = check(
        request(s.port, "GET", "/nope", &[], Body::Fixed(b""))?,
        404,
        "not_found",
    )?;
    drop(a);
    let a = check(
        request(s.port, "GET", "/v1/events", &[], Body::Fixed(b""))?,
        405,
        "method_not_allowed",
    )?;
    ensure!(a.header("allow") == Some("POST, OPTIONS"));
    check(
        s.post("/v1/events", &[("content-type", "application/json")], b"{}")?,
        401,
        "missing_key",
    )?;
    check(
        s.post(
            "/v1/events",
            &[("x-api-key", "wrong-wrong-wrong-wrong")],
            b"{}",
        )?,
        401,
        "invalid_key",
    )?;
    check(
        s.post("/v1/events", &[auth], b"{\"type\":")?,
        400,
        "invalid_json",
    )?;
    let a = check(
        s.post(
            "/v1/events",
            &[auth],
            br#"[{"type":"a"},{"type":"b","user":"x"}]"#,
        )?,
        400,
        "unknown_field",
    )?;
    ensure!(a.json()["error"]["index"] == 1, "{}", a.text());
    check(
        s.post(
            "/v1/events",
            &[auth, ("content-type", "application/x-www-form-urlencoded")],
            b"a=1",
        )?,
        415,
        "unsupported_media_type",
    )?;
    check(
        s.post("/v1/events", &[auth, ("content-encoding", "br")], b"{}")?,
        415,
        "unsupported_encoding",
    )?;
    let big = vec![b' '; 70_000];
    check(
        s.post("/v1/events", &[auth], &big)?,
        413,
        "payload_too_large",
    )?;
    // Without a declared length the edge counts the streamed bytes itself.
    check(
        request(s.port, "POST", "/v1/events", &[auth], Body::Chunked(&big))?,
        413,
        "payload_too_large",
    )?;
    let bomb = gzip(&vec![b' '; 32 * 1024 * 1024]);
    let started = Instant::now();
    check(
        s.post("/v1/events", &[auth, ("content-encoding", "gzip")], &bomb)?,
        413,
        "payload_too_large",
    )?;
    ensure!(
        started.elapsed() < Duration::from_secs(3),
        "bomb took {:?}",
        started.elapsed()
    );
    let mut corrupt = gzip(br#"{"type":"a"}"#);
    let n = corrupt.len();
    corrupt[n - 6] ^= 0x55;
    check(
        s.post(
            "/v1/events",
            &[auth, ("content-encoding", "gzip")],
            &corrupt,
        )?,
        400,
        "invalid_gzip",
    )?;

    let pre = request(
        s.port,
        "OPTIONS",
        "/v1/events",
        &[
            ("origin", ORIGIN),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ],
        Body::Fixed(b""),
    )?;
    ensure!(pre.status == 204, "{} {}", pre.status, pre.text());
    ensure!(
        pre.header("access-control-allow-origin") == Some(ORIGIN),
        "{:?}",
        pre.headers
    );
    ensure!(pre
        .header("access-control-allow-headers")
        .is_some_and(|h| h.contains("authorization")));
    // Nothing above reached the queue.
    let leftovers = s.drain(&[], Duration::from_secs(2))?;
    ensure!(
        leftovers.is_empty(),
        "a refused request enqueued {leftovers:?}"
    );
    Ok(())
}

/// Group commit under the real runtime: one-event requests released together go through the
/// batcher Durable Object, share `SendMessageBatch` calls, and each 202'd id is queued once.
fn concurrent_requests_share_sqs_calls(s: &Stack) -> Result<()> {
    const CLIENTS: usize = 24;
    let answers = together(s, "together", CLIENTS, None)?;
    let mut accepted = Vec::new();
    let mut most_shared = 0;
    for a in &answers {
        ensure!(a.status == 202, "{} {}", a.status, a.text());
        accepted.extend(a.ids());
        let line = s.log_line(a.header("x-request-id").unwrap_or("-"))?;
        ensure!(line["send"] == "batched", "{line}");
        most_shared = most_shared.max(line["batch_requests"].as_u64().unwrap_or(0));
    }
    ensure!(
        most_shared >= 2,
        "{CLIENTS} requests released together never shared a batch"
    );
    let mut queued = ids_of(&s.drain(&accepted, Duration::from_secs(20))?);
    queued.sort();
    accepted.sort();
    ensure!(queued == accepted, "every 202'd id queued exactly once");
    Ok(())
}

fn faults_are_retried(s: &Stack) -> Result<()> {
    for (n, mode) in [FaultMode::Http500, FaultMode::Throttle, FaultMode::Refuse]
        .into_iter()
        .enumerate()
    {
        let faulted = s.proxy.faulted();
        s.proxy.set_mode(mode);
        let key = format!("it-fault-{n}");
        let port = s.port;
        let body = json!([{"type": "during_fault", "data": {"n": n}}]).to_string();
        let bearer = format!("Bearer {KEY_WEB}");
        let sender = std::thread::spawn(move || {
            request(
                port,
                "POST",
                "/v1/events",
                &[("authorization", &bearer), ("idempotency-key", &key)],
                Body::Fixed(body.as_bytes()),
            )
        });
        // Let SQS fail at least once (whatever the machine's speed), then recover.
        let waited = Instant::now();
        while s.proxy.faulted() == faulted && waited.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(150));
        s.proxy.set_mode(FaultMode::Pass);
        let a = sender.join().map_err(|_| anyhow!("sender panicked"))??;
        ensure!(a.status == 202, "{mode:?}: {} {}", a.status, a.text());
        ensure!(
            s.proxy.faulted() > faulted,
            "{mode:?}: the proxy saw no request to fault"
        );
        let line = s.log_line(a.header("x-request-id").unwrap_or("-"))?;
        ensure!(line["retries"].as_u64() >= Some(1), "{mode:?}: {line}");
        let queued = s.drain(&a.ids(), Duration::from_secs(10))?;
        ensure!(
            ids_of(&queued) == a.ids(),
            "{mode:?}: stored exactly once: {:?}",
            ids_of(&queued)
        );
    }
    Ok(())
}

fn deadline_gives_503_and_retry_is_safe(s: &Stack) -> Result<()> {
    let faulted = s.proxy.faulted_in(FaultMode::Http500);
    s.proxy.set_mode(FaultMode::Http500);
    let body = json!([{"type": "late"}, {"type": "later"}]);
    let started = Instant::now();
    let a = s.post_json(&body, &[("idempotency-key", "it-deadline")])?;
    let took = started.elapsed();
    s.proxy.set_mode(FaultMode::Pass);
    ensure!(
        a.status == 503 && a.code() == "queue_unavailable",
        "{} {}",
        a.status,
        a.text()
    );
    ensure!(a.header("retry-after") == Some("2"), "{:?}", a.headers);
    // The 503 is the deadline's: SQS failed more than once (the edge retried until it ran out).
    ensure!(
        s.proxy.faulted_in(FaultMode::Http500) >= faulted + 2,
        "SQS failed {} times",
        s.proxy.faulted_in(FaultMode::Http500) - faulted
    );
    let expected = [
        derive_id("web", "it-deadline", 0, &body[0].to_string()),
        derive_id("web", "it-deadline", 1, &body[1].to_string()),
    ];
    let unacked: Vec<Uuid> = a.json()["error"]["unacknowledged"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    ensure!(unacked == expected, "{}", a.text());
    ensure!(
        took >= Duration::from_millis(DEADLINE_MS / 2)
            && took < Duration::from_millis(DEADLINE_MS + 3_000),
        "answered after {took:?} for a {DEADLINE_MS} ms deadline"
    );
    // The client retries the same request: same ids, stored once.
    let again = s.post_json(&body, &[("idempotency-key", "it-deadline")])?;
    ensure!(
        again.status == 202 && again.ids() == expected,
        "{} {}",
        again.status,
        again.text()
    );
    let queued = s.drain(&expected, Duration::from_secs(10))?;
    // A send still in flight when the edge gave up at the deadline may reach SQS after the
    // 503 (seen on a loaded machine), so the retried events can be queued twice: the
    // at-least-once that the consumer's `ON CONFLICT (id)` absorbs. What must hold: exactly
    // these ids, nothing else.
    let mut distinct = Vec::new();
    for id in ids_of(&queued) {
        if !distinct.contains(&id) {
            distinct.push(id);
        }
    }
    ensure!(distinct == expected, "{:?}", ids_of(&queued));
    Ok(())
}

fn stalled_sqs_is_cut_by_the_deadline(s: &Stack) -> Result<()> {
    let stalled = s.proxy.faulted_in(FaultMode::Stall);
    s.proxy.set_mode(FaultMode::Stall);
    let started = Instant::now();
    let a = s.post_json(
        &json!({"type": "stalled"}),
        &[("idempotency-key", "it-stall")],
    );
    let took = started.elapsed();
    s.proxy.set_mode(FaultMode::Pass);
    let a = a?;
    ensure!(
        a.status == 503 && a.code() == "queue_unavailable",
        "{} {}",
        a.status,
        a.text()
    );
    ensure!(
        s.proxy.faulted_in(FaultMode::Stall) > stalled,
        "the request never reached the stalled SQS"
    );
    ensure!(
        took < Duration::from_millis(DEADLINE_MS + 3_000),
        "answered after {took:?}"
    );
    // SQS never saw it: nothing arrives. (Had it been stored, the retry would dedupe by id.)
    let leftovers = s.drain(&[], Duration::from_secs(2))?;
    ensure!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}

fn rate_limit_per_key(s: &Stack) -> Result<()> {
    let bearer = format!("Bearer {KEY_BURST}");
    let mut limited = None;
    // The local limiter counts in fixed windows of the period: twice the limit (and some) gets
    // a 429 even when the burst straddles a window boundary.
    for i in 0..2 * RATE_LIMIT + 10 {
        // An invalid event: counted by the limiter, never enqueued.
        let a = s.post("/v1/events", &[("authorization", &bearer)], b"{}")?;
        match a.status {
            400 => {}
            429 => {
                limited = Some((i, a));
                break;
            }
            other => bail!("request {i}: unexpected {other} {}", a.text()),
        }
    }
    let (i, a) = limited.ok_or_else(|| anyhow!("no 429 after {} requests", 2 * RATE_LIMIT + 10))?;
    ensure!(i >= RATE_LIMIT / 2, "limited after only {i} requests");
    ensure!(
        a.code() == "rate_limited" && a.header("retry-after") == Some("60"),
        "{:?} {}",
        a.headers,
        a.text()
    );
    // Another key is not affected.
    let ok = s.post_json(&json!({"type": "after_burst"}), &[])?;
    ensure!(ok.status == 202, "{} {}", ok.status, ok.text());
    s.drain(&ok.ids(), Duration::from_secs(10))?;
    Ok(())
}
