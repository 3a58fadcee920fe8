//! The capacities measured on this machine, read from the bench's results file
//! (`benches/results/results.json`) by table key and column name, each with where it came
//! from; where the file or the table is missing, a documented default, labelled as such.
//! Reads text it is given; opening the file is the command's.
//!
//! The tables it reads: `figure-10-drain` (the consumer's drain per connection, end to end),
//! and until that exists `figure-5` (the bulk write alone, an upper bound of it);
//! `figure-3-cpu` (workerd CPU per request); `figure-3` (the edge's requests/s under
//! `wrangler dev`, for `--here`); `figure-4` with `figure-1` (the bytes the edge adds per
//! message and per event); `figure-7` (the local edge with group commit, shown, not used:
//! a batcher's deployed capacity is Cloudflare's documented soft limit).

use serde_json::Value;

use crate::limits::limit;

/// A number and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced {
    pub value: f64,
    pub from: String,
}

fn sourced(value: f64, from: impl Into<String>) -> Sourced {
    Sourced {
        value,
        from: from.into(),
    }
}

/// The measured inputs of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The run they come from (date and commit), if any.
    pub run: Option<String>,
    /// Events/s one connection stores.
    pub drain: Sourced,
    /// Workers CPU per request.
    pub cpu_ms: Sourced,
    /// Bytes per message besides its events, and bytes the edge adds per event.
    pub message_overhead: Sourced,
    pub event_overhead: Sourced,
    /// Requests/s one batcher serves.
    pub batcher_rps: Sourced,
    /// The local edge's requests/s (figure 3), for `--here`.
    pub edge_rps: Option<Sourced>,
    /// The highest rate the local edge kept up with, group commit on (figure 7).
    pub local_batching_rps: Option<f64>,
}

/// One table of the results file.
struct Table<'a> {
    columns: Vec<&'a str>,
    rows: Vec<&'a Vec<Value>>,
}

impl<'a> Table<'a> {
    fn find(results: &'a Value, key: &str) -> Option<Table<'a>> {
        let table = results
            .get("tables")?
            .as_array()?
            .iter()
            .find(|t| t.get("key").and_then(Value::as_str) == Some(key))?;
        let columns = table
            .get("columns")?
            .as_array()?
            .iter()
            .map(|c| c.get("name").and_then(Value::as_str).unwrap_or(""))
            .collect();
        let rows = table
            .get("rows")?
            .as_array()?
            .iter()
            .filter_map(Value::as_array)
            .collect();
        Some(Table { columns, rows })
    }

    fn cell(&self, row: usize, column: &str) -> Option<&'a Value> {
        let i = self.columns.iter().position(|c| *c == column)?;
        self.rows.get(row)?.get(i)
    }

    fn number(&self, row: usize, column: &str) -> Option<f64> {
        self.cell(row, column).and_then(Value::as_f64)
    }

    fn text(&self, row: usize, column: &str) -> Option<&'a str> {
        self.cell(row, column).and_then(Value::as_str)
    }

    /// The first row whose text in `column` starts with `prefix`.
    fn row_starting(&self, column: &str, prefix: &str) -> Option<usize> {
        (0..self.rows.len()).find(|&r| self.text(r, column).is_some_and(|t| t.starts_with(prefix)))
    }

    /// The row whose number in `column` is `value`.
    fn row_where(&self, column: &str, value: f64) -> Option<usize> {
        (0..self.rows.len()).find(|&r| self.number(r, column) == Some(value))
    }
}

/// `y` at `x` on the line through `(x0, y0)` and `(x1, y1)`, not extended past either end.
fn between(x: f64, (x0, y0): (f64, f64), (x1, y1): (f64, f64)) -> f64 {
    if x1 == x0 {
        return y0;
    }
    let t = ((x - x0) / (x1 - x0)).clamp(0.0, 1.0);
    y0 + t * (y1 - y0)
}

/// The overheads of the committed run of 2026-12-06 (figure 4's 1,430-byte message for a
/// 512-byte event and 141,218 bytes for 100 events of 1,281), for when no results file is
/// there.
const DEFAULT_MESSAGE_OVERHEAD: f64 = 795.0;
const DEFAULT_EVENT_OVERHEAD: f64 = 123.0;
/// docs/deploy.md section 8's worked example: 1,000 rows in 150 ms of write plus 50 ms of
/// invocation per connection. An illustration, not a measurement.
const DEFAULT_DRAIN: f64 = 5_000.0;
/// Workers CPU per one-event request when nothing was measured: figure 3 of the 2026-12-06
/// run (2.78 ms in workerd), rounded up.
const DEFAULT_CPU_MS: f64 = 3.0;

/// The measured inputs for a load of `events_per_request` events, whose messages carry
/// `events_per_message` events, with `connections` connections; `results` is the results
/// file's text, if there is one.
pub fn measured(
    results: Option<&str>,
    events_per_request: f64,
    events_per_message: f64,
    connections: u32,
) -> Measured {
    let parsed: Option<Value> = results.and_then(|t| serde_json::from_str(t).ok());
    let none = Value::Null;
    let r = parsed.as_ref().unwrap_or(&none);
    let run = Table::find(r, "run").and_then(|t| {
        Some(format!(
            "{}, commit {}",
            t.text(0, "date")?,
            t.text(0, "commit")?
        ))
    });
    let (message_overhead, event_overhead) = overheads(r);
    Measured {
        run,
        drain: drain(r, events_per_message, connections),
        cpu_ms: cpu(r, events_per_request),
        message_overhead,
        event_overhead,
        batcher_rps: sourced(
            limit("do_requests_per_s"),
            "Cloudflare's documented soft limit per Durable Object (crate::limits)",
        ),
        edge_rps: edge(r, events_per_request),
        local_batching_rps: local_batching(r),
    }
}

/// The drain per connection: figure 10 where it exists (interpolated in events per message
/// between its rows, at the most connections measured within the budget), else figure 5's
/// bulk write, else the documented default.
fn drain(r: &Value, events_per_message: f64, connections: u32) -> Sourced {
    const EPM: &str = "events per message";
    const CONN: &str = "connections";
    const RATE: &str = "events/s per connection";
    if let Some(t) = Table::find(r, "figure-10-drain") {
        let counts: Vec<f64> = (0..t.rows.len())
            .filter_map(|i| t.number(i, CONN))
            .collect();
        let budget = f64::from(connections);
        let at = counts
            .iter()
            .copied()
            .filter(|&c| c <= budget)
            .fold(None, |m: Option<f64>, c| Some(m.map_or(c, |m| m.max(c))))
            .or_else(|| counts.iter().copied().reduce(f64::min));
        let mut points: Vec<(f64, f64)> = (0..t.rows.len())
            .filter(|&i| at.is_some() && t.number(i, CONN) == at)
            .filter_map(|i| Some((t.number(i, EPM)?.max(1.0).ln(), t.number(i, RATE)?)))
            .filter(|p| p.1 > 0.0)
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let (Some(&lo), Some(&hi), Some(at)) = (points.first(), points.last(), at) {
            let x = events_per_message.max(1.0).ln();
            // Between the two measured rows around it.
            let below = points
                .iter()
                .rev()
                .find(|p| p.0 <= x)
                .copied()
                .unwrap_or(lo);
            let above = points.iter().find(|p| p.0 >= x).copied().unwrap_or(hi);
            return sourced(
                between(x, below, above),
                format!(
                    "figure 10 (the consumer's drain, end to end), {} connection(s), at {:.1} events per message",
                    at, events_per_message
                ),
            );
        }
    }
    if let Some(t) = Table::find(r, "figure-5") {
        if let Some(rate) = t
            .row_starting("write", "consumer")
            .and_then(|i| t.number(i, "rows/s"))
        {
            return sourced(
                rate,
                "figure 5's bulk write alone (figure 10, the drain end to end, is not in the \
                 results file yet): without receives, decoding or deletes, so an upper bound",
            );
        }
    }
    sourced(
        DEFAULT_DRAIN,
        "no results file: docs/deploy.md section 8's worked example (1,000 rows per 200 ms), \
         an illustration, not a measurement",
    )
}

/// Workers CPU per request, interpolated between figure 3's 1-event and 100-event POSTs.
fn cpu(r: &Value, events_per_request: f64) -> Sourced {
    const COL: &str = "workerd (ms)";
    let measured = Table::find(r, "figure-3-cpu").and_then(|t| {
        let one = t.number(t.row_starting("request", "POST 1 event")?, COL)?;
        let hundred = t.number(t.row_starting("request", "POST 100 events")?, COL)?;
        Some(between(events_per_request, (1.0, one), (100.0, hundred)))
    });
    match measured {
        Some(ms) => sourced(
            ms,
            "figure 3's workerd CPU per POST under wrangler dev (the local batcher's share \
             included, which Cloudflare bills as Durable Object duration instead)",
        ),
        None => sourced(
            DEFAULT_CPU_MS,
            "no figure 3 in the results file: 3 ms, figure 3 of the 2026-12-06 run rounded up",
        ),
    }
}

/// Bytes per message besides events, and per event besides the client's bytes: the line
/// through figure 4's 1-event and 100-event messages (events of figure 1's sizes).
fn overheads(r: &Value) -> (Sourced, Sourced) {
    let fit = || {
        let f4 = Table::find(r, "figure-4")?;
        let f1 = Table::find(r, "figure-1")?;
        let at = |n: f64| {
            let m = f4.number(f4.row_where("events per request", n)?, "bytes per message")?;
            let b = f1.number(f1.row_where("events per request", n)?, "B/event")?;
            Some((m, b))
        };
        let ((m1, b1), (m100, b100)) = (at(1.0)?, at(100.0)?);
        let event = ((m100 - 100.0 * b100) - (m1 - b1)) / 99.0;
        let message = m1 - b1 - event;
        (event >= 0.0 && message >= 0.0).then_some((message, event))
    };
    match fit() {
        Some((m, e)) => (
            sourced(m, "figure 4's messages against figure 1's event sizes"),
            sourced(e, "figure 4's messages against figure 1's event sizes"),
        ),
        None => (
            sourced(DEFAULT_MESSAGE_OVERHEAD, "figure 4 of the 2026-12-06 run"),
            sourced(DEFAULT_EVENT_OVERHEAD, "figure 4 of the 2026-12-06 run"),
        ),
    }
}

/// The local edge's requests/s for this request size: figure 3's CPU ceiling (the cores over
/// the CPU a POST costs across processes), which a burst of many clients meets, less the local
/// buffer's share: a burst's small requests share the buffer's calls through group commit, so
/// its CPU is paid per call, not per request. Without figure 3's CPU table, figure 3's
/// measured requests/s (bounded by `wrk`'s few connections, so lower).
fn edge(r: &Value, events_per_request: f64) -> Option<Sourced> {
    let at = |t: &Table, column: &str| {
        let one = t.number(t.row_starting("request", "POST 1 event")?, column)?;
        let hundred = t.number(t.row_starting("request", "POST 100 events")?, column)?;
        Some((one, hundred))
    };
    let ceiling = Table::find(r, "figure-3-cpu").and_then(|t| {
        let ceiling = at(&t, "cores / CPU per request (req/s)")?;
        let all = at(&t, "CPU per request, all (ms)")?;
        let buffer = at(&t, "local buffer (ms)").or_else(|| at(&t, "local SQS (ms)"))?;
        let without = |c: f64, a: f64, b: f64| if a > b { c * a / (a - b) } else { c };
        Some((
            without(ceiling.0, all.0, buffer.0),
            without(ceiling.1, all.1, buffer.1),
        ))
    });
    if let Some((one, hundred)) = ceiling {
        return Some(sourced(
            between(events_per_request, (1.0, one), (100.0, hundred)),
            "figure 3's CPU ceiling under wrangler dev on this machine (cores / CPU per POST, \
             the local buffer's share left out: group commit shares its calls)",
        ));
    }
    let t = Table::find(r, "figure-3")?;
    let (one, hundred) = at(&t, "requests/s")?;
    Some(sourced(
        between(events_per_request, (1.0, one), (100.0, hundred)),
        "figure 3's POSTs under wrangler dev on this machine (wrk's 8 connections: a lower bound)",
    ))
}

/// The highest offered rate at which the local edge, group commit on, answered at least 95 %
/// of it with nothing timed out (figure 7).
fn local_batching(r: &Value) -> Option<f64> {
    let t = Table::find(r, "figure-7")?;
    (0..t.rows.len())
        .filter(|&i| t.text(i, "batching").is_some_and(|b| b.starts_with("on")))
        .filter_map(|i| {
            let offered = t.number(i, "offered req/s")?;
            let ok = t.number(i, "achieved req/s")? >= 0.95 * offered
                && t.number(i, "timed out")? == 0.0;
            ok.then_some(offered)
        })
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(tables: &[Value]) -> String {
        serde_json::json!({ "tables": tables }).to_string()
    }

    fn table(key: &str, columns: &[&str], rows: Value) -> Value {
        let columns: Vec<Value> = columns
            .iter()
            .map(|c| serde_json::json!({"name": c, "decimals": null}))
            .collect();
        serde_json::json!({"key": key, "columns": columns, "rows": rows, "transposed": false})
    }

    fn figure5() -> Value {
        table(
            "figure-5",
            &["write", "rows/s", "vs COPY"],
            serde_json::json!([
                ["consumer: INSERT ...", 72914.0, 0.86],
                ["binary COPY", 85114.0, 1.0]
            ]),
        )
    }

    #[test]
    fn without_a_results_file_every_input_is_a_labelled_default() {
        let m = measured(None, 1.0, 1.0, 5);
        assert_eq!(m.drain.value, DEFAULT_DRAIN);
        assert!(m.drain.from.contains("not a measurement"));
        assert_eq!(m.cpu_ms.value, DEFAULT_CPU_MS);
        assert_eq!(m.batcher_rps.value, 1_000.0);
        assert_eq!(
            (m.run, m.edge_rps, m.local_batching_rps),
            (None, None, None)
        );
    }

    #[test]
    fn the_drain_falls_back_to_figure_5_and_says_so() {
        let text = results(&[figure5()]);
        let m = measured(Some(&text), 1.0, 1.0, 5);
        assert_eq!(m.drain.value, 72_914.0);
        assert!(m.drain.from.contains("figure 5") && m.drain.from.contains("upper bound"));
    }

    #[test]
    fn figure_10_wins_interpolated_at_the_budgets_connections() {
        let drain = table(
            "figure-10-drain",
            &[
                "events per message",
                "connections",
                "events/s per connection",
            ],
            serde_json::json!([
                [1.0, 1.0, 1000.0],
                [100.0, 1.0, 9000.0],
                [1.0, 2.0, 800.0],
                [100.0, 2.0, 8000.0],
                [1.0, 4.0, 500.0],
                [100.0, 4.0, 6000.0]
            ]),
        );
        let text = results(&[figure5(), drain]);
        // Budget 3: the 2-connection rows; at 1 and 100 events per message exactly.
        assert_eq!(measured(Some(&text), 1.0, 1.0, 3).drain.value, 800.0);
        assert_eq!(measured(Some(&text), 1.0, 100.0, 3).drain.value, 8000.0);
        // 10 events per message: halfway in ln between 1 and 100.
        let mid = measured(Some(&text), 1.0, 10.0, 3).drain;
        assert!((mid.value - 4400.0).abs() < 1e-6, "{}", mid.value);
        assert!(mid.from.contains("figure 10"));
        // Past the ends: the end; a budget below every row: the fewest connections.
        assert_eq!(measured(Some(&text), 1.0, 500.0, 1000).drain.value, 6000.0);
        let one = table(
            "figure-10-drain",
            &[
                "events per message",
                "connections",
                "events/s per connection",
            ],
            serde_json::json!([[1.0, 2.0, 700.0]]),
        );
        assert_eq!(
            measured(Some(&results(&[one])), 1.0, 5.0, 1).drain.value,
            700.0
        );
    }

    #[test]
    fn cpu_edge_and_overheads_come_from_figures_1_3_and_4() {
        let f3cpu = table(
            "figure-3-cpu",
            &[
                "request",
                "workerd (ms)",
                "CPU per request, all (ms)",
                "local SQS (ms)",
                "cores / CPU per request (req/s)",
            ],
            serde_json::json!([
                ["GET /healthz", 1.36, 2.13, 0.0, 941.0],
                ["POST 1 event (512 B)", 2.78, 4.0, 0.5, 500.0],
                ["POST 100 events (128101 B)", 8.45, 13.0, 3.0, 150.0]
            ]),
        );
        let f3 = table(
            "figure-3",
            &["request", "requests/s"],
            serde_json::json!([
                ["GET /healthz", 787.0],
                ["POST 1 event (512 B)", 199.0],
                ["POST 100 events (128101 B)", 108.0]
            ]),
        );
        let f4 = table(
            "figure-4",
            &["events per request", "bytes per message"],
            serde_json::json!([[1.0, 1430.0], [10.0, 14138.0], [100.0, 141218.0]]),
        );
        let f1 = table(
            "figure-1",
            &["events per request", "B/event"],
            serde_json::json!([[1.0, 512.0], [100.0, 1281.0]]),
        );
        let f7 = table(
            "figure-7",
            &["batching", "offered req/s", "achieved req/s", "timed out"],
            serde_json::json!([
                ["on (default)", 10.0, 10.0, 0.0],
                ["on (default)", 100.0, 99.9, 0.0],
                ["off", 1000.0, 1000.0, 0.0],
                ["on (default)", 1000.0, 473.9, 0.0]
            ]),
        );
        let text = results(&[f3cpu, f3, f4, f1, f7]);
        let m = measured(Some(&text), 1.0, 1.0, 2);
        assert_eq!(m.cpu_ms.value, 2.78);
        assert_eq!(measured(Some(&text), 100.0, 100.0, 2).cpu_ms.value, 8.45);
        // 2 cores over 4 ms less the local SQS's 0.5: 571 req/s; 100 events: 195.
        let (one, hundred) = (500.0 * 4.0 / 3.5, 150.0 * 13.0 / 10.0);
        let edge = |epr: f64| measured(Some(&text), epr, epr, 2).edge_rps.map(|e| e.value);
        assert_eq!(edge(1.0), Some(one));
        assert_eq!(edge(100.0), Some(hundred));
        let at10 = edge(10.0).expect("measured");
        assert!((at10 - (one + (hundred - one) * 9.0 / 99.0)).abs() < 1e-9);
        // 1,430 = M + 512 + e; 141,218 = M + 100 x (1,281 + e).
        let (mo, eo) = (m.message_overhead.value, m.event_overhead.value);
        assert!((mo + 512.0 + eo - 1430.0).abs() < 1e-6);
        assert!((mo + 100.0 * (1281.0 + eo) - 141_218.0).abs() < 1e-6);
        assert_eq!(m.local_batching_rps, Some(100.0));
    }
}
