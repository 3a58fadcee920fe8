//! `cargo xtask bench`: every figure of `BENCHMARKS.md`, measured side by side in one run,
//! written as data (`benches/results/results.json`: every table's numbers and the run's
//! metadata) and filled into the tables between the markers of the hand-written
//! `BENCHMARKS.md` (and figure 6's plots into `benches/results/`, only then). The prose that
//! explains each figure is hand-written; nothing here writes sentences.
//!
//! The machine these run on is shared and noisy, so every figure is a ratio against a reference
//! measured in the same run: the edge against plain `serde_json`, the worker against a hello
//! world, the edge's POSTs against its own `/healthz`, SQS requests against payload bytes, the
//! consumer's write (alone, and drained from the queue) against `COPY`, Spillway against two synchronous designs (direct, and
//! through PgBouncer) in bursts and through a PostgreSQL outage, and the edge's group commit on
//! against off (SQS requests counted at the local SQS, against payload bytes).
//! Nothing here is a hard-coded result: the tables are filled from what was measured. Beside
//! them, the planner's predictions for this machine from the run's own inputs (`planned.rs`).
//!
//! Options: `--only edge,wasm,sqs,db,workerd,batching,spill,burst,buffers,drain` (a subset, for development;
//! the committed files are then not rewritten: a partial results file and a filled copy of
//! `BENCHMARKS.md` go to `$CARGO_TARGET_DIR/bench-partial/`), `--sqs moto|localstack` (or `SPILLWAY_SQS`; LocalStack by default, the
//! fast one), `--buffer sqs|kinesis` (the pipeline of figures 3 and 6; SQS by default, which
//! also measures Kinesis beside it in figure 9; Kinesis skips the SQS-only figures 7, 8 and 9),
//! `--burst-clients N,N` (200,1000,3000), `--steady-secs N` (60; 0 skips the outage
//! scenarios), `--steady-rate N` (100 requests/s), `--wrk-secs N` (8).

mod batching;
mod buffers;
mod burst;
mod checks;
mod client;
mod cost;
mod cpu;
mod db;
mod designs;
mod drain;
mod edge;
mod experiment;
mod figure9;
mod figures;
mod fill;
mod measure;
mod planned;
mod plot;
mod spill;
mod sqs;
mod table;
#[cfg(test)]
mod tests;
mod wasm;
mod workerd;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spillway_support::{BufferKind, SqsKind, Stack, StackConfig};

use crate::bootstrap::{ensure_all, ensure_localstack, Tools};
use crate::step::{note, root, run, step};
use crate::test::{wasm_build, wasm_build_for};
use batching::{batching, BatchRow};
use db::{db_write, DbWrite};
use designs::ensure_pgbouncer;
use edge::{edge_cost, EdgeCost};
use experiment::{experiment, ScenarioResult};
use measure::Machine;
use plot::scenario_svg;
use sqs::{sqs_costs, sqs_rate, SqsCost};
use wasm::{wasm_sizes, WasmSize};
use workerd::{ensure_wrk, workerd, WrkRun};

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
    /// Length of the steady scenarios (0 skips them) and their requests per second.
    steady_secs: u32,
    steady_rate: u32,
    wrk_secs: u32,
    /// The local SQS behind the pipeline: LocalStack unless `--sqs`/`SPILLWAY_SQS` says moto.
    sqs: SqsKind,
    /// The buffer of the pipeline figures 3 and 6 run on (`--buffer`, default SQS). Figure 9
    /// measures both in the default run; Kinesis skips the SQS-only figures 7, 8 and 9.
    buffer: BufferKind,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts {
            only: None,
            burst_clients: vec![200, 1000, 3000],
            steady_secs: 60,
            steady_rate: 100,
            wrk_secs: 8,
            sqs: SqsKind::LocalStack,
            buffer: BufferKind::Sqs,
        };
        if let Ok(v) = std::env::var("SPILLWAY_SQS") {
            o.sqs = v.parse().context("SPILLWAY_SQS")?;
        }
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
                "--steady-secs" => o.steady_secs = u32::try_from(number()?)?,
                "--steady-rate" => o.steady_rate = u32::try_from(number()?.max(1))?,
                "--wrk-secs" => o.wrk_secs = u32::try_from(number()?.max(1))?,
                "--sqs" => o.sqs = value.parse().context("--sqs")?,
                "--buffer" => o.buffer = value.parse().context("--buffer")?,
                other => bail!(
                    "unknown option {other} (known: --only, --sqs, --buffer, --burst-clients, --steady-secs, --steady-rate, --wrk-secs)"
                ),
            }
        }
        Ok(o)
    }

    fn wants(&self, what: &str) -> bool {
        // Group commit, the spill and the side-by-side figure are the SQS pipeline's (figure 9
        // starts the Kinesis pipeline itself).
        if self.buffer == BufferKind::Kinesis
            && ["batching", "spill", "buffers", "drain"].contains(&what)
        {
            return false;
        }
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
    /// Figure 7: group commit off and on, per offered rate.
    batching: Option<Vec<BatchRow>>,
    /// Figure 8: the spill, SQS healthy and stalled.
    spill: Option<Vec<spill::SpillRow>>,
    /// Figure 9: the SQS pipeline's metered runs, and the Kinesis pipeline's figures.
    sqs_metered: Option<Vec<buffers::Metered>>,
    kinesis: Option<buffers::KinesisSide>,
    /// Figure 10: the consumer's drain rate per shape and connections, against COPY.
    drain: Option<Vec<drain::DrainRow>>,
    /// Figure 6: per scenario, the three designs.
    experiment: Vec<ScenarioResult>,
    /// The SQS server behind the pipeline in this run, and its measured `SendMessageBatch` rate.
    sqs_server: Option<SqsKind>,
    sqs_rate: Option<f64>,
    /// Load average sampled at the end of the run (the start is in `machine`).
    load_end: String,
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
    let mut tables = figures::tables(&results, &opts);
    // The planner's predictions from this run's inputs, beside what it measured.
    tables.extend(planned::table(&tables));
    tables.push(checks::checks(&tables));
    // Every table must have its place in BENCHMARKS.md before anything is written, so that a
    // missing marker leaves the committed files as they were; a partial run's copy adds places.
    let mut doc =
        fs::read_to_string(root().join("BENCHMARKS.md")).context("reading BENCHMARKS.md")?;
    // Only the default run (every figure, SQS's pipeline with Kinesis beside it) rewrites the
    // committed files; any other is partial.
    let full = opts.only.is_none() && opts.buffer == BufferKind::Sqs;
    if !full {
        doc = fill::with_places_for(&doc, &tables);
    }
    fill::fill(&doc, &tables)?;
    // The plots BENCHMARKS.md links are rewritten only together with it, from the same run; a
    // partial run writes its plots, results and Markdown apart.
    let (out, md) = if full {
        (root().join("benches/results"), root().join("BENCHMARKS.md"))
    } else {
        let out = target_dir().join("bench-partial");
        (out.clone(), out.join("BENCHMARKS.partial.md"))
    };
    fs::create_dir_all(&out)?;
    if full {
        // Plots of an earlier layout would otherwise stay linked from nowhere.
        for old in fs::read_dir(&out)?.flatten() {
            if old.path().extension().is_some_and(|e| e == "svg") {
                fs::remove_file(old.path())?;
            }
        }
    }
    for sc in &results.experiment {
        let path = out.join(format!("{}.svg", sc.scenario.key()));
        fs::write(&path, scenario_svg(sc))?;
        note(&format!("plot: {}", path.display()));
    }
    // The results file is written first and the tables are filled from what it reads back,
    // so BENCHMARKS.md shows exactly the file's numbers.
    let json = out.join("results.json");
    fs::write(&json, table::to_results_json(&tables))?;
    let tables = table::from_results_json(&fs::read_to_string(&json)?)?;
    fs::write(&md, fill::fill(&doc, &tables)?)?;
    // The console shows what the run measured as the same tables (no sentences).
    for t in &tables {
        println!("\n{}:\n{}", t.key, t.markdown());
    }
    let (json, md, secs) = (json.display(), md.display(), results.seconds);
    println!("\nwrote {json} and the tables of {md} ({secs:.0} s in all)");
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
    // Figures that run the pipeline (the worker under wrangler dev, the local SQS, the poller).
    let live = opts.wants("workerd")
        || opts.wants("batching")
        || opts.wants("spill")
        || opts.wants("burst")
        || opts.wants("drain");
    let kinesis_live = opts.wants("buffers") || opts.buffer == BufferKind::Kinesis && live;
    if opts.wants("wasm") || live || opts.wants("buffers") {
        step("build the worker (wasm)", || wasm_build(tools))?;
    }
    if opts.wants("wasm") || kinesis_live {
        step("build the Kinesis worker (wasm)", || {
            wasm_build_for(tools, BufferKind::Kinesis)
        })?;
    }
    if opts.wants("wasm") {
        step("build the hello-world worker (wasm)", || {
            run(&mut crate::bootstrap::worker_build("benches/hello-worker"))
        })?;
        r.wasm = Some(step("figure 2: gzipped wasm sizes", wasm_sizes)?);
    }
    if opts.wants("sqs") {
        r.sqs = Some(step(
            "figure 4: SQS requests per million events",
            sqs_costs,
        )?);
    }
    if opts.wants("edge") {
        r.edge = Some(step(
            "figure 1: edge cost per event (criterion)",
            edge_cost,
        )?);
    }
    if opts.wants("db") {
        r.db = Some(step("figure 5: bulk write vs COPY", db_write)?);
    }
    if (live || kinesis_live) && opts.sqs == SqsKind::LocalStack {
        ensure_localstack()?;
    }
    if live || kinesis_live {
        let build = "build --quiet --release -p spillway-consumer --bins -p spillway-baseline";
        let what = "build the consumer, the poller and the baseline server (release, as deployed)";
        step(what, || {
            run(&mut cargo(&build.split(' ').collect::<Vec<_>>()))
        })?;
    }
    if live || opts.wants("buffers") {
        let mut stack = step("start the pipeline (Stack)", || {
            let mut cfg = StackConfig::ephemeral("bench")?;
            cfg.sqs = opts.sqs;
            cfg.buffer = opts.buffer;
            cfg.bin_dir = release_bin_dir();
            cfg.poller_env.push((
                "WAIT_TIME_SECONDS".into(),
                experiment::POLL_WAIT_S.to_string(),
            ));
            Stack::start(cfg, &mut |line| note(line))
        })?;
        if opts.wants("workerd") {
            r.workerd = Some(step("figure 3: edge under workerd (wrk)", || {
                workerd(&mut stack, opts)
            })?);
        }
        if opts.wants("batching") {
            r.batching = Some(step(
                "figure 7: group commit off and on, SQS requests counted by a meter",
                || batching(&mut stack),
            )?);
        }
        if opts.wants("spill") {
            r.spill = Some(step(
                "figure 8: the spill, SQS healthy and stalled for 40 s",
                || spill::spill(&mut stack),
            )?);
        }
        if opts.wants("buffers") {
            r.sqs_metered = Some(step("figure 9: SQS sends counted by a meter", || {
                buffers::metered(
                    &mut stack,
                    &[buffers::Design::SqsDirect, buffers::Design::SqsGroup],
                )
            })?);
        }
        r.sqs_server = Some(opts.sqs);
        r.sqs_rate = Some(step("the local SQS's SendMessageBatch rate", || {
            sqs_rate(&stack)
        })?);
        if opts.wants("drain") {
            r.drain = Some(step(
                "figure 10: the consumer's drain rate per connection, against COPY",
                || drain::drain(&mut stack),
            )?);
        }
        if opts.wants("burst") {
            step("pgbouncer (Debian package)", ensure_pgbouncer)?;
            // The clients of the largest burst are sockets of this process, and the servers'
            // ends inherit its limit: it must hold them, or the rig, not a design, would fail.
            let largest = opts.burst_clients.iter().max().copied().unwrap_or(0);
            ensure_open_files(largest * 2 + 1024)?;
            r.experiment = step(
                "figure 6: the three designs under bursts and an outage",
                || experiment(&mut stack, opts),
            )?;
        }
    }
    if opts.wants("buffers") {
        // After the SQS pipeline is gone: the two never share the cores.
        r.kinesis = Some(buffers::kinesis_side(opts)?);
    }
    r.load_end = measure::load_average();
    r.seconds = started.elapsed().as_secs_f64();
    Ok(r)
}

/// Fails, saying how to raise it, when the soft open-files limit is below `need`.
fn ensure_open_files(need: usize) -> Result<()> {
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok())
        .context("no `Max open files` in /proc/self/limits")?;
    note(&format!(
        "open files: soft limit {soft}, this run needs about {need}"
    ));
    if soft < need {
        bail!(
            "the open-files limit is {soft}; raise it for this run, e.g. `ulimit -n {need}`, \
             then run again"
        );
    }
    Ok(())
}

/// `cargo` in the workspace, with the tools' variables `main` put in this process's environment.
fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root()).args(args);
    c
}

/// Where `cargo build --release` puts the consumer, the poller and the baseline server: the
/// figures run what is deployed (Lambda runs the release build), not a debug build whose CPU
/// would compete with the edge for the same two cores.
fn release_bin_dir() -> PathBuf {
    target_dir().join("release")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}
