//! The harness of the tests under `wrangler dev`: the built worker served by `wrangler dev`
//! (workerd) against the local SQS (moto) with a fault proxy in between, a blocking HTTP
//! client, and the queue read back from the host. `worker.rs` and `spill.rs` share it.
#![allow(dead_code)] // each test binary uses its own part

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use serde_json::Value;
use spillway_shared::{open, parse_keys, Event, Keyring, Unsigned};
use spillway_support::stack::worker_dir;
use spillway_support::{free_port, http_get, repo_root, BufferKind, FaultProxy, Moto, Service};
use uuid::Uuid;

/// What a consumer holding [`ENVELOPE_KEYS`] verifies the workers' messages with.
pub fn keyring() -> Keyring {
    Keyring::new(
        parse_keys(ENVELOPE_KEYS).unwrap_or_else(|e| panic!("ENVELOPE_KEYS: {e}")),
        Unsigned::Refuse,
    )
}

pub const KEY_WEB: &str = "it-web-key-0123456789abcdef";
pub const KEY_BURST: &str = "it-burst-key-0123456789abcdef";
pub const ORIGIN: &str = "https://app.example.com";
/// The workers' `ENVELOPE_KEYS`: a test secret.
pub const ENVELOPE_KEYS: &str = "it-1:edge-it-envelope-secret-0123456789abcdef";
pub const DEADLINE_MS: u64 = 2_500;
pub const BATCH_WINDOW_MS: u64 = 100;
/// The local rate limit of key `burst` (and of every key): requests per minute.
pub const RATE_LIMIT: usize = 40;

/// An HTTP answer, whatever its status.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
    pub fn ids(&self) -> Vec<Uuid> {
        self.json()["ids"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
            .unwrap_or_default()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub enum Body<'a> {
    Fixed(&'a [u8]),
    /// Sent with `Transfer-Encoding: chunked`, so the edge cannot trust a declared length.
    Chunked(&'a [u8]),
}

pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Result<Answer> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut req = agent.request(method, &format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let sent = match body {
        Body::Fixed(b) => req.send_bytes(b),
        // Without a Content-Length, ureq sends a reader with `Transfer-Encoding: chunked`.
        Body::Chunked(b) => req.send(b),
    };
    let response = match sent {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => bail!("{method} {path}: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|n| Some((n.to_ascii_lowercase(), response.header(&n)?.to_owned())))
        .collect();
    let mut body = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut body)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// moto, the fault proxy in front of it, and `wrangler dev` serving the built worker.
pub struct Stack {
    /// Where its logs and wrangler's state go; steps that start a worker of their own put it
    /// in a folder under it.
    pub dir: PathBuf,
    pub moto: Moto,
    pub proxy: FaultProxy,
    pub edge: Service,
    pub port: u16,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub tokio: tokio::runtime::Runtime,
}

impl Stack {
    /// The stack with `spill` on (the project's wrangler.toml: `SPILL_QUEUE` and its replay
    /// consumer) or off (those tables left out: SQS trouble past the deadline is `503`).
    pub fn start(dir: &Path, spill: Spill) -> Result<Stack> {
        Self::start_with(dir, spill, &[])
    }

    /// [`Stack::start`] with more settings of the Worker (a test's own, such as tokens).
    pub fn start_with(dir: &Path, spill: Spill, extra: &[(&str, String)]) -> Result<Stack> {
        let moto = Moto::start()?;
        let proxy = FaultProxy::start(moto.port())?;
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "test"))
                .endpoint_url(moto.endpoint())
                .build(),
        );
        let queue_url = tokio
            .block_on(sqs.create_queue().queue_name("spillway-edge-it").send())
            .context("creating the queue in moto")?
            .queue_url
            .ok_or_else(|| anyhow!("moto returned no queue URL"))?;

        let mut vars = vec![
            ("SQS_QUEUE_URL", queue_url.clone()),
            ("SQS_ENDPOINT", proxy.endpoint()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("INGEST_KEYS", format!("web:{KEY_WEB},burst:{KEY_BURST}")),
            ("ENVELOPE_KEYS", ENVELOPE_KEYS.to_owned()),
            ("ALLOWED_ORIGINS", ORIGIN.to_owned()),
            ("SQS_DEADLINE_MS", DEADLINE_MS.to_string()),
            ("SQS_RETRY_BASE_MS", "50".to_owned()),
            ("SQS_RETRY_MAX_MS", "400".to_owned()),
            ("RETRY_AFTER_SECS", "2".to_owned()),
            ("RATE_LIMIT_PERIOD_SECS", "60".to_owned()),
            ("MAX_BODY_BYTES", "65536".to_owned()),
            ("MAX_DECOMPRESSED_BYTES", "1048576".to_owned()),
            // Small messages, so one request spreads over several concurrent batch requests.
            ("MAX_EVENT_BYTES", "7000".to_owned()),
            ("MAX_MESSAGE_BYTES", "8192".to_owned()),
            // Group commit on (wrangler.toml binds the batcher), with a window long enough
            // that requests released together share batches even on a loaded machine.
            ("BATCH_WINDOW_MS", BATCH_WINDOW_MS.to_string()),
            // Every small request through a batcher, as these tests expect, whether it pays
            // or not (a lone request does not: the edge would then send the next directly).
            ("BATCH_WHEN", "always".to_owned()),
        ];
        vars.extend(extra.iter().cloned());
        let (edge, port) = wrangler_dev(dir, &vars, 200, spill)?;
        Ok(Stack {
            dir: dir.to_owned(),
            moto,
            proxy,
            edge,
            port,
            sqs,
            queue_url,
            tokio,
        })
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Answer> {
        request(self.port, "POST", path, headers, Body::Fixed(body))
    }

    pub fn post_json(&self, body: &Value, extra: &[(&str, &str)]) -> Result<Answer> {
        let bearer = format!("Bearer {KEY_WEB}");
        let mut headers = vec![
            ("content-type", "application/json"),
            ("authorization", bearer.as_str()),
        ];
        headers.extend_from_slice(extra);
        self.post("/v1/events", &headers, body.to_string().as_bytes())
    }

    /// Receives (and deletes) messages until every id in `want` has been seen or `timeout`
    /// passes; returns every event seen, in arrival order.
    pub fn drain(&self, want: &[Uuid], timeout: Duration) -> Result<Vec<Event>> {
        let want: HashSet<Uuid> = want.iter().copied().collect();
        let mut seen = Vec::new();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let out = self.tokio.block_on(
                self.sqs
                    .receive_message()
                    .queue_url(&self.queue_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send(),
            )?;
            for m in out.messages() {
                let body = m.body().ok_or_else(|| anyhow!("message without body"))?;
                seen.extend(
                    open(body, &keyring())
                        .map_err(|e| anyhow!("not a sealed envelope: {e}: {body}"))?,
                );
                if let Some(handle) = m.receipt_handle() {
                    self.tokio.block_on(
                        self.sqs
                            .delete_message()
                            .queue_url(&self.queue_url)
                            .receipt_handle(handle)
                            .send(),
                    )?;
                }
            }
            let got: HashSet<Uuid> = seen.iter().map(|e: &Event| e.id).collect();
            // Looking for leftovers: one empty poll is enough. Otherwise stop once all arrived.
            if (want.is_empty() && out.messages().is_empty())
                || (!want.is_empty() && want.is_subset(&got))
            {
                break;
            }
        }
        Ok(seen)
    }

    /// The edge's log line for a request.
    pub fn log_line(&self, request_id: &str) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(self.edge.log_path())?;
            if let Some(line) = log
                .lines()
                .find(|l| l.starts_with('{') && l.contains(request_id))
            {
                return Ok(serde_json::from_str(line)?);
            }
            ensure!(Instant::now() < deadline, "no log line for {request_id}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether the worker has its spill queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spill {
    On,
    Off,
}

/// One scenario, run against the shared stack.
pub type Step = fn(&Stack) -> Result<()>;

/// `wrangler dev` serving the built worker with `vars`, once `/healthz` answers `ready_status`.
pub fn wrangler_dev(
    dir: &Path,
    vars: &[(&str, String)],
    ready_status: u16,
    spill: Spill,
) -> Result<(Service, u16)> {
    wrangler_dev_for(dir, vars, ready_status, spill, BufferKind::Sqs)
}

/// [`wrangler_dev`] serving the Worker built for `buffer`: edge/build for SQS, the build kept in
/// [`worker_dir`] for Kinesis (its entry module copied beside it, as the stack does, so that
/// its `./build/index.js` is that build).
pub fn wrangler_dev_for(
    dir: &Path,
    vars: &[(&str, String)],
    ready_status: u16,
    spill: Spill,
    buffer: BufferKind,
) -> Result<(Service, u16)> {
    let root = repo_root();
    let mut config = match buffer {
        BufferKind::Sqs => spillway_support::stack::prebuilt_config(&root)?,
        other => {
            let entry = worker_dir(&root, other).join("entry.mjs");
            std::fs::copy(root.join("edge/entry.mjs"), &entry)
                .with_context(|| format!("copying edge/entry.mjs to {}", entry.display()))?;
            spillway_support::stack::prebuilt_config_serving(&root, &entry)?
        }
    };
    if spill == Spill::Off {
        config = spillway_support::stack::without_queues(&config);
    }
    config.push_str(&format!(
        "\n[[ratelimits]]\nname = \"RATE_LIMITER\"\nnamespace_id = \"1001\"\nsimple = {{ limit = {RATE_LIMIT}, period = 60 }}\n"
    ));
    std::fs::create_dir_all(dir)?;
    let config_path = dir.join("wrangler.toml");
    std::fs::write(&config_path, config)?;
    let port = free_port()?;
    let mut cmd = spillway_support::wrangler::wrangler_dev(
        &root,
        &config_path,
        port,
        &dir.join("state"),
        None,
    );
    cmd.current_dir(dir);
    for (k, v) in vars {
        cmd.arg("--var").arg(format!("{k}:{v}"));
    }
    let mut edge = Service::spawn("wrangler-edge-it", cmd, &dir.join("wrangler.log"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if matches!(http_get(port, "/healthz"), Ok((status, _)) if status == ready_status) {
            return Ok((edge, port));
        }
        if let Some(status) = edge.exited() {
            bail!("wrangler dev exited ({status}):\n{}", edge.log_tail(40));
        }
        ensure!(
            Instant::now() < deadline,
            "wrangler dev did not answer /healthz with {ready_status} in 2 minutes:\n{}",
            edge.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn ids_of(events: &[Event]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

/// Runs `steps` against `stack` in order, naming the failing step and the wrangler log.
pub fn run_steps(stack: &Stack, steps: &[(&str, Step)]) -> Result<()> {
    for (name, step) in steps {
        let started = Instant::now();
        step(stack).with_context(|| {
            format!(
                "step `{name}`; wrangler log: {}",
                stack.edge.log_path().display()
            )
        })?;
        eprintln!("ok: {name} ({:.1} s)", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `n` one-event requests of type `tag` released together (after `before` ran, on its own thread, at the
/// same moment); their answers.
pub fn together(s: &Stack, tag: &str, n: usize, before: Option<fn(u16)>) -> Result<Vec<Answer>> {
    let start = std::sync::Arc::new(std::sync::Barrier::new(n + usize::from(before.is_some())));
    let mut threads = Vec::new();
    if let Some(before) = before {
        let (port, start) = (s.port, start.clone());
        threads.push(std::thread::spawn(move || {
            start.wait();
            before(port);
            Ok(None)
        }));
    }
    for i in 0..n {
        let (port, start, tag) = (s.port, start.clone(), tag.to_owned());
        threads.push(std::thread::spawn(move || {
            let bearer = format!("Bearer {KEY_WEB}");
            let body = serde_json::json!({"type": tag, "data": {"i": i}}).to_string();
            start.wait();
            request(
                port,
                "POST",
                "/v1/events",
                &[
                    ("authorization", &bearer),
                    ("content-type", "application/json"),
                ],
                Body::Fixed(body.as_bytes()),
            )
            .map(Some)
        }));
    }
    let mut answers = Vec::new();
    for t in threads {
        let answer: Result<Option<Answer>> = t.join().map_err(|_| anyhow!("sender panicked"))?;
        answers.extend(answer?);
    }
    Ok(answers)
}
