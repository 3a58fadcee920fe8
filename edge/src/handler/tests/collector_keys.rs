//! The collector routes and ingest keys, end to end natively: two different keys anywhere in
//! a request are refused, and no key a protocol carries in a message is ever queued.

use super::collector::{basic, post, segment, segment_batch};
use super::edge::Edge;
use crate::config::tests::{KEY_APP, KEY_WEB};

// ---------------------------------------------------------------- Segment

#[tokio::test(start_paused = true)]
async fn segment_two_different_keys_anywhere_are_401_conflicting_keys() {
    let edge = Edge::new();
    let wrong = "not-a-key-0123456789";
    let plain = r#"{"userId":"u","event":"e"}"#.to_owned();
    let in_body = |k: &str| format!(r#"{{"userId":"u","event":"e","writeKey":"{k}"}}"#);
    let bearer = |k: &str| ("authorization", format!("Bearer {k}"));
    let api_key = |k: &str| ("x-api-key", k.to_owned());
    // (path and query, headers, body): each pair of places a key can take.
    type Case = (String, Vec<(&'static str, String)>, String);
    let cases: Vec<Case> = vec![
        (
            "/v1/track".into(),
            vec![bearer(KEY_WEB), api_key(wrong)],
            plain.clone(),
        ),
        (
            "/v1/track".into(),
            vec![bearer(KEY_WEB), api_key(KEY_APP)],
            plain.clone(),
        ),
        (
            "/v1/track".into(),
            vec![("authorization", basic(KEY_WEB)), api_key(wrong)],
            plain.clone(),
        ),
        (
            format!("/v1/track?key={wrong}"),
            vec![("authorization", basic(KEY_WEB))],
            plain.clone(),
        ),
        (
            format!("/v1/track?key={wrong}"),
            vec![bearer(KEY_WEB)],
            plain.clone(),
        ),
        (
            format!("/v1/t?key={KEY_APP}"),
            vec![api_key(KEY_WEB)],
            plain.clone(),
        ),
        (
            format!("/v1/t?key={KEY_WEB}&key={wrong}"),
            vec![],
            plain.clone(),
        ),
        ("/v1/track".into(), vec![bearer(KEY_WEB)], in_body(KEY_APP)),
        ("/v1/track".into(), vec![api_key(KEY_WEB)], in_body(wrong)),
        (format!("/v1/track?key={KEY_WEB}"), vec![], in_body(wrong)),
        (
            "/v1/batch".into(),
            vec![bearer(KEY_WEB)],
            segment_batch("2026-11-28T08:00:00.000Z", KEY_APP),
        ),
    ];
    for (path, headers, body) in cases {
        let mut req = post(&path, body.clone()).header("content-type", "application/json");
        for (name, value) in &headers {
            req = req.header(*name, value.as_str());
        }
        let a = edge
            .call(req.body(body.into_bytes()).expect("request"))
            .await;
        assert_eq!(
            a.status(),
            401,
            "{path} {headers:?}: {}",
            a.0.response.body()
        );
        a.error(401, "conflicting_keys");
    }
    assert!(edge.queue.calls().is_empty());
    // The same key in every place is one key.
    let body = in_body(KEY_WEB);
    let req = post(&format!("/v1/track?key={KEY_WEB}"), body.clone())
        .header("authorization", basic(KEY_WEB))
        .header("x-api-key", KEY_WEB)
        .body(body.into_bytes())
        .expect("request");
    edge.call(req).await.ok();
    assert_eq!(edge.queued()[0].key_id, "web");
}

#[tokio::test(start_paused = true)]
async fn segment_write_key_is_never_stored() {
    let edge = Edge::new();
    // A single message with its key (analytics.js in a browser: text/plain, no header).
    let single = format!(
        r#"{{"userId":"u","event":"Signed Up","writeKey":"{KEY_WEB}","properties":{{"n":1e400}}}}"#
    );
    let req = post("/v1/t", single.clone())
        .header("content-type", "text/plain")
        .body(single.into_bytes())
        .expect("request");
    edge.call(req).await.ok();
    // A batch whose messages each carry the key, besides the batch's own.
    let batch = format!(
        r#"{{"writeKey":"{KEY_WEB}","batch":[{{"type":"page","userId":"u","writeKey":"{KEY_WEB}","name":"P"}}]}}"#
    );
    edge.call(segment("/v1/batch", &batch, KEY_WEB)).await.ok();
    let data: Vec<String> = edge
        .queued()
        .iter()
        .map(|e| e.data.get().to_owned())
        .collect();
    assert_eq!(
        data,
        [
            r#"{"userId":"u","event":"Signed Up","properties":{"n":1e400}}"#,
            r#"{"type":"page","userId":"u","name":"P"}"#,
        ]
    );
}

// ---------------------------------------------------------------- PostHog

#[tokio::test(start_paused = true)]
async fn posthog_keys_are_never_stored_in_any_body_shape() {
    let edge = Edge::new();
    let k = KEY_WEB;
    let bodies = [
        // posthog-node's batch: the key at the top, and in an event's properties.
        (
            "/batch/",
            format!(
                r#"{{"api_key":"{k}","batch":[{{"event":"a","distinct_id":"d","properties":{{"token":"{k}","x":1}}}}]}}"#
            ),
        ),
        // A bare array, the key in the event.
        (
            "/e/",
            format!(r#"[{{"event":"b","distinct_id":"d","token":"{k}"}}]"#),
        ),
        // posthog-js's single capture: the key only in `properties.token`.
        (
            "/capture/",
            format!(r#"{{"event":"c","properties":{{"distinct_id":"d","token":"{k}"}}}}"#),
        ),
        // A single capture with the key at its top level.
        (
            "/i/v0/e/",
            format!(r#"{{"api_key":"{k}","event":"d","distinct_id":"d"}}"#),
        ),
    ];
    for (path, body) in bodies {
        let req = post(path, body.clone())
            .body(body.into_bytes())
            .expect("request");
        edge.call(req).await.ok();
    }
    let data: Vec<String> = edge
        .queued()
        .iter()
        .map(|e| e.data.get().to_owned())
        .collect();
    assert_eq!(
        data,
        [
            r#"{"event":"a","distinct_id":"d","properties":{"x":1}}"#,
            r#"{"event":"b","distinct_id":"d"}"#,
            r#"{"event":"c","properties":{"distinct_id":"d"}}"#,
            r#"{"event":"d","distinct_id":"d"}"#,
        ]
    );
    assert!(edge.queue.bodies().iter().all(|b| !b.contains(KEY_WEB)));
}

#[tokio::test(start_paused = true)]
async fn ids_derived_from_a_message_keep_their_value_once_its_key_is_stripped() {
    // Ids from `Idempotency-Key` hash the message as sent, key included, as before keys were
    // taken out of `data`: a retry across the change lands on the first attempt's row.
    let edge = Edge::new();
    let body = format!(r#"{{"event":"c","properties":{{"distinct_id":"d","token":"{KEY_WEB}"}}}}"#);
    let req = post("/e/", body.clone())
        .header("idempotency-key", "req-1")
        .body(body.clone().into_bytes())
        .expect("request");
    edge.call(req).await.ok();
    assert_eq!(
        edge.queued()[0].id,
        spillway_shared::derive_id("web", "req-1", 0, &body)
    );
}
