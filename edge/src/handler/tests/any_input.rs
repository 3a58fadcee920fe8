//! Any body, any content type, gzipped or not: `/v1/events` answers, never panics.

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
