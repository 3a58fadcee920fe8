//! `cargo xtask test`: every check CI runs, in order, stopping at the first failure.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use spillway_support::stack::worker_dir;
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
    // The Kinesis Worker is the same crate with the other buffer's feature: its own lint pass,
    // since code behind `#[cfg(feature = "kinesis")]` is not seen by the default one.
    step(
        "clippy, wasm32 (edge, the Kinesis build's features), -D warnings",
        || {
            run(&mut cargo(
                tools,
                &[
                    "clippy",
                    "-p",
                    "spillway-edge",
                    "--no-default-features",
                    "--features",
                    "kinesis",
                    "--target",
                    "wasm32-unknown-unknown",
                    "--",
                    "-D",
                    "warnings",
                ],
            ))
        },
    )?;
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
    // The Kinesis Worker first: its build passes through edge/build, which the SQS build then
    // takes. Kept in target/worker-kinesis for the end-to-end tests of the Kinesis buffer.
    if builds(BufferKind::Kinesis)? {
        step(
            "wasm build for the Kinesis buffer (the [env.kinesis.build] command of wrangler.toml)",
            || wasm_build_for(tools, BufferKind::Kinesis),
        )?;
    }
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
    // Both SAM templates: the SQS variant and the Kinesis one (cfn-lint takes several files).
    step(
        "cfn-lint infra/template.yaml infra/template-kinesis.yaml",
        || {
            run(Command::new(tools.venv_bin.join("cfn-lint"))
                .current_dir(root())
                .args(["infra/template.yaml", "infra/template-kinesis.yaml"]))
        },
    )?;
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
            // Built above into target/worker-kinesis: edge/tests/kinesis_worker.rs must run it,
            // not skip.
            if builds(BufferKind::Kinesis)? {
                c.env("SPILLWAY_REQUIRE_KINESIS_WASM", "1");
            }
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

/// Builds the deployable Worker for `buffer`: wrangler.toml's `[build]` command for SQS (into
/// edge/build), its `[env.kinesis.build]` command (the `kinesis` feature alone) for Kinesis.
///
/// The build tool writes edge/build either way; the Kinesis build is then moved to where the
/// stack serves it from (`worker_dir`, target/worker-kinesis/build) and the SQS build that was
/// in edge/build is put back, so that both builds exist side by side (the end-to-end tests of
/// both buffers run in one `cargo test`).
pub fn wasm_build_for(tools: &Tools, buffer: BufferKind) -> Result<()> {
    let toml = fs::read_to_string(root().join("wrangler.toml")).context("reading wrangler.toml")?;
    let command = build_command(&toml, &build_table(buffer))?;
    note(&format!("$ {command}"));
    let mut c = Command::new("sh");
    c.current_dir(root()).args(["-c", &command]);
    tools.apply(&mut c);
    let mut build = || run(&mut c).with_context(|| format!("wasm build failed: {}", show(&c)));
    match buffer {
        BufferKind::Sqs => build(),
        other => build_aside(&root(), &worker_dir(&root(), other).join("build"), build),
    }
}

/// Runs `build`, which writes `root`/edge/build, and moves what it wrote to `dest`; whatever
/// edge/build held before is put back, whether the build succeeded or not.
fn build_aside(root: &Path, dest: &Path, build: impl FnOnce() -> Result<()>) -> Result<()> {
    let built = root.join("edge/build");
    let kept = root.join("edge/build.kept");
    let _ = fs::remove_dir_all(&kept);
    if built.exists() {
        fs::rename(&built, &kept).context("setting edge/build aside")?;
    }
    let result = build().and_then(|()| {
        let _ = fs::remove_dir_all(dest);
        fs::create_dir_all(dest.parent().context("no parent")?)?;
        fs::rename(&built, dest).with_context(|| format!("moving edge/build to {}", dest.display()))
    });
    let _ = fs::remove_dir_all(&built);
    if kept.exists() {
        fs::rename(&kept, &built).context("putting edge/build back")?;
    }
    result
}

/// The wrangler.toml table holding `buffer`'s build command.
fn build_table(buffer: BufferKind) -> String {
    match buffer.wrangler_env() {
        None => "[build]".to_owned(),
        Some(env) => format!("[env.{env}.build]"),
    }
}

/// Does wrangler.toml configure a build for `buffer`?
pub fn builds(buffer: BufferKind) -> Result<bool> {
    let toml = fs::read_to_string(root().join("wrangler.toml")).context("reading wrangler.toml")?;
    Ok(build_command(&toml, &build_table(buffer)).is_ok())
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
    fn a_build_made_aside_leaves_edge_build_as_it_was() {
        let root = root()
            .join("target")
            .join(format!("build-aside-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let edge_build = root.join("edge/build");
        let dest = root.join("target/worker-kinesis/build");
        fs::create_dir_all(&edge_build).expect("dir");
        fs::write(edge_build.join("index_bg.wasm"), "sqs").expect("sqs build");
        let write = |what: &'static str| {
            let edge_build = edge_build.clone();
            move || -> Result<()> {
                fs::create_dir_all(&edge_build)?;
                fs::write(edge_build.join("index_bg.wasm"), what)?;
                Ok(())
            }
        };
        build_aside(&root, &dest, write("kinesis 1")).expect("built");
        let read = |p: &Path| fs::read_to_string(p.join("index_bg.wasm")).expect("wasm");
        assert_eq!(
            (read(&edge_build), read(&dest)),
            ("sqs".into(), "kinesis 1".into())
        );
        // Again, over the previous Kinesis build.
        build_aside(&root, &dest, write("kinesis 2")).expect("built again");
        assert_eq!(
            (read(&edge_build), read(&dest)),
            ("sqs".into(), "kinesis 2".into())
        );
        // A failed build, having written half of edge/build: the SQS build is back, the last
        // Kinesis build untouched.
        let failing = || -> Result<()> {
            fs::create_dir_all(root.join("edge/build"))?;
            fs::write(root.join("edge/build/index_bg.wasm"), "half")?;
            bail!("compile error")
        };
        let err = build_aside(&root, &dest, failing).expect_err("fails");
        assert_eq!(err.to_string(), "compile error");
        assert_eq!(
            (read(&edge_build), read(&dest)),
            ("sqs".into(), "kinesis 2".into())
        );
        // No SQS build to keep: none afterwards either.
        fs::remove_dir_all(&edge_build).expect("rm");
        build_aside(&root, &dest, write("kinesis 3")).expect("built");
        assert!(!edge_build.exists());
        assert_eq!(read(&dest), "kinesis 3");
        fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn the_project_wrangler_toml_has_the_sqs_build_command() {
        let toml = fs::read_to_string(root().join("wrangler.toml")).expect("wrangler.toml");
        assert!(build_command(&toml, "[build]")
            .expect("[build]")
            .contains("spillway-worker-build"));
    }
}
