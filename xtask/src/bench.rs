//! `cargo xtask bench`: every figure of `BENCHMARKS.md`, measured side by side in one run and
//! written back into `BENCHMARKS.md` (and the burst plot into `benches/results/`).
//!
//! The machine these run on is shared and noisy, so every figure is a ratio against a reference
//! measured in the same run: the edge against plain `serde_json`, the worker against a hello
//! world, the edge's POSTs against its own `/healthz`, SQS requests against payload bytes, the
//! consumer's write against `COPY`, and Spillway against a synchronous baseline in a burst.
//! Nothing here is a hard-coded result: the Markdown is generated from what was measured.
//!
//! Options: `--only edge,wasm,sqs,db,workerd,burst` (a subset, for development; the Markdown is
//! then not rewritten), `--burst-clients N` (400), `--burst-requests N` (1, per client),
//! `--wrk-secs N` (8).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use spillway_shared::{EdgeInfo, Event, Limits};
use spillway_support::{free_port, psql, Postgres, Service, Stack, StackConfig};

use crate::bootstrap::{ensure_all, Tools};
use crate::step::{note, output, root, run, show, step};
use crate::test::wasm_build;

/// SQS bills each started 64 KiB of a request's payload as one request.
const SQS_BILLING_CHUNK: usize = 64 * 1024;
/// The consumer's default `BATCH_SIZE` (messages per invocation, one `ReceiveMessage`).
const CONSUMER_BATCH_SIZE: usize = 10;
/// PostgreSQL's default `max_connections`, set explicitly for the burst.
const BURST_MAX_CONNECTIONS: u32 = 100;
/// Events per request in the burst.
const BURST_EVENTS_PER_REQUEST: usize = 10;

#[derive(Debug, Clone)]
struct Opts {
    only: Option<Vec<String>>,
    burst_clients: Vec<usize>,
    burst_requests: usize,
    wrk_secs: u32,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts {
            only: None,
            burst_clients: vec![400, 1200],
            burst_requests: 1,
            wrk_secs: 8,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            let number = || -> Result<usize> {
                value
                    .parse()
                    .with_context(|| format!("{flag} takes a number"))
            };
            match flag.as_str() {
                "--only" => o.only = Some(value.split(',').map(str::to_owned).collect()),
                "--burst-clients" => {
                    o.burst_clients = value
                        .split(',')
                        .map(|v| v.parse::<usize>().map(|n| n.max(1)))
                        .collect::<Result<_, _>>()
                        .with_context(|| format!("{flag} takes numbers separated by commas"))?
                }
                "--burst-requests" => o.burst_requests = number()?.max(1),
                "--wrk-secs" => o.wrk_secs = u32::try_from(number()?.max(1))?,
                other => bail!(
                    "unknown option {other} (known: --only, --burst-clients, --burst-requests, --wrk-secs)"
                ),
            }
        }
        Ok(o)
    }

    fn wants(&self, what: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|l| l.iter().any(|x| x == what))
    }
}

/// What is measured; `None` for parts not run.
#[derive(Debug, Default)]
struct Results {
    machine: Machine,
    edge: Option<EdgeCost>,
    wasm: Option<WasmSize>,
    sqs: Option<Vec<SqsCost>>,
    db: Option<DbWrite>,
    workerd: Option<Vec<WrkRun>>,
    /// Per burst size: (Spillway, baseline).
    bursts: Vec<(BurstResult, BurstResult)>,
    seconds: f64,
}

pub fn main(args: &[String]) -> Result<()> {
    let opts = Opts::parse(args)?;
    let started = Instant::now();
    let tools = ensure_all()?;
    step("wrk (Debian package)", ensure_wrk)?;
    // Tool variables for everything started below (wrangler, moto, PostgreSQL).
    let mut probe = Command::new("true");
    tools.apply(&mut probe);
    for (k, v) in probe.get_envs() {
        if let Some(v) = v {
            std::env::set_var(k, v);
        }
    }
    let run_dir = target_dir().join("bench-run");
    fs::create_dir_all(&run_dir)?;
    std::env::set_var("SPILLWAY_RUN_DIR", &run_dir);
    let result = measure(&opts, &tools, started);
    let left = spillway_support::sweep(&run_dir, Duration::from_secs(5));
    if left > 0 {
        note(&format!("stopped {left} service(s) left behind"));
    }
    let results = result?;
    let out = root().join("benches/results");
    fs::create_dir_all(&out)?;
    for (sp, base) in &results.bursts {
        let path = out.join(format!("burst-{}.svg", sp.clients));
        fs::write(&path, burst_svg(&[sp.clone(), base.clone()]))?;
        note(&format!("plot: {}", path.display()));
    }
    let md = markdown(&results, &opts);
    if opts.only.is_none() {
        fs::write(root().join("BENCHMARKS.md"), &md)?;
        println!("\nwrote BENCHMARKS.md ({:.0} s in all)", results.seconds);
    } else {
        let partial = target_dir().join("BENCHMARKS.partial.md");
        fs::write(&partial, &md)?;
        println!(
            "\n--only given: wrote {} instead of BENCHMARKS.md",
            partial.display()
        );
    }
    Ok(())
}

fn measure(opts: &Opts, tools: &Tools, started: Instant) -> Result<Results> {
    let mut r = Results {
        machine: Machine::read(),
        ..Results::default()
    };
    note(&format!(
        "machine: {} cores, {}, {:.1} GiB RAM, load {}",
        r.machine.nproc, r.machine.cpu, r.machine.ram_gib, r.machine.load
    ));
    if opts.wants("wasm") || opts.wants("workerd") || opts.wants("burst") {
        step("build the worker (wasm)", || wasm_build(tools))?;
    }
    if opts.wants("wasm") {
        step("build the hello-world worker (wasm)", || {
            let mut c = Command::new("worker-build");
            c.current_dir(root())
                .args(["--release", "benches/hello-worker"]);
            tools.apply(&mut c);
            run(&mut c)
        })?;
        r.wasm = Some(step("figure 2: gzipped wasm sizes", wasm_sizes)?);
    }
    if opts.wants("sqs") {
        r.sqs = Some(step("figure 4: SQS requests per million events", || {
            Ok(sqs_costs())
        })?);
    }
    if opts.wants("edge") {
        r.edge = Some(step("figure 1: edge cost per event (criterion)", || {
            edge_cost(tools)
        })?);
    }
    if opts.wants("db") {
        r.db = Some(step("figure 5: bulk write vs COPY", || db_write(tools))?);
    }
    if opts.wants("workerd") || opts.wants("burst") {
        step(
            "build the consumer, the poller and the baseline server",
            || {
                run(&mut cargo(
                    tools,
                    &[
                        "build",
                        "--quiet",
                        "-p",
                        "spillway-consumer",
                        "--bins",
                        "-p",
                        "spillway-baseline",
                    ],
                ))
            },
        )?;
        let mut stack = step("start the pipeline (Stack)", || {
            let cfg = StackConfig::ephemeral("bench")?;
            Stack::start(cfg, &mut |line| note(line))
        })?;
        if opts.wants("workerd") {
            r.workerd = Some(step("figure 3: edge under workerd (wrk)", || {
                workerd(&mut stack, opts)
            })?);
        }
        if opts.wants("burst") {
            let spillway = step("figure 6a: burst against the Spillway pipeline", || {
                burst_spillway(&mut stack, opts)
            })?;
            drop(stack);
            let baseline = step("figure 6b: burst against the synchronous baseline", || {
                burst_baseline(opts)
            })?;
            r.bursts = spillway.into_iter().zip(baseline).collect();
        }
    }
    r.seconds = started.elapsed().as_secs_f64();
    Ok(r)
}

fn cargo(tools: &Tools, args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root()).args(args);
    tools.apply(&mut c);
    c
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn ensure_wrk() -> Result<()> {
    if let Some(v) = wrk_version() {
        note(&format!("present ({v})"));
        return Ok(());
    }
    if output(Command::new("id").arg("-u")).as_deref() != Some("0") {
        bail!("wrk is missing; install it and run again:\n    sudo apt-get install -y wrk");
    }
    note("installing: apt-get install -y wrk");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "wrk"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// `wrk --version` exits 1; read its first line anyway.
fn wrk_version() -> Option<String> {
    let out = Command::new("wrk").arg("--version").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .next()
        .filter(|l| l.starts_with("wrk"))
        .map(|l| l.split(" Copyright").next().unwrap_or(l).to_owned())
}

// ---------------------------------------------------------------------------------------------
// The machine

#[derive(Debug, Default, Clone)]
struct Machine {
    nproc: usize,
    cpu: String,
    ram_gib: f64,
    kernel: String,
    load: String,
    date: String,
    commit: String,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let dirty = output(Command::new("git").current_dir(root()).args([
            "status",
            "--porcelain",
            "--untracked-files=no",
        ]))
        .is_some_and(|s| !s.is_empty());
        let commit =
            output(
                Command::new("git")
                    .current_dir(root())
                    .args(["rev-parse", "--short", "HEAD"]),
            )
            .unwrap_or_default();
        Machine {
            nproc: output(&mut Command::new("nproc"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            cpu,
            ram_gib: ram_kib / 1024.0 / 1024.0,
            kernel: output(Command::new("uname").args(["-sr"])).unwrap_or_default(),
            load: fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            date: output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
                .unwrap_or_default(),
            commit: if dirty {
                format!("{commit} + uncommitted changes")
            } else {
                commit
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Realistic events (the same shapes as edge/benches/floor.rs)

/// A realistic analytics event of roughly `bytes` bytes of JSON.
fn event(i: usize, bytes: usize, timestamp: &str, id: Option<String>) -> Value {
    let mut e = json!({
        "type": "page_view",
        "timestamp": timestamp,
        "data": {
            "path": format!("/products/{i}"),
            "referrer": "https://www.example.com/search?q=shoes",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
            "session": "0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10",
            "viewport": {"w": 1440, "h": 900},
            "tags": ["a", "b", "c"],
            "pad": ""
        }
    });
    if let Some(id) = id {
        e["id"] = json!(id);
    }
    let pad = bytes.saturating_sub(e.to_string().len());
    e["data"]["pad"] = json!("x".repeat(pad));
    e
}

/// Sizes cycle through 512, 1024, 1536 and 2048 bytes.
fn size_of_event(i: usize) -> usize {
    512 * (1 + i % 4)
}

fn request_body(
    n: usize,
    first: usize,
    timestamp: &str,
    ids: &mut dyn FnMut() -> Option<String>,
) -> Vec<u8> {
    let events: Vec<Value> = (first..first + n)
        .map(|i| event(i, size_of_event(i), timestamp, ids()))
        .collect();
    if n == 1 {
        events[0].to_string().into_bytes()
    } else {
        Value::Array(events).to_string().into_bytes()
    }
}

fn now_rfc3339() -> String {
    output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%S.000Z"]))
        .unwrap_or_else(|| "2026-11-28T08:00:00.000Z".into())
}

// ---------------------------------------------------------------------------------------------
// Figure 1: edge cost per event

#[derive(Debug, Clone)]
struct EdgeCost {
    /// (events per request, request path ns/event, floor ns/event, request body bytes)
    rows: Vec<(usize, f64, f64, usize)>,
    command: String,
}

fn edge_cost(tools: &Tools) -> Result<EdgeCost> {
    let args = [
        "bench",
        "-p",
        "spillway-edge",
        "--bench",
        "floor",
        "--",
        "--warm-up-time",
        "1",
        "--measurement-time",
        "4",
    ];
    let mut c = cargo(tools, &args);
    let command = format!("cargo {}", args.join(" "));
    note(&format!("$ {command}"));
    run(&mut c)?;
    let base = target_dir().join("criterion/edge_cost");
    let mean_ns = |name: &str, n: usize| -> Result<f64> {
        let path = base
            .join(name)
            .join(n.to_string())
            .join("new/estimates.json");
        let v: Value = serde_json::from_str(
            &fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
        )?;
        v["mean"]["point_estimate"]
            .as_f64()
            .ok_or_else(|| anyhow!("{} has no mean", path.display()))
    };
    let mut rows = Vec::new();
    for n in [1usize, 100] {
        let path = mean_ns("request_path", n)? / n as f64;
        let floor = mean_ns("serde_json_floor", n)? / n as f64;
        note(&format!(
            "{n:>3} event(s)/request: request path {path:.0} ns/event, serde_json floor {floor:.0} ns/event, x{:.2}",
            path / floor
        ));
        // The same body edge/benches/floor.rs builds (same generator, same timestamp).
        let bytes = request_body(n, 0, "2026-11-28T07:59:00.123Z", &mut || None).len();
        rows.push((n, path, floor, bytes));
    }
    Ok(EdgeCost { rows, command })
}

// ---------------------------------------------------------------------------------------------
// Figure 2: wasm size

#[derive(Debug, Clone)]
struct WasmSize {
    edge_raw: u64,
    edge_gz: u64,
    hello_raw: u64,
    hello_gz: u64,
}

fn gzip9(path: &Path) -> Result<u64> {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .context("running gzip")?;
    if !out.status.success() {
        bail!("gzip -9 {} failed", path.display());
    }
    Ok(out.stdout.len() as u64)
}

fn wasm_sizes() -> Result<WasmSize> {
    let edge = root().join("edge/build/index_bg.wasm");
    let hello = root().join("benches/hello-worker/build/index_bg.wasm");
    let w = WasmSize {
        edge_raw: fs::metadata(&edge)?.len(),
        edge_gz: gzip9(&edge)?,
        hello_raw: fs::metadata(&hello)?.len(),
        hello_gz: gzip9(&hello)?,
    };
    note(&format!(
        "edge {} B ({} B gzip -9), hello world {} B ({} B gzip -9), x{:.2}",
        w.edge_raw,
        w.edge_gz,
        w.hello_raw,
        w.hello_gz,
        w.edge_gz as f64 / w.hello_gz as f64
    ));
    Ok(w)
}

// ---------------------------------------------------------------------------------------------
// Figure 4: SQS requests per million events

#[derive(Debug, Clone)]
struct SqsCost {
    events_per_request: usize,
    /// Billed SendMessageBatch requests per million events, from the packer's output.
    send_billed: f64,
    /// Client event bytes per million events / 64 KiB.
    floor: f64,
    /// Average SQS messages per request and message body bytes.
    messages_per_request: f64,
    message_bytes: f64,
    /// Billed ReceiveMessage + DeleteMessageBatch requests per million events.
    receive_billed: f64,
    delete_billed: f64,
}

fn chunks(bytes: usize) -> usize {
    bytes.div_ceil(SQS_BILLING_CHUNK).max(1)
}

fn sqs_costs() -> Vec<SqsCost> {
    let limits = Limits::default();
    let received = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(1_795_852_800_000)
        .unwrap_or_default();
    // Enough events that every request size sees the whole 512..2048 size cycle many times.
    const SAMPLE: usize = 2_000;
    let mut out = Vec::new();
    for n in [1usize, 10, 100] {
        let mut client_bytes = 0usize;
        let mut send_billed = 0usize;
        let mut messages = Vec::new();
        let mut i = 0usize;
        while i < SAMPLE {
            let events: Vec<Event> = (i..i + n)
                .map(|k| {
                    let raw = event(k, size_of_event(k), "2026-11-28T07:59:00.123Z", None);
                    client_bytes += raw.to_string().len();
                    let data = spillway_shared::RawJson::from_json(&raw["data"].to_string())
                        .unwrap_or_default();
                    Event {
                        id: uuid::Uuid::from_u128(
                            0x0192_f0c1_7a44_7cc3_9e2b_0000_0000_0000 + k as u128,
                        ),
                        event_type: "page_view".into(),
                        occurred_at: Some(received),
                        received_at: received,
                        key_id: "web".into(),
                        edge: Some(EdgeInfo {
                            colo: Some("FRA".into()),
                            country: Some("DE".into()),
                        }),
                        source: Default::default(),
                        data,
                    }
                })
                .collect();
            // Packing cannot fail for these events; a failure would be a bug worth stopping for.
            let batches = spillway_shared::pack::pack(&events, &limits).unwrap_or_default();
            for b in &batches {
                send_billed += chunks(b.body_bytes());
                messages.extend(b.entries.iter().map(|e| e.body.len()));
            }
            i += n;
        }
        let per_million = 1_000_000.0 / i as f64;
        // The consumer receives BATCH_SIZE messages per ReceiveMessage (billed by the 64 KiB
        // chunks of the bodies it returns) and deletes them with one DeleteMessageBatch.
        let mut receive_billed = 0usize;
        let mut delete_billed = 0usize;
        for group in messages.chunks(CONSUMER_BATCH_SIZE) {
            receive_billed += chunks(group.iter().sum());
            delete_billed += 1;
        }
        let requests = i / n;
        let c = SqsCost {
            events_per_request: n,
            send_billed: send_billed as f64 * per_million,
            floor: client_bytes as f64 / SQS_BILLING_CHUNK as f64 * per_million,
            messages_per_request: messages.len() as f64 / requests as f64,
            message_bytes: messages.iter().sum::<usize>() as f64 / messages.len() as f64,
            receive_billed: receive_billed as f64 * per_million,
            delete_billed: delete_billed as f64 * per_million,
        };
        note(&format!(
            "{n:>3} events/request: {:.0} billed sends per million events, floor {:.0}, x{:.1}; receive {:.0} + delete {:.0}",
            c.send_billed,
            c.floor,
            c.send_billed / c.floor,
            c.receive_billed,
            c.delete_billed
        ));
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Figure 5: database write rate

#[derive(Debug, Clone)]
struct DbWrite {
    rows: usize,
    batch: usize,
    unnest: f64,
    copy: f64,
    staging: f64,
    command: String,
}

fn db_write(tools: &Tools) -> Result<DbWrite> {
    let (rows, batch) = (100_000usize, 1_000usize);
    let rows_s = rows.to_string();
    let batch_s = batch.to_string();
    let args = [
        "run",
        "--quiet",
        "--release",
        "-p",
        "spillway-consumer",
        "--example",
        "bench_write",
        "--",
        &rows_s,
        &batch_s,
    ];
    let command = format!("cargo {}", args.join(" ").replace("--quiet ", ""));
    note(&format!("$ {command}"));
    let mut c = cargo(tools, &args);
    let out = c
        .stderr(Stdio::inherit())
        .output()
        .context("running bench_write")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for l in text.lines() {
        note(l);
    }
    if !out.status.success() {
        bail!("`{}` failed", show(&c));
    }
    let rate = |name: &str| -> Result<f64> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.iter()
                    .position(|x| *x == "rows/s")
                    .and_then(|p| w.get(p.wrapping_sub(1)))
                    .and_then(|v| v.parse().ok())
            })
            .ok_or_else(|| anyhow!("bench_write printed no `{name}` line"))
    };
    Ok(DbWrite {
        rows,
        batch,
        unnest: rate("unnest")?,
        copy: rate("copy")?,
        staging: rate("copy+staging")?,
        command,
    })
}

// ---------------------------------------------------------------------------------------------
// Figure 3: the edge under workerd, with wrk

#[derive(Debug, Clone)]
struct WrkRun {
    name: String,
    events: usize,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    non_2xx: u64,
    socket_errors: u64,
    command: String,
}

fn wrk_script(dir: &Path, name: &str, key: Option<&str>, body: Option<&[u8]>) -> Result<PathBuf> {
    let mut lua = String::from("-- Written by `cargo xtask bench`.\n");
    if let Some(body) = body {
        let body_path = dir.join(format!("{name}.json"));
        fs::write(&body_path, body)?;
        let _ = writeln!(
            lua,
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             local f = assert(io.open(\"{}\", \"rb\"))\nwrk.body = f:read(\"*a\")\nf:close()",
            body_path.display()
        );
    }
    if let Some(key) = key {
        let _ = writeln!(lua, "wrk.headers[\"Authorization\"] = \"Bearer {key}\"");
    }
    let path = dir.join(format!("{name}.lua"));
    fs::write(&path, lua)?;
    Ok(path)
}

fn parse_ms(v: &str) -> Option<f64> {
    let (num, unit) = v
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| v.split_at(i))?;
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

fn run_wrk(name: &str, events: usize, url: &str, script: &Path, secs: u32) -> Result<WrkRun> {
    let conns = 8;
    let args: Vec<String> = vec![
        "-t1".into(),
        format!("-c{conns}"),
        format!("-d{secs}s"),
        "--timeout".into(),
        "10s".into(),
        "--latency".into(),
        "-s".into(),
        script.display().to_string(),
        url.into(),
    ];
    let command = format!("wrk {}", args.join(" "));
    note(&format!("$ {command}"));
    let out = Command::new("wrk")
        .args(&args)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut r = WrkRun {
        name: name.into(),
        events,
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        requests: 0,
        non_2xx: 0,
        socket_errors: 0,
        command,
    };
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["Requests/sec:", v] => r.rps = v.parse().unwrap_or(0.0),
            ["50%", v] => r.p50_ms = parse_ms(v).unwrap_or(f64::NAN),
            ["99%", v] => r.p99_ms = parse_ms(v).unwrap_or(f64::NAN),
            [n, "requests", "in", ..] => r.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                r.socket_errors = rest
                    .iter()
                    .filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok())
                    .sum()
            }
            _ => {}
        }
    }
    note(&format!(
        "{name}: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {} requests, {} non-2xx, {} socket errors",
        r.rps, r.p50_ms, r.p99_ms, r.requests, r.non_2xx, r.socket_errors
    ));
    Ok(r)
}

/// Empties the local SQS between runs, so each starts on an empty queue (moto slows down as a
/// queue grows). `PurgeQueue` is allowed once a minute, so instead moto's state is reset and the
/// two queues are made again with the same names, hence the same URLs the edge and poller use.
/// Call it with the poller stopped.
fn purge(stack: &Stack) -> Result<()> {
    use std::io::Read as _;
    let port = stack
        .env
        .sqs_endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .context("no port in the SQS endpoint")?;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "POST /moto-api/reset HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    if !answer.starts_with("HTTP/1.1 200") && !answer.starts_with("HTTP/1.0 200") {
        bail!("moto reset failed: {answer:.200}");
    }
    let cfg = &stack.config;
    let dlq_url = stack
        .sqs
        .create_queue(&format!("{}-dlq", cfg.queue_name), &[])?;
    let dlq_arn = stack
        .sqs
        .attributes(&dlq_url)?
        .remove("QueueArn")
        .context("DLQ has no QueueArn")?;
    let redrive = json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": cfg.max_receive_count.to_string(),
    })
    .to_string();
    let url = stack.sqs.create_queue(
        &cfg.queue_name,
        &[
            ("RedrivePolicy", redrive),
            ("VisibilityTimeout", cfg.visibility_timeout_secs.to_string()),
        ],
    )?;
    if url != stack.env.sqs_queue_url || dlq_url != stack.env.sqs_dlq_url {
        bail!("queues came back with other URLs: {url}, {dlq_url}");
    }
    Ok(())
}

fn workerd(stack: &mut Stack, opts: &Opts) -> Result<Vec<WrkRun>> {
    // Only the edge and the local SQS are measured: the poller would compete for the same two
    // cores while it drains what wrk sends.
    stack.stop_poller();
    let dir = stack.config.dir.join("wrk");
    fs::create_dir_all(&dir)?;
    let ts = now_rfc3339();
    let key = stack.env.ingest_key.clone();
    let health = format!("http://127.0.0.1:{}/healthz", stack.config.edge_port);
    let ingest = stack.env.ingest_url.clone();
    let mut runs = Vec::new();
    let script = wrk_script(&dir, "healthz", None, None)?;
    runs.push(run_wrk("GET /healthz", 0, &health, &script, opts.wrk_secs)?);
    for n in [1usize, 100] {
        purge(stack)?;
        let body = request_body(n, 0, &ts, &mut || None);
        let name = format!("post{n}");
        let script = wrk_script(&dir, &name, Some(&key), Some(&body))?;
        let label = format!(
            "POST {n} event{} ({} B)",
            if n == 1 { "" } else { "s" },
            body.len()
        );
        let mut run = run_wrk(&label, n, &ingest, &script, opts.wrk_secs)?;
        let (visible, in_flight) = stack.sqs.depth(&stack.env.sqs_queue_url)?;
        note(&format!(
            "queue holds {} message(s) after the run (one per accepted request, including those still in flight when wrk stopped counting)",
            visible + in_flight
        ));
        run.name = label;
        runs.push(run);
    }
    purge(stack)?;
    Ok(runs)
}

// ---------------------------------------------------------------------------------------------
// Figure 6: the burst

#[derive(Debug, Clone, Default)]
struct Sample {
    t: f64,
    connections: u64,
    rows: u64,
}

#[derive(Debug, Clone, Default)]
struct BurstResult {
    name: String,
    clients: usize,
    requests: usize,
    events_sent: usize,
    accepted_events: usize,
    errors: usize,
    error_kinds: BTreeMap<String, usize>,
    p50_ms: f64,
    p99_ms: f64,
    all_answered_s: f64,
    db_complete_s: Option<f64>,
    peak_connections: u64,
    max_connections: String,
    lost: usize,
    stored: usize,
    samples: Vec<Sample>,
    /// (t, visible + in flight) of the pipeline's queue.
    queue: Vec<(f64, u64)>,
    setup: String,
}

/// A psql session held open for the whole burst, so watching never needs a new connection
/// (which a full server would refuse).
struct Monitor {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Monitor {
    fn start(port: u16) -> Result<Monitor> {
        let bin = spillway_support::pg_bin_dir()?.join("psql");
        let mut child = Command::new(bin)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-XAtq"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting psql")?;
        let stdin = child.stdin.take().context("psql stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("psql stdout")?);
        let mut m = Monitor {
            child,
            stdin,
            stdout,
        };
        m.query("select 1")?;
        Ok(m)
    }

    fn query(&mut self, sql: &str) -> Result<String> {
        writeln!(self.stdin, "{sql};")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("psql monitor ended");
        }
        Ok(line.trim().to_owned())
    }

    /// (client connections other than this one, rows in `events`)
    fn look(&mut self) -> Result<(u64, u64)> {
        let line = self.query(
            "select (select count(*) from pg_stat_activity where backend_type = 'client backend' \
             and pid <> pg_backend_pid()) || '|' || (select count(*) from events)",
        )?;
        let mut p = line.split('|').map(|v| v.parse::<u64>().unwrap_or(0));
        Ok((p.next().unwrap_or(0), p.next().unwrap_or(0)))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Restarts a cluster with PostgreSQL's default `max_connections` (the support crate starts its
/// clusters with 300 for the test suite).
fn restart_with_max_connections(pg: &Postgres, data: &Path, max: u32) -> Result<()> {
    pg.stop()?;
    let bin = spillway_support::pg_bin_dir()?;
    let dir = data.parent().unwrap_or(data);
    let opts = format!(
        "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections={max} -c fsync=off",
        pg.port(),
        dir.display()
    );
    let root_user = output(Command::new("id").arg("-u")).as_deref() == Some("0");
    let mut c = if root_user {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join("pg_ctl"));
        c
    } else {
        Command::new(bin.join("pg_ctl"))
    };
    c.arg("-D")
        .arg(data)
        .arg("-l")
        .arg(dir.join("postgres.log"))
        .args(["-o", &opts, "-w", "-t", "30", "start"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    run(&mut c)?;
    let got = psql(pg.port(), "show max_connections")?;
    if got != max.to_string() {
        bail!("max_connections is {got}, wanted {max}");
    }
    Ok(())
}

fn burst_spillway(stack: &mut Stack, opts: &Opts) -> Result<Vec<BurstResult>> {
    stack.stop_poller();
    let data = stack.config.dir.join("pg").canonicalize()?.join("data");
    restart_with_max_connections(&stack.pg, &data, BURST_MAX_CONNECTIONS)?;
    let mut out = Vec::new();
    for &clients in &opts.burst_clients {
        stack.stop_poller();
        purge(stack)?;
        stack.pg.psql("truncate events")?;
        stack.start_poller()?;
        let sqs = stack.sqs.clone();
        let queue = stack.env.sqs_queue_url.clone();
        let mut r = burst(
            "Spillway",
            &stack.env.ingest_url,
            Some(&stack.env.ingest_key),
            stack.pg.port(),
            Some(&move || sqs.depth(&queue).map(|(v, f)| v + f).ok()),
            clients,
            opts,
        )?;
        r.setup = "the `Stack` of `cargo xtask dev`: `wrangler dev` (release wasm, default \
                   `SQS_DEADLINE_MS` 8000), moto, the poller (debug build, defaults: \
                   `MAXIMUM_CONCURRENCY` 2, `BATCH_SIZE` 10)"
            .into();
        out.push(r);
    }
    Ok(out)
}

fn burst_baseline(opts: &Opts) -> Result<Vec<BurstResult>> {
    let dir = spillway_support::run_dir().join(format!("baseline-{}", std::process::id()));
    let pg = Postgres::start_in(&dir, free_port()?, false)?;
    let data = dir.canonicalize()?.join("data");
    restart_with_max_connections(&pg, &data, BURST_MAX_CONNECTIONS)?;
    let bins = spillway_support::stack::debug_bin_dir();
    run(Command::new(bins.join("spillway-consumer"))
        .arg("migrate")
        .env("DATABASE_URL", pg.url())
        .stdout(Stdio::null()))?;
    let port = free_port()?;
    let mut cmd = Command::new(bins.join("spillway-baseline"));
    cmd.arg(format!("127.0.0.1:{port}")).arg(pg.url());
    let mut server = Service::spawn("baseline", cmd, &dir.join("baseline.log"))?;
    spillway_support::wait_for_port(port, Duration::from_secs(10))?;
    let mut out = Vec::new();
    let mut result = Ok(());
    for &clients in &opts.burst_clients {
        let r = pg.psql("truncate events").and_then(|_| {
            burst(
                "synchronous baseline",
                &format!("http://127.0.0.1:{port}/v1/events"),
                None,
                pg.port(),
                None,
                clients,
                opts,
            )
        });
        match r {
            Ok(mut r) => {
                r.setup = "`benches/baseline` (debug build): a thread per request, a new \
                           PostgreSQL connection per request, no pool"
                    .into();
                out.push(r);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    server.stop(Duration::from_secs(3));
    result.map(|()| out)
}

#[derive(Debug, Default)]
struct Outcome {
    latency_ms: f64,
    status: String,
    ids: Vec<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One client: waits at the start line, then sends its requests one after the other.
fn client(url: &str, key: Option<&str>, mine: &[Vec<u8>], barrier: &Barrier) -> Vec<Outcome> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    barrier.wait();
    let mut out = Vec::new();
    for body in mine {
        let start = Instant::now();
        let mut req = agent.post(url).set("Content-Type", "application/json");
        if let Some(k) = key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        let (status, ids) = match req.send_bytes(body) {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => {
                let status = resp.status();
                let v: Value = resp.into_json().unwrap_or(Value::Null);
                let ids = match (status, v["ids"].as_array()) {
                    (202, Some(a)) => a
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                };
                (status.to_string(), ids)
            }
            Err(e) => (format!("transport: {}", e.kind()), Vec::new()),
        };
        out.push(Outcome {
            latency_ms: start.elapsed().as_secs_f64() * 1000.0,
            status,
            ids,
        });
    }
    out
}

fn burst(
    name: &str,
    url: &str,
    key: Option<&str>,
    pg_port: u16,
    queue_depth: Option<&(dyn Fn() -> Option<u64> + Sync)>,
    clients: usize,
    opts: &Opts,
) -> Result<BurstResult> {
    let per_client = opts.burst_requests;
    let ts = now_rfc3339();
    let nonce = u128::from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    // Bodies are made before the start line, so clients only send.
    let counter = AtomicU64::new(0);
    let mut next_id = || {
        let n = u128::from(counter.fetch_add(1, Ordering::Relaxed));
        Some(uuid::Uuid::from_u128((nonce << 64) | n).to_string())
    };
    let bodies: Vec<Vec<Vec<u8>>> = (0..clients)
        .map(|c| {
            (0..per_client)
                .map(|r| {
                    request_body(
                        BURST_EVENTS_PER_REQUEST,
                        (c * per_client + r) * BURST_EVENTS_PER_REQUEST,
                        &ts,
                        &mut next_id,
                    )
                })
                .collect()
        })
        .collect();
    note(&format!(
        "{name}: {clients} clients x {per_client} request(s) x {BURST_EVENTS_PER_REQUEST} events, all released at once"
    ));
    let mut monitor = Monitor::start(pg_port)?;
    let max_connections = monitor.query("show max_connections")?;
    let samples: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
    let queue: Mutex<Vec<(f64, u64)>> = Mutex::new(Vec::new());
    let target = AtomicU64::new(u64::MAX);
    let clients_done = AtomicBool::new(false);
    let finished = AtomicBool::new(false);
    let barrier = Barrier::new(clients + 1);
    let give_up = Duration::from_secs(240);
    let mut done_at = None;
    let mut answered_at = 0.0;
    let mut outcomes = Vec::new();
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = bodies
            .iter()
            .map(|mine| {
                let barrier = &barrier;
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || client(url, key, mine, barrier))
            })
            .collect::<std::io::Result<_>>()?;
        // The queue is watched on its own thread: a busy moto answers slowly, and the database
        // samples must keep their pace.
        let queue_sampler = s.spawn(|| {
            let Some(depth) = queue_depth else { return };
            while !finished.load(Ordering::SeqCst) {
                if let Some(d) = depth() {
                    if let Ok(mut q) = queue.lock() {
                        q.push((start.elapsed().as_secs_f64(), d));
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        let sampler = s.spawn(|| {
            let mut done = None;
            loop {
                let t = start.elapsed().as_secs_f64();
                let (connections, rows) = monitor.look().unwrap_or((0, 0));
                if let Ok(mut v) = samples.lock() {
                    v.push(Sample {
                        t,
                        connections,
                        rows,
                    });
                }
                let queue_empty = queue_depth.is_none()
                    || queue
                        .lock()
                        .ok()
                        .and_then(|q| q.last().map(|(_, d)| *d == 0))
                        .unwrap_or(false);
                let all_done = clients_done.load(Ordering::SeqCst);
                if all_done && rows >= target.load(Ordering::SeqCst) && queue_empty {
                    done = Some(start.elapsed().as_secs_f64());
                    break;
                }
                if start.elapsed() > give_up {
                    break;
                }
                // Fine-grained while clients hold connections, coarser while the queue drains.
                let pause = if all_done { 200 } else { 50 };
                std::thread::sleep(Duration::from_millis(pause));
            }
            finished.store(true, Ordering::SeqCst);
            done
        });
        barrier.wait();
        for h in handles {
            outcomes.extend(h.join().map_err(|_| anyhow!("a client thread panicked"))?);
        }
        answered_at = start.elapsed().as_secs_f64();
        let accepted: usize = outcomes.iter().map(|o| o.ids.len()).sum();
        target.store(accepted as u64, Ordering::SeqCst);
        clients_done.store(true, Ordering::SeqCst);
        done_at = sampler
            .join()
            .map_err(|_| anyhow!("the sampler panicked"))?;
        queue_sampler
            .join()
            .map_err(|_| anyhow!("the queue sampler panicked"))?;
        Ok(())
    })?;
    let samples = samples.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let queue = queue.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let mut error_kinds = BTreeMap::new();
    let mut accepted_ids = Vec::new();
    let mut latencies = Vec::new();
    for o in &outcomes {
        if o.status == "202" {
            latencies.push(o.latency_ms);
            accepted_ids.extend(o.ids.iter().cloned());
        } else {
            *error_kinds.entry(o.status.clone()).or_insert(0) += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    // Reconcile: every accepted id must be in the table.
    let stored = psql(pg_port, "select id from events")?;
    let stored: HashSet<&str> = stored.lines().collect();
    let lost = accepted_ids
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .count();
    let r = BurstResult {
        name: name.into(),
        clients,
        requests: outcomes.len(),
        events_sent: clients * per_client * BURST_EVENTS_PER_REQUEST,
        accepted_events: accepted_ids.len(),
        errors: outcomes.len() - latencies.len(),
        error_kinds,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        all_answered_s: answered_at,
        db_complete_s: done_at,
        peak_connections: samples.iter().map(|s| s.connections).max().unwrap_or(0),
        max_connections,
        lost,
        stored: stored.len(),
        samples,
        queue,
        setup: String::new(),
    };
    note(&format!(
        "{} requests: {} accepted events, {} errors {:?}, p50 {:.0} ms, p99 {:.0} ms, peak {} connections, {} lost, database complete at {}",
        r.requests,
        r.accepted_events,
        r.errors,
        r.error_kinds,
        r.p50_ms,
        r.p99_ms,
        r.peak_connections,
        r.lost,
        r.db_complete_s
            .map(|s| format!("{s:.1} s"))
            .unwrap_or_else(|| "never (gave up)".into())
    ));
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// The plot

/// One panel of the plot: a title, and per system the points to draw.
struct Panel<'a> {
    title: &'a str,
    series: Vec<Vec<(f64, f64)>>,
    limit: Option<f64>,
    /// The panel's own time span, when it zooms in.
    zoom: Option<f64>,
}

fn burst_svg(pair: &[BurstResult]) -> String {
    let (w, ph, left, top) = (860.0, 170.0, 70.0, 40.0);
    let pw = w - left - 30.0;
    let colors = ["#1f77b4", "#d62728"];
    // The baseline is over in seconds; a zoomed copy of the connections panel shows its spike.
    let zoom = pair
        .iter()
        .map(|b| b.all_answered_s)
        .fold(0.0f64, f64::max)
        .min(
            pair.iter()
                .map(|b| b.all_answered_s)
                .fold(f64::MAX, f64::min)
                * 2.0
                + 1.0,
        );
    let zoom_title = format!("the same, first {zoom:.0} s");
    let connections = |b: &BurstResult| -> Vec<(f64, f64)> {
        b.samples
            .iter()
            .map(|s| (s.t, s.connections as f64))
            .collect()
    };
    let panels = [
        Panel {
            title: "PostgreSQL client connections (pg_stat_activity)",
            series: pair
                .iter()
                .map(|b| {
                    b.samples
                        .iter()
                        .map(|s| (s.t, s.connections as f64))
                        .collect()
                })
                .collect(),
            limit: Some(f64::from(BURST_MAX_CONNECTIONS)),
            zoom: None,
        },
        Panel {
            title: &zoom_title,
            series: pair
                .iter()
                .map(|b| {
                    connections(b)
                        .into_iter()
                        .filter(|(t, _)| *t <= zoom)
                        .collect()
                })
                .collect(),
            limit: Some(f64::from(BURST_MAX_CONNECTIONS)),
            zoom: Some(zoom),
        },
        Panel {
            title: "SQS queue depth, messages (visible + in flight)",
            series: pair
                .iter()
                .map(|b| b.queue.iter().map(|(t, d)| (*t, *d as f64)).collect())
                .collect(),
            limit: None,
            zoom: None,
        },
        Panel {
            title: "rows in PostgreSQL, % of events sent",
            series: pair
                .iter()
                .map(|b| {
                    b.samples
                        .iter()
                        .map(|s| (s.t, 100.0 * s.rows as f64 / b.events_sent.max(1) as f64))
                        .collect()
                })
                .collect(),
            limit: Some(100.0),
            zoom: None,
        },
    ];
    let t_max = panels
        .iter()
        .flat_map(|p| p.series.iter().flatten().map(|(t, _)| *t))
        .fold(1.0f64, f64::max);
    let h = top + panels.len() as f64 * (ph + 55.0) + 40.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="20" font-size="15">Burst: {} clients at once, {} request(s) of {} events each; seconds since the start (cargo xtask bench)</text>"#,
        pair.first().map(|b| b.clients).unwrap_or(0),
        pair.first()
            .map(|b| b.requests / b.clients.max(1))
            .unwrap_or(0),
        BURST_EVENTS_PER_REQUEST
    );
    for (i, panel) in panels.iter().enumerate() {
        let y0 = top + i as f64 * (ph + 55.0) + 20.0;
        let y_max = panel
            .series
            .iter()
            .flatten()
            .map(|(_, v)| *v)
            .chain(panel.limit)
            .fold(0.0f64, f64::max);
        let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.1 };
        let span = panel.zoom.unwrap_or(t_max).max(0.1);
        let x = |t: f64| left + pw * t / span;
        let y = |v: f64| y0 + ph - ph * v / y_max;
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="{}" font-weight="bold">{}</text>"#,
            y0 - 6.0,
            panel.title
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{left}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        for k in 0..=4 {
            let v = y_max * f64::from(k) / 4.0;
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="end" fill="#555">{v:.0}</text>"##,
                left - 6.0,
                y(v) + 4.0
            );
            let tv = span * f64::from(k) / 4.0;
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">{tv:.1} s</text>"##,
                x(tv),
                y0 + ph + 15.0
            );
        }
        if let Some(l) = panel.limit {
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" x2="{}" y1="{yl}" y2="{yl}" stroke="#888" stroke-dasharray="5,4"/>"##,
                left + pw,
                yl = y(l)
            );
        }
        for (points, color) in panel.series.iter().zip(colors) {
            if points.is_empty() {
                continue;
            }
            let pts: Vec<String> = points
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                pts.join(" ")
            );
        }
    }
    for (k, (b, color)) in pair.iter().zip(colors).enumerate() {
        let yy = h - 30.0 + 16.0 * k as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{left}" y="{}" width="14" height="4" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            yy - 4.0,
            left + 20.0,
            yy + 1.0,
            xml_escape(&b.name)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" fill="#555" text-anchor="end">dashed: max_connections = {BURST_MAX_CONNECTIONS}; 100% of events sent</text>"##,
        left + pw,
        h - 14.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// What a burst's numbers say, in words derived from them.
fn burst_reading(sp: &BurstResult, base: &BurstResult) -> String {
    let mut out = format!(
        "Reading: Spillway held at most {} database connection(s) while {} clients arrived at \
         once; the baseline opened up to {} (`max_connections` {}). ",
        sp.peak_connections, sp.clients, base.peak_connections, base.max_connections
    );
    let max: u64 = base.max_connections.parse().unwrap_or(u64::MAX);
    if base.peak_connections + 3 >= max {
        out.push_str("The baseline ran into `max_connections`. ");
    } else {
        out.push_str(
            "The baseline stayed below `max_connections` on this machine (see what bounds it, \
             below). ",
        );
    }
    let refused = |b: &BurstResult| {
        b.error_kinds
            .iter()
            .map(|(k, v)| format!("{v} x {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if sp.errors > 0 {
        let _ = write!(
            out,
            "Spillway refused {} request(s) ({}): the local SQS could not take the messages \
             within the edge's deadline; those clients were told to retry, and no accepted event \
             was lost ({} lost). ",
            sp.errors,
            refused(sp),
            sp.lost
        );
    } else {
        let _ = write!(
            out,
            "Spillway accepted every request and lost {} events. ",
            sp.lost
        );
    }
    if sp.stored > sp.accepted_events {
        let _ = write!(
            out,
            "The table holds {} rows, more than the {} events accepted: the messages of some \
             requests answered `503` reached SQS after the deadline and were stored too (a \
             retry with the same ids would be stored once). ",
            sp.stored, sp.accepted_events
        );
    }
    if base.errors > 0 {
        let _ = write!(
            out,
            "The baseline failed {} request(s) ({}), {} event(s) lost after a 202. ",
            base.errors,
            refused(base),
            base.lost
        );
    } else {
        let _ = write!(
            out,
            "The baseline answered every request and lost {} events. ",
            base.lost
        );
    }
    if let (Some(a), Some(b)) = (sp.db_complete_s, base.db_complete_s) {
        let _ = write!(
            out,
            "The database had every accepted event {a:.1} s after the start with Spillway and \
             {b:.1} s with the baseline: Spillway trades time to the database (moto's drain \
             rate here) for a fixed connection count."
        );
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

// ---------------------------------------------------------------------------------------------
// BENCHMARKS.md

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}x", a / b)
    } else {
        "n/a".into()
    }
}

fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn markdown(r: &Results, opts: &Opts) -> String {
    let m = &r.machine;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Benchmarks\n\n\
         Generated by `cargo xtask bench` ({:.0} s) on {}, at commit {}. Do not edit by hand: run \
         the command again. Every figure is a ratio against a reference measured **in the same \
         run on the same machine**, because the machine is shared and noisy; absolute numbers \
         move from run to run, the ratios much less.\n",
        r.seconds, m.date, m.commit
    );
    let _ = writeln!(
        s,
        "**Machine**: `nproc` = {}, CPU `{}` (from /proc/cpuinfo), {:.1} GiB RAM, {}, load average \
         at start {}. Shared with other engineers' builds while this ran.\n",
        m.nproc, m.cpu, m.ram_gib, m.kernel, m.load
    );
    let _ = writeln!(s, "## Summary\n\n| # | figure | Spillway | reference (same run) | ratio |\n|---|---|---|---|---|");
    if let Some(e) = &r.edge {
        for (n, path, floor, _) in &e.rows {
            let _ = writeln!(
                s,
                "| 1 | edge request path, {n}-event requests | {path:.0} ns/event | serde_json parse + serialise: {floor:.0} ns/event | {} |",
                ratio(*path, *floor)
            );
        }
    }
    if let Some(w) = &r.wasm {
        let _ = writeln!(
            s,
            "| 2 | release worker, gzip -9 | {} B | `worker` 0.8.7 hello world: {} B | {} |",
            thousands(w.edge_gz as f64),
            thousands(w.hello_gz as f64),
            ratio(w.edge_gz as f64, w.hello_gz as f64)
        );
    }
    if let Some(runs) = &r.workerd {
        if let Some(h) = runs.first() {
            for p in runs.iter().skip(1) {
                let _ = writeln!(
                    s,
                    "| 3 | {} under `wrangler dev`, moto behind | {:.0} req/s ({} events/s), p50 {:.1} ms, p99 {:.1} ms | GET /healthz: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms | {} of the throughput, p99 {} |",
                    p.name,
                    p.rps,
                    thousands(p.rps * p.events as f64),
                    p.p50_ms,
                    p.p99_ms,
                    h.rps,
                    h.p50_ms,
                    h.p99_ms,
                    ratio(p.rps, h.rps),
                    ratio(p.p99_ms, h.p99_ms)
                );
            }
        }
    }
    if let Some(c) = &r.sqs {
        for x in c {
            let _ = writeln!(
                s,
                "| 4 | billed SQS sends per million events, {}-event requests | {} | payload bytes / 64 KiB: {} | {} |",
                x.events_per_request,
                thousands(x.send_billed),
                thousands(x.floor),
                ratio(x.send_billed, x.floor)
            );
        }
    }
    if let Some(d) = &r.db {
        let _ = writeln!(
            s,
            "| 5 | consumer bulk write (UNNEST), batches of {} | {} rows/s | binary COPY: {} rows/s | {} |",
            thousands(d.batch as f64),
            thousands(d.unnest),
            thousands(d.copy),
            ratio(d.unnest, d.copy)
        );
    }
    for (sp, base) in &r.bursts {
        let _ = writeln!(
            s,
            "| 6 | burst of {c} clients: peak PostgreSQL connections | {} | synchronous baseline: {} | {} |",
            sp.peak_connections,
            base.peak_connections,
            ratio(sp.peak_connections as f64, base.peak_connections as f64),
            c = sp.clients
        );
        let _ = writeln!(
            s,
            "| 6 | burst of {c} clients: failed requests / events lost | {} / {} | {} / {} | |",
            sp.errors,
            sp.lost,
            base.errors,
            base.lost,
            c = sp.clients
        );
        let _ = writeln!(
            s,
            "| 6 | burst of {c} clients: p99 accept latency | {:.0} ms | {:.0} ms | {} |",
            sp.p99_ms,
            base.p99_ms,
            ratio(sp.p99_ms, base.p99_ms),
            c = sp.clients
        );
        let secs = |b: &BurstResult| {
            b.db_complete_s
                .map(|v| format!("{v:.1} s"))
                .unwrap_or_else(|| "not within 240 s".into())
        };
        let _ = writeln!(
            s,
            "| 6 | burst of {c} clients: time until the database has every accepted event | {} | {} | {} |",
            secs(sp),
            secs(base),
            ratio(sp.db_complete_s.unwrap_or(f64::NAN), base.db_complete_s.unwrap_or(f64::NAN)),
            c = sp.clients
        );
    }
    let _ = writeln!(
        s,
        "\nRun everything: `cargo xtask bench` (at most 15 minutes on 2 cores once the tools and \
         build caches exist; it installs `wrk` with apt-get when missing, as root). Options: \
         `--burst-clients N,N` (default 400,1200), `--burst-requests N` (1), `--wrk-secs N` (8), \
         `--only edge,wasm,sqs,db,workerd,burst` (development; writes \
         `$CARGO_TARGET_DIR/BENCHMARKS.partial.md` instead of this file). This run: \
         `--burst-clients {} --burst-requests {} --wrk-secs {}`.\n",
        opts.burst_clients
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
        opts.burst_requests,
        opts.wrk_secs
    );

    if let Some(e) = &r.edge {
        let _ = writeln!(
            s,
            "## 1. Edge cost per event (native, criterion)\n\n\
             Command: `{}`\n\n\
             The pure request path (`spillway_edge::handler::prepare`: parse, validate, assign ids \
             and enrich, pack into SQS batches) against plain `serde_json` parse into a `Value` and \
             serialise back of the **same bytes**, one criterion group (`edge_cost`), \
             `edge/benches/floor.rs`. Events are 512, 1024, 1536 and 2048 bytes in turn, like a \
             page-view event padded with data. Native code in the release profile \
             (`opt-level = \"s\"`, LTO), not wasm: the ratio is what carries over.\n\n\
             | events per request | request body | request path | floor | ratio | request path per KiB |\n|---|---|---|---|---|---|",
            e.command
        );
        for (n, path, floor, bytes) in &e.rows {
            let _ = writeln!(
                s,
                "| {n} | {} B ({} B/event) | {path:.0} ns/event | {floor:.0} ns/event | {} | {:.0} ns/KiB |",
                thousands(*bytes as f64),
                thousands(*bytes as f64 / *n as f64),
                ratio(*path, *floor),
                path * *n as f64 / (*bytes as f64 / 1024.0)
            );
        }
        let _ = writeln!(
            s,
            "\nBound: CPU only. The request path does strictly more than the floor (it parses each \
             event, validates, builds the enriched event, encodes the envelope and the dedup id), \
             so a ratio above 1 is its price; everything else an edge request costs (TLS, the \
             runtime, the SQS call) is outside this figure and dominates it (figure 3).\n"
        );
    }
    if let Some(w) = &r.wasm {
        let _ = writeln!(
            s,
            "## 2. Wasm size\n\n\
             Commands: `worker-build --release edge` and `worker-build --release benches/hello-worker` \
             (same release profile, same `WASM_BINDGEN_BIN`, `WASM_OPT_BIN`, `ESBUILD_BIN` that \
             `cargo xtask` sets), then `gzip -9 -c <dir>/build/index_bg.wasm | wc -c`.\n\n\
             | worker | index_bg.wasm | gzip -9 |\n|---|---|---|\n\
             | edge (`spillway-edge`) | {} B | {} B |\n\
             | hello world (`benches/hello-worker`, `worker` 0.8.7) | {} B | {} B |\n\
             | ratio | {} | {} |\n\n\
             Bound: the edge carries `aws-sdk-sqs` (request signing, the JSON protocol), \
             `serde_json`, `chrono`, `flate2` and `uuid` on top of the `worker` runtime; the hello \
             world is the floor any `worker` 0.8.7 Rust Worker pays. Cloudflare's limit is 3 MiB \
             gzipped on the free plan and 10 MiB on paid plans.\n",
            thousands(w.edge_raw as f64),
            thousands(w.edge_gz as f64),
            thousands(w.hello_raw as f64),
            thousands(w.hello_gz as f64),
            ratio(w.edge_raw as f64, w.hello_raw as f64),
            ratio(w.edge_gz as f64, w.hello_gz as f64)
        );
    }
    if let Some(runs) = &r.workerd {
        let _ = writeln!(
            s,
            "## 3. Edge under workerd (`wrangler dev`)\n\n\
             The `Stack` of `cargo xtask dev` on private ports (wrangler dev serving the release \
             wasm, moto behind it; the poller is stopped during this figure so only the edge and \
             the local SQS share the two cores, and the queue is purged between runs). One `wrk` \
             thread, 8 connections, {} s per run, 127.0.0.1 only; the POST scripts set the body \
             and the `Authorization` and `Content-Type` headers. Events as in figure 1, no client \
             ids (the edge assigns UUIDv7s).\n\n\
             | request | command | requests/s | events/s | p50 | p99 | requests | non-2xx | socket errors | req/s vs /healthz |\n\
             |---|---|---|---|---|---|---|---|---|---|",
            opts.wrk_secs
        );
        let h_rps = runs.first().map(|h| h.rps).unwrap_or(0.0);
        for p in runs {
            let _ = writeln!(
                s,
                "| {} | `{}` | {:.0} | {} | {:.2} ms | {:.2} ms | {} | {} | {} | {} |",
                p.name,
                p.command,
                p.rps,
                thousands(p.rps * p.events as f64),
                p.p50_ms,
                p.p99_ms,
                p.requests,
                p.non_2xx,
                p.socket_errors,
                ratio(p.rps, h_rps)
            );
        }
        let _ = writeln!(
            s,
            "\nBound: **moto**, for the POSTs. Each accepted request is one `SendMessageBatch` to \
             the local SQS, which takes about 160 messages/s on this kind of machine \
             (shared/LOCAL-AWS.md), and the edge answers `202` only once SQS holds the events. So \
             these POST figures measure moto, not the edge or workerd; `/healthz` (no SQS call) \
             is the runtime's own ceiling on this machine. Against real SQS the POST path adds \
             one SQS round trip to the `/healthz` cost. Measuring against LocalStack \
             (about 7,000 messages/s) is not wired into this command yet.\n"
        );
    }
    if let Some(c) = &r.sqs {
        let _ = writeln!(
            s,
            "## 4. SQS requests billed per million events\n\n\
             Computed, not timed: the events of figure 1 (512-2048 B as the client sends them) are \
             enriched and packed by the real packer (`spillway_shared::pack::pack`, default \
             `Limits`: 256 KiB per message, 1 MiB and 10 messages per `SendMessageBatch`), and \
             each `SendMessageBatch` is billed one request per started 64 KiB of its message \
             bodies. The floor is the client's event bytes / 64 KiB, as if the bytes were sent \
             with no envelope, no enrichment and perfectly full 64 KiB chunks. Command: \
             `cargo xtask bench --only sqs` (pure computation, xtask/src/bench.rs `sqs_costs`).\n\n\
             | events per request | SQS messages per request | bytes per message | billed sends per million events | floor | ratio | receives + deletes per million events (BATCH_SIZE {CONSUMER_BATCH_SIZE}) |\n\
             |---|---|---|---|---|---|---|"
        );
        for x in c {
            let _ = writeln!(
                s,
                "| {} | {:.2} | {} | {} | {} | {} | {} + {} |",
                x.events_per_request,
                x.messages_per_request,
                thousands(x.message_bytes),
                thousands(x.send_billed),
                thousands(x.floor),
                ratio(x.send_billed, x.floor),
                thousands(x.receive_billed),
                thousands(x.delete_billed)
            );
        }
        let _ = writeln!(
            s,
            "\nBound: how clients batch. A request is never split across fewer messages than it \
             has, and never merged with another request (the edge answers each request on its \
             own), so 1-event requests pay one billed send per event whatever the packer does; \
             batched requests approach the floor, the rest is the envelope and the enrichment \
             (id, received_at, key_id, edge location) added to each event. Receives assume full \
             batches of {CONSUMER_BATCH_SIZE} messages (a queue with a backlog); idle long polls \
             (`WAIT_TIME_SECONDS` 20) add up to 3 empty receives per minute per poller worker, \
             independent of traffic.\n"
        );
    }
    if let Some(d) = &r.db {
        let _ = writeln!(
            s,
            "## 5. Database write rate\n\n\
             Command: `{}` (consumer/examples/bench_write.rs). {} rows in batches of {} (one Lambda \
             invocation of 10 messages of 100 events), each way on an empty table of the same \
             throwaway PostgreSQL 15 (started by the support crate: `fsync=off`, so these are CPU \
             and WAL figures, not disk figures).\n\n\
             | write | rows/s | vs COPY |\n|---|---|---|\n\
             | consumer: `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT (id) DO NOTHING` (PgStore) | {} | {} |\n\
             | binary `COPY events FROM STDIN` (no duplicate handling: the ceiling) | {} | 1.00x |\n\
             | `COPY` into a staging table + `INSERT ... ON CONFLICT DO NOTHING` (same semantics) | {} | {} |\n\n\
             Bound: PostgreSQL's CPU (one backend per connection) on a machine whose other core \
             runs the client; the consumer's rate per connection times `MAXIMUM_CONCURRENCY` is \
             the pipeline's drain ceiling when SQS is not the bottleneck.\n",
            d.command,
            thousands(d.rows as f64),
            thousands(d.batch as f64),
            thousands(d.unnest),
            ratio(d.unnest, d.copy),
            thousands(d.copy),
            thousands(d.staging),
            ratio(d.staging, d.copy)
        );
    }
    if !r.bursts.is_empty() {
        let sizes: Vec<String> = opts.burst_clients.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(
            s,
            "## 6. The burst experiment\n\n\
             Command: `cargo xtask bench --only burst --burst-clients {} --burst-requests {}` (part \
             of `cargo xtask bench`). For each burst size, that many client threads on 127.0.0.1, \
             each with its own HTTP connection, are released at the same instant by a barrier; \
             each sends {} request(s) of {BURST_EVENTS_PER_REQUEST} events (512-2048 B, with \
             client-chosen ids) and does not retry. Spillway runs first (the `Stack`), then the \
             baseline (`benches/baseline`, documented there as a baseline only). Each writes to \
             its own PostgreSQL 15 restarted with `max_connections = 100` (the default, set \
             explicitly; the test clusters use 300), trust auth, `fsync=off`, on loopback. A psql \
             session opened before the burst samples `pg_stat_activity` (client backends other \
             than itself) and `count(*)` of `events` every 50 ms while clients wait and every \
             200 ms after; the pipeline's queue depth (`GetQueueAttributes`, visible + in flight) \
             every 250 ms on its own thread. Events lost = ids answered `202` that are not in the \
             table at the end. \"Database has every accepted event\" = the table holds them all \
             (and, for Spillway, the queue is empty).\n",
            sizes.join(","),
            opts.burst_requests,
            opts.burst_requests,
        );
        for (sp, base) in &r.bursts {
            let _ = writeln!(
                s,
                "### {} clients at once\n\n\
                 ![connections, queue depth and rows over time, {} clients](benches/results/burst-{}.svg)\n\n\
                 | | Spillway | synchronous baseline | ratio |\n|---|---|---|---|",
                sp.clients, sp.clients, sp.clients
            );
            let pair = [sp, base];
            let row = |label: &str,
                       f: &dyn Fn(&BurstResult) -> String,
                       ratio_of: Option<fn(&BurstResult) -> f64>| {
                let cells: Vec<String> = pair.iter().map(|b| f(b)).collect();
                let q = ratio_of.map(|g| ratio(g(sp), g(base))).unwrap_or_default();
                format!("| {label} | {} | {q} |", cells.join(" | "))
            };
            let lines = [
                row("setup", &|b| b.setup.clone(), None),
                row("max_connections", &|b| b.max_connections.clone(), None),
                row(
                    "requests sent / events sent",
                    &|b| format!("{} / {}", b.requests, b.events_sent),
                    None,
                ),
                row(
                    "events accepted (202)",
                    &|b| b.accepted_events.to_string(),
                    None,
                ),
                row(
                    "failed requests (by answer)",
                    &|b| {
                        if b.errors == 0 {
                            "0".into()
                        } else {
                            let kinds: Vec<String> = b
                                .error_kinds
                                .iter()
                                .map(|(k, v)| format!("{v} x {k}"))
                                .collect();
                            format!("{} ({})", b.errors, kinds.join(", "))
                        }
                    },
                    None,
                ),
                row(
                    "events lost (accepted, not stored)",
                    &|b| b.lost.to_string(),
                    None,
                ),
                row(
                    "rows in the table at the end",
                    &|b| b.stored.to_string(),
                    None,
                ),
                row(
                    "**peak PostgreSQL client connections**",
                    &|b| b.peak_connections.to_string(),
                    Some(|b| b.peak_connections as f64),
                ),
                row(
                    "p50 accept latency (202 answers)",
                    &|b| format!("{:.0} ms", b.p50_ms),
                    Some(|b| b.p50_ms),
                ),
                row(
                    "**p99 accept latency** (202 answers)",
                    &|b| format!("{:.0} ms", b.p99_ms),
                    Some(|b| b.p99_ms),
                ),
                row(
                    "every client answered after",
                    &|b| format!("{:.1} s", b.all_answered_s),
                    Some(|b| b.all_answered_s),
                ),
                row(
                    "**database has every accepted event after**",
                    &|b| {
                        b.db_complete_s
                            .map(|v| format!("{v:.1} s"))
                            .unwrap_or_else(|| "not within 240 s".into())
                    },
                    Some(|b| b.db_complete_s.unwrap_or(f64::NAN)),
                ),
            ];
            for l in lines {
                let _ = writeln!(s, "{l}");
            }
            let _ = writeln!(s, "\n{}\n", burst_reading(sp, base));
        }
        let _ = writeln!(
            s,
            "What bounds this figure: **moto** for Spillway. Each accepted request is one SQS \
             message; moto takes a few dozen `SendMessageBatch` calls a second here (figure 3) and \
             hands out about 31 messages a second, slower as the queue grows \
             (shared/LOCAL-AWS.md), so Spillway's accept latency, its `503`s (the edge gives up \
             after `SQS_DEADLINE_MS` = 8 s and answers `503` with `Retry-After`) and its time \
             until the database has everything are moto's speed, not the edge's or \
             PostgreSQL's ({}). The \
             burst sizes are chosen so that moto drains the largest in about a minute and the \
             whole command stays within 15 minutes. For the baseline, the bound is how many \
             requests are really at the database at the same moment: on loopback with trust \
             auth and no TLS a connection lives a few milliseconds, and {} client threads on 2 \
             cores cannot all be inside PostgreSQL at once, so the local peak understates what a \
             fleet of independent handlers (each with a network round trip, TLS and password \
             auth to a managed database) would open. The pipeline's number does not have that \
             caveat: it is `MAXIMUM_CONCURRENCY` by construction.\n",
            r.db.as_ref()
                .map(|d| format!(
                    "figure 5: one connection writes {} rows/s",
                    thousands(d.unnest)
                ))
                .unwrap_or_else(|| "the database write rate is figure 5".into()),
            opts.burst_clients.iter().max().copied().unwrap_or(0)
        );
    }
    let _ = writeln!(
        s,
        "## Not measured here\n\n\
         - Real SQS and real Workers: every figure is local. LocalStack (about 40x faster than \
           moto) is not wired in, so figures 3 and 6 carry moto's ceiling.\n\
         - The Lambda runtime and its scaling: the poller plays the event source mapping.\n"
    );
    s
}
