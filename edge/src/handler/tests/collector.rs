//! The collector routes end to end, natively: Segment's and PostHog's bodies as their SDKs send
//! them, every place a key may sit, the encodings, the answers those SDKs act on (200, 400,
//! 401, 429, 503), ids that survive SDK retries, and that nothing is enqueued on any refusal.

use base64::Engine as _;
use http::{Method, Request};
use serde_json::Value;
use spillway_shared::collector::message_id;
use spillway_shared::Source;
use spillway_support::gzip;
use uuid::Uuid;

use super::edge::Edge;
use crate::buffer::SendError;
use crate::config::tests::{KEY_APP, KEY_WEB};
use crate::testkit::{FakeLimiter, FakeQueue, Reply};

pub(crate) fn post(path: &str, body: impl Into<Vec<u8>>) -> http::request::Builder {
    let body: Vec<u8> = body.into();
    Request::builder()
        .method(Method::POST)
        .uri(format!("https://ingest.example.com{path}"))
        .header("content-length", body.len().to_string())
}

pub(crate) fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

/// A request as `@segment/analytics-node` sends it: Basic auth and `writeKey` in the body.
pub(crate) fn segment(path: &str, body: &str, key: &str) -> Request<Vec<u8>> {
    post(path, body)
        .header("content-type", "application/json")
        .header("authorization", basic(key))
        .body(body.as_bytes().to_vec())
        .expect("request")
}

pub(crate) fn segment_batch(sent_at: &str, key: &str) -> String {
    format!(
        r#"{{"batch":[
        {{"userId":"u-1","event":"Order Completed","properties":{{"total":12.5}},"type":"track",
          "timestamp":"2026-11-28T07:59:58.250Z","messageId":"node-next-1795852798250-abc"}},
        {{"anonymousId":"a-1","traits":{{"plan":"pro"}},"type":"identify",
          "messageId":"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10"}}
    ],"writeKey":"{key}","sentAt":"{sent_at}"}}"#
    )
}

// ---------------------------------------------------------------- Segment

#[tokio::test(start_paused = true)]
async fn segment_batch_is_200_and_maps_each_message_to_an_event() {
    let edge = Edge::new();
    let body = segment_batch("2026-11-28T08:00:00.000Z", KEY_WEB);
    let a = edge.call(segment("/v1/batch", &body, KEY_WEB)).await;
    assert_eq!(a.ok(), serde_json::json!({"success": true, "accepted": 2}));
    let events = edge.queued();
    assert_eq!(events.len(), 2);
    let (track, identify) = (&events[0], &events[1]);
    assert_eq!(track.event_type, "Order Completed");
    assert_eq!(identify.event_type, "identify");
    assert!(events.iter().all(|e| e.source == Source::Segment));
    assert!(events.iter().all(|e| e.key_id == "web"));
    assert_eq!(
        track.occurred_at.map(|t| t.to_rfc3339()),
        Some("2026-11-28T07:59:58.250+00:00".to_owned())
    );
    assert_eq!(identify.occurred_at, None);
    // The whole message is `data`, as sent.
    let data: Value = serde_json::from_str(track.data.get()).expect("json");
    assert_eq!(data["properties"]["total"], 12.5);
    assert_eq!(data["userId"], "u-1");
    assert_eq!(data["messageId"], "node-next-1795852798250-abc");
    // A UUID messageId is the id; any other derives one from the key id and the messageId.
    assert_eq!(
        identify.id,
        Uuid::parse_str("0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10").expect("uuid")
    );
    assert_eq!(
        track.id,
        message_id(Source::Segment, "web", "node-next-1795852798250-abc")
    );
}

#[tokio::test(start_paused = true)]
async fn segment_retry_with_a_new_sent_at_gives_the_same_ids() {
    let edge = Edge::new();
    let first = segment_batch("2026-11-28T08:00:00.000Z", KEY_WEB);
    let retry = segment_batch("2026-11-28T08:00:07.000Z", KEY_WEB);
    edge.call(segment("/v1/batch", &first, KEY_WEB)).await.ok();
    edge.call(segment("/v1/batch", &retry, KEY_WEB)).await.ok();
    let ids: Vec<Uuid> = edge.queued().iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[..2], ids[2..]);
    // Another key's identical message is another event.
    let other = Edge::new();
    let body = segment_batch("2026-11-28T08:00:00.000Z", KEY_APP);
    other.call(segment("/v1/batch", &body, KEY_APP)).await.ok();
    assert_ne!(other.queued()[0].id, ids[0]);
}

#[tokio::test(start_paused = true)]
async fn segment_key_in_any_one_place() {
    let body = r#"{"userId":"u","event":"Signed Up"}"#;
    // Basic user only.
    let edge = Edge::new();
    edge.call(segment("/v1/track", body, KEY_WEB)).await.ok();
    // `writeKey` in the body only, as text/plain from a browser.
    let with_key = format!(r#"{{"userId":"u","event":"Signed Up","writeKey":"{KEY_APP}"}}"#);
    let req = post("/v1/t", with_key.clone())
        .header("content-type", "text/plain")
        .body(with_key.into_bytes())
        .expect("request");
    edge.call(req).await.ok();
    // Bearer and X-Api-Key, as on /v1/events.
    for (name, value) in [
        ("authorization", format!("Bearer {KEY_WEB}")),
        ("x-api-key", KEY_WEB.to_owned()),
    ] {
        let req = post("/v1/track", body)
            .header(name, value)
            .body(body.as_bytes().to_vec())
            .expect("request");
        edge.call(req).await.ok();
    }
    let events = edge.queued();
    assert_eq!(
        events.iter().map(|e| e.key_id.clone()).collect::<Vec<_>>(),
        ["web", "app", "web", "web"]
    );
    assert!(events.iter().all(|e| e.event_type == "Signed Up"));
}

#[tokio::test(start_paused = true)]
async fn segment_wrong_missing_or_conflicting_keys_store_nothing() {
    let edge = Edge::new();
    let body = segment_batch("2026-11-28T08:00:00.000Z", "not-a-key-at-all");
    edge.call(segment("/v1/batch", &body, "not-a-key-at-all"))
        .await
        .error(401, "invalid_key");
    let no_key = r#"{"batch":[{"userId":"u","type":"page"}]}"#;
    let req = post("/v1/batch", no_key)
        .body(no_key.as_bytes().to_vec())
        .expect("request");
    edge.call(req).await.error(401, "missing_key");
    // The right key in the head and another in the body.
    let body = segment_batch("2026-11-28T08:00:00.000Z", KEY_APP);
    edge.call(segment("/v1/batch", &body, KEY_WEB))
        .await
        .error(401, "conflicting_keys");
    assert!(edge.queue.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn segment_single_call_with_another_type_is_400_naming_type() {
    let edge = Edge::new();
    let body = r#"{"userId":"u","type":"track","event":"Signed Up"}"#;
    for path in ["/v1/identify", "/v1/i"] {
        let err = edge
            .call(segment(path, body, KEY_WEB))
            .await
            .error(400, "invalid_field");
        assert_eq!(err["details"][0]["field"], "type", "{path}");
    }
    assert!(edge.queue.calls().is_empty());
    // The path's own type in the body is fine.
    edge.call(segment(
        "/v1/identify",
        r#"{"userId":"u","type":"identify"}"#,
        KEY_WEB,
    ))
    .await
    .ok();
    assert_eq!(edge.queued()[0].event_type, "identify");
}

#[tokio::test(start_paused = true)]
async fn idempotency_key_with_a_space_is_400_on_collector_routes() {
    let edge = Edge::new();
    let mut req = segment("/v1/track", r#"{"userId":"u","event":"e"}"#, KEY_WEB);
    req.headers_mut()
        .insert("idempotency-key", "a b".parse().expect("header"));
    edge.call(req).await.error(400, "invalid_idempotency_key");
    assert!(edge.queue.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn segment_single_paths_long_and_short() {
    let edge = Edge::new();
    for (path, expected) in [
        ("/v1/identify", "identify"),
        ("/v1/i", "identify"),
        ("/v1/page", "page"),
        ("/v1/p", "page"),
        ("/v1/screen", "screen"),
        ("/v1/s", "screen"),
        ("/v1/group", "group"),
        ("/v1/g", "group"),
        ("/v1/alias", "alias"),
        ("/v1/a", "alias"),
    ] {
        edge.call(segment(path, r#"{"userId":"u","previousId":"p"}"#, KEY_WEB))
            .await
            .ok();
        assert_eq!(
            edge.queued().last().map(|e| e.event_type.clone()),
            Some(expected.to_owned()),
            "{path}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn segment_gzip_by_header_and_by_magic_bytes() {
    let edge = Edge::new();
    let body = segment_batch("2026-11-28T08:00:00.000Z", KEY_WEB);
    let z = gzip(body.as_bytes());
    let req = post("/v1/batch", z.clone())
        .header("content-encoding", "gzip")
        .header("authorization", basic(KEY_WEB))
        .body(z.clone())
        .expect("request");
    edge.call(req).await.ok();
    let req = post("/v1/batch", z.clone())
        .header("authorization", basic(KEY_WEB))
        .body(z)
        .expect("request");
    edge.call(req).await.ok();
    assert_eq!(edge.queued().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn one_invalid_message_enqueues_nothing_and_is_named() {
    let edge = Edge::new();
    let body =
        r#"{"batch":[{"userId":"u","type":"track","event":"ok"},{"userId":"u","type":"track"}]}"#;
    let err = edge
        .call(segment("/v1/batch", body, KEY_WEB))
        .await
        .error(400, "missing_field");
    assert_eq!(err["index"], 1);
    assert_eq!(err["details"][0]["field"], "event");
    assert!(edge.queue.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn oversized_is_400_not_413() {
    let edge = Edge::new();
    let big = format!(
        r#"{{"batch":[{{"userId":"u","type":"track","event":"e","properties":{{"s":"{}"}}}}]}}"#,
        "x".repeat(40 * 1024)
    );
    edge.call(segment("/v1/batch", &big, KEY_WEB))
        .await
        .error(400, "event_too_large");
    let edge = Edge::with(&[
        ("MAX_BODY_BYTES", "1024"),
        ("MAX_DECOMPRESSED_BYTES", "4096"),
    ]);
    edge.call(segment("/v1/batch", &big, KEY_WEB))
        .await
        .error(400, "payload_too_large");
    let req = post("/batch", "{}")
        .header("authorization", format!("Bearer {KEY_WEB}"))
        .header("content-encoding", "br")
        .body(b"{}".to_vec())
        .expect("request");
    edge.call(req).await.error(400, "unsupported_encoding");
    assert!(edge.queue.calls().is_empty());
}

// ---------------------------------------------------------------- PostHog

fn posthog_batch(key: &str) -> String {
    format!(
        r#"{{"api_key":"{key}","batch":[
        {{"distinct_id":"u-1","event":"order completed","properties":{{"total":12.5,"$lib":"posthog-node"}},
          "type":"capture","timestamp":"2026-11-28T07:59:58.250Z","uuid":"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a20"}},
        {{"distinct_id":"u-1","event":"$identify","properties":{{"$set":{{"plan":"pro"}}}},
          "uuid":"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a21"}}
    ],"sent_at":"2026-11-28T08:00:00.000Z"}}"#
    )
}

#[tokio::test(start_paused = true)]
async fn posthog_batch_with_and_without_trailing_slash() {
    let edge = Edge::new();
    for path in [
        "/batch/",
        "/batch",
        "/capture",
        "/capture/",
        "/e",
        "/e/",
        "/i/v0/e",
        "/i/v0/e/",
    ] {
        let body = posthog_batch(KEY_WEB);
        let req = post(path, body.clone())
            .header("content-type", "application/json")
            .body(body.into_bytes())
            .expect("request");
        assert_eq!(
            edge.call(req).await.ok(),
            serde_json::json!({"status": 1, "accepted": 2}),
            "{path}"
        );
    }
    let events = edge.queued();
    assert_eq!(events.len(), 16);
    assert_eq!(events[0].event_type, "order completed");
    assert_eq!(events[1].event_type, "$identify");
    assert!(events
        .iter()
        .all(|e| e.source == Source::Posthog && e.key_id == "web"));
    // Every resend kept the SDK's uuids: two distinct ids in all.
    let ids: std::collections::HashSet<Uuid> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn posthog_compressions() {
    let edge = Edge::new();
    let json = posthog_batch(KEY_WEB);
    // posthog-node: Content-Encoding: gzip.
    let z = gzip(json.as_bytes());
    let req = post("/batch/", z.clone())
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(z.clone())
        .expect("request");
    edge.call(req).await.ok();
    // posthog-js: ?compression=gzip-js, text/plain.
    let req = post("/e/?compression=gzip-js&ver=1.0", z.clone())
        .header("content-type", "text/plain")
        .body(z)
        .expect("request");
    edge.call(req).await.ok();
    // Base64 in a form field.
    let b64 = base64::engine::general_purpose::STANDARD.encode(json.as_bytes());
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("data", &b64)
        .finish();
    let req = post("/e/?compression=base64", form.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.into_bytes())
        .expect("request");
    edge.call(req).await.ok();
    assert_eq!(edge.queued().len(), 6);
    let req = post("/e/?compression=base64", "%%%")
        .body(b"%%%".to_vec())
        .expect("request");
    edge.call(req).await.error(400, "invalid_base64");
    let req = post("/e/?compression=lz64", "x")
        .body(b"x".to_vec())
        .expect("request");
    edge.call(req).await.error(400, "unsupported_encoding");
}

#[tokio::test(start_paused = true)]
async fn posthog_key_in_an_event_or_the_query() {
    let edge = Edge::new();
    let one = format!(
        r#"{{"event":"$pageview","properties":{{"distinct_id":"d","token":"{KEY_APP}"}}}}"#
    );
    let req = post("/capture/", one.clone())
        .body(one.into_bytes())
        .expect("request");
    edge.call(req).await.ok();
    let bare = r#"[{"event":"a","distinct_id":"d"}]"#;
    let req = post(&format!("/i/v0/e/?token={KEY_WEB}"), bare)
        .body(bare.as_bytes().to_vec())
        .expect("request");
    edge.call(req).await.ok();
    let key_ids: Vec<String> = edge.queued().iter().map(|e| e.key_id.clone()).collect();
    assert_eq!(key_ids, ["app", "web"]);
    // Without a uuid, an event is named as on /v1/events: a fresh UUIDv7.
    assert_eq!(edge.queued()[1].id.get_version_num(), 7);
}

#[tokio::test(start_paused = true)]
async fn posthog_wrong_key_is_401() {
    let edge = Edge::new();
    let body = posthog_batch("phc_not_a_key_we_know");
    let req = post("/batch/", body.clone())
        .body(body.into_bytes())
        .expect("request");
    edge.call(req).await.error(401, "invalid_key");
    assert!(edge.queue.calls().is_empty());
}

// ---------------------------------------------------------------- answers SDKs retry

#[tokio::test(start_paused = true)]
async fn rate_limited_is_429_with_retry_after() {
    let mut edge = Edge::with(&[("RATE_LIMIT_PERIOD_SECS", "10")]);
    edge.limiter = Some(FakeLimiter::new(1));
    let body = posthog_batch(KEY_WEB);
    let req = || {
        post("/batch/", body.clone())
            .body(body.clone().into_bytes())
            .expect("request")
    };
    edge.call(req()).await.ok();
    let a = edge.call(req()).await;
    a.error(429, "rate_limited");
    assert_eq!(a.header("retry-after"), Some("10"));
    assert_eq!(edge.queue.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn queue_failure_is_503_with_retry_after() {
    let queue = FakeQueue::always(Reply::Error(SendError::Transient("HTTP 503".into())))
        .with_latency_ms(100);
    let mut edge = Edge::with(&[("SQS_DEADLINE_MS", "1000"), ("RETRY_AFTER_SECS", "3")]);
    edge.queue = queue;
    let body = segment_batch("2026-11-28T08:00:00.000Z", KEY_WEB);
    let a = edge.call(segment("/v1/batch", &body, KEY_WEB)).await;
    a.error(503, "queue_unavailable");
    assert_eq!(a.header("retry-after"), Some("3"));
}

#[tokio::test(start_paused = true)]
async fn routes_methods_cors_and_log_paths() {
    let edge = Edge::with(&[("ALLOWED_ORIGINS", "https://app.example.com")]);
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/batch")
        .header("origin", "https://app.example.com")
        .body(Vec::new())
        .expect("request");
    let a = edge.call(req).await;
    assert_eq!(a.status(), 204);
    assert_eq!(
        a.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    let mut req = segment("/v1/t", r#"{"userId":"u","event":"e"}"#, KEY_WEB);
    req.headers_mut()
        .insert("origin", "https://app.example.com".parse().expect("header"));
    let a = edge.call(req).await;
    a.ok();
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(a.0.log.path, "/v1/t");
    let get = Request::builder()
        .method(Method::GET)
        .uri("/batch/")
        .body(Vec::new())
        .expect("request");
    let a = edge.call(get).await;
    a.error(405, "method_not_allowed");
    assert_eq!(a.header("allow"), Some("POST, OPTIONS"));
    for path in ["/v1/batch/", "/v1/tracks", "/batchx", "/i/v0"] {
        let a = edge.call(segment(path, "{}", KEY_WEB)).await;
        a.error(404, "not_found");
        assert_eq!(a.0.log.path, "(unknown)");
    }
}
