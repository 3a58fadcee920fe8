//! The checks BENCHMARKS.md keeps, computed from a run's tables (so from `results.json`, not
//! from the measurement structs): each compares one measured number with its bound and says
//! whether it holds. Figure 6's are issue 12's criteria, figure 8's issue 15's. Says nothing
//! about why a check failed: that is for whoever reads the tables.

use serde_json::{json, Value};

use super::table::{num, Col, Table};

/// The consumer's default `MAXIMUM_CONCURRENCY`: Spillway's connection budget.
const SPILLWAY_CONNECTIONS: f64 = 2.0;
/// How much slower Spillway may accept while PostgreSQL is down than while it is up.
const DOWN_VS_UP: f64 = 1.5;

/// One check: `measured` must be at most (or at least) `bound`.
struct Check {
    figure: &'static str,
    what: String,
    measured: Option<f64>,
    at_most: bool,
    bound: Option<f64>,
}

impl Check {
    fn new(
        figure: &'static str,
        what: String,
        measured: Option<f64>,
        at_most: bool,
        bound: Option<f64>,
    ) -> Check {
        Check {
            figure,
            what,
            measured,
            at_most,
            bound,
        }
    }

    /// Holds only when both numbers are known.
    fn holds(&self) -> bool {
        match (self.measured, self.bound) {
            (Some(m), Some(b)) => (self.at_most && m <= b) || (!self.at_most && m >= b),
            _ => false,
        }
    }
}

/// Figure 6's checks of one scenario's table.
fn figure_6(scenario: &str, t: &Table, out: &mut Vec<Check>) {
    let Some(sp) = t.find("", "Spillway") else {
        return;
    };
    let what = |s: &str| format!("{scenario}: Spillway {s}");
    let refused = t.number(sp, "refused, by final answer");
    out.push(Check::new(
        "6",
        what("requests refused"),
        refused,
        true,
        Some(0.0),
    ));
    let lost = t.number(sp, "**events lost** (2xx, never stored)");
    out.push(Check::new("6", what("events lost"), lost, true, Some(0.0)));
    let peak = t.number(sp, "**peak PostgreSQL connections**");
    let budget = what("peak PostgreSQL connections (`MAXIMUM_CONCURRENCY`)");
    out.push(Check::new(
        "6",
        budget,
        peak,
        true,
        Some(SPILLWAY_CONNECTIONS),
    ));
    if let Some(up) = t.get(sp, "p99 accept latency, sent while PostgreSQL was up (ms)") {
        let down = t.number(
            sp,
            "p99 accept latency, sent while PostgreSQL was down (ms)",
        );
        let s = what(&format!(
            "accept p99 (ms) while PostgreSQL was down, vs {DOWN_VS_UP} x up"
        ));
        out.push(Check::new(
            "6",
            s,
            down,
            true,
            up.as_f64().map(|up| DOWN_VS_UP * up),
        ));
    }
    // From 1,000 clients on, the direct design must run out of connections: PostgreSQL refuses
    // them, which the handler answers with 502.
    let clients = scenario
        .strip_prefix("burst-")
        .and_then(|n| n.parse::<u64>().ok());
    if let Some(direct) = t
        .find("", "Synchronous, direct")
        .filter(|_| clients >= Some(1000))
    {
        let n502 = t
            .get(direct, "refused, by answer")
            .and_then(|m| m["502"].as_f64());
        let s = format!("{scenario}: the direct design ran out of connections (answered 502)");
        out.push(Check::new(
            "6",
            s,
            Some(n502.unwrap_or(0.0)),
            false,
            Some(1.0),
        ));
    }
}

/// Figure 8's checks: the spill unused while SQS is healthy; through the stall every request
/// accepted within the edge's deadline, and every accepted event stored once.
fn figure_8(t: &Table, out: &mut Vec<Check>) {
    for r in 0..t.rows.len() {
        let stalled = t.number(r, "SQS stalled from (s)").is_some();
        let spill = t.get(r, "spill queue").and_then(Value::as_str);
        if !stalled && spill.is_some_and(|s| s.starts_with("on")) {
            let spilled = t.number(r, "events spilled");
            out.push(Check::new(
                "8",
                "SQS healthy: events spilled".into(),
                spilled,
                true,
                Some(0.0),
            ));
        }
        if !stalled {
            continue;
        }
        let (accepted, sent) = (t.number(r, "202"), t.number(r, "requests"));
        out.push(Check::new(
            "8",
            "SQS stalled: requests answered 202, of all sent".into(),
            accepted,
            false,
            sent,
        ));
        let slowest = t.number(r, "slowest 202 (ms)");
        let deadline = Some(super::spill::DEADLINE_MS as f64);
        out.push(Check::new(
            "8",
            "SQS stalled: slowest 202 (ms), vs `SQS_DEADLINE_MS`".into(),
            slowest,
            true,
            deadline,
        ));
        for (col, s) in [
            (
                "accepted missing",
                "SQS stalled: accepted events never stored",
            ),
            (
                "stored not accepted",
                "SQS stalled: events stored although not accepted",
            ),
        ] {
            out.push(Check::new("8", s.into(), t.number(r, col), true, Some(0.0)));
        }
    }
}

/// The checks table of `tables`.
pub(super) fn checks(tables: &[Table]) -> Table {
    let mut list = Vec::new();
    for t in tables {
        if let Some(scenario) = t.key.strip_prefix("figure-6-") {
            figure_6(scenario, t, &mut list);
        }
    }
    if let Some(t) = tables.iter().find(|t| t.key == "figure-8") {
        figure_8(t, &mut list);
    }
    let cols: [Col<Check>; 6] = [
        ("figure", None, |c| json!(c.figure)),
        ("check", None, |c| json!(c.what)),
        ("measured", Some(0), |c| c.measured.map_or(Value::Null, num)),
        ("rule", None, |c| {
            json!(if c.at_most { "at most" } else { "at least" })
        }),
        ("bound", Some(0), |c| c.bound.map_or(Value::Null, num)),
        ("holds", None, |c| json!(c.holds())),
    ];
    Table::of("checks", list, &cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::burst::{RunResult, Scenario};
    use crate::bench::designs::Kind;
    use crate::bench::experiment::ScenarioResult;
    use crate::bench::figures::scenario_table;

    fn run(design: &str) -> RunResult {
        let (p99_up_ms, p99_down_ms, peak_connections) = (Some(100.0), Some(140.0), Some(2));
        let (design, requests, accepted_requests) = (design.into(), 1000, 1000);
        RunResult {
            design,
            requests,
            accepted_requests,
            peak_connections,
            p99_up_ms,
            p99_down_ms,
            ..RunResult::default()
        }
    }

    /// The checks that failed, of one scenario of Spillway and the direct design (`n502`
    /// requests of which were answered 502).
    fn failed(scenario: Scenario, spillway: RunResult, n502: usize) -> (usize, Vec<String>) {
        let mut direct = run("Synchronous, direct");
        direct.refused.insert("502".into(), n502);
        let runs = vec![(Kind::Spillway, spillway), (Kind::Direct, direct)];
        failures(&checks(&[scenario_table(&ScenarioResult {
            scenario,
            runs,
        })]))
    }

    fn failures(t: &Table) -> (usize, Vec<String>) {
        let what = |r| {
            t.get(r, "check")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let failed = (0..t.rows.len()).filter(|&r| t.get(r, "holds") != Some(&json!(true)));
        (t.rows.len(), failed.map(what).collect())
    }

    #[test]
    fn figure_6_checks_pass_and_fail_with_the_numbers() {
        let burst = Scenario::Burst { clients: 1000 };
        assert_eq!(failed(burst, run("Spillway"), 5), (4, vec![]));
        let mut bad = run("Spillway");
        (bad.peak_connections, bad.lost) = (Some(3), 1);
        let (_, failed_checks) = failed(burst, bad, 0);
        assert_eq!(
            failed_checks,
            [
                "burst-1000: Spillway events lost",
                "burst-1000: Spillway peak PostgreSQL connections (`MAXIMUM_CONCURRENCY`)",
                "burst-1000: the direct design ran out of connections (answered 502)",
            ]
        );
        // Below 1,000 clients the direct design is not expected to run out.
        assert_eq!(
            failed(Scenario::Burst { clients: 200 }, run("Spillway"), 0),
            (3, vec![])
        );
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
        assert!(
            failed_checks[1].contains("while PostgreSQL was down"),
            "{failed_checks:?}"
        );
    }

    #[test]
    fn figure_8_checks_the_stalled_phase_and_the_unused_spill() {
        // (stalled from, 202, slowest, spilled)
        let cols: [Col<(Option<u64>, u64, f64, u64)>; 8] = [
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
        assert_eq!(
            of([(None, 1250, 90.0, 0), (Some(5), 1250, 5800.0, 1002)]),
            (5, vec![])
        );
        let (_, bad) = of([(None, 1250, 90.0, 3), (Some(5), 1249, 8001.0, 1002)]);
        assert_eq!(bad.len(), 3, "{bad:?}");
    }
}
