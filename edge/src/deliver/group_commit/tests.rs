use std::rc::Rc;
use std::time::Duration;

use futures_util::future::join_all;
use spillway_shared::{encode_events, open, BufferLimits, EncodedEvent, Event, RawJson};
use uuid::Uuid;

use super::*;
use crate::buffer::{CallOutcome, FailedEntry, SendError, SendReport, Shared};
use crate::config::RetryPolicy;
use crate::ports::Runtime;
use crate::testkit::{FakeQueue, FakeRuntime, Reply};

const WINDOW_MS: u64 = 20;

fn settings(limits: BufferLimits, fifo: bool) -> BatcherSettings {
    BatcherSettings {
        window: Duration::from_millis(WINDOW_MS),
        limits,
        retry: RetryPolicy {
            deadline: Duration::from_millis(2_000),
            base: Duration::from_millis(50),
            max: Duration::from_millis(400),
            concurrency: 6,
        },
        by_group: fifo,
        envelope_key: crate::testkit::envelope_key(),
    }
}

/// Real events of request `n` (`count` of them), encoded as the edge encodes them.
fn events(n: u128, count: u128) -> Vec<EncodedEvent> {
    let events: Vec<Event> = (0..count)
        .map(|i| Event {
            id: Uuid::from_u128(n * 1_000 + i + 1),
            event_type: "page_view".into(),
            occurred_at: None,
            received_at: chrono::DateTime::from_timestamp_millis(1_764_316_800_123).expect("time"),
            event_time: None,
            key_id: format!("key{}", n % 2),
            edge: None,
            source: Default::default(),
            // A raw line break inside the client's text: the wire must carry it as is.
            data: RawJson::from_json(&format!("{{\"request\":{n},\n\"i\":{i}}}")).expect("json"),
        })
        .collect();
    encode_events(&events, &BufferLimits::default()).expect("encodes")
}

fn submission(n: u128, count: u128, wait_ms: u64) -> Submission {
    Submission {
        group: format!("key{}", n % 2),
        wait_ms,
        direct: 0,
        waited_ms: 0,
        events: events(n, count),
    }
}

fn ids(s: &Submission) -> Vec<Uuid> {
    s.events.iter().map(|e| e.id).collect()
}

/// BufferLimits under which a message holds about two of the test events.
fn two_per_message() -> BufferLimits {
    let one = events(0, 1)[0].text.len();
    BufferLimits {
        // Two events, their comma and the sealed envelope around them, with room to spare
        // but not for a third.
        bytes_per_entry: 2 * one + 1 + spillway_shared::envelope::WRAPPER_MAX + 20,
        ..BufferLimits::default()
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_share_one_call_and_each_hears_its_own_answer() {
    let batcher = Batcher::new(
        FakeQueue::new(vec![]),
        FakeRuntime::new(),
        settings(BufferLimits::default(), false),
    );
    let subs: Vec<Submission> = (0..25).map(|n| submission(n, 1, 2_000)).collect();
    let all: Vec<Uuid> = subs.iter().flat_map(ids).collect();
    let reports = join_all(subs.into_iter().map(|s| batcher.submit(s))).await;
    for v in &reports {
        assert!(v.unacknowledged.is_empty(), "{v:?}");
        assert_eq!((v.shared.requests, v.shared.events, v.calls), (25, 25, 1));
    }
    let q = batcher.queue();
    assert_eq!(q.calls().len(), 1, "one SendMessageBatch for 25 requests");
    // Every event is in the call once, with its own id; bodies are valid envelopes.
    let mut sent: Vec<Uuid> = q
        .bodies()
        .iter()
        .flat_map(|b| open(b, &crate::testkit::envelope_keyring()).expect("sealed envelope"))
        .map(|e| e.id)
        .collect();
    sent.sort();
    let mut want = all;
    want.sort();
    assert_eq!(sent, want);
    assert_eq!(
        batcher.runtime().sleeps(),
        vec![WINDOW_MS],
        "sent after one window"
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_keeps_every_events_own_key_id() {
    let batcher = Batcher::new(
        FakeQueue::new(vec![]),
        FakeRuntime::new(),
        settings(BufferLimits::default(), false),
    );
    join_all((0..4).map(|n| batcher.submit(submission(n, 2, 2_000)))).await;
    let events: Vec<Event> = batcher
        .queue()
        .bodies()
        .iter()
        .flat_map(|b| open(b, &crate::testkit::envelope_keyring()).expect("sealed envelope"))
        .collect();
    assert_eq!(events.len(), 8);
    for e in events {
        let request = (e.id.as_u128() - 1) / 1_000;
        assert_eq!(e.key_id, format!("key{}", request % 2), "{e:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_is_sent_before_the_window_ends() {
    // Two events per message, ten messages per call: 20 events fill a call.
    let batcher = Batcher::new(
        FakeQueue::new(vec![]),
        FakeRuntime::new(),
        settings(two_per_message(), false),
    );
    let started = batcher.runtime().now_ms();
    let reports = join_all((0..21).map(|n| batcher.submit(submission(n, 1, 2_000)))).await;
    let calls = batcher.queue().calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].len(), 10, "the first call is full");
    assert_eq!(calls[1].len(), 1);
    assert!(reports.iter().all(|v| v.unacknowledged.is_empty()));
    assert_eq!(reports[0].shared.events, 20);
    assert_eq!(reports[20].shared.events, 1);
    // The full batch did not wait: only the last one (one event) waited a window.
    assert_eq!(batcher.runtime().now_ms() - started, WINDOW_MS);
}

#[tokio::test(start_paused = true)]
async fn a_request_too_big_for_one_call_is_sent_at_once_on_its_own() {
    let batcher = Batcher::new(
        FakeQueue::new(vec![]),
        FakeRuntime::new(),
        settings(two_per_message(), false),
    );
    let started = batcher.runtime().now_ms();
    let v = batcher.submit(submission(1, 30, 2_000)).await;
    assert!(v.unacknowledged.is_empty());
    assert_eq!((v.shared.requests, v.shared.events, v.calls), (1, 30, 2));
    assert_eq!(batcher.runtime().now_ms(), started, "no window for it");
}

#[tokio::test(start_paused = true)]
async fn a_failed_entry_fails_only_the_requests_whose_events_it_held() {
    // m1 holds the events of requests 2 and 3 (two per message, in arrival order); SQS
    // refuses it for good.
    let q = FakeQueue::new(vec![Reply::Outcome(CallOutcome {
        failed: vec![FailedEntry {
            position: 1,
            retryable: false,
            code: "InvalidMessageContents".into(),
        }],
    })]);
    let batcher = Batcher::new(q, FakeRuntime::new(), settings(two_per_message(), false));
    let subs: Vec<Submission> = (0..6).map(|n| submission(n, 1, 2_000)).collect();
    let want: Vec<Vec<Uuid>> = subs.iter().map(ids).collect();
    let reports = join_all(subs.into_iter().map(|s| batcher.submit(s))).await;
    for (n, v) in reports.iter().enumerate() {
        if n == 2 || n == 3 {
            assert_eq!(v.unacknowledged, want[n]);
            assert!(v.rejected && !v.timed_out);
            assert!(v
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("InvalidMessage"));
        } else {
            assert!(v.unacknowledged.is_empty(), "request {n}: {v:?}");
            assert!(!v.rejected);
        }
    }
    assert_eq!(batcher.queue().calls().len(), 1, "nothing retried");
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_are_resent_for_everyone_in_the_batch() {
    let q = FakeQueue::new(vec![
        Reply::Error(SendError::Transient("HTTP 500".into())),
        Reply::Outcome(CallOutcome {
            failed: vec![FailedEntry {
                position: 0,
                retryable: true,
                code: "InternalError".into(),
            }],
        }),
    ]);
    let batcher = Batcher::new(q, FakeRuntime::new(), settings(two_per_message(), false));
    let reports = join_all((0..4).map(|n| batcher.submit(submission(n, 1, 2_000)))).await;
    assert!(
        reports.iter().all(|v| v.unacknowledged.is_empty()),
        "{reports:?}"
    );
    let calls = batcher.queue().calls();
    assert_eq!(calls, vec![vec!["m0", "m1"], vec!["m0", "m1"], vec!["m0"]]);
    assert_eq!((reports[0].calls, reports[0].retries), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn nobody_waits_past_the_earliest_deadline_in_the_batch() {
    let batcher = Batcher::new(
        FakeQueue::always(Reply::Hang),
        FakeRuntime::new(),
        settings(BufferLimits::default(), false),
    );
    let started = batcher.runtime().now_ms();
    let subs = vec![submission(1, 1, 500), submission(2, 1, 3_000)];
    let want: Vec<Vec<Uuid>> = subs.iter().map(ids).collect();
    let reports = join_all(subs.into_iter().map(|s| batcher.submit(s))).await;
    for (v, want) in reports.iter().zip(&want) {
        assert_eq!(&v.unacknowledged, want);
        assert!(v.timed_out);
    }
    assert_eq!(batcher.runtime().now_ms() - started, 500);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_shorter_than_the_window_cuts_the_wait() {
    let batcher = Batcher::new(
        FakeQueue::new(vec![]),
        FakeRuntime::new(),
        settings(BufferLimits::default(), false),
    );
    let started = batcher.runtime().now_ms();
    let v = batcher.submit(submission(1, 1, 5)).await;
    // The window would end after the deadline: the batch went at the deadline, too late.
    assert!(v.timed_out && !v.unacknowledged.is_empty(), "{v:?}");
    assert_eq!(batcher.runtime().now_ms() - started, 5);
    assert!(batcher.queue().calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn fifo_queues_batch_each_message_group_on_its_own() {
    let batcher = Batcher::new(
        FakeQueue::new(vec![]),
        FakeRuntime::new(),
        settings(BufferLimits::default(), true),
    );
    let reports = join_all((0..6).map(|n| batcher.submit(submission(n, 1, 2_000)))).await;
    assert!(reports
        .iter()
        .all(|v| v.unacknowledged.is_empty() && v.shared.requests == 3));
    let mut groups = batcher.queue().groups();
    groups.sort();
    assert_eq!(groups, vec!["key0", "key1"]);
}

#[tokio::test(start_paused = true)]
async fn a_request_arriving_while_a_batch_is_sent_opens_the_next_one() {
    let batcher = Rc::new(Batcher::new(
        FakeQueue::new(vec![]).with_latency_ms(30),
        FakeRuntime::new(),
        settings(BufferLimits::default(), false),
    ));
    let b = batcher.clone();
    let first = tokio::task::LocalSet::new();
    let reports = first
        .run_until(async move {
            let early = tokio::task::spawn_local({
                let b = b.clone();
                async move { b.submit(submission(1, 1, 2_000)).await }
            });
            // After the first window, while its call is on the wire (30 ms).
            tokio::time::sleep(Duration::from_millis(WINDOW_MS + 5)).await;
            let late = b.submit(submission(2, 1, 2_000)).await;
            (early.await.expect("task"), late)
        })
        .await;
    assert_eq!(
        (reports.0.shared.requests, reports.1.shared.requests),
        (1, 1)
    );
    assert_eq!(batcher.queue().calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn each_flush_is_logged_by_its_leader_and_every_answer_carries_advice() {
    let batcher = Batcher::new(
        FakeQueue::new(vec![]),
        FakeRuntime::new(),
        settings(BufferLimits::default(), false),
    );
    let mut subs: Vec<Submission> = (0..3).map(|n| submission(n, 1, 2_000)).collect();
    // The first request's isolate sent 5 directly since it last asked.
    subs[0].direct = 5;
    let answered = join_all(subs.into_iter().map(|s| batcher.answer(s))).await;
    let flushes: Vec<FlushLog> = answered.iter().filter_map(|a| a.flush).collect();
    // Active from the first arrival to the end of the send: the window (the fake SQS answers
    // at once).
    assert_eq!(
        flushes,
        vec![FlushLog {
            requests: 3,
            // Each request its own Durable Object request: three.
            calls: 3,
            events: 3,
            active_ms: WINDOW_MS,
        }]
    );
    let line: serde_json::Value = serde_json::from_str(&flushes[0].to_json()).expect("JSON");
    assert_eq!(
        line,
        serde_json::json!({"kind": "batch", "requests": 3, "calls": 3, "events": 3, "active_ms": WINDOW_MS})
    );
    for a in &answered {
        assert!(a.answer.report.unacknowledged.is_empty());
        let advice = a.answer.advice.expect("advice");
        assert_eq!(advice.per_flush, 3.0);
        assert_eq!(advice.active_ms, WINDOW_MS as f64);
        // 8 arrivals (3 here, 5 reported) 20 ms ago, each 1 / 2 s.
        assert!(
            (advice.rps - 4.0 * (-0.01f64).exp()).abs() < 1e-9,
            "{}",
            advice.rps
        );
    }
    // On the wire, and from a batcher that gives no advice (an older build).
    let a = &answered[0].answer;
    let back = decode_answer(&encode_answer(a)).expect("decodes");
    assert_eq!(back.report, a.report);
    let (sent, got) = (a.advice.expect("advice"), back.advice.expect("advice"));
    // JSON keeps a float to about its last digit.
    assert_eq!(
        (got.per_flush, got.active_ms),
        (sent.per_flush, sent.active_ms)
    );
    assert!((got.rps - sent.rps).abs() < 1e-12);
    let old = decode_answer(&encode_report(&a.report)).expect("a report alone decodes");
    assert_eq!((old.report, old.advice), (a.report.clone(), None));
    // A submission reporting direct requests crosses the wire with them.
    let s = Submission {
        direct: 7,
        ..submission(1, 1, 100)
    };
    let bytes = encode_submission_reporting(&s.group, s.wait_ms, s.direct, &s.events);
    assert_eq!(decode_submission(&bytes).expect("decodes"), s);
}

#[test]
fn submissions_cross_the_wire_unchanged() {
    let s = submission(7, 3, 1_234);
    let bytes = encode_submission(&s.group, s.wait_ms, &s.events);
    assert_eq!(decode_submission(&bytes).expect("decodes"), s);
    let v = SendReport {
        unacknowledged: ids(&s),
        rejected: true,
        timed_out: false,
        last_error: Some("entry rejected: X".into()),
        shared: Shared {
            requests: 3,
            events: 9,
        },
        calls: 2,
        retries: 1,
    };
    assert_eq!(decode_report(&encode_report(&v)).expect("decodes"), v);
}

#[test]
fn a_damaged_submission_is_refused() {
    let s = submission(7, 2, 1_000);
    let bytes = encode_submission(&s.group, s.wait_ms, &s.events);
    assert_eq!(decode_submission(b"no header"), Err(WireError::NoHeader));
    assert_eq!(
        decode_submission(&bytes[..bytes.len() - 1]),
        Err(WireError::Sizes)
    );
    let mut longer = bytes.clone();
    longer.push(b' ');
    assert_eq!(decode_submission(&longer), Err(WireError::Sizes));
    let text = String::from_utf8(bytes).expect("utf-8");
    let v2 = text.replacen("{\"v\":1,", "{\"v\":2,", 1);
    assert_eq!(decode_submission(v2.as_bytes()), Err(WireError::Version(2)));
    assert!(matches!(
        decode_submission(b"{\"v\":1}\n"),
        Err(WireError::Header(_))
    ));
    assert!(decode_report(b"<html>").is_err());
}

#[test]
fn batchers_are_named_by_location_and_shard() {
    assert_eq!(batcher_name(Some("FRA"), "ray-1", 1), "FRA/0");
    assert_eq!(batcher_name(None, "ray-1", 1), "local/0");
    // Stable, and spread over every shard.
    assert_eq!(
        batcher_name(Some("FRA"), "ray-1", 8),
        batcher_name(Some("FRA"), "ray-1", 8)
    );
    let shards: std::collections::HashSet<String> = (0..200)
        .map(|i| batcher_name(Some("FRA"), &format!("ray-{i}"), 8))
        .collect();
    assert_eq!(shards.len(), 8, "{shards:?}");
    assert!(shards.iter().all(|s| s.starts_with("FRA/")));
    assert_eq!(
        batcher_name(Some("FRA"), "x", 0),
        "FRA/0",
        "0 shards means one"
    );
}

#[test]
fn a_size_that_cuts_a_character_is_refused() {
    let e = EncodedEvent {
        id: Uuid::from_u128(1),
        text: r#"{"data":"é"}"#.into(),
    };
    let good = encode_submission("g", 10, &[e.clone(), e]);
    let text = String::from_utf8(good).expect("utf-8");
    // Sizes 13 and 13 become 10 and 16: the first event would end inside "é".
    let cut = text.replacen("\"sizes\":[13,13]", "\"sizes\":[10,16]", 1);
    assert_ne!(cut, text, "the header has the sizes expected");
    assert_eq!(decode_submission(cut.as_bytes()), Err(WireError::Sizes));
}

// ---------------------------------------------------------------- with the Kinesis buffer

/// A group commit over the real Kinesis sender (canned endpoint, every record stored).
fn kinesis_batcher(
    partition_key: &str,
) -> (
    Batcher<crate::buffer::kinesis::KinesisSender, FakeRuntime>,
    crate::testkit::CannedSqs,
) {
    use crate::testkit::{all_recorded, Answer, CannedSqs, KINESIS_ENV};
    fn random() -> [u8; 16] {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(1);
        u128::from(N.fetch_add(1, Ordering::Relaxed)).to_le_bytes()
    }
    let mut overrides = KINESIS_ENV.to_vec();
    overrides.push(("KINESIS_PARTITION_KEY", partition_key));
    // Off by default with Kinesis (it never pays there): these test the batcher itself.
    overrides.push(("BATCH_WINDOW_MS", "20"));
    let config = crate::config::tests::config_with(&overrides).expect("valid");
    let canned = CannedSqs::new(|parts| Answer::Http(200, all_recorded(parts, &[])));
    let batcher = Batcher::new(
        canned.kinesis_sender(&config, random),
        FakeRuntime::new(),
        BatcherSettings::from_config(&config),
    );
    (batcher, canned)
}

fn partition_keys_per_call(canned: &crate::testkit::CannedSqs) -> Vec<Vec<String>> {
    canned
        .sent()
        .iter()
        .map(|p| {
            crate::testkit::recorded_data(p)
                .into_iter()
                .map(|r| r.1)
                .collect()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn kinesis_by_key_id_batches_each_key_on_its_own_under_its_key() {
    let (batcher, canned) = kinesis_batcher("key_id");
    let reports = join_all((0..6).map(|n| batcher.submit(submission(n, 1, 2_000)))).await;
    assert!(reports
        .iter()
        .all(|v| v.unacknowledged.is_empty() && v.shared.requests == 3));
    let mut keys: Vec<Vec<String>> = partition_keys_per_call(&canned);
    keys.sort();
    assert_eq!(keys, vec![vec!["key0".to_owned()], vec!["key1".to_owned()]]);
}

#[tokio::test(start_paused = true)]
async fn kinesis_by_request_shares_one_call_under_random_keys() {
    let (batcher, canned) = kinesis_batcher("request");
    let reports = join_all((0..6).map(|n| batcher.submit(submission(n, 1, 2_000)))).await;
    assert!(reports
        .iter()
        .all(|v| v.unacknowledged.is_empty() && v.shared.requests == 6));
    let keys = partition_keys_per_call(&canned);
    assert_eq!(keys.len(), 1, "one PutRecords for the six requests");
    assert!(keys[0]
        .iter()
        .all(|k| k.len() == 32 && !k.starts_with("key")));
}
