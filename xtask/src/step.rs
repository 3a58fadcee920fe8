//! Progress lines ("==> step ... ok (1.2 s)") and running commands with a clear failure.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The repository root: of the checkout `cargo xtask` runs in, which `cargo run` says in
/// `CARGO_MANIFEST_DIR` at run time. The path compiled in is where the binary was built, and a
/// target directory shared between clones (CI's `~/.cache/spillway/target`) can hand this
/// checkout a binary built in another one, since deleted.
pub fn root() -> PathBuf {
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Runs `f` as a named step, printing one line when it starts and one with its timing.
pub fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> {name}");
    let start = Instant::now();
    let out = f().with_context(|| format!("step failed: {name}"));
    let secs = start.elapsed().as_secs_f64();
    match &out {
        Ok(_) => println!("    ok: {name} ({secs:.1} s)"),
        Err(_) => println!("    FAILED: {name} ({secs:.1} s)"),
    }
    out
}

/// Prints a sub-line inside a step.
pub fn note(msg: &str) {
    println!("    {msg}");
}

/// Runs a command with inherited output; fails with the command line when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` exited with {status}", show(cmd));
    }
    Ok(())
}

/// Runs a command and returns its trimmed stdout, or `None` when it cannot start or fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Totals of `cargo test` result lines.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

/// Runs `cargo test ...`, echoing its output, and adds up its `test result:` lines.
pub fn run_counting(cmd: &mut Command, counts: &mut TestCounts) -> Result<()> {
    cmd.stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start {}", show(cmd)))?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split(';') {
                    let mut words = part.split_whitespace().rev();
                    let (Some(label), Some(n)) = (words.next(), words.next()) else {
                        continue;
                    };
                    let n: u64 = n.parse().unwrap_or(0);
                    match label {
                        "passed" => counts.passed += n,
                        "failed" => counts.failed += n,
                        "ignored" => counts.ignored += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("`{}` exited with {status}", show(cmd));
    }
    Ok(())
}

/// A command line as a user would type it.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
