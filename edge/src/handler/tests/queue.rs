//! SQS trouble on `/v1/events`: retried failures, the deadline and permanent rejections.

use super::*;

// ---------------------------------------------------------------- SQS trouble

#[tokio::test(start_paused = true)]
async fn transient_queue_failures_are_retried_and_still_202() {
    let queue = FakeQueue::new(vec![
        Reply::Error(SendError::Transient("HTTP 500 InternalError".into())),
        Reply::Outcome(CallOutcome {
            failed: vec![FailedEntry {
                position: 0,
                retryable: true,
                code: "ThrottlingException".into(),
            }],
        }),
    ]);
    let edge = Edge::new().queue(queue);
    let a = edge.call(authed(r#"[{"type":"a"},{"type":"b"}]"#)).await;
    assert_eq!(a.status(), 202, "{}", a.0.response.body());
    assert_eq!((a.0.log.sqs_calls, a.0.log.retries), (3, 2));
    assert!(a.0.log.queue_error.is_some());
    // The one message (two events) was sent three times: whole, whole again, then alone as m0.
    assert_eq!(edge.queue.calls(), vec![vec!["m0"], vec!["m0"], vec!["m0"]]);
    assert_eq!(edge.queued().len(), 2 * 3);
}

#[tokio::test(start_paused = true)]
async fn deadline_is_503_with_retry_after_and_the_unacknowledged_ids() {
    let queue = FakeQueue::always(Reply::Error(SendError::Transient("HTTP 503".into())))
        .with_latency_ms(100);
    let edge = Edge::with(&[("SQS_DEADLINE_MS", "1000"), ("RETRY_AFTER_SECS", "3")]).queue(queue);
    let a = edge
        .call(with_idempotency(
            r#"[{"type":"a"},{"type":"b"}]"#,
            "req-9",
            KEY_WEB,
        ))
        .await;
    let err = a.error(503, "queue_unavailable");
    assert_eq!(a.header("retry-after"), Some("3"));
    let unacked: Vec<&str> = err["unacknowledged"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let expected = [
        derive_id("web", "req-9", 0, r#"{"type":"a"}"#).to_string(),
        derive_id("web", "req-9", 1, r#"{"type":"b"}"#).to_string(),
    ];
    assert_eq!(unacked, expected);
    assert!(a.0.log.retries >= 2, "{:?}", a.0.log);
    assert!(a.0.log.duration_ms <= 1000, "{:?}", a.0.log);
}

#[tokio::test(start_paused = true)]
async fn permanent_queue_rejection_is_503_without_waiting() {
    let queue = FakeQueue::always(Reply::Error(SendError::Permanent(
        "HTTP 400 QueueDoesNotExist".into(),
    )));
    let edge = Edge::new().queue(queue);
    let a = edge.call(authed(r#"{"type":"a"}"#)).await;
    a.error(503, "queue_unavailable");
    assert_eq!(a.0.log.sqs_calls, 1);
    assert_eq!(
        a.0.log.queue_error.as_deref(),
        Some("permanent queue error: HTTP 400 QueueDoesNotExist")
    );
}
