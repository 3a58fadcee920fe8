//! The local Kinesis: kinesis-local 0.6.2 (npm; kinesis-mock compiled to JavaScript, no
//! dependencies) run by node as a [`Service`], with one stream created and waited for.
//!
//! Why this emulator: moto 5.2.5 loses acknowledged records under concurrent puts (two puts to
//! a busy shard can get the same sequence number, and the second overwrites the first), which
//! would make every test of the Kinesis buffer meaningless; kinesis-local does not (the test
//! `tests/services.rs::kinesis_local_keeps_every_acknowledged_record` proves it on each run).
//! It also enforces the per-shard throughput limits, so it can answer
//! `ProvisionedThroughputExceededException` as Kinesis does.
//!
//! Persistence: with a data directory, kinesis-local writes its whole state there every
//! `PERSIST_INTERVAL` (5 s) and once more when it stops on SIGTERM, and loads it when it starts.
//! So `cargo xtask down` then `up` keeps the stream and its records. A SIGKILL (or a crash) loses
//! what was acknowledged since the last write: up to 5 s of records (measured: a record put
//! under a second before SIGKILL was gone after the restart). Real Kinesis has no such window;
//! the tests that kill processes kill the poller or the consumer, never the emulator.
//!
//! This module does not install kinesis-local: `cargo xtask` does, with `npm ci`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::kinesis::{stream_arn, LocalKinesis};
use crate::{free_port, port_open, repo_root, run_dir, Service};

/// How long kinesis-local has to load and answer, and a stream to become `ACTIVE`. It starts in
/// about a second on an idle machine; the margin is for a loaded one and a large persisted file.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `node_modules/kinesis-local/main.js` in the repository, or `$SPILLWAY_KINESIS_LOCAL` (the
/// path of a `main.js`, with its `server.json` beside it).
pub fn kinesis_local_main() -> PathBuf {
    std::env::var_os("SPILLWAY_KINESIS_LOCAL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("node_modules/kinesis-local/main.js"))
}

/// What to start: the stream and where the state lives.
#[derive(Debug, Clone)]
pub struct KinesisOptions {
    /// The stream created at start (kept if the persisted state already has it).
    pub stream: String,
    /// Its shard count when it is created. A reloaded stream keeps the count it had.
    pub shards: u32,
    /// Where kinesis-local persists its state (`kinesis-data.json`); `None` keeps it in memory
    /// only, gone when the process stops.
    pub persist_dir: Option<PathBuf>,
}

/// kinesis-local on 127.0.0.1 (plain HTTP), stopped on drop (SIGTERM, so it writes its state).
#[derive(Debug)]
pub struct KinesisServer {
    port: u16,
    stream: String,
    shards: u32,
    service: Service,
}

impl KinesisServer {
    /// Starts kinesis-local on a free port, creates the stream (or finds it reloaded) and waits
    /// until it is `ACTIVE`.
    pub fn start(options: &KinesisOptions) -> Result<KinesisServer> {
        Self::start_on(options, free_port()?)
    }

    /// [`KinesisServer::start`] on `port`: how a supervisor replaces a dead one where the edge
    /// and the poller still send (its persisted state, if any, is reloaded; what it acknowledged
    /// after its last write is gone, see the module documentation).
    pub fn start_on(options: &KinesisOptions, port: u16) -> Result<KinesisServer> {
        if port_open(port) {
            bail!("port {port} (local Kinesis) is already in use");
        }
        let main = kinesis_local_main();
        let cert = main.with_file_name("server.json");
        if !main.is_file() || !cert.is_file() {
            bail!(
                "{} is missing: run `cargo xtask test` (or `cargo xtask dev`) once, or `npm ci`, \
                 to install kinesis-local",
                main.display()
            );
        }
        // It always serves TLS as well; nothing of ours uses it, but the port must be free.
        let tls_port = loop {
            let p = free_port()?;
            if p != port {
                break p;
            }
        };
        // `setsid` makes node the leader of a session (and group) of its own, with the same
        // pid: a Ctrl-C in the terminal or the terminal closing does not reach it, so it stops
        // only when we stop it, and then with SIGTERM, which makes it write its state.
        let mut cmd = Command::new("setsid");
        cmd.arg("node")
            .arg(&main)
            // Without it kinesis-local looks in the working directory and dies: "server.json
            // not found".
            .env("KINESIS_MOCK_CERT_PATH", &cert)
            .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
            .env("KINESIS_MOCK_TLS_PORT", tls_port.to_string())
            .env("AWS_REGION", crate::stack::REGION)
            .env("LOG_LEVEL", "WARN");
        match &options.persist_dir {
            Some(dir) => {
                fs::create_dir_all(dir)?;
                cmd.env("SHOULD_PERSIST_DATA", "true")
                    .env("LOAD_DATA_IF_EXISTS", "true")
                    .env("PERSIST_PATH", dir);
            }
            None => {
                cmd.env("SHOULD_PERSIST_DATA", "false")
                    .env("LOAD_DATA_IF_EXISTS", "false");
            }
        }
        let log = run_dir().join(format!("kinesis-{port}.log"));
        let _ = fs::remove_file(&log);
        let mut service = Service::spawn_own_session("kinesis-local", cmd, &log)?;
        let deadline = Instant::now() + START_TIMEOUT;
        let client = LocalKinesis::new(port, crate::stack::REGION);
        loop {
            if port_open(port) && client.call("ListStreams", &serde_json::json!({})).is_ok() {
                break;
            }
            if let Some(status) = service.exited() {
                bail!("kinesis-local exited ({status}): {}", service.log_tail(20));
            }
            if Instant::now() > deadline {
                bail!(
                    "kinesis-local did not answer in {START_TIMEOUT:?}: {}",
                    service.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let shards = client.ensure_stream(&options.stream, options.shards, left)?;
        Ok(KinesisServer {
            port,
            stream: options.stream.clone(),
            shards,
            service,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, the endpoint (`KINESIS_ENDPOINT`) for Kinesis clients.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The stream's open shards when it became active.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    pub fn stream_arn(&self) -> String {
        stream_arn(crate::stack::REGION, &self.stream)
    }

    pub fn client(&self) -> LocalKinesis {
        LocalKinesis::new(self.port, crate::stack::REGION)
    }

    pub fn log_path(&self) -> &Path {
        self.service.log_path()
    }

    pub fn service(&mut self) -> &mut Service {
        &mut self.service
    }

    /// Stops it with SIGTERM (it writes its state) and waits until it has exited.
    pub fn stop(mut self) -> Option<std::process::ExitStatus> {
        self.service.stop(Duration::from_secs(10))
    }

    /// Leaves it running; [`sweep`](crate::sweep) stops it later (SIGTERM first).
    pub fn detach(self) {
        self.service.detach();
    }
}
