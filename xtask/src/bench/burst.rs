//! Figure 6: the experiment. One scenario (a burst of clients released together, or steady
//! traffic through a PostgreSQL outage, with or without retrying clients) against one design,
//! with the database watched from a session held open for the whole run, then reconciled: every
//! id answered `2xx` is looked up in the table.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use spillway_support::stack::spill_counts;
use spillway_support::{BufferKind, Stack};

use super::client::{drive, Answer, End, Endpoint, Load};
use super::measure::load_average;
use super::measure::now_rfc3339;
use super::{BURST_EVENTS_PER_REQUEST, BURST_MAX_CONNECTIONS};
use crate::step::note;
use spillway_support::events::request_body;

/// How long a client waits for one answer (about API Gateway's 29 s integration limit).
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// After the last client is done, how long the run waits for the database to catch up.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// Retrying clients stop retrying this long after the steady traffic ends.
const RETRY_WINDOW_AFTER: Duration = Duration::from_secs(30);

/// What load is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Scenario {
    /// `clients` requests released at the same instant, no retry.
    Burst { clients: usize },
    /// `rate` requests a second for `secs` seconds; PostgreSQL is stopped from `down.0` to
    /// `down.1` seconds; clients retry with backoff if `retry`.
    Steady {
        rate: u32,
        secs: u32,
        down: (u32, u32),
        retry: bool,
    },
}

impl Scenario {
    /// File-name key: `burst-1000`, `outage`, `outage-retry`.
    pub(super) fn key(&self) -> String {
        match self {
            Scenario::Burst { clients } => format!("burst-{clients}"),
            Scenario::Steady { retry: false, .. } => "outage".into(),
            Scenario::Steady { retry: true, .. } => "outage-retry".into(),
        }
    }

    pub(super) fn title(&self) -> String {
        match self {
            Scenario::Burst { clients } => format!(
                "burst: {clients} clients released together, one request of \
                 {BURST_EVENTS_PER_REQUEST} events each, no retry"
            ),
            Scenario::Steady {
                rate,
                secs,
                down,
                retry,
            } => format!(
                "steady {rate} requests/s of {BURST_EVENTS_PER_REQUEST} events for {secs} s, \
                 PostgreSQL stopped from {} s to {} s, {}",
                down.0,
                down.1,
                if *retry {
                    "clients retry with backoff (same ids)"
                } else {
                    "no retry"
                }
            ),
        }
    }

    /// How its clients send, from `start`.
    fn load(&self, start: Instant) -> Load {
        let (rate, retry_until) = match *self {
            Scenario::Burst { .. } => (None, None),
            Scenario::Steady {
                rate, secs, retry, ..
            } => {
                let over = start + Duration::from_secs(u64::from(secs)) + RETRY_WINDOW_AFTER;
                (Some(rate), retry.then_some(over))
            }
        };
        Load {
            rate,
            timeout: ATTEMPT_TIMEOUT,
            retry_until,
            from_schedule: false,
        }
    }

    fn requests(&self) -> usize {
        match *self {
            Scenario::Burst { clients } => clients,
            Scenario::Steady { rate, secs, .. } => (rate * secs) as usize,
        }
    }
}

/// One database sample; `None` where the sample failed (never recorded as 0).
#[derive(Debug, Clone, Default)]
pub(super) struct Sample {
    pub(super) t: f64,
    pub(super) connections: Option<u64>,
    pub(super) rows: Option<u64>,
}

/// What one design did in one scenario.
#[derive(Debug, Clone, Default)]
pub(super) struct RunResult {
    pub(super) design: String,
    pub(super) requests: usize,
    pub(super) events_sent: usize,
    pub(super) accepted_requests: usize,
    pub(super) accepted_events: usize,
    /// Requests whose final answer was not `2xx`, by answer (status, "timed out", transport).
    pub(super) refused: BTreeMap<String, usize>,
    /// The same requests by answer and the start of its body (`503 Your worker restarted...`).
    pub(super) refusal_texts: BTreeMap<String, usize>,
    pub(super) timed_out: usize,
    /// Attempts after the first (retrying clients).
    pub(super) retries: usize,
    /// Ids answered `2xx` and not in the table at the end.
    pub(super) lost: usize,
    /// Ids of requests finally refused that are in the table anyway.
    pub(super) stored_refused: usize,
    pub(super) rows_end: usize,
    pub(super) peak_connections: Option<u64>,
    pub(super) failed_samples: usize,
    pub(super) max_connections: String,
    /// Accept latency (first send to the `2xx`), all accepted requests.
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    /// Accept p99 of requests first sent while PostgreSQL was up, and while it was down.
    pub(super) p99_up_ms: Option<f64>,
    pub(super) p99_down_ms: Option<f64>,
    /// Seconds from the start until the table held its final rows with every accepted event
    /// in it; `None` if some accepted event never arrived within the drain limit.
    pub(super) complete_s: Option<f64>,
    pub(super) clients_done_s: f64,
    /// Measured PostgreSQL stop and start times (steady scenarios).
    pub(super) outage: Option<(f64, f64)>,
    pub(super) samples: Vec<Sample>,
    /// (t, visible + in flight) of Spillway's queue.
    pub(super) queue: Vec<(f64, u64)>,
    pub(super) dlq_end: Option<u64>,
    /// Load average sampled just before and just after the run.
    pub(super) load: (String, String),
}

/// A psql session held open for the whole run, so watching needs no new connection while the
/// server is full.
pub(super) struct Monitor {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Monitor {
    pub(super) fn start(port: u16) -> Result<Monitor> {
        let bin = spillway_support::pg_bin_dir()?.join("psql");
        let mut child = Command::new(bin)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-XAtq"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting psql")?;
        let stdin = child.stdin.take().context("psql stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("psql stdout")?);
        let mut m = Monitor {
            child,
            stdin,
            stdout,
        };
        m.query("select 1")?;
        Ok(m)
    }

    /// One query whose answer is one line.
    pub(super) fn query(&mut self, sql: &str) -> Result<String> {
        writeln!(self.stdin, "{sql};")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("psql monitor ended");
        }
        Ok(line.trim().to_owned())
    }

    /// (client connections other than this one, rows in `events`)
    fn look(&mut self) -> Result<(u64, u64)> {
        let line = self.query(
            "select (select count(*) from pg_stat_activity where backend_type = 'client backend' \
             and pid <> pg_backend_pid()) || '|' || (select count(*) from events)",
        )?;
        parse_look(&line)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `connections|rows` as the monitor's query prints it.
fn parse_look(line: &str) -> Result<(u64, u64)> {
    let (c, r) = line
        .split_once('|')
        .ok_or_else(|| anyhow!("monitor answered {line:.80}"))?;
    Ok((
        c.parse().with_context(|| format!("connections {c:.20}"))?,
        r.parse().with_context(|| format!("rows {r:.20}"))?,
    ))
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `scenario` against one design, on the stack's database (stopped and started by the
/// steady scenarios). For Spillway (`spillway`), its queues are watched too: the main queue and
/// the DLQ (visible + in flight), and the events its edge spilled and has not yet replayed to
/// SQS (in no SQS queue meanwhile), none of this run's may be left when the run is judged.
pub(super) fn run(
    design: &str,
    endpoint: &Endpoint,
    scenario: Scenario,
    stack: &Stack,
    spillway: bool,
) -> Result<RunResult> {
    let pg = &stack.pg;
    let depth = |url: &str| stack.sqs.depth(url).map(|(v, f)| v + f).ok();
    // A stream has no depth to watch: with Kinesis, the backlog is drained once the table
    // (truncated before the run, on a stream no earlier run wrote to) holds as many rows as
    // events were accepted.
    let kinesis = stack.env.buffer == BufferKind::Kinesis;
    // The edge log counts every event spilled and replayed since the stack started. What
    // earlier figures left unreplayed is not waited for: a restart of `wrangler dev` empties
    // its local queue, so those never come.
    let log = stack.config.dir.join("logs/edge.log");
    let unreplayed_before = unreplayed(&log);
    let total = scenario.requests();
    let ts = now_rfc3339();
    let nonce = u128::from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    // Bodies are made before the start, so clients only send; each event's id is kept to look
    // it up in the table at the end.
    let mut bodies: Vec<Arc<Vec<u8>>> = Vec::with_capacity(total);
    let mut all_ids: Vec<Vec<String>> = Vec::with_capacity(total);
    for i in 0..total {
        let first = i * BURST_EVENTS_PER_REQUEST;
        let ids: Vec<String> = (first..first + BURST_EVENTS_PER_REQUEST)
            .map(|n| uuid::Uuid::from_u128((nonce << 64) | n as u128).to_string())
            .collect();
        let mut next = ids.iter().cloned();
        let body = request_body(BURST_EVENTS_PER_REQUEST, first, &ts, &mut || next.next());
        bodies.push(Arc::new(body));
        all_ids.push(ids);
    }
    note(&format!("{design}: {}", scenario.title()));
    let mut monitor = Monitor::start(pg.port())?;
    let max_connections = monitor.query("show max_connections")?;
    let load_before = load_average();
    let samples: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
    let queue: Mutex<Vec<(f64, u64)>> = Mutex::new(Vec::new());
    let finished = AtomicBool::new(false);
    let outage: Mutex<Option<(f64, f64)>> = Mutex::new(None);
    let start = Instant::now();
    let first_monitor = Mutex::new(Some(monitor));
    let mut monitor_slot = None;
    let ends = std::thread::scope(|s| -> Result<Vec<End>> {
        // The database, every 100 ms: a failed sample (the server is down, or refused the
        // session's reconnection) is recorded as missing and the session is opened again.
        let sampler = s.spawn(|| {
            let mut m = first_monitor.lock().ok().and_then(|mut g| g.take());
            while !finished.load(Ordering::SeqCst) {
                let t = start.elapsed().as_secs_f64();
                if m.is_none() {
                    m = Monitor::start(pg.port()).ok();
                }
                let look = m.as_mut().and_then(|m| m.look().ok());
                if look.is_none() {
                    m = None;
                }
                let sample = Sample {
                    t,
                    connections: look.map(|(c, _)| c),
                    rows: look.map(|(_, r)| r),
                };
                if let Ok(mut v) = samples.lock() {
                    v.push(sample);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            m
        });
        let queue_sampler = s.spawn(|| {
            if !spillway || kinesis {
                return;
            }
            while !finished.load(Ordering::SeqCst) {
                if let Some(d) = depth(&stack.env.sqs_queue_url) {
                    if let Ok(mut q) = queue.lock() {
                        q.push((start.elapsed().as_secs_f64(), d));
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        let outage_thread = s.spawn(|| -> Result<()> {
            let Scenario::Steady { down, .. } = scenario else {
                return Ok(());
            };
            sleep_until(start + Duration::from_secs(u64::from(down.0)));
            let stopped = start.elapsed().as_secs_f64();
            pg.stop()?;
            sleep_until(start + Duration::from_secs(u64::from(down.1)));
            let started = start.elapsed().as_secs_f64();
            pg.start_with_max_connections(BURST_MAX_CONNECTIONS)?;
            if let Ok(mut o) = outage.lock() {
                *o = Some((stopped, started));
            }
            Ok(())
        });
        let ends = drive(endpoint, &bodies, scenario.load(start), start);
        let clients_done = start.elapsed();
        let accepted_events: u64 = ends.as_ref().map_or(0, |ends| {
            ends.iter()
                .filter(|e| e.attempt.answer.accepted())
                .map(|e| e.attempt.ids.len() as u64)
                .sum()
        });
        let outage_result = outage_thread
            .join()
            .map_err(|_| anyhow!("the outage thread panicked"));
        // Wait for the database: Spillway's queue empty, every spilled event replayed and the
        // row count still for 2 s, within the drain limit.
        let mut still_since: Option<(u64, Instant)> = None;
        while start.elapsed() < clients_done + DRAIN_LIMIT {
            std::thread::sleep(Duration::from_millis(250));
            let rows = samples
                .lock()
                .ok()
                .and_then(|v| v.iter().rev().find_map(|s| s.rows));
            let Some(rows) = rows else { continue };
            let backlog_done = if kinesis {
                rows >= accepted_events
            } else {
                queue
                    .lock()
                    .ok()
                    .and_then(|q| q.last().map(|(_, d)| *d == 0))
                    .unwrap_or(false)
            };
            let queue_empty = !spillway || backlog_done && unreplayed(&log) <= unreplayed_before;
            match still_since {
                Some((r, since)) if r == rows => {
                    if queue_empty && since.elapsed() >= Duration::from_secs(2) {
                        break;
                    }
                }
                _ => still_since = Some((rows, Instant::now())),
            }
        }
        finished.store(true, Ordering::SeqCst);
        monitor_slot = sampler
            .join()
            .map_err(|_| anyhow!("the sampler panicked"))?;
        queue_sampler
            .join()
            .map_err(|_| anyhow!("the queue sampler panicked"))?;
        outage_result??;
        ends
    })?;
    let clients_done_s = ends
        .iter()
        .map(|e| e.sent_s + e.latency_ms / 1000.0)
        .fold(0.0f64, f64::max);
    let mut monitor = monitor_slot.map_or_else(|| Monitor::start(pg.port()), Ok)?;
    let stored_text =
        monitor.query("select coalesce(string_agg(id::text, ','), '') from events")?;
    let stored: HashSet<&str> = stored_text.split(',').filter(|s| !s.is_empty()).collect();
    drop(monitor);
    let samples = samples.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let queue = queue.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let outage = outage.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let mut r = RunResult {
        design: design.into(),
        requests: total,
        events_sent: total * BURST_EVENTS_PER_REQUEST,
        max_connections,
        clients_done_s,
        outage,
        rows_end: stored.len(),
        load: (load_before, load_average()),
        dlq_end: spillway.then(|| depth(&stack.env.sqs_dlq_url)).flatten(),
        ..RunResult::default()
    };
    let (mut lat, mut lat_up, mut lat_down) = (Vec::new(), Vec::new(), Vec::new());
    for (i, e) in ends.iter().enumerate() {
        r.retries += e.attempts.saturating_sub(1);
        if e.attempt.answer.accepted() {
            r.accepted_requests += 1;
            r.accepted_events += e.attempt.ids.len();
            r.lost += e
                .attempt
                .ids
                .iter()
                .filter(|id| !stored.contains(id.as_str()))
                .count();
            lat.push(e.latency_ms);
            let down = outage.is_some_and(|(a, b)| e.sent_s >= a && e.sent_s < b);
            if down {
                lat_down.push(e.latency_ms);
            } else {
                lat_up.push(e.latency_ms);
            }
        } else {
            if e.attempt.answer == Answer::TimedOut {
                r.timed_out += 1;
            }
            *r.refused.entry(e.attempt.answer.label()).or_insert(0) += 1;
            let text = match &e.attempt.detail {
                Some(d) => format!("{} `{d}`", e.attempt.answer.label()),
                None => e.attempt.answer.label(),
            };
            *r.refusal_texts.entry(text).or_insert(0) += 1;
            r.stored_refused += all_ids[i]
                .iter()
                .filter(|id| stored.contains(id.as_str()))
                .count();
        }
    }
    for v in [&mut lat, &mut lat_up, &mut lat_down] {
        v.sort_by(f64::total_cmp);
    }
    r.p50_ms = percentile(&lat, 50.0);
    r.p99_ms = percentile(&lat, 99.0);
    if matches!(scenario, Scenario::Steady { .. }) {
        r.p99_up_ms = (!lat_up.is_empty()).then(|| percentile(&lat_up, 99.0));
        r.p99_down_ms = (!lat_down.is_empty()).then(|| percentile(&lat_down, 99.0));
    }
    r.peak_connections = samples.iter().filter_map(|s| s.connections).max();
    r.failed_samples = samples.iter().filter(|s| s.rows.is_none()).count();
    if r.lost == 0 {
        r.complete_s = samples
            .iter()
            .find(|s| s.rows.is_some_and(|n| n as usize >= r.rows_end))
            .map(|s| s.t);
    }
    r.samples = samples;
    r.queue = queue;
    Ok(r)
}

/// Events the edge log says were spilled and not (yet) replayed, since the stack started.
fn unreplayed(log: &Path) -> u64 {
    let (spilled, replayed) = spill_counts(log);
    spilled.saturating_sub(replayed)
}

/// Sleeps until `at` (not at all once it is past).
pub(super) fn sleep_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monitor_line_is_read_or_refused() {
        assert_eq!(parse_look("3|120").expect("parses"), (3, 120));
        assert!(parse_look("").is_err());
        assert!(parse_look("psql: error|x").is_err());
    }

    #[test]
    fn percentiles_of_sorted_latencies() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
