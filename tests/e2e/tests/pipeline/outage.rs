//! A database outage longer than the SQS retry budget (visibility timeout x `maxReceiveCount`)
//! under steady traffic, with a poison record put in while the database is down: every
//! accepted event is stored once after the database returns, without any command, and the
//! dead-letter queue holds the poison record alone, which `spillway-dlq list` names.
//!
//! With SQS this is the circuit breaker's test (`spillway_consumer::breaker`): the stack's
//! queue moves a message to the DLQ on its 4th receive and hides it for 2 s, so without the
//! breaker every message waiting through a 30 s outage would reach the DLQ about four times
//! over. The poller's log must show the breaker pausing and resuming. With Kinesis there is no
//! receive count: the mapping retries without a count or an age limit (as the template), and
//! the handler dead-letters the poison record itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use spillway_e2e::{mixed, reconcile, traffic_until, wait_until, Client, Ledger, StopOnDrop};
use spillway_support::{BufferKind, Stack};

use super::{dlq_tool, emf_sum, on_failure_messages, start, stored};

/// How long PostgreSQL stays down: five times the SQS retry budget of [`VISIBILITY_S`] x
/// [`MAX_RECEIVES`].
const OUTAGE: Duration = Duration::from_secs(30);
const VISIBILITY_S: u32 = 2;
const MAX_RECEIVES: u32 = 3;

/// What the poller's log says (`spillway_consumer::tools::poller::worker`).
const PAUSED: &str = "database unavailable: receiving paused";
const RESUMED: &str = "database reachable again: receiving resumed";

fn poller_log(stack: &Stack) -> String {
    std::fs::read_to_string(stack.config.dir.join("logs/poller.log")).unwrap_or_default()
}

/// A record no edge sealed, straight into the buffer: it can never be stored.
fn put_poison(stack: &Stack) {
    const POISON: &str = "{not json, put in during the outage";
    match stack.env.buffer {
        BufferKind::Sqs => {
            stack
                .sqs
                .send(&stack.env.sqs_queue_url, POISON)
                .expect("poison sent");
        }
        BufferKind::Kinesis => {
            let kinesis = stack.kinesis.as_ref().expect("the local Kinesis");
            kinesis
                .client()
                .put_records(
                    kinesis.stream(),
                    &[("outage-poison".to_owned(), POISON.as_bytes().to_vec())],
                )
                .expect("poison put");
        }
    }
}

pub fn postgres_down_longer_than_the_retry_budget_sends_only_poison_to_the_dlq(buffer: BufferKind) {
    let stack = start("outage", buffer, |c| {
        c.visibility_timeout_secs = VISIBILITY_S;
        c.max_receive_count = MAX_RECEIVES;
    });
    assert!(
        OUTAGE > Duration::from_secs(u64::from(VISIBILITY_S * MAX_RECEIVES) * 4),
        "the outage must outlast the retry budget"
    );
    let ledger = Ledger::default();
    let client = Client::new(&stack);
    let stop = AtomicBool::new(false);
    let mut returned = Instant::now();
    std::thread::scope(|s| {
        // Steady traffic from before the outage until after the database is back.
        let t = s.spawn(|| {
            traffic_until(
                &client,
                2,
                Duration::from_millis(100),
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
        put_poison(&stack);
        wait_until(
            "the consumer to find the database unavailable",
            Duration::from_secs(60),
            || emf_sum(&stack, "RecordsFailed") > failed_before,
        )
        .expect("the outage was reported as failures");
        if buffer == BufferKind::Sqs {
            wait_until(
                "the poller's breaker to pause receiving",
                Duration::from_secs(30),
                || poller_log(&stack).contains(PAUSED),
            )
            .expect("the breaker opened");
        }
        // The scenario: down for the whole outage, with traffic accepted meanwhile.
        let requests_at_stop = ledger.requests.load(Ordering::SeqCst);
        std::thread::sleep(OUTAGE.saturating_sub(stopped.elapsed()));
        wait_until(
            "requests accepted while the database is down",
            Duration::from_secs(60),
            || ledger.requests.load(Ordering::SeqCst) > requests_at_stop + 2,
        )
        .expect("the edge accepts while the database is down");
        // SQS: the poison is not received while the breaker is open. Kinesis: the handler
        // dead-letters it as soon as it handles it, unless it sits behind a record that failed
        // in the same batch (then it comes back with it).
        let status = stack
            .status()
            .expect("status answers while the database is down");
        assert!(
            status.problems.iter().any(|p| p.starts_with("database")),
            "the status line names the outage while it lasts: {:?}",
            status.problems
        );
        let dlq = status.dlq;
        match buffer {
            BufferKind::Sqs => assert_eq!(dlq, 0, "nothing in the DLQ during the outage"),
            BufferKind::Kinesis => assert!(dlq <= 1, "only the poison in the DLQ: {dlq}"),
        }
        stack.pg.start_again().expect("postgres starts");
        returned = Instant::now();
        eprintln!("postgres was down {:.1} s", stopped.elapsed().as_secs_f64());
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
    // Within two minutes of its return, without any command (the bar).
    reconcile(
        &stack,
        &ledger,
        Duration::from_secs(120).saturating_sub(returned.elapsed()),
    )
    .expect("every accepted event stored once");
    eprintln!(
        "reconciled {:.1} s after the database returned",
        returned.elapsed().as_secs_f64()
    );
    wait_until(
        "the poison record in the DLQ",
        Duration::from_secs(60),
        || stack.status().map(|s| s.dlq >= 1).unwrap_or(false),
    )
    .expect("the poison reaches the DLQ");
    let status = stack.status().expect("status");
    assert_eq!(status.dlq, 1, "the poison alone in the DLQ: {status:?}");
    let listed = dlq_tool(&stack, &["list"]);
    assert!(listed.contains("undecodable"), "{listed}");
    assert_eq!(on_failure_messages(&stack), 0, "no batch given up on");
    if buffer == BufferKind::Sqs {
        let log = poller_log(&stack);
        assert!(log.contains(RESUMED), "the breaker closed by itself: {log}");
    }
}
