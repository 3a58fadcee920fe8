//! Refused `/v1/events` requests: `400`, `413`, `415` and `429`, and that none enqueues anything.

use super::*;

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
