//! The checks BENCHMARKS.md keeps, computed from a run's tables (so from `results.json`, not
//! from the measurement structs): each compares one measured number with its bound and says
//! whether it holds. Figure 2's are the size bar, figure 6's issue 12's criteria, figure 8's issue 15's, figure 9's
//! issue 27's, the planner's (`planned.rs`) issue 28's. Says nothing
//! about why a check failed: that is for whoever reads the tables.

use serde_json::{json, Value};

use super::table::{Col, Table};

/// The consumer's default `MAXIMUM_CONCURRENCY`: Spillway's connection budget.
const SPILLWAY_CONNECTIONS: f64 = 2.0;
/// The Kinesis consumer's connection bound: the local stream's shards (4, the `Stack`'s
/// default) x the mapping's `ParallelizationFactor` (1), one connection per concurrent batch.
const KINESIS_CONNECTIONS: f64 = 4.0;
/// The gzipped size bar of a deployable Worker (`--max-gzip 614400` in wrangler.toml).
const MAX_GZIP: f64 = 614_400.0;
/// How much slower Spillway may accept while PostgreSQL is down than while it is up.
const DOWN_VS_UP: f64 = 1.5;
const AT_MOST: bool = true;
const AT_LEAST: bool = false;

/// One check: what, the number measured, whether it must be at most (or at least) the bound,
/// and the bound. Either number unknown: the check does not hold.
type Check = (String, Option<f64>, bool, Option<f64>);

/// Figure 6's checks of one scenario's table: Spillway refuses nothing, loses nothing, holds at
/// most its connection budget and accepts as fast while PostgreSQL is down; from 1,000 clients
/// on, PostgreSQL refuses connections to the direct design (which answers 502).
fn figure_6(scenario: &str, t: &Table) -> Vec<Check> {
    let Some(sp) = t.find("", "Spillway") else {
        return Vec::new();
    };
    let what = |s: &str| format!("{scenario}: Spillway {s}");
    let budget = ("`MAXIMUM_CONCURRENCY`", SPILLWAY_CONNECTIONS);
    let mut out = refused_lost_peak(t, sp, what, budget);
    if let Some(up) = t.get(sp, "p99 accept latency, sent while PostgreSQL was up (ms)") {
        let down = t.number(
            sp,
            "p99 accept latency, sent while PostgreSQL was down (ms)",
        );
        let s = what(&format!(
            "accept p99 (ms) while PostgreSQL was down, vs {DOWN_VS_UP} x up"
        ));
        out.push((s, down, AT_MOST, up.as_f64().map(|up| DOWN_VS_UP * up)));
    }
    let clients = scenario.strip_prefix("burst-").and_then(|n| n.parse().ok());
    let direct = t.find("", "Synchronous, direct");
    if let Some(d) = direct.filter(|_| clients >= Some(1000_u64)) {
        let n502 = t
            .get(d, "refused, by answer")
            .and_then(|m| m["502"].as_f64());
        let s = format!("{scenario}: the direct design ran out of connections (answered 502)");
        out.push((s, Some(n502.unwrap_or(0.0)), AT_LEAST, Some(1.0)));
    }
    out
}

/// Figure 2's checks: each deployable Worker build within the size bar its build command
/// enforces (`--max-gzip` in wrangler.toml).
fn figure_2(t: &Table) -> Vec<Check> {
    (0..t.rows.len())
        .filter_map(|r| {
            let name = t.get(r, "worker").and_then(Value::as_str)?;
            name.starts_with("edge").then(|| {
                let what = format!("{name}: gzip -9 (B), vs the 600 KiB bar");
                (what, t.number(r, "gzip -9 (B)"), AT_MOST, Some(MAX_GZIP))
            })
        })
        .collect()
}

/// Figure 8's checks: the spill unused while SQS is healthy; through the stall every request
/// accepted within the edge's deadline, and every accepted event stored, once.
fn figure_8(t: &Table) -> Vec<Check> {
    let mut out: Vec<Check> = Vec::new();
    for r in 0..t.rows.len() {
        let n = |column| t.number(r, column);
        let spill = t.get(r, "spill queue").and_then(Value::as_str);
        let (zero, deadline) = (Some(0.0), Some(super::spill::DEADLINE_MS as f64));
        #[rustfmt::skip] // A table: one check per line.
        let phase: Vec<(&str, Option<f64>, bool, Option<f64>)> = if n("SQS stalled from (s)").is_some() {
            vec![
                ("SQS stalled: requests answered 202, of all sent", n("202"), AT_LEAST, n("requests")),
                ("SQS stalled: slowest 202 (ms), vs `SQS_DEADLINE_MS`", n("slowest 202 (ms)"), AT_MOST, deadline),
                ("SQS stalled: accepted events never stored", n("accepted missing"), AT_MOST, zero),
                ("SQS stalled: events stored although not accepted", n("stored not accepted"), AT_MOST, zero),
            ]
        } else if spill.is_some_and(|s| s.starts_with("on")) {
            vec![("SQS healthy: events spilled", n("events spilled"), AT_MOST, zero)]
        } else {
            Vec::new()
        };
        for (s, measured, rule, bound) in phase {
            out.push((s.to_owned(), measured, rule, bound));
        }
    }
    out
}

/// Figure 9's checks of the burst with Kinesis: as figure 6's for Spillway, against the
/// stream's connection bound.
fn figure_9(t: &Table) -> Vec<Check> {
    let Some(k) = t.find("", "Spillway, Kinesis") else {
        return Vec::new();
    };
    let what = |s: &str| format!("Kinesis burst: Spillway {s}");
    let budget = ("shards x `ParallelizationFactor`", KINESIS_CONNECTIONS);
    refused_lost_peak(t, k, what, budget)
}

/// The planner's checks (issue 28): each prediction within `planned::WITHIN` of what the
/// same run measured, either way.
fn planned(t: &Table) -> Vec<(&str, Check)> {
    (0..t.rows.len())
        .filter_map(|r| {
            let text = |column| t.get(r, column).and_then(Value::as_str);
            let (figure, what) = (text("figure")?, text("what")?);
            let off = t.number(r, "planner off by (%)").map(f64::abs);
            let s = format!("planner within 20 % of measured: {what} (% off, either way)");
            let bound = Some(super::planned::WITHIN * 100.0);
            Some((figure, (s, off, AT_MOST, bound)))
        })
        .collect()
}

/// A Spillway run (row `r` of a figure-6-shaped table) refuses nothing, loses nothing and holds
/// at most its connection budget (`budget`: its name and size).
fn refused_lost_peak(
    t: &Table,
    r: usize,
    what: impl Fn(&str) -> String,
    budget: (&str, f64),
) -> Vec<Check> {
    let mut out: Vec<Check> = [
        ("requests refused", "refused, by final answer"),
        ("events lost", "**events lost** (2xx, never stored)"),
    ]
    .map(|(s, column)| (what(s), t.number(r, column), AT_MOST, Some(0.0)))
    .into();
    let peak = t.number(r, "**peak PostgreSQL connections**");
    let name = what(&format!("peak PostgreSQL connections ({})", budget.0));
    out.push((name, peak, AT_MOST, Some(budget.1)));
    out
}

/// The checks table of `tables`.
pub(super) fn checks(tables: &[Table]) -> Table {
    let mut list: Vec<(&str, Check)> = Vec::new();
    for t in tables {
        if t.key == "figure-2" {
            list.extend(figure_2(t).into_iter().map(|c| ("2", c)));
        } else if let Some(scenario) = t.key.strip_prefix("figure-6-") {
            list.extend(figure_6(scenario, t).into_iter().map(|c| ("6", c)));
        } else if t.key == "figure-8" {
            list.extend(figure_8(t).into_iter().map(|c| ("8", c)));
        } else if t.key == "figure-9-burst" {
            list.extend(figure_9(t).into_iter().map(|c| ("9", c)));
        } else if t.key == "planned" {
            list.extend(planned(t));
        }
    }
    let cols: [Col<(&str, Check)>; 6] = [
        ("figure", None, |c| json!(c.0)),
        ("check", None, |c| json!(c.1 .0)),
        ("measured", Some(0), |c| json!(c.1 .1)),
        ("rule", None, |c| {
            json!(if c.1 .2 { "at most" } else { "at least" })
        }),
        ("bound", Some(0), |c| json!(c.1 .3)),
        ("holds", None, |c| json!(holds(&c.1))),
    ];
    Table::of("checks", list, &cols)
}

fn holds(&(_, measured, at_most, bound): &Check) -> bool {
    match (measured, bound) {
        (Some(m), Some(b)) => (at_most && m <= b) || (!at_most && m >= b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::burst::{RunResult, Scenario};
    use crate::bench::experiment::ScenarioResult;
    use crate::bench::figures::scenario_table;

    fn run(design: &str) -> RunResult {
        let (p99_up_ms, p99_down_ms, peak_connections) = (Some(100.0), Some(140.0), Some(2));
        let design = design.into();
        RunResult {
            design,
            peak_connections,
            p99_up_ms,
            p99_down_ms,
            ..RunResult::default()
        }
    }

    /// How many checks, and those that failed, of a scenario of Spillway and the direct design
    /// (`n502` of whose requests were answered 502).
    fn failed(scenario: Scenario, spillway: RunResult, n502: usize) -> (usize, Vec<String>) {
        let mut direct = run("Synchronous, direct");
        direct.refused.insert("502".into(), n502);
        let runs = vec![spillway, direct];
        failures(&checks(&[scenario_table(&ScenarioResult {
            scenario,
            runs,
        })]))
    }

    fn failures(t: &Table) -> (usize, Vec<String>) {
        let what = |r| t.get(r, "check").and_then(Value::as_str).map(str::to_owned);
        let failed = (0..t.rows.len()).filter(|&r| t.get(r, "holds") != Some(&json!(true)));
        (t.rows.len(), failed.filter_map(what).collect())
    }

    #[test]
    fn figure_6_checks_pass_and_fail_with_the_numbers() {
        let burst = Scenario::Burst { clients: 1000 };
        assert_eq!(failed(burst, run("Spillway"), 5), (4, vec![]));
        let mut bad = run("Spillway");
        (bad.peak_connections, bad.lost) = (Some(3), 1);
        let failed_checks = [
            "burst-1000: Spillway events lost",
            "burst-1000: Spillway peak PostgreSQL connections (`MAXIMUM_CONCURRENCY`)",
            "burst-1000: the direct design ran out of connections (answered 502)",
        ];
        assert_eq!(failed(burst, bad, 0).1, failed_checks);
        // Below 1,000 clients the direct design is not expected to run out.
        let small = Scenario::Burst { clients: 200 };
        assert_eq!(failed(small, run("Spillway"), 0), (3, vec![]));
    }

    #[test]
    fn the_outage_compares_down_with_up_and_an_unknown_peak_fails() {
        let outage = Scenario::Steady {
            rate: 100,
            secs: 60,
            down: (20, 40),
            retry: false,
        };
        // 140 ms down against 1.5 x 100 ms up.
        assert_eq!(failed(outage, run("Spillway"), 0), (4, vec![]));
        let mut slow = run("Spillway");
        (slow.p99_down_ms, slow.peak_connections) = (Some(151.0), None);
        let (_, failed_checks) = failed(outage, slow, 0);
        assert_eq!(failed_checks.len(), 2, "{failed_checks:?}");
        assert!(failed_checks[1].contains("while PostgreSQL was down"));
    }

    #[test]
    fn the_planner_holds_within_20_percent_either_way_and_unknown_fails() {
        let cols: [Col<(&str, Option<f64>)>; 3] = [
            ("figure", None, |_| json!("7")),
            ("what", None, |r| json!(r.0)),
            ("planner off by (%)", Some(1), |r| json!(r.1)),
        ];
        let rows = [
            ("a", Some(19.9)),
            ("b", Some(-20.0)),
            ("c", Some(-20.5)),
            ("d", Some(35.0)),
            ("e", None),
        ];
        let t = checks(&[Table::of("planned", rows, &cols)]);
        let (n, failed) = failures(&t);
        assert_eq!(n, 5);
        let names: Vec<&str> = failed
            .iter()
            .map(|f| &f["planner within 20 % of measured: ".len()..][..1])
            .collect();
        assert_eq!(names, ["c", "d", "e"]);
        assert_eq!(t.get(0, "figure"), Some(&json!("7")));
        assert_eq!(t.number(1, "measured"), Some(20.0));
    }

    /// A phase of figure 8: SQS stalled from, 202s, slowest 202, events spilled.
    type Phase = (Option<u64>, u64, f64, u64);

    #[test]
    fn figure_8_checks_the_stalled_phase_and_the_unused_spill() {
        #[rustfmt::skip] // A table: one column per line.
        let cols: [Col<Phase>; 8] = [
            ("spill queue", None, |_| json!("on (`SPILL_QUEUE`)")),
            ("SQS stalled from (s)", Some(0), |r| json!(r.0)),
            ("202", Some(0), |r| json!(r.1)),
            ("requests", Some(0), |_| json!(1250)),
            ("slowest 202 (ms)", Some(1), |r| json!(r.2)),
            ("events spilled", Some(0), |r| json!(r.3)),
            ("accepted missing", Some(0), |_| json!(0)),
            ("stored not accepted", Some(0), |_| json!(0)),
        ];
        let of = |rows| failures(&checks(&[Table::of("figure-8", rows, &cols)]));
        let good = of([(None, 1250, 90.0, 0), (Some(5), 1250, 5800.0, 1002)]);
        assert_eq!(good, (5, vec![]));
        let (_, bad) = of([(None, 1250, 90.0, 3), (Some(5), 1249, 8001.0, 1002)]);
        assert_eq!(bad.len(), 3, "{bad:?}");
    }
}
