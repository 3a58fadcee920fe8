//! The whole local pipeline: PostgreSQL (migrated), the buffer, the poller running the
//! consumer, and `wrangler dev` serving the edge.
//!
//! The buffer is an SQS queue with its DLQ on the local SQS (moto or LocalStack), or, with
//! [`BufferKind::Kinesis`], a stream on the local Kinesis (kinesis-local) with the poller
//! playing the event source mapping; the local SQS then still holds the dead-letter queue (the
//! records the consumer can never store) and the mapping's on-failure destination.
//!
//! `cargo xtask dev|up|down` and the end-to-end tests both use this, so what a developer runs
//! by hand is what the tests check.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::kinesis_server::{KinesisOptions, KinesisServer};
use crate::sqs::LocalSqs;
use crate::{
    free_port, http_get, port_open, repo_root, BufferMeter, FaultProxy, Postgres, Service, SqsKind,
    SqsServer,
};

mod buffer;
mod drain;
mod files;
mod keys;
mod status;
mod supervise;

pub use buffer::{buffers_in_wasm, BufferKind, UnknownBuffer};
pub use drain::{at_risk, wait_drained};
pub use files::{
    dev_vars, prebuilt_config, prebuilt_config_serving, without_queues, write_private, DevEnv,
    KinesisEnv,
};
pub use keys::{ingest_keys_var, parse_ingest_keys, IngestKey, KEYS_VAR, KEY_ID};
pub use status::{
    accepted_events, checkpoint_file, max_millis_behind, probe_error, read_status, spill_counts,
    stream_name, Status, StreamStatus, PROBE_TIMEOUT,
};
pub use supervise::{
    backoff, edge_healthy, now_ms, process_start, recorded_services, Part, PartLog, Supervision,
    EDGE_PROBE_TIMEOUT, SUPERVISION_FILE,
};

/// Everything that can be chosen about a local stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// State directory: `logs/`, `pg/`, `dev.env`, wrangler's local state.
    pub dir: PathBuf,
    /// Port of `wrangler dev` (the ingest URL). Default 8787.
    pub edge_port: u16,
    /// Port of wrangler's DevTools inspector; `None` (the default) runs without it
    /// ([`crate::wrangler`] says why).
    pub inspector_port: Option<u16>,
    /// Port of the local SQS. Default 9324.
    pub sqs_port: u16,
    /// Which local SQS server runs. Default moto.
    pub sqs: SqsKind,
    /// The buffer between edge and consumer. Default SQS.
    pub buffer: BufferKind,
    /// With the Kinesis buffer: the stream's name. Default `spillway-events`.
    pub stream_name: String,
    /// With the Kinesis buffer: the stream's shard count when it is created (a stream
    /// reloaded from `dir/kinesis` keeps its own). Default 4.
    pub shards: u32,
    /// Port of PostgreSQL. Default 54329.
    pub pg_port: u16,
    /// Put a fault proxy between the edge and its buffer, the local SQS or the local Kinesis
    /// (end-to-end fault tests).
    pub edge_sqs_proxy: bool,
    /// Put a metering proxy ([`BufferMeter`]) between the edge and its buffer (the local SQS
    /// or the local Kinesis), counting the sends or puts and the billed units that reach it.
    /// With the fault proxy as well, the meter sits behind it (edge -> fault proxy -> meter ->
    /// buffer), so it counts only what got through.
    pub edge_meter: bool,
    /// Serve the edge with its spill queue (`SPILL_QUEUE` and the replay consumer, as in the
    /// project's wrangler.toml). Default true; false leaves the queue tables out, so an SQS
    /// outage past the deadline is answered `503`.
    pub spill: bool,
    /// Main queue name; the DLQ is `<name>-dlq` (with Kinesis too, where there is no main
    /// queue), and with Kinesis the on-failure destination is `<name>-failures`.
    pub queue_name: String,
    /// Receives before SQS moves a message to the DLQ. Default 3.
    pub max_receive_count: u32,
    /// The main queue's visibility timeout in seconds. Default 30.
    pub visibility_timeout_secs: u32,
    /// Extra environment for the poller (`BATCH_SIZE`, `MAXIMUM_CONCURRENCY`, ...).
    pub poller_env: Vec<(String, String)>,
    /// Extra `--var`s for the edge (limits, deadline).
    pub edge_vars: Vec<(String, String)>,
    /// The ingest keys the edge serves, in order: the first is `INGEST_KEY` of `dev.env`.
    /// Empty (the default) means one fresh key with key id [`KEY_ID`]; [`Stack::start`] fills
    /// it in, so a running stack's `config.ingest_keys` lists the keys it serves.
    pub ingest_keys: Vec<IngestKey>,
    /// Directory holding the `spillway-consumer` and `spillway-poller` binaries.
    pub bin_dir: PathBuf,
    /// Keep the database (`pg/` in `dir`) and, with Kinesis, the stream's records and the
    /// poller's checkpoints (`kinesis/` in `dir`) when the stack stops. True for `cargo xtask
    /// dev|up`, false for [`StackConfig::ephemeral`] stacks (their local Kinesis then keeps its
    /// state in memory only, sparing a rewrite of it every 5 s).
    pub keep_database: bool,
    /// The ports were picked free a moment ago ([`StackConfig::ephemeral`]), so when another
    /// process takes one before the service binds it, the stack may pick another. False for
    /// `cargo xtask dev|up`, whose ports the user chose.
    pub ports_picked_free: bool,
}

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY_ID: &str = "spillway-local";

/// `target/debug` of this workspace (honouring `CARGO_TARGET_DIR`).
pub fn debug_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("debug")
}

impl StackConfig {
    /// Defaults for `cargo xtask dev|up`, state in `dir`.
    pub fn new(dir: &Path) -> Self {
        StackConfig {
            dir: dir.to_owned(),
            edge_port: 8787,
            inspector_port: None,
            sqs_port: 9324,
            sqs: SqsKind::default(),
            buffer: BufferKind::default(),
            stream_name: "spillway-events".into(),
            shards: 4,
            pg_port: 54329,
            edge_sqs_proxy: false,
            edge_meter: false,
            spill: true,
            queue_name: "spillway-events".into(),
            max_receive_count: 3,
            visibility_timeout_secs: 30,
            poller_env: Vec::new(),
            edge_vars: Vec::new(),
            ingest_keys: Vec::new(),
            bin_dir: debug_bin_dir(),
            keep_database: true,
            ports_picked_free: false,
        }
    }

    /// A stack on free ports with its state in a fresh directory (for tests).
    pub fn ephemeral(name: &str) -> Result<Self> {
        let dir = crate::run_dir().join(crate::unique(name));
        Ok(StackConfig {
            edge_port: free_port()?,
            sqs_port: free_port()?,
            pg_port: free_port()?,
            keep_database: false,
            ports_picked_free: true,
            ..StackConfig::new(&dir)
        })
    }
}

/// A running pipeline. Dropping it stops everything, edge first, database last.
#[derive(Debug)]
pub struct Stack {
    pub config: StackConfig,
    pub env: DevEnv,
    pub sqs: LocalSqs,
    // Field order is drop order: writers stop before what they write to.
    edge: Option<Service>,
    poller: Option<Service>,
    pub proxy: Option<FaultProxy>,
    pub meter: Option<BufferMeter>,
    /// The local Kinesis, with the Kinesis buffer.
    pub kinesis: Option<KinesisServer>,
    sqs_server: SqsServer,
    pub pg: Postgres,
    /// What [`Stack::heal`] found and did.
    supervision: Supervision,
    /// `/healthz` probes of the edge failed in a row (see [`Stack::heal`]).
    edge_probe_failures: u32,
    /// The edge's `workerd` processes as first seen after it started: one of them gone means
    /// it was killed, even if Miniflare started another.
    edge_workerd: Vec<u32>,
}

/// The event source mapping's settings the poller gets with the Kinesis buffer, as the deployed
/// template (infra/template-kinesis.yaml) sets them: retries and the record's age both
/// unbounded (-1), because a failing attempt can take milliseconds, so a count of retries would
/// give up on healthy records within seconds of a database outage, and an age limit would give
/// up on them after an outage that long (the stream's retention bounds it instead; a record
/// that can never be stored is dead-lettered by the consumer itself). One difference:
/// no batching window locally (the template's is 1 s), so a local event is stored without it.
/// A later value in [`StackConfig::poller_env`] wins.
pub const KINESIS_MAPPING_DEFAULTS: &[(&str, &str)] = &[
    ("BATCH_SIZE", "100"),
    ("PARALLELIZATION_FACTOR", "1"),
    ("BISECT_BATCH_ON_FUNCTION_ERROR", "true"),
    ("MAXIMUM_RETRY_ATTEMPTS", "-1"),
    ("MAXIMUM_RECORD_AGE_IN_SECONDS", "-1"),
    ("STARTING_POSITION", "TRIM_HORIZON"),
];

/// Where the Worker built for `buffer` is kept: the directory holding its entry module and, in
/// `build/`, the build tool's output. For SQS that is `edge/` itself (`edge/entry.mjs`,
/// `edge/build/`, as wrangler.toml's `main` names them). The build tool always writes
/// `edge/build/`, so `cargo xtask` moves the Kinesis build (`[env.kinesis.build]`) to
/// `target/worker-kinesis/build/` after building it, and puts `edge/build/` back as it was:
/// both builds then exist side by side, and tests of either buffer can run in one `cargo test`.
pub fn worker_dir(root: &Path, buffer: BufferKind) -> PathBuf {
    match buffer {
        BufferKind::Sqs => root.join("edge"),
        BufferKind::Kinesis => root.join("target/worker-kinesis"),
    }
}

/// The built Worker's wasm for `buffer` (`<worker_dir>/build/index_bg.wasm`).
pub fn built_wasm(root: &Path, buffer: BufferKind) -> PathBuf {
    worker_dir(root, buffer).join("build/index_bg.wasm")
}

/// Checks that the Worker built for `buffer` is there and carries `buffer`'s SDK: serving a
/// build of the other buffer would fail only at the first request.
pub fn check_worker_build(root: &Path, buffer: BufferKind) -> Result<()> {
    let path = built_wasm(root, buffer);
    let wasm = fs::read(&path).with_context(|| {
        format!(
            "the {buffer} build of the Worker is missing ({}): `cargo xtask up --buffer {buffer}` \
             or `cargo xtask test` builds it",
            path.display()
        )
    })?;
    let carried = buffers_in_wasm(&wasm);
    if !carried.contains(&buffer) {
        let carried: Vec<&str> = carried.iter().map(|b| b.as_str()).collect();
        bail!(
            "{} is not the {buffer} build of the Worker (it carries: {}): build it with `cargo \
             xtask up --buffer {buffer}` (or `cargo xtask dev --buffer {buffer}`)",
            path.display(),
            if carried.is_empty() {
                "no buffer SDK".to_owned()
            } else {
                carried.join(", ")
            }
        );
    }
    Ok(())
}

/// The poller's environment for the buffer of `env`: the queue (SQS), or the stream, the event
/// source mapping's settings ([`KINESIS_MAPPING_DEFAULTS`]), the dead-letter queue and the
/// on-failure destination, and the checkpoint file in `dir` (Kinesis).
pub fn poller_buffer_env(env: &DevEnv, dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = vec![
        ("BUFFER".to_owned(), env.buffer.as_str().to_owned()),
        ("SQS_ENDPOINT".to_owned(), env.sqs_endpoint.clone()),
    ];
    match (env.buffer, &env.kinesis) {
        (BufferKind::Sqs, _) => out.push(("SQS_QUEUE_URL".to_owned(), env.sqs_queue_url.clone())),
        (BufferKind::Kinesis, None) => bail!("BUFFER=kinesis without the stream's settings"),
        (BufferKind::Kinesis, Some(k)) => {
            out.extend(
                KINESIS_MAPPING_DEFAULTS
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            out.extend([
                ("KINESIS_STREAM_ARN".to_owned(), k.stream_arn.clone()),
                ("KINESIS_ENDPOINT".to_owned(), k.endpoint.clone()),
                (
                    "ON_FAILURE_DESTINATION".to_owned(),
                    k.on_failure_url.clone(),
                ),
                ("DEAD_LETTER_QUEUE_URL".to_owned(), env.sqs_dlq_url.clone()),
                (
                    "CHECKPOINT_FILE".to_owned(),
                    checkpoint_file(dir).display().to_string(),
                ),
            ]);
        }
    }
    Ok(out)
}

/// The edge's `--var`s for the buffer of `env`, sending to `endpoint` (the buffer's, or a
/// proxy's in front of it).
pub fn edge_buffer_vars(env: &DevEnv, endpoint: String) -> Result<Vec<(String, String)>> {
    Ok(match (env.buffer, &env.kinesis) {
        (BufferKind::Sqs, _) => vec![
            ("SQS_QUEUE_URL".to_owned(), env.sqs_queue_url.clone()),
            ("SQS_ENDPOINT".to_owned(), endpoint),
        ],
        (BufferKind::Kinesis, None) => bail!("BUFFER=kinesis without the stream's settings"),
        (BufferKind::Kinesis, Some(k)) => vec![
            ("BUFFER".to_owned(), "kinesis".to_owned()),
            ("KINESIS_STREAM_ARN".to_owned(), k.stream_arn.clone()),
            ("KINESIS_ENDPOINT".to_owned(), endpoint),
        ],
    })
}

fn ensure_free(port: u16, what: &str, flag: &str) -> Result<()> {
    if port_open(port) {
        bail!("port {port} ({what}) is already in use: stop what uses it, or pass {flag} <port>");
    }
    Ok(())
}

impl Stack {
    /// Starts the pipeline and waits until the edge answers `/healthz`. `progress` gets one
    /// line per step.
    pub fn start(mut config: StackConfig, progress: &mut dyn FnMut(&str)) -> Result<Stack> {
        ensure_free(config.edge_port, "edge", "--edge-port")?;
        ensure_free(config.sqs_port, "local SQS", "--sqs-port")?;
        ensure_free(config.pg_port, "PostgreSQL", "--pg-port")?;
        if let Some(p) = config.inspector_port {
            ensure_free(p, "wrangler's inspector", "--inspector-port")?;
        }
        for bin in ["spillway-consumer", "spillway-poller"] {
            if !config.bin_dir.join(bin).exists() {
                bail!(
                    "{} is missing: build it with `cargo build -p spillway-consumer --bins`",
                    config.bin_dir.join(bin).display()
                );
            }
        }
        check_worker_build(&repo_root(), config.buffer)?;
        if config.ingest_keys.is_empty() {
            config.ingest_keys = vec![IngestKey::fresh(KEY_ID)?];
        }
        // Checked again here: a test may have built the list by hand.
        let keys = parse_ingest_keys(&ingest_keys_var(&config.ingest_keys))?;
        let logs = config.dir.join("logs");
        // Fresh logs per start: the status view counts accepted events from the edge's log.
        let _ = fs::remove_dir_all(&logs);
        fs::create_dir_all(&logs)?;

        let t = Instant::now();
        let pg = Postgres::start_in(&config.dir.join("pg"), config.pg_port, config.keep_database)?;
        let _ = fs::remove_file(logs.join("postgres.log"));
        let _ = std::os::unix::fs::symlink("../pg/postgres.log", logs.join("postgres.log"));
        progress(&format!(
            "PostgreSQL on 127.0.0.1:{} ({:.1} s)",
            config.pg_port,
            t.elapsed().as_secs_f64()
        ));

        let t = Instant::now();
        let database_url = pg.url();
        let out = Command::new(config.bin_dir.join("spillway-consumer"))
            .arg("migrate")
            .env("DATABASE_URL", &database_url)
            .env("RUST_LOG", "info")
            .output()
            .context("running spillway-consumer migrate")?;
        fs::write(
            logs.join("migrate.log"),
            [&out.stdout[..], &out.stderr[..]].concat(),
        )?;
        if !out.status.success() {
            bail!(
                "migrations failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        progress(&format!(
            "migrations applied ({:.1} s)",
            t.elapsed().as_secs_f64()
        ));

        let t = Instant::now();
        let sqs_server = {
            let s = SqsServer::start(config.sqs, config.sqs_port, &config.dir)?;
            let _ = fs::remove_file(logs.join("sqs.log"));
            let _ = std::os::unix::fs::symlink(s.log_path(), logs.join("sqs.log"));
            s
        };
        let sqs = LocalSqs::new(config.sqs_port, REGION);
        let dlq_url = sqs.create_queue(&format!("{}-dlq", config.queue_name), &[])?;
        let (queue_url, kinesis) = match config.buffer {
            BufferKind::Sqs => {
                let queue_url = Self::create_main_queue(&config, &sqs, &dlq_url)?;
                progress(&format!(
                    "local SQS ({}) on 127.0.0.1:{}: queue {} and DLQ (maxReceiveCount {}) ({:.1} s)",
                    config.sqs,
                    config.sqs_port,
                    config.queue_name,
                    config.max_receive_count,
                    t.elapsed().as_secs_f64()
                ));
                (queue_url, None)
            }
            BufferKind::Kinesis => {
                let failures_url =
                    sqs.create_queue(&format!("{}-failures", config.queue_name), &[])?;
                progress(&format!(
                    "local SQS ({}) on 127.0.0.1:{}: dead-letter queue and on-failure destination ({:.1} s)",
                    config.sqs,
                    config.sqs_port,
                    t.elapsed().as_secs_f64()
                ));
                let t = Instant::now();
                let persist_dir = config.dir.join("kinesis");
                fs::create_dir_all(&persist_dir)?;
                let server = KinesisServer::start(&KinesisOptions {
                    stream: config.stream_name.clone(),
                    shards: config.shards,
                    persist_dir: config.keep_database.then_some(persist_dir),
                })?;
                let _ = fs::remove_file(logs.join("kinesis.log"));
                let _ = std::os::unix::fs::symlink(server.log_path(), logs.join("kinesis.log"));
                progress(&format!(
                    "local Kinesis (kinesis-local) on 127.0.0.1:{}: stream {} with {} shards ({:.1} s)",
                    server.port(),
                    server.stream(),
                    server.shards(),
                    t.elapsed().as_secs_f64()
                ));
                let env = KinesisEnv {
                    endpoint: server.endpoint(),
                    stream_arn: server.stream_arn(),
                    on_failure_url: failures_url,
                };
                (String::new(), Some((server, env)))
            }
        };
        let buffer_port = kinesis
            .as_ref()
            .map_or(config.sqs_port, |(server, _)| server.port());
        let (kinesis, kinesis_env) = kinesis.unzip();

        let meter = if config.edge_meter {
            Some(BufferMeter::start(buffer_port)?)
        } else {
            None
        };
        let proxy = if config.edge_sqs_proxy {
            Some(FaultProxy::start(
                meter.as_ref().map_or(buffer_port, BufferMeter::port),
            )?)
        } else {
            None
        };
        let env = DevEnv {
            ingest_url: format!("http://127.0.0.1:{}/v1/events", config.edge_port),
            ingest_key: keys[0].key.clone(),
            database_url,
            sqs_endpoint: sqs_server.endpoint(),
            sqs_queue_url: queue_url,
            sqs_dlq_url: dlq_url,
            sqs_server: sqs_server.kind(),
            aws_secret_access_key: keys::random_key()?,
            envelope_keys: format!("local-1:{}", keys::random_key()?),
            token_secrets: keys
                .iter()
                .map(|k| Ok(format!("{}:{}", k.key_id, keys::random_key()?)))
                .collect::<Result<Vec<_>>>()?
                .join(","),
            buffer: config.buffer,
            kinesis: kinesis_env,
        };
        let mut stack = Stack {
            config,
            env,
            sqs,
            edge: None,
            poller: None,
            proxy,
            meter,
            kinesis,
            sqs_server,
            pg,
            supervision: Supervision::default(),
            edge_probe_failures: 0,
            edge_workerd: Vec::new(),
        };
        // A record left by an earlier run of this directory would name its faults as ours.
        let _ = fs::remove_file(stack.config.dir.join(SUPERVISION_FILE));

        let t = Instant::now();
        stack.start_poller()?;
        progress(&format!(
            "poller running the consumer ({:.1} s)",
            t.elapsed().as_secs_f64()
        ));

        let t = Instant::now();
        stack.start_edge()?;
        progress(&format!(
            "wrangler dev serving the edge ({} buffer) on 127.0.0.1:{} ({:.1} s)",
            stack.config.buffer,
            stack.config.edge_port,
            t.elapsed().as_secs_f64()
        ));
        write_private(&stack.config.dir.join("dev.env"), &stack.env.to_shell())?;
        Ok(stack)
    }

    /// The SQS buffer: the main queue, moving a message to the DLQ after `max_receive_count`
    /// receives.
    fn create_main_queue(config: &StackConfig, sqs: &LocalSqs, dlq_url: &str) -> Result<String> {
        let dlq_arn = sqs
            .attributes(dlq_url)?
            .remove("QueueArn")
            .context("DLQ has no QueueArn")?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": config.max_receive_count.to_string(),
        })
        .to_string();
        let queue_url = sqs.create_queue(
            &config.queue_name,
            &[
                ("RedrivePolicy", redrive),
                (
                    "VisibilityTimeout",
                    config.visibility_timeout_secs.to_string(),
                ),
            ],
        )?;
        Ok(queue_url)
    }

    fn aws_env(&self, cmd: &mut Command) {
        cmd.env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", &self.env.aws_secret_access_key);
    }

    /// Starts (or restarts) the poller.
    pub fn start_poller(&mut self) -> Result<()> {
        let mut cmd = Command::new(self.config.bin_dir.join("spillway-poller"));
        self.aws_env(&mut cmd);
        cmd.env("DATABASE_URL", &self.env.database_url)
            .env("ENVELOPE_KEYS", &self.env.envelope_keys)
            .env("RUST_LOG", "info");
        for (k, v) in poller_buffer_env(&self.env, &self.config.dir)? {
            cmd.env(k, v);
        }
        for (k, v) in &self.config.poller_env {
            cmd.env(k, v);
        }
        let log = self.config.dir.join("logs/poller.log");
        // The log is appended to across restarts: wait for one more "poller started" line than
        // it holds now (the poller has checked its settings and found the queue), or its exit.
        let started_lines = || {
            fs::read_to_string(&log)
                .map(|l| l.lines().filter(|l| l.contains("poller started")).count())
                .unwrap_or(0)
        };
        let before = started_lines();
        let mut svc = Service::spawn("poller", cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while started_lines() == before {
            if let Some(status) = svc.exited() {
                bail!("the poller exited at once ({status}): {}", svc.log_tail(20));
            }
            if Instant::now() > deadline {
                bail!("the poller did not start in 60 s: {}", svc.log_tail(20));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.poller = Some(svc);
        Ok(())
    }

    /// SIGKILLs the poller, as a crash would (messages in flight reappear after the
    /// visibility timeout).
    pub fn kill_poller(&mut self) {
        if let Some(mut p) = self.poller.take() {
            p.kill();
        }
    }

    /// Stops the poller gracefully (SIGTERM: it finishes its batch).
    pub fn stop_poller(&mut self) -> Option<std::process::ExitStatus> {
        self.poller
            .take()
            .and_then(|mut p| p.stop(Duration::from_secs(30)))
    }

    /// Starts `wrangler dev`. On free-picked ports, a port some other process bound between
    /// the pick and wrangler's bind ("Address already in use", seen with tests running in
    /// parallel on a loaded machine) is retried twice on newly picked ports.
    fn start_edge(&mut self) -> Result<()> {
        let mut retries = 2;
        loop {
            match self.spawn_edge() {
                Err(e)
                    if self.config.ports_picked_free
                        && retries > 0
                        && format!("{e:#}").contains("Address already in use") =>
                {
                    retries -= 1;
                    self.config.edge_port = free_port()?;
                    self.env.ingest_url =
                        format!("http://127.0.0.1:{}/v1/events", self.config.edge_port);
                }
                other => return other,
            }
        }
    }

    fn spawn_edge(&mut self) -> Result<()> {
        let root = repo_root();
        // What the edge sends to: the fault proxy, else the meter, else the buffer itself.
        let endpoint = match (&self.proxy, &self.meter) {
            (Some(p), _) => p.endpoint(),
            (None, Some(m)) => m.endpoint(),
            (None, None) => match &self.env.kinesis {
                Some(k) => k.endpoint.clone(),
                None => self.env.sqs_endpoint.clone(),
            },
        };
        let config_path = self.config.dir.join("wrangler.toml");
        let config = match self.config.buffer {
            BufferKind::Sqs => prebuilt_config(&root)?,
            buffer => {
                // The Kinesis build is kept outside edge/ (see `worker_dir`): the entry module
                // is copied beside it, so that its `./build/index.js` is that build.
                let dir = worker_dir(&root, buffer);
                let entry = dir.join("entry.mjs");
                fs::copy(root.join("edge/entry.mjs"), &entry)
                    .with_context(|| format!("copying edge/entry.mjs to {}", entry.display()))?;
                files::prebuilt_config_serving(&root, &entry)?
            }
        };
        let config = if self.config.spill {
            config
        } else {
            without_queues(&config)
        };
        fs::write(&config_path, config)?;
        let mut cmd = crate::wrangler::wrangler_dev(
            &root,
            &config_path,
            self.config.edge_port,
            &self.config.dir.join("wrangler-state"),
            self.config.inspector_port,
        );
        if let Some(env) = self.config.buffer.wrangler_env() {
            // The environment's own vars and bindings (`[env.kinesis]` in wrangler.toml).
            cmd.args(["--env", env]);
        }
        cmd.current_dir(&root);
        // Secrets reach the worker through `.dev.vars` beside the config, which wrangler dev
        // reads: as `--var`s they would be on its command line, which every user can read
        // (`ps`). The rest stays on the command line, where it is easy to see.
        let secrets = [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            (
                "AWS_SECRET_ACCESS_KEY",
                self.env.aws_secret_access_key.clone(),
            ),
            ("INGEST_KEYS", ingest_keys_var(&self.config.ingest_keys)),
            ("ENVELOPE_KEYS", self.env.envelope_keys.clone()),
            ("TOKEN_SECRETS", self.env.token_secrets.clone()),
        ];
        write_private(&self.config.dir.join(".dev.vars"), &dev_vars(&secrets)?)?;
        let mut vars = edge_buffer_vars(&self.env, endpoint)?;
        vars.extend([
            ("AWS_REGION".to_owned(), REGION.to_owned()),
            ("ALLOWED_ORIGINS".to_owned(), "*".to_owned()),
        ]);
        vars.extend(self.config.edge_vars.iter().cloned());
        for (k, v) in &vars {
            cmd.arg("--var").arg(format!("{k}:{v}"));
        }
        let log = self.config.dir.join("logs/edge.log");
        // Through sed: wrangler's request lines carry the path and query as sent (redact.rs).
        let mut svc = Service::spawn("wrangler", crate::redact::through_sed(cmd), &log)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok((200, _)) = http_get(self.config.edge_port, "/healthz") {
                break;
            }
            if let Some(status) = svc.exited() {
                bail!(
                    "wrangler dev exited ({status}); see {}:\n{}",
                    log.display(),
                    svc.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "wrangler dev did not answer /healthz in 2 minutes:\n{}",
                    svc.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.edge = Some(svc);
        Ok(())
    }

    /// Stops `wrangler dev` and starts it again with what `config` now says of the edge:
    /// `edge_vars`, `spill`, `edge_meter` (a meter is started, or dropped, to match;
    /// turning it on is refused when a fault proxy is in front, since the proxy's upstream is
    /// fixed) and `edge_sqs_proxy` (a fault proxy is started, or dropped, likewise).
    /// The edge keeps its port unless the port was picked free and is taken meanwhile.
    pub fn restart_edge(&mut self) -> Result<()> {
        if let Some(mut e) = self.edge.take() {
            e.stop(Duration::from_secs(10));
        }
        match (self.config.edge_meter, self.meter.is_some()) {
            (true, false) => {
                if self.proxy.is_some() {
                    bail!("a meter behind the fault proxy must be chosen before Stack::start");
                }
                self.meter = Some(BufferMeter::start(self.buffer_port())?);
            }
            (false, true) if self.proxy.is_none() => self.meter = None,
            _ => {}
        }
        // A fault proxy is started in front of the meter (or SQS), or dropped, to match.
        match (self.config.edge_sqs_proxy, self.proxy.is_some()) {
            (true, false) => {
                let upstream = self
                    .meter
                    .as_ref()
                    .map_or(self.buffer_port(), BufferMeter::port);
                self.proxy = Some(FaultProxy::start(upstream)?);
            }
            (false, true) => self.proxy = None,
            _ => {}
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while port_open(self.config.edge_port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.start_edge()
    }

    /// The port of the buffer the edge sends to: the local Kinesis, or the local SQS.
    pub fn buffer_port(&self) -> u16 {
        self.kinesis
            .as_ref()
            .map_or(self.config.sqs_port, KinesisServer::port)
    }

    /// Has the consumer got through everything the buffer holds? With SQS: the main queue is
    /// empty (nothing visible, nothing in flight). With Kinesis: the poller's checkpoint file
    /// names every shard of the stream, and no shard holds a record after its checkpoint. False
    /// when it cannot tell (a call failed, no checkpoint yet with records in the stream).
    pub fn drained(&self) -> bool {
        let Some(k) = &self.kinesis else {
            return self.sqs.depth(&self.env.sqs_queue_url).ok() == Some((0, 0));
        };
        let client = k.client();
        let Ok(shards) = client.shard_ids(k.stream()) else {
            return false;
        };
        let checkpoints = fs::read_to_string(checkpoint_file(&self.config.dir))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        shards.iter().all(|shard| {
            let at = checkpoints
                .as_ref()
                .and_then(|c| c["shards"][shard.as_str()]["checkpoint"].as_str());
            matches!(client.has_records_after(k.stream(), shard, at), Ok(false))
        })
    }

    /// One look at every part of the pipeline.
    pub fn status(&self) -> Result<Status> {
        read_status(&self.env, &self.config.dir)
    }

    /// Leaves everything running (for `cargo xtask up`); `sweep` of the run dir stops it.
    pub fn detach(mut self) {
        if let Some(e) = self.edge.take() {
            e.detach();
        }
        if let Some(p) = self.poller.take() {
            p.detach();
        }
        let Stack {
            sqs_server,
            pg,
            proxy,
            meter,
            kinesis,
            ..
        } = self;
        if let Some(k) = kinesis {
            k.detach();
        }
        sqs_server.detach();
        pg.detach();
        // A fault proxy or meter lives in this process; a detached stack never has one.
        drop(proxy);
        drop(meter);
    }
}

#[cfg(test)]
mod tests;
