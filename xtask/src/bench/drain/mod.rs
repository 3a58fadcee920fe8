//! Figure 10: the consumer's drain rate, from the buffer to the table, per database connection.
//!
//! With the edge idle and the poller stopped, the `Stack`'s local SQS is preloaded with a fixed
//! number of events, sealed exactly as the edge seals them (the real packer, the stack's
//! envelope key, its ingest key id): one message per request of 1 or of 100 events, as the edge
//! sends a request with group commit off, sent to SQS in calls as full as the buffer's limits
//! allow. The poller then starts, running the consumer (release build) with
//! `MAXIMUM_CONCURRENCY` 1, 2 and 4 (one database connection each) and the default `BATCH_SIZE`,
//! and the run is timed from that start (the poller's process start and connections included)
//! until the consumer has stored every event (its EMF lines, one per invocation, read from the
//! poller's log as they are written; the table's row count is checked once at the end).
//! Alongside: the CPU each group of processes used, the time the invocations spent in the
//! database write (the EMF's `DbWriteMs`) and in all (the poller's `invocation_ms`, on its last
//! line), which say where a worker's time went: the write, the consumer's own path (verify,
//! decode), or waiting for a receive that the invocation before did not hide.
//!
//! The reference is binary `COPY` of the very rows the drain stored, into the same PostgreSQL,
//! on one connection, in batches of one invocation's rows (figure 5's `bench_write`, pointed at
//! the stack's database), with the consumer's own write alone (`UNNEST`) beside it.
//!
//! Not measured: real SQS and Lambda (the poller plays the event source mapping on this
//! machine; Lambda's start-ups, scaling and network are absent), the edge (idle throughout).
//! The pure parts (packing the preload, reading the EMF lines, the row arithmetic) are
//! unit-tested; the rest moves bytes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};
use spillway_shared::{pack, parse_keys, BufferLimits, Event, SigningKey};
use spillway_support::Stack;

use super::burst::Monitor;
use super::cpu::{self, Usage, GROUPS};
use super::db::bench_write;
use super::experiment::wait_out_receives;
use super::sqs::{purge, sample_event};
use super::table::{num, ratio, Col, Table};
use super::CONSUMER_BATCH_SIZE;
use crate::step::note;

/// The shapes drained: (events per message, events preloaded). Chosen so that each drain
/// lasts seconds on two cores (long against the poller's start and the 20 ms the progress is
/// read at) and the whole figure well under two minutes.
pub(super) const SHAPES: [(usize, usize); 2] = [(1, 3_000), (100, 30_000)];
/// `MAXIMUM_CONCURRENCY` of the poller: its workers, each with its own connection.
pub(super) const CONNECTIONS: [usize; 3] = [1, 2, 4];
/// A drain that takes longer has failed (a stuck poller, messages lost to a stale receive).
const DEADLINE: Duration = Duration::from_secs(90);
/// How often the progress is read.
const TICK: Duration = Duration::from_millis(20);

/// One drain: a shape, the connections, and what was measured.
#[derive(Debug, Clone)]
pub(super) struct DrainRow {
    pub(super) per_message: usize,
    pub(super) connections: usize,
    pub(super) events: usize,
    pub(super) messages: usize,
    /// From the poller's start until the consumer had stored every event.
    pub(super) seconds: f64,
    /// What the consumer's EMF lines said over the run.
    pub(super) tally: Tally,
    /// Client connections PostgreSQL served at once, at most (sampled).
    pub(super) peak_connections: u64,
    /// CPU used over the run, by group.
    pub(super) cpu: Option<Usage>,
    /// The reference on the same rows, one connection: binary `COPY`, and the consumer's
    /// `UNNEST` write alone (rows/s); NaN until measured.
    pub(super) copy: f64,
    pub(super) unnest: f64,
}

impl DrainRow {
    pub(super) fn events_per_s(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    pub(super) fn per_connection(&self) -> f64 {
        self.events_per_s() / self.connections as f64
    }

    /// The rows one invocation writes: a full receive of messages.
    pub(super) fn rows_per_invocation(&self) -> usize {
        CONSUMER_BATCH_SIZE * self.per_message
    }

    /// Share of the workers' time (connections x seconds) spent in the database write.
    pub(super) fn write_share(&self) -> f64 {
        self.tally.db_write_ms as f64 / 1000.0 / (self.connections as f64 * self.seconds)
    }

    /// Share of the workers' time spent in invocations (verify, decode, write); the rest is
    /// waiting for a batch (a receive not hidden behind an invocation, the poller's start).
    /// NaN when the poller did not say.
    pub(super) fn invocation_share(&self) -> f64 {
        self.tally.invocation_ms.map_or(f64::NAN, |ms| {
            ms as f64 / 1000.0 / (self.connections as f64 * self.seconds)
        })
    }

    /// Milliseconds of CPU of `group` per 1,000 events drained; NaN when not measured.
    fn cpu_per_1000(&self, group: &str) -> f64 {
        self.cpu.as_ref().map_or(f64::NAN, |u| {
            u.seconds_of(group) * 1000.0 * 1000.0 / self.events as f64
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The pure parts

/// The preload: the events as the edge would send them in requests of `per_message` events with
/// group commit off (one message each, packed and sealed by the real packer under `key`), in
/// `SendMessageBatch` calls (message bodies) filled up to the buffer's limits. Fails if a
/// request would not be exactly one message: the figure would not be the shape it names.
pub(super) fn preload_calls(
    events: &[Event],
    per_message: usize,
    key: &SigningKey,
) -> Result<Vec<Vec<String>>> {
    ensure!(per_message > 0, "a message holds at least one event");
    let limits = BufferLimits::default();
    let mut calls: Vec<Vec<String>> = Vec::new();
    let mut call_bytes = 0usize;
    for (n, request) in events.chunks(per_message).enumerate() {
        let packed = pack(request, &limits, key)
            .map_err(|e| anyhow!("the packer refused request {n}: {e}"))?;
        let body = match packed.as_slice() {
            [call] => match call.entries.as_slice() {
                [entry] if entry.event_ids.len() == request.len() => entry.body.clone(),
                _ => bail!("request {n} of {} events is not one message", request.len()),
            },
            _ => bail!("request {n} of {} events is not one call", request.len()),
        };
        let room = calls.last().is_some_and(|c| {
            c.len() < limits.entries_per_call && call_bytes + body.len() <= limits.bytes_per_call
        });
        if !room {
            calls.push(Vec::new());
            call_bytes = 0;
        }
        call_bytes += body.len();
        calls
            .last_mut()
            .context("a call was just opened")?
            .push(body);
    }
    Ok(calls)
}

/// What the consumer's EMF lines (one per invocation) add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub(super) invocations: u64,
    pub(super) events_stored: u64,
    /// Sum of the invocations' `DbWriteMs` (each whole milliseconds).
    pub(super) db_write_ms: u64,
    /// The workers' time inside invocations (verify, decode, write), from the poller's last
    /// line (`invocation_ms`); `None` if it did not say.
    pub(super) invocation_ms: Option<u64>,
}

impl Tally {
    /// Adds the EMF lines among `lines` (the poller's log holds its tracing lines too).
    pub(super) fn add_lines(&mut self, lines: &str) {
        for line in lines.lines().filter(|l| l.contains("\"EventsStored\"")) {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let n = |k: &str| v[k].as_u64().unwrap_or(0);
            self.invocations += 1;
            self.events_stored += n("EventsStored");
            self.db_write_ms += n("DbWriteMs");
        }
    }

    /// Takes `invocation_ms` from the poller's last line ("poller stopped"), among `lines`.
    pub(super) fn add_stop_line(&mut self, lines: &str) {
        for line in lines.lines().filter(|l| l.contains("poller stopped")) {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if let Some(ms) = v["fields"]["invocation_ms"].as_u64() {
                self.invocation_ms = Some(ms);
            }
        }
    }
}

/// Reads the lines appended to a log since it was opened, a whole line at a time.
struct LogTail {
    file: File,
    partial: String,
}

impl LogTail {
    /// From the end of `path` as it is now (it is appended to across restarts).
    fn open(path: &Path) -> Result<LogTail> {
        let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        file.seek(SeekFrom::End(0))?;
        Ok(LogTail {
            file,
            partial: String::new(),
        })
    }

    /// The complete lines written since the last call.
    fn new_lines(&mut self) -> Result<String> {
        self.file.read_to_string(&mut self.partial)?;
        let complete = self.partial.rfind('\n').map_or(0, |i| i + 1);
        let rest = self.partial.split_off(complete);
        Ok(std::mem::replace(&mut self.partial, rest))
    }
}

// ---------------------------------------------------------------------------------------------
// The measurement

/// Every shape at every connection count, then the reference on each shape's stored rows. The
/// stack is left as found: its poller running with its own settings, on an empty queue and
/// table.
pub(super) fn drain(stack: &mut Stack) -> Result<Vec<DrainRow>> {
    let key = parse_keys(&stack.env.envelope_keys)
        .map_err(|e| anyhow!("the stack's ENVELOPE_KEYS: {e}"))?
        .into_iter()
        .next()
        .context("the stack has no envelope key")?;
    let key_id = stack
        .config
        .ingest_keys
        .first()
        .map(|k| k.key_id.clone())
        .context("the stack serves no ingest key")?;
    let saved = stack.config.poller_env.clone();
    let mut stopped = stack.stop_poller().map(|_| Instant::now());
    let result = shapes(stack, &key, &key_id, &saved, &mut stopped);
    stack.config.poller_env = saved;
    wait_out_receives(stopped);
    purge(stack)?;
    stack.pg.psql("truncate events")?;
    stack.start_poller()?;
    result
}

fn shapes(
    stack: &mut Stack,
    key: &SigningKey,
    key_id: &str,
    saved: &[(String, String)],
    stopped: &mut Option<Instant>,
) -> Result<Vec<DrainRow>> {
    let received = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(1_795_852_800_000)
        .context("the sample's receive time")?;
    let mut out = Vec::new();
    for (per_message, events) in SHAPES {
        let sample = (0..events)
            .map(|k| sample_event(k, key_id, received).map(|(e, _)| e))
            .collect::<Result<Vec<Event>>>()?;
        let calls = preload_calls(&sample, per_message, key)?;
        let mut rows = Vec::new();
        for connections in CONNECTIONS {
            let mut env = saved.to_vec();
            env.extend([
                ("MAXIMUM_CONCURRENCY".to_owned(), connections.to_string()),
                ("BATCH_SIZE".to_owned(), CONSUMER_BATCH_SIZE.to_string()),
            ]);
            stack.config.poller_env = env;
            let row = one(stack, &calls, per_message, events, connections, stopped)?;
            note(&format!(
                "{per_message} event(s) per message, {connections} connection(s): {events} events \
                 in {:.2} s ({:.0} events/s, {} invocations, {:.0} % of the workers' time in the \
                 write)",
                row.seconds,
                row.events_per_s(),
                row.tally.invocations,
                row.write_share() * 100.0
            ));
            rows.push(row);
        }
        // The table holds this shape's rows from the last drain: the reference writes them back.
        let batch = CONSUMER_BATCH_SIZE * per_message;
        let w = bench_write(events, batch, Some(stack.env.database_url.as_str()))?;
        for r in &mut rows {
            r.copy = w.copy;
            r.unnest = w.unnest;
        }
        out.extend(rows);
    }
    Ok(out)
}

/// One drain from a freshly preloaded queue into an empty table.
fn one(
    stack: &mut Stack,
    calls: &[Vec<String>],
    per_message: usize,
    events: usize,
    connections: usize,
    stopped: &mut Option<Instant>,
) -> Result<DrainRow> {
    // A receive the last poller left open would take the first messages sent.
    wait_out_receives(*stopped);
    purge(stack)?;
    stack.pg.psql("truncate events")?;
    let url = stack.env.sqs_queue_url.clone();
    for (n, call) in calls.iter().enumerate() {
        let entries: Vec<Value> = call
            .iter()
            .enumerate()
            .map(|(i, body)| json!({"Id": format!("m{i}"), "MessageBody": body}))
            .collect();
        let answer = stack
            .sqs
            .call(
                "SendMessageBatch",
                &json!({"QueueUrl": url, "Entries": entries}),
            )
            .with_context(|| format!("preloading call {n}"))?;
        if answer["Failed"].as_array().is_some_and(|f| !f.is_empty()) {
            bail!(
                "preloading call {n}: failed entries: {:.300}",
                answer["Failed"]
            );
        }
    }
    let messages: usize = calls.iter().map(Vec::len).sum();
    let depth = stack.sqs.depth(&url)?;
    ensure!(
        depth == (messages as u64, 0),
        "the queue holds {depth:?} (visible, in flight) messages after a preload of {messages}"
    );

    let mut monitor = Monitor::start(stack.pg.port())?;
    let mut log = LogTail::open(&stack.config.dir.join("logs/poller.log"))?;
    let mut tally = Tally::default();
    let mut peak = 0u64;
    let before = cpu::snapshot();
    let started = Instant::now();
    let poller = stack.start_poller();
    let waited = poller.and_then(|()| loop {
        tally.add_lines(&log.new_lines()?);
        if tally.events_stored >= events as u64 {
            break Ok(started.elapsed().as_secs_f64());
        }
        let connections = monitor.query(
            "select count(*) from pg_stat_activity where backend_type = 'client backend' \
             and pid <> pg_backend_pid()",
        )?;
        peak = peak.max(connections.parse().unwrap_or(0));
        if started.elapsed() > DEADLINE {
            bail!(
                "the consumer stored {} of {events} events in {} s",
                tally.events_stored,
                DEADLINE.as_secs()
            );
        }
        std::thread::sleep(TICK);
    });
    let used = cpu::usage(
        &before,
        &cpu::snapshot(),
        cpu::ticks_per_second(),
        cpu::cores(),
    );
    if stack.stop_poller().is_some() {
        *stopped = Some(Instant::now());
    }
    let seconds = waited?;
    // The poller's last line, written as it stopped, says how long its invocations took.
    tally.add_stop_line(&log.new_lines()?);
    let stored: u64 = monitor
        .query("select count(*) from events")?
        .parse()
        .context("the row count")?;
    ensure!(
        stored == events as u64,
        "the table holds {stored} rows after a drain of {events} events"
    );
    Ok(DrainRow {
        per_message,
        connections,
        events,
        messages,
        seconds,
        tally,
        peak_connections: peak,
        cpu: Some(used),
        copy: f64::NAN,
        unnest: f64::NAN,
    })
}

// ---------------------------------------------------------------------------------------------
// The table

const N: Option<usize> = Some(0);
const N2: Option<usize> = Some(2);

/// Figure 10: a row per (events per message, connections). The planner reads "events/s per
/// connection" by its name.
pub(super) fn table(rows: &[DrainRow]) -> Table {
    #[rustfmt::skip] // A table: one column per line.
    let cols: [Col<&DrainRow>; 19] = [
        ("events per message", N, |r| json!(r.per_message)),
        ("connections", N, |r| json!(r.connections)),
        ("events", N, |r| json!(r.events)),
        ("messages", N, |r| json!(r.messages)),
        ("seconds", N2, |r| num(r.seconds)),
        ("events/s", N, |r| num(r.events_per_s())),
        ("events/s per connection", N, |r| num(r.per_connection())),
        ("binary COPY rows/s", N, |r| num(r.copy)),
        ("per connection vs COPY", N2, |r| ratio(r.per_connection(), r.copy)),
        ("the consumer's write alone (UNNEST) rows/s", N, |r| num(r.unnest)),
        ("per connection vs the write alone", N2, |r| ratio(r.per_connection(), r.unnest)),
        ("rows per invocation (and per COPY batch)", N, |r| json!(r.rows_per_invocation())),
        ("invocations", N, |r| json!(r.tally.invocations)),
        ("workers' time in the write", N2, |r| num(r.write_share())),
        ("workers' time in invocations (verify, decode, write)", N2, |r| num(r.invocation_share())),
        ("peak PostgreSQL connections", N, |r| json!(r.peak_connections)),
        ("cores busy", N2, |r| r.cpu.as_ref().map_or(Value::Null, |u| num(u.cores_busy))),
        ("local SQS CPU per 1,000 events (ms)", N, |r| num(r.cpu_per_1000(GROUPS[2]))),
        ("consumer, PostgreSQL and the rest: CPU per 1,000 events (ms)", N, |r| num(r.cpu_per_1000(GROUPS[4]))),
    ];
    let mut t = Table::of("figure-10-drain", rows, &cols);
    // The machine's cores, which the rows are a share of, in the header.
    if let Some(c) = t.columns.iter_mut().find(|c| c.name == "cores busy") {
        c.name = format!("cores busy (of {})", cpu::cores());
    }
    t
}

#[cfg(test)]
mod tests;
