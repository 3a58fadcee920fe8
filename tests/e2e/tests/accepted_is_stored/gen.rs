//! The requests of the property: JSON text spelled freely (every escape, control characters,
//! surrogates, numbers in every notation, deep and wide objects, odd timestamps), a few events
//! per request, from one of a few ingest keys. Generation only; the checks are the callers'.

use proptest::prelude::*;
use spillway_edge::protocol::events::Format;

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
pub const KEYS: [&str; 3] = ["web", "app", "ios"];

#[derive(Debug, Clone)]
pub struct Request {
    /// Index into [`KEYS`] of the key that sent it.
    pub key: usize,
    pub events: Vec<String>,
    pub format: Format,
    pub idempotency_key: Option<String>,
}

impl Request {
    pub fn body(&self) -> String {
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
pub fn case() -> impl Strategy<Value = Vec<Request>> {
    prop::collection::vec(request(), 1..5)
}
