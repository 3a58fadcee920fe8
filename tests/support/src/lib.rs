//! Real services for Spillway's tests and for `cargo xtask dev`: a throwaway PostgreSQL cluster,
//! the local SQS (moto, or LocalStack), the local Kinesis (kinesis-local), any long-running
//! child process, a fault-injecting TCP proxy, and a metering HTTP proxy that counts the SQS
//! sends (and billed requests) passing through.
//!
//! Every service runs on 127.0.0.1 on a private port and is stopped when its handle is dropped.
//! Because a test process can die before `Drop` runs, each service also leaves a small record in
//! [`run_dir`]; `cargo xtask test` calls [`sweep`] at the end so nothing it started outlives it.
//!
//! This crate does not install anything: `cargo xtask` makes sure PostgreSQL, moto and
//! kinesis-local (and LocalStack, when chosen) are there.

pub mod events;
pub mod kinesis;
pub mod kinesis_server;
pub mod meter;
mod pg;
mod procs;
mod proxy;
pub mod redact;
pub mod secrets;
pub mod sqs;
pub mod sqs_server;
pub mod stack;
pub mod testkit;
pub mod wrangler;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use pg::pg_command;

pub use kinesis::LocalKinesis;
pub use kinesis_server::{KinesisOptions, KinesisServer};
pub use meter::{BufferMeter, MeterSnapshot};
pub use pg::{pg_bin_dir, psql, Postgres};
pub use proxy::{Count, FaultMode, FaultProxy, Pick, RecordError, RecordPlan};
pub use secrets::Secrets;
pub use sqs::LocalSqs;
pub use sqs_server::{LocalStack, SqsKind, SqsServer};
pub use stack::{BufferKind, Stack, StackConfig, Status};
pub use testkit::{gzip, worker_built, worker_built_for};

/// The repository root (the workspace directory, where `rust-toolchain.toml` is).
///
/// Found from `CARGO_MANIFEST_DIR` at run time (cargo sets it for the test or binary it runs,
/// and services started from there inherit it), not from the path compiled in: a target
/// directory shared between clones (CI's `~/.cache/spillway/target`) can hand this checkout a
/// build made in another one, since deleted.
pub fn repo_root() -> PathBuf {
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .and_then(|dir| {
            Path::new(&dir)
                .ancestors()
                .find(|d| d.join("rust-toolchain.toml").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or(compiled);
    root.canonicalize().unwrap_or(root)
}

/// Where services keep their data, logs and leftover records: `$SPILLWAY_RUN_DIR`, or
/// `target/spillway-run` in the repository.
pub fn run_dir() -> PathBuf {
    let dir = std::env::var_os("SPILLWAY_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/spillway-run"));
    let _ = fs::create_dir_all(&dir);
    dir
}

/// A TCP port on 127.0.0.1 that was free a moment ago, and that nothing accepts connections on
/// once the probe socket is closed: tests running in parallel start services on ports of their
/// own, and a port the kernel hands out can already be another test's by the time it is used
/// (seen under load: "port ... is already in use"). Such a port is skipped for another one.
pub fn free_port() -> Result<u16> {
    let mut taken = Vec::new();
    for _ in 0..20 {
        let port = {
            let l =
                TcpListener::bind("127.0.0.1:0").context("binding a probe socket on 127.0.0.1")?;
            l.local_addr()?.port()
        };
        if !port_open(port) {
            return Ok(port);
        }
        taken.push(port);
    }
    bail!("every free port the kernel gave was in use a moment later: {taken:?}")
}

/// Is something accepting TCP connections on 127.0.0.1:`port`?
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Waits until 127.0.0.1:`port` accepts connections.
pub fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if port_open(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listened on 127.0.0.1:{port} within {timeout:?}")
}

/// A minimal HTTP/1.1 GET on 127.0.0.1, returning status and body; enough for health checks
/// without pulling an HTTP client into every test.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP response: {raw:.80}"))?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_owned()))
}

pub(crate) fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A leftover record: what [`sweep`] must stop if the owner died without cleaning up.
pub(crate) struct Record(pub(crate) PathBuf);

impl Record {
    pub(crate) fn write(name: &str, content: &str) -> Self {
        let path = run_dir().join(format!("{name}.service"));
        let _ = fs::write(&path, content);
        Record(path)
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Stops every service whose record is still in `dir` (their owner died, or they were
/// detached on purpose by `cargo xtask up`), and returns how many.
///
/// Process groups get SIGTERM first (the poller finishes its batch), then SIGKILL after `grace`;
/// either way this returns only once no process of any group, nor any descendant, still runs,
/// so that the ports are free. PostgreSQL clusters get a fast shutdown, waited for.
pub fn sweep(dir: &Path, grace: Duration) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut records: Vec<(PathBuf, String)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("service"))
        .map(|p| {
            let c = fs::read_to_string(&p).unwrap_or_default();
            (p, c)
        })
        .collect();
    // Processes before databases: stop the writers first.
    records.sort_by_key(|(_, c)| c.starts_with("postgres"));
    let mut families = Vec::new();
    for (_, content) in &records {
        if let Some(pgid) = content.strip_prefix("group ") {
            if let Ok(pgid) = pgid.trim().parse() {
                let mut family = procs::Family::new(pgid);
                if family.alive() {
                    families.push(family);
                }
            }
        }
    }
    let mut stopped = families.len();
    procs::stop(&mut families, grace);
    for (path, content) in &records {
        if content.starts_with("group ") {
            let _ = fs::remove_file(path);
        }
    }
    for (path, content) in &records {
        if let Some(data) = content.strip_prefix("postgres ") {
            if let Ok(bin) = pg_bin_dir() {
                let ok = pg_command(&bin, "pg_ctl")
                    .args(["-D", data.trim(), "-m", "fast", "-w", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                stopped += usize::from(ok);
            }
            let _ = fs::remove_file(path);
        }
    }
    stopped
}

fn group_alive(pgid: &str) -> bool {
    pgid.parse()
        .is_ok_and(|pgid| procs::Family::new(pgid).alive())
}

/// A child process in its own process group, stopped (the whole group) on drop.
///
/// Process groups matter: `wrangler dev` starts `workerd`, and killing only the parent would
/// leave `workerd` serving.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    record: Option<PathBuf>,
}

impl Service {
    /// Spawns `cmd` in a new process group with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Service> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        Self::spawn_as_is(name, cmd, log)
    }

    /// Spawns `cmd`, a `setsid PROGRAM ...` command line, as it is: setsid(1) called by a
    /// process that leads no group makes it a session leader in place (no fork), so the pid
    /// we hold is the program's and its group id, as [`Service`] needs. (Put in a group of its
    /// own first, as [`Service::spawn`] does, setsid would fork and the pid would be a wrapper's.)
    pub fn spawn_own_session(name: &str, cmd: Command, log: &Path) -> Result<Service> {
        if cmd.get_program() != "setsid" {
            bail!("spawn_own_session runs `setsid ...` command lines, not {cmd:?}");
        }
        Self::spawn_as_is(name, cmd, log)
    }

    fn spawn_as_is(name: &str, mut cmd: Command, log: &Path) -> Result<Service> {
        if let Some(parent) = log.parent() {
            fs::create_dir_all(parent)?;
        }
        let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        let record = Record::write(&unique(name), &format!("group {}", child.id()));
        let path = record.0.clone();
        std::mem::forget(record);
        Ok(Service {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            record: Some(path),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Has the process exited? Returns its status if so.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the whole group.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), "--", &format!("-{}", c.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once neither the process nor anything it
    /// started still runs (its whole group and every descendant), with the leader's status.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.end(Some(grace))
    }

    /// Stops the family, with SIGTERM and `grace` before SIGKILL or with SIGKILL only, and
    /// reaps the leader.
    fn end(&mut self, grace: Option<Duration>) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // The family is read before any signal: once the leader is gone, its children hang
        // from init and only their recorded identity still ties them to this service.
        let mut family = [procs::Family::new(child.id())];
        match grace {
            Some(grace) => procs::stop(&mut family, grace),
            None => procs::kill(&mut family),
        };
        let status = child.wait().ok();
        if let Some(r) = self.record.take() {
            let _ = fs::remove_file(r);
        }
        status
    }

    /// Leaves the process running after this handle is gone; its record stays in [`run_dir`]
    /// so that [`sweep`] stops it later.
    pub fn detach(mut self) -> u32 {
        let pid = self.pid();
        self.child = None;
        self.record = None;
        pid
    }

    /// SIGKILL to the group and every descendant, as a crash would; returns once they are gone.
    pub fn kill(&mut self) {
        let _ = self.end(None);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop(Duration::from_secs(3));
        }
        let _ = &self.name;
    }
}

/// The local SQS: moto's server, from the project's venv (`.venv`, made by `cargo xtask`).
#[derive(Debug)]
pub struct Moto {
    port: u16,
    service: Service,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Result<Moto> {
        Self::start_on(free_port()?)
    }

    /// Starts moto on `port`.
    pub fn start_on(port: u16) -> Result<Moto> {
        let bin = std::env::var_os("SPILLWAY_MOTO_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".venv/bin/moto_server"));
        if !bin.exists() {
            bail!(
                "{} is missing: run `cargo xtask test` (or `cargo xtask dev`) once to install moto",
                bin.display()
            );
        }
        if port_open(port) {
            bail!("port {port} is already in use; choose another");
        }
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let log = run_dir().join(format!("moto-{port}.log"));
        let mut service = Service::spawn("moto", cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = http_get(port, "/moto-api/") {
                break;
            }
            if let Some(status) = service.exited() {
                bail!("moto exited ({status}): {}", service.log_tail(20));
            }
            if Instant::now() > deadline {
                bail!("moto did not answer in 20 s: {}", service.log_tail(20));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Moto { port, service })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, the endpoint for the SQS client.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn service(&mut self) -> &mut Service {
        &mut self.service
    }

    pub fn log_path(&self) -> &Path {
        self.service.log_path()
    }

    /// Leaves moto running; [`sweep`] stops it later.
    pub fn detach(self) {
        self.service.detach();
    }
}

/// How many services recorded in `dir` are still running.
pub fn live_services(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter(|c| match c.split_once(' ') {
            Some(("group", pgid)) => group_alive(pgid.trim()),
            Some(("postgres", data)) => Path::new(data.trim()).join("postmaster.pid").exists(),
            _ => false,
        })
        .count()
}

#[cfg(test)]
mod tests;
