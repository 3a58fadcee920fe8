//! Figure 6 in Markdown: per scenario a table of the three designs, the plot of the same run,
//! and sentences built only from the numbers beside them, then the checks of issue 12's
//! criteria, each computed from the run. Also figure 7's reading (group commit off vs on), by
//! the same rule: it says only what its table says.

use std::fmt::Write as _;

use super::batching::{BatchRow, Mode, TIMEOUT};
use super::burst::{RunResult, Scenario};
use super::designs::{Kind, APP_ROLE};
use super::experiment::ScenarioResult;
use super::report::{ratio, thousands};
use super::{Opts, BURST_EVENTS_PER_REQUEST, BURST_MAX_CONNECTIONS};

/// The consumer's default `MAXIMUM_CONCURRENCY`: Spillway's connection budget.
const SPILLWAY_CONNECTIONS: u64 = 2;
/// The `Stack`'s main-queue visibility timeout (`StackConfig::visibility_timeout_secs`).
const VISIBILITY_S: u32 = 30;

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0} ms")
    } else {
        "n/a (none accepted)".into()
    }
}

fn refused(r: &RunResult) -> String {
    let n: usize = r.refused.values().sum();
    if n == 0 {
        return "0".into();
    }
    let kinds: Vec<String> = r
        .refused
        .iter()
        .map(|(k, v)| format!("{v} x {k}"))
        .collect();
    format!("{n} ({})", kinds.join(", "))
}

fn peak(r: &RunResult) -> String {
    let p = r
        .peak_connections
        .map(|p| p.to_string())
        .unwrap_or_else(|| "no sample".into());
    if r.failed_samples > 0 {
        format!("{p} ({} samples failed)", r.failed_samples)
    } else {
        p
    }
}

fn complete(r: &RunResult) -> String {
    match r.complete_s {
        Some(t) => format!("{t:.1} s"),
        None if r.lost > 0 => format!("never ({} accepted events missing)", r.lost),
        None => "not seen".into(),
    }
}

fn refused_count(r: &RunResult) -> usize {
    r.refused.values().sum()
}

/// Rows of the summary table at the top of BENCHMARKS.md.
pub(super) fn summary_rows(s: &mut String, results: &[ScenarioResult]) {
    for sc in results {
        let cell = |k: Kind| {
            sc.get(k)
                .map(|r| {
                    format!(
                        "{} refused, {} lost, peak {} conn.",
                        refused_count(r),
                        r.lost,
                        r.peak_connections
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "?".into())
                    )
                })
                .unwrap_or_default()
        };
        let _ = writeln!(
            s,
            "| 6 | {}: requests refused, events lost, peak PostgreSQL connections | {} | direct: {}; PgBouncer: {} | |",
            sc.scenario.key(),
            cell(Kind::Spillway),
            cell(Kind::Direct),
            cell(Kind::Pooled)
        );
    }
}

/// One sentence per design, from its numbers only.
/// Distinct refusal texts shown per design; the rest are counted.
const REFUSAL_TEXTS_SHOWN: usize = 3;

/// The commonest refusals with the start of their bodies, most frequent first.
pub(super) fn refusal_texts(r: &RunResult) -> String {
    let mut texts: Vec<(&String, &usize)> = r.refusal_texts.iter().collect();
    texts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut parts: Vec<String> = texts
        .iter()
        .take(REFUSAL_TEXTS_SHOWN)
        .map(|(t, n)| format!("{n} x {t}"))
        .collect();
    let rest: usize = texts
        .iter()
        .skip(REFUSAL_TEXTS_SHOWN)
        .map(|(_, n)| **n)
        .sum();
    if rest > 0 {
        parts.push(format!(
            "{rest} more in {} other texts",
            texts.len() - REFUSAL_TEXTS_SHOWN
        ));
    }
    parts.join("; ")
}

fn design_sentence(r: &RunResult) -> String {
    let mut out = format!(
        "{} answered 2xx to {} of {} requests",
        r.design,
        thousands(r.accepted_requests as f64),
        thousands(r.requests as f64)
    );
    if refused_count(r) > 0 {
        let _ = write!(
            out,
            " and refused {} (what the answers said: {})",
            refused(r),
            refusal_texts(r)
        );
    }
    let _ = write!(
        out,
        ", lost {} accepted events, stored {} events of refused requests, and held at most {} \
         PostgreSQL connections",
        r.lost,
        r.stored_refused,
        r.peak_connections
            .map(|p| p.to_string())
            .unwrap_or_else(|| "an unknown number of".into())
    );
    if r.failed_samples > 0 {
        let _ = write!(
            out,
            " ({} samples failed, the peak may be higher)",
            r.failed_samples
        );
    }
    out.push('.');
    out
}

/// What in the local set-up bounds the scenario, from what the run measured.
fn bound_sentence(sc: &ScenarioResult) -> String {
    let loads: Vec<String> = sc
        .runs
        .iter()
        .map(|(_, r)| format!("{} {} -> {}", r.design, r.load.0, r.load.1))
        .collect();
    let mut out = format!(
        "Bound here: clients, servers and PostgreSQL share this machine's cores (load average \
         before -> after each run: {})",
        loads.join("; ")
    );
    if let Some(sp) = sc.get(Kind::Spillway) {
        let _ = write!(
            out,
            "; Spillway's accept latency is that of `wrangler dev` and the local SQS on the same \
             cores (figure 3 measures them alone), and its time to the database that of its \
             poller ({SPILLWAY_CONNECTIONS} workers; a message whose write failed is received \
             again after the queue's visibility timeout, {VISIBILITY_S} s)"
        );
        if let Some(t) = sp.complete_s {
            let _ = write!(
                out,
                ": {t:.1} s here for {} rows",
                thousands(sp.rows_end as f64)
            );
        }
    }
    out.push('.');
    out
}

/// A table row: its label and how a run's cell is written.
type Row = (&'static str, Box<dyn Fn(&RunResult) -> String>);

fn table(s: &mut String, sc: &ScenarioResult) {
    let runs: Vec<&RunResult> = sc.runs.iter().map(|(_, r)| r).collect();
    let _ = writeln!(
        s,
        "| | {} |\n|---|{}",
        runs.iter()
            .map(|r| r.design.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(runs.len())
    );
    let steady = matches!(sc.scenario, Scenario::Steady { .. });
    let retry = matches!(sc.scenario, Scenario::Steady { retry: true, .. });
    let mut rows: Vec<Row> = vec![
        (
            "`max_connections` (as the server reported it)",
            Box::new(|r| r.max_connections.clone()),
        ),
        (
            "requests / events sent",
            Box::new(|r| {
                format!(
                    "{} / {}",
                    thousands(r.requests as f64),
                    thousands(r.events_sent as f64)
                )
            }),
        ),
        (
            "accepted (2xx): requests / events",
            Box::new(|r| {
                format!(
                    "{} / {}",
                    thousands(r.accepted_requests as f64),
                    thousands(r.accepted_events as f64)
                )
            }),
        ),
        ("refused, by final answer", Box::new(refused)),
        (
            "of which timed out (30 s)",
            Box::new(|r| r.timed_out.to_string()),
        ),
    ];
    if retry {
        rows.push((
            "retries (attempts after the first)",
            Box::new(|r| r.retries.to_string()),
        ));
    }
    rows.extend::<Vec<Row>>(vec![
        (
            "**events lost** (2xx, never stored)",
            Box::new(|r| r.lost.to_string()),
        ),
        (
            "events stored although refused",
            Box::new(|r| r.stored_refused.to_string()),
        ),
        (
            "rows in the table at the end",
            Box::new(|r| thousands(r.rows_end as f64)),
        ),
        ("**peak PostgreSQL connections**", Box::new(peak)),
        ("p50 accept latency", Box::new(|r| ms(r.p50_ms))),
        ("**p99 accept latency**", Box::new(|r| ms(r.p99_ms))),
    ]);
    if steady {
        rows.push((
            "p99 accept latency, sent while PostgreSQL was up / down",
            Box::new(|r| {
                format!(
                    "{} / {}",
                    r.p99_up_ms.map(ms).unwrap_or_else(|| "n/a".into()),
                    r.p99_down_ms.map(ms).unwrap_or_else(|| "n/a".into())
                )
            }),
        ));
        rows.push((
            "PostgreSQL stopped / started at",
            Box::new(|r| {
                r.outage
                    .map(|(a, b)| format!("{a:.1} s / {b:.1} s"))
                    .unwrap_or_else(|| "n/a".into())
            }),
        ));
    }
    rows.push((
        "last client answered at",
        Box::new(|r| format!("{:.1} s", r.clients_done_s)),
    ));
    rows.push(("**table held every accepted event at**", Box::new(complete)));
    rows.push((
        "DLQ at the end",
        Box::new(|r| {
            r.dlq_end
                .map(|d| d.to_string())
                .unwrap_or_else(|| "n/a".into())
        }),
    ));
    for (label, f) in rows {
        let cells: Vec<String> = runs.iter().map(|r| f(r)).collect();
        let _ = writeln!(s, "| {label} | {} |", cells.join(" | "));
    }
}

pub(super) fn experiment_section(s: &mut String, results: &[ScenarioResult], opts: &Opts) {
    if results.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "## 6. Three designs under bursts and a PostgreSQL outage\n\n\
         Command: `cargo xtask bench --only burst --burst-clients {} --steady-secs {} \
         --steady-rate {}` (part of `cargo xtask bench`). One PostgreSQL 15 for all three designs \
         (the `Stack`'s, restarted with **`max_connections` = {BURST_MAX_CONNECTIONS}**, \
         `superuser_reserved_connections` 3, trust auth, `fsync=off`, loopback); each run starts \
         from an empty table and an empty queue, the synchronous handler and PgBouncer started \
         afresh (no warm environment).\n\n\
         - **Spillway**: {}.\n\
         - **Synchronous, direct**: {}.\n\
         - **Synchronous, PgBouncer**: {}, role `{APP_ROLE}`.\n\n\
         Load: an async client (tokio, one connection per request, 127.0.0.1 only). Each request \
         carries {BURST_EVENTS_PER_REQUEST} events (512-2048 B) with client-chosen ids; a client \
         waits at most 30 s for an answer (about API Gateway's 29 s limit). In a burst every \
         client first opens its connection, then all send at the same instant (so the requests \
         arrive together, not as fast as 2 cores open thousands of connections), and never retry; \
         refusals are counted with the start of their body, which says who refused. The \
         steady scenarios send at a fixed rate and stop PostgreSQL \
         (`pg_ctl stop -m fast`) for the middle third. Retrying clients back off 0.5 s, 1 s, 2 s \
         ... 8 s with the same ids, until 30 s after the traffic ends. A psql session opened \
         before the run samples `pg_stat_activity` (client backends other than itself) and \
         `count(*)` every 100 ms; a failed sample is recorded as missing, never as 0. Events lost \
         = ids answered 2xx that are not in the table once the run is over (Spillway: queue \
         empty, every event its edge spilled replayed to SQS (by the edge log's counts), and rows \
         still for 2 s; or 120 s after the last answer). \"Table held every \
         accepted event at\" = the first sample at which the table held its final row count, \
         with no accepted event missing.\n",
        opts.burst_clients
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
        opts.steady_secs,
        opts.steady_rate,
        Kind::Spillway.setup(),
        Kind::Direct.setup(),
        Kind::Pooled.setup(),
    );
    for sc in results {
        let _ = writeln!(
            s,
            "### {}\n\n![connections, rows and queue over time](benches/results/{}.svg)\n",
            sc.scenario.title(),
            sc.scenario.key()
        );
        table(s, sc);
        let sentences: Vec<String> = sc.runs.iter().map(|(_, r)| design_sentence(r)).collect();
        let _ = writeln!(
            s,
            "\nReading: {} {}\n",
            sentences.join(" "),
            bound_sentence(sc)
        );
    }
    checks(s, results);
    let _ = writeln!(s, "### Closing note: N = 3,000 and through the outage\n");
    let mut any = false;
    for sc in results {
        let headline = matches!(sc.scenario, Scenario::Burst { clients: 3000 })
            || matches!(sc.scenario, Scenario::Steady { .. });
        if headline {
            any = true;
            let _ = writeln!(s, "{}:\n", sc.scenario.title());
            let _ = writeln!(
                s,
                "| design | accepted requests | refused | events lost | peak connections | p99 accept | table complete at |\n|---|---|---|---|---|---|---|"
            );
            for (_, r) in &sc.runs {
                let _ = writeln!(
                    s,
                    "| {} | {} of {} | {} | {} | {} | {} | {} |",
                    r.design,
                    r.accepted_requests,
                    r.requests,
                    refused(r),
                    r.lost,
                    peak(r),
                    ms(r.p99_ms),
                    complete(r)
                );
            }
            let _ = writeln!(s);
        }
    }
    if !any {
        let _ = writeln!(
            s,
            "Not run (no burst of 3,000 and no outage scenario in this run).\n"
        );
    }
}

/// Issue 12's "done when" criteria for figure 6, each checked against this run's numbers.
fn checks(s: &mut String, results: &[ScenarioResult]) {
    let _ = writeln!(s, "### Checks (computed from the tables above)\n");
    let yes = |b: bool| if b { "yes" } else { "**no**" };
    for sc in results {
        if let Some(sp) = sc.get(Kind::Spillway) {
            let _ = writeln!(
                s,
                "- {}: Spillway refused no request: {}; lost 0 events: {}; held at most \
                 `MAXIMUM_CONCURRENCY` ({SPILLWAY_CONNECTIONS}) connections: {}{}",
                sc.scenario.key(),
                yes(refused_count(sp) == 0),
                yes(sp.lost == 0),
                yes(sp
                    .peak_connections
                    .is_some_and(|p| p <= SPILLWAY_CONNECTIONS)),
                match (sp.p99_up_ms, sp.p99_down_ms) {
                    (Some(up), Some(down)) => format!(
                        "; accept p99 while PostgreSQL was down ({down:.0} ms) within 1.5x of \
                         while up ({up:.0} ms): {}",
                        yes(down <= 1.5 * up)
                    ),
                    _ => String::new(),
                }
            );
        }
        if let (Scenario::Burst { clients }, Some(d)) = (sc.scenario, sc.get(Kind::Direct)) {
            if clients >= 1000 {
                let _ = writeln!(
                    s,
                    "- {}: the direct design ran out of connections (a request refused by \
                     PostgreSQL, answered 502): {} ({} x 502, peak {})",
                    sc.scenario.key(),
                    yes(d.refused.get("502").copied().unwrap_or(0) > 0),
                    d.refused.get("502").copied().unwrap_or(0),
                    peak(d)
                );
            }
        }
    }
    let _ = writeln!(s);
}

/// A count that may be unknown (nothing reached SQS): never written as 0.
pub(super) fn count_or_na(v: f64) -> String {
    if v.is_finite() {
        thousands(v)
    } else {
        "n/a".into()
    }
}

/// Figure 7 in one sentence: per offered rate, billed sends per million events off -> on, their
/// ratio to the floor, and the latency batching added where both modes kept up; whether on
/// differed from off at all (if not, the latency differences are the machine's noise); and the
/// rows where the edge did not keep up with the offered rate.
pub(super) fn batching_finding(rows: &[BatchRow]) -> String {
    let find = |mode: Mode, rate: u32| {
        rows.iter()
            .find(|r| r.mode == mode && r.offered_rps == rate)
    };
    let mut rates: Vec<u32> = rows.iter().map(|r| r.offered_rps).collect();
    rates.sort_unstable();
    rates.dedup();
    let mut parts = Vec::new();
    let mut all_alike = true;
    for rate in rates {
        let (Some(off), Some(on)) = (find(Mode::Off, rate), find(Mode::On, rate)) else {
            continue;
        };
        let (b_off, b_on) = (off.billed_per_million(), on.billed_per_million());
        all_alike &= b_off.is_finite() && b_on.is_finite() && (b_on / b_off - 1.0).abs() <= 0.05;
        let mut part = format!(
            "at {} req/s {} -> {} ({} of the floor)",
            thousands(f64::from(rate)),
            count_or_na(b_off),
            count_or_na(b_on),
            ratio(b_on, on.floor_per_million())
        );
        if off.kept_up() && on.kept_up() {
            let _ = write!(
                part,
                ", p50 {} and p99 {}",
                signed_ms(on.p50_ms - off.p50_ms),
                signed_ms(on.p99_ms - off.p99_ms)
            );
        }
        parts.push(part);
    }
    if parts.is_empty() {
        return "No rate was measured in both modes.".into();
    }
    let mut out = if all_alike {
        format!(
            "Batching on was billed within 5% of off at every rate, so the worker measured here \
             did not batch and its latency differences are this machine's noise (billed SQS \
             sends per million events counted at the local SQS, off -> on: {})",
            parts.join("; ")
        )
    } else {
        format!(
            "Billed SQS sends per million events counted at the local SQS, batching off -> on: {}",
            parts.join("; ")
        )
    };
    let behind: Vec<String> = rows
        .iter()
        .filter(|r| !r.kept_up())
        .map(|r| {
            format!(
                "{} req/s with batching {} ({} of {} answered 202 within {} s, {:.0} req/s \
                 achieved, while {} events reached SQS)",
                thousands(f64::from(r.offered_rps)),
                match r.mode {
                    Mode::Off => "off",
                    Mode::On => "on",
                },
                thousands(r.accepted as f64),
                thousands(r.requests as f64),
                TIMEOUT.as_secs(),
                r.achieved_rps,
                thousands(r.meter.events as f64)
            )
        })
        .collect();
    if !behind.is_empty() {
        let _ = write!(
            out,
            "; the local edge did not keep up at {}, so their latency is queueing and not compared",
            behind.join(" and ")
        );
    }
    out.push('.');
    out
}

/// A latency difference with its sign; unknown when either side had no 202.
fn signed_ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:+.1} ms")
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
#[path = "findings_tests.rs"]
mod tests;
