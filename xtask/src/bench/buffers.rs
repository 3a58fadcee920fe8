//! Figure 9: the two buffers side by side, in the same run. The Kinesis pipeline (`Stack` with
//! `BufferKind::Kinesis`: the Kinesis Worker under `wrangler dev`, kinesis-local, the poller
//! playing the event source mapping) is started after the SQS figures, and measured as the SQS
//! one was: the largest burst of figure 6 (Spillway only: the synchronous designs have no
//! buffer), figure 3's `wrk` runs, and metered runs whose counted buffer writes give the bill
//! (`cost.rs`). The SQS side's metered runs are taken on figure 3's pipeline.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use spillway_support::{BufferKind, MeterSnapshot, Stack, StackConfig};

use super::batching::{drive, edge_restored, settle, warm_up, Answers, Flushes};
use super::burst::{run, RunResult, Scenario};
use super::client::Endpoint;
use super::measure::now_rfc3339;
use super::sqs::purge;
use super::workerd::{workerd, WrkRun};
use super::{ensure_open_files, release_bin_dir, Opts, BURST_MAX_CONNECTIONS};
use crate::step::{note, step};
use spillway_support::events::request_body;

/// The SQS Worker's default `BATCH_WINDOW_MS` (wrangler.toml), set explicitly for group commit
/// with either buffer (the Kinesis Worker's default is 0).
pub(super) const GROUP_WINDOW_MS: u32 = 20;

/// The metered loads: (events per request, requests/s, seconds), open loop.
pub(super) const LOADS: [(usize, u32, u32); 2] = [(1, 100, 5), (100, 10, 3)];

/// A buffer and whether group commit is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Design {
    SqsDirect,
    SqsGroup,
    KinesisDirect,
    KinesisGroup,
}

impl Design {
    pub(super) fn buffer(self) -> BufferKind {
        match self {
            Design::SqsDirect | Design::SqsGroup => BufferKind::Sqs,
            Design::KinesisDirect | Design::KinesisGroup => BufferKind::Kinesis,
        }
    }

    pub(super) fn group_commit(self) -> bool {
        matches!(self, Design::SqsGroup | Design::KinesisGroup)
    }

    pub(super) fn label(self) -> String {
        let buffer = match self.buffer() {
            BufferKind::Sqs => "SQS",
            BufferKind::Kinesis => "Kinesis",
        };
        if self.group_commit() {
            format!("{buffer}, group commit ({GROUP_WINDOW_MS} ms)")
        } else {
            format!("{buffer}, direct")
        }
    }

    fn vars(self) -> Vec<(String, String)> {
        let window = if self.group_commit() {
            GROUP_WINDOW_MS
        } else {
            0
        };
        vec![("BATCH_WINDOW_MS".into(), window.to_string())]
    }
}

/// One metered load in one design.
#[derive(Debug, Clone)]
pub(super) struct Metered {
    pub(super) design: Design,
    pub(super) events_per_request: usize,
    pub(super) rate: u32,
    pub(super) secs: u32,
    pub(super) answers: Answers,
    pub(super) meter: MeterSnapshot,
    /// What the batchers logged during the load (none with group commit off).
    pub(super) flushes: Flushes,
}

/// What the Kinesis pipeline did.
#[derive(Debug, Clone, Default)]
pub(super) struct KinesisSide {
    /// The stream's shards.
    pub(super) shards: u32,
    /// Figure 3's runs (`/healthz` first).
    pub(super) wrk: Vec<WrkRun>,
    /// The largest burst of figure 6, Spillway only.
    pub(super) burst: Option<RunResult>,
    pub(super) metered: Vec<Metered>,
}

/// Each of `designs` (all of the stack's buffer) under every load of [`LOADS`], the edge's
/// buffer writes counted by a meter; the edge is restarted as it was afterwards.
pub(super) fn metered(stack: &mut Stack, designs: &[Design]) -> Result<Vec<Metered>> {
    stack.stop_poller();
    ensure_open_files(1024 + 4 * LOADS.iter().map(|l| (l.1 * l.2) as usize).sum::<usize>())?;
    let base = stack.config.edge_vars.clone();
    edge_restored(stack, |stack| {
        let mut out = Vec::new();
        for &design in designs {
            if design.buffer() != stack.env.buffer {
                return Err(anyhow!(
                    "{} on a {} pipeline",
                    design.label(),
                    stack.env.buffer
                ));
            }
            let mut vars = base.clone();
            vars.extend(design.vars());
            stack.config.edge_vars = vars;
            stack.config.edge_meter = true;
            stack
                .restart_edge()
                .with_context(|| format!("starting the edge for {}", design.label()))?;
            let ep = Endpoint::spillway(stack)?;
            warm_up(&ep)?;
            for (n, rate, secs) in LOADS {
                purge(stack)?;
                let meter = stack.meter.as_ref().context("the stack has no meter")?;
                let before = settle(|| meter.snapshot());
                let log = stack.config.dir.join("logs/edge.log");
                let flushes_before = Flushes::read(&log);
                let ts = now_rfc3339();
                let bodies: Vec<Arc<Vec<u8>>> = (0..(rate * secs) as usize)
                    .map(|i| Arc::new(request_body(n, i * n, &ts, &mut || None)))
                    .collect();
                let ends = drive(&ep, rate, &bodies)?;
                let after = settle(|| meter.snapshot());
                let m = Metered {
                    design,
                    events_per_request: n,
                    rate,
                    secs,
                    answers: Answers::of(&ends),
                    meter: after.since(&before),
                    flushes: Flushes::read(&log).since(&flushes_before),
                };
                note(&format!(
                    "{}: {n}-event requests at {rate}/s for {secs} s: {} of {} accepted; {} events in {} entries reached the buffer",
                    design.label(),
                    m.answers.accepted,
                    m.answers.requests,
                    m.meter.events,
                    m.meter.entries
                ));
                out.push(m);
            }
        }
        purge(stack)?;
        Ok(out)
    })
}

/// Starts the Kinesis pipeline and measures it (see the module's documentation).
pub(super) fn kinesis_side(opts: &Opts) -> Result<KinesisSide> {
    let mut stack = step(
        "start the Kinesis pipeline (Stack, --buffer kinesis)",
        || {
            let mut cfg = StackConfig::ephemeral("bench-kinesis")?;
            cfg.buffer = BufferKind::Kinesis;
            cfg.sqs = opts.sqs;
            cfg.bin_dir = release_bin_dir();
            Stack::start(cfg, &mut |line| note(line))
        },
    )?;
    let mut side = KinesisSide {
        shards: stack.config.shards,
        ..KinesisSide::default()
    };
    if let Some(clients) = opts.burst_clients.iter().max().copied() {
        ensure_open_files(clients * 2 + 1024)?;
        side.burst = Some(step(
            &format!("figure 9: burst of {clients}, Spillway with Kinesis"),
            || {
                stack.stop_poller();
                stack.pg.stop()?;
                stack
                    .pg
                    .start_with_max_connections(BURST_MAX_CONNECTIONS)
                    .context("restarting PostgreSQL with max_connections = 100")?;
                stack.pg.psql("truncate events")?;
                stack.start_poller()?;
                let ep = Endpoint::spillway(&stack)?;
                let scenario = Scenario::Burst { clients };
                let r = run("Spillway, Kinesis", &ep, scenario, &stack, true);
                stack.stop_poller();
                r
            },
        )?);
    }
    side.wrk = step("figure 9: the Kinesis edge under workerd (wrk)", || {
        workerd(&mut stack, opts)
    })?;
    side.metered = step("figure 9: Kinesis puts counted by a meter", || {
        metered(&mut stack, &[Design::KinesisDirect, Design::KinesisGroup])
    })?;
    Ok(side)
}
