//! The checks BENCHMARKS.md keeps, computed from a run's tables (so from `results.json`, not
//! from the measurement structs): each compares one measured number with its bound and says
//! whether it holds. Figure 6's are issue 12's criteria, figure 8's issue 15's.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::table::{num, Table};

/// The consumer's default `MAXIMUM_CONCURRENCY`: Spillway's connection budget.
const SPILLWAY_CONNECTIONS: f64 = 2.0;
/// How much slower Spillway may accept while PostgreSQL is down than while it is up.
const DOWN_VS_UP: f64 = 1.5;

/// One check: a number that must be at most (or at least) its bound.
struct Check {
    figure: &'static str,
    what: String,
    measured: Option<f64>,
    at_most: bool,
    bound: Option<f64>,
}

impl Check {
    fn at_most(figure: &'static str, what: String, measured: Option<f64>, bound: f64) -> Check {
        Check {
            figure,
            what,
            measured,
            at_most: true,
            bound: Some(bound),
        }
    }

    /// Holds only when both numbers are known.
    fn pass(&self) -> bool {
        match (self.measured, self.bound) {
            (Some(m), Some(b)) if self.at_most => m <= b,
            (Some(m), Some(b)) => m >= b,
            _ => false,
        }
    }
}

/// The checks table of `tables` (which must not hold one already).
pub(super) fn checks(tables: &BTreeMap<String, Table>) -> Table {
    let mut list = Vec::new();
    for (key, t) in tables.range("figure-6-".to_owned()..) {
        let Some(scenario) = key.strip_prefix("figure-6-") else {
            break;
        };
        let Some(sp) = t.find("", "Spillway") else {
            continue;
        };
        let what = |s: &str| format!("{scenario}: Spillway {s}");
        for (col, s) in [
            ("refused, by final answer", "requests refused"),
            ("**events lost** (2xx, never stored)", "events lost"),
        ] {
            list.push(Check::at_most("6", what(s), t.number(sp, col), 0.0));
        }
        let peak = t.number(sp, "**peak PostgreSQL connections**");
        list.push(Check::at_most(
            "6",
            what("peak PostgreSQL connections (`MAXIMUM_CONCURRENCY`)"),
            peak,
            SPILLWAY_CONNECTIONS,
        ));
        if let Some(up) = t.get(sp, "p99 accept latency, sent while PostgreSQL was up (ms)") {
            list.push(Check {
                figure: "6",
                what: what(&format!(
                    "accept p99 (ms) while PostgreSQL was down, within {DOWN_VS_UP}x of while up"
                )),
                measured: t.number(
                    sp,
                    "p99 accept latency, sent while PostgreSQL was down (ms)",
                ),
                at_most: true,
                bound: up.as_f64().map(|up| DOWN_VS_UP * up),
            });
        }
        // From 1,000 clients the direct design must run out of connections: PostgreSQL refuses.
        let burst = scenario
            .strip_prefix("burst-")
            .and_then(|n| n.parse::<u64>().ok());
        if burst.is_some_and(|n| n >= 1000) && t.find("", "Synchronous, direct").is_some() {
            list.push(Check {
                figure: "6",
                what: format!(
                    "{scenario}: the direct design ran out of connections (requests answered 502)"
                ),
                measured: Some(refused_502(tables.get("figure-6-refusals"), scenario)),
                at_most: false,
                bound: Some(1.0),
            });
        }
    }
    if let Some(t) = tables.get("figure-8") {
        for r in 0..t.rows.len() {
            let stalled = t.number(r, "SQS stalled from (s)").is_some();
            let spill = t
                .get(r, "spill queue")
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with("on"));
            if spill && !stalled {
                list.push(Check::at_most(
                    "8",
                    "SQS healthy: events spilled".into(),
                    t.number(r, "events spilled"),
                    0.0,
                ));
            }
            if !stalled {
                continue;
            }
            list.push(Check {
                figure: "8",
                what: "SQS stalled: requests answered 202, of all sent".into(),
                measured: t.number(r, "202"),
                at_most: false,
                bound: t.number(r, "requests"),
            });
            let slowest = t.number(r, "slowest 202 (ms)");
            let deadline = super::spill::DEADLINE_MS as f64;
            list.push(Check::at_most(
                "8",
                "SQS stalled: slowest 202 (ms), within `SQS_DEADLINE_MS`".into(),
                slowest,
                deadline,
            ));
            for (col, s) in [
                ("accepted missing", "accepted events never stored"),
                ("stored not accepted", "events stored although not accepted"),
            ] {
                list.push(Check::at_most(
                    "8",
                    format!("SQS stalled: {s}"),
                    t.number(r, col),
                    0.0,
                ));
            }
        }
    }
    let mut t = Table::new(
        "checks",
        &[
            ("figure", None),
            ("check", None),
            ("measured", Some(0)),
            ("rule", None),
            ("bound", Some(0)),
            ("holds", None),
        ],
    );
    for c in list {
        let rule = if c.at_most { "at most" } else { "at least" };
        let pass = c.pass();
        t.push(vec![
            json!(c.figure),
            json!(c.what),
            c.measured.map_or(Value::Null, num),
            json!(rule),
            c.bound.map_or(Value::Null, num),
            json!(pass),
        ]);
    }
    t
}

/// Requests of `scenario` the direct design answered 502 (PostgreSQL refused the connection).
fn refused_502(refusals: Option<&Table>, scenario: &str) -> f64 {
    let Some(t) = refusals else { return 0.0 };
    (0..t.rows.len())
        .filter(|&r| t.get(r, "scenario").and_then(Value::as_str) == Some(scenario))
        .filter(|&r| t.get(r, "design").and_then(Value::as_str) == Some("Synchronous, direct"))
        .filter(|&r| {
            t.get(r, "answer (start of its body)")
                .and_then(Value::as_str)
                .is_some_and(|a| a.starts_with("502"))
        })
        .filter_map(|r| t.number(r, "requests"))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::burst::{RunResult, Scenario};
    use crate::bench::designs::Kind;
    use crate::bench::experiment::ScenarioResult;
    use crate::bench::figures::scenario_table;

    fn run(design: &str) -> RunResult {
        RunResult {
            design: design.into(),
            requests: 1000,
            accepted_requests: 1000,
            peak_connections: Some(2),
            p99_up_ms: Some(100.0),
            p99_down_ms: Some(140.0),
            ..RunResult::default()
        }
    }

    fn holds(t: &Table) -> Vec<(String, bool)> {
        (0..t.rows.len())
            .map(|r| {
                let what = t
                    .get(r, "check")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                (what, t.get(r, "holds") == Some(&json!(true)))
            })
            .collect()
    }

    fn tables(
        scenario: Scenario,
        spillway: RunResult,
        direct: RunResult,
        refusals: &[(&str, u64)],
    ) -> BTreeMap<String, Table> {
        let sc = ScenarioResult {
            scenario,
            runs: vec![(Kind::Spillway, spillway), (Kind::Direct, direct)],
        };
        let mut r = Table::new(
            "figure-6-refusals",
            &[
                ("scenario", None),
                ("design", None),
                ("answer (start of its body)", None),
                ("requests", Some(0)),
            ],
        );
        for (text, n) in refusals {
            r.push(vec![
                json!(scenario_key(&sc)),
                json!("Synchronous, direct"),
                json!(text),
                json!(n),
            ]);
        }
        [scenario_table(&sc), r]
            .into_iter()
            .map(|t| (t.key.clone(), t))
            .collect()
    }

    fn scenario_key(sc: &ScenarioResult) -> String {
        sc.scenario.key()
    }

    #[test]
    fn figure_6_checks_pass_and_fail_with_the_numbers() {
        let burst = Scenario::Burst { clients: 1000 };
        let good = checks(&tables(
            burst,
            run("Spillway"),
            run("Synchronous, direct"),
            &[("502 `too many clients`", 5), ("500 `x`", 1)],
        ));
        assert!(
            holds(&good).iter().all(|(_, ok)| *ok),
            "{}",
            good.markdown()
        );
        assert_eq!(good.number(3, "measured"), Some(5.0), "{}", good.markdown());

        let mut bad = run("Spillway");
        bad.peak_connections = Some(3);
        bad.lost = 1;
        let t = checks(&tables(
            burst,
            bad,
            run("Synchronous, direct"),
            &[("500 `x`", 1)],
        ));
        let failed: Vec<String> = holds(&t)
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(w, _)| w)
            .collect();
        assert_eq!(
            failed,
            [
                "burst-1000: Spillway events lost",
                "burst-1000: Spillway peak PostgreSQL connections (`MAXIMUM_CONCURRENCY`)",
                "burst-1000: the direct design ran out of connections (requests answered 502)",
            ]
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
        let ok = checks(&tables(
            outage,
            run("Spillway"),
            run("Synchronous, direct"),
            &[],
        ));
        // 140 ms down against 1.5 x 100 ms up; no 502 check outside the large bursts.
        assert_eq!(ok.rows.len(), 4, "{}", ok.markdown());
        assert_eq!(ok.number(3, "bound"), Some(150.0));
        assert!(holds(&ok).iter().all(|(_, ok)| *ok));
        let mut slow = run("Spillway");
        slow.p99_down_ms = Some(151.0);
        slow.peak_connections = None;
        let t = checks(&tables(outage, slow, run("Synchronous, direct"), &[]));
        assert_eq!(
            holds(&t).iter().filter(|(_, ok)| !ok).count(),
            2,
            "{}",
            t.markdown()
        );
    }

    #[test]
    fn figure_8_checks_the_stalled_phase_and_the_unused_spill() {
        let mut t = Table::new(
            "figure-8",
            &[
                ("spill queue", None),
                ("SQS stalled from (s)", Some(0)),
                ("202", Some(0)),
                ("requests", Some(0)),
                ("slowest 202 (ms)", Some(1)),
                ("events spilled", Some(0)),
                ("accepted missing", Some(0)),
                ("stored not accepted", Some(0)),
            ],
        );
        t.push(vec![
            json!("on (`SPILL_QUEUE`)"),
            Value::Null,
            json!(250),
            json!(250),
            json!(90.0),
            json!(0),
            json!(0),
            json!(0),
        ]);
        t.push(vec![
            json!("on (`SPILL_QUEUE`)"),
            json!(5),
            json!(1250),
            json!(1250),
            json!(5800.0),
            json!(1002),
            json!(0),
            json!(0),
        ]);
        let mut tables: BTreeMap<String, Table> = [(t.key.clone(), t.clone())].into();
        assert!(holds(&checks(&tables)).iter().all(|(_, ok)| *ok));
        t.rows[0][5] = json!(3);
        t.rows[1][2] = json!(1249);
        t.rows[1][4] = json!(8001.0);
        tables.insert(t.key.clone(), t);
        let c = checks(&tables);
        assert_eq!(
            holds(&c).iter().filter(|(_, ok)| !ok).count(),
            3,
            "{}",
            c.markdown()
        );
    }
}
