//! Figure 3: the edge under workerd (`wrangler dev`), driven by `wrk`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use spillway_support::Stack;

use super::events::{now_rfc3339, request_body};
use super::sqs::purge;
use super::Opts;
use crate::step::{note, output, run};

// ---------------------------------------------------------------------------------------------
// Figure 3: the edge under workerd, with wrk

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
    let path = dir.join(format!("{name}.lua"));
    fs::write(&path, lua)?;
    Ok(path)
}

pub(super) fn parse_ms(v: &str) -> Option<f64> {
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

pub(super) fn run_wrk(
    name: &str,
    events: usize,
    url: &str,
    script: &Path,
    secs: u32,
) -> Result<WrkRun> {
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

pub(super) fn workerd(stack: &mut Stack, opts: &Opts) -> Result<Vec<WrkRun>> {
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

pub(super) fn ensure_wrk() -> Result<()> {
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
pub(super) fn wrk_version() -> Option<String> {
    let out = Command::new("wrk").arg("--version").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .next()
        .filter(|l| l.starts_with("wrk"))
        .map(|l| l.split(" Copyright").next().unwrap_or(l).to_owned())
}
