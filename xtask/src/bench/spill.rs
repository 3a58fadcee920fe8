//! Figure 8: the spill through an SQS outage (issue 15). The same open-loop load of one-event
//! requests three times on the pipeline, with a fault proxy between the edge and the local SQS:
//! without the spill queue and SQS healthy, with it and SQS healthy (the spill must stay
//! unused and latency unchanged), and with it while SQS stalls for 40 s (every request must be
//! answered `202` within the deadline, and every accepted event stored once SQS is back).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use spillway_support::stack::spill_counts;
use spillway_support::{FaultMode, Stack};

use super::batching::{drive, warm_up, End, TIMEOUT};
use super::burst::percentile;
use super::client::{Answer, Endpoint};
use super::report::thousands;
use crate::step::note;

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
    pub(super) requests: usize,
    pub(super) accepted: usize,
    pub(super) other: BTreeMap<String, usize>,
    pub(super) timed_out: usize,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) max_ms: f64,
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

impl SpillRow {
    pub(super) fn label(&self) -> String {
        let spill = if self.spill {
            "on (`SPILL_QUEUE`)"
        } else {
            "off (no binding)"
        };
        let sqs = match self.stall {
            Some((a, b)) => format!("stalled from {a} s to {b} s"),
            None => "healthy".into(),
        };
        format!("{spill} | {sqs}")
    }
}

fn body(run: &str, i: usize) -> Arc<Vec<u8>> {
    Arc::new(format!(r#"{{"type":"spill_bench","data":{{"run":"{run}","n":{i}}}}}"#).into_bytes())
}

/// The three phases, on `stack` (its edge restarted with a fault proxy in front of SQS, and
/// put back as it was afterwards).
pub(super) fn spill(stack: &mut Stack) -> Result<Vec<SpillRow>> {
    let saved = (
        stack.config.edge_vars.clone(),
        stack.config.edge_sqs_meter,
        stack.config.edge_sqs_proxy,
        stack.config.spill,
    );
    // The replay and the poller must run: the figure counts what reaches the table.
    stack.start_poller().context("starting the poller")?;
    let measured = phases(stack);
    (
        stack.config.edge_vars,
        stack.config.edge_sqs_meter,
        stack.config.edge_sqs_proxy,
        stack.config.spill,
    ) = saved;
    let restored = stack
        .restart_edge()
        .context("restarting the edge as it was");
    let rows = measured?;
    restored?;
    Ok(rows)
}

fn phases(stack: &mut Stack) -> Result<Vec<SpillRow>> {
    let mut rows = Vec::new();
    for (n, (spill, stall, secs)) in [
        (false, None, HEALTHY_SECS),
        (true, None, HEALTHY_SECS),
        (true, Some(STALL), OUTAGE_SECS),
    ]
    .into_iter()
    .enumerate()
    {
        if n < 2 {
            stack.config.spill = spill;
            stack.config.edge_sqs_meter = false;
            stack.config.edge_sqs_proxy = true;
            stack.restart_edge().context("restarting the edge")?;
        }
        let ep = Endpoint::parse(&stack.env.ingest_url, Some(&stack.env.ingest_key))?;
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
    let mut row = summarise(spill, stall, secs, &ends);
    let accepted: HashSet<String> = ends
        .iter()
        .filter(|e| e.answer == Answer::Status(202))
        .flat_map(|e| e.ids.iter().cloned())
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
    note(&format!(
        "spill {}: {} x 202 of {}, {} other, {} timed out; p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms; \
         {} events spilled; {} of {} accepted stored ({} missing, {} stored not accepted) {}",
        row.label(),
        row.accepted,
        row.requests,
        row.other.values().sum::<usize>(),
        row.timed_out,
        row.p50_ms,
        row.p99_ms,
        row.max_ms,
        row.spilled,
        row.stored,
        accepted.len(),
        row.missing,
        row.stored_unaccepted,
        row.stored_after_s
            .map(|s| format!("{s:.1} s after the last answer"))
            .unwrap_or_else(|| "(not all in time)".into())
    ));
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

fn summarise(spill: bool, stall: Option<(u64, u64)>, secs: u32, ends: &[End]) -> SpillRow {
    let mut row = SpillRow {
        spill,
        stall,
        secs,
        requests: ends.len(),
        accepted: 0,
        other: BTreeMap::new(),
        timed_out: 0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        max_ms: f64::NAN,
        spilled: 0,
        stored: 0,
        missing: 0,
        stored_unaccepted: 0,
        stored_after_s: None,
    };
    let mut lat = Vec::new();
    for e in ends {
        match &e.answer {
            Answer::Status(202) => {
                row.accepted += 1;
                lat.push(e.latency_ms);
            }
            Answer::TimedOut => row.timed_out += 1,
            other => *row.other.entry(other.label()).or_insert(0) += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    if let Some(&max) = lat.last() {
        row.p50_ms = percentile(&lat, 50.0);
        row.p99_ms = percentile(&lat, 99.0);
        row.max_ms = max;
    }
    row
}

/// The figure's section of `BENCHMARKS.md`: the table, and sentences that follow from it.
pub(super) fn spill_section(s: &mut String, rows: &[SpillRow], sqs: &str) {
    let _ = writeln!(
        s,
        "## 8. Spill through an SQS outage: without and with the spill queue, SQS healthy and stalled\n\n\
         Command: `cargo xtask bench --only spill` (part of `cargo xtask bench`; \
         xtask/src/bench/spill.rs). The pipeline's `Stack` with the poller running and a fault \
         proxy between the worker and {sqs}; the worker restarted without the \
         `[[queues.*]]` tables of wrangler.toml (spill off) or with them (on), `SQS_DEADLINE_MS` \
         {DEADLINE_MS} (the default), five uncounted requests after each restart. Load: \
         one-event requests at {RATE} req/s from the open-loop client of figure 7 (timeout {} s), \
         for {HEALTHY_SECS} s per healthy phase and {OUTAGE_SECS} s for the outage, during \
         which the proxy holds every SQS request unanswered ({sqs} never sees it). Latency from \
         each request's scheduled start to its 202. Spilled = the `spilled` counts of the \
         worker's request log. Stored = accepted ids found in `events` (its primary key makes a \
         second copy impossible), waited for up to {} s after the last answer.\n\n\
         | spill queue | SQS | offered req/s x s = requests | 202 / other / timed out | p50 | p99 | slowest 202 | events spilled | accepted stored / missing / stored not accepted | all stored after |\n\
         |---|---|---|---|---|---|---|---|---|---|",
        TIMEOUT.as_secs(),
        STORE_WITHIN.as_secs(),
    );
    let ms = |v: f64| {
        if v.is_finite() {
            format!("{v:.1} ms")
        } else {
            "n/a".into()
        }
    };
    for r in rows {
        let other = if r.other.is_empty() {
            "0".to_owned()
        } else {
            r.other
                .iter()
                .map(|(k, v)| format!("{v} x {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "| {} | {RATE} x {} s = {} | {} / {other} / {} | {} | {} | {} | {} | {} / {} / {} | {} |",
            r.label(),
            r.secs,
            thousands(r.requests as f64),
            thousands(r.accepted as f64),
            thousands(r.timed_out as f64),
            ms(r.p50_ms),
            ms(r.p99_ms),
            ms(r.max_ms),
            thousands(r.spilled as f64),
            thousands(r.stored as f64),
            thousands(r.missing as f64),
            thousands(r.stored_unaccepted as f64),
            r.stored_after_s
                .map(|v| format!("{v:.1} s"))
                .unwrap_or_else(|| format!("not within {} s", STORE_WITHIN.as_secs())),
        );
    }
    let _ = writeln!(s, "\n{}\n", spill_finding(rows));
}

/// What the rows show, in sentences that follow from their numbers.
pub(super) fn spill_finding(rows: &[SpillRow]) -> String {
    let mut out = Vec::new();
    let off = rows.iter().find(|r| !r.spill && r.stall.is_none());
    let on = rows.iter().find(|r| r.spill && r.stall.is_none());
    if let (Some(off), Some(on)) = (off, on) {
        out.push(format!(
            "With SQS healthy the spill queue was {} ({} events spilled), and the 202s' p50 / \
             p99 were {:.1} / {:.1} ms with it against {:.1} / {:.1} ms without ({:+.1} / {:+.1} ms).",
            if on.spilled == 0 { "never used" } else { "used" },
            on.spilled,
            on.p50_ms,
            on.p99_ms,
            off.p50_ms,
            off.p99_ms,
            on.p50_ms - off.p50_ms,
            on.p99_ms - off.p99_ms
        ));
    }
    if let Some(out_row) = rows.iter().find(|r| r.stall.is_some()) {
        let all_202 = out_row.accepted == out_row.requests;
        let within = out_row.max_ms <= DEADLINE_MS as f64;
        out.push(format!(
            "With SQS stalled for {} s, {} of {} requests were answered 202 ({}), the slowest in \
             {:.0} ms, {} the {DEADLINE_MS} ms deadline; {} events were spilled.",
            out_row.stall.map(|(a, b)| b - a).unwrap_or(0),
            thousands(out_row.accepted as f64),
            thousands(out_row.requests as f64),
            if all_202 { "all" } else { "not all" },
            out_row.max_ms,
            if within { "within" } else { "past" },
            thousands(out_row.spilled as f64),
        ));
        out.push(match out_row.stored_after_s {
            Some(t) if out_row.missing == 0 => format!(
                "Every accepted event was in PostgreSQL {t:.1} s after the last answer, once each; \
                 {} stored events had not been answered 202.",
                out_row.stored_unaccepted
            ),
            _ => format!(
                "{} accepted events were not in PostgreSQL within {} s.",
                out_row.missing,
                STORE_WITHIN.as_secs()
            ),
        });
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(answer: Answer, latency_ms: f64) -> End {
        End {
            answer,
            latency_ms,
            done_s: 0.0,
            ids: Vec::new(),
        }
    }

    #[test]
    fn a_phase_counts_answers_and_the_slowest_202() {
        let ends = [
            end(Answer::Status(202), 10.0),
            end(Answer::Status(202), 30.0),
            end(Answer::Status(503), 1.0),
            end(Answer::TimedOut, 10_000.0),
        ];
        let row = summarise(true, Some((5, 45)), 50, &ends);
        assert_eq!((row.requests, row.accepted, row.timed_out), (4, 2, 1));
        assert_eq!(row.other.get("503"), Some(&1));
        assert_eq!(row.max_ms, 30.0);
        assert!(row.label().contains("stalled from 5 s to 45 s"));
    }

    fn row(spill: bool, stall: Option<(u64, u64)>) -> SpillRow {
        SpillRow {
            requests: 100,
            accepted: 100,
            p50_ms: 20.0,
            p99_ms: 40.0,
            max_ms: 50.0,
            stored: 100,
            stored_after_s: Some(3.0),
            ..summarise(spill, stall, 10, &[])
        }
    }

    #[test]
    fn the_finding_follows_the_numbers() {
        let mut rows = vec![row(false, None), row(true, None), row(true, Some((5, 45)))];
        let good = spill_finding(&rows);
        assert!(good.contains("never used (0 events spilled)"), "{good}");
        assert!(
            good.contains("100 of 100 requests were answered 202 (all)"),
            "{good}"
        );
        assert!(good.contains("within the 8000 ms deadline"), "{good}");
        assert!(
            good.contains("Every accepted event was in PostgreSQL"),
            "{good}"
        );

        rows[1].spilled = 3;
        rows[2].accepted = 90;
        rows[2].max_ms = 9_000.0;
        rows[2].missing = 4;
        let bad = spill_finding(&rows);
        assert!(bad.contains("was used (3 events spilled)"), "{bad}");
        assert!(
            bad.contains("90 of 100 requests were answered 202 (not all)"),
            "{bad}"
        );
        assert!(bad.contains("past the 8000 ms deadline"), "{bad}");
        assert!(
            bad.contains("4 accepted events were not in PostgreSQL"),
            "{bad}"
        );
    }
}
