//! Ingest keys on `/v1/events`: every form, missing, wrong and conflicting keys.

use super::*;

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
