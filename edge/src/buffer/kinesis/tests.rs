//! Tests of the Kinesis sender over the canned endpoint (the SDK's real serialisation, signing
//! and parsing), alone and under the retry loop: every result read by position (never
//! `FailedRecordCount`, the bug of vectordotdev/vector#16954), only refused records resent, an
//! answer that does not match the call, throughput exceeded until the deadline, whole-call
//! errors, and `PutRecords`'s limits at +-1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use spillway_shared::limits::KINESIS_CEILING;
use spillway_shared::{pack_encoded, BufferCall, BufferLimits, EncodedEvent};
use uuid::Uuid;

use super::*;
use crate::buffer::connector::FetchParts;
use crate::buffer::send_all;
use crate::config::tests::config_with;
use crate::config::RetryPolicy;
use crate::ports::Runtime;
use crate::testkit::{
    all_recorded, envelope_key, recorded_data, Answer, CannedSqs, FakeRuntime, KINESIS_ENV,
    STREAM_ARN,
};

fn config(extra: &[(&'static str, &str)]) -> Config {
    let mut overrides = KINESIS_ENV.to_vec();
    overrides.extend_from_slice(extra);
    config_with(&overrides).expect("valid Kinesis config")
}

/// A different 16 bytes on every draw, as the runtime's random source.
fn random() -> [u8; 16] {
    static N: AtomicU64 = AtomicU64::new(0x5eed);
    let n = N.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    (u128::from(n) << 64 | u128::from(!n)).to_le_bytes()
}

fn sender(canned: &CannedSqs) -> KinesisSender {
    canned.kinesis_sender(&config(&[]), random)
}

fn entries(n: usize) -> Vec<BufferEntry> {
    (0..n)
        .map(|i| BufferEntry {
            id: format!("m{i}"),
            body: format!(r#"{{"v":2,"events":[{i}],"sig":"s"}}"#),
            event_ids: vec![Uuid::from_u128(i as u128 + 1)],
        })
        .collect()
}

fn policy(deadline_ms: u64) -> RetryPolicy {
    RetryPolicy {
        deadline: Duration::from_millis(deadline_ms),
        base: Duration::from_millis(50),
        max: Duration::from_millis(400),
        concurrency: 6,
    }
}

fn header(parts: &FetchParts, name: &str) -> Option<String> {
    parts
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// Answers from a script of functions of the request, then connection failures.
fn scripted(script: Vec<fn(&FetchParts) -> Answer>) -> CannedSqs {
    let script = std::sync::Mutex::new(std::collections::VecDeque::from(script));
    CannedSqs::new(
        move |parts| match script.lock().expect("lock").pop_front() {
            Some(answer) => answer(parts),
            None => Answer::ConnectionFails("connection refused".into()),
        },
    )
}

fn ok(parts: &FetchParts) -> Answer {
    Answer::Http(200, all_recorded(parts, &[]))
}

const THROUGHPUT: &str = r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for stream spillway-events"}"#;

#[tokio::test]
async fn request_is_a_signed_put_records_carrying_the_bodies_unchanged() {
    let canned = CannedSqs::new(ok);
    let sent = entries(3);
    let out = sender(&canned).send(&sent, "web").await.expect("answered");
    assert_eq!(out, CallOutcome::default());
    let parts = canned.sent()[0].clone();
    assert_eq!(parts.method, "POST");
    assert_eq!(parts.url, "http://127.0.0.1:4567/");
    assert_eq!(
        header(&parts, "x-amz-target").as_deref(),
        Some("Kinesis_20131202.PutRecords")
    );
    assert_eq!(
        header(&parts, "content-type").as_deref(),
        Some("application/x-amz-json-1.1")
    );
    let auth = header(&parts, "authorization").expect("signed");
    assert!(
        auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/eu-west-1/kinesis/aws4_request"
        ),
        "{auth}"
    );
    assert!(!auth.contains("aws-secret-do-not-print"));
    let json = &canned.sent_json()[0];
    assert_eq!(json["StreamARN"], STREAM_ARN);
    let records = recorded_data(&parts);
    assert_eq!(records.len(), 3);
    for (record, entry) in records.iter().zip(&sent) {
        assert_eq!(
            record.0,
            entry.body.as_bytes(),
            "the envelope, byte for byte"
        );
    }
    // `request`: a random key per record, none repeated, all within Kinesis's 256.
    let keys: std::collections::HashSet<&str> = records.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(keys.len(), 3, "{records:?}");
    assert!(keys.iter().all(|k| k.len() == 32 && k != &"web"));
    // Another call draws other keys.
    sender(&canned).send(&sent, "web").await.expect("answered");
    let again = recorded_data(&canned.sent()[1]);
    assert!(again.iter().all(|r| !keys.contains(r.1.as_str())));
}

#[tokio::test]
async fn key_id_partitioning_keys_every_record_by_the_group() {
    let canned = CannedSqs::new(ok);
    let s = canned.kinesis_sender(&config(&[("KINESIS_PARTITION_KEY", "key_id")]), random);
    s.send(&entries(3), "web").await.expect("answered");
    let keys: Vec<String> = recorded_data(&canned.sent()[0])
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(keys, vec!["web"; 3]);
    // An empty group (no key id to order by) still gets usable, random keys.
    assert!(partition_keys(PartitionKey::KeyId, "", 2, [7; 16])
        .iter()
        .all(|k| k.len() == 32));
}

#[tokio::test]
async fn every_result_is_read_whatever_failed_record_count_says() {
    // vectordotdev/vector#16954: records 1 and 3 of 5 refused, FailedRecordCount 0.
    let canned = CannedSqs::new(|parts| Answer::Http(200, all_recorded(parts, &[1, 3])));
    let out = sender(&canned)
        .send(&entries(5), "web")
        .await
        .expect("answered");
    let failed: Vec<(usize, bool, &str)> = out
        .failed
        .iter()
        .map(|f| (f.position, f.retryable, f.code.as_str()))
        .collect();
    assert_eq!(
        failed,
        vec![
            (1, true, "ProvisionedThroughputExceededException"),
            (3, true, "ProvisionedThroughputExceededException")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn only_the_refused_records_are_resent_until_all_are_stored() {
    let canned = scripted(vec![
        |parts| Answer::Http(200, all_recorded(parts, &[1, 3])),
        ok,
    ]);
    let rt = FakeRuntime::new();
    let sent = entries(5);
    let calls = vec![BufferCall {
        entries: sent.clone(),
    }];
    let report = send_all(&sender(&canned), &rt, calls, "web", &policy(2_000)).await;
    assert!(report.unacknowledged.is_empty(), "{report:?}");
    assert_eq!((report.calls, report.retries), (2, 1));
    let wire = canned.sent();
    assert_eq!(wire.len(), 2);
    let resent: Vec<Vec<u8>> = recorded_data(&wire[1]).into_iter().map(|r| r.0).collect();
    assert_eq!(
        resent,
        vec![
            sent[1].body.as_bytes().to_vec(),
            sent[3].body.as_bytes().to_vec()
        ],
        "records 1 and 3 only, in order"
    );
    // Stored: 0, 2, 4 on the first call, 1 and 3 on the second; each once.
    assert_eq!(rt.sleeps().len(), 1, "one backoff between the two calls");
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_does_not_name_every_record_fails_the_whole_call() {
    // Two results for three records: which two is unknowable, so all three go again.
    let canned = scripted(vec![
        |_| {
            Answer::Http(
                200,
                json!({"FailedRecordCount": 0, "Records": [
                    {"SequenceNumber": "1", "ShardId": "shardId-000000000000"},
                    {"SequenceNumber": "2", "ShardId": "shardId-000000000000"}
                ]})
                .to_string(),
            )
        },
        ok,
    ]);
    let e = sender(&canned)
        .send(&entries(3), "web")
        .await
        .expect_err("fewer results than records");
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("2 results for 3 records"), "{e}");

    let canned = scripted(vec![
        |_| {
            Answer::Http(
                200,
                json!({"FailedRecordCount": 0, "Records": []}).to_string(),
            )
        },
        ok,
    ]);
    let rt = FakeRuntime::new();
    let calls = vec![BufferCall {
        entries: entries(3),
    }];
    let report = send_all(&sender(&canned), &rt, calls, "web", &policy(2_000)).await;
    assert!(report.unacknowledged.is_empty(), "{report:?}");
    assert_eq!(recorded_data(&canned.sent()[1]).len(), 3, "resent whole");
}

#[tokio::test]
async fn a_result_with_neither_sequence_number_nor_error_is_not_stored() {
    let canned = CannedSqs::new(|_| {
        Answer::Http(
            200,
            json!({"Records": [
                {"SequenceNumber": "49630000000000000000000000000000000000000000000000000001", "ShardId": "shardId-000000000000"},
                {},
                {"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service failure."},
                {"ErrorCode": "SomethingNew", "ErrorMessage": "?"}
            ]})
            .to_string(),
        )
    });
    let out = sender(&canned)
        .send(&entries(4), "web")
        .await
        .expect("answered");
    let failed: Vec<(usize, bool)> = out
        .failed
        .iter()
        .map(|f| (f.position, f.retryable))
        .collect();
    assert_eq!(failed, vec![(1, true), (2, true), (3, false)]);
}

#[tokio::test(start_paused = true)]
async fn throughput_exceeded_on_every_try_ends_at_the_deadline_with_every_event_named() {
    let canned = CannedSqs::new(|parts| {
        let n = recorded_data(parts).len();
        Answer::Http(200, all_recorded(parts, &(0..n).collect::<Vec<_>>()))
    });
    let rt = FakeRuntime::new();
    let sent = entries(4);
    let all: Vec<Uuid> = sent.iter().flat_map(|e| e.event_ids.clone()).collect();
    let calls = vec![BufferCall { entries: sent }];
    let report = send_all(&sender(&canned), &rt, calls, "web", &policy(2_000)).await;
    assert!(report.timed_out, "{report:?}");
    assert_eq!(report.unacknowledged, all);
    assert!(!report.rejected, "throughput is retried, never rejected");
    assert!(
        report.calls >= 4,
        "kept trying until the deadline: {report:?}"
    );
    assert!(rt.now_ms() - FakeRuntime::START_MS <= 2_000);
    assert_eq!(
        canned.sent().len() as u32,
        report.calls,
        "the SDK never retries"
    );
}

#[tokio::test]
async fn whole_call_errors_are_classified() {
    let canned = CannedSqs::script(vec![
        Ok((500, r#"{"__type":"InternalFailure","message":"injected"}"#)),
        Ok((400, THROUGHPUT)),
        Ok((
            400,
            r#"{"__type":"KMSThrottlingException","message":"slow down"}"#,
        )),
        Ok((503, r#"{"__type":"ServiceUnavailable"}"#)),
        Err(()),
        Ok((
            400,
            r#"{"__type":"ResourceNotFoundException","message":"Stream spillway-events under account 123456789012 not found."}"#,
        )),
        Ok((
            400,
            r#"{"__type":"AccessDeniedException","message":"not authorized to perform: kinesis:PutRecords"}"#,
        )),
        Ok((
            400,
            r#"{"__type":"ValidationException","message":"1 validation error"}"#,
        )),
        Ok((
            400,
            r#"{"__type":"KMSAccessDeniedException","message":"no"}"#,
        )),
    ]);
    let s = sender(&canned);
    let e = entries(1);
    for expected_transient in [true, true, true, true, true, false, false, false, false] {
        let r = s.send(&e, "web").await.expect_err("an error");
        assert_eq!(r.is_retryable(), expected_transient, "{r}");
    }
    assert_eq!(canned.sent().len(), 9, "the SDK itself never retries");
}

#[test]
fn record_codes() {
    assert!(record_retryable("ProvisionedThroughputExceededException"));
    assert!(record_retryable("InternalFailure"));
    assert!(!record_retryable("AccessDeniedException"));
    assert!(whole_call_transient(
        "ProvisionedThroughputExceededException"
    ));
    assert!(whole_call_transient("KMSThrottlingException"));
    assert!(!whole_call_transient("ResourceNotFoundException"));
}

// ---------------------------------------------------------------- limits at +-1

fn sized(n: usize, body_bytes: usize) -> Vec<BufferEntry> {
    (0..n)
        .map(|i| BufferEntry {
            id: format!("m{i}"),
            body: "x".repeat(body_bytes),
            event_ids: vec![Uuid::from_u128(i as u128 + 1)],
        })
        .collect()
}

fn keys(n: usize, len: usize) -> Vec<String> {
    vec!["k".repeat(len); n]
}

#[test]
fn five_hundred_records_per_call_and_not_one_more() {
    assert_eq!(check_call(&sized(500, 10), &keys(500, 32)), Ok(()));
    let e = check_call(&sized(501, 10), &keys(501, 32)).expect_err("501 records");
    assert!(
        !e.is_retryable() && e.to_string().contains("501 records"),
        "{e}"
    );
}

#[test]
fn a_record_of_one_mib_with_its_key_and_not_one_byte_more() {
    let mib = 1024 * 1024;
    assert_eq!(check_call(&sized(1, mib - 32), &keys(1, 32)), Ok(()));
    assert_eq!(check_call(&sized(1, mib - 256), &keys(1, 256)), Ok(()));
    let e = check_call(&sized(1, mib - 31), &keys(1, 32)).expect_err("one byte over");
    assert!(!e.is_retryable(), "{e}");
}

#[test]
fn a_call_of_five_mib_with_its_keys_and_not_one_byte_more() {
    let mib = 1024 * 1024;
    // Five records of 1 MiB - 7 and one of 35 (each with a 32-byte key): exactly 5 MiB.
    let mut at = sized(5, mib - 32 - 7);
    at.extend(sized(1, 3));
    assert_eq!(check_call(&at, &keys(6, 32)), Ok(()));
    let mut over = at.clone();
    over[5].body.push('x');
    let e = check_call(&over, &keys(6, 32)).expect_err("5 MiB + 1");
    assert!(
        !e.is_retryable() && e.to_string().contains("5242881"),
        "{e}"
    );
}

#[tokio::test]
async fn a_call_over_the_limits_is_refused_before_it_is_sent() {
    let canned = CannedSqs::new(ok);
    let e = sender(&canned)
        .send(&sized(1, 1024 * 1024), "web")
        .await
        .expect_err("over 1 MiB");
    assert!(!e.is_retryable());
    assert!(canned.sent().is_empty());
}

fn encoded(n: usize, bytes: usize) -> Vec<EncodedEvent> {
    (0..n)
        .map(|i| EncodedEvent {
            id: Uuid::from_u128(i as u128 + 1),
            text: format!("{{\"pad\":\"{}\"}}", "p".repeat(bytes - 10)),
        })
        .collect()
}

#[test]
fn the_packer_with_kinesis_limits_fills_500_records_then_opens_a_call() {
    // Records of at most 1,024 bytes: one ~600-byte event each.
    let limits = BufferLimits {
        bytes_per_entry: 1_024,
        ..KINESIS_CEILING
    };
    let calls = pack_encoded(&encoded(500, 600), &limits, &envelope_key());
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].entries.len(), 500);
    let calls = pack_encoded(&encoded(501, 600), &limits, &envelope_key());
    let sizes: Vec<usize> = calls.iter().map(|c| c.entries.len()).collect();
    assert_eq!(sizes, vec![500, 1]);
}

#[test]
fn packed_calls_fit_put_records_even_with_the_longest_partition_keys() {
    // The default Kinesis limits (records of 256 KiB): 21 records of ~250 KiB are over 5 MiB.
    let limits = config(&[]).buffer;
    assert_eq!(limits.entries_per_call, 500);
    let calls = pack_encoded(&encoded(21, 250 * 1024), &limits, &envelope_key());
    assert_eq!(calls.len(), 2, "split at the call's byte cap");
    for call in &calls {
        let n = call.entries.len();
        assert_eq!(check_call(&call.entries, &keys(n, 256)), Ok(()));
        assert!(call.entries.iter().all(|e| e.event_ids.len() == 1));
    }
}
