//! The invariant behind `202`: **accepted ⇒ stored exactly as sent, as a row of its own key**.
//!
//! Arbitrary JSON requests (every escape, NUL and other control characters, surrogate pairs and
//! halves, numbers in every notation and far beyond f64, deep and wide objects, empty and
//! duplicate keys, duplicate-looking ids, odd timestamps) go through the edge's pure request
//! path (`spillway_edge::prepare`) and, when it accepts them, through the consumer's handler into
//! a real PostgreSQL. Each case is a few requests from several ingest keys, drawing client ids
//! from one small pool (and edge-made ids from the same random sequence per key), so different
//! keys often send the same id; their accepted events reach the consumer together, in one SQS
//! batch. Either the edge refuses a request, or each of its events is one row of its key
//! (`key_id`, `id`) and equals PostgreSQL's own reading of the client's text: `data` as
//! `'<text>'::jsonb`, `type` as `->> 'type'`, `occurred_at` as `(->> 'timestamp')::timestamptz`,
//! `id` as the client's `id` when it sent one. Within one key, an id sent again (a client's
//! retry, or an id reused) is the first event sent with it: nothing is stored twice.
//!
//! `SPILLWAY_INVARIANT_CASES` sets the number of requests (default 300; `cargo xtask fuzz`
//! runs many more).
//!
//! The same property also runs through the whole local pipeline, once with each buffer (SQS
//! and Kinesis): `pipeline.rs`. The generator is `gen.rs`.

mod gen;
mod pipeline;

use std::collections::{HashMap, HashSet};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;
use spillway_consumer::config::DbConfig;
use spillway_consumer::handler::{handle, Deps, SystemClock};
use spillway_consumer::keys::testing::{test_key, test_keyring};
use spillway_consumer::migrate;
use spillway_consumer::pg::PgStore;
use spillway_edge::protocol::events::Format;
use spillway_edge::{prepare, Stamp};
use spillway_shared::{BufferLimits, RequestLimits};
use spillway_support::{BufferKind, Postgres};

use gen::{case, KEYS};

/// 2026-11-28T08:00:00Z, the edge clock of every request.
const NOW_MS: u64 = 1_795_852_800_000;

// ------------------------------------------------------------------ the check

fn record(n: usize, body: &str) -> SqsMessage {
    serde_json::from_value(json!({
        "messageId": format!("m-{n}"),
        "receiptHandle": format!("AQEB{n}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": NOW_MS.to_string(),
            "ApproximateFirstReceiveTimestamp": NOW_MS.to_string()
        },
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:spillway-events",
        "awsRegion": "us-east-1"
    }))
    .expect("record")
}

/// What PostgreSQL stored for `id` of key `$3`, compared with its own reading of the client's
/// `event`.
const ROW_MATCHES_CLIENT_TEXT: &str = "
SELECT count(*),
       coalesce(bool_and(e.type = c.j ->> 'type'), false),
       coalesce(bool_and(e.data = coalesce(c.j -> 'data', '{}'::jsonb)), false),
       coalesce(bool_and(e.occurred_at IS NOT DISTINCT FROM (c.j ->> 'timestamp')::timestamptz), false),
       coalesce(bool_and(NOT (c.j ? 'id') OR e.id = (c.j ->> 'id')::uuid), false),
       coalesce(bool_and(e.key_id = $3), false)
  FROM events e, (SELECT $2::text::jsonb AS j) c
 WHERE e.id = $1 AND e.key_id = $3";

#[test]
fn every_accepted_event_is_stored_once_exactly_as_sent() {
    let cases: u32 = std::env::var("SPILLWAY_INVARIANT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pg = Postgres::start().expect("PostgreSQL");
    let url = pg.url();
    let db = DbConfig::from_lookup(&|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        _ => None,
    })
    .expect("db config");
    let deps = Deps {
        store: PgStore::new(&db).expect("store"),
        clock: SystemClock,
        metrics_namespace: "SpillwayInvariant".into(),
        metrics_service: "spillway-consumer".into(),
        keys: test_keyring(),
        dead_letters: spillway_consumer::dead_letter::NoDeadLetters,
    };
    let client = rt.block_on(async {
        let mut client = deps.store.open().await.expect("connect");
        migrate::run(&mut client, migrate::MIGRATIONS)
            .await
            .expect("migrate");
        client
    });
    let check = rt
        .block_on(client.prepare(ROW_MATCHES_CLIENT_TEXT))
        .expect("prepare");

    let limits = RequestLimits::default();
    let accepted_requests = std::cell::Cell::new(0u32);
    let sent_requests = std::cell::Cell::new(0u32);
    let accepted_events = std::cell::Cell::new(0u32);
    // Ids accepted from more than one key in the same case: the collisions this test is about.
    let shared_ids = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |requests| {
        // The edge's random bytes, one sequence per key: two keys making ids for the same
        // millisecond make the same ones (the worst case for the table's key), one key never
        // repeats itself (as real randomness would not).
        let mut counters = [0u8; KEYS.len()];
        // Every accepted event: its key, id and text, in the order the consumer receives them.
        let mut accepted: Vec<(&str, uuid::Uuid, String)> = Vec::new();
        let mut entries: Vec<String> = Vec::new();
        let mut bodies = Vec::new();
        for req in &requests {
            sent_requests.set(sent_requests.get() + 1);
            let key_id = KEYS[req.key];
            let body = req.body();
            let stamp = Stamp {
                key_id,
                idempotency_key: req.idempotency_key.as_deref(),
                now_ms: NOW_MS,
                edge: None,
                sent_at: None,
            };
            let counter = &mut counters[req.key];
            let mut random = || {
                *counter = counter.wrapping_add(1);
                [*counter; 10]
            };
            let Ok(prepared) = prepare(
                body.as_bytes(),
                req.format,
                &limits,
                &BufferLimits::default(),
                &test_key(),
                &stamp,
                &mut random,
            ) else {
                continue; // refused: nothing was promised
            };
            accepted_requests.set(accepted_requests.get() + 1);
            accepted_events.set(accepted_events.get() + prepared.ids.len() as u32);
            // The request is parsed the way the edge split it: one event text per id.
            let texts: Vec<String> = match req.format {
                Format::Ndjson => body.split('\n').map(|t| t.trim().to_owned()).collect(),
                Format::Json => req.events.iter().map(|e| e.trim().to_owned()).collect(),
            };
            prop_assert_eq!(texts.len(), prepared.ids.len());
            accepted.extend(
                prepared
                    .ids
                    .iter()
                    .zip(texts)
                    .map(|(id, text)| (key_id, *id, text)),
            );
            entries.extend(
                prepared
                    .calls
                    .iter()
                    .flat_map(|b| &b.entries)
                    .map(|e| e.body.clone()),
            );
            bodies.push(format!("[{key_id}] {body}"));
        }
        if accepted.is_empty() {
            return Ok(());
        }
        let bodies = bodies.join("\n");
        // Within a key, the first event sent with an id is the one stored.
        let mut expected: HashMap<(&str, uuid::Uuid), &str> = HashMap::new();
        for (key_id, id, text) in &accepted {
            expected.entry((*key_id, *id)).or_insert(text);
        }
        let mut keys_of: HashMap<uuid::Uuid, HashSet<&str>> = HashMap::new();
        for (key_id, id) in expected.keys() {
            keys_of.entry(*id).or_default().insert(key_id);
        }
        shared_ids.set(
            shared_ids.get() + keys_of.values().filter(|keys| keys.len() > 1).count() as u32,
        );
        rt.block_on(async {
            client
                .batch_execute("TRUNCATE events")
                .await
                .map_err(|e| TestCaseError::fail(format!("truncate: {e}")))?;
            let records: Vec<SqsMessage> = entries
                .iter()
                .enumerate()
                .map(|(n, body)| record(n, body))
                .collect();
            let event: SqsEvent =
                serde_json::from_value(json!({ "Records": records })).expect("event");
            let outcome = handle(&deps, &event, "invariant").await;
            prop_assert!(
                outcome.response.batch_item_failures.is_empty(),
                "the consumer failed records of accepted requests: {}\nbodies:\n{bodies}",
                outcome.emf
            );
            for (key_id, id, text) in &accepted {
                let first = expected[&(*key_id, *id)];
                let row = client
                    .query_one(&check, &[id, &first.to_string(), key_id])
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{e:?}: {first}")))?;
                let found: i64 = row.get(0);
                let same: [bool; 5] = std::array::from_fn(|i| row.get(i + 1));
                prop_assert_eq!(
                    found,
                    1,
                    "event {} of key {} stored {} times: {}\nbodies:\n{}",
                    id,
                    key_id,
                    found,
                    text,
                    bodies
                );
                prop_assert_eq!(
                    same,
                    [true; 5],
                    "type, data, occurred_at, id, key_id as PostgreSQL reads {} (key {})\nbodies:\n{}",
                    first,
                    key_id,
                    bodies
                );
            }
            let total: i64 = client
                .query_one("SELECT count(*) FROM events", &[])
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .get(0);
            prop_assert_eq!(
                total,
                expected.len() as i64,
                "one row per accepted (key, id), none beyond\nbodies:\n{}",
                bodies
            );
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator must exercise both sides, or the property says little.
    let (accepted_requests, sent, accepted_events, shared) = (
        accepted_requests.get(),
        sent_requests.get(),
        accepted_events.get(),
        shared_ids.get(),
    );
    eprintln!(
        "{accepted_requests} of {sent} requests accepted in {cases} cases ({accepted_events} events \
         stored and compared; {shared} ids accepted from two keys or more)"
    );
    assert!(
        accepted_requests * 5 >= sent,
        "only {accepted_requests} of {sent} requests were accepted: the generator is too hostile"
    );
    assert!(
        accepted_requests < sent,
        "every request was accepted: the generator never tries what must be refused"
    );
    assert!(
        shared * 20 >= cases,
        "only {shared} ids were sent by two keys in {cases} cases: the keys rarely collide"
    );
}

#[test]
fn every_accepted_event_is_stored_once_through_the_sqs_pipeline() {
    pipeline::stored_through_the_pipeline(BufferKind::Sqs);
}

#[test]
fn every_accepted_event_is_stored_once_through_the_kinesis_pipeline() {
    pipeline::stored_through_the_pipeline(BufferKind::Kinesis);
}
