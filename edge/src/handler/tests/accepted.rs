//! Accepted `/v1/events` requests: enrichment, body shapes, gzip, ids and idempotency.

use super::*;
use crate::config::ContextField;
use crate::request::context::CfFields;

// ---------------------------------------------------------------- accepted requests

#[tokio::test(start_paused = true)]
async fn single_event_is_enriched_packed_and_acknowledged() {
    let edge = Edge::new();
    let mut req = authed(
        r#"{"type":"page_view","timestamp":"2026-11-28T07:59:00+01:00","data":{"path":"/"}}"#,
    );
    req.extensions_mut().insert(frankfurt_cf());
    req.headers_mut()
        .insert("cf-connecting-ip", "203.0.113.77".parse().expect("header"));
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
            country: Some("DE".into()),
            city: Some("Frankfurt am Main".into()),
            asn: Some(3320),
            // Neither the postal code (not in the default EDGE_CONTEXT) nor the address
            // (IP_POLICY none by default).
            ..EdgeInfo::default()
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
    assert!(!log.to_json().contains("203.0.113"), "no address in logs");
}

/// `request.cf` of a request seen in Frankfurt, as the runtime adapter reads it.
fn frankfurt_cf() -> CfFields {
    CfFields::new(
        [
            (ContextField::Colo, "FRA"),
            (ContextField::Country, "DE"),
            (ContextField::City, "Frankfurt am Main"),
            (ContextField::PostalCode, "60311"),
            (ContextField::Asn, "3320"),
        ]
        .map(|(f, v)| (f, v.to_owned())),
    )
}

/// `IP_POLICY` decides whether the address reaches the event, and how much of it, on every
/// protocol; the log line holds it under none of them.
#[tokio::test(start_paused = true)]
async fn the_address_is_stored_only_as_ip_policy_says() {
    for (policy, want) in [
        ("none", None),
        ("truncated", Some("203.0.113.0")),
        ("full", Some("203.0.113.77")),
    ] {
        let edge = Edge::with(&[("IP_POLICY", policy), ("EDGE_CONTEXT", "none")]);
        for path in ["/v1/events", "/v1/track"] {
            let body = if path == "/v1/events" {
                r#"{"type":"t"}"#
            } else {
                r#"{"type":"track","event":"t","userId":"u"}"#
            };
            let mut req = Request::builder()
                .method(Method::POST)
                .uri(format!("https://ingest.example.com{path}"))
                .header("authorization", format!("Bearer {KEY_WEB}"))
                .header("content-type", "application/json")
                .header("cf-connecting-ip", "203.0.113.77")
                .body(body.as_bytes().to_vec())
                .expect("request");
            req.extensions_mut().insert(frankfurt_cf());
            let a = edge.call(req).await;
            assert!(
                matches!(a.status(), 200 | 202),
                "{policy} {path}: {}",
                a.json()
            );
            assert!(!a.0.log.to_json().contains("203.0.113"), "{policy} {path}");
        }
        let events = edge.queued();
        assert_eq!(events.len(), 2, "{policy}");
        for e in events {
            assert_eq!(e.edge.and_then(|c| c.ip).as_deref(), want, "{policy}");
        }
    }
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
