//! Figure 7: group commit at the edge (issue 14). Single-event requests at fixed offered rates,
//! open loop, with the worker's batching off (`BATCH_WINDOW_MS=0`) and on (its default), and the
//! SQS requests they cost **counted** by an [`BufferMeter`](spillway_support::BufferMeter) between the
//! edge and the local SQS: what reached the server, not what the edge says it sent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use spillway_support::{MeterSnapshot, Stack};

use super::burst::percentile;
use super::client::{self, post, runtime, Answer, End, Endpoint, Load};
use super::measure::now_rfc3339;
use super::sqs::purge;
use super::{ensure_open_files, SQS_BILLING_CHUNK};
use crate::step::note;
use spillway_support::events::request_body;

/// Offered rates (requests/s) and how long each is offered (s): bounded in count and time.
/// The last is several times what `wrangler dev` serves on two cores (figure 3), so its
/// requests pile up: 3 s keeps the pile (and the sockets it holds) bounded.
pub(super) const RATES: [(u32, u32); 3] = [(10, 10), (100, 10), (1_000, 3)];
/// How long a client waits for one answer.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);
/// After the last answer, the meter must be still this long (the edge may still be sending for
/// requests whose client gave up), at most [`QUIET_LIMIT`].
const QUIET: Duration = Duration::from_millis(1_500);
const QUIET_LIMIT: Duration = Duration::from_secs(20);

/// The worker's group commit, as its variables choose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Mode {
    Off,
    On,
}

impl Mode {
    pub(super) const ALL: [Mode; 2] = [Mode::Off, Mode::On];

    pub(super) fn label(self) -> &'static str {
        match self {
            Mode::Off => "off (`BATCH_WINDOW_MS=0`)",
            Mode::On => "on (default)",
        }
    }

    /// The edge's extra variables: off sets a zero window, on leaves every default.
    fn vars(self) -> Vec<(String, String)> {
        match self {
            Mode::Off => vec![("BATCH_WINDOW_MS".into(), "0".into())],
            Mode::On => Vec::new(),
        }
    }
}

/// One offered rate in one mode.
#[derive(Debug, Clone)]
pub(super) struct BatchRow {
    pub(super) mode: Mode,
    pub(super) offered_rps: u32,
    pub(super) secs: u32,
    /// The client's event bytes of every request sent (one event each).
    pub(super) client_bytes: usize,
    pub(super) answers: Answers,
    /// What the meter counted during the row.
    pub(super) meter: MeterSnapshot,
}

impl BatchRow {
    /// 202s / max(offered seconds, time of the last 202).
    pub(super) fn achieved_rps(&self) -> f64 {
        let a = &self.answers;
        a.accepted as f64 / a.last_202_s.max(f64::from(self.secs))
    }

    /// Billed SQS requests per million events that reached the SQS.
    pub(super) fn billed_per_million(&self) -> f64 {
        per_million(self.meter.billed, self.meter.events)
    }

    /// The client's event bytes per million events / 64 KiB (figure 4's floor).
    pub(super) fn floor_per_million(&self) -> f64 {
        let requests = self.answers.requests;
        if requests == 0 {
            return f64::NAN;
        }
        self.client_bytes as f64 / requests as f64 * 1e6 / SQS_BILLING_CHUNK as f64
    }

    /// At least 99% of the requests answered 202: the edge kept up with the offered rate.
    pub(super) fn kept_up(&self) -> bool {
        self.answers.accepted as f64 >= 0.99 * self.answers.requests as f64
    }
}

fn per_million(count: u64, events: u64) -> f64 {
    if events == 0 {
        f64::NAN
    } else {
        count as f64 * 1e6 / events as f64
    }
}

/// How the requests of an open-loop run ended: the 202s and their latencies, the timeouts, and
/// every other answer by label (status, transport error).
#[derive(Debug, Clone)]
pub(super) struct Answers {
    pub(super) requests: usize,
    pub(super) accepted: usize,
    pub(super) other: BTreeMap<String, usize>,
    pub(super) timed_out: usize,
    /// Latency of the 202s (unknown without any).
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) max_ms: f64,
    /// The last 202, in seconds from the start.
    pub(super) last_202_s: f64,
}

impl Answers {
    pub(super) fn of(ends: &[End]) -> Answers {
        let mut a = Answers {
            requests: ends.len(),
            accepted: 0,
            other: BTreeMap::new(),
            timed_out: 0,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            max_ms: f64::NAN,
            last_202_s: 0.0,
        };
        let mut lat = Vec::new();
        for e in ends {
            match &e.attempt.answer {
                Answer::Status(202) => {
                    lat.push(e.latency_ms);
                    a.last_202_s = a.last_202_s.max(e.done_s);
                }
                Answer::TimedOut => a.timed_out += 1,
                other => *a.other.entry(other.label()).or_insert(0) += 1,
            }
        }
        lat.sort_by(f64::total_cmp);
        a.accepted = lat.len();
        if let Some(&max) = lat.last() {
            a.p50_ms = percentile(&lat, 50.0);
            a.p99_ms = percentile(&lat, 99.0);
            a.max_ms = max;
        }
        a
    }

    pub(super) fn other_count(&self) -> usize {
        self.other.values().sum()
    }
}

pub(super) fn batching(stack: &mut Stack) -> Result<Vec<BatchRow>> {
    // As in figure 3: only the edge and the local SQS share the cores.
    stack.stop_poller();
    // Per request in flight: the client's socket, and in the meter (this process) the edge's
    // connection, its handle kept to close it, and the upstream connection.
    let most = RATES
        .iter()
        .map(|(r, s)| (r * s) as usize)
        .max()
        .unwrap_or(0);
    ensure_open_files(most * 4 + 1024)?;
    let vars = stack.config.edge_vars.clone();
    let rows = edge_restored(stack, |stack| measure_modes(stack, &vars))?;
    purge(stack)?;
    Ok(rows)
}

/// Runs `measure`, which may restart the edge otherwise configured, then restarts it as it
/// was, whatever happened: the next figures expect it so.
pub(super) fn edge_restored<T>(
    stack: &mut Stack,
    measure: impl FnOnce(&mut Stack) -> Result<T>,
) -> Result<T> {
    let saved = stack.config.clone();
    let measured = measure(stack);
    let c = &mut stack.config;
    (c.edge_vars, c.edge_meter, c.edge_sqs_proxy, c.spill) = (
        saved.edge_vars,
        saved.edge_meter,
        saved.edge_sqs_proxy,
        saved.spill,
    );
    let restored = stack
        .restart_edge()
        .context("restarting the edge as it was");
    let out = measured?;
    restored?;
    Ok(out)
}

/// The order of the rows: every rate but the highest in one mode, then in the other (one edge
/// restart each), then the highest in each mode. The highest rate overloads the local edge,
/// and what an overload leaves behind (a slow local SQS, a busy machine) must not weigh on
/// the rows after it, nor on one mode only.
fn plan(rates: &[(u32, u32)]) -> Vec<(Mode, u32, u32)> {
    let Some((top, low)) = rates.split_last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for mode in Mode::ALL {
        out.extend(low.iter().map(|&(r, s)| (mode, r, s)));
    }
    for mode in Mode::ALL {
        out.push((mode, top.0, top.1));
    }
    out
}

fn measure_modes(stack: &mut Stack, base_vars: &[(String, String)]) -> Result<Vec<BatchRow>> {
    let mut rows = Vec::new();
    let mut running: Option<(Mode, Endpoint)> = None;
    for (mode, rate, secs) in plan(&RATES) {
        let ep = match &running {
            Some((m, ep)) if *m == mode => ep.clone(),
            _ => {
                let mut vars = base_vars.to_vec();
                vars.extend(mode.vars());
                stack.config.edge_vars = vars;
                stack.config.edge_meter = true;
                stack
                    .restart_edge()
                    .with_context(|| format!("starting the edge with batching {}", mode.label()))?;
                let ep = Endpoint::spillway(stack)?;
                note(&format!(
                    "batching {}: edge on {}, SQS_ENDPOINT = the meter",
                    mode.label(),
                    stack.env.ingest_url
                ));
                warm_up(&ep)?;
                running = Some((mode, ep.clone()));
                ep
            }
        };
        purge(stack)?;
        let meter = stack
            .meter
            .as_ref()
            .ok_or_else(|| anyhow!("the stack has no SQS meter"))?;
        let before = meter.snapshot();
        let ts = now_rfc3339();
        let total = (rate * secs) as usize;
        let bodies: Vec<Arc<Vec<u8>>> = (0..total)
            .map(|i| Arc::new(request_body(1, i, &ts, &mut || None)))
            .collect();
        let ends = drive(&ep, rate, &bodies)?;
        let after = settle(|| meter.snapshot());
        rows.push(BatchRow {
            mode,
            offered_rps: rate,
            secs,
            client_bytes: bodies.iter().map(|b| b.len()).sum(),
            answers: Answers::of(&ends),
            meter: after.since(&before),
        });
    }
    purge(stack)?;
    // Read by rate, off beside on.
    rows.sort_by_key(|r| (r.offered_rps, r.mode));
    Ok(rows)
}

/// A few requests one after another, uncounted: the first requests after a start also pay for
/// wrangler loading the worker, which is not what the figure is about.
pub(super) fn warm_up(ep: &Endpoint) -> Result<()> {
    let rt = runtime()?;
    let ts = now_rfc3339();
    rt.block_on(async {
        for i in 0..5 {
            let body = request_body(1, i, &ts, &mut || None);
            let a = post(ep, &body, TIMEOUT).await;
            if !a.answer.accepted() {
                return Err(anyhow!("warm-up request answered {}", a.answer.label()));
            }
        }
        Ok(())
    })
}

/// Waits until `snapshot` stops changing for [`QUIET`] (at most [`QUIET_LIMIT`]), returns it.
pub(super) fn settle(snapshot: impl Fn() -> MeterSnapshot) -> MeterSnapshot {
    let deadline = Instant::now() + QUIET_LIMIT;
    let mut last = snapshot();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        let now = snapshot();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= QUIET {
            break;
        }
    }
    last
}

/// Figures 7 and 8's load: one request per body at `rate` a second, open loop, no retry, each
/// request's latency counted from its scheduled start.
pub(super) fn drive(ep: &Endpoint, rate: u32, bodies: &[Arc<Vec<u8>>]) -> Result<Vec<End>> {
    let load = Load {
        rate: Some(rate),
        timeout: TIMEOUT,
        retry_until: None,
        from_schedule: true,
    };
    client::drive(ep, bodies, load, Instant::now() + Duration::from_millis(50))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::Attempt;

    fn end(answer: Answer, latency_ms: f64, done_s: f64) -> End {
        End {
            attempt: Attempt::failed(answer),
            sent_s: 0.0,
            done_s,
            latency_ms,
            attempts: 1,
        }
    }

    fn row(bytes: usize, ends: &[End]) -> BatchRow {
        BatchRow {
            mode: Mode::On,
            offered_rps: 4,
            secs: 1,
            client_bytes: bytes * ends.len(),
            answers: Answers::of(ends),
            meter: MeterSnapshot::default(),
        }
    }

    #[test]
    fn a_row_counts_answers_and_rates_from_the_202s() {
        let ends = vec![
            end(Answer::Status(202), 10.0, 0.5),
            end(Answer::Status(202), 30.0, 1.5),
            end(Answer::Status(503), 5.0, 0.7),
            end(Answer::TimedOut, 10_000.0, 11.0),
        ];
        let row = row(1_000, &ends);
        let a = &row.answers;
        assert_eq!(
            (a.requests, a.accepted, a.timed_out, a.other_count()),
            (4, 2, 1, 1)
        );
        assert_eq!(a.other.get("503"), Some(&1));
        // 2 accepted, the last at 1.5 s, offered for 1 s.
        assert!((row.achieved_rps() - 2.0 / 1.5).abs() < 1e-9);
        assert_eq!((a.p99_ms, a.max_ms), (30.0, 30.0));
        assert_eq!(row.client_bytes, 4_000);
    }

    #[test]
    fn billed_and_floor_are_per_million_events() {
        let mut row = row(1_280, &vec![end(Answer::Status(202), 1.0, 0.1); 2]);
        row.meter.entries = 2;
        row.meter.events = 2;
        row.meter.billed = 2;
        assert_eq!(row.billed_per_million(), 1e6);
        // Group commit: one message of 40 events, billed once.
        row.meter.entries = 1;
        row.meter.events = 40;
        row.meter.billed = 1;
        assert_eq!(row.billed_per_million(), 25_000.0);
        // 1,280 B per event: 1e6 * 1,280 / 65,536.
        assert!((row.floor_per_million() - 19_531.25).abs() < 1e-6);
        row.meter.entries = 0;
        row.meter.events = 0;
        assert!(
            row.billed_per_million().is_nan(),
            "nothing reached SQS is not 0"
        );
        assert!(Answers::of(&[]).p50_ms.is_nan());
    }

    #[test]
    fn the_overloading_rate_comes_last_in_both_modes() {
        let p = plan(&[(10, 10), (100, 10), (1_000, 3)]);
        let order: Vec<(Mode, u32)> = p.iter().map(|&(m, r, _)| (m, r)).collect();
        assert_eq!(
            order,
            [
                (Mode::Off, 10),
                (Mode::Off, 100),
                (Mode::On, 10),
                (Mode::On, 100),
                (Mode::Off, 1_000),
                (Mode::On, 1_000)
            ]
        );
        assert!(plan(&[]).is_empty());
    }

    #[test]
    fn off_sets_a_zero_window_and_on_keeps_the_defaults() {
        assert_eq!(
            Mode::Off.vars(),
            vec![("BATCH_WINDOW_MS".to_owned(), "0".to_owned())]
        );
        assert!(Mode::On.vars().is_empty());
    }
}
