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
use spillway_support::Postgres;

/// 2026-11-28T08:00:00Z, the edge clock of every request.
const NOW_MS: u64 = 1_795_852_800_000;

// ------------------------------------------------------------------ JSON text, spelled freely

/// Weights: each hostile choice is rare, so that a request of several events, each of many
/// parts, is still accepted often enough to compare what was stored with what was sent.
const GOOD: u32 = 80;
const BAD: u32 = 1;

fn ws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", "", " ", "\n", "\t ", "\r\n  "])
}

/// A JSON string literal, quotes included, in any spelling (rarely not JSON or not storable).
fn string_lit() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        GOOD * 4 => "[a-zA-Z0-9 _.-]{0,6}",
        GOOD * 3 => prop::sample::select(vec![
            r"\n", r"\t", r#"\""#, r"\\", r"\/", r"\b", r"\f", r"\r", r"\u0041", r"\u00e9",
            r"\u2028", r"\ufffe", r"\uffff", r"\u001f", r"\ud83d\ude00", r"\uD83D\uDE00", "é",
            "😀", "\u{FFFE}", "\u{7f}", "\u{2028}", "\u{a0}",
        ])
        .prop_map(str::to_owned),
        BAD => prop::sample::select(vec![r"\u0000", r"\ud800", r"\udc00x", "\u{1}", r"\x"])
            .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 1..5).prop_map(|p| format!("\"{}\"", p.concat()))
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        prop::sample::select(vec![
            "0",
            "-0",
            "0.0",
            "-0.0e5",
            "1e400",
            "-1e400",
            "1e-400",
            "1E+2",
            "0e-16383",
            "1e131071",
            "-1.5e-1000",
            "18446744073709551616",
            "3.14159265358979323846",
            "123456789012345678901234567890",
        ])
        .prop_map(str::to_owned),
        "-?[1-9][0-9]{15,40}",
        "-?[0-9]{1,3}[.][0-9]{1,25}",
        "-?[1-9]([.][0-9]{1,5})?[eE][+-]?[0-9]{1,4}",
    ]
}

/// A number `jsonb` cannot hold, or text that is no JSON number.
fn bad_number() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "1e-16384",
            "1e131072",
            "1e9999999999",
            "01",
            "1.",
            ".5"
        ])
        .prop_map(str::to_owned),
        "-?[1-9][eE][+-]?[0-9]{6,8}",
    ]
}

fn value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        GOOD * 3 => string_lit(),
        GOOD * 3 => number(),
        GOOD => prop::sample::select(vec!["true", "false", "null"]).prop_map(str::to_owned),
        BAD => bad_number(),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone(), ws()), 0..6).prop_map(|items| {
                let items: Vec<String> = items
                    .into_iter()
                    .map(|(a, v, b)| format!("{a}{v}{b}"))
                    .collect();
                format!("[{}]", items.join(","))
            }),
            object(inner),
        ]
    })
    .boxed()
}

/// An object of `values`; some keys come from a small pool, so duplicates happen.
fn object(values: BoxedStrategy<String>) -> BoxedStrategy<String> {
    let key = prop_oneof![
        1 => prop::sample::select(vec![r#""""#, r#""a""#, r#""\u0061""#, r#""k""#, r#""é""#])
            .prop_map(str::to_owned),
        20 => string_lit(),
    ];
    prop::collection::vec((ws(), key, ws(), values, ws()), 0..6)
        .prop_map(|fields| {
            let fields: Vec<String> = fields
                .into_iter()
                .map(|(a, k, b, v, c)| format!("{a}{k}{b}:{v}{c}"))
                .collect();
            format!("{{{}}}", fields.join(","))
        })
        .boxed()
}

fn timestamp() -> impl Strategy<Value = String> {
    let time = prop_oneof![
        GOOD => prop::sample::select(vec![
            "2026-11-28T07:59:58",
            "2026-11-28T08:30:00",
            "2026-06-30T23:59:60",
            "2025-12-31T23:59:59",
            "2026-11-28 07:00:00",
            "2026-11-28t07:00:00",
        ]),
        BAD => prop::sample::select(vec![
            "2026-11-28T07:30:60",
            "2026-02-28T23:59:60",
            "2020-01-01T00:00:00",
            "2026-11-28",
        ]),
    ];
    let zone = prop_oneof![
        GOOD => prop::sample::select(vec!["Z", "z", "+00:00", "+05:30", "-08:00"]),
        BAD => Just(""),
    ];
    (time, "([.][0-9]{1,12})?", zone).prop_map(|(t, f, z)| format!("\"{t}{f}{z}\""))
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        // A small pool, so that two events of a request sometimes share an id.
        GOOD => prop::sample::select(vec![
            "\"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10\"",
            "\"0192F0C1-7A44-7CC3-9E2B-6D1C4B6F2A11\"",
            "\"6e1a1f52-0d8e-4c1e-9f0b-3a2b1c4d5e6f\"",
        ])
        .prop_map(str::to_owned),
        GOOD * 4 => any::<u128>().prop_map(|n| format!("\"{}\"", uuid::Uuid::from_u128(n))),
        BAD => prop::sample::select(vec![
            "\"00000000-0000-0000-0000-000000000000\"",
            "\"{6e1a1f52-0d8e-4c1e-9f0b-3a2b1c4d5e6f}\"",
            "\"urn:uuid:6e1a1f52-0d8e-4c1e-9f0b-3a2b1c4d5e6f\"",
            "\"6e1a1f520d8e4c1e9f0b3a2b1c4d5e6f\"",
            "42",
        ])
        .prop_map(str::to_owned),
    ]
}

fn event() -> impl Strategy<Value = String> {
    let ty = prop_oneof![GOOD => string_lit(), BAD => number()];
    let data = prop_oneof![GOOD => object(value()), BAD => value()];
    (
        ty,
        prop::option::weighted(0.3, id()),
        prop::option::weighted(0.5, timestamp()),
        prop::option::weighted(0.8, data),
        prop::option::weighted(0.01, Just(r#""extra""#.to_owned())),
        ws(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(ty, id, ts, data, extra, w, order)| {
            let mut fields = vec![format!("\"type\":{w}{ty}")];
            fields.extend(id.map(|v| format!("\"id\":{v}")));
            fields.extend(ts.map(|v| format!("\"timestamp\"{w}:{v}")));
            fields.extend(data.map(|v| format!("\"data\":{w}{v}")));
            fields.extend(extra.map(|v| format!("{v}:1")));
            let n = fields.len();
            fields.rotate_left(order.index(n));
            format!("{{{w}{}}}", fields.join(","))
        })
}

/// The ingest keys of the property, by key id: every case draws its requests' keys from these.
const KEYS: [&str; 3] = ["web", "app", "ios"];

#[derive(Debug, Clone)]
struct Request {
    /// Index into [`KEYS`] of the key that sent it.
    key: usize,
    events: Vec<String>,
    format: Format,
    idempotency_key: Option<String>,
}

impl Request {
    fn body(&self) -> String {
        match self.format {
            Format::Ndjson => self.events.join("\n"),
            Format::Json if self.events.len() == 1 => self.events[0].clone(),
            Format::Json => format!("[{}]", self.events.join(",")),
        }
    }
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::collection::vec(event(), 1..5),
        prop::bool::ANY,
        prop::option::of(prop_oneof![
            // A few shared values, so two keys (or one key, retrying) send the same one.
            1 => prop::sample::select(vec!["retry-1", "order-42"]).prop_map(str::to_owned),
            3 => "[a-z0-9-]{1,12}",
        ]),
        0..KEYS.len(),
    )
        .prop_map(|(events, ndjson, idempotency_key, key)| Request {
            key,
            // NDJSON: one event per line, so the whitespace between tokens holds no newline.
            events: if ndjson {
                events
                    .into_iter()
                    .map(|e| e.replace(['\n', '\r'], " "))
                    .collect()
            } else {
                events
            },
            format: if ndjson { Format::Ndjson } else { Format::Json },
            idempotency_key,
        })
}

/// A few requests, each from one of the [`KEYS`].
fn case() -> impl Strategy<Value = Vec<Request>> {
    prop::collection::vec(request(), 1..5)
}

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
