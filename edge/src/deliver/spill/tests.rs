//! The spill's pure parts: the breaker, the packing of spill messages, and the replay.

use std::time::Duration;

use proptest::prelude::*;
use spillway_shared::{BufferLimits, EncodedEvent};
use uuid::Uuid;

use super::*;
use crate::config::RetryPolicy;
use crate::ports::Runtime;
use crate::testkit::{envelope_key, FakeQueue, FakeRuntime, Reply};

fn settings() -> BreakerSettings {
    BreakerSettings {
        failures: 3,
        open_first: Duration::from_secs(1),
        open_max: Duration::from_secs(8),
        probe_timeout: Duration::from_secs(5),
    }
}

#[test]
fn breaker_opens_after_repeated_failures_and_probes_later() {
    let mut b = Breaker::new(settings());
    for t in [0, 10] {
        assert_eq!(b.path(t), Path::Buffer);
        b.record(Path::Buffer, false, t);
        assert!(!b.is_open(), "two failures keep it closed");
    }
    assert_eq!(b.path(20), Path::Buffer);
    b.record(Path::Buffer, false, 20);
    assert!(b.is_open());
    assert_eq!(b.path(500), Path::Spill);
    assert_eq!(b.path(1_019), Path::Spill);
    // Open for 1 s: then one probe, the others keep spilling.
    assert_eq!(b.path(1_020), Path::Probe);
    assert_eq!(b.path(1_021), Path::Spill);
    assert_eq!(b.path(1_500), Path::Spill);
    b.record(Path::Probe, true, 1_600);
    assert!(!b.is_open());
    assert_eq!(b.path(1_601), Path::Buffer);
}

#[test]
fn a_success_between_failures_resets_the_count() {
    let mut b = Breaker::new(settings());
    b.record(Path::Buffer, false, 0);
    b.record(Path::Buffer, false, 1);
    b.record(Path::Buffer, true, 2);
    b.record(Path::Buffer, false, 3);
    b.record(Path::Buffer, false, 4);
    assert!(!b.is_open());
    b.record(Path::Buffer, false, 5);
    assert!(b.is_open());
}

#[test]
fn failed_probes_double_the_interval_up_to_the_cap() {
    let mut b = Breaker::new(settings());
    for t in 0..3 {
        b.record(Path::Buffer, false, t);
    }
    let mut now = 2;
    let mut intervals = Vec::new();
    for _ in 0..6 {
        // Find the probe: the first moment the breaker lets one through.
        let opened = now;
        while b.path(now) != Path::Probe {
            now += 1;
        }
        intervals.push(now - opened);
        b.record(Path::Probe, false, now);
    }
    assert_eq!(intervals, vec![1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
}

#[test]
fn a_probe_that_never_reports_is_replaced() {
    let mut b = Breaker::new(settings());
    for t in 0..3 {
        b.record(Path::Buffer, false, t);
    }
    assert_eq!(b.path(1_002), Path::Probe);
    assert_eq!(b.path(6_001), Path::Spill);
    assert_eq!(
        b.path(6_002),
        Path::Probe,
        "5 s without news: another probe"
    );
}

#[test]
fn late_failures_of_earlier_requests_do_not_extend_the_outage() {
    let mut b = Breaker::new(settings());
    for t in 0..3 {
        b.record(Path::Buffer, false, t);
    }
    // Requests that went to SQS before it opened fail later: still open for 1 s from t=2.
    b.record(Path::Buffer, false, 900);
    assert_eq!(b.path(1_002), Path::Probe);
    // A late success of such a request closes it: SQS took something.
    b.record(Path::Buffer, true, 1_100);
    assert_eq!(b.path(1_101), Path::Buffer);
}

#[test]
fn the_spill_keeps_a_quarter_of_the_deadline_at_most_two_seconds() {
    assert_eq!(
        spill_reserve(Duration::from_millis(8_000)),
        Duration::from_millis(2_000)
    );
    assert_eq!(
        spill_reserve(Duration::from_millis(1_500)),
        Duration::from_millis(375)
    );
    assert_eq!(
        spill_reserve(Duration::from_secs(60)),
        Duration::from_millis(2_000)
    );
}

fn event(n: usize, size: usize) -> EncodedEvent {
    let id = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + n as u128);
    let pad = "x".repeat(size.saturating_sub(60));
    EncodedEvent {
        id,
        text: format!(r#"{{"id":"{id}","type":"t","data":{{"p":"{pad}"}}}}"#),
    }
}

#[test]
fn spill_messages_round_trip_with_ids_and_texts_unchanged() {
    let events: Vec<EncodedEvent> = (0..5).map(|n| event(n, 200)).collect();
    let batches = pack_spill(&events, "web").expect("packs");
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].len(), 1, "five small events, one message");
    let back = decode_spill(&batches[0][0]).expect("decodes");
    assert_eq!(back.key_id, "web");
    assert_eq!(back.events, events);
}

#[test]
fn events_with_line_breaks_and_unicode_survive() {
    let id = Uuid::from_u128(7);
    let e = EncodedEvent {
        id,
        text: format!(r#"{{"id":"{id}","data":{{"s":"a\nb \u2028 é 😀"}}}}"#),
    };
    let batches = pack_spill(std::slice::from_ref(&e), "k.1").expect("packs");
    assert_eq!(
        decode_spill(&batches[0][0]).expect("decodes").events,
        vec![e]
    );
}

#[test]
fn big_requests_fill_messages_and_batches_within_the_queue_limits() {
    // 1,000 events of 60 KB: far past one message and one sendBatch.
    let events: Vec<EncodedEvent> = (0..1_000).map(|n| event(n, 60_000)).collect();
    let batches = pack_spill(&events, "web").expect("packs");
    let mut seen = Vec::new();
    for batch in &batches {
        assert!(batch.len() <= BATCH_MESSAGES);
        let bytes: usize = batch.iter().map(|m| m.len() + MESSAGE_OVERHEAD_BYTES).sum();
        assert!(bytes <= BATCH_BYTES, "{bytes}");
        for m in batch {
            assert!(m.len() <= MESSAGE_BYTES, "{}", m.len());
            seen.extend(decode_spill(m).expect("decodes").events);
        }
    }
    assert_eq!(seen, events, "every event once, in order");
    // Two 60 KB events per message, about four messages per call.
    assert!(batches.len() >= 100, "{}", batches.len());
}

#[test]
fn an_event_too_big_for_a_message_is_refused() {
    let events = vec![event(0, 10), event(1, MESSAGE_BYTES)];
    assert!(matches!(
        pack_spill(&events, "web"),
        Err(SpillPackError::EventTooLarge { id, .. }) if id == events[1].id
    ));
}

#[test]
fn damaged_messages_are_refused() {
    for bad in [
        "",
        "not json",
        r#"{"v":2,"key_id":"web","events":[]}"#,
        r#"{"v":1,"key_id":"web","events":[]}"#,
        r#"{"v":1,"key_id":"web","events":[{"id":"nope","event":{}}]}"#,
        r#"{"v":1,"key_id":"web","events":[{"id":"00000000-0000-0000-0000-000000000001","event":{}}],"x":1}"#,
    ] {
        assert!(
            matches!(decode_spill(bad), Err(SpillPackError::Malformed(_))),
            "{bad}"
        );
    }
}

proptest! {
    #[test]
    fn packing_keeps_every_event_once_within_limits(
        sizes in proptest::collection::vec(1usize..70_000, 0..60),
    ) {
        let events: Vec<EncodedEvent> =
            sizes.iter().enumerate().map(|(n, &s)| event(n, s)).collect();
        let batches = pack_spill(&events, "key").expect("packs");
        let mut seen = Vec::new();
        for batch in &batches {
            prop_assert!(!batch.is_empty() && batch.len() <= BATCH_MESSAGES);
            let bytes: usize = batch.iter().map(|m| m.len() + MESSAGE_OVERHEAD_BYTES).sum();
            prop_assert!(bytes <= BATCH_BYTES);
            for m in batch {
                prop_assert!(m.len() <= MESSAGE_BYTES);
                let back = decode_spill(m).expect("decodes");
                prop_assert_eq!(back.key_id.as_str(), "key");
                seen.extend(back.events);
            }
        }
        prop_assert_eq!(seen, events);
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        deadline: Duration::from_millis(2_000),
        base: Duration::from_millis(50),
        max: Duration::from_millis(400),
        concurrency: 6,
    }
}

fn message(key_id: &str, events: &[EncodedEvent]) -> Option<String> {
    let batches = pack_spill(events, key_id).expect("packs");
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].len(), 1);
    Some(batches[0][0].clone())
}

fn queued(q: &FakeQueue) -> Vec<Uuid> {
    q.sent_event_ids()
}

/// [`replay`] with the default limits, the tests' key and [`policy`].
async fn replay_all(
    q: &FakeQueue,
    rt: &FakeRuntime,
    messages: &[Option<String>],
) -> (Vec<Disposition>, ReplayReport) {
    replay(
        q,
        rt,
        messages,
        &BufferLimits::default(),
        &envelope_key(),
        &policy(),
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn replay_sends_every_event_with_its_id_and_acks_every_message() {
    let rt = FakeRuntime::new();
    let q = FakeQueue::new(vec![]);
    let web: Vec<EncodedEvent> = (0..3).map(|n| event(n, 100)).collect();
    let app: Vec<EncodedEvent> = (3..5).map(|n| event(n, 100)).collect();
    let more: Vec<EncodedEvent> = (5..6).map(|n| event(n, 100)).collect();
    let messages = [
        message("web", &web),
        message("app", &app),
        message("web", &more),
    ];
    let (dispositions, report) = replay_all(&q, &rt, &messages).await;
    assert_eq!(dispositions, vec![Disposition::Ack; 3]);
    assert_eq!((report.messages, report.events, report.replayed), (3, 6, 6));
    assert_eq!((report.retried, report.unreadable), (0, 0));
    // One call per key id: both web messages share one.
    assert_eq!(q.groups(), vec!["web".to_owned(), "app".to_owned()]);
    let mut want: Vec<Uuid> = web.iter().chain(&more).chain(&app).map(|e| e.id).collect();
    let mut got = queued(&q);
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "each event once, with the id it was accepted with"
    );
}

#[tokio::test(start_paused = true)]
async fn replay_retries_only_the_messages_sqs_did_not_take() {
    let rt = FakeRuntime::new();
    // SQS refuses the first key id's events for good; the second goes through.
    let q = FakeQueue::new(vec![Reply::Error(crate::buffer::SendError::Permanent(
        "AccessDenied".into(),
    ))]);
    let web = vec![event(0, 100)];
    let app = vec![event(1, 100)];
    let messages = [message("web", &web), message("app", &app)];
    let (dispositions, report) = replay_all(&q, &rt, &messages).await;
    assert_eq!(dispositions, vec![Disposition::Retry, Disposition::Ack]);
    assert_eq!((report.replayed, report.retried), (1, 1));
    assert_eq!(q.calls().len(), 2, "one call per key id");
    assert!(report.last_error.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_replay_that_times_out_leaves_the_other_key_ids_for_later() {
    let rt = FakeRuntime::new();
    // The first key id's call never answers: SQS is down, so the second is not tried.
    let q = FakeQueue::new(vec![Reply::Hang]);
    let web = vec![event(0, 100)];
    let app = vec![event(1, 100)];
    let messages = [message("web", &web), message("app", &app)];
    let (dispositions, report) = replay_all(&q, &rt, &messages).await;
    assert_eq!(dispositions, vec![Disposition::Retry, Disposition::Retry]);
    assert_eq!((report.replayed, report.retried), (0, 2));
    assert_eq!(q.calls().len(), 1, "only the first key id waited for SQS");
    assert_eq!(
        rt.now_ms() - FakeRuntime::START_MS,
        2_000,
        "one deadline, not one per key id"
    );
}

#[tokio::test(start_paused = true)]
async fn unreadable_messages_are_retried_never_dropped() {
    let rt = FakeRuntime::new();
    let q = FakeQueue::new(vec![]);
    let good = vec![event(0, 100)];
    let messages = [None, Some("garbage".to_owned()), message("web", &good)];
    let (dispositions, report) = replay_all(&q, &rt, &messages).await;
    assert_eq!(
        dispositions,
        vec![Disposition::Retry, Disposition::Retry, Disposition::Ack]
    );
    assert_eq!(
        (report.unreadable, report.retried, report.replayed),
        (2, 2, 1)
    );
    assert_eq!(queued(&q), vec![good[0].id]);
}

#[test]
fn retry_delays_grow_with_the_age_of_the_spill() {
    let secs = |s| Duration::from_secs(s);
    assert_eq!(retry_delay(secs(0)), secs(2));
    assert_eq!(retry_delay(secs(10)), secs(5));
    assert_eq!(retry_delay(secs(100)), secs(50));
    assert_eq!(retry_delay(secs(86_400)), secs(600));
    // Delivered again after each delay, a message waits longer each time, up to the cap.
    let mut age = secs(1);
    let mut last = Duration::ZERO;
    let mut total = Duration::ZERO;
    for _ in 0..100 {
        let d = retry_delay(age);
        assert!(d >= last);
        last = d;
        age += d;
        total += d;
    }
    assert!(total > secs(13 * 3_600), "100 retries cover {total:?}");
}

#[test]
fn the_replay_line_counts_and_names_no_payload() {
    let report = ReplayReport {
        messages: 3,
        events: 40,
        replayed: 30,
        retried: 1,
        unreadable: 0,
        sqs_calls: 4,
        sqs_retries: 1,
        last_error: Some("HTTP 503".into()),
    };
    let v: serde_json::Value = serde_json::from_str(&report.log_line(12)).expect("JSON");
    assert_eq!(
        v,
        serde_json::json!({"kind": "replay", "messages": 3, "events": 40, "replayed": 30,
            "retried": 1, "unreadable": 0, "sqs_calls": 4, "retries": 1,
            "duration_ms": 12, "queue_error": "HTTP 503"})
    );
}

#[tokio::test(start_paused = true)]
async fn replay_to_kinesis_resends_refused_records_and_acks_once_all_are_stored() {
    use crate::testkit::{all_recorded, recorded_data, Answer, CannedSqs, KINESIS_ENV};
    fn random() -> [u8; 16] {
        [9; 16]
    }
    let config = crate::config::tests::config_with(KINESIS_ENV).expect("valid");
    let first = std::sync::atomic::AtomicBool::new(true);
    // The first PutRecords has its first record refused; everything after is stored.
    let canned = CannedSqs::new(move |parts| {
        let refused: &[usize] = if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            &[0]
        } else {
            &[]
        };
        Answer::Http(200, all_recorded(parts, refused))
    });
    let sender = canned.kinesis_sender(&config, random);
    let rt = FakeRuntime::new();
    let web: Vec<EncodedEvent> = (0..3).map(|n| event(n, 100)).collect();
    let app: Vec<EncodedEvent> = (3..5).map(|n| event(n, 100)).collect();
    let messages = [message("web", &web), message("app", &app)];
    let (dispositions, report) = replay(
        &sender,
        &rt,
        &messages,
        &config.buffer,
        &envelope_key(),
        &policy(),
    )
    .await;
    assert_eq!(dispositions, vec![Disposition::Ack; 2]);
    assert_eq!((report.events, report.replayed), (5, 5));
    // Two key ids, two calls, and the refused record once more.
    let wire = canned.sent();
    assert_eq!(wire.len(), 3, "{:?}", canned.answered());
    let mut stored: Vec<Uuid> = Vec::new();
    for (i, parts) in wire.iter().enumerate() {
        for (n, (data, _)) in recorded_data(parts).iter().enumerate() {
            if i == 0 && n == 0 {
                continue; // refused
            }
            // The envelope as the consumer reads it (these test events are not full events).
            let envelope: serde_json::Value = serde_json::from_slice(data).expect("JSON");
            assert_eq!(envelope["kid"], envelope_key().kid(), "sealed");
            stored.extend(
                envelope["events"]
                    .as_array()
                    .expect("events")
                    .iter()
                    .map(|e| Uuid::parse_str(e["id"].as_str().expect("id")).expect("uuid")),
            );
        }
    }
    let mut want: Vec<Uuid> = web.iter().chain(&app).map(|e| e.id).collect();
    stored.sort();
    want.sort();
    assert_eq!(stored, want, "each event stored once");
}
