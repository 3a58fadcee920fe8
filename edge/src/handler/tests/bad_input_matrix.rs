//! Every row: what is sent, and the status and code that must come back. No error row may
//! enqueue anything; the rows just under a limit must be accepted. Every row is sent with
//! `Authorization: Bearer` and the web key, to `/v1/events` unless it names another path.

use super::*;

/// Small limits, so "just over" and "just under" are cheap to build.
const LIMITS: &[(&str, &str)] = &[
    ("MAX_BODY_BYTES", "8192"),
    ("MAX_DECOMPRESSED_BYTES", "16384"),
    ("MAX_EVENT_BYTES", "1024"),
    ("MAX_EVENTS_PER_REQUEST", "10"),
];

/// RequestLimits as the edge ships them, for rows that need them.
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
