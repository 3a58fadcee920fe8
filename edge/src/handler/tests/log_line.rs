//! The `500` of a bad configuration and the one log line per request.

use super::*;

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
