//! The request path with group commit: small requests share a batcher's calls and still hear
//! `202` only for events SQS holds; a batcher that is missing, down, silent or confused costs a
//! request nothing but the time it took.

use futures_util::future::join_all;
use http::{Method, Request};
use spillway_shared::open;
use uuid::Uuid;

use crate::config::tests::KEY_WEB;
use crate::handler::tests::edge::Edge;
use crate::ports::{BatchOutcome, FailedEntry, Runtime};
use crate::testkit::{envelope_keyring, FakeQueue, Link, Reply};

fn one_event(n: usize) -> Request<Vec<u8>> {
    events(&format!(r#"{{"type":"page_view","data":{{"n":{n}}}}}"#))
}

fn events(body: &str) -> Request<Vec<u8>> {
    Request::builder()
        .method(Method::POST)
        .uri("https://ingest.example.com/v1/events")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY_WEB}"))
        .header("cf-ray", format!("ray-{}", body.len()))
        .body(body.as_bytes().to_vec())
        .expect("request")
}

fn queued_ids(queue: &FakeQueue) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = queue
        .bodies()
        .iter()
        .flat_map(|b| open(b, &envelope_keyring()).expect("sealed envelope"))
        .map(|e| e.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(start_paused = true)]
async fn concurrent_single_event_requests_share_one_sqs_call() {
    let edge = Edge::new().batching(FakeQueue::new(vec![]));
    let answers = join_all((0..30).map(|n| edge.call(one_event(n)))).await;
    let mut accepted: Vec<Uuid> = answers
        .iter()
        .flat_map(|a| {
            assert_eq!(a.status(), 202, "{}", a.0.response.body());
            assert_eq!(a.0.log.send, Some("batched"));
            assert_eq!(a.0.log.batch_requests, Some(30));
            assert_eq!(a.0.log.sqs_calls, 1);
            a.ids()
        })
        .collect();
    accepted.sort();
    let batcher = edge.batcher.as_ref().expect("batching");
    assert_eq!(batcher.queue().calls().len(), 1, "30 requests, one call");
    assert_eq!(
        queued_ids(batcher.queue()),
        accepted,
        "every 202'd id, once"
    );
    assert!(edge.queue.calls().is_empty(), "nothing went directly");
    assert!(batcher.names().iter().all(|n| n == "local/0"));
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_events_sqs_refused_is_503_and_the_others_202() {
    // Small messages (a few events each, the seal around them); SQS refuses the third entry
    // for good.
    let queue = FakeQueue::new(vec![Reply::Outcome(BatchOutcome {
        failed: vec![FailedEntry {
            id: "m2".into(),
            retryable: false,
            code: "InvalidMessageContents".into(),
        }],
    })]);
    let edge =
        Edge::with(&[("MAX_EVENT_BYTES", "64"), ("MAX_MESSAGE_BYTES", "740")]).batching(queue);
    let answers = join_all((0..12).map(|n| edge.call(one_event(n)))).await;
    let batcher = edge.batcher.as_ref().expect("batching");
    let bodies = batcher.queue().bodies();
    assert!(bodies.len() >= 3, "several messages: {}", bodies.len());
    let refused: Vec<Uuid> = open(&bodies[2], &envelope_keyring())
        .expect("envelope")
        .iter()
        .map(|e| e.id)
        .collect();
    let mut accepted: Vec<Uuid> = Vec::new();
    let mut failed = 0;
    for a in &answers {
        match a.status() {
            202 => accepted.extend(a.ids()),
            _ => {
                a.error(503, "queue_unavailable");
                failed += 1;
            }
        }
    }
    assert_eq!(failed, refused.len(), "one request per refused event");
    assert!(failed > 0 && !accepted.is_empty());
    accepted.sort();
    let mut stored: Vec<Uuid> = queued_ids(batcher.queue());
    stored.retain(|id| !refused.contains(id));
    assert_eq!(accepted, stored, "202 exactly for the events SQS took");
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_or_confused_batcher_falls_back_to_sending_directly() {
    for link in [Link::Down, Link::Garbage] {
        let edge = Edge::new().batching(FakeQueue::new(vec![]));
        edge.batcher.as_ref().expect("batching").set_link(link);
        let a = edge.call(one_event(1)).await;
        assert_eq!(a.status(), 202, "{link:?}: {}", a.0.response.body());
        assert_eq!(a.0.log.send, Some("direct_fallback"));
        assert!(
            a.0.log.note.as_deref().unwrap_or("").contains("batch"),
            "{link:?}"
        );
        assert_eq!(queued_ids(&edge.queue), a.ids(), "{link:?}: sent directly");
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_batcher_is_503_at_the_deadline_not_later() {
    let edge = Edge::with(&[("SQS_DEADLINE_MS", "1500")]).batching(FakeQueue::new(vec![]));
    edge.batcher
        .as_ref()
        .expect("batching")
        .set_link(Link::Hang);
    let started = edge.rt.now_ms();
    let a = edge.call(one_event(1)).await;
    a.error(503, "queue_unavailable");
    assert_eq!(edge.rt.now_ms() - started, 1_500);
    assert!(edge.queue.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_sqs_behind_the_batcher_is_503_within_the_deadline() {
    let edge = Edge::with(&[("SQS_DEADLINE_MS", "2000")]).batching(FakeQueue::always(Reply::Hang));
    let started = edge.rt.now_ms();
    let answers = join_all((0..3).map(|n| edge.call(one_event(n)))).await;
    for a in &answers {
        a.error(503, "queue_unavailable");
        assert_eq!(a.0.log.send, Some("batched"));
    }
    let waited = edge.rt.now_ms() - started;
    assert!(
        waited < 2_000,
        "the batcher answers before the request's deadline: {waited}"
    );
}

#[tokio::test(start_paused = true)]
async fn large_requests_and_a_zero_window_send_directly() {
    // 70 events of about 1 KiB: past one billed 64 KiB chunk on their own.
    let pad = "x".repeat(1_000);
    let big = format!(
        "[{}]",
        (0..70)
            .map(|i| format!(r#"{{"type":"t","data":{{"i":{i},"pad":"{pad}"}}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let edge = Edge::new().batching(FakeQueue::new(vec![]));
    let a = edge.call(events(&big)).await;
    assert_eq!(a.status(), 202);
    assert_eq!(a.0.log.send, Some("direct"));
    assert!(edge.batcher.as_ref().expect("batching").names().is_empty());

    let edge = Edge::with(&[("BATCH_WINDOW_MS", "0")]).batching(FakeQueue::new(vec![]));
    let a = edge.call(one_event(1)).await;
    assert_eq!(a.status(), 202);
    assert_eq!(a.0.log.send, Some("direct"));
    assert!(edge.batcher.as_ref().expect("batching").names().is_empty());
}

#[tokio::test(start_paused = true)]
async fn batched_requests_wait_about_one_window() {
    let edge = Edge::with(&[("BATCH_WINDOW_MS", "15")]).batching(FakeQueue::new(vec![]));
    let started = edge.rt.now_ms();
    let a = edge.call(one_event(1)).await;
    assert_eq!(a.status(), 202);
    assert_eq!(edge.rt.now_ms() - started, 15);
}

#[tokio::test(start_paused = true)]
async fn shards_spread_requests_by_their_id() {
    let edge = Edge::with(&[("BATCH_SHARDS", "4")]).batching(FakeQueue::new(vec![]));
    join_all((0..40).map(|n| {
        let mut req = one_event(n);
        req.headers_mut().insert(
            "cf-ray",
            http::HeaderValue::from_str(&format!("ray-{n}")).expect("header"),
        );
        edge.call(req)
    }))
    .await;
    let names: std::collections::HashSet<String> = edge
        .batcher
        .as_ref()
        .expect("batching")
        .names()
        .into_iter()
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
}
