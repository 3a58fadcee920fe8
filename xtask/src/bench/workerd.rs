//! Figure 3: the edge under workerd (`wrangler dev`), driven by `wrk`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use spillway_support::Stack;

use super::cpu::{self, Usage};
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

/// What `wrk --latency` prints, read back.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct WrkFigures {
    pub(super) rps: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) requests: u64,
    pub(super) non_2xx: u64,
    pub(super) socket_errors: u64,
}

/// Reads `wrk --latency` output. The throughput, the request count and the 50% and 99% lines
/// must be there; the error lines are printed only when there were errors, so their absence is 0.
pub(super) fn parse_wrk(text: &str) -> Result<WrkFigures> {
    let (mut rps, mut p50, mut p99, mut requests) = (None, None, None, None);
    let (mut non_2xx, mut socket_errors) = (0, 0);
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["Requests/sec:", v] => rps = Some(v.parse::<f64>().context("Requests/sec")?),
            ["50%", v] => p50 = Some(parse_ms(v).with_context(|| format!("50% {v}"))?),
            ["99%", v] => p99 = Some(parse_ms(v).with_context(|| format!("99% {v}"))?),
            [n, "requests", "in", ..] => requests = Some(n.parse::<u64>().context("requests")?),
            ["Non-2xx", "or", "3xx", "responses:", n] => non_2xx = n.parse().context("Non-2xx")?,
            ["Socket", "errors:", rest @ ..] => {
                socket_errors = rest
                    .iter()
                    .filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok())
                    .sum()
            }
            _ => {}
        }
    }
    Ok(WrkFigures {
        rps: rps.context("no Requests/sec line")?,
        p50_ms: p50.context("no 50% line (was --latency given?)")?,
        p99_ms: p99.context("no 99% line (was --latency given?)")?,
        requests: requests.context("no `N requests in` line")?,
        non_2xx,
        socket_errors,
    })
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
    let f = parse_wrk(&text).with_context(|| format!("reading wrk's output:\n{text}"))?;
    let r = WrkRun {
        name: name.into(),
        events,
        rps: f.rps,
        p50_ms: f.p50_ms,
        p99_ms: f.p99_ms,
        requests: f.requests,
        non_2xx: f.non_2xx,
        socket_errors: f.socket_errors,
        command,
        cpu: Some(used),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// wrk 4.1.0's output, as printed for a run with errors.
    const WITH_ERRORS: &str = "Running 2s test @ http://127.0.0.1:8787/v1/events
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.12ms    2.01ms  31.40ms   88.10%
    Req/Sec     1.57k   120.33     1.80k    70.00%
  Latency Distribution
     50%    4.73ms
     75%    5.60ms
     90%    7.01ms
     99%    1.20s
  3135 requests in 2.00s, 1.02MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 17
Requests/sec:   1566.93
Transfer/sec:    521.10KB
";

    #[test]
    fn reads_every_figure_and_the_units_of_latency() {
        let f = parse_wrk(WITH_ERRORS).expect("parses");
        assert_eq!(f.rps, 1566.93);
        assert_eq!(f.p50_ms, 4.73);
        assert_eq!(f.p99_ms, 1200.0);
        assert_eq!(f.requests, 3135);
        assert_eq!(f.non_2xx, 17);
        assert_eq!(f.socket_errors, 5);
    }

    #[test]
    fn absent_error_lines_are_zero() {
        let clean: String = WITH_ERRORS
            .lines()
            .filter(|l| !l.contains("errors") && !l.contains("Non-2xx"))
            .map(|l| format!("{l}\n"))
            .collect();
        let f = parse_wrk(&clean).expect("parses");
        assert_eq!((f.non_2xx, f.socket_errors), (0, 0));
    }

    #[test]
    fn a_missing_figure_is_an_error_not_a_zero() {
        let no_rps: String = WITH_ERRORS
            .lines()
            .filter(|l| !l.starts_with("Requests/sec"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_wrk(&no_rps).is_err());
        let no_latency: String = WITH_ERRORS
            .lines()
            .filter(|l| !l.trim_start().starts_with("99%"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_wrk(&no_latency).is_err());
    }

    #[test]
    fn latency_units() {
        assert_eq!(parse_ms("750.00us"), Some(0.75));
        assert_eq!(parse_ms("2.00s"), Some(2000.0));
        assert_eq!(parse_ms("1.50m"), Some(90_000.0));
        assert_eq!(parse_ms("12"), None);
        assert_eq!(parse_ms("3h"), None);
    }
}
