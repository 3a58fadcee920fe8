//! End to end: real HTTP requests to `wrangler dev`, through the local SQS and the poller, into
//! PostgreSQL. Every test reconciles: the ids answered `202` are exactly the ids in the table.
//!
//! Each test starts its own pipeline on private ports; they run one at a time (2 cores).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use spillway_e2e::{
    mixed, reconcile, start, traffic, traffic_until, wait_until, Client, Ledger, StopOnDrop,
};
use spillway_support::{FaultMode, Stack};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

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

/// Messages of the main queue in flight (asks SQS only, so it works while `events` is locked).
fn in_flight(stack: &Stack) -> u64 {
    stack
        .sqs
        .depth(&stack.env.sqs_queue_url)
        .map(|(_, in_flight)| in_flight)
        .unwrap_or(0)
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

/// Sum of one metric over the EMF records the poller printed.
fn emf_sum(stack: &Stack, metric: &str) -> u64 {
    let log = std::fs::read_to_string(stack.config.dir.join("logs/poller.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .filter_map(|v| v[metric].as_u64())
        .sum()
}

#[test]
fn steady_mixed_traffic_from_several_clients() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !spillway_support::worker_built("steady_mixed_traffic_from_several_clients") {
        return;
    }
    let stack = start("steady", |_| {});
    let ledger = Ledger::default();
    traffic(
        &Client::new(&stack),
        4,
        12,
        Duration::from_millis(20),
        |seq| mixed(seq, true),
        &ledger,
    )
    .expect("every request accepted");
    // `traffic` already failed unless each request got its 202 with one id per event; what is
    // left to check is the table, row by row.
    reconcile(&stack, &ledger, Duration::from_secs(90)).expect("reconciled");
    assert_eq!(stack.status().expect("status").dlq, 0, "nothing in the DLQ");
}

#[test]
fn poller_killed_mid_batch_then_restarted() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !spillway_support::worker_built("poller_killed_mid_batch_then_restarted") {
        return;
    }
    let mut stack = start("poller-kill", |c| {
        c.visibility_timeout_secs = 3;
        c.max_receive_count = 20;
        c.poller_env = env(&[("DB_STATEMENT_TIMEOUT_MS", "60000")]);
    });
    // The consumer's insert blocks on the lock, so the batch is in flight when we kill.
    let lock = TableLock::take(&stack);
    let ledger = Ledger::default();
    traffic(
        &Client::new(&stack),
        2,
        6,
        Duration::from_millis(20),
        |seq| mixed(seq, true),
        &ledger,
    )
    .expect("accepted");
    wait_until("a batch in flight", Duration::from_secs(20), || {
        in_flight(&stack) > 0
    })
    .expect("the poller took a batch");
    // Every write waits on the lock, so nothing is deleted: the queue's total stays put.
    let (visible, taken) = stack.sqs.depth(&stack.env.sqs_queue_url).expect("depth");
    assert!(taken > 0, "a batch in flight when the poller is killed");
    stack.kill_poller();
    // The redelivery this test is about: the killed poller's messages come back, all of them,
    // once their visibility timeout has passed.
    wait_until(
        "the killed poller's messages to be visible again",
        Duration::from_secs(60),
        || stack.sqs.depth(&stack.env.sqs_queue_url).ok() == Some((visible + taken, 0)),
    )
    .expect("the messages in flight came back");
    lock.release();
    // The killed poller's statement may still complete server-side once the lock is released
    // (PostgreSQL notices a vanished client only when it next writes to it): whether or not it
    // did, the messages are received again and must be stored once (reconcile also waits for
    // the queue to be empty: received again and deleted).
    stack.start_poller().expect("poller restarts");
    reconcile(&stack, &ledger, Duration::from_secs(90)).expect("reconciled");
}

#[test]
fn postgres_down_for_ten_seconds_under_traffic() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !spillway_support::worker_built("postgres_down_for_ten_seconds_under_traffic") {
        return;
    }
    let stack = start("pg-down", |c| {
        c.visibility_timeout_secs = 2;
        // Enough receives to ride out the outage without sending good messages to the DLQ.
        c.max_receive_count = 50;
    });
    let ledger = Ledger::default();
    let client = Client::new(&stack);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Traffic until the database is back, however long each phase takes to reach.
        let t = s.spawn(|| {
            traffic_until(
                &client,
                2,
                Duration::from_millis(200),
                |seq| mixed(seq, true),
                &ledger,
                &stop,
            )
        });
        let _stop = StopOnDrop(&stop);
        wait_until(
            "events stored before the outage",
            Duration::from_secs(60),
            || stored(&stack) > 0,
        )
        .expect("the pipeline stores events");
        let failed_before = emf_sum(&stack, "RecordsFailed");
        stack.pg.stop().expect("postgres stops");
        let stopped = Instant::now();
        let requests_at_stop = ledger.requests.load(Ordering::SeqCst);
        wait_until(
            "the poller to report failed batches",
            Duration::from_secs(60),
            || emf_sum(&stack, "RecordsFailed") > failed_before,
        )
        .expect("the outage was reported as failures");
        // Down for ten seconds at least (the scenario), and until requests were accepted
        // while it was: the edge does not need the database.
        std::thread::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed()));
        wait_until(
            "requests accepted while the database is down",
            Duration::from_secs(60),
            || ledger.requests.load(Ordering::SeqCst) > requests_at_stop + 2,
        )
        .expect("the edge accepts while the database is down");
        let status = stack.status().expect("status");
        assert!(
            status.visible + status.in_flight > 0,
            "the queue holds the burst while the database is down"
        );
        stack.pg.start_again().expect("postgres starts");
        eprintln!("postgres was down {:.1} s", stopped.elapsed().as_secs_f64());
        // Some traffic after the restart too.
        let requests_at_start = ledger.requests.load(Ordering::SeqCst);
        wait_until(
            "requests after the restart",
            Duration::from_secs(60),
            || ledger.requests.load(Ordering::SeqCst) > requests_at_start + 2,
        )
        .expect("traffic goes on");
        stop.store(true, Ordering::SeqCst);
        t.join()
            .expect("traffic thread")
            .expect("all accepted while the database was down");
    });
    reconcile(&stack, &ledger, Duration::from_secs(120)).expect("reconciled");
    assert_eq!(
        stack.status().expect("status").dlq,
        0,
        "no good message in the DLQ"
    );
}

#[test]
fn sqs_faults_give_503_and_retries_lose_nothing() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !spillway_support::worker_built("sqs_faults_give_503_and_retries_lose_nothing") {
        return;
    }
    let stack = start("sqs-faults", |c| {
        c.edge_sqs_proxy = true;
        // Without the spill queue: this is the 503 path (tests/e2e/tests/spill.rs has the other).
        c.spill = false;
        c.edge_vars = env(&[("SQS_DEADLINE_MS", "1500"), ("RETRY_AFTER_SECS", "1")]);
    });
    let proxy = stack.proxy.as_ref().expect("proxy");
    let ledger = Ledger::default();
    let client = Client::new(&stack);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Only requests with stable ids are retried (client ids or Idempotency-Key). Traffic
        // runs until every phase below has happened, however long each takes.
        let t = s.spawn(|| {
            traffic_until(
                &client,
                3,
                Duration::from_millis(100),
                |seq| mixed(seq, false),
                &ledger,
                &stop,
            )
        });
        let _stop = StopOnDrop(&stop);
        // Each phase lasts until it has really happened: a few faults of its kind and a
        // client answered 503 (the edge gave up within its deadline), or a few requests
        // accepted through the proxy.
        for mode in [
            FaultMode::Pass,
            FaultMode::Http500,
            FaultMode::Pass,
            FaultMode::Throttle,
            FaultMode::Refuse,
            FaultMode::Pass,
        ] {
            proxy.set_mode(mode);
            if mode == FaultMode::Pass {
                let before = ledger.requests.load(Ordering::SeqCst);
                wait_until("requests accepted", Duration::from_secs(60), || {
                    ledger.requests.load(Ordering::SeqCst) >= before + 3
                })
                .expect("requests go through once SQS answers");
            } else {
                let before = proxy.faulted_in(mode);
                let answered_503 = client.unavailable_seen();
                wait_until(
                    &format!("{mode:?} faults and a 503"),
                    Duration::from_secs(60),
                    || {
                        proxy.faulted_in(mode) >= before + 3
                            && client.unavailable_seen() > answered_503
                    },
                )
                .expect("the proxy injected faults and a client got 503");
            }
        }
        stop.store(true, Ordering::SeqCst);
        t.join()
            .expect("traffic thread")
            .expect("every request accepted in the end");
    });
    for mode in [FaultMode::Http500, FaultMode::Throttle, FaultMode::Refuse] {
        assert!(proxy.faulted_in(mode) >= 3, "{mode:?} faults injected");
    }
    assert!(
        ledger.unavailable.load(Ordering::SeqCst) > 0,
        "clients saw 503 while SQS failed"
    );
    reconcile(&stack, &ledger, Duration::from_secs(90)).expect("reconciled");
}

#[test]
fn short_visibility_timeout_redelivers_and_nothing_is_stored_twice() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !spillway_support::worker_built(
        "short_visibility_timeout_redelivers_and_nothing_is_stored_twice",
    ) {
        return;
    }
    let stack = start("redelivery", |c| {
        c.visibility_timeout_secs = 1;
        c.max_receive_count = 50;
        // More workers than messages: while some are stuck on their first copy, others are
        // free to receive the copies SQS hands out again after the visibility timeout.
        c.poller_env = env(&[
            ("MAXIMUM_CONCURRENCY", "5"),
            ("BATCH_SIZE", "10"),
            ("DB_STATEMENT_TIMEOUT_MS", "60000"),
        ]);
    });
    // Processing (blocked on the lock) takes longer than the visibility timeout.
    let lock = TableLock::take(&stack);
    let ledger = Ledger::default();
    traffic(
        &Client::new(&stack),
        1,
        2,
        Duration::from_millis(20),
        |seq| mixed(seq, true),
        &ledger,
    )
    .expect("accepted");
    wait_until("a batch in flight", Duration::from_secs(30), || {
        in_flight(&stack) > 0
    })
    .expect("the poller took the messages");
    // The two requests make at most two messages, so at most two workers wait on the lock
    // with a first copy: a third waiting worker holds a copy SQS handed out again.
    wait_until(
        "a redelivered copy waiting on the lock",
        Duration::from_secs(60),
        || consumers_waiting_on_a_lock(&stack) >= 3,
    )
    .expect("messages were delivered again while the first copies were stuck");
    lock.release();
    reconcile(&stack, &ledger, Duration::from_secs(90)).expect("reconciled");
    wait_until(
        "the redelivered copies to be skipped",
        Duration::from_secs(30),
        || emf_sum(&stack, "DuplicatesSkipped") > 0,
    )
    .expect("messages were delivered twice and the duplicates skipped");
}

#[test]
fn poison_messages_end_in_the_dlq_and_do_not_stop_the_rest() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !spillway_support::worker_built("poison_messages_end_in_the_dlq_and_do_not_stop_the_rest") {
        return;
    }
    let stack = start("poison", |c| {
        c.visibility_timeout_secs = 1;
        c.max_receive_count = 2;
    });
    stack
        .sqs
        .send(&stack.env.sqs_queue_url, "{not json")
        .expect("poison sent");
    stack
        .sqs
        .send(&stack.env.sqs_queue_url, r#"{"v":99,"events":[]}"#)
        .expect("unknown version sent");
    // Anyone who can send to the queue: an envelope the edge never sealed, and one sealed with
    // the stack's key id but another secret (an altered message verifies no better).
    let forged_id = "0192f0c1-7a44-7cc3-9e2b-000000f0a9ed";
    let unsigned = format!(
        r#"{{"v":1,"events":[{{"id":"{forged_id}","type":"forged","received_at":"2020-01-01T00:00:00Z","key_id":"{}","data":{{}}}}]}}"#,
        spillway_support::stack::KEY_ID
    );
    let kid = stack
        .env
        .envelope_keys
        .split_once(':')
        .map(|(kid, _)| kid.to_owned())
        .expect("kid:secret");
    let wrong_secret = spillway_shared::SigningKey::new(&kid, &[b'w'; 32]).expect("key");
    let event: spillway_shared::Event =
        serde_json::from_str(&unsigned[r#"{"v":1,"events":["#.len()..unsigned.len() - 2])
            .expect("the forged event");
    let resealed = spillway_shared::pack(
        std::slice::from_ref(&event),
        &spillway_shared::BufferLimits::default(),
        &wrong_secret,
    )
    .expect("pack")[0]
        .entries[0]
        .body
        .clone();
    for body in [&unsigned, &resealed] {
        stack
            .sqs
            .send(&stack.env.sqs_queue_url, body)
            .expect("forgery sent");
    }
    let ledger = Ledger::default();
    traffic(
        &Client::new(&stack),
        2,
        5,
        Duration::from_millis(20),
        |seq| mixed(seq, true),
        &ledger,
    )
    .expect("accepted");
    reconcile(&stack, &ledger, Duration::from_secs(90)).expect("good events stored");
    wait_until(
        "the four poison messages in the DLQ",
        Duration::from_secs(90),
        || stack.status().map(|s| s.dlq == 4).unwrap_or(false),
    )
    .expect("poison in the DLQ");
    // The DLQ tool, run as a user would with `.spillway/dev.env`, names each forgery.
    let out = std::process::Command::new(stack.config.bin_dir.join("spillway-dlq"))
        .arg("list")
        .envs(
            std::fs::read_to_string(stack.config.dir.join("dev.env"))
                .expect("dev.env")
                .lines()
                .filter_map(|l| l.split_once('=')),
        )
        .output()
        .expect("run spillway-dlq");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{listed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listed.contains("unverified, never stored: unsigned envelope (version 1)"),
        "{listed}"
    );
    assert!(
        listed.contains(&format!(
            "unverified, never stored: signature does not verify under key id {kid:?}"
        )),
        "{listed}"
    );
    assert!(listed.contains("4 messages in"), "{listed}");
    assert_eq!(
        stack
            .pg
            .psql(&format!(
                "SELECT count(*) FROM events WHERE id = '{forged_id}'"
            ))
            .expect("psql"),
        "0",
        "a forged event was stored"
    );
    let mut bodies = stack
        .sqs
        .receive(&stack.env.sqs_dlq_url, 30)
        .expect("read DLQ");
    bodies.sort();
    let mut expected = vec![
        "{\"v\":99,\"events\":[]}".to_owned(),
        "{not json".to_owned(),
        unsigned.clone(),
        resealed.clone(),
    ];
    expected.sort();
    assert_eq!(bodies, expected);
    wait_until("the main queue to drain", Duration::from_secs(30), || {
        stack
            .status()
            .map(|s| s.visible == 0 && s.in_flight == 0)
            .unwrap_or(false)
    })
    .expect("nothing left in the main queue");
}

#[test]
fn a_panic_answers_500_json_and_the_next_requests_are_served() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !spillway_support::worker_built("a_panic_answers_500_json_and_the_next_requests_are_served")
    {
        return;
    }
    let stack = start("panic", |c| {
        c.edge_vars = env(&[("SPILLWAY_PANIC_ROUTE", "enabled")]);
    });
    let client = Client::new(&stack);
    let ledger = Ledger::default();
    let first = mixed(1, true);
    let (ids, _) = client
        .send_until_accepted(&first, Duration::from_secs(30))
        .expect("accepted before the panic");
    ledger.record(&first, ids, 0);

    let a = client.post_path("/__spillway/panic").expect("an answer");
    assert_eq!(a.status, 500, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "internal", "{}", a.body);

    // The instance is rebuilt: health and ingest work again, and nothing accepted is lost.
    let (status, _) =
        spillway_support::http_get(stack.config.edge_port, "/healthz").expect("health");
    assert_eq!(status, 200);
    for seq in 2..6 {
        let req = mixed(seq, true);
        let (ids, _) = client
            .send_until_accepted(&req, Duration::from_secs(30))
            .expect("accepted after the panic");
        ledger.record(&req, ids, 0);
    }
    reconcile(&stack, &ledger, Duration::from_secs(60)).expect("reconciled");
}
