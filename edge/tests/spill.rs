//! The worker with its spill queue under `wrangler dev` (Miniflare runs the Cloudflare Queue,
//! its producer and the replay consumer in the same process), against moto behind the fault
//! proxy: while SQS refuses connections or stalls, every request is answered `202` within the
//! deadline with its events spilled; the breaker then stops requests from waiting on SQS at
//! all; and once SQS is back, the replay puts every accepted event on the queue (exactly once,
//! unless a replay was retried after an SQS error that may have hidden a success).
//! With SQS healthy the spill is never used.
//!
//! Skips like `worker.rs` when the worker is not built.

mod harness;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use harness::*;
use serde_json::{json, Value};
use spillway_support::{run_dir, worker_built, FaultMode};
use uuid::Uuid;

/// Longest a request may take: the deadline, plus what a loaded machine adds around it.
const ANSWER_WITHIN: Duration = Duration::from_millis(DEADLINE_MS + 3_000);
/// How long the replay may take to bring everything to SQS once it is back (its retries wait
/// half a message's age, from 2 s).
const REPLAY_WITHIN: Duration = Duration::from_secs(90);

/// One request of two events, timed.
fn post(s: &Stack, n: usize) -> Result<(Answer, Duration)> {
    let started = Instant::now();
    let body = json!([{"type": "spill_it", "data": {"n": n}}, {"type": "spill_it_too"}]);
    let a = s.post_json(&body, &[("idempotency-key", &format!("spill-it-{n}"))])?;
    Ok((a, started.elapsed()))
}

fn spilled(a: &Answer) -> u64 {
    a.json()["spilled"].as_u64().unwrap_or(0)
}

/// Every id an earlier step drained: a late second copy of one is a duplicate, not a stranger.
static DRAINED: Mutex<Vec<Uuid>> = Mutex::new(Vec::new());

/// Drains the queue until every id in `want` arrived. Fails on an id no step accepted, and on
/// a second copy of any id unless a replay was retried after an SQS error: such a replay may
/// have reached SQS before its answer was lost, so it sends its events again (at least once;
/// the consumer's `ON CONFLICT (id)` stores them once). Without such a retry, exactly once.
fn exactly_once(s: &Stack, want: &[Uuid]) -> Result<()> {
    let events = s.drain(want, REPLAY_WITHIN)?;
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for e in &events {
        *seen.entry(e.id).or_default() += 1;
    }
    let missing: Vec<&Uuid> = want.iter().filter(|id| !seen.contains_key(id)).collect();
    ensure!(
        missing.is_empty(),
        "not on the queue after {REPLAY_WITHIN:?}: {missing:?}"
    );
    let mut drained = DRAINED.lock().unwrap_or_else(|p| p.into_inner());
    let strangers: Vec<&Uuid> = seen
        .keys()
        .filter(|id| !want.contains(id) && !drained.contains(id))
        .collect();
    ensure!(
        strangers.is_empty(),
        "events no request was answered for on the queue: {strangers:?} (all: {seen:?})"
    );
    let again: Vec<(&Uuid, &usize)> = seen
        .iter()
        .filter(|(id, &n)| n > 1 || !want.contains(id))
        .collect();
    if !again.is_empty() {
        let retried_after_error = log_lines(s)?.iter().any(|l| {
            l["kind"] == "replay"
                && l["retried"].as_u64().unwrap_or(0) > 0
                && l.get("queue_error").is_some()
        });
        ensure!(
            retried_after_error,
            "queued more than once, with no replay retried after an SQS error: {again:?}"
        );
    }
    drained.extend_from_slice(want);
    Ok(())
}

/// Log lines of the edge (requests and replays), parsed.
fn log_lines(s: &Stack) -> Result<Vec<Value>> {
    Ok(std::fs::read_to_string(s.edge.log_path())?
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn healthy_sqs_never_spills(s: &Stack) -> Result<()> {
    let mut ids = Vec::new();
    for n in 0..5 {
        let (a, _) = post(s, 100 + n)?;
        ensure!(a.status == 202, "{} {}", a.status, a.text());
        ensure!(a.json().get("spilled").is_none(), "{}", a.text());
        let line = s.log_line(a.header("x-request-id").unwrap_or("-"))?;
        ensure!(
            line.get("spilled").is_none() && line.get("breaker").is_none(),
            "{line}"
        );
        ids.extend(a.ids());
    }
    exactly_once(s, &ids)
}

/// SQS down in `mode`: requests are answered 202 within the deadline with their events spilled,
/// the breaker opens (a request answered without waiting on SQS), and once SQS is back the
/// replay queues every event exactly once.
fn outage(s: &Stack, mode: FaultMode, first: usize) -> Result<()> {
    s.proxy.set_mode(mode);
    let faulted = s.proxy.faulted_in(mode);
    let mut ids = Vec::new();
    let mut open = None;
    for n in first..first + 8 {
        let (a, took) = post(s, n)?;
        ensure!(a.status == 202, "{mode:?}: {} {}", a.status, a.text());
        ensure!(took < ANSWER_WITHIN, "{mode:?}: answered after {took:?}");
        ensure!(spilled(&a) == 2, "{mode:?}: {}", a.text());
        let line = s.log_line(a.header("x-request-id").unwrap_or("-"))?;
        ensure!(line["spilled"] == 2, "{mode:?}: {line}");
        if line["breaker"] == "open" && open.is_none() {
            open = Some(took);
        }
        if n == first {
            ensure!(
                line.get("breaker").is_none(),
                "{mode:?}: the first request of the outage should try SQS: {line}"
            );
        }
        ids.extend(a.ids());
    }
    ensure!(
        s.proxy.faulted_in(mode) > faulted,
        "{mode:?}: no request reached the faulty SQS"
    );
    let open = open.with_context(|| format!("{mode:?}: the breaker never opened"))?;
    ensure!(
        open < Duration::from_millis(DEADLINE_MS / 2),
        "{mode:?}: with the breaker open a request still took {open:?}"
    );
    s.proxy.set_mode(FaultMode::Pass);
    exactly_once(s, &ids)?;
    // A replay whose answer was cut while SQS came back may have put its events on SQS and
    // still be retried (its line comes with that retry): wait for the lines, with a deadline.
    let deadline = Instant::now() + REPLAY_WITHIN;
    loop {
        let replayed: u64 = log_lines(s)?
            .iter()
            .filter(|l| l["kind"] == "replay")
            .filter_map(|l| l["replayed"].as_u64())
            .sum();
        if replayed >= ids.len() as u64 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "replay lines count {replayed} of {} events after {REPLAY_WITHIN:?}",
            ids.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn refused_sqs_spills_then_replays(s: &Stack) -> Result<()> {
    outage(s, FaultMode::Refuse, 0)
}

fn stalled_sqs_spills_then_replays(s: &Stack) -> Result<()> {
    outage(s, FaultMode::Stall, 50)
}

/// After an outage the breaker closes again: requests go to SQS directly, nothing spilled.
fn breaker_closes_once_sqs_is_back(s: &Stack) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 200;
    loop {
        let (a, _) = post(s, n)?;
        n += 1;
        ensure!(a.status == 202, "{} {}", a.status, a.text());
        let line = s.log_line(a.header("x-request-id").unwrap_or("-"))?;
        if line.get("breaker").is_none() && line.get("spilled").is_none() {
            return exactly_once(s, &a.ids());
        }
        if Instant::now() > deadline {
            bail!("still spilling a minute after SQS came back: {line}");
        }
        // Spilled meanwhile: the replay takes those; drain them too.
        exactly_once(s, &a.ids())?;
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn spill_under_wrangler_dev() -> Result<()> {
    if !worker_built("spill_under_wrangler_dev") {
        return Ok(());
    }
    let dir = run_dir().join(format!("edge-spill-{}", std::process::id()));
    let stack = Stack::start(&dir, Spill::On)?;
    let steps: [(&str, Step); 5] = [
        ("a healthy SQS never spills", healthy_sqs_never_spills),
        (
            "SQS refusing: spilled, then replayed",
            refused_sqs_spills_then_replays,
        ),
        (
            "the breaker closes once SQS is back",
            breaker_closes_once_sqs_is_back,
        ),
        (
            "SQS stalled: spilled, then replayed",
            stalled_sqs_spills_then_replays,
        ),
        ("the breaker closes again", breaker_closes_once_sqs_is_back),
    ];
    run_steps(&stack, &steps)?;
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
