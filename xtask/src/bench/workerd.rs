//! Figure 3: the edge under workerd (`wrangler dev`), driven by `wrk`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use spillway_support::{BufferKind, Stack};

use super::cpu::{self, Usage};
use super::measure::now_rfc3339;
use super::sqs::purge;
use super::Opts;
use crate::bootstrap::apt_install;
use crate::step::note;
use spillway_support::events::request_body;

#[derive(Debug, Clone)]
pub(super) struct WrkRun {
    pub(super) name: String,
    pub(super) events: usize,
    pub(super) rps: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) requests: u64,
    pub(super) non_2xx: u64,
    pub(super) socket_errors: u64,
    pub(super) command: String,
    /// Where the CPU went while wrk ran (`None` when not measured).
    pub(super) cpu: Option<Usage>,
}

pub(super) fn wrk_script(
    dir: &Path,
    name: &str,
    key: Option<&str>,
    body: Option<&[u8]>,
) -> Result<PathBuf> {
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
    lua.push_str(DONE);
    let path = dir.join(format!("{name}.lua"));
    fs::write(&path, lua)?;
    Ok(path)
}

/// What the script's `done` prints as its last line: wrk's own summary and latency histogram
/// (the figures wrk's report shows, unrounded: times in microseconds).
#[derive(Debug, Deserialize)]
struct WrkSummary {
    requests: u64,
    duration_us: f64,
    p50_us: f64,
    p99_us: f64,
    non_2xx: u64,
    socket_errors: u64,
}

/// Appended to every script: wrk calls `done` after its run. `errors.status` is what wrk reports
/// as `Non-2xx or 3xx responses`, the other errors its `Socket errors`.
const DONE: &str = r#"done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non_2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"#;

/// The summary `done` printed: the last line of wrk's output, every figure present.
fn summary_of(stdout: &str) -> Result<WrkSummary> {
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("wrk's summary line {last:.200}"))
}

/// `wrk` connections of figure 3 (closed loop: each waits for its answer before the next).
pub(super) const WRK_CONNECTIONS: usize = 8;

pub(super) fn run_wrk(
    name: &str,
    events: usize,
    url: &str,
    script: &Path,
    secs: u32,
) -> Result<WrkRun> {
    let args: Vec<String> = vec![
        "-t1".into(),
        format!("-c{WRK_CONNECTIONS}"),
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
    let before = cpu::snapshot();
    let out = Command::new("wrk")
        .args(&args)
        .output()
        .context("running wrk")?;
    let used = cpu::usage(
        &before,
        &cpu::snapshot(),
        cpu::ticks_per_second(),
        cpu::cores(),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let f = summary_of(&text)?;
    Ok(WrkRun {
        name: name.into(),
        events,
        rps: f.requests as f64 / (f.duration_us / 1e6),
        p50_ms: f.p50_us / 1000.0,
        p99_ms: f.p99_us / 1000.0,
        requests: f.requests,
        non_2xx: f.non_2xx,
        socket_errors: f.socket_errors,
        command,
        cpu: Some(used),
    })
}

/// Seconds of unmeasured load before each measured run: an isolate's first requests compile
/// its JavaScript and tier its wasm up (and, after a restart, instantiate the wasm), a cost
/// no request pays once it runs, which would otherwise land on whichever row comes first.
const WARM_UP_SECS: u32 = 2;

/// [`run_wrk`] after [`WARM_UP_SECS`] of the same load, whose figures are dropped.
fn warm_then_run(name: &str, events: usize, url: &str, script: &Path, secs: u32) -> Result<WrkRun> {
    run_wrk(name, events, url, script, WARM_UP_SECS).context("warming up")?;
    run_wrk(name, events, url, script, secs)
}

pub(super) fn workerd(stack: &mut Stack, opts: &Opts) -> Result<Vec<WrkRun>> {
    // Only the edge and its buffer are measured: the poller would compete for the same two
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
    runs.push(warm_then_run(
        "GET /healthz",
        0,
        &health,
        &script,
        opts.wrk_secs,
    )?);
    for n in [1usize, 100] {
        purge(stack)?;
        let body = request_body(n, 0, &ts, &mut || None);
        let name = format!("post{n}");
        let script = wrk_script(&dir, &name, Some(&key), Some(&body))?;
        let events = if n == 1 { "event" } else { "events" };
        let label = format!("POST {n} {events} ({} B)", body.len());
        let run = warm_then_run(&label, n, &ingest, &script, opts.wrk_secs)?;
        if stack.env.buffer == BufferKind::Sqs {
            let (visible, in_flight) = stack.sqs.depth(&stack.env.sqs_queue_url)?;
            note(&format!(
                "queue holds {} message(s) after the run (one per accepted request, including those still in flight when wrk stopped counting)",
                visible + in_flight
            ));
        }
        runs.push(run);
    }
    // What the request path costs before the buffer: the same 1-event request, refused once
    // parsed and checked (a timestamp that is not one), so no buffer call and no batcher hop.
    let body = refused_body(&request_body(1, 0, &ts, &mut || None))?;
    let script = wrk_script(&dir, "refused1", Some(&key), Some(&body))?;
    let label = format!("POST 1 event, refused (400, {} B)", body.len());
    runs.push(warm_then_run(&label, 1, &ingest, &script, opts.wrk_secs)?);
    // Group commit's share: the same 1-event POST sent directly (no batcher hop, one
    // `SendMessageBatch` per request). SQS only: with Kinesis it is off by default, and last,
    // so the rows of the two pipelines still pair up (figure 9).
    if stack.env.buffer == BufferKind::Sqs {
        purge(stack)?;
        let saved = stack.config.edge_vars.clone();
        stack
            .config
            .edge_vars
            .push(("BATCH_WINDOW_MS".into(), "0".into()));
        let restarted = stack
            .restart_edge()
            .context("restarting the edge, group commit off");
        let run = restarted.and_then(|()| {
            let body = request_body(1, 0, &ts, &mut || None);
            let script = wrk_script(&dir, "post1-direct", Some(&key), Some(&body))?;
            let label = format!("POST 1 event ({} B), group commit off", body.len());
            warm_then_run(&label, 1, &ingest, &script, opts.wrk_secs)
        });
        stack.config.edge_vars = saved;
        stack
            .restart_edge()
            .context("restarting the edge with its defaults")?;
        runs.push(run?);
    }
    purge(stack)?;
    Ok(runs)
}

/// `body` (one event) with its timestamp replaced by one the edge refuses (`invalid_event`):
/// the whole request is read, parsed and checked, and answered 400 before any buffer call.
fn refused_body(body: &[u8]) -> Result<Vec<u8>> {
    let mut event: serde_json::Value = serde_json::from_slice(body)?;
    let Some(ts) = event.get_mut("timestamp") else {
        bail!("the sample event has no timestamp");
    };
    *ts = serde_json::Value::from("not a timestamp");
    Ok(serde_json::to_vec(&event)?)
}

pub(super) fn ensure_wrk() -> Result<()> {
    if let Some(v) = wrk_version() {
        note(&format!("present ({v})"));
        return Ok(());
    }
    apt_install(&["wrk"])
}

/// `wrk --version` exits 1; read its first line anyway.
pub(super) fn wrk_version() -> Option<String> {
    let out = Command::new("wrk").arg("--version").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .next()
        .filter(|l| l.starts_with("wrk"))
        .map(|l| l.split(" Copyright").next().unwrap_or(l).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_the_last_line_and_a_missing_figure_is_an_error() {
        let line = r#"{"requests":3135,"duration_us":2000000,"p50_us":4730,"p99_us":1200000,"non_2xx":17,"socket_errors":5}"#;
        let f = summary_of(&format!(
            "Running 2s test\n  3135 requests in 2.00s\n{line}\n"
        ))
        .expect("parses");
        assert_eq!((f.requests, f.non_2xx, f.socket_errors), (3135, 17, 5));
        assert_eq!((f.p50_us, f.p99_us), (4730.0, 1_200_000.0));
        assert!(summary_of(&line.replace(r#""p99_us":1200000,"#, "")).is_err());
        assert!(summary_of("Requests/sec: 1566.93\n").is_err());
    }
}
