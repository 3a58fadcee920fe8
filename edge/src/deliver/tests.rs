//! Delivery through the whole request path ([`crate::handler::tests::edge::Edge`]): with a group commit,
//! and with a spill queue.

/// The request path with group commit: small requests share a batcher's calls and still hear
/// `202` only for events SQS holds; a batcher that is missing, down, silent or confused costs a
/// request nothing but the time it took.
mod group_commit {
    use futures_util::future::join_all;
    use http::{Method, Request};
    use spillway_shared::open;
    use uuid::Uuid;

    use crate::buffer::{CallOutcome, FailedEntry};
    use crate::config::tests::KEY_WEB;
    use std::time::Duration;

    use crate::deliver::group_commit::advice::HOLD_MIN_MS;
    use crate::deliver::DeliveryRoute;
    use crate::handler::tests::edge::Edge;
    use crate::ports::Runtime;
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
                assert_eq!(a.0.log.send, Some(DeliveryRoute::GroupCommit));
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
        let queue = FakeQueue::new(vec![Reply::Outcome(CallOutcome {
            failed: vec![FailedEntry {
                position: 2,
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
            assert_eq!(a.0.log.send, Some(DeliveryRoute::DirectFallback));
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
        let edge =
            Edge::with(&[("SQS_DEADLINE_MS", "2000")]).batching(FakeQueue::always(Reply::Hang));
        let started = edge.rt.now_ms();
        let answers = join_all((0..3).map(|n| edge.call(one_event(n)))).await;
        for a in &answers {
            a.error(503, "queue_unavailable");
            assert_eq!(a.0.log.send, Some(DeliveryRoute::GroupCommit));
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
        assert_eq!(a.0.log.send, Some(DeliveryRoute::Direct));
        assert!(edge.batcher.as_ref().expect("batching").names().is_empty());

        let edge = Edge::with(&[("BATCH_WINDOW_MS", "0")]).batching(FakeQueue::new(vec![]));
        let a = edge.call(one_event(1)).await;
        assert_eq!(a.status(), 202);
        assert_eq!(a.0.log.send, Some(DeliveryRoute::Direct));
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
    async fn below_break_even_an_isolate_sends_directly_then_probes() {
        let edge = Edge::new().batching(FakeQueue::new(vec![]));
        let first = edge.call(one_event(1)).await;
        assert_eq!(first.0.log.send, Some(DeliveryRoute::GroupCommit));
        assert_eq!(first.0.log.batch_requests, Some(1));
        // One request per flush: below break-even, so the next sends directly, without a
        // window of waiting.
        tokio::time::advance(Duration::from_secs(1)).await;
        let started = edge.rt.now_ms();
        let second = edge.call(one_event(2)).await;
        assert_eq!(second.status(), 202);
        assert_eq!(second.0.log.send, Some(DeliveryRoute::Direct));
        assert_eq!(edge.rt.now_ms(), started, "no window");
        assert_eq!(queued_ids(&edge.queue), second.ids(), "sent directly");
        let batcher = edge.batcher.as_ref().expect("batching");
        assert_eq!(batcher.names().len(), 1);
        // After the hold, one request asks the batcher again.
        tokio::time::advance(Duration::from_millis(HOLD_MIN_MS)).await;
        let probe = edge.call(one_event(3)).await;
        assert_eq!(probe.status(), 202);
        assert_eq!(probe.0.log.send, Some(DeliveryRoute::GroupCommit));
        assert_eq!(batcher.names().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_in_the_isolate_batches_again_without_waiting_for_the_hold() {
        let edge = Edge::new().batching(FakeQueue::new(vec![]));
        edge.call(one_event(0)).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        let answers = join_all((0..100).map(|n| edge.call(one_event(n)))).await;
        assert!(answers.iter().all(|a| a.status() == 202));
        let batched: Vec<_> = answers
            .iter()
            .filter(|a| a.0.log.send == Some(DeliveryRoute::GroupCommit))
            .collect();
        // Once the isolate's own rate says a flush would carry enough, the rest share one.
        assert!(
            !batched.is_empty() && batched.len() < 100,
            "{}",
            batched.len()
        );
        let n = u32::try_from(batched.len()).expect("count");
        assert!(batched.iter().all(|a| a.0.log.batch_requests == Some(n)));
        let direct = answers
            .iter()
            .filter(|a| a.0.log.send == Some(DeliveryRoute::Direct))
            .count();
        assert_eq!(direct + batched.len(), 100);
        assert_eq!(edge.queue.calls().len(), direct);
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
}

/// The request path with a spill queue: through an SQS outage every request still hears `202`
/// within the deadline, with its events in the spill queue, ids unchanged; a healthy SQS never
/// sees the spill used; and the breaker stops an outage from costing each request the deadline.
mod spill {
    use futures_util::future::join_all;
    use http::{Method, Request};
    use spillway_shared::Event;
    use uuid::Uuid;

    use crate::buffer::SendError;
    use crate::config::tests::KEY_WEB;
    use crate::deliver::{BreakerState, DeliveryRoute};
    use crate::handler::tests::edge::{Answer, Edge};
    use crate::ports::Runtime;
    use crate::testkit::{FakeQueue, FakeRuntime, Reply, SpillMode};

    fn events(body: &str) -> Request<Vec<u8>> {
        Request::builder()
            .method(Method::POST)
            .uri("https://ingest.example.com/v1/events")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {KEY_WEB}"))
            .body(body.as_bytes().to_vec())
            .expect("request")
    }

    fn three() -> Request<Vec<u8>> {
        events(r#"[{"type":"a"},{"type":"b","data":{"n":1}},{"type":"c"}]"#)
    }

    /// Milliseconds of virtual time since the edge started.
    fn elapsed(edge: &Edge) -> u64 {
        edge.rt.now_ms() - FakeRuntime::START_MS
    }

    fn spilled_ids(edge: &Edge) -> Vec<Uuid> {
        edge.spill()
            .spilled()
            .iter()
            .flat_map(|s| s.events.iter().map(|e| e.id))
            .collect()
    }

    fn spilled_events(edge: &Edge) -> Vec<Event> {
        edge.spill()
            .spilled()
            .iter()
            .flat_map(|s| s.events.iter())
            .map(|e| serde_json::from_str(&e.text).expect("an event"))
            .collect()
    }

    #[track_caller]
    fn accepted_with_spill(a: &Answer, spilled: usize) -> Vec<Uuid> {
        assert_eq!(a.status(), 202, "{}", a.0.response.body());
        assert_eq!(a.json()["spilled"], spilled, "{}", a.0.response.body());
        assert_eq!(a.0.log.spilled, Some(spilled));
        a.ids()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_sqs_spills_and_answers_202_within_the_deadline() {
        let edge = Edge::new().queue(FakeQueue::always(Reply::Hang)).spilling();
        let a = edge.call(three()).await;
        let ids = accepted_with_spill(&a, 3);
        assert!(
            elapsed(&edge) <= 8_000,
            "answered after {} ms",
            elapsed(&edge)
        );
        // SQS had 6 s of the 8; the spill the rest.
        assert!(elapsed(&edge) >= 6_000, "{}", elapsed(&edge));
        assert_eq!(spilled_ids(&edge), ids, "the ids the client was given");
        let spilled = edge.spill().spilled();
        assert_eq!(spilled.len(), 1);
        assert_eq!(spilled[0].key_id, "web");
        let evs = spilled_events(&edge);
        assert!(evs.iter().all(|e| e.key_id == "web"));
        assert_eq!(
            evs.iter()
                .map(|e| e.received_at.timestamp_millis() as u64)
                .collect::<Vec<_>>(),
            vec![FakeRuntime::START_MS; 3],
            "received when the request arrived, not when spilled"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sqs_failing_past_its_budget_spills() {
        let edge = Edge::new()
            .queue(FakeQueue::always(Reply::Error(SendError::Transient(
                "HTTP 500 InternalError".into(),
            ))))
            .spilling();
        let a = edge.call(three()).await;
        let ids = accepted_with_spill(&a, 3);
        assert_eq!(spilled_ids(&edge), ids);
        assert!(a.0.log.retries >= 1, "SQS was retried first: {:?}", a.0.log);
        assert!(elapsed(&edge) <= 8_000);
    }

    #[tokio::test(start_paused = true)]
    async fn only_what_sqs_did_not_take_is_spilled() {
        // Small messages: three events, three entries; SQS takes two, keeps failing the third.
        let failed = |id: &str| Reply::FailIds {
            ids: vec![id.into()],
            retryable: true,
            code: "InternalError".into(),
        };
        let edge = Edge::with(&[("MAX_EVENT_BYTES", "7000"), ("MAX_MESSAGE_BYTES", "8192")])
            .queue(FakeQueue::always(failed("m2")))
            .spilling();
        let big = "x".repeat(5_000);
        let body = format!(
            r#"[{{"type":"a","data":{{"p":"{big}"}}}},{{"type":"b","data":{{"p":"{big}"}}}},{{"type":"c","data":{{"p":"{big}"}}}}]"#
        );
        let a = edge.call(events(&body)).await;
        let ids = accepted_with_spill(&a, 1);
        assert_eq!(spilled_ids(&edge), vec![ids[2]]);
        let queued: Vec<Uuid> = edge.queued().iter().map(|e| e.id).collect();
        assert!(queued.contains(&ids[0]) && queued.contains(&ids[1]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_sqs_never_uses_the_spill() {
        let edge = Edge::new().spilling();
        for _ in 0..5 {
            let a = edge.call(three()).await;
            assert_eq!(a.status(), 202);
            assert!(a.json().get("spilled").is_none(), "{}", a.0.response.body());
            assert_eq!(a.0.log.spilled, None);
            assert_eq!(a.0.log.breaker, None);
        }
        assert!(edge.spill().batches().is_empty());
        assert_eq!(edge.queued().len(), 15);
        assert_eq!(elapsed(&edge), 0, "no wait added");
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_sends_requests_straight_to_the_spill_then_probes() {
        let edge = Edge::new().queue(FakeQueue::always(Reply::Hang)).spilling();
        for _ in 0..3 {
            accepted_with_spill(&edge.call(three()).await, 3);
        }
        let calls = edge.queue.calls().len();
        // Open: no SQS call, no wait.
        let before = elapsed(&edge);
        let a = edge.call(three()).await;
        accepted_with_spill(&a, 3);
        assert_eq!(a.0.log.breaker, Some(BreakerState::Open));
        assert_eq!(elapsed(&edge), before, "answered at once");
        assert_eq!(edge.queue.calls().len(), calls, "SQS not tried");

        // After the open interval, one request probes; SQS is still down, so it spills too.
        tokio::time::advance(std::time::Duration::from_millis(1_000)).await;
        let (probe, other) = tokio::join!(edge.call(three()), async {
            tokio::task::yield_now().await;
            edge.call(three()).await
        });
        assert_eq!(probe.0.log.breaker, Some(BreakerState::Probe));
        accepted_with_spill(&probe, 3);
        assert_eq!(
            other.0.log.breaker,
            Some(BreakerState::Open),
            "one probe at a time"
        );
        accepted_with_spill(&other, 3);
        assert!(edge.queue.calls().len() > calls);
        assert_eq!(spilled_ids(&edge).len(), 6 * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_successful_probe_closes_the_breaker() {
        // Three requests fail (the script), then SQS is back (the fallback acknowledges).
        let hang = || Reply::Hang;
        let edge = Edge::new()
            .queue(FakeQueue::new(vec![hang(), hang(), hang()]))
            .spilling();
        for _ in 0..3 {
            accepted_with_spill(&edge.call(three()).await, 3);
        }
        assert_eq!(
            edge.call(three()).await.0.log.breaker,
            Some(BreakerState::Open)
        );
        tokio::time::advance(std::time::Duration::from_millis(1_000)).await;
        let probe = edge.call(three()).await;
        assert_eq!(probe.0.log.breaker, Some(BreakerState::Probe));
        assert_eq!(probe.status(), 202);
        assert_eq!(probe.0.log.spilled, None, "SQS took it");
        let after = edge.call(three()).await;
        assert_eq!(after.0.log.breaker, None);
        assert_eq!(after.0.log.spilled, None);
        assert_eq!(
            spilled_ids(&edge).len(),
            4 * 3,
            "only the failed and the open ones"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_through_an_outage_all_answer_202() {
        let edge = Edge::new().queue(FakeQueue::always(Reply::Hang)).spilling();
        let answers =
            join_all((0..20).map(|n| edge.call(events(&format!(r#"{{"type":"t{n}"}}"#))))).await;
        let mut ids: Vec<Uuid> = answers
            .iter()
            .flat_map(|a| accepted_with_spill(a, 1))
            .collect();
        let mut spilled = spilled_ids(&edge);
        ids.sort();
        spilled.sort();
        assert_eq!(spilled, ids, "every accepted event spilled exactly once");
        assert!(elapsed(&edge) <= 8_000);
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_spill_fails_too_the_answer_is_503() {
        let edge = Edge::new().queue(FakeQueue::always(Reply::Hang)).spilling();
        edge.spill().set_mode(SpillMode::Down);
        let a = edge.call(three()).await;
        a.error(503, "queue_unavailable");
        assert_eq!(
            a.json()["error"]["unacknowledged"].as_array().map(Vec::len),
            Some(3)
        );
        assert!(a.0.log.spill_error.is_some());
        assert!(elapsed(&edge) <= 8_000);

        // A spill that never answers is cut at the request's deadline.
        let edge = Edge::new().queue(FakeQueue::always(Reply::Hang)).spilling();
        edge.spill().set_mode(SpillMode::Hang);
        let a = edge.call(three()).await;
        a.error(503, "queue_unavailable");
        assert_eq!(elapsed(&edge), 8_000, "exactly the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn events_sqs_rejects_are_not_spilled() {
        let edge = Edge::new()
            .queue(FakeQueue::always(Reply::Error(SendError::Permanent(
                "AccessDenied".into(),
            ))))
            .spilling();
        let a = edge.call(three()).await;
        a.error(503, "queue_unavailable");
        assert!(edge.spill().batches().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_spill_queue_an_outage_is_503_at_the_deadline() {
        let edge = Edge::new().queue(FakeQueue::always(Reply::Hang));
        let a = edge.call(three()).await;
        a.error(503, "queue_unavailable");
        assert_eq!(elapsed(&edge), 8_000, "SQS had the whole deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn batched_requests_spill_what_the_batcher_could_not_send() {
        let edge = Edge::new()
            .batching(FakeQueue::always(Reply::Hang))
            .spilling();
        let answers =
            join_all((0..5).map(|n| edge.call(events(&format!(r#"{{"type":"t{n}"}}"#))))).await;
        for a in &answers {
            accepted_with_spill(a, 1);
            assert_eq!(a.0.log.send, Some(DeliveryRoute::GroupCommit));
        }
        assert_eq!(spilled_ids(&edge).len(), 5);
        assert!(elapsed(&edge) <= 8_000);
    }

    #[tokio::test(start_paused = true)]
    async fn collector_routes_spill_too() {
        let edge = Edge::new().queue(FakeQueue::always(Reply::Hang)).spilling();
        let body = r#"{"type":"track","event":"Signed Up","userId":"u-1","messageId":"m-1"}"#;
        let req = Request::builder()
            .method(Method::POST)
            .uri("https://ingest.example.com/v1/track")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {KEY_WEB}"))
            .body(body.as_bytes().to_vec())
            .expect("request");
        let a = edge.call(req).await;
        assert_eq!(a.ok()["success"], true);
        assert_eq!(a.0.log.spilled, Some(1));
        assert_eq!(spilled_events(&edge)[0].event_type, "Signed Up");
    }

    #[tokio::test(start_paused = true)]
    async fn an_isolate_too_busy_to_keep_time_still_spills() {
        // Timers fire 3 s late: SQS's 6 s budget ends at 9 s, past the 8 s deadline. The spill
        // still gets its reserve, so the events are held and the answer is 202, late.
        let mut edge = Edge::new().queue(FakeQueue::always(Reply::Hang)).spilling();
        edge.rt = FakeRuntime::new().late_timers(3_000);
        let a = edge.call(three()).await;
        let ids = accepted_with_spill(&a, 3);
        assert_eq!(spilled_ids(&edge), ids);
        assert!(elapsed(&edge) >= 9_000, "{}", elapsed(&edge));
    }
}
