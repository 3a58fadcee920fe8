//! Spillway's developer commands, run as `cargo xtask <command>`.
//!
//! - `test`: installs the missing tools, then runs every check CI runs.
//! - `dev`, `up`, `down`, `status`: the local pipeline (see `../README.md`).
//! - `bench`: the figures of `BENCHMARKS.md`; `fuzz`: the cargo-fuzz targets under `fuzz/`.
//! - `plan --rps N`: the settings, monthly bill and binding limits for a load.
//! - `token --key-id ID --origin URL`: a browser token for a key, minted locally.
//!
//! This is a binary for humans and CI; it holds no pipeline logic, only orchestration.

mod bench;
mod bootstrap;
mod fresh;
mod fuzz;
mod layers;
mod limits;
mod plan;
mod prices;
mod stack;
mod step;
mod test;
mod token;

use anyhow::Result;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test    install what is missing, then run every check CI runs
  dev     run the whole pipeline locally and show its status until Ctrl-C
  up      start the local pipeline in the background and return when it is ready
  down    stop what `up` started, once its queues have drained (--wait SECS, default 60;
          --force stops it even if accepted events would be lost)
  status  show the status of a running pipeline once
  bench   measure everything BENCHMARKS.md reports (at most 15 minutes)
  plan    the settings, monthly bill, burst drain and first binding limit for a load
          (--rps N; `cargo xtask plan --help` for its options)
  token   mint a browser token for a key and an origin (--key-id ID --origin URL [--ttl 10m];
          the secret from TOKEN_SECRETS in the environment or .spillway/dev.env)
  layers  check that no module of shared, edge or consumer uses a module that uses it back
  fuzz    run each cargo-fuzz target for a while (--seconds N, default 60; [target...])

options of dev and up: --buffer sqs|kinesis (sqs), --sqs moto|localstack (moto), --edge-port N
  (8787), --sqs-port N (9324), --pg-port N (54329); or SPILLWAY_BUFFER, SPILLWAY_SQS,
  SPILLWAY_EDGE_PORT, ... (a flag wins)
options of bench: --sqs moto|localstack (localstack; or SPILLWAY_SQS), --buffer sqs|kinesis
  (sqs: every figure, Kinesis beside SQS in figure 9; kinesis: figures 3 and 6 on the Kinesis
  pipeline), --only FIGURES, --burst-clients N,N, --steady-secs N, --steady-rate N, --wrk-secs N";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result: Result<()> = match args.first().map(String::as_str) {
        Some("test") => test::main(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("fuzz") => fuzz::main(&args[1..]),
        Some("layers") => layers::main(&args[1..]),
        Some("plan") => plan::main(&args[1..]),
        Some("token") => token::main(&args[1..]),
        Some("dev") => stack::dev(&args[1..]),
        Some("up") => stack::up(&args[1..]),
        Some("down") => stack::down(&args[1..]),
        Some("supervise") => stack::supervise(&args[1..]),
        Some("status") => stack::status_once(),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("\nxtask: error: {e:#}");
        std::process::exit(1);
    }
}
