//! Two tenants, one pipeline: a local stack serving two ingest keys, each sending the same
//! client ids on `/v1/events` (`id`), on Segment's `/v1/batch` (UUID `messageId`) and on
//! PostHog's `/batch` (`uuid`). What must hold (shared/CONTRACT.md: an id is unique within its
//! `key_id`, two keys never share a row): every 2xx is a row of its own key, holding what that
//! key sent; a key's retry of the same requests adds nothing; and no row holds any key, though
//! the collector bodies carry theirs where those protocols do (Segment's `writeKey`, PostHog's
//! `api_key` and `properties.token`).

use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use spillway_e2e::{start, wait_until};
use spillway_support::stack::IngestKey;
use spillway_support::Stack;
use uuid::Uuid;

/// POSTs `body` as JSON to `path` of the edge with `key` as a bearer token.
fn post(stack: &Stack, key: &str, path: &str, body: &Value) -> Result<(u16, Value)> {
    let base = stack.env.ingest_url.trim_end_matches("/v1/events");
    let resp = match ureq::post(&format!("{base}{path}"))
        .timeout(Duration::from_secs(60))
        .set("Authorization", &format!("Bearer {key}"))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
    {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => return Err(anyhow!("request failed: {e}")),
    };
    let status = resp.status();
    let text = resp.into_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(json!(text))))
}

/// The three requests one key sends, all carrying the same client ids whichever key sends
/// them; each event says which key sent it (`from`). The collector bodies carry the key in
/// every place their SDKs put it, besides the `Authorization` header (the same key: allowed).
fn requests(key: &IngestKey, ids: &Ids) -> [(&'static str, Value); 3] {
    let (key_id, secret) = (key.key_id.as_str(), key.key.as_str());
    let events: Vec<Value> = ids
        .events
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"type": "tenant_event", "id": id, "data": {"from": key_id, "i": i}}))
        .collect();
    let segment: Vec<Value> = ids
        .segment
        .iter()
        .map(|id| {
            json!({"type": "track", "event": "Tenant Event", "userId": "u1", "messageId": id,
                   "writeKey": secret, "properties": {"from": key_id}})
        })
        .collect();
    let posthog: Vec<Value> = ids
        .posthog
        .iter()
        .map(|id| {
            json!({"event": "tenant_event", "distinct_id": "d1", "uuid": id,
                   "properties": {"from": key_id, "token": secret}})
        })
        .collect();
    [
        ("/v1/events", Value::Array(events)),
        ("/v1/batch", json!({ "batch": segment, "writeKey": secret })),
        ("/batch", json!({ "batch": posthog, "api_key": secret })),
    ]
}

struct Ids {
    events: Vec<String>,
    segment: Vec<String>,
    posthog: Vec<String>,
}

impl Ids {
    fn all(&self) -> impl Iterator<Item = &String> {
        self.events.iter().chain(&self.segment).chain(&self.posthog)
    }
}

/// Sends every request of every key, asserting each is answered 2xx (with the client's ids on
/// `/v1/events`).
fn send_all(stack: &Stack, keys: &[IngestKey], ids: &Ids) {
    for k in keys {
        for (path, body) in requests(k, ids) {
            let (status, answer) = post(stack, &k.key, path, &body).expect("request");
            match path {
                "/v1/events" => {
                    assert_eq!(status, 202, "{path} from {}: {answer}", k.key_id);
                    assert_eq!(answer["ids"], json!(ids.events), "{answer}");
                }
                _ => assert_eq!(status, 200, "{path} from {}: {answer}", k.key_id),
            }
        }
    }
}

/// `key_id|id|from` of every row, sorted.
fn rows(stack: &Stack) -> Vec<String> {
    let out = stack
        .pg
        .psql(
            "select key_id || '|' || id || '|' || coalesce(data->>'from', data->'properties'->>'from', '')
               from events order by 1",
        )
        .expect("psql");
    out.lines().map(str::to_owned).collect()
}

fn drained(stack: &Stack) -> bool {
    stack.sqs.depth(&stack.env.sqs_queue_url).ok() == Some((0, 0))
}

#[test]
fn two_keys_with_the_same_client_ids_each_get_their_own_rows() {
    if !spillway_support::worker_built("two_keys_with_the_same_client_ids_each_get_their_own_rows")
    {
        return;
    }
    let keys = vec![
        IngestKey::fresh("tenant-a").expect("key"),
        IngestKey::fresh("tenant-b").expect("key"),
    ];
    let stack = start("keys", |cfg| cfg.ingest_keys = keys.clone());
    assert_eq!(
        stack.env.ingest_key, keys[0].key,
        "INGEST_KEY is the first key"
    );

    let uuids = |n: usize| -> Vec<String> { (0..n).map(|_| Uuid::new_v4().to_string()).collect() };
    let ids = Ids {
        events: uuids(3),
        segment: uuids(2),
        posthog: uuids(2),
    };
    send_all(&stack, &keys, &ids);

    let mut expected: Vec<String> = keys
        .iter()
        .flat_map(|k| {
            ids.all()
                .map(move |id| format!("{}|{id}|{}", k.key_id, k.key_id))
        })
        .collect();
    expected.sort();
    wait_until(
        "every accepted event stored",
        Duration::from_secs(120),
        || drained(&stack) && rows(&stack).len() >= expected.len(),
    )
    .expect("stored");
    assert_eq!(
        rows(&stack),
        expected,
        "one row per key and id, holding what that key sent"
    );

    // Each key retries every request, byte for byte: accepted again, stored nothing new.
    send_all(&stack, &keys, &ids);
    wait_until("the retries consumed", Duration::from_secs(120), || {
        drained(&stack)
    })
    .expect("drained");
    assert_eq!(rows(&stack), expected, "a retry adds nothing");
    let status = stack.status().expect("status");
    assert_eq!(status.dlq, 0, "{status:?}");

    // No row holds a key, in any column (the contract), though every collector body carried it.
    for k in &keys {
        let holding = stack
            .pg
            .psql(&format!(
                "select count(*) from events e where e::text like '%{}%'",
                k.key
            ))
            .expect("psql");
        assert_eq!(holding, "0", "rows holding the key of {}", k.key_id);
    }
    // Positive control: the same query finds what the rows do hold.
    let from_a = stack
        .pg
        .psql("select count(*) from events e where e::text like '%tenant-a%'")
        .expect("psql");
    assert_ne!(from_a, "0");
}
