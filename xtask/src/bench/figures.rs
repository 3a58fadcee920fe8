//! What a run measured, as the tables of `results.json` (and of BENCHMARKS.md): per figure, its
//! columns, each a name (with its unit), the decimals it is shown with and how a measured row
//! gives its value. Only arranges measured numbers and the ratios between them; formatting is
//! `table.rs`'s, the explanation of each figure BENCHMARKS.md's hand-written prose.

use serde_json::{json, Value};

use super::batching::{BatchRow, Mode, RATES};
use super::burst::RunResult;
use super::cpu::GROUPS;
use super::designs::{
    pgbouncer_version, LAMBDA_CONCURRENCY, PGBOUNCER_POOL, PGBOUNCER_QUERY_WAIT_S,
};
use super::experiment::ScenarioResult;
use super::spill::SpillRow;
use super::table::{num, ratio, Col, Table};
use super::workerd::{WrkRun, WRK_CONNECTIONS};
use super::{Opts, Results};

const N: Option<usize> = Some(0);
const N1: Option<usize> = Some(1);
const N2: Option<usize> = Some(2);
const TEXT: Option<usize> = None;

/// Every table of the run (the checks, computed from these, are `checks.rs`'s).
pub(super) fn tables(r: &Results, opts: &Opts) -> Vec<Table> {
    let mut out = vec![run(r, opts), setup(r, opts), summary(r)];
    if let Some(e) = &r.edge {
        #[rustfmt::skip] // A table: one column per line.
        let cols: [Col<(usize, f64, f64, usize)>; 7] = [
            ("events per request", N, |r| json!(r.0)),
            ("request body (B)", N, |r| json!(r.3)),
            ("B/event", N, |r| num(r.3 as f64 / r.0 as f64)),
            ("request path (ns/event)", N, |r| num(r.1)),
            ("floor (ns/event)", N, |r| num(r.2)),
            ("path / floor", N2, |r| ratio(r.1, r.2)),
            ("request path (ns/KiB)", N, |r| num(r.1 * r.0 as f64 / (r.3 as f64 / 1024.0))),
        ];
        out.push(Table::of("figure-1", e.rows.iter().copied(), &cols));
    }
    if let Some(w) = &r.wasm {
        let rows = [
            (
                "edge (`spillway-edge`), SQS build",
                w.edge_raw,
                w.edge_gz,
                w,
            ),
            (
                "edge, Kinesis build (`--env kinesis`)",
                w.kinesis_raw,
                w.kinesis_gz,
                w,
            ),
            (
                "hello world (`benches/hello-worker`)",
                w.hello_raw,
                w.hello_gz,
                w,
            ),
        ];
        #[rustfmt::skip] // A table: one column per line.
        let cols: [Col<(&str, u64, u64, &super::wasm::WasmSize)>; 5] = [
            ("worker", TEXT, |r| json!(r.0)),
            ("index_bg.wasm (B)", N, |r| json!(r.1)),
            ("gzip -9 (B)", N, |r| json!(r.2)),
            ("index_bg.wasm / hello world", N2, |r| ratio(r.1 as f64, r.3.hello_raw as f64)),
            ("gzip -9 / hello world", N2, |r| ratio(r.2 as f64, r.3.hello_gz as f64)),
        ];
        out.push(Table::of("figure-2", rows, &cols));
    }
    if let Some(runs) = &r.workerd {
        out.push(wrk_table(runs));
        out.push(cpu_table(runs, super::cpu::cores()));
    }
    if let Some(c) = &r.sqs {
        #[rustfmt::skip] // A table: one column per line.
        let cols: [Col<&super::sqs::SqsCost>; 8] = [
            ("events per request", N, |x| json!(x.events_per_request)),
            ("SQS messages per request", N2, |x| num(x.messages_per_request)),
            ("bytes per message", N, |x| num(x.message_bytes)),
            ("billed sends per million events", N, |x| num(x.send_billed)),
            ("floor (bytes / 64 KiB, per million events)", N, |x| num(x.floor)),
            ("sends / floor", N2, |x| ratio(x.send_billed, x.floor)),
            ("receives per million events", N, |x| num(x.receive_billed)),
            ("deletes per million events", N, |x| num(x.delete_billed)),
        ];
        out.push(Table::of("figure-4", c, &cols));
    }
    if let Some(d) = &r.db {
        let rows = [
            ("consumer: `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT (key_id, id) DO NOTHING` (PgStore)", d.unnest, d.copy),
            ("binary `COPY events FROM STDIN` (no duplicate handling: the ceiling)", d.copy, d.copy),
            ("`COPY` into a staging table + `INSERT ... ON CONFLICT DO NOTHING` (same semantics)", d.staging, d.copy),
        ];
        let cols: [Col<(&str, f64, f64)>; 3] = [
            ("write", TEXT, |r| json!(r.0)),
            ("rows/s", N, |r| num(r.1)),
            ("vs COPY", N2, |r| ratio(r.1, r.2)),
        ];
        out.push(Table::of("figure-5", rows, &cols));
    }
    out.extend(r.experiment.iter().map(scenario_table));
    if let Some(rows) = &r.batching {
        out.push(batching_table(rows));
    }
    if let Some(rows) = &r.spill {
        out.push(spill_table(rows));
    }
    out.extend(super::figure9::tables(r));
    if let Some(rows) = &r.drain {
        out.push(super::drain::table(rows));
    }
    out
}

/// The run's metadata: when, at which commit, on what machine under what load, with what options.
fn run(r: &Results, opts: &Opts) -> Table {
    let clients: Vec<String> = opts.burst_clients.iter().map(|c| c.to_string()).collect();
    let mut options = format!(
        "--sqs {} --buffer {} --burst-clients {} --steady-secs {} --steady-rate {} --wrk-secs {}",
        opts.sqs,
        opts.buffer,
        clients.join(","),
        opts.steady_secs,
        opts.steady_rate,
        opts.wrk_secs
    );
    if let Some(only) = &opts.only {
        options += &format!(" --only {}", only.join(","));
    }
    #[rustfmt::skip] // A table: one column per line.
    let cols: [Col<(&Results, &str, String)>; 13] = [
        ("run", TEXT, |x| json!(x.1)),
        ("date", TEXT, |x| json!(x.0.machine.date)),
        ("commit", TEXT, |x| json!(x.0.machine.commit)),
        ("seconds", N, |x| num(x.0.seconds)),
        ("`nproc`", N, |x| json!(x.0.machine.nproc)),
        ("CPU (/proc/cpuinfo)", TEXT, |x| json!(x.0.machine.cpu)),
        ("RAM (GiB)", N1, |x| num(x.0.machine.ram_gib)),
        ("kernel", TEXT, |x| json!(x.0.machine.kernel)),
        ("load average at the start (1, 5, 15 min)", TEXT, |x| json!(x.0.machine.load)),
        ("load average at the end", TEXT, |x| json!(x.0.load_end)),
        ("local SQS", TEXT, |x| json!(x.0.sqs_server.map(|k| k.to_string()))),
        (
            "its `SendMessageBatch` rate, 10 x 1 KiB from one client (messages/s)",
            N,
            |x| x.0.sqs_rate.map_or(Value::Null, num),
        ),
        ("options", TEXT, |x| json!(x.2)),
    ];
    let kind = if opts.only.is_some() || opts.buffer != spillway_support::BufferKind::Sqs {
        "partial"
    } else {
        "full"
    };
    let mut t = Table::of("run", [(r, kind, options)], &cols);
    t.transposed = true;
    t
}

/// The rig's settings the figures depend on (the code's constants and this run's options), so
/// that the hand-written prose need state none of them.
fn setup(r: &Results, opts: &Opts) -> Table {
    let opt = |v: Option<Value>| v.unwrap_or(Value::Null);
    #[rustfmt::skip] // A table: one setting per line.
    let rows = [
        ("1", "command", opt(r.edge.as_ref().map(|e| json!(e.command)))),
        ("3", "`wrk` connections", json!(WRK_CONNECTIONS)),
        ("3", "seconds per `wrk` run", json!(opts.wrk_secs)),
        ("4, 7", "SQS billing unit (bytes of message bodies)", json!(super::SQS_BILLING_CHUNK)),
        ("4", "consumer `BATCH_SIZE` (messages per receive)", json!(super::CONSUMER_BATCH_SIZE)),
        ("5", "command", opt(r.db.as_ref().map(|d| json!(d.command)))),
        ("5", "rows written each way", opt(r.db.as_ref().map(|d| json!(d.rows)))),
        ("6", "PostgreSQL `max_connections`", json!(super::BURST_MAX_CONNECTIONS)),
        ("6", "events per request", json!(super::BURST_EVENTS_PER_REQUEST)),
        ("6", "client timeout (s)", json!(super::burst::ATTEMPT_TIMEOUT.as_secs())),
        ("6", "poller `WAIT_TIME_SECONDS`", json!(super::experiment::POLL_WAIT_S)),
        ("6", "synchronous handler's concurrency limit", json!(LAMBDA_CONCURRENCY)),
        ("6", "PgBouncer version", opt(pgbouncer_version().map(|v| json!(v)))),
        ("6", "PgBouncer server connections", json!(PGBOUNCER_POOL)),
        ("6", "PgBouncer `query_wait_timeout` (s)", json!(PGBOUNCER_QUERY_WAIT_S)),
        ("7, 8", "client timeout (s)", json!(super::batching::TIMEOUT.as_secs())),
        ("8", "edge `SQS_DEADLINE_MS`", json!(super::spill::DEADLINE_MS)),
        ("9", "metered loads (events per request, requests/s, s)", json!(super::buffers::LOADS)),
        ("9", "group commit window when on (ms)", json!(super::buffers::GROUP_WINDOW_MS)),
        ("9", "consumer batch: SQS messages, Kinesis records", json!([super::cost::SQS_BATCH, super::cost::KINESIS_BATCH])),
        ("9", "local Kinesis stream shards", opt(r.kinesis.as_ref().map(|k| json!(k.shards)))),
    ];
    let cols: [Col<(&str, &str, Value)>; 3] = [
        ("figure", TEXT, |x| json!(x.0)),
        ("setting", TEXT, |x| json!(x.1)),
        ("value", TEXT, |x| x.2.clone()),
    ];
    Table::of("setup", rows, &cols)
}

/// A summary row: figure, what, unit, Spillway's number, the reference and its number.
type SummaryRow<'a> = (u32, String, &'a str, f64, &'a str, f64);

/// Each figure's headline against its reference measured in the same run.
#[rustfmt::skip] // A table: one row per line.
fn summary(r: &Results) -> Table {
    const FLOOR: &str = "payload bytes / 64 KiB";
    const PER_M: &str = "per million events";
    let mut rows: Vec<SummaryRow> = Vec::new();
    for &(n, path, floor, _) in r.edge.iter().flat_map(|e| &e.rows) {
        let what = format!("edge request path, {n}-event requests");
        rows.push((1, what, "ns/event", path, "serde_json parse + serialise", floor));
    }
    if let Some(w) = &r.wasm {
        let what = "release worker, gzip -9".to_owned();
        rows.push((2, what, "B", w.edge_gz as f64, "`worker` hello world", w.hello_gz as f64));
    }
    if let Some([h, posts @ ..]) = r.workerd.as_deref() {
        for p in posts {
            let what = format!("{} under `wrangler dev`", p.name);
            rows.push((3, format!("{what}: throughput"), "req/s", p.rps, "GET /healthz", h.rps));
            rows.push((3, format!("{what}: p99"), "ms", p.p99_ms, "GET /healthz", h.p99_ms));
        }
    }
    for x in r.sqs.iter().flatten() {
        let what = format!("billed SQS sends, {}-event requests", x.events_per_request);
        rows.push((4, what, PER_M, x.send_billed, FLOOR, x.floor));
    }
    if let Some(d) = &r.db {
        let what = format!("consumer bulk write (UNNEST), batches of {}", d.batch);
        rows.push((5, what, "rows/s", d.unnest, "binary COPY", d.copy));
    }
    // Spillway against each synchronous design, scenario by scenario.
    let refused = |r: &RunResult| r.refused.values().sum::<usize>() as f64;
    let peak = |r: &RunResult| r.peak_connections.map_or(f64::NAN, |p| p as f64);
    for sc in &r.experiment {
        let (Some(sp), key) = (sc.runs.first(), sc.scenario.key()) else { continue };
        for other in &sc.runs[1..] {
            let d = other.design.as_str();
            let (lost, other_lost) = (sp.lost as f64, other.lost as f64);
            rows.push((6, format!("{key}: requests refused"), "count", refused(sp), d, refused(other)));
            rows.push((6, format!("{key}: events lost"), "count", lost, d, other_lost));
            rows.push((6, format!("{key}: peak PostgreSQL connections"), "count", peak(sp), d, peak(other)));
        }
    }
    // The middle rate: high enough for a batch to form, within what the local edge serves.
    for b in r.batching.iter().flatten().filter(|b| b.offered_rps == RATES[1].0) {
        let (mode, rate) = (b.mode.label(), b.offered_rps);
        let what = format!("group commit {mode}, 1-event requests at {rate} req/s: billed SQS sends");
        rows.push((7, what, PER_M, b.billed_per_million(), FLOOR, b.floor_per_million()));
    }
    for (what, unit, v, reference, ref_v) in super::figure9::summary_rows(r) {
        rows.push((9, what, unit, v, reference, ref_v));
    }
    let cols: [Col<SummaryRow>; 7] = [
        ("#", N, |x| json!(x.0)),
        ("figure", TEXT, |x| json!(x.1)),
        ("unit", TEXT, |x| json!(x.2)),
        ("Spillway", N, |x| num(x.3)),
        ("reference (same run)", TEXT, |x| json!(x.4)),
        ("reference", N, |x| num(x.5)),
        ("Spillway / reference", N2, |x| ratio(x.3, x.5)),
    ];
    Table::of("summary", rows, &cols)
}

fn wrk_table(runs: &[WrkRun]) -> Table {
    let h_rps = runs.first().map_or(0.0, |h| h.rps);
    let cols: [Col<(&WrkRun, f64)>; 10] = [
        ("request", TEXT, |x| json!(x.0.name)),
        ("command", TEXT, |x| json!(format!("`{}`", x.0.command))),
        ("requests/s", N, |x| num(x.0.rps)),
        ("events/s", N, |x| num(x.0.rps * x.0.events as f64)),
        ("p50 (ms)", N2, |x| num(x.0.p50_ms)),
        ("p99 (ms)", N2, |x| num(x.0.p99_ms)),
        ("requests", N, |x| json!(x.0.requests)),
        ("non-2xx", N, |x| json!(x.0.non_2xx)),
        ("socket errors", N, |x| json!(x.0.socket_errors)),
        ("req/s vs /healthz", N2, |x| ratio(x.0.rps, x.1)),
    ];
    Table::of("figure-3", runs.iter().map(|r| (r, h_rps)), &cols)
}

/// CPU milliseconds per completed request: one group's, or all groups' when `None`; unknown
/// (not 0) when the CPU was not measured.
fn cpu_ms(r: &WrkRun, group: Option<&str>) -> Value {
    let Some(u) = r.cpu.as_ref().filter(|_| r.requests > 0) else {
        return Value::Null;
    };
    let s = match group {
        Some(g) => u.seconds_of(g),
        None => u.seconds.iter().map(|(_, s)| s).sum(),
    };
    num(s * 1000.0 / r.requests as f64)
}

/// All groups' CPU milliseconds per request; NaN (so `null` in a ratio) when not measured.
fn cpu_all(r: &WrkRun) -> f64 {
    cpu_ms(r, None).as_f64().unwrap_or(f64::NAN)
}

/// Figure 3's CPU: per request, what each group of processes used, and the two ceilings on
/// requests/s that follow: the cores all busy, and the connections each waiting one p50.
pub(super) fn cpu_table(runs: &[WrkRun], cores: usize) -> Table {
    #[rustfmt::skip] // A table: one column per line.
    let cols: [Col<(&WrkRun, usize)>; 10] = [
        ("request", TEXT, |x| json!(x.0.name)),
        ("cores busy", N2, |x| x.0.cpu.as_ref().map_or(Value::Null, |u| num(u.cores_busy))),
        ("CPU per request, all (ms)", N2, |x| cpu_ms(x.0, None)),
        ("workerd (ms)", N2, |x| cpu_ms(x.0, Some(GROUPS[0]))),
        ("wrangler (node) (ms)", N2, |x| cpu_ms(x.0, Some(GROUPS[1]))),
        ("local buffer (ms)", N2, |x| cpu_ms(x.0, Some(GROUPS[2]))),
        ("wrk (ms)", N2, |x| cpu_ms(x.0, Some(GROUPS[3]))),
        ("other (ms)", N2, |x| cpu_ms(x.0, Some(GROUPS[4]))),
        ("cores / CPU per request (req/s)", N, |x| ratio(x.1 as f64 * 1000.0, cpu_all(x.0))),
        ("connections / p50 (req/s)", N, |x| ratio(WRK_CONNECTIONS as f64 * 1000.0, x.0.p50_ms)),
    ];
    let mut t = Table::of("figure-3-cpu", runs.iter().map(|r| (r, cores)), &cols);
    // The machine's cores, which the rows are a share of, in the header.
    t.columns[1].name = format!("cores busy (of {cores})");
    t
}

/// Figure 6, one scenario: a row per design, shown with a column per design.
pub(super) fn scenario_table(sc: &ScenarioResult) -> Table {
    #[rustfmt::skip] // A table: one column per line.
    let cols: [Col<&RunResult>; 27] = [
        ("", TEXT, |r| json!(r.design)),
        ("`max_connections` (as the server reported it)", N, |r| max_connections(r)),
        ("requests sent", N, |r| json!(r.requests)),
        ("events sent", N, |r| json!(r.events_sent)),
        ("accepted (2xx) requests", N, |r| json!(r.accepted_requests)),
        ("accepted (2xx) events", N, |r| json!(r.accepted_events)),
        ("refused, by final answer", N, |r| json!(r.refused.values().sum::<usize>())),
        ("refused, by answer", N, |r| json!(r.refused)),
        ("of which timed out", N, |r| json!(r.timed_out)),
        (RETRIES, N, |r| json!(r.retries)),
        ("**events lost** (2xx, never stored)", N, |r| json!(r.lost)),
        ("events stored although refused", N, |r| json!(r.stored_refused)),
        ("rows in the table at the end", N, |r| json!(r.rows_end)),
        ("**peak PostgreSQL connections**", N, |r| json!(r.peak_connections)),
        ("failed samples", N, |r| json!(r.failed_samples)),
        ("p50 accept latency (ms)", N, |r| num(r.p50_ms)),
        ("**p99 accept latency** (ms)", N, |r| num(r.p99_ms)),
        (STEADY[0], N, |r| r.p99_up_ms.map_or(Value::Null, num)),
        (STEADY[1], N, |r| r.p99_down_ms.map_or(Value::Null, num)),
        (STEADY[2], N1, |r| r.outage.map_or(Value::Null, |o| num(o.0))),
        (STEADY[3], N1, |r| r.outage.map_or(Value::Null, |o| num(o.1))),
        ("last client answered at (s)", N1, |r| num(r.clients_done_s)),
        ("**table held every accepted event at** (s)", N1, |r| json!(r.complete_s)),
        ("DLQ at the end", N, |r| json!(r.dlq_end)),
        ("load average before the run", TEXT, |r| json!(r.load.0)),
        ("load average after the run", TEXT, |r| json!(r.load.1)),
        ("what the refusals said (answer, start of its body)", TEXT, |r| json!(r.refusal_texts)),
    ];
    // Retries only where clients retry, PostgreSQL's outage only where there is one.
    let (steady, retry) = match sc.scenario {
        super::burst::Scenario::Steady { retry, .. } => (true, retry),
        super::burst::Scenario::Burst { .. } => (false, false),
    };
    let cols: Vec<Col<&RunResult>> = cols
        .into_iter()
        .filter(|c| (retry || c.0 != RETRIES) && (steady || !STEADY.contains(&c.0)))
        .collect();
    let key = format!("figure-6-{}", sc.scenario.key());
    let mut t = Table::of(key, &sc.runs, &cols);
    t.transposed = true;
    t
}

/// What the server reported: a number when it is one.
fn max_connections(r: &RunResult) -> Value {
    let reported = &r.max_connections;
    reported
        .parse::<u64>()
        .map_or_else(|_| json!(reported), |v| json!(v))
}

const RETRIES: &str = "retries (attempts after the first)";
const STEADY: [&str; 4] = [
    "p99 accept latency, sent while PostgreSQL was up (ms)",
    "p99 accept latency, sent while PostgreSQL was down (ms)",
    "PostgreSQL stopped at (s)",
    "PostgreSQL started at (s)",
];

/// A figure-7 row, the off row of its rate where both kept up (latency), and the off row of its
/// rate for an on row (cost).
type WithOff<'a> = (&'a BatchRow, Option<&'a BatchRow>, Option<&'a BatchRow>);

/// Figure 7: group commit off and on per offered rate, as the meter and the batchers' log
/// counted it, the whole bill per million events beside the floor's and off's, with the
/// latency batching added where both modes kept up with the offered rate.
fn batching_table(rows: &[BatchRow]) -> Table {
    const N4: Option<usize> = Some(4);
    let with_off = rows.iter().map(|row| {
        let off = rows
            .iter()
            .find(|o| o.mode == Mode::Off && o.offered_rps == row.offered_rps);
        let kept_up = off.filter(|o| row.mode == Mode::On && o.kept_up() && row.kept_up());
        (row, kept_up, off.filter(|_| row.mode == Mode::On))
    });
    #[rustfmt::skip] // A table: one column per line.
    let cols: [Col<WithOff>; 30] = [
        ("batching", TEXT, |x| json!(x.0.mode.label())),
        ("offered req/s", N, |x| json!(x.0.offered_rps)),
        ("for (s)", N, |x| json!(x.0.secs)),
        ("achieved req/s", N1, |x| num(x.0.achieved_rps())),
        ("202", N, |x| json!(x.0.answers.accepted)),
        ("other", N, |x| json!(x.0.answers.other_count())),
        ("timed out", N, |x| json!(x.0.answers.timed_out)),
        ("SQS calls", N, |x| json!(x.0.meter.calls)),
        ("messages", N, |x| json!(x.0.meter.entries)),
        ("events", N, |x| json!(x.0.meter.events)),
        ("billed (counted)", N, |x| json!(x.0.meter.billed)),
        ("billed per million events", N, |x| num(x.0.billed_per_million())),
        ("floor", N, |x| num(x.0.floor_per_million())),
        ("billed / floor", N2, |x| ratio(x.0.billed_per_million(), x.0.floor_per_million())),
        ("batcher flushes (logged)", N, |x| json!(x.0.flushes.flushes)),
        ("requests batched (logged)", N, |x| json!(x.0.flushes.requests)),
        ("DO requests (logged)", N, |x| json!(x.0.flushes.calls)),
        ("batcher active (s)", N2, |x| num(x.0.flushes.active_ms as f64 / 1e3)),
        ("Workers requests ($/M events)", N4, |x| num(x.0.bill().workers)),
        ("DO requests ($/M events)", N4, |x| num(x.0.bill().do_requests)),
        ("DO duration ($/M events)", N4, |x| num(x.0.bill().do_duration)),
        ("SQS sends ($/M events)", N4, |x| num(x.0.bill().sqs)),
        ("total ($/M events)", N4, |x| num(x.0.bill().total())),
        ("floor ($/M events)", N4, |x| num(x.0.floor_usd())),
        ("total / floor", N2, |x| ratio(x.0.bill().total(), x.0.floor_usd())),
        ("total / off's total", N2, |x| x.2.map_or(Value::Null, |o| ratio(x.0.bill().total(), o.bill().total()))),
        ("p50 (ms)", N1, |x| num(x.0.answers.p50_ms)),
        ("p99 (ms)", N1, |x| num(x.0.answers.p99_ms)),
        ("added p50 vs off (ms)", N1, |x| x.1.map_or(Value::Null, |o| num(x.0.answers.p50_ms - o.answers.p50_ms))),
        ("added p99 vs off (ms)", N1, |x| x.1.map_or(Value::Null, |o| num(x.0.answers.p99_ms - o.answers.p99_ms))),
    ];
    Table::of("figure-7", with_off, &cols)
}

/// Figure 8: the spill, SQS healthy and stalled.
fn spill_table(rows: &[SpillRow]) -> Table {
    #[rustfmt::skip] // A table: one column per line.
    let cols: [Col<&SpillRow>; 17] = [
        ("spill queue", TEXT, |r| {
            json!(if r.spill {
                "on (`SPILL_QUEUE`)"
            } else {
                "off (no binding)"
            })
        }),
        ("SQS stalled from (s)", N, |r| json!(r.stall.map(|s| s.0))),
        ("SQS stalled to (s)", N, |r| json!(r.stall.map(|s| s.1))),
        ("offered req/s", N, |_| json!(super::spill::RATE)),
        ("for (s)", N, |r| json!(r.secs)),
        ("requests", N, |r| json!(r.answers.requests)),
        ("202", N, |r| json!(r.answers.accepted)),
        ("other", N, |r| json!(r.answers.other_count())),
        ("timed out", N, |r| json!(r.answers.timed_out)),
        ("p50 (ms)", N1, |r| num(r.answers.p50_ms)),
        ("p99 (ms)", N1, |r| num(r.answers.p99_ms)),
        ("slowest 202 (ms)", N1, |r| num(r.answers.max_ms)),
        ("events spilled", N, |r| json!(r.spilled)),
        ("accepted stored", N, |r| json!(r.stored)),
        ("accepted missing", N, |r| json!(r.missing)),
        ("stored not accepted", N, |r| json!(r.stored_unaccepted)),
        ("all stored after (s)", N1, |r| r.stored_after_s.map_or(Value::Null, num)),
    ];
    Table::of("figure-8", rows, &cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cpu::Usage;

    fn wrk(name: &str, p50_ms: f64, cpu: Option<f64>) -> WrkRun {
        let seconds = |workerd_s| {
            GROUPS
                .iter()
                .map(move |g| (*g, if *g == "workerd" { workerd_s } else { 1.0 }))
        };
        WrkRun {
            name: name.into(),
            events: 1,
            rps: 100.0,
            p50_ms,
            p99_ms: 2.0 * p50_ms,
            requests: 1_000,
            non_2xx: 0,
            socket_errors: 0,
            command: "wrk".into(),
            cpu: cpu.map(|w| Usage {
                seconds: seconds(w).collect(),
                cores_busy: 1.5,
            }),
        }
    }

    #[test]
    fn the_cpu_table_gives_per_request_cpu_and_both_ceilings() {
        let t = cpu_table(
            &[
                wrk("GET /healthz", 10.0, Some(8.0)),
                wrk("POST", 40.0, None),
            ],
            2,
        );
        // 12 s of CPU over 1,000 requests: 12 ms each; 2 cores allow 2,000 / 12 = 167 req/s.
        assert_eq!(t.number(0, "CPU per request, all (ms)"), Some(12.0));
        assert_eq!(t.number(0, "workerd (ms)"), Some(8.0));
        let ceiling = t.number(0, "cores / CPU per request (req/s)");
        assert_eq!(ceiling.map(f64::round), Some(167.0));
        assert_eq!(t.number(0, "connections / p50 (req/s)"), Some(800.0));
        // Not measured is unknown, not zero; the connections' ceiling needs no CPU figure.
        assert_eq!(t.get(1, "workerd (ms)"), Some(&Value::Null));
        assert_eq!(t.number(1, "connections / p50 (req/s)"), Some(200.0));
        assert_eq!(t.columns[1].name, "cores busy (of 2)");
    }
}
