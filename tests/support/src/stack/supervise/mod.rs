//! Keeping a local stack alive: finds a dead poller, edge (`wrangler dev` gone, or its
//! `workerd` killed under it, or `/healthz` unanswered 5 times in a row), local SQS or local
//! Kinesis, restarts it with backoff, and keeps a record of what died, why and how often
//! (`supervision.json` in the stack's directory) that the status line shows, from this process
//! or any other.
//!
//! Deciding (who is due for a restart, the backoff, the words of the status line) is pure, in
//! [`Supervision`]; [`Stack::heal`] is the thin part that looks at processes and restarts them.
//!
//! What a restart cannot bring back: a local SQS comes back **empty** (moto keeps queues in
//! memory; LocalStack's persistence is not in its community edition): its queues are created
//! again, with the same URLs, so the pipeline works again, but what the dead server held is
//! gone, and the status line keeps saying it restarted. The local Kinesis comes back on its
//! port with its persisted state (`cargo xtask dev|up` keep it in `kinesis/`), less what it
//! acknowledged after its last write (up to 5 s); an ephemeral stack's stream comes back
//! empty. What it does not do: restart a stalled (not dead) server, which for the local SQS
//! would drop its queue (the status line shows it as not answering), or PostgreSQL (its data
//! directory outlives it, and a stopped cluster is an outage the consumer rides out by design;
//! the status line says "database unreachable").

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::{Stack, REGION};
use crate::sqs::LocalSqs;
use crate::{port_open, KinesisOptions, KinesisServer, SqsServer};

/// The record's file name, in the stack's directory.
pub const SUPERVISION_FILE: &str = "supervision.json";

/// A died part counts as crash-looping, and its next restart waits longer, when it dies within
/// this long of its last restart.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// The longest wait between two restarts of a part that keeps dying.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long one `/healthz` probe of the edge may take, and how many failed probes in a row make
/// the edge count as dead (a hung `workerd` whose process is still there).
pub const EDGE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const EDGE_PROBE_FAILURES: u32 = 5;

/// A part of the pipeline the supervisor watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// The local SQS (moto or LocalStack). First: the others need it.
    Sqs,
    /// The local Kinesis, with the Kinesis buffer.
    Kinesis,
    Poller,
    /// `wrangler dev` and its `workerd`.
    Edge,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Sqs, Part::Kinesis, Part::Poller, Part::Edge];

    /// Its name on the status line.
    pub fn name(self) -> &'static str {
        match self {
            Part::Sqs => "local SQS",
            Part::Kinesis => "local Kinesis",
            Part::Poller => "poller",
            Part::Edge => "edge",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Part::Sqs => "sqs",
            Part::Kinesis => "kinesis",
            Part::Poller => "poller",
            Part::Edge => "edge",
        }
    }

    fn from_key(key: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.key() == key)
    }
}

/// What happened to one part. Times are Unix milliseconds, so that another process can read
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartLog {
    /// Successful restarts.
    pub restarts: u32,
    pub last_restart_ms: Option<u64>,
    /// Set while the part is down: since when.
    pub down_since_ms: Option<u64>,
    /// Why it was last found dead, or why its last restart failed.
    pub cause: String,
    /// Restarts in a row that failed or died again within 30 s of the last: the backoff.
    pub failures: u32,
    /// Not restarted before this.
    pub next_try_ms: u64,
    /// How long the last outage lasted, from its first sighting to the restart, in ms.
    pub last_outage_ms: Option<u64>,
}

/// The supervisor's record: who supervises (pid and start time, so a reused pid is not taken
/// for it), and what happened to each part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Supervision {
    pub pid: u32,
    /// The supervisor's start time in clock ticks since boot (`/proc/<pid>/stat`).
    pub start: u64,
    pub parts: BTreeMap<Part, PartLog>,
}

/// The wait before the next restart after `failures` failed (or short-lived) restarts in a
/// row: none for the first, so a crash is repaired at once, then 1 s, 2 s, 4 s, ... up to
/// 30 s.
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let secs = 1u64 << (failures - 1).min(10);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(ms)
        .unwrap_or(0)
}

fn ago(now: u64, then: u64) -> String {
    format!("{} s", now.saturating_sub(then) / 1000)
}

impl Supervision {
    fn log(&mut self, part: Part) -> &mut PartLog {
        self.parts.entry(part).or_default()
    }

    /// `part` was found dead at `now` because of `cause`. The first sighting of an outage
    /// schedules its restart: at once, unless the part died soon after its last restart.
    pub fn found_dead(&mut self, part: Part, cause: &str, now: u64) {
        let log = self.log(part);
        if log.down_since_ms.is_some() {
            return;
        }
        log.down_since_ms = Some(now);
        log.cause = cause.to_owned();
        let short_lived = log
            .last_restart_ms
            .is_some_and(|t| now.saturating_sub(t) < ms(STABLE_AFTER));
        log.failures = if short_lived { log.failures + 1 } else { 0 };
        log.next_try_ms = now + ms(backoff(log.failures));
    }

    /// Is `part` down and its restart due at `now`?
    pub fn due(&self, part: Part, now: u64) -> bool {
        self.parts
            .get(&part)
            .is_some_and(|l| l.down_since_ms.is_some() && now >= l.next_try_ms)
    }

    /// `part` runs again, restarted at `now`.
    pub fn restarted(&mut self, part: Part, now: u64) {
        let log = self.log(part);
        log.restarts += 1;
        log.last_restart_ms = Some(now);
        log.last_outage_ms = log.down_since_ms.map(|since| now.saturating_sub(since));
        log.down_since_ms = None;
    }

    /// A restart of `part` failed with `error`: it stays down, and is tried again after a
    /// longer wait.
    pub fn restart_failed(&mut self, part: Part, error: &str, now: u64) {
        let log = self.log(part);
        log.failures += 1;
        log.cause = format!("restart failed: {error}");
        log.next_try_ms = now + ms(backoff(log.failures));
    }

    /// Is any part down now?
    pub fn any_down(&self) -> bool {
        self.parts.values().any(|l| l.down_since_ms.is_some())
    }

    /// The status line's words for each part that is down or was restarted, e.g. `poller down
    /// 3 s (exited: signal 9), restarting` or `poller restarted 2x, last 12 s ago`.
    pub fn notes(&self, now: u64) -> Vec<String> {
        self.parts
            .iter()
            .filter_map(|(part, log)| {
                let name = part.name();
                match log.down_since_ms {
                    Some(since) => {
                        let when = if now >= log.next_try_ms {
                            "restarting".to_owned()
                        } else {
                            format!(
                                "next restart in {} s",
                                (log.next_try_ms - now).div_ceil(1000)
                            )
                        };
                        Some(format!(
                            "{name} down {} ({}), {when}{}",
                            ago(now, since),
                            log.cause,
                            if log.restarts > 0 {
                                format!(", restarted {}x before", log.restarts)
                            } else {
                                String::new()
                            }
                        ))
                    }
                    None => log.last_restart_ms.map(|t| {
                        format!(
                            "{name} restarted {}x, last {} ago",
                            log.restarts,
                            ago(now, t)
                        )
                    }),
                }
            })
            .collect()
    }

    pub fn to_json(&self) -> String {
        let parts: serde_json::Map<String, Value> = self
            .parts
            .iter()
            .map(|(p, l)| {
                (
                    p.key().to_owned(),
                    json!({
                        "restarts": l.restarts,
                        "last_restart_ms": l.last_restart_ms,
                        "down_since_ms": l.down_since_ms,
                        "cause": l.cause,
                        "failures": l.failures,
                        "next_try_ms": l.next_try_ms,
                        "last_outage_ms": l.last_outage_ms,
                    }),
                )
            })
            .collect();
        json!({"pid": self.pid, "start": self.start, "parts": parts}).to_string()
    }

    /// Reads [`Supervision::to_json`]'s text back; `None` when it is not such a text.
    pub fn from_json(text: &str) -> Option<Supervision> {
        let v: Value = serde_json::from_str(text).ok()?;
        let parts = v["parts"]
            .as_object()?
            .iter()
            .filter_map(|(k, l)| {
                Some((
                    Part::from_key(k)?,
                    PartLog {
                        restarts: u32::try_from(l["restarts"].as_u64()?).ok()?,
                        last_restart_ms: l["last_restart_ms"].as_u64(),
                        down_since_ms: l["down_since_ms"].as_u64(),
                        cause: l["cause"].as_str().unwrap_or_default().to_owned(),
                        failures: u32::try_from(l["failures"].as_u64()?).ok()?,
                        next_try_ms: l["next_try_ms"].as_u64()?,
                        last_outage_ms: l["last_outage_ms"].as_u64(),
                    },
                ))
            })
            .collect();
        Some(Supervision {
            pid: u32::try_from(v["pid"].as_u64()?).ok()?,
            start: v["start"].as_u64()?,
            parts,
        })
    }

    /// The record in the stack directory `dir`, if a supervisor has written one.
    pub fn read(dir: &Path) -> Option<Supervision> {
        Supervision::from_json(&fs::read_to_string(dir.join(SUPERVISION_FILE)).ok()?)
    }

    /// Writes the record into `dir` whole (a reader never sees half of it).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(format!("{SUPERVISION_FILE}.tmp"));
        fs::write(&tmp, self.to_json()).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, dir.join(SUPERVISION_FILE))?;
        Ok(())
    }

    /// Does the process that wrote the record still run?
    pub fn supervisor_alive(&self) -> bool {
        process_start(self.pid).is_some_and(|s| s == self.start)
    }
}

/// The start time (clock ticks since boot) of the running process `pid`, if it runs.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let p = crate::procs::Proc::parse(&stat)?;
    (!matches!(p.state, 'Z' | 'X')).then_some(p.start)
}

/// A `GET /healthz` of the edge on `port` that gives up after `timeout` (connect and read):
/// true only on a `200`.
pub fn edge_healthy(port: u16, timeout: Duration) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let deadline = Instant::now() + timeout;
    if write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() && Instant::now() < deadline {
        match s.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")
}

/// The services recorded in the run directory `dir` (what [`crate::sweep`] would stop), by name
/// (`poller`, `wrangler`, `moto`, `localstack`, `kinesis-local`, `pg`), each with whether it
/// still runs: what `cargo xtask up` names when it finds a pipeline half-running.
pub fn recorded_services(dir: &Path) -> Vec<(String, bool)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, bool)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("service"))
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_owned();
            let content = fs::read_to_string(&p).ok()?;
            Some((record_name(&stem).to_owned(), record_alive(&content)))
        })
        .collect();
    out.sort();
    out
}

/// The service name of a record's file stem, `NAME-PID-N-NANOS` (the name may hold dashes).
fn record_name(stem: &str) -> &str {
    stem.rsplitn(4, '-').last().unwrap_or(stem)
}

fn record_alive(content: &str) -> bool {
    match content.split_once(' ') {
        Some(("group", pgid)) => pgid
            .trim()
            .parse()
            .is_ok_and(|pgid| crate::procs::Family::new(pgid).alive()),
        Some(("postgres", data)) => Path::new(data.trim()).join("postmaster.pid").exists(),
        _ => false,
    }
}

impl Stack {
    /// The pid of the poller (for a test that kills it as an outsider would).
    pub fn poller_pid(&self) -> Option<u32> {
        self.poller.as_ref().map(crate::Service::pid)
    }

    /// The pids of the edge's `workerd` processes (under `wrangler dev`).
    pub fn workerd_pids(&self) -> Vec<u32> {
        self.edge.as_ref().map_or_else(Vec::new, |e| {
            crate::procs::family_members_named(e.pid(), "workerd")
        })
    }

    /// Where the supervision record of this stack is.
    pub fn supervision_file(&self) -> PathBuf {
        self.config.dir.join(SUPERVISION_FILE)
    }

    /// Which parts are dead now, and why.
    fn dead_parts(&mut self) -> Vec<(Part, String)> {
        let mut dead = Vec::new();
        if let Some(status) = self.sqs_server.exited() {
            dead.push((Part::Sqs, format!("exited: {status}")));
        }
        if let Some(status) = self.kinesis.as_mut().and_then(|k| k.service().exited()) {
            dead.push((Part::Kinesis, format!("exited: {status}")));
        }
        match self.poller.as_mut().map(crate::Service::exited) {
            None => dead.push((Part::Poller, "not running".to_owned())),
            Some(Some(status)) => dead.push((Part::Poller, format!("exited: {status}"))),
            Some(None) => {}
        }
        let edge_cause = match self.edge.as_mut() {
            None => Some("not running".to_owned()),
            Some(e) => match e.exited() {
                Some(status) => Some(format!("wrangler exited: {status}")),
                None => {
                    let now = crate::procs::family_members_named(e.pid(), "workerd");
                    if self.edge_workerd.is_empty() {
                        self.edge_workerd = now.clone();
                    }
                    if now.is_empty() {
                        Some("workerd gone".to_owned())
                    } else if self.edge_workerd.iter().any(|pid| !now.contains(pid)) {
                        // Miniflare may start another, but a request in flight was lost and
                        // the issue saw the edge answer nothing useful after it.
                        Some("workerd killed".to_owned())
                    } else {
                        None
                    }
                }
            },
        };
        let edge_cause = edge_cause.or_else(|| {
            if edge_healthy(self.config.edge_port, EDGE_PROBE_TIMEOUT) {
                self.edge_probe_failures = 0;
                None
            } else {
                self.edge_probe_failures += 1;
                (self.edge_probe_failures >= EDGE_PROBE_FAILURES).then(|| {
                    format!(
                        "/healthz unanswered {} times in a row",
                        self.edge_probe_failures
                    )
                })
            }
        });
        if let Some(cause) = edge_cause {
            dead.push((Part::Edge, cause));
        }
        dead
    }

    /// One round of supervision: finds what died, restarts what is due (the local SQS first,
    /// then the poller, then the edge), and writes the record ([`SUPERVISION_FILE`]) before
    /// each restart and after the round, so the status line names a fault while it lasts.
    /// Returns a line per thing that happened, for a log. Call it about once a second.
    pub fn heal(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.supervision.pid == 0 {
            self.supervision.pid = std::process::id();
            self.supervision.start = process_start(self.supervision.pid).unwrap_or(0);
        }
        let now = now_ms();
        for (part, cause) in self.dead_parts() {
            let was_down = self
                .supervision
                .parts
                .get(&part)
                .is_some_and(|l| l.down_since_ms.is_some());
            self.supervision.found_dead(part, &cause, now);
            if !was_down {
                lines.push(format!("{} died ({cause})", part.name()));
            }
        }
        let _ = self.supervision.write(&self.config.dir);
        for part in Part::ALL {
            if !self.supervision.due(part, now_ms()) {
                continue;
            }
            let t = Instant::now();
            let result = match part {
                Part::Sqs => self.restart_sqs(),
                Part::Poller => {
                    if let Some(mut old) = self.poller.take() {
                        old.kill();
                    }
                    self.start_poller()
                }
                Part::Edge => self.replace_edge(),
                Part::Kinesis => self.restart_kinesis(),
            };
            match result {
                Ok(()) => {
                    self.supervision.restarted(part, now_ms());
                    if part == Part::Edge {
                        self.edge_probe_failures = 0;
                    }
                    lines.push(format!(
                        "{} restarted ({:.1} s)",
                        part.name(),
                        t.elapsed().as_secs_f64()
                    ));
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    let e = e.lines().next().unwrap_or_default().to_owned();
                    self.supervision.restart_failed(part, &e, now_ms());
                    lines.push(format!("{} restart failed: {e}", part.name()));
                }
            }
            let _ = self.supervision.write(&self.config.dir);
        }
        lines
    }

    /// Starts the local SQS again on its port and creates its queues again (same names, so
    /// the same URLs the edge and the poller have): see the module documentation for what is
    /// lost.
    fn restart_sqs(&mut self) -> Result<()> {
        let config = &self.config;
        let server = SqsServer::start(config.sqs, config.sqs_port, &config.dir)?;
        // Should a queue not be created, `server` is dropped (stopped) on the way out and the
        // dead one's handle stays: the next round finds it dead and tries again.
        let sqs = LocalSqs::new(config.sqs_port, REGION);
        let dlq = sqs.create_queue(&format!("{}-dlq", config.queue_name), &[])?;
        match &self.env.kinesis {
            None => {
                Self::create_main_queue(config, &sqs, &dlq)?;
            }
            Some(_) => {
                sqs.create_queue(&format!("{}-failures", config.queue_name), &[])?;
            }
        }
        let logs = config.dir.join("logs");
        let _ = fs::remove_file(logs.join("sqs.log"));
        let _ = std::os::unix::fs::symlink(server.log_path(), logs.join("sqs.log"));
        // The dead one's handle goes now: it reaps the process and removes its record.
        self.sqs_server = server;
        Ok(())
    }

    /// Starts the local Kinesis again on its port, with its persisted state, and waits until
    /// the stream is active again.
    fn restart_kinesis(&mut self) -> Result<()> {
        let Some(port) = self.kinesis.as_ref().map(KinesisServer::port) else {
            return Ok(());
        };
        let persist_dir = self.config.dir.join("kinesis");
        // Started while the dead one's handle is still held: should this fail, the next round
        // still finds it dead and tries again.
        let server = KinesisServer::start_on(
            &KinesisOptions {
                stream: self.config.stream_name.clone(),
                shards: self.config.shards,
                persist_dir: self.config.keep_database.then_some(persist_dir),
            },
            port,
        )?;
        let logs = self.config.dir.join("logs");
        let _ = fs::remove_file(logs.join("kinesis.log"));
        let _ = std::os::unix::fs::symlink(server.log_path(), logs.join("kinesis.log"));
        // The dead one's handle goes now: it reaps the process and removes its record.
        self.kinesis = Some(server);
        Ok(())
    }

    /// Stops what is left of the edge (wrangler without its workerd still holds the port) and
    /// starts it again.
    fn replace_edge(&mut self) -> Result<()> {
        if let Some(mut old) = self.edge.take() {
            old.kill();
        }
        self.edge_workerd.clear();
        let deadline = Instant::now() + Duration::from_secs(10);
        while port_open(self.config.edge_port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.start_edge()
    }
}

#[cfg(test)]
mod tests;
