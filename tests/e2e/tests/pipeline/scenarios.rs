//! The fault scenarios written once for both buffers: steady traffic, the poller SIGKILLed
//! mid-batch, PostgreSQL stopped under traffic, the buffer failing the edge's calls, a panic in
//! the edge; and SQS's own redelivery after a short visibility timeout.
//!
//! Where SQS and Kinesis differ in what a test can observe, the scenario says which it reads:
//! with SQS the queue's visible and in-flight counts, with Kinesis the poller's checkpoint file
//! and whether a shard holds records after it ([`Stack::drained`]). Poison records are in
//! `poison.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use spillway_e2e::{
    mixed, reconcile, traffic, traffic_until, wait_until, Client, Ledger, StopOnDrop,
};
use spillway_support::stack::checkpoint_file;
use spillway_support::{BufferKind, FaultMode, Stack};

use super::{
    consumers_waiting_on_a_lock, emf_sum, env, on_failure_messages, start, stored, TableLock,
};

/// How long PostgreSQL stays down in [`postgres_down_for_twenty_seconds_under_traffic`].
const OUTAGE: Duration = Duration::from_secs(20);

pub fn steady_mixed_traffic_from_several_clients(buffer: BufferKind) {
    let stack = start("steady", buffer, |_| {});
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
    assert_eq!(on_failure_messages(&stack), 0, "no batch given up on");
}

/// Messages of the SQS main queue in flight (asks SQS only, so it works while `events` is
/// locked).
fn in_flight(stack: &Stack) -> u64 {
    stack
        .sqs
        .depth(&stack.env.sqs_queue_url)
        .map(|(_, in_flight)| in_flight)
        .unwrap_or(0)
}

/// The poller's checkpoint per shard (Kinesis), as its checkpoint file holds them.
fn checkpoints(stack: &Stack) -> serde_json::Value {
    let text = std::fs::read_to_string(checkpoint_file(&stack.config.dir)).expect("checkpoints");
    let file: serde_json::Value = serde_json::from_str(&text).expect("checkpoint JSON");
    let shards = file["shards"].as_object().expect("shards");
    serde_json::Value::Object(
        shards
            .iter()
            .map(|(shard, c)| (shard.clone(), c["checkpoint"].clone()))
            .collect(),
    )
}

pub fn poller_killed_mid_batch_then_restarted(buffer: BufferKind) {
    let mut stack = start("poller-kill", buffer, |c| {
        c.visibility_timeout_secs = 3;
        c.max_receive_count = 20;
        c.poller_env = env(&[("DB_STATEMENT_TIMEOUT_MS", "60000")]);
    });
    let client = Client::new(&stack);
    let ledger = Ledger::default();
    // Kinesis: a first round stored and checkpointed, so the restarted poller has a checkpoint
    // to resume from (and the test can tell resuming from starting over).
    let before_kill = if buffer == BufferKind::Kinesis {
        traffic(
            &client,
            2,
            4,
            Duration::from_millis(20),
            |seq| mixed(seq, true),
            &ledger,
        )
        .expect("accepted");
        reconcile(&stack, &ledger, Duration::from_secs(90)).expect("first round stored");
        Some(checkpoints(&stack))
    } else {
        None
    };
    let first_round = ledger.ids().len() as u64;
    // The consumer's insert blocks on the lock, so the batch is in flight when we kill.
    let lock = TableLock::take(&stack);
    traffic(
        &client,
        2,
        6,
        Duration::from_millis(20),
        |seq| mixed(seq + 100, true),
        &ledger,
    )
    .expect("accepted");
    let second_round = ledger.ids().len() as u64 - first_round;
    wait_until("a batch in flight", Duration::from_secs(30), || {
        consumers_waiting_on_a_lock(&stack) > 0
    })
    .expect("the poller took a batch");
    match &before_kill {
        None => {
            // Every write waits on the lock, so nothing is deleted: the queue's total stays put.
            let (visible, taken) = stack.sqs.depth(&stack.env.sqs_queue_url).expect("depth");
            assert!(taken > 0, "a batch in flight when the poller is killed");
            stack.kill_poller();
            // The redelivery this test is about: the killed poller's messages come back, all
            // of them, once their visibility timeout has passed.
            wait_until(
                "the killed poller's messages to be visible again",
                Duration::from_secs(60),
                || stack.sqs.depth(&stack.env.sqs_queue_url).ok() == Some((visible + taken, 0)),
            )
            .expect("the messages in flight came back");
        }
        Some(checkpointed) => {
            stack.kill_poller();
            // No batch of the second round was stored, so no shard moved its checkpoint: the
            // second round is all after the checkpoints, waiting for the next reader.
            assert_eq!(
                &checkpoints(&stack),
                checkpointed,
                "a checkpoint moved while every write waited on the lock"
            );
            assert!(
                !stack.drained(),
                "the second round is after the checkpoints"
            );
        }
    }
    lock.release();
    // The killed poller's statement may still complete server-side once the lock is released
    // (PostgreSQL notices a vanished client only when it next writes to it): whether or not it
    // did, the records are delivered again and must be stored once (reconcile also waits for
    // the buffer to be drained).
    // Events the poller handled, stored or skipped as already stored, over all its runs (the
    // killed one printed nothing for the batch it was killed in).
    let handled =
        |stack: &Stack| emf_sum(stack, "EventsStored") + emf_sum(stack, "DuplicatesSkipped");
    let handled_before = handled(&stack);
    stack.start_poller().expect("poller restarts");
    reconcile(&stack, &ledger, Duration::from_secs(90)).expect("reconciled");
    if buffer == BufferKind::Kinesis {
        // Resumed from the checkpoints, not from the stream's start: the restarted poller
        // handles the round in flight when it was killed (stored now, or skipped if the killed
        // insert landed after all), once each, and never the first round again.
        wait_until(
            "the restarted poller to report the round in flight",
            Duration::from_secs(30),
            || handled(&stack) - handled_before >= second_round,
        )
        .expect("the round in flight handled after the restart");
        assert_eq!(
            handled(&stack) - handled_before,
            second_round,
            "events handled after the restart (the first round had {first_round}): the poller \
             did not resume exactly at its checkpoints"
        );
        assert_eq!(on_failure_messages(&stack), 0, "no batch given up on");
    }
}

pub fn postgres_down_for_twenty_seconds_under_traffic(buffer: BufferKind) {
    let stack = start("pg-down", buffer, |c| {
        c.visibility_timeout_secs = 2;
        // Enough receives to ride out the outage without sending good messages to the DLQ
        // (SQS; the Kinesis mapping retries without a limit, as the template does).
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
        // Down for the whole outage at least (the scenario), and until requests were accepted
        // while it was: the edge does not need the database.
        std::thread::sleep(OUTAGE.saturating_sub(stopped.elapsed()));
        wait_until(
            "requests accepted while the database is down",
            Duration::from_secs(60),
            || ledger.requests.load(Ordering::SeqCst) > requests_at_stop + 2,
        )
        .expect("the edge accepts while the database is down");
        match buffer {
            BufferKind::Sqs => {
                let status = stack.status().expect("status");
                assert!(
                    status.visible + status.in_flight > 0,
                    "the queue holds the burst while the database is down"
                );
            }
            BufferKind::Kinesis => assert!(
                !stack.drained(),
                "the stream holds records after the checkpoints while the database is down"
            ),
        }
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
    assert_eq!(
        on_failure_messages(&stack),
        0,
        "no batch given up on: the outage is within the retry budget"
    );
}

pub fn buffer_faults_give_503_and_retries_lose_nothing(buffer: BufferKind) {
    let stack = start("buffer-faults", buffer, |c| {
        // The fault proxy sits between the edge and its buffer, SQS or Kinesis.
        c.edge_sqs_proxy = true;
        // Without the spill queue: this is the 503 path (tests/e2e/tests/spill.rs has the other).
        c.spill = false;
        // SQS_DEADLINE_MS bounds the call to whichever buffer is configured.
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
                .expect("requests go through once the buffer answers");
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
        "clients saw 503 while the buffer failed"
    );
    reconcile(&stack, &ledger, Duration::from_secs(90)).expect("reconciled");
}

pub fn short_visibility_timeout_redelivers_and_nothing_is_stored_twice(buffer: BufferKind) {
    assert_eq!(buffer, BufferKind::Sqs, "a visibility timeout is SQS's");
    let stack = start("redelivery", buffer, |c| {
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

pub fn a_panic_answers_500_json_and_the_next_requests_are_served(buffer: BufferKind) {
    let stack = start("panic", buffer, |c| {
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
