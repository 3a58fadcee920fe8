//! Figure 9's tables: the two buffers side by side (the edge under `wrk`, the largest burst,
//! the bill per million events) and the price table the bill is computed from. Arranges what
//! `buffers.rs` measured; says nothing about it (the prose is BENCHMARKS.md's).

use serde_json::json;

use super::buffers::{Design, Metered, GROUP_WINDOW_MS};
use super::burst::{RunResult, Scenario};
use super::cost::{bill, Bill, Billing};
use super::experiment::ScenarioResult;
use super::figures::{cpu_table, scenario_table};
use super::table::{num, ratio, Col, Table};
use super::workerd::WrkRun;
use super::Results;
use crate::prices::{Price, PRICES};

const N: Option<usize> = Some(0);
const N2: Option<usize> = Some(2);
const N4: Option<usize> = Some(4);
const TEXT: Option<usize> = None;

pub(super) fn tables(r: &Results) -> Vec<Table> {
    let mut out = Vec::new();
    let kinesis = r.kinesis.as_ref();
    let sqs_wrk = r.workerd.as_deref().unwrap_or_default();
    let kinesis_wrk = kinesis.map_or(&[][..], |k| &k.wrk[..]);
    if !kinesis_wrk.is_empty() {
        out.push(edge_table(sqs_wrk, kinesis_wrk));
        // Where the CPU went with Kinesis (figure 3's table is SQS's).
        let mut cpu = cpu_table(kinesis_wrk, super::cpu::cores());
        cpu.key = "figure-9-edge-cpu".into();
        out.push(cpu);
    }
    if let Some(k) = kinesis.and_then(|k| k.burst.as_ref()) {
        out.push(burst_table(sqs_burst(r, k), k));
    }
    let metered: Vec<&Metered> = r
        .sqs_metered
        .iter()
        .flatten()
        .chain(kinesis.iter().flat_map(|k| &k.metered))
        .collect();
    if !metered.is_empty() {
        out.push(cost_table(&metered));
        out.push(prices_table());
    }
    out
}

/// Figure 3's rows of each pipeline, each against its own `/healthz`.
fn edge_table(sqs: &[WrkRun], kinesis: &[WrkRun]) -> Table {
    let mut rows: Vec<(&str, String, &WrkRun, f64)> = Vec::new();
    let sides = [
        ("SQS", format!("on ({GROUP_WINDOW_MS} ms, default)"), sqs),
        ("Kinesis", "off (default)".to_owned(), kinesis),
    ];
    for (buffer, mode, runs) in sides {
        let healthz = runs.first().map_or(f64::NAN, |h| h.rps);
        // Figure 3 also measures the SQS Worker restarted with group commit off: that row is
        // labelled by what it ran, not by the pipeline's default.
        rows.extend(runs.iter().map(|r| {
            let mode = if r.name.ends_with("group commit off") {
                "off (BATCH_WINDOW_MS=0)".to_owned()
            } else {
                mode.clone()
            };
            (buffer, mode, r, healthz)
        }));
    }
    #[rustfmt::skip] // A table: one column per line.
    let cols: [Col<(&str, String, &WrkRun, f64)>; 10] = [
        ("buffer", TEXT, |x| json!(x.0)),
        ("group commit", TEXT, |x| json!(x.1)),
        ("request", TEXT, |x| json!(x.2.name)),
        ("requests/s", N, |x| num(x.2.rps)),
        ("events/s", N, |x| num(x.2.rps * x.2.events as f64)),
        ("p50 (ms)", N2, |x| num(x.2.p50_ms)),
        ("p99 (ms)", N2, |x| num(x.2.p99_ms)),
        ("non-2xx", N, |x| json!(x.2.non_2xx)),
        ("socket errors", N, |x| json!(x.2.socket_errors)),
        ("req/s vs its /healthz", N2, |x| ratio(x.2.rps, x.3)),
    ];
    Table::of("figure-9-edge", rows, &cols)
}

/// Figure 6's Spillway run of the same burst, when it was measured.
fn sqs_burst(r: &Results, kinesis: &RunResult) -> Option<RunResult> {
    let clients = kinesis.requests;
    r.experiment
        .iter()
        .find(|sc| sc.scenario == Scenario::Burst { clients })
        .and_then(|sc| sc.runs.first().cloned())
        .map(|mut run| {
            run.design = "Spillway, SQS".into();
            run
        })
}

fn burst_table(sqs: Option<RunResult>, kinesis: &RunResult) -> Table {
    let sc = ScenarioResult {
        scenario: Scenario::Burst {
            clients: kinesis.requests,
        },
        runs: sqs.into_iter().chain([kinesis.clone()]).collect(),
    };
    let mut t = scenario_table(&sc);
    t.key = "figure-9-burst".into();
    t
}

/// A metered run billed each way its buffer can be.
fn bills(m: &Metered) -> Vec<(&Metered, Bill)> {
    let billings: &[Billing] = match m.design {
        Design::SqsDirect | Design::SqsGroup => &[Billing::Sqs],
        Design::KinesisDirect | Design::KinesisGroup => {
            &[Billing::KinesisOnDemand, Billing::KinesisProvisioned]
        }
    };
    billings
        .iter()
        .map(|&b| (m, bill(&m.meter, m.events_per_request, &m.flushes, b)))
        .collect()
}

fn cost_table(metered: &[&Metered]) -> Table {
    let mut rows: Vec<(&Metered, Bill)> = metered.iter().flat_map(|m| bills(m)).collect();
    rows.sort_by_key(|(m, _)| m.events_per_request);
    #[rustfmt::skip] // A table: one column per line.
    let cols: [Col<(&Metered, Bill)>; 18] = [
        ("events per request", N, |x| json!(x.0.events_per_request)),
        ("design", TEXT, |x| json!(x.0.design.label())),
        ("billed as", TEXT, |x| json!(x.1.billing.label())),
        ("offered req/s x s", TEXT, |x| json!(format!("{} x {}", x.0.rate, x.0.secs))),
        ("accepted", N, |x| json!(x.0.answers.accepted)),
        ("events counted at the buffer", N, |x| json!(x.0.meter.events)),
        ("events per message or record", N2, |x| ratio(x.0.meter.events as f64, x.0.meter.entries as f64)),
        ("buffer units per million events", N, |x| num(x.1.units)),
        ("unit", TEXT, |x| json!(x.1.unit)),
        ("Workers requests ($)", N4, |x| num(x.1.workers)),
        ("Durable Object requests ($)", N4, |x| num(x.1.durable_objects)),
        ("Durable Object duration ($)", N4, |x| num(x.1.do_duration)),
        ("buffer writes ($)", N4, |x| num(x.1.buffer_in)),
        ("buffer reads ($)", N4, |x| num(x.1.buffer_out)),
        ("retention past 24 h ($)", N4, |x| num(x.1.retention)),
        ("Lambda invocations ($)", N4, |x| num(x.1.lambda)),
        ("**total per million events** ($)", N4, |x| num(x.1.total())),
        ("plus per month ($)", N2, |x| num(x.1.per_month)),
    ];
    Table::of("figure-9-cost", rows, &cols)
}

/// The price table itself, so the figure shows what it multiplied by.
fn prices_table() -> Table {
    #[rustfmt::skip] // A table: one column per line.
    let cols: [Col<&Price>; 6] = [
        ("service", TEXT, |p| json!(p.service)),
        ("unit", TEXT, |p| json!(p.unit)),
        ("USD", TEXT, |p| json!(format!("{}", p.usd))),
        ("free or included", TEXT, |p| json!(p.free)),
        ("source", TEXT, |p| json!(p.source)),
        ("read", TEXT, |p| json!(p.read)),
    ];
    Table::of("prices", PRICES, &cols)
}

/// The summary's figure-9 rows: Kinesis against SQS, each from the same run.
pub(super) fn summary_rows(r: &Results) -> Vec<(String, &'static str, f64, &'static str, f64)> {
    let mut rows = Vec::new();
    if let (Some(sqs), Some(k)) = (r.workerd.as_deref(), r.kinesis.as_ref()) {
        for (s, kin) in sqs.iter().zip(&k.wrk).skip(1) {
            let what = format!("{} under `wrangler dev` with Kinesis: throughput", kin.name);
            rows.push((what, "req/s", kin.rps, "the same with SQS", s.rps));
        }
    }
    let metered: Vec<&Metered> = r
        .sqs_metered
        .iter()
        .flatten()
        .chain(r.kinesis.iter().flat_map(|k| &k.metered))
        .collect();
    for &(n, ..) in &super::buffers::LOADS {
        let find = |d: Design, b: Billing| {
            metered
                .iter()
                .find(|m| m.design == d && m.events_per_request == n)
                // Per billion: the summary shows whole numbers.
                .map(|m| bill(&m.meter, n, &m.flushes, b).total() * 1_000.0)
        };
        let Some(sqs) = find(Design::SqsDirect, Billing::Sqs) else {
            continue;
        };
        for (d, b) in [
            (Design::SqsGroup, Billing::Sqs),
            (Design::KinesisDirect, Billing::KinesisOnDemand),
            (Design::KinesisDirect, Billing::KinesisProvisioned),
        ] {
            if let Some(v) = find(d, b) {
                let what = format!(
                    "{n}-event requests, {} billed as {}: cost before monthly parts",
                    d.label(),
                    b.label()
                );
                rows.push((what, "USD per billion events", v, "SQS, direct", sqs));
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn the_price_table_lists_every_price_with_its_source() {
        let t = prices_table();
        assert_eq!(t.rows.len(), PRICES.len());
        assert!(t
            .rows
            .iter()
            .all(|r| r[4] != Value::Null && r[4] != json!("")));
    }

    #[test]
    fn figure_3s_group_commit_off_row_is_labelled_off() {
        let run = |name: &str| WrkRun {
            name: name.to_owned(),
            events: 1,
            rps: 100.0,
            p50_ms: 1.0,
            p99_ms: 2.0,
            requests: 800,
            non_2xx: 0,
            socket_errors: 0,
            command: String::new(),
            cpu: None,
        };
        let sqs = [
            run("GET /healthz"),
            run("POST 1 event (512 B)"),
            run("POST 1 event (512 B), group commit off"),
        ];
        let t = edge_table(&sqs, &[run("GET /healthz")]);
        let modes: Vec<&str> = t.rows.iter().map(|r| r[1].as_str().unwrap_or("")).collect();
        assert_eq!(
            modes,
            [
                format!("on ({GROUP_WINDOW_MS} ms, default)").as_str(),
                format!("on ({GROUP_WINDOW_MS} ms, default)").as_str(),
                "off (BATCH_WINDOW_MS=0)",
                "off (default)",
            ]
        );
    }
}
