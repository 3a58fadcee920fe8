//! The whole pipeline on LocalStack (`--sqs localstack`) instead of moto: HTTP requests to
//! `wrangler dev`, through LocalStack's SQS and the poller, into PostgreSQL, reconciled id by id.
//!
//! Needs the built worker and LocalStack in `.venv-localstack`. `cargo xtask test` installs
//! both and sets `SPILLWAY_REQUIRE_WASM` and `SPILLWAY_REQUIRE_LOCALSTACK`, so there a missing
//! one fails instead of skipping.

use std::time::{Duration, Instant};

use spillway_e2e::{mixed, reconcile, traffic, Client, Ledger};
use spillway_support::sqs_server::{localstack_cert, localstack_venv};
use spillway_support::{SqsKind, Stack, StackConfig};

fn ready(test: &str) -> bool {
    if !spillway_support::worker_built(test) {
        return false;
    }
    let venv = localstack_venv();
    let installed = venv.join("bin/python").exists() && localstack_cert(&venv).exists();
    if !installed {
        assert!(
            std::env::var_os("SPILLWAY_REQUIRE_LOCALSTACK").is_none(),
            "LocalStack is not in {} but SPILLWAY_REQUIRE_LOCALSTACK is set",
            venv.display()
        );
        eprintln!("skipped: LocalStack is not installed (run `cargo xtask test`)");
        return false;
    }
    true
}

#[test]
fn every_accepted_event_is_stored_once_through_localstack() {
    if !ready("every_accepted_event_is_stored_once_through_localstack") {
        return;
    }
    let mut cfg = StackConfig::ephemeral("localstack").expect("ports");
    cfg.sqs = SqsKind::LocalStack;
    let t = Instant::now();
    let stack = Stack::start(cfg, &mut |line| eprintln!("[localstack] {line}")).expect("starts");
    eprintln!("[localstack] ready in {:.1} s", t.elapsed().as_secs_f64());

    // The stack really runs LocalStack: its account is in the queue URLs, and dev.env says so.
    assert!(
        stack
            .env
            .sqs_queue_url
            .contains("/queue/us-east-1/000000000000/"),
        "{}",
        stack.env.sqs_queue_url
    );
    let dev_env =
        std::fs::read_to_string(stack.config.dir.join("dev.env")).expect("dev.env written");
    assert!(dev_env.contains("\nSQS_SERVER=localstack\n"), "{dev_env}");

    let ledger = Ledger::default();
    let t = Instant::now();
    traffic(
        &Client::new(&stack),
        4,
        12,
        Duration::from_millis(20),
        |seq| mixed(seq, true),
        &ledger,
    )
    .expect("every request accepted");
    // Every accepted id in `events` exactly once, with what was sent, the queue drained.
    reconcile(&stack, &ledger, Duration::from_secs(90)).expect("reconciled");
    eprintln!(
        "[localstack] {} events accepted and stored in {:.1} s",
        ledger.ids().len(),
        t.elapsed().as_secs_f64()
    );
    let status = stack.status().expect("status");
    assert_eq!(status.dlq, 0, "nothing in the DLQ");
    assert_eq!(status.sqs, SqsKind::LocalStack);

    let dir = stack.config.dir.clone();
    drop(stack);
    let _ = std::fs::remove_dir_all(dir);
}
