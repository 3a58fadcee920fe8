//! `cargo xtask dev|up|down|status`: the whole pipeline on this machine, supervised (a dead
//! poller, edge or local SQS is restarted) and never stopped with accepted events still in
//! its in-memory queues unless asked to (`down --force`).

mod down;
mod line;
mod supervisor;

pub use down::down;
pub use supervisor::supervise;

use line::status_line;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spillway_support::stack::{
    check_worker_build, parse_ingest_keys, read_status, DevEnv, IngestKey, KEYS_VAR, KEY_ID,
};
use spillway_support::{sweep, BufferKind, SqsKind, Stack, StackConfig};

use crate::bootstrap::{ensure_all, ensure_localstack, Tools};
use crate::fresh::{self, Freshness};
use crate::step::{root, run, step};
use crate::test::wasm_build_for;

fn state_dir() -> PathBuf {
    root().join(".spillway")
}

fn records_dir() -> PathBuf {
    state_dir().join("run")
}

/// Parses `--edge-port N`, `--sqs-port N`, `--pg-port N`, `--inspector-port N`, `--sqs
/// moto|localstack`, `--buffer sqs|kinesis` (or `SPILLWAY_EDGE_PORT`, ...,
/// `SPILLWAY_INSPECTOR_PORT`, `SPILLWAY_SQS`, `SPILLWAY_BUFFER`; a flag wins over its
/// variable), and the keys of `SPILLWAY_INGEST_KEYS` when it is set.
fn config(args: &[String]) -> Result<StackConfig> {
    let mut cfg = StackConfig::new(&state_dir());
    let from_env = |name: &str| -> Result<Option<u16>> {
        std::env::var(name)
            .ok()
            .map(|v| {
                v.parse()
                    .with_context(|| format!("{name}={v} is not a port"))
            })
            .transpose()
    };
    if let Some(p) = from_env("SPILLWAY_EDGE_PORT")? {
        cfg.edge_port = p;
    }
    if let Some(p) = from_env("SPILLWAY_SQS_PORT")? {
        cfg.sqs_port = p;
    }
    if let Some(p) = from_env("SPILLWAY_PG_PORT")? {
        cfg.pg_port = p;
    }
    if let Some(p) = from_env("SPILLWAY_INSPECTOR_PORT")? {
        cfg.inspector_port = Some(p);
    }
    if let Ok(v) = std::env::var("SPILLWAY_SQS") {
        cfg.sqs = v.parse().context("SPILLWAY_SQS")?;
    }
    if let Ok(v) = std::env::var("SPILLWAY_BUFFER") {
        cfg.buffer = v.parse().context("SPILLWAY_BUFFER")?;
    }
    // Checked before anything is installed, built or started; the error names no key.
    match std::env::var(KEYS_VAR) {
        Ok(v) => cfg.ingest_keys = parse_ingest_keys(&v)?,
        Err(std::env::VarError::NotPresent) => {}
        Err(std::env::VarError::NotUnicode(_)) => bail!("{KEYS_VAR} is not valid UTF-8"),
    }
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let port = || {
            value
                .parse::<u16>()
                .with_context(|| format!("{flag} takes a port number"))
        };
        match flag.as_str() {
            "--edge-port" => cfg.edge_port = port()?,
            "--sqs-port" => cfg.sqs_port = port()?,
            "--pg-port" => cfg.pg_port = port()?,
            "--inspector-port" => cfg.inspector_port = Some(port()?),
            "--sqs" => cfg.sqs = value.parse().context("--sqs")?,
            "--buffer" => cfg.buffer = value.parse().context("--buffer")?,
            other => {
                bail!(
                    "unknown option {other} (known: --buffer, --sqs, --edge-port, --sqs-port, \
                     --pg-port, --inspector-port)"
                )
            }
        }
    }
    Ok(cfg)
}

/// Installs what is missing (LocalStack only when it is the chosen SQS) and builds the worker
/// (the build for `buffer`) and the consumer.
///
/// On a first run most of this is compiling, so the independent builds overlap: the worker's
/// wasm32 compile (the `worker` profile) starts at once, beside the installs and the build tool
/// (the `dev` profile); the consumer (`dev` profile too, so after the tool) builds while the
/// worker's wasm-opt pass runs. Cargo locks each profile's directory on its own, so the two
/// profiles build at the same time, and a single-threaded tail of one (the worker's LTO,
/// wasm-opt, a link) leaves the other core to the other.
fn prepare(sqs: SqsKind, buffer: BufferKind) -> Result<Tools> {
    let outputs = match buffer {
        BufferKind::Sqs => fresh::WORKER_OUTPUTS,
        BufferKind::Kinesis => fresh::KINESIS_WORKER_OUTPUTS,
    };
    let stale = match fresh::check(&root(), fresh::WORKER_INPUTS, outputs) {
        // A build of the other buffer made by hand (`wrangler dev --env kinesis` writes
        // edge/build) is up to date but not the one to serve.
        Freshness::UpToDate => check_worker_build(&root(), buffer)
            .err()
            .map(|_| format!("{} is not the {buffer} build", outputs[1])),
        Freshness::Stale(why) => Some(why),
    };
    let wasm = stale.is_some().then(|| {
        std::thread::spawn(move || {
            step(
                "compile the worker for wasm32 (beside the installs)",
                || run(&mut worker_compile(buffer)),
            )
        })
    });
    let tools = match ensure_all().and_then(|t| {
        if sqs == SqsKind::LocalStack {
            ensure_localstack()?;
        }
        Ok(t)
    }) {
        Ok(t) => t,
        Err(e) => {
            // Not leaving a cargo behind that holds the target directory's lock.
            if let Some(compiling) = wasm {
                let _ = join(compiling);
            }
            return Err(e);
        }
    };
    let consumer = {
        let tools = tools.clone();
        std::thread::spawn(move || {
            step("build the consumer and the poller", || {
                let mut c = Command::new("cargo");
                c.current_dir(root()).args([
                    "build",
                    "--quiet",
                    "-p",
                    "spillway-consumer",
                    "--bins",
                ]);
                tools.apply(&mut c);
                run(&mut c)
            })
        })
    };
    let worker = match (stale, wasm) {
        (Some(why), Some(compiling)) => join(compiling).and_then(|()| {
            step(
                &format!("build the worker (wasm, {buffer} buffer): {why}"),
                || wasm_build_for(&tools, buffer),
            )
        }),
        _ => {
            println!(
                "==> build the worker (wasm, {buffer} buffer): skipped, {} is newer than every input it is built from",
                outputs[1]
            );
            Ok(())
        }
    };
    // Both are waited for, so that a failure of one does not leave the other's cargo running.
    let consumer = join(consumer);
    worker?;
    consumer?;
    Ok(tools)
}

/// The cargo step of the Worker's build tool, run ahead of it: the same command line
/// (tools/worker-build/src/main.rs, `build`, with the features of `buffer`'s build command in
/// wrangler.toml), so the tool then finds the wasm up to date. Were the two to differ, the
/// tool would only compile again.
fn worker_compile(buffer: BufferKind) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root().join("edge"))
        .args([
            "build",
            "--quiet",
            "--lib",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "worker",
        ])
        .env("WASM_BINDGEN_USE_JS_SYS", "1");
    if buffer == BufferKind::Kinesis {
        c.args(["--no-default-features", "--features", "kinesis"]);
    }
    c
}

fn join(handle: std::thread::JoinHandle<Result<()>>) -> Result<()> {
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("a build thread panicked"))?
}

/// Removes what a stopped pipeline's settings and secrets were kept in: `dev.env`, and the
/// `.dev.vars` wrangler dev read its secrets from.
fn remove_settings() {
    for file in ["dev.env", ".dev.vars"] {
        let _ = std::fs::remove_file(state_dir().join(file));
    }
}

/// Prepares a start: checks nothing is running (and says what is, [`supervisor::describe_running`]),
/// stops the leftovers of a crashed run, installs and builds. `None` when a pipeline is
/// already there.
fn prepare_start(args: &[String]) -> Result<Option<StackConfig>> {
    let cfg = config(args)?;
    if supervisor::describe_running()? {
        return Ok(None);
    }
    // Leftovers of a crashed run (records of processes that are gone): clear them.
    sweep(&records_dir(), Duration::from_secs(5));
    remove_settings();
    // Records of what this command starts go to .spillway/run, where `down` finds them.
    std::env::set_var("SPILLWAY_RUN_DIR", records_dir());
    let tools = prepare(cfg.sqs, cfg.buffer)?;
    // wrangler dev runs the [build] command again: it needs the same tool variables (and a
    // supervisor started from here inherits them).
    for (k, v) in tool_env(&tools) {
        std::env::set_var(k, v);
    }
    Ok(Some(cfg))
}

/// Starts the stack in this process, printing a line per step.
fn start_stack(cfg: StackConfig) -> Result<Stack> {
    println!("==> start the pipeline");
    let started = Instant::now();
    let stack = Stack::start(cfg, &mut |line| println!("    ok: {line}"))?;
    println!(
        "    ok: pipeline ready ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(stack)
}

fn tool_env(tools: &Tools) -> Vec<(String, std::ffi::OsString)> {
    let mut c = Command::new("true");
    tools.apply(&mut c);
    c.get_envs()
        .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?.to_owned())))
        .collect()
}

fn banner(env: &DevEnv, keys: &[IngestKey]) {
    println!();
    println!("Spillway is running.");
    println!("  ingest URL   {}", env.ingest_url);
    // The first key only, as `dev.env` holds it; the others are the caller's own, by key id.
    // No keys given: the stack made one fresh key with the default key id.
    let first = keys.first().map_or(KEY_ID, |k| k.key_id.as_str());
    println!("  ingest key   {} (key id `{first}`)", env.ingest_key);
    if keys.len() > 1 {
        let others: Vec<String> = keys[1..]
            .iter()
            .map(|k| format!("`{}`", k.key_id))
            .collect();
        println!("  other keys   {} (from {KEYS_VAR})", others.join(", "));
    }
    println!("  database     {}", env.database_url);
    match &env.kinesis {
        None => println!("  local SQS    {} at {}", env.sqs_server, env.sqs_endpoint),
        Some(k) => {
            println!("  stream       {}", k.stream_arn);
            println!("  local Kinesis at {} (kinesis-local)", k.endpoint);
            println!(
                "  local SQS    {} at {} (dead letters, failed batches)",
                env.sqs_server, env.sqs_endpoint
            );
        }
    }
    println!("  settings     {}", state_dir().join("dev.env").display());
    println!("  logs         {}", state_dir().join("logs").display());
    println!();
    println!("Try it:");
    println!(
        "  curl -i {} -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\\n    -d '{{\"type\":\"page_view\",\"data\":{{\"path\":\"/\"}}}}'",
        env.ingest_url, env.ingest_key
    );
    println!();
}

/// `cargo xtask dev`: starts the pipeline in this process, supervises it (a dead part is
/// restarted, [`Stack::heal`]) and shows its status every second until Ctrl-C (or `cargo xtask
/// down` from another terminal, which sends this process SIGINT) stops everything.
pub fn dev(args: &[String]) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    let Some(cfg) = prepare_start(args)? else {
        return Ok(());
    };
    let mut stack = start_stack(cfg)?;
    supervisor::write_pid_file(std::process::id())?;
    banner(&stack.env, &stack.config.ingest_keys);
    println!("Status, every second (Ctrl-C stops everything):");
    let tty = std::io::stdout().is_terminal();
    let mut last_print = Instant::now() - Duration::from_secs(60);
    while !stop.load(Ordering::SeqCst) {
        let happened = stack.heal();
        let line = match stack.status() {
            Ok(s) => status_line(&s),
            Err(e) => format!("status unavailable: {e:#}"),
        };
        // Write errors are ignored (a closed pipe must not stop the clean-up below).
        let mut out = std::io::stdout();
        for h in &happened {
            let _ = writeln!(out, "{}{h}", if tty { "\r\x1b[K" } else { "" });
        }
        if tty {
            let _ = write!(out, "\r\x1b[K{line}");
            let _ = out.flush();
        } else if last_print.elapsed() >= Duration::from_secs(10) || !happened.is_empty() {
            // Not a terminal (a log file): a line every 10 s instead of redrawing.
            let _ = writeln!(out, "{line}");
            last_print = Instant::now();
        }
        for _ in 0..10 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut out = std::io::stdout();
    let buffer = match stack.config.buffer {
        BufferKind::Sqs => "local SQS",
        BufferKind::Kinesis => "local Kinesis (writing its state), local SQS",
    };
    let _ = writeln!(
        out,
        "\nstopping: edge, poller (finishing its batch), {buffer}, PostgreSQL ..."
    );
    let t = Instant::now();
    drop(stack);
    remove_settings();
    supervisor::remove_pid_file();
    let _ = writeln!(
        out,
        "stopped everything ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo xtask up`: installs and builds here, then starts the pipeline under a supervisor
/// process of its own (`xtask supervise`, in a session of its own) and returns once it is
/// ready, leaving the supervisor to restart what dies.
pub fn up(args: &[String]) -> Result<()> {
    let Some(cfg) = prepare_start(args)? else {
        return Ok(());
    };
    let env = supervisor::spawn(args)?;
    banner(&env, &cfg.ingest_keys);
    println!(
        "Left running in the background under a supervisor that restarts a dead part (log: {}); \
         `cargo xtask down` stops it.",
        supervisor::log_path().display()
    );
    Ok(())
}

/// `cargo xtask status`: one status line, whatever state the pipeline is in (each part that
/// does not answer is named on it).
pub fn status_once() -> Result<()> {
    let env = DevEnv::read(&state_dir().join("dev.env"))
        .context("no pipeline is running (start one with `cargo xtask up` or `cargo xtask dev`)")?;
    println!("{}", status_line(&read_status(&env, &state_dir())?));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn buffer_is_sqs_unless_asked_and_unknown_ones_are_refused() {
        // SPILLWAY_BUFFER is not set in the test environment of `cargo xtask test`.
        if std::env::var_os("SPILLWAY_BUFFER").is_some() {
            return;
        }
        assert_eq!(config(&[]).expect("defaults").buffer, BufferKind::Sqs);
        let cfg = config(&args(&["--buffer", "kinesis", "--sqs", "localstack"])).expect("kinesis");
        assert_eq!(
            (cfg.buffer, cfg.sqs),
            (BufferKind::Kinesis, SqsKind::LocalStack)
        );
        assert_eq!(
            config(&args(&["--buffer", "sqs"])).expect("sqs").buffer,
            BufferKind::Sqs
        );
        let err = config(&args(&["--buffer", "kafka"])).expect_err("unknown");
        assert_eq!(
            format!("{err:#}"),
            "--buffer: unknown buffer `kafka` (known: sqs, kinesis)"
        );
        let err = config(&args(&["--buffer"])).expect_err("no value");
        assert_eq!(format!("{err:#}"), "--buffer needs a value");
        let err = config(&args(&["--stream", "x"])).expect_err("unknown flag");
        assert!(format!("{err:#}").contains("known: --buffer,"), "{err:#}");
    }
}
