//! The request path end to end, natively: every status and error code of the contract, auth,
//! gzip, idempotency, CORS, rate limiting, retries and the log line.

use http::{Method, Request};
use serde_json::{json, Value};
use spillway_shared::{derive_id, EdgeInfo};

use crate::buffer::{CallOutcome, FailedEntry, SendError};
use crate::config::tests::{config_with, KEY_APP, KEY_WEB};
use crate::config::ConfigError;
use crate::gate::UnreadableHeaders;
use crate::handler::misconfigured;
use crate::ports::BodySource;
use crate::test_edge::Edge;
use crate::testkit::{FakeLimiter, FakeQueue, FakeRuntime, Reply};

fn post(body: impl Into<Vec<u8>>) -> http::request::Builder {
    let body: Vec<u8> = body.into();
    Request::builder()
        .method(Method::POST)
        .uri("https://ingest.example.com/v1/events")
        .header("content-length", body.len().to_string())
}

fn authed(body: impl Into<Vec<u8>>) -> Request<Vec<u8>> {
    let body: Vec<u8> = body.into();
    post(body.clone())
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY_WEB}"))
        .body(body)
        .expect("request")
}

fn get(path: &str) -> Request<Vec<u8>> {
    Request::builder()
        .method(Method::GET)
        .uri(format!("https://ingest.example.com{path}"))
        .body(Vec::new())
        .expect("request")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("in memory");
    e.finish().expect("in memory")
}

/// A body that must never be read.
struct Unread;
impl BodySource for Unread {
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, String>> {
        panic!("the body must not be read")
    }
}

// ---------------------------------------------------------------- routes, health, CORS

#[tokio::test(start_paused = true)]
async fn healthz_is_ok_without_touching_the_queue() {
    let edge = Edge::new();
    let a = edge.call(get("/healthz")).await;
    assert_eq!(a.status(), 200);
    assert_eq!(a.json(), json!({"status": "ok"}));
    assert!(edge.queue.calls().is_empty());
    assert_eq!(a.0.log.status, 200);
}

#[tokio::test(start_paused = true)]
async fn unknown_path_is_404_and_wrong_method_is_405() {
    let edge = Edge::new();
    edge.call(get("/nope")).await.error(404, "not_found");
    let a = edge.call(get("/v1/events")).await;
    a.error(405, "method_not_allowed");
    assert_eq!(a.header("allow"), Some("POST, OPTIONS"));
    let del = Request::builder()
        .method(Method::DELETE)
        .uri("/healthz")
        .body(Vec::new())
        .expect("request");
    let a = edge.call(del).await;
    a.error(405, "method_not_allowed");
    assert_eq!(a.header("allow"), Some("GET, HEAD, OPTIONS"));
}

fn preflight(origin: &str) -> Request<Vec<u8>> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/events")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, idempotency-key",
        )
        .body(Vec::new())
        .expect("request")
}

#[tokio::test(start_paused = true)]
async fn preflight_from_allowed_and_other_origins() {
    let edge = Edge::new();
    let a = edge.call(preflight("https://app.example.com")).await;
    assert_eq!(a.status(), 204);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        a.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    let allowed = a
        .header("access-control-allow-headers")
        .expect("allow-headers");
    assert!(allowed.contains("idempotency-key") && allowed.contains("authorization"));
    assert_eq!(a.header("vary"), Some("Origin"));

    let a = edge.call(preflight("https://evil.example")).await;
    assert_eq!(a.status(), 204);
    assert_eq!(a.header("access-control-allow-origin"), None);
    assert_eq!(a.header("access-control-allow-methods"), None);

    let any = Edge::with(&[("ALLOWED_ORIGINS", "*")]);
    let a = any.call(preflight("https://whoever.example")).await;
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test(start_paused = true)]
async fn cors_headers_on_answers_and_errors() {
    let edge = Edge::new();
    let mut req = authed(r#"{"type":"click"}"#);
    req.headers_mut()
        .insert("origin", "https://app.example.com".parse().expect("header"));
    let a = edge.call(req).await;
    assert_eq!(a.status(), 202);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let exposed = a.header("access-control-expose-headers").expect("expose");
    assert!(exposed.contains("retry-after"));

    let req = post("{}")
        .header("origin", "https://app.example.com")
        .body(b"{}".to_vec())
        .expect("request");
    let a = edge.call(req).await;
    a.error(401, "missing_key");
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
}

// ---------------------------------------------------------------- auth

#[tokio::test(start_paused = true)]
async fn missing_key_is_401() {
    let edge = Edge::new();
    let a = edge.call(post("{}").body(Unread).expect("request")).await;
    a.error(401, "missing_key");
    // Another scheme is not a key.
    let req = post("{}")
        .header("authorization", format!("Basic {KEY_WEB}"))
        .body(Unread)
        .expect("request");
    edge.call(req).await.error(401, "missing_key");
    assert!(edge.queue.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn wrong_key_is_401_and_never_logged() {
    let edge = Edge::new();
    for req in [
        post("{}")
            .header("authorization", "Bearer not-the-key-0123456789")
            .body(Unread),
        post("{}")
            .header("x-api-key", format!("{KEY_WEB}x"))
            .body(Unread),
        Request::builder()
            .method(Method::POST)
            .uri("/v1/events?key=guess-guess-guess-guess")
            .body(Unread),
    ] {
        let a = edge.call(req.expect("request")).await;
        a.error(401, "invalid_key");
        let line = a.0.log.to_json();
        assert!(
            !line.contains("guess") && !line.contains("not-the-key"),
            "{line}"
        );
        assert_eq!(a.0.log.key_id, None);
    }
}

#[tokio::test(start_paused = true)]
async fn each_key_form_is_accepted() {
    let edge = Edge::new();
    let body = br#"{"type":"click"}"#.to_vec();
    let forms = [
        post(body.clone()).header("authorization", format!("Bearer {KEY_WEB}")),
        post(body.clone()).header("x-api-key", KEY_APP),
        // sendBeacon: text/plain and the key in the query string.
        Request::builder()
            .method(Method::POST)
            .uri(format!(
                "https://ingest.example.com/v1/events?key={KEY_WEB}"
            ))
            .header("content-type", "text/plain;charset=UTF-8"),
    ];
    let mut key_ids = Vec::new();
    for form in forms {
        let a = edge.call(form.body(body.clone()).expect("request")).await;
        assert_eq!(a.status(), 202, "{}", a.0.response.body());
        let line = a.0.log.to_json();
        assert!(!line.contains(KEY_WEB) && !line.contains(KEY_APP), "{line}");
        assert_eq!(a.0.log.path, "/v1/events");
        key_ids.push(a.0.log.key_id.clone().expect("key id"));
    }
    assert_eq!(key_ids, vec!["web", "app", "web"]);
    let stored: Vec<String> = edge.queued().into_iter().map(|e| e.key_id).collect();
    assert_eq!(stored, vec!["web", "app", "web"]);
}

#[tokio::test(start_paused = true)]
async fn two_different_keys_are_401_conflicting_keys_in_any_combination() {
    let edge = Edge::new();
    let bearer = |k: &str| ("authorization", format!("Bearer {k}"));
    let api_key = |k: &str| ("x-api-key", k.to_owned());
    let wrong = "not-a-key-0123456789";
    // (headers, query): each pair of places, valid with wrong and valid with another valid key.
    let cases: Vec<(Vec<(&str, String)>, String)> = vec![
        (vec![bearer(KEY_WEB), api_key(wrong)], String::new()),
        (vec![bearer(wrong), api_key(KEY_WEB)], String::new()),
        (vec![bearer(KEY_WEB), api_key(KEY_APP)], String::new()),
        (vec![bearer(KEY_WEB)], format!("?key={wrong}")),
        (vec![api_key(KEY_WEB)], format!("?key={wrong}")),
        (vec![api_key(KEY_WEB)], format!("?key={KEY_APP}")),
        (vec![], format!("?key={KEY_WEB}&key={wrong}")),
        (vec![], format!("?key={KEY_WEB}&key={KEY_APP}")),
    ];
    for (headers, query) in cases {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("https://ingest.example.com/v1/events{query}"));
        for (name, value) in &headers {
            req = req.header(*name, value.as_str());
        }
        let a = edge.call(req.body(Unread).expect("request")).await;
        a.error(401, "conflicting_keys");
        let line = a.0.log.to_json();
        assert!(!line.contains(KEY_WEB) && !line.contains(wrong), "{line}");
    }
    // Two headers of one name count too.
    let mut req = post("{}").body(Unread).expect("request");
    req.headers_mut()
        .append("x-api-key", KEY_WEB.parse().expect("header"));
    req.headers_mut()
        .append("x-api-key", KEY_APP.parse().expect("header"));
    edge.call(req).await.error(401, "conflicting_keys");
    assert!(edge.queue.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_same_key_in_several_places_is_one_key() {
    let edge = Edge::new();
    let body = br#"{"type":"click"}"#.to_vec();
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "https://ingest.example.com/v1/events?key={KEY_WEB}&key={KEY_WEB}"
        ))
        .header("authorization", format!("Bearer {KEY_WEB}"))
        .header("x-api-key", KEY_WEB)
        .body(body)
        .expect("request");
    let a = edge.call(req).await;
    assert_eq!(a.status(), 202, "{}", a.0.response.body());
    assert_eq!(edge.queued()[0].key_id, "web");
}

// ---------------------------------------------------------------- accepted requests

#[tokio::test(start_paused = true)]
async fn single_event_is_enriched_packed_and_acknowledged() {
    let edge = Edge::new();
    let mut req = authed(
        r#"{"type":"page_view","timestamp":"2026-11-28T07:59:00+01:00","data":{"path":"/"}}"#,
    );
    req.extensions_mut().insert(EdgeInfo {
        colo: Some("FRA".into()),
        country: Some("DE".into()),
    });
    let a = edge.call(req).await;
    assert_eq!(a.status(), 202);
    let ids = a.ids();
    assert_eq!(a.json()["accepted"], 1);
    assert_eq!(ids[0].get_version_num(), 7, "generated ids are UUIDv7");

    let events = edge.queued();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.id, ids[0]);
    assert_eq!(e.event_type, "page_view");
    assert_eq!(
        e.occurred_at.map(|t| t.to_rfc3339()),
        Some("2026-11-28T06:59:00+00:00".to_owned())
    );
    assert_eq!(
        e.received_at.timestamp_millis() as u64,
        FakeRuntime::START_MS
    );
    assert_eq!(e.key_id, "web");
    assert_eq!(
        e.edge,
        Some(EdgeInfo {
            colo: Some("FRA".into()),
            country: Some("DE".into())
        })
    );
    assert_eq!(e.data.get(), r#"{"path":"/"}"#);
    assert_eq!(edge.queue.groups(), vec!["web".to_owned()]);

    let log = &a.0.log;
    assert_eq!(
        (log.status, log.events, log.sqs_calls, log.retries),
        (202, 1, 1, 0)
    );
    assert_eq!(log.colo.as_deref(), Some("FRA"));
    assert!(log.bytes > 0);
    assert!(!log.to_json().contains("page_view"), "no payloads in logs");
}

#[tokio::test(start_paused = true)]
async fn array_and_ndjson_bodies() {
    let edge = Edge::new();
    let a = edge
        .call(authed(
            r#"[{"type":"a"},{"type":"b","data":{}},{"type":"c"}]"#,
        ))
        .await;
    assert_eq!(a.status(), 202);
    assert_eq!(a.json()["accepted"], 3);

    let nd = b"{\"type\":\"d\"}\n\n{\"type\":\"e\"}\r\n".to_vec();
    let req = post(nd.clone())
        .header("content-type", "application/x-ndjson")
        .header("x-api-key", KEY_WEB)
        .body(nd)
        .expect("request");
    let a = edge.call(req).await;
    assert_eq!(a.status(), 202, "{}", a.0.response.body());
    assert_eq!(a.json()["accepted"], 2);
    let types: Vec<String> = edge.queued().into_iter().map(|e| e.event_type).collect();
    assert_eq!(types, vec!["a", "b", "c", "d", "e"]);
}

#[tokio::test(start_paused = true)]
async fn many_events_go_out_in_several_batches() {
    let edge = Edge::with(&[
        ("MAX_MESSAGE_BYTES", "70000"),
        ("MAX_BATCH_BYTES", "140000"),
    ]);
    let pad = "x".repeat(1500);
    let events: Vec<Value> = (0..300)
        .map(|i| json!({"type": "t", "data": {"i": i, "pad": pad}}))
        .collect();
    let a = edge
        .call(authed(serde_json::to_vec(&events).expect("json")))
        .await;
    assert_eq!(a.status(), 202);
    let ids = a.ids();
    assert_eq!(ids.len(), 300);
    let queued = edge.queued();
    assert_eq!(
        queued.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids,
        "every event once, in order"
    );
    assert!(a.0.log.sqs_calls >= 2, "{:?}", a.0.log);
}

#[tokio::test(start_paused = true)]
async fn gzip_body_is_accepted() {
    let edge = Edge::new();
    let z = gzip(br#"[{"type":"a"},{"type":"b"}]"#);
    let req = post(z.clone())
        .header("content-encoding", "gzip")
        .header("x-api-key", KEY_WEB)
        .body(z.clone())
        .expect("request");
    let a = edge.call(req).await;
    assert_eq!(a.status(), 202);
    assert_eq!(a.json()["accepted"], 2);
    assert_eq!(a.0.log.bytes, z.len(), "bytes as received");
}

// ---------------------------------------------------------------- idempotency

fn with_idempotency(body: &str, key: &str, api_key: &str) -> Request<Vec<u8>> {
    post(body)
        .header("x-api-key", api_key)
        .header("idempotency-key", key)
        .body(body.as_bytes().to_vec())
        .expect("request")
}

#[tokio::test(start_paused = true)]
async fn idempotency_key_derives_stable_ids() {
    let edge = Edge::new();
    let body = r#"[{"type":"a"},{"type":"b"}]"#;
    let first = edge
        .call(with_idempotency(body, "req-1", KEY_WEB))
        .await
        .ids();
    let again = edge
        .call(with_idempotency(body, "req-1", KEY_WEB))
        .await
        .ids();
    assert_eq!(first, again, "a retried request maps to the same ids");
    assert_eq!(
        first,
        vec![
            derive_id("web", "req-1", 0, r#"{"type":"a"}"#),
            derive_id("web", "req-1", 1, r#"{"type":"b"}"#)
        ]
    );
    let other = edge
        .call(with_idempotency(body, "req-2", KEY_WEB))
        .await
        .ids();
    assert_ne!(first[0], other[0]);
    let other_tenant = edge
        .call(with_idempotency(body, "req-1", KEY_APP))
        .await
        .ids();
    assert_ne!(first[0], other_tenant[0], "key ids keep tenants apart");
}

#[tokio::test(start_paused = true)]
async fn reusing_an_idempotency_key_for_another_body_stores_both() {
    // Before: the second body got `202` with the first body's ids and was dropped by the
    // consumer's ON CONFLICT DO NOTHING.
    let edge = Edge::new();
    let first = edge
        .call(with_idempotency(
            r#"[{"type":"a"},{"type":"b"}]"#,
            "req-1",
            KEY_WEB,
        ))
        .await
        .ids();
    let second = edge
        .call(with_idempotency(
            r#"[{"type":"a"},{"type":"changed"}]"#,
            "req-1",
            KEY_WEB,
        ))
        .await
        .ids();
    assert_eq!(
        first[0], second[0],
        "the same event at the same position is the same event"
    );
    assert_ne!(first[1], second[1], "a different event gets its own id");
    let queued = edge.queued();
    assert_eq!(queued.len(), 4);
    let changed = queued.iter().find(|e| e.id == second[1]).expect("queued");
    assert_eq!(changed.event_type, "changed");
}

#[tokio::test(start_paused = true)]
async fn data_reaches_the_queue_exactly_as_sent() {
    let edge = Edge::new();
    let data = r#"{ "pi": 3.14159265358979323846, "big": 18446744073709551616,
        "wide": 123456789012345678901234567890, "tiny": 1e-400, "huge": 1e400, "neg0": -0,
        "esc": "\u00e9\/\ud83d\ude00" }"#;
    edge.call(authed(format!(r#"{{"type":"t","data":{data}}}"#)))
        .await
        .ids();
    assert_eq!(edge.queued()[0].data.get(), data);
}

#[tokio::test(start_paused = true)]
async fn a_mistyped_path_is_logged_as_unknown_without_the_key() {
    let edge = Edge::new();
    let req = post(r#"{"type":"a"}"#)
        .uri(format!(
            "https://ingest.example.com/v1/events&key={KEY_WEB}"
        ))
        .body(br#"{"type":"a"}"#.to_vec())
        .expect("request");
    let a = edge.call(req).await;
    a.error(404, "not_found");
    assert_eq!(a.0.log.path, "(unknown)");
    assert!(
        !a.0.log.to_json().contains(KEY_WEB),
        "{}",
        a.0.log.to_json()
    );
    assert!(!a.0.response.body().contains(KEY_WEB));
}

#[tokio::test(start_paused = true)]
async fn a_header_the_runtime_could_not_represent_is_400_not_ignored() {
    // Under workerd an `Idempotency-Key` with a DEL byte cannot become an `http` header value;
    // the adapter records its name (crate::adapter::to_http).
    let edge = Edge::new();
    for name in ["idempotency-key", "content-type", "authorization"] {
        let mut req = authed(r#"{"type":"a"}"#);
        req.extensions_mut()
            .insert(UnreadableHeaders(vec![name.to_owned()]));
        let a = edge.call(req).await;
        let err = a.error(400, "invalid_header");
        assert!(
            err["message"].as_str().is_some_and(|m| m.contains(name)),
            "{err}"
        );
    }
    assert!(edge.queued().is_empty());
}

#[tokio::test(start_paused = true)]
async fn client_ids_are_kept_and_others_generated() {
    let edge = Edge::new();
    let id = "0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10";
    let body = format!(r#"[{{"type":"a","id":"{id}"}},{{"type":"b"}},{{"type":"c"}}]"#);
    let ids = edge.call(authed(body.clone())).await.ids();
    assert_eq!(ids[0].to_string(), id);
    assert_eq!(ids[1].get_version_num(), 7);
    assert_ne!(ids[1], ids[2]);
    // With an Idempotency-Key, client ids still win; the others derive from their position.
    let a = edge.call(with_idempotency(&body, "k", KEY_WEB)).await;
    let ids = a.ids();
    assert_eq!(ids[0].to_string(), id);
    assert_eq!(ids[2], derive_id("web", "k", 2, r#"{"type":"c"}"#));
    // Without either, a repeated request gets new ids.
    let again = edge.call(authed(body)).await.ids();
    assert_ne!(again[1], edge.queued()[1].id);
}

#[tokio::test(start_paused = true)]
async fn invalid_idempotency_key_is_400() {
    let edge = Edge::new();
    let long = "k".repeat(256);
    edge.call(with_idempotency(r#"{"type":"a"}"#, &long, KEY_WEB))
        .await
        .error(400, "invalid_idempotency_key");
    // Visible ASCII, as documented: a space inside is not.
    for bad in ["a b", "req\t1"] {
        edge.call(with_idempotency(r#"{"type":"a"}"#, bad, KEY_WEB))
            .await
            .error(400, "invalid_idempotency_key");
    }
    assert!(edge.queue.calls().is_empty());
}

// ---------------------------------------------------------------- 400

#[tokio::test(start_paused = true)]
async fn malformed_and_invalid_events_are_400_and_enqueue_nothing() {
    let edge = Edge::new();
    let cases: Vec<(&str, &str, Option<u64>, Option<&str>)> = vec![
        ("{", "invalid_json", None, None),
        ("[{\"type\":\"a\"},", "invalid_json", None, None),
        ("[]", "no_events", None, None),
        ("[{\"type\":\"a\"}, 42]", "invalid_event", Some(1), None),
        ("[{\"type\":\"a\"}, {\"type\":\"b\",\"user\":1}]", "unknown_field", Some(1), Some("user")),
        ("{\"data\":{}}", "missing_field", Some(0), Some("type")),
        ("{\"type\":\"\"}", "invalid_field", Some(0), Some("type")),
        ("{\"type\":\"a\",\"id\":\"nope\"}", "invalid_field", Some(0), Some("id")),
        ("{\"type\":\"a\",\"data\":[]}", "invalid_field", Some(0), Some("data")),
        ("{\"type\":\"a\",\"timestamp\":\"yesterday\"}", "invalid_field", Some(0), Some("timestamp")),
        ("{\"type\":\"a\",\"timestamp\":\"1999-01-01T00:00:00Z\"}", "timestamp_out_of_range", Some(0), Some("timestamp")),
        (
            "[{\"type\":\"a\",\"id\":\"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10\"},{\"type\":\"b\",\"id\":\"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10\"}]",
            "duplicate_id",
            Some(1),
            Some("id"),
        ),
    ];
    for (body, code, index, field) in cases {
        let a = edge.call(authed(body)).await;
        let err = a.error(400, code);
        assert_eq!(err["index"].as_u64(), index, "{body}: {err}");
        if let Some(field) = field {
            assert_eq!(err["details"][0]["field"], field, "{body}: {err}");
            assert!(
                err["message"].as_str().unwrap_or("").contains(field),
                "{body}: {err}"
            );
        }
    }
    let deep = format!(
        "{{\"type\":\"a\",\"data\":{}1{}}}",
        "{\"a\":".repeat(40),
        "}".repeat(40)
    );
    edge.call(authed(deep)).await.error(400, "too_deep");
    assert!(edge.queue.calls().is_empty(), "no 4xx enqueues anything");
}

#[tokio::test(start_paused = true)]
async fn all_problems_are_listed_in_details() {
    let edge = Edge::new();
    let a = edge
        .call(authed(r#"[{"type":"ok"},{"x":1},{"type":"b","y":2}]"#))
        .await;
    let err = a.error(400, "unknown_field");
    assert_eq!(err["index"], 1);
    let details = err["details"].as_array().expect("details");
    let codes: Vec<(&str, u64)> = details
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or(""),
                d["index"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ("unknown_field", 1),
            ("missing_field", 1),
            ("unknown_field", 2)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn ndjson_error_names_the_event_and_line() {
    let edge = Edge::new();
    let body = b"{\"type\":\"a\"}\n{\"type\":\n".to_vec();
    let req = post(body.clone())
        .header("content-type", "application/x-ndjson; charset=utf-8")
        .header("x-api-key", KEY_WEB)
        .body(body)
        .expect("request");
    let err = edge.call(req).await.error(400, "invalid_json");
    assert_eq!(err["index"], 1);
    assert!(
        err["message"].as_str().unwrap_or("").starts_with("line 2"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn corrupt_gzip_is_400() {
    let edge = Edge::new();
    let mut z = gzip(br#"{"type":"a"}"#);
    let n = z.len();
    z[n - 6] ^= 0x55; // the CRC
    let req = post(z.clone())
        .header("content-encoding", "gzip")
        .header("x-api-key", KEY_WEB)
        .body(z)
        .expect("request");
    edge.call(req).await.error(400, "invalid_gzip");
    assert!(edge.queue.calls().is_empty());
}

// ---------------------------------------------------------------- 413

#[tokio::test(start_paused = true)]
async fn declared_length_over_the_limit_is_refused_before_reading() {
    let edge = Edge::with(&[("MAX_BODY_BYTES", "1000")]);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/events")
        .header("x-api-key", KEY_WEB)
        .header("content-length", "1001")
        .body(Unread)
        .expect("request");
    edge.call(req).await.error(413, "payload_too_large");
}

#[tokio::test(start_paused = true)]
async fn actual_bytes_over_the_limit_are_413() {
    let edge = Edge::with(&[("MAX_BODY_BYTES", "1000")]);
    let body = format!(r#"{{"type":"a","data":{{"p":"{}"}}}}"#, "x".repeat(1000));
    // No (or a lying) Content-Length: the bytes themselves are counted.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/events")
        .header("x-api-key", KEY_WEB)
        .body(body.into_bytes())
        .expect("request");
    edge.call(req).await.error(413, "payload_too_large");
}

#[tokio::test(start_paused = true)]
async fn gzip_bomb_is_413_quickly() {
    let edge = Edge::new();
    let zeros = vec![b' '; 64 * 1024 * 1024];
    let bomb = gzip(&zeros);
    assert!(bomb.len() < 100 * 1024);
    let req = post(bomb.clone())
        .header("content-encoding", "gzip")
        .header("x-api-key", KEY_WEB)
        .body(bomb)
        .expect("request");
    let started = std::time::Instant::now();
    let err = edge.call(req).await.error(413, "payload_too_large");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or("")
            .contains("decompressed"),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn event_too_large_and_too_many_events_are_413() {
    let edge = Edge::with(&[("MAX_EVENT_BYTES", "1024"), ("MAX_EVENTS_PER_REQUEST", "3")]);
    let big = format!(
        r#"[{{"type":"a"}},{{"type":"b","data":{{"p":"{}"}}}}]"#,
        "x".repeat(1100)
    );
    let err = edge.call(authed(big)).await.error(413, "event_too_large");
    assert_eq!(err["index"], 1);
    let many = r#"[{"type":"a"},{"type":"a"},{"type":"a"},{"type":"a"}]"#;
    let err = edge.call(authed(many)).await.error(413, "too_many_events");
    assert!(err.get("index").is_none());
    // The limit is on the event as sent: enrichment may add up to ENRICHMENT_BYTES on top.
    let near = format!(r#"{{"type":"a","data":{{"p":"{}"}}}}"#, "x".repeat(990));
    assert_eq!(edge.call(authed(near)).await.status(), 202);
    // The size is the client's, not a re-encoding's: `9e15` once grew to `9000000000000000.0`
    // and an event within the limit was refused. `data` is now kept as sent.
    let numbers = vec!["9e15"; 150].join(",");
    let event = format!(r#"{{"type":"b","data":{{"n":[{numbers}]}}}}"#);
    assert!(event.len() < 1024);
    let id = edge.call(authed(event.clone())).await.ids()[0];
    let queued = edge.queued();
    let stored = queued.iter().find(|e| e.id == id).expect("queued");
    assert_eq!(stored.data.get(), format!(r#"{{"n":[{numbers}]}}"#));
}

// ---------------------------------------------------------------- 415

#[tokio::test(start_paused = true)]
async fn unsupported_content_type_and_encoding_are_415() {
    let edge = Edge::new();
    for ct in [
        "application/x-www-form-urlencoded",
        "application/json; charset=iso-8859-1",
        "text/csv",
    ] {
        let req = post("{}")
            .header("content-type", ct)
            .header("x-api-key", KEY_WEB)
            .body(Unread)
            .expect("request");
        edge.call(req).await.error(415, "unsupported_media_type");
    }
    let req = post("{}")
        .header("content-encoding", "br")
        .header("x-api-key", KEY_WEB)
        .body(Unread)
        .expect("request");
    edge.call(req).await.error(415, "unsupported_encoding");
}

// ---------------------------------------------------------------- 429

#[tokio::test(start_paused = true)]
async fn rate_limit_is_per_key_and_says_when_to_retry() {
    let mut edge = Edge::with(&[("RATE_LIMIT_PERIOD_SECS", "10")]);
    edge.limiter = Some(FakeLimiter::new(1));
    assert_eq!(edge.call(authed(r#"{"type":"a"}"#)).await.status(), 202);
    let a = edge.call(authed(r#"{"type":"a"}"#)).await;
    a.error(429, "rate_limited");
    assert_eq!(a.header("retry-after"), Some("10"));
    let asked = edge.limiter.as_ref().map(|l| l.asked.borrow().clone());
    assert_eq!(asked, Some(vec!["web".to_owned(), "web".to_owned()]));
    assert_eq!(edge.queue.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limiter_outage_fails_open() {
    let mut edge = Edge::new();
    let mut limiter = FakeLimiter::new(0);
    limiter.down = true;
    edge.limiter = Some(limiter);
    let a = edge.call(authed(r#"{"type":"a"}"#)).await;
    assert_eq!(a.status(), 202);
    assert!(a
        .0
        .log
        .note
        .as_deref()
        .unwrap_or("")
        .contains("rate limiter"));
}

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

// ---------------------------------------------------------------- 500

#[tokio::test(start_paused = true)]
async fn bad_configuration_is_500_misconfigured_without_secrets() {
    let rt = FakeRuntime::new();
    let err: ConfigError = config_with(&[("INGEST_KEYS", "web:tooshort")]).expect_err("invalid");
    let h = misconfigured(&authed(r#"{"type":"a"}"#), &err, &rt);
    assert_eq!(h.response.status().as_u16(), 500);
    let body: Value = serde_json::from_str(h.response.body()).expect("json");
    assert_eq!(body["error"]["code"], "misconfigured");
    let line = h.log.to_json();
    assert!(line.contains("INGEST_KEYS"), "{line}");
    assert!(
        !line.contains("tooshort") && !h.response.body().contains("tooshort"),
        "{line}"
    );
}

// ---------------------------------------------------------------- log line

#[tokio::test(start_paused = true)]
async fn one_log_line_with_the_request_id() {
    let edge = Edge::new();
    let mut req = authed(r#"{"type":"a","data":{"email":"someone@example.com"}}"#);
    req.headers_mut()
        .insert("cf-ray", "8f1a2b3c4d5e6f70-FRA".parse().expect("header"));
    let a = edge.call(req).await;
    assert_eq!(a.header("x-request-id"), Some("8f1a2b3c4d5e6f70-FRA"));
    let line: Value = serde_json::from_str(&a.0.log.to_json()).expect("JSON line");
    for field in [
        "request_id",
        "key_id",
        "status",
        "events",
        "bytes",
        "sqs_calls",
        "retries",
        "duration_ms",
    ] {
        assert!(line.get(field).is_some(), "{field} missing from {line}");
    }
    assert_eq!(line["request_id"], "8f1a2b3c4d5e6f70-FRA");
    assert!(!a.0.log.to_json().contains("someone@example.com"));
}

// ---------------------------------------------------------------- any input

mod any_input {
    use super::*;
    use proptest::prelude::*;

    fn run(body: Vec<u8>, content_type: &str, gzip_it: bool) -> (u16, Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(async {
            let edge = Edge::new();
            let body = if gzip_it { gzip(&body) } else { body };
            let mut req = post(body.clone())
                .header("content-type", content_type)
                .header("x-api-key", KEY_WEB);
            if gzip_it {
                req = req.header("content-encoding", "gzip");
            }
            let a = edge.call(req.body(body).expect("request")).await;
            let status = a.status();
            (status, a.json())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Whatever the body, the answer is a contract status with a JSON body, never a panic.
        #[test]
        fn arbitrary_bytes_get_a_contract_answer(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            ct in prop::sample::select(vec!["application/json", "application/x-ndjson", "text/plain"]),
            gz in any::<bool>(),
        ) {
            let (status, json) = run(body, ct, gz);
            prop_assert!([202, 400, 413].contains(&status), "{status} {json}");
            if status != 202 {
                prop_assert!(json["error"]["code"].is_string(), "{json}");
            }
        }

        /// Event-shaped JSON with random fields and values: accepted exactly when valid.
        #[test]
        fn event_shaped_json(
            events in proptest::collection::vec(
                proptest::collection::btree_map(
                    prop::sample::select(vec!["type", "id", "timestamp", "data", "extra"]),
                    prop_oneof![
                        Just(json!("a")),
                        Just(json!("")),
                        Just(json!(1)),
                        Just(json!({})),
                        Just(json!({"k": [1, 2]})),
                        Just(json!("2026-11-28T08:00:00Z")),
                        Just(json!("0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10")),
                        Just(Value::Null),
                    ],
                    0..5,
                ),
                1..6,
            ),
        ) {
            let body = serde_json::to_vec(&events).expect("json");
            let (status, json) = run(body, "application/json", false);
            prop_assert!([202, 400].contains(&status), "{status} {json}");
            if status == 202 {
                prop_assert_eq!(json["accepted"].as_u64(), Some(events.len() as u64));
            }
        }
    }
}

// ---------------------------------------------------------------- the bad-input matrix

/// Every row: what is sent, and the status and code that must come back. No error row may
/// enqueue anything; the rows just under a limit must be accepted. Every row is sent with
/// `Authorization: Bearer` and the web key, to `/v1/events` unless it names another path.
mod bad_input_matrix {
    use super::*;

    /// Small limits, so "just over" and "just under" are cheap to build.
    const LIMITS: &[(&str, &str)] = &[
        ("MAX_BODY_BYTES", "8192"),
        ("MAX_DECOMPRESSED_BYTES", "16384"),
        ("MAX_EVENT_BYTES", "1024"),
        ("MAX_EVENTS_PER_REQUEST", "10"),
    ];

    /// Limits as the edge ships them, for rows that need them.
    const DEFAULT_LIMITS: &[(&str, &str)] = &[];

    struct Row {
        name: &'static str,
        /// Path and query (`/v1/events`; the collector routes answer `200` where it answers
        /// `202`).
        path: String,
        limits: &'static [(&'static str, &'static str)],
        content_type: &'static str,
        encoding: Option<&'static str>,
        /// `Content-Length` to declare, when not the body's real length.
        declared_len: Option<usize>,
        body: Vec<u8>,
        /// Further headers.
        headers: Vec<(&'static str, String)>,
        /// Headers the runtime could not represent (recorded by the adapter).
        unreadable: &'static [&'static str],
        status: u16,
        code: &'static str,
        /// Text no queued message may hold (an ingest key that must not be stored).
        never_queued: Option<&'static str>,
    }

    fn row(name: &'static str, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Row {
        Row {
            name,
            path: "/v1/events".to_owned(),
            limits: LIMITS,
            content_type: "application/json",
            encoding: None,
            declared_len: None,
            body: body.into(),
            headers: Vec::new(),
            unreadable: &[],
            status,
            code,
            never_queued: None,
        }
    }

    /// A row for another route (collector bodies are sent as `application/json`).
    fn at(path: &str, r: Row) -> Row {
        Row {
            path: path.to_owned(),
            ..r
        }
    }

    /// An event whose JSON is exactly `len` bytes.
    fn event_of_len(len: usize) -> String {
        let base = r#"{"type":"t","data":{"p":""}}"#;
        let pad = "x".repeat(len - base.len());
        let e = format!(r#"{{"type":"t","data":{{"p":"{pad}"}}}}"#);
        assert_eq!(e.len(), len);
        e
    }

    /// A header value as the runtime hands it over: one byte per character (Latin-1).
    fn latin1(s: &str) -> Vec<u8> {
        s.chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect()
    }

    fn nested(levels: usize) -> String {
        format!(
            r#"{{"type":"t","data":{{"a":{}1{}}}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    }

    fn array_of(n: usize, event: &str) -> String {
        format!("[{}]", vec![event; n].join(","))
    }

    fn rows() -> Vec<Row> {
        let day = 86_400_000u64;
        let far_future = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(
            (FakeRuntime::START_MS + 3 * day) as i64,
        )
        .expect("time")
        .to_rfc3339();
        let far_past = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(
            (FakeRuntime::START_MS - 400 * day) as i64,
        )
        .expect("time")
        .to_rfc3339();
        let plain = br#"{"type":"t"}"#.to_vec();
        let mut truncated_gzip = gzip(&plain);
        truncated_gzip.truncate(truncated_gzip.len() - 6);
        vec![
            row(
                "invalid UTF-8 body",
                b"\xff\xfe\x00\x01".to_vec(),
                400,
                "invalid_json",
            ),
            row(
                "invalid UTF-8 inside a string",
                b"{\"type\":\"\xc3\x28\"}".to_vec(),
                400,
                "invalid_json",
            ),
            row(
                "UTF-16 BOM",
                b"\xff\xfe{\x00}\x00".to_vec(),
                400,
                "invalid_json",
            ),
            row(
                "BOM inside an array",
                "[\u{feff}{\"type\":\"t\"}]",
                400,
                "invalid_json",
            ),
            row("nested over the depth limit", nested(40), 400, "too_deep"),
            row(
                "nested past the parser's recursion limit",
                nested(300),
                400,
                "too_deep",
            ),
            row(
                "huge type string",
                format!(r#"{{"type":"{}"}}"#, "t".repeat(900)),
                400,
                "invalid_field",
            ),
            row(
                "huge data string",
                format!(r#"{{"type":"t","data":{{"s":"{}"}}}}"#, "x".repeat(2000)),
                413,
                "event_too_large",
            ),
            row(
                "number beyond f64 (PostgreSQL's numeric keeps it)",
                r#"{"type":"t","data":{"n":1e400,"m":-0,"k":18446744073709551616}}"#,
                202,
                "",
            ),
            row(
                "number beyond PostgreSQL's numeric scale",
                r#"{"type":"t","data":{"n":1e-16384}}"#,
                400,
                "invalid_field",
            ),
            row(
                "number beyond PostgreSQL's numeric range",
                r#"{"type":"t","data":{"n":1e131072}}"#,
                400,
                "invalid_field",
            ),
            row(
                "NUL in a data string",
                r#"{"type":"t","data":{"s":"a\u0000b"}}"#,
                400,
                "invalid_field",
            ),
            row(
                "NUL in a data key",
                r#"{"type":"t","data":{"a\u0000":1}}"#,
                400,
                "invalid_field",
            ),
            row(
                "NUL in type",
                r#"{"type":"a\u0000b"}"#,
                400,
                "invalid_field",
            ),
            row(
                "lone surrogate",
                r#"{"type":"t","data":{"s":"\ud800"}}"#,
                400,
                "invalid_json",
            ),
            row(
                "second 60 outside a leap second",
                r#"{"type":"t","timestamp":"2026-11-28T07:30:60Z"}"#,
                400,
                "invalid_field",
            ),
            row(
                "event of 1e15s: sized as sent",
                format!(
                    r#"{{"type":"t","data":{{"n":[{}]}}}}"#,
                    vec!["1e15"; 190].join(",")
                ),
                202,
                "",
            ),
            Row {
                headers: vec![("idempotency-key", "req-x".into())],
                ..row(
                    "client id equal to a derived id",
                    format!(
                        r#"[{{"type":"a","id":"{}"}},{{"type":"b"}}]"#,
                        derive_id("web", "req-x", 1, r#"{"type":"b"}"#)
                    ),
                    400,
                    "duplicate_id",
                )
            },
            Row {
                unreadable: &["idempotency-key"],
                ..row(
                    "Idempotency-Key with a DEL byte",
                    plain.clone(),
                    400,
                    "invalid_header",
                )
            },
            Row {
                unreadable: &["content-type"],
                ..row(
                    "Content-Type with a control byte",
                    plain.clone(),
                    400,
                    "invalid_header",
                )
            },
            Row {
                content_type: "application/json; charset=utf-8\u{e9}",
                ..row(
                    "Content-Type with a non-ASCII byte",
                    plain.clone(),
                    400,
                    "invalid_header",
                )
            },
            row(
                "duplicate top-level key",
                r#"{"type":"a","type":"b"}"#,
                400,
                "invalid_json",
            ),
            row(
                "duplicate nested key",
                r#"{"type":"a","data":{"k":1,"k":2}}"#,
                400,
                "invalid_json",
            ),
            row("empty body", "", 400, "no_events"),
            row("whitespace-only body", " \n\t ", 400, "no_events"),
            row("empty array", "[]", 400, "no_events"),
            Row {
                content_type: "application/x-ndjson",
                ..row(
                    "whitespace-only NDJSON lines",
                    "\n  \n\t\n",
                    400,
                    "no_events",
                )
            },
            Row {
                content_type: "application/x-ndjson",
                ..row(
                    "NDJSON with one bad line",
                    "{\"type\":\"a\"}\n{\"type\":\n",
                    400,
                    "invalid_json",
                )
            },
            Row {
                declared_len: Some(5),
                ..row(
                    "Content-Length shorter than the body",
                    plain.clone(),
                    400,
                    "invalid_body",
                )
            },
            Row {
                declared_len: Some(100),
                ..row(
                    "Content-Length longer than the body",
                    plain.clone(),
                    400,
                    "invalid_body",
                )
            },
            Row {
                encoding: Some("gzip"),
                ..row("gzip of gzip", gzip(&gzip(&plain)), 400, "invalid_json")
            },
            Row {
                encoding: Some("gzip"),
                ..row("truncated gzip", truncated_gzip, 400, "invalid_gzip")
            },
            Row {
                encoding: Some("gzip"),
                ..row(
                    "gzip header on a plain body",
                    plain.clone(),
                    400,
                    "invalid_gzip",
                )
            },
            Row {
                encoding: Some("br"),
                ..row(
                    "unsupported Content-Encoding",
                    plain.clone(),
                    415,
                    "unsupported_encoding",
                )
            },
            Row {
                content_type: "application/xml",
                ..row(
                    "unsupported Content-Type",
                    plain.clone(),
                    415,
                    "unsupported_media_type",
                )
            },
            row(
                "id that is not a UUID",
                r#"{"type":"t","id":"1234"}"#,
                400,
                "invalid_field",
            ),
            row(
                "id with braces",
                r#"{"type":"t","id":"{0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10}x"}"#,
                400,
                "invalid_field",
            ),
            row(
                "timestamp 3 days ahead",
                format!(r#"{{"type":"t","timestamp":"{far_future}"}}"#),
                400,
                "timestamp_out_of_range",
            ),
            row(
                "timestamp 400 days back",
                format!(r#"{{"type":"t","timestamp":"{far_past}"}}"#),
                400,
                "timestamp_out_of_range",
            ),
            Row {
                content_type: "application/x-ndjson",
                limits: DEFAULT_LIMITS,
                ..row(
                    "10,000 tiny events",
                    "{\"type\":\"t\"}\n".repeat(10_000),
                    413,
                    "too_many_events",
                )
            },
            row(
                "events per request: one over",
                array_of(11, r#"{"type":"t"}"#),
                413,
                "too_many_events",
            ),
            row(
                "events per request: at the limit",
                array_of(10, r#"{"type":"t"}"#),
                202,
                "",
            ),
            row(
                "event size: one byte over",
                event_of_len(1025),
                413,
                "event_too_large",
            ),
            row("event size: at the limit", event_of_len(1024), 202, ""),
            row(
                "body size: one byte over",
                format!("{:<8193}", r#"{"type":"t"}"#),
                413,
                "payload_too_large",
            ),
            row(
                "body size: at the limit",
                format!("{:<8192}", r#"{"type":"t"}"#),
                202,
                "",
            ),
            Row {
                encoding: Some("gzip"),
                ..row(
                    "decompressed size: one byte over",
                    gzip(format!("{:<16385}", r#"{"type":"t"}"#).as_bytes()),
                    413,
                    "payload_too_large",
                )
            },
            Row {
                encoding: Some("gzip"),
                ..row(
                    "decompressed size: at the limit",
                    gzip(format!("{:<16384}", r#"{"type":"t"}"#).as_bytes()),
                    202,
                    "",
                )
            },
            // Issue 25: keys, Idempotency-Key and Segment's type, on every route.
            Row {
                headers: vec![("x-api-key", "not-a-key-0123456789".into())],
                ..row(
                    "Bearer and another X-Api-Key",
                    plain.clone(),
                    401,
                    "conflicting_keys",
                )
            },
            Row {
                path: "/v1/events?key=not-a-key&key=other".into(),
                ..row(
                    "Bearer and two ?key=",
                    plain.clone(),
                    401,
                    "conflicting_keys",
                )
            },
            Row {
                headers: vec![("x-api-key", KEY_WEB.into())],
                path: format!("/v1/events?key={KEY_WEB}"),
                ..row("the same key in every form", plain.clone(), 202, "")
            },
            Row {
                headers: vec![("x-api-key", KEY_APP.into())],
                ..at(
                    "/v1/track",
                    row(
                        "Segment: Bearer and another X-Api-Key",
                        r#"{"userId":"u","event":"e"}"#,
                        401,
                        "conflicting_keys",
                    ),
                )
            },
            at(
                "/v1/track",
                row(
                    "Segment: Bearer and another writeKey",
                    r#"{"userId":"u","event":"e","writeKey":"not-a-key"}"#,
                    401,
                    "conflicting_keys",
                ),
            ),
            at(
                "/batch/",
                row(
                    "PostHog: Bearer and another api_key",
                    r#"{"api_key":"not-a-key","batch":[{"event":"e","distinct_id":"d"}]}"#,
                    401,
                    "conflicting_keys",
                ),
            ),
            Row {
                headers: vec![("idempotency-key", "a b".into())],
                ..row(
                    "Idempotency-Key with a space",
                    plain.clone(),
                    400,
                    "invalid_idempotency_key",
                )
            },
            at(
                "/v1/identify",
                row(
                    "Segment: type track sent to /v1/identify",
                    r#"{"userId":"u","type":"track","event":"e"}"#,
                    400,
                    "invalid_field",
                ),
            ),
            Row {
                never_queued: Some(KEY_WEB),
                ..at(
                    "/v1/t",
                    row(
                        "Segment: writeKey in a single message is not stored",
                        format!(r#"{{"userId":"u","event":"e","writeKey":"{KEY_WEB}"}}"#),
                        200,
                        "",
                    ),
                )
            },
            Row {
                never_queued: Some(KEY_WEB),
                ..at(
                    "/v1/batch",
                    row(
                        "Segment: writeKey in a batch's message is not stored",
                        format!(
                            r#"{{"batch":[{{"userId":"u","type":"page","writeKey":"{KEY_WEB}"}}]}}"#
                        ),
                        200,
                        "",
                    ),
                )
            },
            Row {
                never_queued: Some(KEY_WEB),
                ..at(
                    "/e/",
                    row(
                        "PostHog: api_key and token at the top level are not stored",
                        format!(
                            r#"[{{"event":"e","distinct_id":"d","api_key":"{KEY_WEB}","token":"{KEY_WEB}"}}]"#
                        ),
                        200,
                        "",
                    ),
                )
            },
            Row {
                never_queued: Some(KEY_WEB),
                ..at(
                    "/batch/",
                    row(
                        "PostHog: properties.token in a batch event is not stored",
                        format!(
                            r#"{{"batch":[{{"event":"e","distinct_id":"d","properties":{{"token":"{KEY_WEB}"}}}}]}}"#
                        ),
                        200,
                        "",
                    ),
                )
            },
            Row {
                never_queued: Some(KEY_WEB),
                ..at(
                    "/capture/",
                    row(
                        "PostHog: properties.token in a single capture is not stored",
                        format!(
                            r#"{{"event":"e","properties":{{"distinct_id":"d","token":"{KEY_WEB}"}}}}"#
                        ),
                        200,
                        "",
                    ),
                )
            },
        ]
    }

    #[tokio::test(start_paused = true)]
    async fn every_row_gets_its_status_and_code_and_errors_enqueue_nothing() {
        let mut failures = Vec::new();
        for r in rows() {
            let edge = Edge::with(r.limits);
            let len = r.declared_len.unwrap_or(r.body.len());
            let mut req = post(Vec::new())
                .uri(format!("https://ingest.example.com{}", r.path))
                .header(
                    "content-type",
                    http::HeaderValue::from_bytes(&latin1(r.content_type)).expect("header"),
                )
                .header("authorization", format!("Bearer {KEY_WEB}"));
            for (name, value) in &r.headers {
                req = req.header(*name, value.as_str());
            }
            req.headers_mut()
                .expect("builder")
                .insert("content-length", len.to_string().parse().expect("header"));
            if let Some(enc) = r.encoding {
                req = req.header("content-encoding", enc);
            }
            let mut req = req.body(r.body).expect("request");
            if !r.unreadable.is_empty() {
                let names = r.unreadable.iter().map(|n| (*n).to_owned()).collect();
                req.extensions_mut().insert(UnreadableHeaders(names));
            }
            let a = edge.call(req).await;
            let accepted = |status: u16| status == 200 || status == 202;
            let code = if accepted(a.status()) {
                String::new()
            } else {
                a.code()
            };
            let queued = edge.queued().len();
            let mut enqueue_ok = if accepted(r.status) {
                queued > 0
            } else {
                queued == 0
            };
            if let Some(secret) = r.never_queued {
                enqueue_ok &= edge.queue.bodies().iter().all(|b| !b.contains(secret));
            }
            if a.status() != r.status || code != r.code || !enqueue_ok {
                failures.push(format!(
                    "{}: expected {} {}, got {} {} (queued {queued}): {}",
                    r.name,
                    r.status,
                    r.code,
                    a.status(),
                    code,
                    a.0.response.body().chars().take(160).collect::<String>()
                ));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }
}
