//! `/v1/events` with the Kinesis buffer: the request path over the real Kinesis sender and the
//! canned endpoint, so `202` is shown to follow only from sequence numbers for every record
//! (records refused by index resent alone, an answer short of results, throughput exceeded
//! until the deadline -> `503`).

use std::collections::HashSet;

use spillway_shared::open;

use super::edge::Answer as Reply;
use super::*;
use crate::buffer::connector::FetchParts;
use crate::buffer::kinesis::KinesisSender;
use crate::handler::{handle, Deps};
use crate::testkit::{
    all_recorded, envelope_keyring, recorded_data, Answer, CannedSqs, KINESIS_ENV,
};

/// Five events of about 460 bytes, and records that hold one each (MAX_MESSAGE_BYTES 1,200).
fn five_events() -> Request<Vec<u8>> {
    let pad = "p".repeat(430);
    let events: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"type":"t{i}","data":{{"pad":"{pad}"}}}}"#))
        .collect();
    authed(format!("[{}]", events.join(",")))
}

fn config(extra: &[(&'static str, &str)]) -> crate::config::Config {
    let mut overrides = KINESIS_ENV.to_vec();
    overrides.extend_from_slice(&[("MAX_EVENT_BYTES", "500"), ("MAX_MESSAGE_BYTES", "1200")]);
    overrides.extend_from_slice(extra);
    config_with(&overrides).expect("valid Kinesis config")
}

fn random() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    u128::from(N.fetch_add(1, Ordering::Relaxed)).to_le_bytes()
}

async fn call(
    config: &crate::config::Config,
    sender: &KinesisSender,
    req: Request<Vec<u8>>,
) -> Reply {
    let rt = FakeRuntime::new();
    let deps = Deps {
        config,
        queue: sender,
        limiter: None::<&FakeLimiter>,
        rt: &rt,
        batcher: None,
        spill: None,
    };
    Reply(handle(&deps, req).await)
}

/// The events of the records Kinesis stored (answered with a sequence number), in order.
fn stored(canned: &CannedSqs) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    for (parts, answer) in canned.sent().iter().zip(canned.answered()) {
        let Answer::Http(200, body) = answer else {
            continue;
        };
        let results: Value = serde_json::from_str(&body).expect("JSON answer");
        for ((data, _), result) in recorded_data(parts)
            .iter()
            .zip(results["Records"].as_array().expect("results").iter())
        {
            if result.get("SequenceNumber").is_some() {
                let text = std::str::from_utf8(data).expect("UTF-8 envelope");
                ids.extend(
                    open(text, &envelope_keyring())
                        .expect("a sealed envelope")
                        .iter()
                        .map(|e| e.id),
                );
            }
        }
    }
    ids
}

fn scripted(script: Vec<fn(&FetchParts) -> Answer>) -> CannedSqs {
    let script = std::sync::Mutex::new(std::collections::VecDeque::from(script));
    CannedSqs::new(
        move |parts| match script.lock().expect("lock").pop_front() {
            Some(answer) => answer(parts),
            None => Answer::ConnectionFails("connection refused".into()),
        },
    )
}

#[tokio::test(start_paused = true)]
async fn records_refused_by_index_are_resent_alone_and_then_202() {
    let canned = scripted(vec![
        |parts| Answer::Http(200, all_recorded(parts, &[1, 3])),
        |parts| Answer::Http(200, all_recorded(parts, &[])),
    ]);
    let config = config(&[]);
    let a = call(
        &config,
        &canned.kinesis_sender(&config, random),
        five_events(),
    )
    .await;
    assert_eq!(a.status(), 202, "{}", a.0.response.body());
    assert_eq!((a.0.log.sqs_calls, a.0.log.retries), (2, 1));
    let wire = canned.sent();
    assert_eq!(recorded_data(&wire[0]).len(), 5, "one event per record");
    let first = recorded_data(&wire[0]);
    let second = recorded_data(&wire[1]);
    assert_eq!(
        second.iter().map(|r| &r.0).collect::<Vec<_>>(),
        vec![&first[1].0, &first[3].0],
        "only records 1 and 3 go again"
    );
    // Every accepted event is stored exactly once.
    let ids = a.ids();
    let stored = stored(&canned);
    assert_eq!(stored.len(), 5);
    assert_eq!(
        stored.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_short_of_results_is_not_202_until_every_record_is_named() {
    let canned = scripted(vec![
        |_| Answer::Http(200, r#"{"FailedRecordCount":0,"Records":[]}"#.to_owned()),
        |parts| Answer::Http(200, all_recorded(parts, &[])),
    ]);
    let config = config(&[]);
    let a = call(
        &config,
        &canned.kinesis_sender(&config, random),
        five_events(),
    )
    .await;
    assert_eq!(a.status(), 202, "{}", a.0.response.body());
    assert_eq!(recorded_data(&canned.sent()[1]).len(), 5, "resent whole");
    assert_eq!(stored(&canned).len(), 5);
}

#[tokio::test(start_paused = true)]
async fn throughput_exceeded_until_the_deadline_is_503_naming_every_event() {
    let canned = CannedSqs::new(|parts| {
        let n = recorded_data(parts).len();
        Answer::Http(200, all_recorded(parts, &(0..n).collect::<Vec<_>>()))
    });
    let config = config(&[("SQS_DEADLINE_MS", "1000")]);
    let a = call(
        &config,
        &canned.kinesis_sender(&config, random),
        five_events(),
    )
    .await;
    let err = a.error(503, "queue_unavailable");
    assert_eq!(err["unacknowledged"].as_array().map(Vec::len), Some(5));
    assert!(a.0.log.retries >= 2, "{:?}", a.0.log);
    assert!(stored(&canned).is_empty());
}

#[tokio::test(start_paused = true)]
async fn key_id_partitioning_puts_a_key_s_records_on_its_key() {
    let canned = CannedSqs::new(|parts| Answer::Http(200, all_recorded(parts, &[])));
    let config = config(&[("KINESIS_PARTITION_KEY", "key_id")]);
    let a = call(
        &config,
        &canned.kinesis_sender(&config, random),
        five_events(),
    )
    .await;
    assert_eq!(a.status(), 202, "{}", a.0.response.body());
    let keys: Vec<String> = recorded_data(&canned.sent()[0])
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(keys, vec!["web"; 5]);
}
