//! Routes, `/healthz`, CORS and preflight on `/v1/events`.

use super::*;

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
