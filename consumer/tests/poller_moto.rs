//! The `spillway-poller` binary against the local SQS (moto) and a real PostgreSQL: good
//! messages are stored and deleted, poison ends in the DLQ through the redrive policy, nothing
//! stays in flight, and SIGTERM lets the batch in flight finish.
//!
//! moto is slow (tens of messages per second), so messages carry several events each.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use spillway_support::{run_dir, LocalSqs, Moto, Postgres, Service};

const REGION: &str = "us-east-1";

struct Queues {
    sqs: LocalSqs,
    main: String,
    dlq: String,
}

fn queues(moto: &Moto, name: &str, max_receive: u32) -> Queues {
    let sqs = LocalSqs::new(moto.port(), REGION);
    let dlq = sqs
        .create_queue(&format!("{name}-dlq"), &[])
        .expect("create DLQ");
    let dlq_arn = sqs.attributes(&dlq).expect("attributes")["QueueArn"].clone();
    let redrive =
        json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive.to_string()});
    let main = sqs
        .create_queue(
            name,
            &[
                ("RedrivePolicy", redrive.to_string()),
                // Short, so that failed messages come back (and reach the DLQ) quickly.
                ("VisibilityTimeout", "1".to_owned()),
            ],
        )
        .expect("create queue");
    Queues { sqs, main, dlq }
}

fn poller(pg: &Postgres, moto: &Moto, queue: &str, extra: &[(&str, &str)]) -> Service {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spillway-poller"));
    cmd.env("DATABASE_URL", pg.url())
        .env("SQS_QUEUE_URL", queue)
        .env("SQS_ENDPOINT", moto.endpoint())
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("ENVELOPE_KEYS", spillway_consumer::keys::testing::TEST_KEYS)
        .env("RUST_LOG", "info");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    // Service::spawn appends: a fresh file per poller, so an old run's lines never count.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = run_dir().join(format!(
        "poller-{}-{n}-{}-{}.log",
        std::process::id(),
        moto.port(),
        pg.port()
    ));
    let _ = std::fs::remove_file(&log);
    Service::spawn("poller", cmd, &log).expect("spawn the poller")
}

/// Waits for the process to exit after SIGTERM; returns whether it exited successfully.
async fn exits_within(svc: &mut Service, timeout: Duration) -> Option<bool> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = svc.exited() {
            return Some(status.success());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_reaches_the_dlq_good_is_stored_and_deleted() {
    let pg = migrated_pg().await;
    let moto = Moto::start().expect("moto");
    let q = queues(&moto, "spillway-poller-test", 2);

    // 6 good messages of 20 events, one redelivered copy, three kinds of poison, and two
    // messages the edge did not seal as they are: one unsigned, one altered after sealing.
    for m in 0..6u128 {
        let events: Vec<_> = (m * 20 + 1..=m * 20 + 20).map(event).collect();
        q.sqs.send(&q.main, &body(&events)).expect("send");
    }
    let copy: Vec<_> = (1..=20).map(event).collect();
    q.sqs.send(&q.main, &body(&copy)).expect("send");
    let poison = [
        "this is not JSON".to_owned(),
        r#"{"v":3,"events":[]}"#.to_owned(),
        body(&[event(500), nul_event(501)]),
        r#"{"v":1,"events":[{"id":"00000000-0000-0000-0000-000000000259","type":"t","received_at":"2026-11-28T08:00:00Z","key_id":"victim","data":{}}]}"#.to_owned(),
        body(&[event(602)]).replacen(r#""data":"#, r#""source":"posthog","data":"#, 1),
    ];
    for p in &poison {
        q.sqs.send(&q.main, p).expect("send");
    }

    let mut svc = poller(
        &pg,
        &moto,
        &q.main,
        &[("BATCH_SIZE", "4"), ("MAXIMUM_CONCURRENCY", "2")],
    );
    let done = eventually(Duration::from_secs(90), || {
        stored(&pg) == 120
            && q.sqs.depth(&q.dlq).ok().map(|d| d.0) == Some(5)
            && q.sqs.depth(&q.main).ok() == Some((0, 0))
    })
    .await;
    assert!(
        done,
        "stored {}, DLQ {:?}, queue {:?}\n{}",
        stored(&pg),
        q.sqs.depth(&q.dlq),
        q.sqs.depth(&q.main),
        svc.log_tail(40)
    );
    assert_eq!(count(&pg, "SELECT count(DISTINCT id) FROM events"), 120);
    // The events of the refused message are not stored, not even its good one.
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM events WHERE id = '00000000-0000-0000-0000-0000000001f4'"
        ),
        0
    );
    // Nor the events of the unsigned and the altered message.
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM events WHERE key_id = 'victim' OR source = 'posthog' \
             OR id = '00000000-0000-0000-0000-00000000025a'"
        ),
        0
    );

    // The DLQ holds exactly the poison.
    let mut in_dlq = q.sqs.receive(&q.dlq, 30).expect("receive");
    in_dlq.sort();
    let mut expected = poison.to_vec();
    expected.sort();
    assert_eq!(in_dlq, expected);

    // Database connections = MAXIMUM_CONCURRENCY, at most: one per worker, kept.
    let connections = count(
        &pg,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'spillway-consumer'",
    );
    assert!((1..=2).contains(&connections), "{connections} connections");

    // Long-polling with nothing to do, the poller stops promptly on SIGTERM, successfully.
    svc.signal("TERM");
    let exited = exits_within(&mut svc, Duration::from_secs(10)).await;
    let log = std::fs::read_to_string(svc.log_path()).expect("log");
    assert_eq!(exited, Some(true), "{}", svc.log_tail(20));
    assert!(log.contains("poller stopped"));
    // Every invocation printed an EMF record; the redelivered copy counted as duplicates.
    let emf: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert!(!emf.is_empty());
    let sum = |k: &str| emf.iter().filter_map(|v| v[k].as_u64()).sum::<u64>();
    assert_eq!(sum("EventsStored"), 120);
    // At least the copy's 20. The queue's visibility timeout is 1 s (so that poison comes back
    // quickly); on a busy machine a good message whose write and delete take longer is
    // delivered again, and its 20 events are skipped as duplicates too. Stored once each
    // either way (the distinct count above).
    let duplicates = sum("DuplicatesSkipped");
    assert!(
        duplicates >= 20 && duplicates % 20 == 0,
        "{duplicates} duplicates"
    );
    // Each of the five poison messages failed twice (maxReceiveCount) before moto moved it.
    assert_eq!(sum("RecordsRejected"), 10);
    assert!(emf.iter().all(|v| v["BatchSize"].as_u64() <= Some(4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_batch_in_flight_finish() {
    let pg = migrated_pg().await;
    let moto = Moto::start().expect("moto");
    let q = queues(&moto, "spillway-sigterm-test", 5);
    for m in 0..2u128 {
        let events: Vec<_> = (m * 10 + 1..=m * 10 + 10).map(event).collect();
        q.sqs.send(&q.main, &body(&events)).expect("send");
    }

    // Hold the table, so the poller's write waits while we ask it to stop.
    let locker = deps(&pg.url());
    let mut client = locker.store.open().await.expect("connect");
    let tx = client.transaction().await.expect("begin");
    tx.batch_execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");

    let mut svc = poller(
        &pg,
        &moto,
        &q.main,
        &[
            ("BATCH_SIZE", "10"),
            ("MAXIMUM_CONCURRENCY", "1"),
            // Longer than the test, so the lock cannot make the messages reappear.
            ("VISIBILITY_TIMEOUT_SECONDS", "60"),
        ],
    );
    let waiting = eventually(Duration::from_secs(30), || {
        count(
            &pg,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
               AND application_name = 'spillway-consumer'",
        ) == 1
    })
    .await;
    assert!(waiting, "the poller never wrote: {}", svc.log_tail(30));

    svc.signal("TERM");
    // Wait until the poller has taken the signal in, rather than for a fixed time.
    let asked = eventually(Duration::from_secs(20), || {
        std::fs::read_to_string(svc.log_path())
            .is_ok_and(|l| l.contains("shutdown asked; finishing the batches in flight"))
    })
    .await;
    assert!(asked, "SIGTERM was not seen: {}", svc.log_tail(30));
    assert!(
        svc.exited().is_none(),
        "the poller left with a batch in flight"
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
               AND application_name = 'spillway-consumer'",
        ),
        1,
        "the batch is still waiting for the lock after SIGTERM"
    );
    tx.rollback().await.expect("release the lock");

    let exited = exits_within(&mut svc, Duration::from_secs(15)).await;
    assert_eq!(exited, Some(true), "{}", svc.log_tail(30));
    // The in-flight batch was stored, and deleted before exiting.
    let in_flight_stored = stored(&pg);
    assert!(in_flight_stored > 0, "{}", svc.log_tail(30));
    let (visible, not_visible) = q.sqs.depth(&q.main).expect("depth");
    assert_eq!(not_visible, 0, "nothing left in flight");
    assert_eq!(
        in_flight_stored + visible * 10,
        20,
        "what was not received is still queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batching_window_gathers_across_receives_up_to_the_batch_size() {
    let pg = migrated_pg().await;
    let moto = Moto::start().expect("moto");
    let q = queues(&moto, "spillway-window-test", 5);
    for m in 0..25u128 {
        q.sqs
            .send(&q.main, &body(&[event(2 * m + 1), event(2 * m + 2)]))
            .expect("send");
    }
    let mut svc = poller(
        &pg,
        &moto,
        &q.main,
        &[
            ("BATCH_SIZE", "30"),
            ("MAXIMUM_BATCHING_WINDOW_IN_SECONDS", "2"),
            ("MAXIMUM_CONCURRENCY", "1"),
            // The queue's own (1 s) is shorter than the window; see the next test.
            ("VISIBILITY_TIMEOUT_SECONDS", "30"),
        ],
    );
    let done = eventually(Duration::from_secs(60), || {
        stored(&pg) == 50 && q.sqs.depth(&q.main).ok() == Some((0, 0))
    })
    .await;
    assert!(done, "{}", svc.log_tail(30));
    svc.signal("TERM");
    assert_eq!(
        exits_within(&mut svc, Duration::from_secs(10)).await,
        Some(true)
    );
    let log = std::fs::read_to_string(svc.log_path()).expect("log");
    let sizes: Vec<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .filter_map(|v| v["BatchSize"].as_u64())
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 25, "{sizes:?}");
    // One receive returns at most 10: a first batch above 10 was gathered over the window.
    assert!(sizes[0] > 10, "{sizes:?}");
    assert!(sizes.iter().all(|s| *s <= 30), "{sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_seen_twice_in_one_window_is_handled_once_and_deleted() {
    // The queue's visibility timeout (1 s) is shorter than the window (3 s): messages come
    // back while the batch is still gathering. They must not be handled twice nor left behind.
    let pg = migrated_pg().await;
    let moto = Moto::start().expect("moto");
    let q = queues(&moto, "spillway-twice-test", 10);
    for m in 0..3u128 {
        q.sqs.send(&q.main, &body(&[event(m + 1)])).expect("send");
    }
    let mut svc = poller(
        &pg,
        &moto,
        &q.main,
        &[
            ("BATCH_SIZE", "50"),
            ("MAXIMUM_BATCHING_WINDOW_IN_SECONDS", "3"),
            ("MAXIMUM_CONCURRENCY", "1"),
        ],
    );
    let done = eventually(Duration::from_secs(60), || {
        stored(&pg) == 3 && q.sqs.depth(&q.main).ok() == Some((0, 0))
    })
    .await;
    assert!(done, "{}", svc.log_tail(30));
    svc.signal("TERM");
    assert_eq!(
        exits_within(&mut svc, Duration::from_secs(10)).await,
        Some(true)
    );
    let log = std::fs::read_to_string(svc.log_path()).expect("log");
    assert!(
        log.contains("message received twice while gathering"),
        "{log}"
    );
    let sizes: Vec<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .filter_map(|v| v["BatchSize"].as_u64())
        .collect();
    assert_eq!(sizes, [3], "each message once in the one batch");
}

async fn sdk_client(moto: &Moto) -> aws_sdk_sqs::Client {
    let creds = aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests");
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(creds)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// Records what the poller builds from messages really received from the local SQS, checks it
/// against Lambda's documented shape, and runs the handler on it. With
/// `SPILLWAY_RECORD_FIXTURES=1` it rewrites `tests/fixtures/sqs/moto_recorded.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_built_from_received_messages_have_lambdas_shape() {
    use spillway_consumer::tools::poller::{queue_info, sqs_event};
    let pg = migrated_pg().await;
    let moto = Moto::start().expect("moto");
    let q = queues(&moto, "spillway-events", 3);
    q.sqs
        .send(&q.main, &body(&[event(1), event(2)]))
        .expect("send");
    q.sqs.send(&q.main, "not an envelope").expect("send");
    let client = sdk_client(&moto).await;
    let queue = queue_info(&client, &q.main, REGION).await.expect("queue");
    assert_eq!(
        queue.arn,
        "arn:aws:sqs:us-east-1:123456789012:spillway-events"
    );
    assert_eq!(queue.visibility_timeout, Some(1));
    let mut messages = Vec::new();
    while messages.len() < 2 {
        let out = client
            .receive_message()
            .queue_url(&q.main)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(30)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        messages.extend(out.messages.unwrap_or_default());
    }
    let event = sqs_event(&messages, &queue);
    let json = serde_json::to_value(&event).expect("serialise");
    for record in json["Records"].as_array().expect("records") {
        for key in [
            "ApproximateReceiveCount",
            "SentTimestamp",
            "SenderId",
            "ApproximateFirstReceiveTimestamp",
        ] {
            assert!(
                record["attributes"][key].is_string(),
                "{key} missing: {record}"
            );
        }
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], queue.arn.as_str());
        assert_eq!(record["awsRegion"], REGION);
        assert!(record["md5OfBody"].is_string());
        assert!(record["messageAttributes"].is_object());
    }
    let d = deps(&pg.url());
    let o = spillway_consumer::handler::handle(&d, &event, "recorded").await;
    assert_eq!(o.metrics.events_stored, 2);
    assert_eq!(o.response.batch_item_failures.len(), 1);
    assert!(o.metrics.queue_lag_ms.is_some());
    if std::env::var_os("SPILLWAY_RECORD_FIXTURES").is_some() {
        let text = serde_json::to_string_pretty(&json).expect("json") + "\n";
        std::fs::write(fixture("moto_recorded.json"), text).expect("write fixture");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_or_bad_setting_stops_the_poller_at_start() {
    let pg = Postgres::start().expect("pg");
    let moto = Moto::start().expect("moto");
    let missing = format!("{}/123456789012/no-such-queue", moto.endpoint());
    let mut svc = poller(&pg, &moto, &missing, &[]);
    assert_eq!(
        exits_within(&mut svc, Duration::from_secs(20)).await,
        Some(false)
    );
    let log = std::fs::read_to_string(svc.log_path()).expect("log");
    assert!(log.contains("no-such-queue"), "{log}");

    let mut svc = poller(&pg, &moto, &missing, &[("BATCH_SIZE", "11")]);
    assert_eq!(
        exits_within(&mut svc, Duration::from_secs(10)).await,
        Some(false)
    );
    let log = std::fs::read_to_string(svc.log_path()).expect("log");
    assert!(log.contains("MAXIMUM_BATCHING_WINDOW_IN_SECONDS"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_rides_out_a_database_outage() {
    let pg = migrated_pg().await;
    pg.stop().expect("stop");
    let moto = Moto::start().expect("moto");
    // Retries are expected: a high maxReceiveCount keeps good messages out of the DLQ.
    let q = queues(&moto, "spillway-outage-test", 100);
    for m in 0..4u128 {
        let events: Vec<_> = (m * 10 + 1..=m * 10 + 10).map(event).collect();
        q.sqs.send(&q.main, &body(&events)).expect("send");
    }
    let mut svc = poller(&pg, &moto, &q.main, &[("DB_CONNECT_TIMEOUT_MS", "1000")]);
    // While the database is down, batches fail and nothing is deleted.
    let failing = eventually(Duration::from_secs(30), || {
        std::fs::read_to_string(svc.log_path())
            .is_ok_and(|l| l.contains("batch not stored, every record will be retried"))
    })
    .await;
    assert!(failing, "{}", svc.log_tail(30));
    assert!(svc.exited().is_none(), "the poller must keep running");
    let (visible, in_flight) = q.sqs.depth(&q.main).expect("depth");
    assert_eq!(
        visible + in_flight,
        4,
        "nothing deleted while the database is down"
    );

    pg.start_again().expect("start again");
    let done = eventually(Duration::from_secs(60), || {
        stored(&pg) == 40 && q.sqs.depth(&q.main).ok() == Some((0, 0))
    })
    .await;
    assert!(done, "stored {}: {}", stored(&pg), svc.log_tail(30));
    assert_eq!(q.sqs.depth(&q.dlq).expect("dlq").0, 0);
    svc.signal("TERM");
    assert_eq!(
        exits_within(&mut svc, Duration::from_secs(10)).await,
        Some(true)
    );
}

/// The fields of the poller's final log line.
fn stop_fields(log: &str) -> serde_json::Value {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "poller stopped")
        .map(|v| v["fields"].clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_a_batch_received_ahead_back_to_the_queue() {
    let pg = migrated_pg().await;
    let moto = Moto::start().expect("moto");
    let q = queues(&moto, "spillway-ahead-stop-test", 5);
    for m in 0..3u128 {
        let events: Vec<_> = (m * 10 + 1..=m * 10 + 10).map(event).collect();
        q.sqs.send(&q.main, &body(&events)).expect("send");
    }
    // Hold the table: the first batch's write waits while the next one is received beside it.
    let locker = deps(&pg.url());
    let mut client = locker.store.open().await.expect("connect");
    let tx = client.transaction().await.expect("begin");
    tx.batch_execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let mut svc = poller(
        &pg,
        &moto,
        &q.main,
        &[
            ("BATCH_SIZE", "1"),
            ("MAXIMUM_CONCURRENCY", "1"),
            // Far longer than the test: a message back in the queue before its end was given
            // back, not timed out.
            ("VISIBILITY_TIMEOUT_SECONDS", "300"),
        ],
    );
    let ahead = eventually(Duration::from_secs(30), || {
        count(
            &pg,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
               AND application_name = 'spillway-consumer'",
        ) == 1
            && q.sqs.depth(&q.main).ok() == Some((1, 2))
    })
    .await;
    assert!(
        ahead,
        "no batch received ahead of the blocked one: {:?}\n{}",
        q.sqs.depth(&q.main),
        svc.log_tail(30)
    );
    svc.signal("TERM");
    let asked = eventually(Duration::from_secs(20), || {
        std::fs::read_to_string(svc.log_path())
            .is_ok_and(|l| l.contains("shutdown asked; finishing the batches in flight"))
    })
    .await;
    assert!(asked, "SIGTERM was not seen: {}", svc.log_tail(30));
    tx.rollback().await.expect("release the lock");
    let exited = exits_within(&mut svc, Duration::from_secs(15)).await;
    assert_eq!(exited, Some(true), "{}", svc.log_tail(30));
    // The batch in flight was stored and deleted; the one received ahead was not handled and
    // is visible again at once; the third was never received.
    assert_eq!(stored(&pg), 10, "{}", svc.log_tail(30));
    assert_eq!(q.sqs.depth(&q.main).expect("depth"), (2, 0));
    let log = std::fs::read_to_string(svc.log_path()).expect("log");
    let fields = stop_fields(&log);
    assert_eq!(fields["invocations"], 1, "{fields}");
    assert_eq!(fields["released"], 1, "{fields}");
    assert_eq!(fields["deleted"], 1, "{fields}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_failing_beside_a_batch_received_ahead_is_redelivered_and_stored_once() {
    let pg = migrated_pg().await;
    let moto = Moto::start().expect("moto");
    let q = queues(&moto, "spillway-ahead-partial-test", 10);
    // The database refuses event 25 (as data, SQLSTATE 23514) while `refuse` holds it: its
    // message fails alone (the handler isolates it), its neighbours are stored.
    pg.psql(
        "CREATE TABLE refuse (id uuid PRIMARY KEY);
         INSERT INTO refuse VALUES ('00000000-0000-0000-0000-000000000019');
         CREATE FUNCTION refuse_listed() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF EXISTS (SELECT 1 FROM refuse WHERE id = NEW.id) THEN
             RAISE EXCEPTION 'refused by the test' USING ERRCODE = '23514';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_listed BEFORE INSERT ON events
           FOR EACH ROW EXECUTE FUNCTION refuse_listed();",
    )
    .expect("the refusing trigger");
    for m in 0..8u128 {
        let events: Vec<_> = (m * 10 + 1..=m * 10 + 10).map(event).collect();
        q.sqs.send(&q.main, &body(&events)).expect("send");
    }
    let mut svc = poller(
        &pg,
        &moto,
        &q.main,
        &[
            ("BATCH_SIZE", "3"),
            ("MAXIMUM_CONCURRENCY", "1"),
            // Short, so the failed message comes back soon; a batch received ahead waits at most
            // half of it (1.5 s).
            ("VISIBILITY_TIMEOUT_SECONDS", "3"),
        ],
    );
    let refused = eventually(Duration::from_secs(60), || {
        stored(&pg) == 70
            && std::fs::read_to_string(svc.log_path())
                .is_ok_and(|l| l.contains("record refused by the database"))
    })
    .await;
    assert!(refused, "stored {}: {}", stored(&pg), svc.log_tail(30));
    // Its failure was reported alone: nothing of it is stored, nothing of the rest is missing.
    assert_eq!(
        count(&pg, "SELECT count(*) FROM events WHERE id BETWEEN '00000000-0000-0000-0000-000000000015' AND '00000000-0000-0000-0000-00000000001e'"),
        0
    );
    pg.psql("DELETE FROM refuse").expect("accept it now");
    let done = eventually(Duration::from_secs(60), || {
        stored(&pg) == 80 && q.sqs.depth(&q.main).ok() == Some((0, 0))
    })
    .await;
    assert!(done, "stored {}: {}", stored(&pg), svc.log_tail(30));
    assert_eq!(q.sqs.depth(&q.dlq).expect("dlq").0, 0);
    svc.signal("TERM");
    assert_eq!(
        exits_within(&mut svc, Duration::from_secs(10)).await,
        Some(true)
    );
    let log = std::fs::read_to_string(svc.log_path()).expect("log");
    let emf: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    let sum = |k: &str| emf.iter().filter_map(|v| v[k].as_u64()).sum::<u64>();
    // Each event written once over all invocations, the failed message's ten on its
    // redelivery. A message delivered again anyway (a busy machine outlasting the 3 s) adds
    // only whole messages of duplicates, never a row.
    assert_eq!(sum("EventsStored"), 80, "{log}");
    assert_eq!(sum("DuplicatesSkipped") % 10, 0, "{log}");
    let fields = stop_fields(&log);
    assert!(
        fields["received_ahead"].as_u64() >= Some(1),
        "the next batch was never received beside an invocation: {fields}"
    );
    assert!(fields["failed"].as_u64() >= Some(1), "{fields}");
}
