//! `cargo xtask test`: every check CI runs, in order, stopping at the first failure.

use std::fs;
use std::process::Command;

use anyhow::{bail, Context, Result};
use spillway_support::BufferKind;

use crate::bootstrap::{ensure_all, ensure_localstack_if_possible, Tools};
use crate::step::{note, root, run, run_counting, show, step, TestCounts};

pub fn main(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("`cargo xtask test` takes no arguments (got `{a}`)");
    }
    let tools = ensure_all()?;
    // tests/e2e/tests/localstack.rs runs the pipeline on the faster local SQS too.
    let localstack = ensure_localstack_if_possible()?;
    let root = root();
    let run_dir = root.join("target/spillway-run");
    fs::create_dir_all(&run_dir)?;
    let result = checks(&tools, &run_dir, localstack);
    // Whatever happened, nothing the tests started may outlive this command.
    let left = spillway_support::sweep(&run_dir, std::time::Duration::from_secs(5));
    if left > 0 {
        note(&format!("stopped {left} service(s) a test left behind"));
    }
    result
}

/// How long `cargo xtask test` fuzzes each target: enough to run every seed and some thousands
/// of mutations (a broken harness fails in the first second); `cargo xtask fuzz` goes longer.
const FUZZ_SMOKE_SECONDS: u64 = 10;

fn cargo(tools: &Tools, args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root()).args(args);
    tools.apply(&mut c);
    c
}

fn checks(tools: &Tools, run_dir: &std::path::Path, localstack: bool) -> Result<()> {
    step("cargo fmt --check", || {
        run(&mut cargo(tools, &["fmt", "--all", "--check"]))
    })?;
    step("clippy, native, -D warnings", || {
        run(&mut cargo(
            tools,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ))
    })?;
    step("clippy, wasm32 (shared, edge), -D warnings", || {
        run(&mut cargo(
            tools,
            &[
                "clippy",
                "-p",
                "spillway-shared",
                "-p",
                "spillway-edge",
                "--target",
                "wasm32-unknown-unknown",
                "--",
                "-D",
                "warnings",
            ],
        ))
    })?;
    step("docs build without warnings", || {
        let mut c = cargo(tools, &["doc", "--workspace", "--no-deps", "--quiet"]);
        c.env("RUSTDOCFLAGS", "-D warnings");
        run(&mut c)
    })?;
    let mut counts = TestCounts::default();
    // `--benches` runs each benchmark once in criterion's test mode, so a bench that no longer
    // runs (it once fed UUIDv7 too little randomness and panicked) fails here, not in `bench`.
    step("unit tests (and each benchmark once)", || {
        run_counting(
            &mut cargo(
                tools,
                &["test", "--workspace", "--lib", "--bins", "--benches"],
            ),
            &mut counts,
        )
    })?;
    step(
        &format!(
            "fuzz targets: stable build with coverage, {FUZZ_SMOKE_SECONDS} s each from the seeds"
        ),
        || crate::fuzz::smoke(FUZZ_SMOKE_SECONDS),
    )?;
    step("wasm build (the [build] command of wrangler.toml)", || {
        wasm_build(tools)
    })?;
    step(
        "wrangler deploy --dry-run (bundles the worker as a deploy would)",
        || {
            let mut c = Command::new(&tools.wrangler);
            c.current_dir(root())
                .args(["deploy", "--dry-run", "--outdir"])
                .arg(root().join("target/wrangler-dry-run"));
            tools.apply(&mut c);
            run(&mut c)
        },
    )?;
    step(
        "Lambda binary for arm64: cargo lambda build --release --arm64 (as infra/ deploys it)",
        || {
            let mut c = Command::new(tools.venv_bin.join("cargo-lambda"));
            c.current_dir(root()).args([
                "lambda",
                "build",
                "--release",
                "--arm64",
                "-p",
                "spillway-consumer",
                "--bin",
                "spillway-consumer",
            ]);
            tools.apply(&mut c);
            run(&mut c)
        },
    )?;
    step("cfn-lint infra/template.yaml", || {
        run(Command::new(tools.venv_bin.join("cfn-lint"))
            .current_dir(root())
            .arg("infra/template.yaml"))
    })?;
    step(
        "build the consumer binaries (the end-to-end tests run them)",
        || {
            run(&mut cargo(
                tools,
                &["build", "--quiet", "-p", "spillway-consumer", "--bins"],
            ))
        },
    )?;
    step(
        "integration tests (real PostgreSQL, local SQS, wrangler dev)",
        || {
            let mut c = cargo(tools, &["test", "--workspace", "--test", "*"]);
            c.env("SPILLWAY_REQUIRE_WASM", "1")
                .env("SPILLWAY_RUN_DIR", run_dir);
            if localstack {
                c.env("SPILLWAY_REQUIRE_LOCALSTACK", "1");
            }
            run_counting(&mut c, &mut counts)
        },
    )?;
    // One plain closing line for CI, summed over every test binary.
    println!(
        "\nxtask: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.ignored
    );
    if counts.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// Runs the `[build] command` from wrangler.toml, exactly as `wrangler dev|deploy` would.
pub fn wasm_build(tools: &Tools) -> Result<()> {
    wasm_build_for(tools, BufferKind::Sqs)
}

/// Builds the deployable Worker for `buffer` into edge/build: wrangler.toml's `[build]` command
/// for SQS, its `[env.kinesis.build]` command (the `kinesis` feature alone) for Kinesis.
pub fn wasm_build_for(tools: &Tools, buffer: BufferKind) -> Result<()> {
    let toml = fs::read_to_string(root().join("wrangler.toml")).context("reading wrangler.toml")?;
    let table = match buffer.wrangler_env() {
        None => "[build]".to_owned(),
        Some(env) => format!("[env.{env}.build]"),
    };
    let command = build_command(&toml, &table)?;
    note(&format!("$ {command}"));
    let mut c = Command::new("sh");
    c.current_dir(root()).args(["-c", &command]);
    tools.apply(&mut c);
    run(&mut c).with_context(|| format!("wasm build failed: {}", show(&c)))
}

/// The `command = "..."` line of the `table` table (`[build]`, `[env.kinesis.build]`) in
/// `toml` (wrangler.toml).
fn build_command(toml: &str, table: &str) -> Result<String> {
    let mut in_build = false;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_build = line == table;
            continue;
        }
        if in_build {
            if let Some(v) = line.strip_prefix("command") {
                let v = v.trim_start().trim_start_matches('=').trim();
                return Ok(v.trim_matches('"').to_owned());
            }
        }
    }
    bail!("wrangler.toml has no {table} command")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_buffer_has_its_build_command() {
        let toml = "name = \"w\"\n[build]\ncommand = \"cargo run -p b -- edge\"\n[vars]\nA = \"1\"\n\
                    [env.kinesis]\nname = \"w\"\n[env.kinesis.build]\n\
                    command = \"cargo run -p b -- --no-default-features --features kinesis edge\"\n";
        assert_eq!(
            build_command(toml, "[build]").expect("sqs"),
            "cargo run -p b -- edge"
        );
        assert_eq!(
            build_command(toml, "[env.kinesis.build]").expect("kinesis"),
            "cargo run -p b -- --no-default-features --features kinesis edge"
        );
        let err = build_command("[build]\ncommand = \"x\"\n", "[env.kinesis.build]")
            .expect_err("no kinesis build");
        assert_eq!(
            err.to_string(),
            "wrangler.toml has no [env.kinesis.build] command"
        );
    }

    #[test]
    fn the_project_wrangler_toml_has_the_sqs_build_command() {
        let toml = fs::read_to_string(root().join("wrangler.toml")).expect("wrangler.toml");
        assert!(build_command(&toml, "[build]")
            .expect("[build]")
            .contains("spillway-worker-build"));
    }
}
