//! `cargo xtask fuzz [--seconds N] [target...]`: runs each cargo-fuzz target (all by default)
//! for N seconds (default 60) on the nightly toolchain, and fails on the first crash, naming the
//! input libFuzzer saved for it.
//!
//! Each run starts from the committed seeds (`fuzz/seeds/<target>`, read-only) and the local
//! corpus (`fuzz/corpus/<target>`, not committed, kept between runs so coverage accumulates).
//! libFuzzer's own chatter goes to `fuzz/logs/<target>.log`; one summary line per target here.
//! With every target, the property test `accepted_is_stored` (tests/e2e) then runs with far
//! more requests than `cargo xtask test` gives it.
//!
//! [`smoke`] is the part `cargo xtask test` runs: the same targets built with the pinned stable
//! toolchain (libFuzzer's coverage instrumentation, no sanitizer: that is what needs nightly),
//! each fuzzed for a few seconds from its seeds. It keeps the harnesses compiling and their
//! assertions true without installing nightly and cargo-fuzz on every CI machine.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::step::{note, output, root, run, show, step};

/// Every target in `fuzz/Cargo.toml`, in the order they run.
const TARGETS: &[&str] = &[
    "envelope_decode",
    "validate_events",
    "edge_body",
    "collector_body",
    "consumer_record",
];

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [--stable] [target...]
targets: envelope_decode, validate_events, edge_body, collector_body, consumer_record (default: all, and then the
accepted => stored property test with 60 requests per second of --seconds)
--stable: build with the pinned stable toolchain, coverage but no sanitizer (no nightly needed)";

struct Options {
    seconds: u64,
    stable: bool,
    targets: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut seconds = 60;
    let mut stable = false;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                let v = args.next().context("--seconds needs a value")?;
                seconds =
                    v.parse().ok().filter(|s| *s > 0).with_context(|| {
                        format!("--seconds takes a whole number > 0, not `{v}`")
                    })?;
            }
            "--stable" => stable = true,
            "-h" | "--help" => bail!("{USAGE}"),
            t if TARGETS.contains(&t) => targets.push(t.to_owned()),
            other => bail!("unknown fuzz target or option `{other}`\n{USAGE}"),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    Ok(Options {
        seconds,
        stable,
        targets,
    })
}

pub fn main(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let root = root();
    if opts.stable {
        let bin_dir = step(
            "build the fuzz targets (stable, coverage, no sanitizer)",
            || build_stable(&root),
        )?;
        for target in &opts.targets {
            step(&format!("fuzz {target} for {} s", opts.seconds), || {
                fuzz_one(
                    &root,
                    target,
                    opts.seconds,
                    &Fuzzer::Binary(bin_dir.join(target)),
                )
            })?;
        }
        return invariant(&opts);
    }
    step("cargo-fuzz and the nightly toolchain", ensure_tools)?;
    step("build the fuzz targets (nightly, sanitizer)", || {
        // `cargo fuzz build` takes one target, or none for all of them.
        if opts.targets.len() == TARGETS.len() {
            return run(cargo_fuzz(&root).arg("build"));
        }
        for target in &opts.targets {
            run(cargo_fuzz(&root).args(["build", target]))?;
        }
        Ok(())
    })?;
    for target in &opts.targets {
        step(&format!("fuzz {target} for {} s", opts.seconds), || {
            fuzz_one(&root, target, opts.seconds, &Fuzzer::CargoFuzz)
        })?;
    }
    invariant(&opts)
}

/// Requests per second the accepted-is-stored property test gets through (each one goes into
/// PostgreSQL), so that it runs about as long as one fuzz target.
const INVARIANT_CASES_PER_SECOND: u64 = 60;

/// With every target: the property test `tests/e2e/tests/accepted_is_stored/` (edge request
/// path -> consumer -> real PostgreSQL), with many more cases than `cargo xtask test` runs. Its
/// in-process test only: the pipeline variants beside it are round trips through a whole stack,
/// a second per request, which more fuzzing time would not buy much of.
fn invariant(opts: &Options) -> Result<()> {
    if opts.targets.len() != TARGETS.len() {
        return Ok(());
    }
    let cases = opts.seconds * INVARIANT_CASES_PER_SECOND;
    step(
        &format!("property accepted => stored exactly, {cases} requests into PostgreSQL"),
        || {
            run(Command::new("cargo")
                .current_dir(root())
                .env("SPILLWAY_INVARIANT_CASES", cases.to_string())
                .args([
                    "test",
                    "--quiet",
                    "-p",
                    "spillway-e2e",
                    "--test",
                    "accepted_is_stored",
                    "--",
                    "exactly_as_sent",
                ]))
        },
    )
}

/// libFuzzer's coverage instrumentation, as cargo-fuzz passes it, minus the sanitizer: these
/// are stable `rustc` flags. `--cfg fuzzing` as under cargo-fuzz.
const COVERAGE_FLAGS: &[&str] = &[
    "--cfg",
    "fuzzing",
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
];

/// Builds every fuzz target with the pinned stable toolchain and fuzzes each for `seconds`,
/// starting from its seeds; fails on the first crash like [`main`] does.
pub fn smoke(seconds: u64) -> Result<()> {
    let root = root();
    let bin_dir = build_stable(&root)?;
    for target in TARGETS {
        fuzz_one(
            &root,
            target,
            seconds,
            &Fuzzer::Binary(bin_dir.join(target)),
        )?;
    }
    Ok(())
}

/// Builds the targets with coverage instrumentation on the pinned stable toolchain; returns
/// the directory holding the binaries.
fn build_stable(root: &Path) -> Result<PathBuf> {
    let host = output(Command::new("rustc").current_dir(root).arg("-vV"))
        .and_then(|v| {
            v.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        })
        .context("could not read the host triple from `rustc -vV`")?;
    // Its own target dir: the coverage flags change every crate's build, and must not
    // invalidate the workspace's.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("fuzz-stable");
    let mut build = Command::new("cargo");
    build
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--locked",
            "--bins",
            "--manifest-path",
        ])
        .arg(root.join("fuzz/Cargo.toml"))
        // With an explicit --target the flags reach the targets only, not build scripts and
        // proc macros (as under cargo-fuzz).
        .args(["--target", &host, "--target-dir"])
        .arg(&target_dir)
        .env("RUSTFLAGS", COVERAGE_FLAGS.join(" "))
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    run(&mut build)?;
    Ok(target_dir.join(&host).join("release"))
}

/// How a target is run.
enum Fuzzer {
    /// `cargo +nightly fuzz run <target>` (builds it with the sanitizer if needed).
    CargoFuzz,
    /// The target's binary, already built (libFuzzer's own command line).
    Binary(PathBuf),
}

fn cargo_fuzz(root: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root).args(["+nightly", "fuzz"]);
    c
}

fn ensure_tools() -> Result<()> {
    let nightly = output(Command::new("rustup").args(["toolchain", "list"]))
        .is_some_and(|list| list.lines().any(|l| l.starts_with("nightly")));
    if !nightly {
        note("installing: rustup toolchain install nightly --profile minimal");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if output(Command::new("cargo").args(["fuzz", "--version"])).is_none() {
        note("installing: cargo install cargo-fuzz --locked (takes a few minutes once)");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// Files libFuzzer saves for a failing input (`crash-*`, `oom-*`, `timeout-*`, `leak-*`).
fn artifacts(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

fn fuzz_one(root: &Path, target: &str, seconds: u64, fuzzer: &Fuzzer) -> Result<()> {
    let fuzz = root.join("fuzz");
    let corpus = fuzz.join("corpus").join(target);
    let seeds = fuzz.join("seeds").join(target);
    let artifact_dir = fuzz.join("artifacts").join(target);
    let logs = fuzz.join("logs");
    for dir in [&corpus, &artifact_dir, &logs] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log_path = logs.join(format!("{target}.log"));
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let before = artifacts(&artifact_dir);

    let (mut cmd, reproduce) = match fuzzer {
        Fuzzer::CargoFuzz => {
            let mut c = cargo_fuzz(root);
            c.args(["run", target]).arg(&corpus).arg(&seeds).arg("--");
            (c, format!("cargo +nightly fuzz run {target}"))
        }
        Fuzzer::Binary(bin) => {
            let mut c = Command::new(bin);
            // cargo-fuzz passes this one itself.
            c.arg(format!("-artifact_prefix={}/", artifact_dir.display()))
                .arg(&corpus)
                .arg(&seeds);
            (c, bin.display().to_string())
        }
    };
    cmd.arg(format!("-max_total_time={seconds}"))
        // One input taking this long is a denial of service in its own right.
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        .stdout(Stdio::null())
        .stderr(log);
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", show(&cmd)))?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let new: Vec<PathBuf> = artifacts(&artifact_dir)
        .difference(&before)
        .cloned()
        .collect();

    if !status.success() || !new.is_empty() {
        for line in failure_excerpt(&text) {
            note(line);
        }
        let saved = match new.as_slice() {
            [] => format!("no input was saved; see {}", log_path.display()),
            paths => paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        bail!(
            "{target} failed ({status}); failing input: {saved}\n\
             reproduce: {reproduce} <that file>"
        );
    }
    note(&summary(&text, seconds));
    Ok(())
}

/// What to show of a failed run: the panic message (or sanitizer report) and what follows it,
/// else the end of the log (an out-of-memory or timeout report).
fn failure_excerpt(log: &str) -> Vec<&str> {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("panicked at") || l.contains("ERROR: AddressSanitizer"))
        .unwrap_or_else(|| lines.len().saturating_sub(30));
    lines
        .iter()
        .skip(start)
        .take_while(|l| !l.starts_with("stack backtrace:"))
        .take(30)
        .copied()
        .collect()
}

/// `N runs (R/s), corpus C inputs, no crash` from libFuzzer's final statistics.
fn summary(log: &str, seconds: u64) -> String {
    let stat = |name: &str| {
        log.lines()
            .filter_map(|l| l.strip_prefix(name))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .next_back()
    };
    let runs = stat("stat::number_of_executed_units:");
    let rate = stat("stat::average_exec_per_sec:");
    let corpus = log
        .lines()
        .rev()
        .find_map(|l| l.split_once(" corp: ").map(|(_, rest)| rest))
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned);
    match (runs, rate) {
        (Some(runs), Some(rate)) => format!(
            "{runs} runs in {seconds} s ({rate}/s), corpus {} inputs, no crash",
            corpus.as_deref().unwrap_or("?")
        ),
        _ => "no crash".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options() {
        let o = parse(&[]).expect("defaults");
        assert_eq!((o.seconds, o.targets.len()), (60, TARGETS.len()));
        let o = parse(&args(&["--seconds", "5", "edge_body"])).expect("ok");
        assert_eq!((o.seconds, o.targets), (5, vec!["edge_body".to_owned()]));
        assert!(!o.stable);
        assert!(parse(&args(&["--stable"])).expect("ok").stable);
        assert!(parse(&args(&["--seconds", "0"])).is_err());
        assert!(parse(&args(&["--seconds"])).is_err());
        assert!(parse(&args(&["nope"])).is_err());
    }

    #[test]
    fn summary_reads_final_stats() {
        let log = "#4096 pulse  cov: 10 ft: 20 corp: 17/301b lim: 43 exec/s: 2048 rss: 40Mb\n\
                   Done 120000 runs in 61 second(s)\n\
                   stat::number_of_executed_units: 120000\n\
                   stat::average_exec_per_sec:     1967\n";
        assert_eq!(
            summary(log, 60),
            "120000 runs in 60 s (1967/s), corpus 17 inputs, no crash"
        );
        assert_eq!(summary("", 60), "no crash");
    }

    #[test]
    fn failure_excerpt_starts_at_the_panic() {
        let log =
            "#1 INITED\nthread '<unnamed>' panicked at x.rs:1:1:\nboom\nstack backtrace:\n 0: f\n";
        assert_eq!(
            failure_excerpt(log),
            ["thread '<unnamed>' panicked at x.rs:1:1:", "boom"]
        );
        assert_eq!(failure_excerpt("a\nb"), ["a", "b"]);
    }
}
