//! The same property through the whole local pipeline, with each buffer: the generated requests
//! go over HTTP to the edge under `wrangler dev`, through the buffer the stack was started with
//! (the SQS queue, or the Kinesis stream with the poller playing the event source mapping) and
//! the consumer into PostgreSQL. Either the edge refuses a request, or each event it answered
//! `202` for is one row of its key, equal to PostgreSQL's reading of the client's text, and an
//! id sent again within a key stores nothing twice.
//!
//! Unlike the in-process test beside it, the edge's ids are its own random ones (no id shared
//! between keys unless the client sent it), and the buffer may reorder: so each accepted
//! request is waited for (its rows are there) before the next is sent, which keeps "the first
//! event sent with an id is the one stored" a fact of the test rather than a race. After each
//! case the stack must be drained ([`spillway_support::Stack::drained`]) before the rows are
//! compared and the table emptied, so no late record leaks into the next case.
//!
//! `SPILLWAY_INVARIANT_PIPELINE_CASES` sets the number of cases (default 20: each request is a
//! round trip through the buffer, about a second with either).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use spillway_consumer::config::DbConfig;
use spillway_consumer::pg::PgStore;
use spillway_edge::protocol::events::Format;
use spillway_support::stack::IngestKey;
use spillway_support::{worker_built_for, BufferKind, Stack};

use super::gen::{case, KEYS};
use super::ROW_MATCHES_CLIENT_TEXT;

/// How long one accepted request may take to reach the table, and a case's buffer to drain.
const THROUGH: Duration = Duration::from_secs(60);

/// What the edge answered.
enum Answer {
    Accepted(Vec<uuid::Uuid>),
    Refused,
}

fn post(agent: &ureq::Agent, stack: &Stack, key: &str, req: &super::gen::Request) -> Answer {
    let mut r = agent
        .post(&stack.env.ingest_url)
        .set("Authorization", &format!("Bearer {key}"))
        .set(
            "Content-Type",
            match req.format {
                Format::Json => "application/json",
                Format::Ndjson => "application/x-ndjson",
            },
        );
    if let Some(k) = &req.idempotency_key {
        r = r.set("Idempotency-Key", k);
    }
    let resp = match r.send_string(&req.body()) {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().expect("answer body");
    match status {
        202 => {
            let body: serde_json::Value = serde_json::from_str(&text).expect("202 is JSON");
            Answer::Accepted(
                body["ids"]
                    .as_array()
                    .expect("202 lists ids")
                    .iter()
                    .map(|v| v.as_str().and_then(|s| s.parse().ok()).expect("a uuid"))
                    .collect(),
            )
        }
        // What an invalid request may get: nothing was promised.
        400 | 413 | 415 => Answer::Refused,
        other => panic!(
            "the edge answered {other} with a healthy buffer: {text:.300}; status {:?}",
            stack.status()
        ),
    }
}

/// Every accepted event of generated requests is stored once, exactly as sent, through the
/// pipeline with `buffer`.
pub fn stored_through_the_pipeline(buffer: BufferKind) {
    let test = format!("accepted_is_stored_through_the_{buffer}_pipeline");
    if !worker_built_for(&test, buffer) {
        return;
    }
    let cases: u32 = std::env::var("SPILLWAY_INVARIANT_PIPELINE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let keys: Vec<IngestKey> = KEYS
        .iter()
        .map(|k| IngestKey::fresh(k).expect("key"))
        .collect();
    // A short name: it names the stack's directory, which holds PostgreSQL's socket (at most
    // 107 bytes of path).
    let stack = spillway_e2e::start(&format!("invariant-{buffer}"), |c| {
        c.buffer = buffer;
        c.ingest_keys = keys.clone();
    });
    assert_eq!(stack.env.buffer, buffer);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = stack.env.database_url.clone();
    let db = DbConfig::from_lookup(&|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        _ => None,
    })
    .expect("db config");
    let store = PgStore::new(&db).expect("store");
    let client = rt.block_on(store.open()).expect("connect");
    let check = rt
        .block_on(client.prepare(ROW_MATCHES_CLIENT_TEXT))
        .expect("prepare");
    let present = rt
        .block_on(
            client
                .prepare("SELECT count(*) FROM events WHERE key_id = $1 AND id = ANY($2::uuid[])"),
        )
        .expect("prepare");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();

    let (sent, accepted_requests, stored) = (
        std::cell::Cell::new(0u32),
        std::cell::Cell::new(0u32),
        std::cell::Cell::new(0u32),
    );
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // Each shrinking step is a round trip through the pipeline.
        max_shrink_iters: 32,
        ..Config::default()
    });
    let result = runner.run(&case(), |requests| {
        let mut accepted: Vec<(&str, uuid::Uuid, String)> = Vec::new();
        for req in &requests {
            sent.set(sent.get() + 1);
            let key = &keys[req.key];
            let ids = match post(&agent, &stack, &key.key, req) {
                Answer::Accepted(ids) => ids,
                Answer::Refused => continue,
            };
            accepted_requests.set(accepted_requests.get() + 1);
            let texts: Vec<String> = match req.format {
                Format::Ndjson => req.body().split('\n').map(|t| t.trim().to_owned()).collect(),
                Format::Json => req.events.iter().map(|e| e.trim().to_owned()).collect(),
            };
            prop_assert_eq!(texts.len(), ids.len(), "one id per event sent");
            // This request's rows, before the next request is sent (see the module's header).
            let mut distinct = ids.clone();
            distinct.sort();
            distinct.dedup();
            let want = i64::try_from(distinct.len()).expect("few ids");
            let deadline = Instant::now() + THROUGH;
            loop {
                let n: i64 = rt
                    .block_on(client.query_one(&present, &[&key.key_id, &distinct]))
                    .map_err(|e| TestCaseError::fail(format!("count: {e}")))?
                    .get(0);
                if n == want {
                    break;
                }
                prop_assert!(
                    Instant::now() < deadline,
                    "{} of {} events of an accepted request stored after {:?}; status {:?}\nbody: {}",
                    n,
                    want,
                    THROUGH,
                    stack.status(),
                    req.body()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            accepted.extend(
                ids.into_iter()
                    .zip(texts)
                    .map(|(id, text)| (key.key_id.as_str(), id, text)),
            );
        }
        let deadline = Instant::now() + THROUGH;
        while !stack.drained() {
            prop_assert!(
                Instant::now() < deadline,
                "the buffer was not drained after {:?}; status {:?}",
                THROUGH,
                stack.status()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut expected: HashMap<(&str, uuid::Uuid), &str> = HashMap::new();
        for (key_id, id, text) in &accepted {
            expected.entry((*key_id, *id)).or_insert(text);
        }
        for ((key_id, id), first) in &expected {
            let row = rt
                .block_on(client.query_one(&check, &[id, &first.to_string(), key_id]))
                .map_err(|e| TestCaseError::fail(format!("{e:?}: {first}")))?;
            let found: i64 = row.get(0);
            let same: [bool; 5] = std::array::from_fn(|i| row.get(i + 1));
            prop_assert_eq!(found, 1, "event {} of key {} stored {} times", id, key_id, found);
            prop_assert_eq!(
                same,
                [true; 5],
                "type, data, occurred_at, id, key_id as PostgreSQL reads {} (key {})",
                first,
                key_id
            );
        }
        let total: i64 = rt
            .block_on(client.query_one("SELECT count(*) FROM events", &[]))
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .get(0);
        prop_assert_eq!(
            total,
            i64::try_from(expected.len()).expect("few rows"),
            "one row per accepted (key, id), none beyond"
        );
        stored.set(stored.get() + u32::try_from(expected.len()).expect("few rows"));
        rt.block_on(client.batch_execute("TRUNCATE events"))
            .map_err(|e| TestCaseError::fail(format!("truncate: {e}")))?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{test}: {e}");
    }
    let (sent, accepted_requests, stored) = (sent.get(), accepted_requests.get(), stored.get());
    eprintln!(
        "[{test}] {accepted_requests} of {sent} requests accepted in {cases} cases, {stored} \
         events stored through the {buffer} buffer and compared"
    );
    assert!(
        accepted_requests * 5 >= sent,
        "only {accepted_requests} of {sent} requests were accepted: the generator is too hostile"
    );
    assert!(
        accepted_requests < sent,
        "every request was accepted: the generator never tries what must be refused"
    );
}
