//! End to end: real HTTP requests to `wrangler dev`, through the buffer (the local SQS queue, or
//! the local Kinesis stream with the poller playing the event source mapping) and the consumer,
//! into PostgreSQL. Every test reconciles: the ids answered `202` are exactly the ids in the
//! table.
//!
//! Each scenario runs once per buffer, as its own test (`sqs::<scenario>`, `kinesis::<scenario>`),
//! so a failure names both. The scenarios are written once (`scenarios.rs`, `poison.rs`, `outage.rs`); where
//! the two buffers differ in what can be observed (SQS's visibility timeout and in-flight
//! counts, Kinesis's checkpoints and dead letters sent by the handler), the scenario says so at
//! that point. Each test starts its own pipeline on private ports; they run one at a time (2
//! cores).
//!
//! This file holds the harness the scenarios share: the serialising lock, a psql session that
//! holds a table lock, and readings of the table, the consumer's sessions and the poller's EMF.

use std::sync::Mutex;

use spillway_support::{BufferKind, Stack, StackConfig};

mod outage;
mod poison;
mod scenarios;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `scenario` with `buffer`, alone, if the Worker for `buffer` is built (else skips, or
/// fails under `SPILLWAY_REQUIRE_WASM`).
fn run(test: &str, buffer: BufferKind, scenario: fn(BufferKind)) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !spillway_support::worker_built_for(&format!("{buffer}::{test}"), buffer) {
        return;
    }
    scenario(buffer);
}

/// One `#[test]` per scenario and buffer: `sqs::<name>` and `kinesis::<name>`.
macro_rules! per_buffer {
    ($($module:ident :: $scenario:ident),* $(,)?) => {
        mod sqs {
            $(
                #[test]
                fn $scenario() {
                    super::run(stringify!($scenario), spillway_support::BufferKind::Sqs, super::$module::$scenario);
                }
            )*
        }
        mod kinesis {
            $(
                #[test]
                fn $scenario() {
                    super::run(stringify!($scenario), spillway_support::BufferKind::Kinesis, super::$module::$scenario);
                }
            )*
        }
    };
}

per_buffer!(
    scenarios::steady_mixed_traffic_from_several_clients,
    scenarios::poller_killed_mid_batch_then_restarted,
    scenarios::postgres_down_for_twenty_seconds_under_traffic,
    scenarios::buffer_faults_give_503_and_retries_lose_nothing,
    scenarios::a_panic_answers_500_json_and_the_next_requests_are_served,
    poison::poison_records_are_dead_lettered_and_do_not_stop_the_rest,
    outage::postgres_down_longer_than_the_retry_budget_sends_only_poison_to_the_dlq,
);

/// Starts a stack with `buffer` for the test `name` (short: it names the stack's directory,
/// which holds PostgreSQL's socket), after `tweak`.
fn start(name: &str, buffer: BufferKind, tweak: impl FnOnce(&mut StackConfig)) -> Stack {
    let stack = spillway_e2e::start(&format!("{name}-{buffer}"), |c| {
        c.buffer = buffer;
        tweak(c);
    });
    assert_eq!(stack.env.buffer, buffer);
    stack
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// An exclusive lock on `events`, held by a psql session until [`TableLock::release`], so the
/// consumer's writes wait for as long as a test needs.
struct TableLock {
    psql: std::process::Child,
}

impl TableLock {
    fn take(stack: &Stack) -> TableLock {
        use std::io::{BufRead, Write};
        let mut psql = std::process::Command::new(
            spillway_support::pg_bin_dir()
                .expect("postgres")
                .join("psql"),
        )
        .args(["-h", "127.0.0.1", "-p", &stack.pg.port().to_string()])
        .args([
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("psql starts");
        let stdin = psql.stdin.as_mut().expect("stdin");
        stdin
            .write_all(b"begin;\nlock table events in access exclusive mode;\nselect 'locked';\n")
            .expect("lock sent");
        stdin.flush().expect("flush");
        let mut line = String::new();
        std::io::BufReader::new(psql.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("psql answers");
        assert_eq!(line.trim(), "locked", "the lock is held");
        TableLock { psql }
    }

    fn release(mut self) {
        self.commit();
    }

    fn commit(&mut self) {
        use std::io::Write;
        if let Some(mut stdin) = self.psql.stdin.take() {
            stdin.write_all(b"commit;\n").expect("commit sent");
            drop(stdin);
        }
        assert!(self.psql.wait().expect("psql exits").success());
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        // A test that failed while holding the lock must not leave the session behind.
        let _ = self.psql.kill();
        let _ = self.psql.wait();
    }
}

/// Rows in `events`.
fn stored(stack: &Stack) -> u64 {
    stack
        .pg
        .psql("select count(*) from events")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Consumer sessions waiting for a lock (on `events`, held by a [`TableLock`]).
fn consumers_waiting_on_a_lock(stack: &Stack) -> u64 {
    stack
        .pg
        .psql(
            "select count(*) from pg_stat_activity
             where wait_event_type = 'Lock' and application_name = 'spillway-consumer'",
        )
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sum of one metric over the EMF records the poller printed (its log is appended to across
/// restarts, so this counts every run of it).
fn emf_sum(stack: &Stack, metric: &str) -> u64 {
    let log = std::fs::read_to_string(stack.config.dir.join("logs/poller.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .filter_map(|v| v[metric].as_u64())
        .sum()
}

/// Messages on the Kinesis mapping's on-failure destination (batches given up on), visible or
/// not; 0 with SQS, which has none.
fn on_failure_messages(stack: &Stack) -> u64 {
    stack.env.kinesis.as_ref().map_or(0, |k| {
        let (visible, in_flight) = stack.sqs.depth(&k.on_failure_url).expect("depth");
        visible + in_flight
    })
}

/// Runs `spillway-dlq` with `args`, as a user would with `.spillway/dev.env`; its stdout, after
/// checking that it succeeded.
fn dlq_tool(stack: &Stack, args: &[&str]) -> String {
    let out = std::process::Command::new(stack.config.bin_dir.join("spillway-dlq"))
        .args(args)
        .envs(
            std::fs::read_to_string(stack.config.dir.join("dev.env"))
                .expect("dev.env")
                .lines()
                .filter_map(|l| l.split_once('=')),
        )
        .output()
        .expect("run spillway-dlq");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "spillway-dlq {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// SQS only: Kinesis has no visibility timeout (a shard's records are delivered again only
/// after a failure or a restart from the checkpoint, which the scenarios above cover).
#[test]
fn short_visibility_timeout_redelivers_and_nothing_is_stored_twice() {
    run(
        "short_visibility_timeout_redelivers_and_nothing_is_stored_twice",
        BufferKind::Sqs,
        scenarios::short_visibility_timeout_redelivers_and_nothing_is_stored_twice,
    );
}
