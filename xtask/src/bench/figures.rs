//! What a run measured, as the tables of `results.json` (and of BENCHMARKS.md): one function
//! per figure, each only arranging measured numbers (and ratios between them) into named
//! columns. Does not format them (`table.rs`) nor explain them (BENCHMARKS.md's prose).

use serde_json::{json, Value};

use super::batching::{BatchRow, Mode, RATES};
use super::burst::{RunResult, Scenario};
use super::cpu::GROUPS;
use super::experiment::ScenarioResult;
use super::table::{num, ratio, Table};
use super::workerd::{WrkRun, WRK_CONNECTIONS};
use super::{Opts, Results};

const N: Option<usize> = Some(0);
const N1: Option<usize> = Some(1);
const N2: Option<usize> = Some(2);
const TEXT: Option<usize> = None;

/// Every table of the run, in the order BENCHMARKS.md shows them (the checks come later, from
/// these: `checks.rs`).
pub(super) fn tables(r: &Results, opts: &Opts) -> Vec<Table> {
    let mut out = vec![run(r, opts), setup(r, opts), summary(r)];
    if !r.experiment.is_empty() {
        out.push(designs_summary(&r.experiment));
    }
    if let Some(e) = &r.edge {
        let mut t = Table::new(
            "figure-1",
            &[
                ("events per request", N),
                ("request body (B)", N),
                ("B/event", N),
                ("request path (ns/event)", N),
                ("floor (ns/event)", N),
                ("path / floor", N2),
                ("request path (ns/KiB)", N),
            ],
        );
        for &(n, path, floor, bytes) in &e.rows {
            t.push(vec![
                json!(n),
                json!(bytes),
                num(bytes as f64 / n as f64),
                num(path),
                num(floor),
                ratio(path, floor),
                num(path * n as f64 / (bytes as f64 / 1024.0)),
            ]);
        }
        out.push(t);
    }
    if let Some(w) = &r.wasm {
        let mut t = Table::new(
            "figure-2",
            &[
                ("worker", TEXT),
                ("index_bg.wasm (B)", N),
                ("gzip -9 (B)", N),
                ("index_bg.wasm / hello world", N2),
                ("gzip -9 / hello world", N2),
            ],
        );
        for (name, raw, gz) in [
            ("edge (`spillway-edge`)", w.edge_raw, w.edge_gz),
            (
                "hello world (`benches/hello-worker`)",
                w.hello_raw,
                w.hello_gz,
            ),
        ] {
            t.push(vec![
                json!(name),
                json!(raw),
                json!(gz),
                ratio(raw as f64, w.hello_raw as f64),
                ratio(gz as f64, w.hello_gz as f64),
            ]);
        }
        out.push(t);
    }
    if let Some(runs) = &r.workerd {
        out.push(wrk_table(runs));
        out.push(cpu_table(runs, super::cpu::cores()));
    }
    if let Some(c) = &r.sqs {
        let mut t = Table::new(
            "figure-4",
            &[
                ("events per request", N),
                ("SQS messages per request", N2),
                ("bytes per message", N),
                ("billed sends per million events", N),
                ("floor (bytes / 64 KiB, per million events)", N),
                ("sends / floor", N2),
                ("receives per million events", N),
                ("deletes per million events", N),
            ],
        );
        for x in c {
            t.push(vec![
                json!(x.events_per_request),
                num(x.messages_per_request),
                num(x.message_bytes),
                num(x.send_billed),
                num(x.floor),
                ratio(x.send_billed, x.floor),
                num(x.receive_billed),
                num(x.delete_billed),
            ]);
        }
        out.push(t);
    }
    if let Some(d) = &r.db {
        let mut t = Table::new(
            "figure-5",
            &[("write", TEXT), ("rows/s", N), ("vs COPY", N2)],
        );
        for (name, v) in [
            ("consumer: `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT (key_id, id) DO NOTHING` (PgStore)", d.unnest),
            ("binary `COPY events FROM STDIN` (no duplicate handling: the ceiling)", d.copy),
            ("`COPY` into a staging table + `INSERT ... ON CONFLICT DO NOTHING` (same semantics)", d.staging),
        ] {
            t.push(vec![json!(name), num(v), ratio(v, d.copy)]);
        }
        out.push(t);
    }
    for sc in &r.experiment {
        out.push(scenario_table(sc));
    }
    if !r.experiment.is_empty() {
        out.push(refusals(&r.experiment));
    }
    if let Some(rows) = &r.batching {
        out.push(batching_table(rows));
    }
    if let Some(rows) = &r.spill {
        out.push(spill_table(rows));
    }
    out
}

/// The run's metadata: when, at which commit, on what machine under what load, with what options.
fn run(r: &Results, opts: &Opts) -> Table {
    let m = &r.machine;
    let mut t = Table::new(
        "run",
        &[
            ("run", TEXT),
            ("date", TEXT),
            ("commit", TEXT),
            ("seconds", N),
            ("`nproc`", N),
            ("CPU (/proc/cpuinfo)", TEXT),
            ("RAM (GiB)", N1),
            ("kernel", TEXT),
            ("load average at the start (1, 5, 15 min)", TEXT),
            ("load average at the end", TEXT),
            ("local SQS", TEXT),
            (
                "its `SendMessageBatch` rate, 10 x 1 KiB, one client (messages/s)",
                N,
            ),
            ("options", TEXT),
        ],
    );
    t.transposed = true;
    let clients: Vec<String> = opts.burst_clients.iter().map(|c| c.to_string()).collect();
    let mut options = format!(
        "--sqs {} --burst-clients {} --steady-secs {} --steady-rate {} --wrk-secs {}",
        opts.sqs,
        clients.join(","),
        opts.steady_secs,
        opts.steady_rate,
        opts.wrk_secs
    );
    if let Some(only) = &opts.only {
        options += &format!(" --only {}", only.join(","));
    }
    t.push(vec![
        json!(if opts.only.is_some() {
            "partial"
        } else {
            "full"
        }),
        json!(m.date),
        json!(m.commit),
        num(r.seconds),
        json!(m.nproc),
        json!(m.cpu),
        num(m.ram_gib),
        json!(m.kernel),
        json!(m.load),
        json!(r.load_end),
        r.sqs_server.map_or(Value::Null, |k| json!(k.to_string())),
        r.sqs_rate
            .as_ref()
            .map_or(Value::Null, |x| num(x.messages_per_s)),
        json!(options),
    ]);
    t
}

/// The rig's settings the figures depend on (the code's constants and this run's options),
/// so that the hand-written prose needs to state none of them.
fn setup(r: &Results, opts: &Opts) -> Table {
    use super::designs::{
        pgbouncer_version, LAMBDA_CONCURRENCY, PGBOUNCER_POOL, PGBOUNCER_QUERY_WAIT_S,
    };
    let mut t = Table::new(
        "setup",
        &[("figure", TEXT), ("setting", TEXT), ("value", TEXT)],
    );
    let pgbouncer = pgbouncer_version().map_or(Value::Null, |v| json!(v));
    let rows: Vec<(&str, &str, Value)> = vec![
        (
            "1",
            "command",
            r.edge.as_ref().map_or(Value::Null, |e| json!(e.command)),
        ),
        ("3", "`wrk` connections", json!(WRK_CONNECTIONS)),
        ("3", "seconds per `wrk` run", json!(opts.wrk_secs)),
        (
            "4, 7",
            "SQS billing unit (bytes of message bodies per billed request)",
            json!(super::SQS_BILLING_CHUNK),
        ),
        (
            "4",
            "consumer `BATCH_SIZE` (messages per receive)",
            json!(super::CONSUMER_BATCH_SIZE),
        ),
        (
            "5",
            "command",
            r.db.as_ref().map_or(Value::Null, |d| json!(d.command)),
        ),
        (
            "5",
            "rows written each way",
            r.db.as_ref().map_or(Value::Null, |d| json!(d.rows)),
        ),
        (
            "6",
            "PostgreSQL `max_connections`",
            json!(super::BURST_MAX_CONNECTIONS),
        ),
        (
            "6",
            "events per request",
            json!(super::BURST_EVENTS_PER_REQUEST),
        ),
        (
            "6",
            "client timeout per attempt (s)",
            json!(super::burst::ATTEMPT_TIMEOUT.as_secs()),
        ),
        (
            "6",
            "poller `WAIT_TIME_SECONDS`",
            json!(super::experiment::POLL_WAIT_S),
        ),
        (
            "6",
            "synchronous handler's concurrency limit",
            json!(LAMBDA_CONCURRENCY),
        ),
        ("6", "PgBouncer version", pgbouncer),
        (
            "6",
            "PgBouncer server connections (`default_pool_size`)",
            json!(PGBOUNCER_POOL),
        ),
        (
            "6",
            "PgBouncer `query_wait_timeout` (s)",
            json!(PGBOUNCER_QUERY_WAIT_S),
        ),
        (
            "7, 8",
            "client timeout per request (s)",
            json!(super::batching::TIMEOUT.as_secs()),
        ),
        (
            "8",
            "edge `SQS_DEADLINE_MS`",
            json!(super::spill::DEADLINE_MS),
        ),
    ];
    for (figure, setting, value) in rows {
        t.push(vec![json!(figure), json!(setting), value]);
    }
    t
}

/// Each figure's headline against its reference measured in the same run.
fn summary(r: &Results) -> Table {
    let mut t = Table::new(
        "summary",
        &[
            ("#", N),
            ("figure", TEXT),
            ("unit", TEXT),
            ("Spillway", N1),
            ("reference (same run)", TEXT),
            ("reference", N1),
            ("Spillway / reference", N2),
        ],
    );
    let mut row = |n: u32, what: String, unit: &str, v: f64, reference: &str, rv: f64| {
        t.push(vec![
            json!(n),
            json!(what),
            json!(unit),
            num(v),
            json!(reference),
            num(rv),
            ratio(v, rv),
        ]);
    };
    for &(n, path, floor, _) in r.edge.iter().flat_map(|e| &e.rows) {
        let what = format!("edge request path, {n}-event requests");
        row(
            1,
            what,
            "ns/event",
            path,
            "serde_json parse + serialise",
            floor,
        );
    }
    if let Some(w) = &r.wasm {
        let hello = "`worker` hello world";
        row(
            2,
            "release worker, gzip -9".into(),
            "B",
            w.edge_gz as f64,
            hello,
            w.hello_gz as f64,
        );
    }
    if let Some([h, posts @ ..]) = r.workerd.as_deref() {
        for p in posts {
            let what = format!("{} under `wrangler dev`", p.name);
            row(
                3,
                format!("{what}: throughput"),
                "req/s",
                p.rps,
                "GET /healthz",
                h.rps,
            );
            row(
                3,
                format!("{what}: p99"),
                "ms",
                p.p99_ms,
                "GET /healthz",
                h.p99_ms,
            );
        }
    }
    for x in r.sqs.iter().flatten() {
        let what = format!("billed SQS sends, {}-event requests", x.events_per_request);
        row(
            4,
            what,
            "per million events",
            x.send_billed,
            "payload bytes / 64 KiB",
            x.floor,
        );
    }
    if let Some(d) = &r.db {
        let what = format!("consumer bulk write (UNNEST), batches of {}", d.batch);
        row(5, what, "rows/s", d.unnest, "binary COPY", d.copy);
    }
    // The middle rate: high enough for a batch to form, within what the local edge serves.
    for b in r
        .batching
        .iter()
        .flatten()
        .filter(|b| b.offered_rps == RATES[1].0)
    {
        let what = format!(
            "group commit {}, 1-event requests at {} req/s: billed SQS sends",
            b.mode.label(),
            b.offered_rps
        );
        row(
            7,
            what,
            "per million events",
            b.billed_per_million(),
            "payload bytes / 64 KiB",
            b.floor_per_million(),
        );
    }
    t
}

fn wrk_table(runs: &[WrkRun]) -> Table {
    let mut t = Table::new(
        "figure-3",
        &[
            ("request", TEXT),
            ("command", TEXT),
            ("requests/s", N),
            ("events/s", N),
            ("p50 (ms)", N2),
            ("p99 (ms)", N2),
            ("requests", N),
            ("non-2xx", N),
            ("socket errors", N),
            ("req/s vs /healthz", N2),
        ],
    );
    let h_rps = runs.first().map_or(0.0, |h| h.rps);
    for p in runs {
        t.push(vec![
            json!(p.name),
            json!(format!("`{}`", p.command)),
            num(p.rps),
            num(p.rps * p.events as f64),
            num(p.p50_ms),
            num(p.p99_ms),
            json!(p.requests),
            json!(p.non_2xx),
            json!(p.socket_errors),
            ratio(p.rps, h_rps),
        ]);
    }
    t
}

/// Figure 3's CPU: per request, what each group of processes used, and the two ceilings on
/// requests/s that follow: the cores all busy, and the connections each waiting its p50.
pub(super) fn cpu_table(runs: &[WrkRun], cores: usize) -> Table {
    let busy = format!("cores busy (of {cores})");
    let mut cols: Vec<(String, Option<usize>)> = vec![
        ("request".into(), TEXT),
        (busy, N2),
        ("CPU per request, all (ms)".into(), N2),
    ];
    cols.extend(GROUPS.iter().map(|g| (format!("{g} (ms)"), N2)));
    cols.push((format!("{cores} cores / CPU per request (req/s)"), N));
    cols.push((format!("{WRK_CONNECTIONS} connections / p50 (req/s)"), N));
    let names: Vec<(&str, Option<usize>)> = cols.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    let mut t = Table::new("figure-3-cpu", &names);
    for r in runs {
        let per_request = |s: f64| {
            if r.requests == 0 {
                Value::Null
            } else {
                num(s * 1000.0 / r.requests as f64)
            }
        };
        let mut row = vec![json!(r.name)];
        match &r.cpu {
            Some(u) => {
                let all: f64 = u.seconds.iter().map(|(_, s)| s).sum();
                row.push(num(u.cores_busy));
                row.push(per_request(all));
                row.extend(GROUPS.iter().map(|g| per_request(u.seconds_of(g))));
                row.push(match per_request(all).as_f64() {
                    Some(ms) => ratio(cores as f64 * 1000.0, ms),
                    None => Value::Null,
                });
            }
            None => row.extend((0..GROUPS.len() + 3).map(|_| Value::Null)),
        }
        row.push(ratio(WRK_CONNECTIONS as f64 * 1000.0, r.p50_ms));
        t.push(row);
    }
    t
}

fn refused_count(r: &RunResult) -> usize {
    r.refused.values().sum()
}

/// Figure 6, one scenario: a column per design (shown transposed), a row per figure.
pub(super) fn scenario_table(sc: &ScenarioResult) -> Table {
    let steady = matches!(sc.scenario, Scenario::Steady { .. });
    let retry = matches!(sc.scenario, Scenario::Steady { retry: true, .. });
    let mut cols = vec![
        ("", TEXT),
        ("`max_connections` (as the server reported it)", N),
        ("requests sent", N),
        ("events sent", N),
        ("accepted (2xx) requests", N),
        ("accepted (2xx) events", N),
        ("refused, by final answer", N),
        ("of which timed out (30 s)", N),
    ];
    if retry {
        cols.push(("retries (attempts after the first)", N));
    }
    cols.extend([
        ("**events lost** (2xx, never stored)", N),
        ("events stored although refused", N),
        ("rows in the table at the end", N),
        ("**peak PostgreSQL connections**", N),
        ("failed samples", N),
        ("p50 accept latency (ms)", N),
        ("**p99 accept latency** (ms)", N),
    ]);
    if steady {
        cols.extend([
            ("p99 accept latency, sent while PostgreSQL was up (ms)", N),
            ("p99 accept latency, sent while PostgreSQL was down (ms)", N),
            ("PostgreSQL stopped at (s)", N1),
            ("PostgreSQL started at (s)", N1),
        ]);
    }
    cols.extend([
        ("last client answered at (s)", N1),
        ("**table held every accepted event at** (s)", N1),
        ("DLQ at the end", N),
        ("load average before the run", TEXT),
        ("load average after the run", TEXT),
    ]);
    let mut t = Table::new(format!("figure-6-{}", sc.scenario.key()), &cols);
    t.transposed = true;
    for (_, r) in &sc.runs {
        let opt = |v: Option<f64>| v.map_or(Value::Null, num);
        let mut row = vec![
            json!(r.design),
            r.max_connections
                .parse::<u64>()
                .map_or_else(|_| json!(r.max_connections), |v| json!(v)),
            json!(r.requests),
            json!(r.events_sent),
            json!(r.accepted_requests),
            json!(r.accepted_events),
            json!(refused_count(r)),
            json!(r.timed_out),
        ];
        if retry {
            row.push(json!(r.retries));
        }
        row.extend([
            json!(r.lost),
            json!(r.stored_refused),
            json!(r.rows_end),
            json!(r.peak_connections),
            json!(r.failed_samples),
            num(r.p50_ms),
            num(r.p99_ms),
        ]);
        if steady {
            row.extend([
                opt(r.p99_up_ms),
                opt(r.p99_down_ms),
                opt(r.outage.map(|o| o.0)),
                opt(r.outage.map(|o| o.1)),
            ]);
        }
        row.extend([
            num(r.clients_done_s),
            opt(r.complete_s),
            json!(r.dlq_end),
            json!(r.load.0),
            json!(r.load.1),
        ]);
        t.push(row);
    }
    t
}

/// Figure 6 at a glance: every scenario and design, the figures the summary compares.
fn designs_summary(results: &[ScenarioResult]) -> Table {
    let mut t = Table::new(
        "summary-6",
        &[
            ("scenario", TEXT),
            ("design", TEXT),
            ("accepted requests", N),
            ("requests", N),
            ("refused", N),
            ("events lost", N),
            ("peak connections", N),
            ("p99 accept (ms)", N),
            ("table complete at (s)", N1),
        ],
    );
    for sc in results {
        for (_, r) in &sc.runs {
            t.push(vec![
                json!(sc.scenario.key()),
                json!(r.design),
                json!(r.accepted_requests),
                json!(r.requests),
                json!(refused_count(r)),
                json!(r.lost),
                json!(r.peak_connections),
                num(r.p99_ms),
                r.complete_s.map_or(Value::Null, num),
            ]);
        }
    }
    t
}

/// Figure 6's refusals with the start of their bodies (which say who refused), commonest first.
fn refusals(results: &[ScenarioResult]) -> Table {
    let mut t = Table::new(
        "figure-6-refusals",
        &[
            ("scenario", TEXT),
            ("design", TEXT),
            ("answer (start of its body)", TEXT),
            ("requests", N),
        ],
    );
    for sc in results {
        for (_, r) in &sc.runs {
            let mut texts: Vec<(&String, &usize)> = r.refusal_texts.iter().collect();
            texts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (text, n) in texts {
                t.push(vec![
                    json!(sc.scenario.key()),
                    json!(r.design),
                    json!(text),
                    json!(n),
                ]);
            }
        }
    }
    t
}

/// Figure 7: group commit off and on per offered rate, as the meter counted it.
fn batching_table(rows: &[BatchRow]) -> Table {
    let mut t = Table::new(
        "figure-7",
        &[
            ("batching", TEXT),
            ("offered req/s", N),
            ("for (s)", N),
            ("achieved req/s", N1),
            ("202", N),
            ("other", N),
            ("timed out", N),
            ("SQS calls", N),
            ("messages", N),
            ("events", N),
            ("billed (counted)", N),
            ("billed per million events", N),
            ("floor", N),
            ("billed / floor", N2),
            ("p50 (ms)", N1),
            ("p99 (ms)", N1),
            ("added p50 vs off (ms)", N1),
            ("added p99 vs off (ms)", N1),
        ],
    );
    for row in rows {
        // Latency added by batching, only where both modes kept up with the offered rate.
        let off = rows
            .iter()
            .find(|o| o.mode == Mode::Off && o.offered_rps == row.offered_rps)
            .filter(|o| row.mode == Mode::On && o.kept_up() && row.kept_up());
        t.push(vec![
            json!(row.mode.label()),
            json!(row.offered_rps),
            json!(row.secs),
            num(row.achieved_rps),
            json!(row.accepted),
            json!(row.other_count()),
            json!(row.timed_out),
            json!(row.meter.calls),
            json!(row.meter.entries),
            json!(row.meter.events),
            json!(row.meter.billed),
            num(row.billed_per_million()),
            num(row.floor_per_million()),
            ratio(row.billed_per_million(), row.floor_per_million()),
            num(row.p50_ms),
            num(row.p99_ms),
            off.map_or(Value::Null, |o| num(row.p50_ms - o.p50_ms)),
            off.map_or(Value::Null, |o| num(row.p99_ms - o.p99_ms)),
        ]);
    }
    t
}

/// Figure 8: the spill, SQS healthy and stalled.
fn spill_table(rows: &[super::spill::SpillRow]) -> Table {
    let mut t = Table::new(
        "figure-8",
        &[
            ("spill queue", TEXT),
            ("SQS stalled from (s)", N),
            ("SQS stalled to (s)", N),
            ("offered req/s", N),
            ("for (s)", N),
            ("requests", N),
            ("202", N),
            ("other", N),
            ("timed out", N),
            ("p50 (ms)", N1),
            ("p99 (ms)", N1),
            ("slowest 202 (ms)", N1),
            ("events spilled", N),
            ("accepted stored", N),
            ("accepted missing", N),
            ("stored not accepted", N),
            ("all stored after (s)", N1),
        ],
    );
    for r in rows {
        t.push(vec![
            json!(if r.spill {
                "on (`SPILL_QUEUE`)"
            } else {
                "off (no binding)"
            }),
            json!(r.stall.map(|s| s.0)),
            json!(r.stall.map(|s| s.1)),
            json!(super::spill::RATE),
            json!(r.secs),
            json!(r.requests),
            json!(r.accepted),
            json!(r.other.values().sum::<usize>()),
            json!(r.timed_out),
            num(r.p50_ms),
            num(r.p99_ms),
            num(r.max_ms),
            json!(r.spilled),
            json!(r.stored),
            json!(r.missing),
            json!(r.stored_unaccepted),
            r.stored_after_s.map_or(Value::Null, num),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cpu::Usage;

    fn wrk(name: &str, p50_ms: f64, cpu: Option<f64>) -> WrkRun {
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
            cpu: cpu.map(|workerd_s| Usage {
                seconds: GROUPS
                    .iter()
                    .map(|g| (*g, if *g == "workerd" { workerd_s } else { 1.0 }))
                    .collect(),
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
        assert_eq!(
            t.number(0, "2 cores / CPU per request (req/s)")
                .map(f64::round),
            Some(167.0)
        );
        assert_eq!(t.number(0, "8 connections / p50 (req/s)"), Some(800.0));
        // Not measured is unknown, not zero; the connections' ceiling needs no CPU figure.
        assert_eq!(t.get(1, "workerd (ms)"), Some(&Value::Null));
        assert_eq!(t.number(1, "8 connections / p50 (req/s)"), Some(200.0));
    }
}
