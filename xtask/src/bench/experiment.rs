//! Figure 6's schedule: every scenario against the three designs in turn, on the one PostgreSQL
//! of the `Stack` restarted with `max_connections` = 100, each run from a clean start (queue
//! purged, table truncated, the synchronous handler and PgBouncer started afresh, so that every
//! run starts cold).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use spillway_support::Stack;

use super::burst::{run, sleep_until, RunResult, Scenario};
use super::client::Endpoint;
use super::designs::{create_app_role, Kind, Synchronous};
use super::sqs::purge;
use super::{Opts, BURST_MAX_CONNECTIONS};
use crate::step::note;

/// One scenario's runs, one per design in [`Kind::ALL`] order.
#[derive(Debug, Clone)]
pub(super) struct ScenarioResult {
    pub(super) scenario: Scenario,
    pub(super) runs: Vec<RunResult>,
}

pub(super) fn scenarios(opts: &Opts) -> Vec<Scenario> {
    let mut v: Vec<Scenario> = opts
        .burst_clients
        .iter()
        .map(|&clients| Scenario::Burst { clients })
        .collect();
    if opts.steady_secs > 0 {
        let s = opts.steady_secs;
        for retry in [false, true] {
            v.push(Scenario::Steady {
                rate: opts.steady_rate,
                secs: s,
                down: (s / 3, s - s / 3),
                retry,
            });
        }
    }
    v
}

/// The bench's pollers long-poll for this long (`WAIT_TIME_SECONDS`; the poller's default is
/// Lambda's 20 s). A stopped poller leaves its last receive open at the local SQS, which hands
/// the next messages to it: they stay invisible for the visibility timeout (30 s) although
/// nobody holds them. With a 1 s poll that receive is over 1 s after the stop, and
/// [`wait_out_receives`] waits that long before the next run sends anything.
pub(super) const POLL_WAIT_S: u64 = 1;

/// Waits until a receive a poller stopped at `stopped` left open has ended at the local SQS
/// (it cannot be observed, only outlived: its wait is [`POLL_WAIT_S`]).
pub(super) fn wait_out_receives(stopped: Option<Instant>) {
    if let Some(at) = stopped {
        sleep_until(at + Duration::from_secs(POLL_WAIT_S) + Duration::from_millis(500));
    }
}

pub(super) fn experiment(stack: &mut Stack, opts: &Opts) -> Result<Vec<ScenarioResult>> {
    let mut poller_stopped = stack.stop_poller().map(|_| Instant::now());
    stack.pg.stop()?;
    stack
        .pg
        .start_with_max_connections(BURST_MAX_CONNECTIONS)
        .context("restarting PostgreSQL with max_connections = 100")?;
    create_app_role(&stack.pg)?;
    let dir = stack.config.dir.join("experiment");
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    for scenario in scenarios(opts) {
        let mut runs = Vec::new();
        for kind in Kind::ALL {
            if stack.stop_poller().is_some() {
                poller_stopped = Some(Instant::now());
            }
            purge(stack)?;
            stack.pg.psql("truncate events")?;
            let r = match kind {
                Kind::Spillway => {
                    wait_out_receives(poller_stopped);
                    stack.start_poller()?;
                    let ep = Endpoint::spillway(stack)?;
                    let r = run(kind.name(), &ep, scenario, stack, true);
                    if let Some(status) = stack.stop_poller() {
                        poller_stopped = Some(Instant::now());
                        note(&format!("poller stopped ({status})"));
                    }
                    r?
                }
                Kind::Direct | Kind::Pooled => {
                    let sync = Synchronous::start(kind, &stack.pg, &dir)?;
                    let r = run(kind.name(), &sync.endpoint, scenario, stack, false);
                    sync.stop();
                    r?
                }
            };
            runs.push(r);
            // Let the sockets of the last run close before the next starts.
            std::thread::sleep(Duration::from_millis(500));
        }
        out.push(ScenarioResult { scenario, runs });
    }
    Ok(out)
}
