//! The supervisor of `cargo xtask up`: `xtask supervise`, this same binary started again in a
//! session of its own, starts the stack, heals it once a second ([`spillway_support::Stack::heal`]: a dead
//! poller, edge or local SQS is restarted with backoff) and stops it on SIGINT, which `cargo
//! xtask down` sends. `cargo xtask dev` supervises its stack itself and registers the same way.
//!
//! Also here: the pid file that says which process supervises (`.spillway/supervisor.pid`,
//! pid and start time, so a reused pid is not taken for it), and what `up` says when it finds a
//! pipeline already there, whole or half.
//!
//! Not here: restarting a dead supervisor. A SIGKILLed supervisor leaves the services running
//! unsupervised; `status` then says "supervisor not running" and `up` names what runs and
//! what does not.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spillway_support::stack::{process_start, read_status, recorded_services, DevEnv};

use super::{config, records_dir, remove_settings, start_stack, state_dir, status_line};

/// The file naming the supervising process.
pub fn pid_file() -> PathBuf {
    state_dir().join("supervisor.pid")
}

/// Where the supervisor of `up` writes what it starts and what it restarts.
pub fn log_path() -> PathBuf {
    state_dir().join("supervisor.log")
}

/// Records `pid` as the supervisor.
pub fn write_pid_file(pid: u32) -> Result<()> {
    let start = process_start(pid).with_context(|| format!("process {pid} is not running"))?;
    fs::create_dir_all(state_dir())?;
    fs::write(pid_file(), format!("{pid} {start}\n"))
        .with_context(|| format!("writing {}", pid_file().display()))
}

pub fn remove_pid_file() {
    let _ = fs::remove_file(pid_file());
}

/// The pid of the supervisor, if the process the pid file names still runs.
pub fn running() -> Option<u32> {
    let text = fs::read_to_string(pid_file()).ok()?;
    let (pid, start) = text.trim().split_once(' ')?;
    let (pid, start): (u32, u64) = (pid.parse().ok()?, start.parse().ok()?);
    (process_start(pid) == Some(start)).then_some(pid)
}

/// Starts `xtask supervise ARGS` in a session of its own (a Ctrl-C or a closed terminal does
/// not reach it), shows its log while the stack starts, and returns the stack's settings once
/// it is ready (`dev.env` written). Fails, with the log's end, if the supervisor exits first.
pub fn spawn(args: &[String]) -> Result<DevEnv> {
    let exe = std::env::current_exe().context("finding this xtask binary")?;
    let log = log_path();
    fs::create_dir_all(state_dir())?;
    let out = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    // setsid called from a process that leads no group becomes the session leader in place:
    // the pid we get is the supervisor's.
    let mut child = Command::new("setsid")
        .arg(&exe)
        .arg("supervise")
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .context("starting the supervisor")?;
    // Written here, not by the child, so that a `down` right after `up` finds it.
    write_pid_file(child.id())?;
    let dev_env = state_dir().join("dev.env");
    let mut shown = 0u64;
    loop {
        shown = echo_from(&log, shown);
        if let Ok(env) = DevEnv::read(&dev_env) {
            // The "pipeline ready" line follows dev.env closely.
            std::thread::sleep(Duration::from_millis(200));
            echo_from(&log, shown);
            return Ok(env);
        }
        if let Some(status) = child.try_wait()? {
            echo_from(&log, shown);
            remove_pid_file();
            bail!(
                "the supervisor exited ({status}) before the pipeline was ready; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prints what `log` holds from byte `from` on; returns where it ends.
fn echo_from(log: &std::path::Path, from: u64) -> u64 {
    let Ok(mut f) = fs::File::open(log) else {
        return from;
    };
    let mut text = String::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_string(&mut text).is_err() {
        return from;
    }
    // Whole lines only: the rest is printed next time.
    let Some(end) = text.rfind('\n') else {
        return from;
    };
    print!("{}", &text[..=end]);
    from + end as u64 + 1
}

/// `xtask supervise ARGS` (started by `up`, not typed): starts the stack, heals it once a
/// second, logging what died and what was restarted, and stops it on SIGINT.
pub fn supervise(args: &[String]) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst))
        .context("installing the SIGINT handler")?;
    let cfg = config(args)?;
    let mut stack = start_stack(cfg)?;
    let began = Instant::now();
    println!(
        "supervising (pid {}): a dead poller, edge or local SQS is restarted",
        std::process::id()
    );
    while !stop.load(Ordering::SeqCst) {
        for line in stack.heal() {
            println!("[+{} s] {line}", began.elapsed().as_secs());
        }
        for _ in 0..10 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!("stopping: edge, poller (finishing its batch), buffer, PostgreSQL ...");
    let t = Instant::now();
    drop(stack);
    remove_settings();
    remove_pid_file();
    println!("stopped everything ({:.1} s)", t.elapsed().as_secs_f64());
    Ok(())
}

/// Says what runs, if anything does, and returns true then (`up` starts nothing). With its
/// supervisor: the pipeline is whole, or being made whole by it. Without: which recorded
/// services run and which do not, the status line, and what to type.
pub fn describe_running() -> Result<bool> {
    let supervisor = running();
    let services = recorded_services(&records_dir());
    if supervisor.is_none() && !services.iter().any(|(_, alive)| *alive) {
        return Ok(false);
    }
    let env_path = state_dir().join("dev.env");
    let env = DevEnv::read(&env_path).ok();
    match supervisor {
        Some(pid) => println!(
            "A local pipeline is already running, supervised by process {pid}, which restarts \
             a dead part."
        ),
        None => {
            println!(
                "A local pipeline is half-running: its supervisor is gone, so nothing restarts \
                 a dead part."
            );
            let names = |alive: bool| {
                let n: Vec<&str> = services
                    .iter()
                    .filter(|(_, a)| *a == alive)
                    .map(|(n, _)| n.as_str())
                    .collect();
                if n.is_empty() {
                    "-".to_owned()
                } else {
                    n.join(", ")
                }
            };
            println!("  running:     {}", names(true));
            println!("  not running: {}", names(false));
        }
    }
    if let Some(e) = &env {
        println!("  ingest URL:  {}", e.ingest_url);
        println!("  settings:    {}", env_path.display());
        match read_status(e, &state_dir()) {
            Ok(s) => println!("  status:      {}", status_line(&s)),
            Err(err) => println!("  status:      unavailable: {err:#}"),
        }
    }
    match supervisor {
        Some(_) => println!("Stop it with `cargo xtask down` first."),
        None => println!(
            "`cargo xtask down` stops what is left (it waits for the queues to drain, or refuses \
             naming what would be lost; `--force` drops it), then `cargo xtask up` starts afresh."
        ),
    }
    Ok(true)
}
