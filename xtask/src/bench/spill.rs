//! Figure 8: the spill through an SQS outage (issue 15). The same open-loop load of one-event
//! requests three times on the pipeline, with a fault proxy between the edge and the local SQS:
//! without the spill queue and SQS healthy, with it and SQS healthy (the spill must stay
//! unused and latency unchanged), and with it while SQS stalls for 40 s (every request must be
//! answered `202` within the deadline, and every accepted event stored once SQS is back).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use spillway_support::stack::spill_counts;
use spillway_support::{FaultMode, Stack};

use super::batching::{drive, edge_restored, warm_up, Answers};
use super::client::{Answer, Endpoint};

/// Offered load: one-event requests per second.
pub(super) const RATE: u32 = 25;
/// The healthy phases' length, and the outage phase's: SQS stalls from `STALL.0` to `STALL.1`
/// seconds into it.
const HEALTHY_SECS: u32 = 10;
const OUTAGE_SECS: u32 = 50;
const STALL: (u64, u64) = (5, 45);
/// The edge's deadline in this figure (its default).
pub(super) const DEADLINE_MS: u64 = 8_000;
/// How long the accepted events may take to reach the table once SQS is back.
const STORE_WITHIN: Duration = Duration::from_secs(180);

/// One phase of the figure.
#[derive(Debug, Clone)]
pub(super) struct SpillRow {
    pub(super) spill: bool,
    /// Seconds into the phase SQS stalled (from, to), if it did.
    pub(super) stall: Option<(u64, u64)>,
    pub(super) secs: u32,
    pub(super) answers: Answers,
    /// Events the edge logged as spilled during the phase.
    pub(super) spilled: u64,
    /// Accepted events found in the table, accepted events missing, and stored events that
    /// were not answered 202.
    pub(super) stored: usize,
    pub(super) missing: usize,
    pub(super) stored_unaccepted: usize,
    /// From the last answer until every accepted event was in the table (`None`: not within
    /// [`STORE_WITHIN`]).
    pub(super) stored_after_s: Option<f64>,
}

fn body(run: &str, i: usize) -> Arc<Vec<u8>> {
    Arc::new(format!(r#"{{"type":"spill_bench","data":{{"run":"{run}","n":{i}}}}}"#).into_bytes())
}

/// The three phases, on `stack` (its edge restarted with a fault proxy in front of SQS, and
/// put back as it was afterwards).
pub(super) fn spill(stack: &mut Stack) -> Result<Vec<SpillRow>> {
    // The replay and the poller must run: the figure counts what reaches the table.
    stack.start_poller().context("starting the poller")?;
    edge_restored(stack, phases)
}

fn phases(stack: &mut Stack) -> Result<Vec<SpillRow>> {
    let mut rows = Vec::new();
    let plan = [
        (false, None, HEALTHY_SECS),
        (true, None, HEALTHY_SECS),
        (true, Some(STALL), OUTAGE_SECS),
    ];
    for (n, (spill, stall, secs)) in plan.into_iter().enumerate() {
        // The stall comes on the edge of the healthy phase before it, as it was.
        if stall.is_none() {
            stack.config.spill = spill;
            stack.config.edge_meter = false;
            stack.config.edge_sqs_proxy = true;
            stack.restart_edge().context("restarting the edge")?;
        }
        let ep = Endpoint::spillway(stack)?;
        warm_up(&ep)?;
        rows.push(phase(stack, &ep, spill, stall, secs, n)?);
    }
    Ok(rows)
}

fn phase(
    stack: &Stack,
    ep: &Endpoint,
    spill: bool,
    stall: Option<(u64, u64)>,
    secs: u32,
    n: usize,
) -> Result<SpillRow> {
    let proxy = stack
        .proxy
        .as_ref()
        .ok_or_else(|| anyhow!("the stack has no fault proxy"))?;
    let log = stack.config.dir.join("logs/edge.log");
    let run = format!("{}-{n}", std::process::id());
    let bodies: Vec<Arc<Vec<u8>>> = (0..(RATE * secs) as usize).map(|i| body(&run, i)).collect();
    let (spilled_before, _) = spill_counts(&log);
    let ends = std::thread::scope(|s| {
        if let Some((from, to)) = stall {
            s.spawn(move || {
                std::thread::sleep(Duration::from_secs(from));
                proxy.set_mode(FaultMode::Stall);
                std::thread::sleep(Duration::from_secs(to - from));
                proxy.set_mode(FaultMode::Pass);
            });
        }
        drive(ep, RATE, &bodies)
    })?;
    proxy.set_mode(FaultMode::Pass);
    let answered = Instant::now();
    let mut row = SpillRow {
        spill,
        stall,
        secs,
        answers: Answers::of(&ends),
        spilled: 0,
        stored: 0,
        missing: 0,
        stored_unaccepted: 0,
        stored_after_s: None,
    };
    let accepted: HashSet<String> = ends
        .iter()
        .filter(|e| e.attempt.answer == Answer::Status(202))
        .flat_map(|e| e.attempt.ids.iter().cloned())
        .collect();
    // Wait for the table to hold every accepted event (the replay, the poller).
    let stored = loop {
        let stored = stored_ids(stack, &run)?;
        if accepted.iter().all(|id| stored.contains(id)) {
            row.stored_after_s = Some(answered.elapsed().as_secs_f64());
            break stored;
        }
        if answered.elapsed() > STORE_WITHIN {
            break stored;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    row.spilled = spill_counts(&log).0.saturating_sub(spilled_before);
    row.stored = accepted.iter().filter(|id| stored.contains(*id)).count();
    row.missing = accepted.len() - row.stored;
    row.stored_unaccepted = stored.iter().filter(|id| !accepted.contains(*id)).count();
    Ok(row)
}

/// Ids of the events of run `run` in the table.
fn stored_ids(stack: &Stack, run: &str) -> Result<HashSet<String>> {
    let out = stack.pg.psql(&format!(
        "select id from events where type = 'spill_bench' and data->>'run' = '{run}'"
    ))?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}
