//! Figure 7: group commit at the edge (issues 14 and 28). Single-event requests at fixed offered
//! rates, open loop, with the worker's batching off (`BATCH_WINDOW_MS=0`) and on (its default),
//! and the SQS requests they cost **counted** by an
//! [`BufferMeter`](spillway_support::BufferMeter) between the edge and the local SQS: what
//! reached the server, not what the edge says it sent. The batchers' side is counted from the
//! edge log, where each batcher logs every flush
//! (`{"kind":"batch","requests":n,"calls":c,"events":e,"active_ms":x}`): the client requests
//! it carried, the Durable Object requests that brought them (`calls`, fewer than `requests`
//! where an isolate gathered its requests into one; a line without `calls`, from an older
//! edge, had one per request), and its active wall time (what a Durable Object's duration is
//! billed for). Durable Object requests are billed by `calls`. The whole bill per million events, by service, uses
//! [`crate::prices`]. Not billed here: Workers CPU (figure 3 measures it), the consumer's side
//! (figure 9).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use spillway_support::{MeterSnapshot, Stack};

use super::burst::percentile;
use super::client::{self, post, runtime, Answer, End, Endpoint, Load};
use super::measure::now_rfc3339;
use super::sqs::purge;
use super::{ensure_open_files, SQS_BILLING_CHUNK};
use crate::prices::usd;
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
    /// What the batchers logged during the row.
    pub(super) flushes: Flushes,
}

/// The batchers' flushes during a row, from their `{"kind":"batch",...}` lines in the edge log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Flushes {
    pub(super) flushes: u64,
    /// Client requests the flushes carried.
    pub(super) requests: u64,
    /// Durable Object requests that carried them (billed): at most `requests`.
    pub(super) calls: u64,
    pub(super) events: u64,
    /// The batchers' active wall time, summed over every flush.
    pub(super) active_ms: u64,
}

impl Flushes {
    /// Every flush the edge log at `log` holds (none when it cannot be read).
    pub(super) fn read(log: &Path) -> Flushes {
        std::fs::read_to_string(log)
            .map(|text| Self::of(&text))
            .unwrap_or_default()
    }

    fn of(text: &str) -> Flushes {
        let mut f = Flushes::default();
        for line in text.lines() {
            let Some(at) = line.find('{') else { continue };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line[at..]) else {
                continue;
            };
            if v["kind"] != "batch" {
                continue;
            }
            let n = |k: &str| v[k].as_u64().unwrap_or(0);
            f.flushes += 1;
            f.requests += n("requests");
            f.calls += v["calls"].as_u64().unwrap_or(n("requests"));
            f.events += n("events");
            f.active_ms += n("active_ms");
        }
        f
    }

    pub(super) fn since(&self, before: &Flushes) -> Flushes {
        Flushes {
            flushes: self.flushes.saturating_sub(before.flushes),
            requests: self.requests.saturating_sub(before.requests),
            calls: self.calls.saturating_sub(before.calls),
            events: self.events.saturating_sub(before.events),
            active_ms: self.active_ms.saturating_sub(before.active_ms),
        }
    }
}

/// The memory a Durable Object's duration is billed at, GB (the price's unit says it).
pub(super) const DO_GB: f64 = 0.128;

/// A row's bill, $ per million events (those the meter counted at SQS).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bill {
    /// One Workers request per client request.
    pub(super) workers: f64,
    /// The Durable Object requests the batchers' flushes logged (`calls`).
    pub(super) do_requests: f64,
    /// The batchers' active time at 128 MB.
    pub(super) do_duration: f64,
    /// The billed SQS requests the meter counted.
    pub(super) sqs: f64,
}

impl Bill {
    pub(super) fn total(&self) -> f64 {
        self.workers + self.do_requests + self.do_duration + self.sqs
    }
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

    /// The whole bill per million events counted at SQS (NaN when none was).
    pub(super) fn bill(&self) -> Bill {
        let events = self.meter.events;
        let per_m = |count: f64, price: &str| per_million_f(count, events) * usd(price) / 1e6;
        let gb_s = self.flushes.active_ms as f64 / 1e3 * DO_GB;
        Bill {
            workers: per_m(self.answers.requests as f64, "workers_request"),
            do_requests: per_m(super::cost::do_requests(&self.flushes), "do_request"),
            do_duration: per_m(gb_s, "do_gb_s"),
            sqs: per_m(self.meter.billed as f64, "sqs_request"),
        }
    }

    /// The floor's bill per million events: a Workers request per (one-event) client request
    /// and the client's bytes in 64 KiB SQS requests; no batcher.
    pub(super) fn floor_usd(&self) -> f64 {
        usd("workers_request") + self.floor_per_million() * usd("sqs_request") / 1e6
    }

    /// At least 99% of the requests answered 202: the edge kept up with the offered rate.
    pub(super) fn kept_up(&self) -> bool {
        self.answers.accepted as f64 >= 0.99 * self.answers.requests as f64
    }
}

fn per_million(count: u64, events: u64) -> f64 {
    per_million_f(count as f64, events)
}

fn per_million_f(count: f64, events: u64) -> f64 {
    if events == 0 {
        f64::NAN
    } else {
        count * 1e6 / events as f64
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
        let log = stack.config.dir.join("logs/edge.log");
        let flushes_before = Flushes::read(&log);
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
            flushes: Flushes::read(&log).since(&flushes_before),
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
            flushes: Flushes::default(),
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
    fn the_batchers_flushes_are_read_from_the_edge_log() {
        let log = concat!(
            "[wrangler:info] POST /v1/events 202 Accepted (35ms)\n",
            "{\"request_id\":\"r1\",\"status\":202,\"events\":1,\"send\":\"batched\"}\n",
            "  {\"kind\":\"batch\",\"requests\":3,\"events\":4,\"active_ms\":31}\n",
            "{\"kind\":\"replay\",\"replayed\":9}\n",
            "{\"kind\":\"batch\",\"requests\":1,\"events\":1,\"active_ms\":22}\n",
            // Gathered: 40 client requests in 2 Durable Object requests.
            "{\"kind\":\"batch\",\"requests\":40,\"calls\":2,\"events\":40,\"active_ms\":25}\n",
            "{\"kind\":\"batch\", broken\n",
        );
        let f = Flushes::of(log);
        // Lines without `calls` (older edges) had a Durable Object request per request.
        let want = Flushes {
            flushes: 3,
            requests: 44,
            calls: 6,
            events: 45,
            active_ms: 78,
        };
        assert_eq!(f, want);
        assert_eq!(f.since(&Flushes::default()), want);
        assert_eq!(f.since(&f), Flushes::default());
    }

    #[test]
    fn the_bill_counts_workers_durable_objects_and_sqs_per_million_events() {
        // 100 one-event requests, 40 of them through batchers in 20 flushes active 1 s in all,
        // brought by 40 Durable Object requests, 80 billed SQS requests, 100 events at SQS.
        let mut row = row(1_280, &vec![end(Answer::Status(202), 1.0, 0.1); 100]);
        row.meter.events = 100;
        row.meter.billed = 80;
        row.flushes = Flushes {
            flushes: 20,
            requests: 40,
            calls: 40,
            events: 40,
            active_ms: 1_000,
        };
        let b = row.bill();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // Per million events: 1e6 Workers requests at $0.30/M, 400,000 DO requests at $0.15/M,
        // 10,000 s x 0.128 GB at $12.50 per million GB-s, 800,000 SQS requests at $0.40/M.
        assert!(close(b.workers, 0.30), "{b:?}");
        assert!(close(b.do_requests, 0.06), "{b:?}");
        assert!(
            close(b.do_duration, 10_000.0 * 0.128 * 12.50 / 1e6),
            "{b:?}"
        );
        assert!(close(b.sqs, 0.32), "{b:?}");
        assert!(close(b.total(), 0.30 + 0.06 + 0.016 + 0.32));
        // Floor: a Workers request and 1,280 B per event in 64 KiB SQS requests.
        assert!(close(row.floor_usd(), 0.30 + 19_531.25 * 0.40 / 1e6));
        // The isolates gathered the same 40 requests into 8 Durable Object requests: billed
        // by the 8.
        row.flushes.calls = 8;
        assert!(close(row.bill().do_requests, 0.012), "{:?}", row.bill());
        row.meter.events = 0;
        assert!(
            row.bill().total().is_nan(),
            "nothing at SQS is unknown, not free"
        );
    }

    #[test]
    fn the_edges_break_even_prices_are_the_price_tables() {
        // The edge decides whether group commit pays from its own copy of these prices
        // (edge/src/deliver/group_commit/advice.rs): they must be this table's.
        let advice = std::fs::read_to_string(
            crate::step::root().join("edge/src/deliver/group_commit/advice.rs"),
        )
        .expect("the edge's advice module");
        let constant = |name: &str| -> f64 {
            let at = advice
                .find(&format!("pub const {name}: f64 = "))
                .unwrap_or_else(|| panic!("{name} in advice.rs"));
            let rest = &advice[at..];
            let value = &rest[rest.find("= ").expect("=") + 2..rest.find(';').expect(";")];
            value
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: {value}"))
        };
        assert_eq!(constant("DO_REQUEST_USD_PER_M"), usd("do_request"));
        assert_eq!(constant("DO_GB_S_USD_PER_M"), usd("do_gb_s"));
        assert_eq!(constant("DO_GB"), DO_GB);
        assert_eq!(constant("SQS_REQUEST_USD_PER_M"), usd("sqs_request"));
        assert_eq!(
            constant("KINESIS_OD_IN_USD_PER_GB"),
            usd("kinesis_od_in_gb")
        );
        assert_eq!(
            constant("KINESIS_PUT_UNIT_USD_PER_M"),
            usd("kinesis_put_unit")
        );
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
