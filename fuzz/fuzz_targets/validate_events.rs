//! `spillway_shared::validate_events` on arbitrary JSON values, limits and clocks.
//!
//! The input is an optional settings line, then JSON text:
//!
//! ```text
//! # now_ms=1795852800000 max_event_bytes=200 max_events=5 max_depth=4
//! [{"type":"a"},{"type":"b","data":{"x":[1]}}]
//! ```
//!
//! A JSON array gives one item per element (sized as sent, like the edge does); any other JSON
//! value is one item. Text that is not JSON is not wasted: its bytes build the values directly
//! (objects biased towards the event fields), so shapes the parser would reject still get here.
//!
//! Properties: never panics; every problem but `too_many_events` names an event that exists,
//! problems come in event order, and an accepted request keeps every event with a valid type.
#![no_main]

use arbitrary::Unstructured;
use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use spillway_shared::{validate_events, Code, RequestLimits, MAX_TYPE_CHARS};

/// Latest edge clock considered: 9999-12-31. The clock is the Worker's `Date.now()`, not client
/// input; chrono itself cannot add a day to its own maximum date.
const MAX_NOW_MS: i64 = 253_402_300_799_000;

fn settings(line: &str) -> (RequestLimits, i64) {
    let mut limits = RequestLimits::default();
    let mut now_ms = 1_795_852_800_000;
    for pair in line.split_whitespace() {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let Ok(n) = value.parse::<u64>() else {
            continue;
        };
        let n_usize = usize::try_from(n).unwrap_or(usize::MAX).max(1);
        match name {
            "now_ms" => now_ms = i64::try_from(n).unwrap_or(MAX_NOW_MS).min(MAX_NOW_MS),
            "max_event_bytes" => limits.max_event_bytes = n_usize,
            "max_events" => limits.max_events_per_request = n_usize,
            "max_depth" => limits.max_json_depth = n_usize,
            _ => {}
        }
    }
    (limits, now_ms)
}

/// Keys the generator prefers: the API's own fields, and a stranger.
const KEYS: &[&str] = &["type", "id", "timestamp", "data", "Type", "extra"];
/// Strings the generator prefers, each valid for one field or just outside it.
const STRINGS: &[&str] = &[
    "page_view",
    "",
    "0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "{0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10}",
    "2026-11-28T08:00:00Z",
    "2026-11-28T08:00:00.123456789+14:00",
    "0000-01-01T00:00:00-23:59",
    "9999-12-31T23:59:60Z",
    "2026-11-28 08:00:00",
];

fn value(u: &mut Unstructured<'_>, depth: usize) -> arbitrary::Result<Value> {
    // Deeper than serde_json would ever produce (it stops at 128), but bounded.
    let kind = if depth >= 140 {
        u.int_in_range(0..=4)?
    } else {
        u.int_in_range(0..=7)?
    };
    Ok(match kind {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        4 => Value::String(string(u)?),
        5 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array(
                (0..n)
                    .map(|_| value(u, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        _ => {
            let n = u.int_in_range(0..=5)?;
            let mut map = Map::new();
            for _ in 0..n {
                let key = if u.ratio(3, 4)? {
                    (*u.choose(KEYS)?).to_owned()
                } else {
                    u.arbitrary()?
                };
                map.insert(key, value(u, depth + 1)?);
            }
            Value::Object(map)
        }
    })
}

fn string(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=3)? {
        0 => (*u.choose(STRINGS)?).to_owned(),
        1 => "x".repeat(u.int_in_range(MAX_TYPE_CHARS - 1..=MAX_TYPE_CHARS + 1)?),
        2 => "é".repeat(u.int_in_range(MAX_TYPE_CHARS - 1..=MAX_TYPE_CHARS + 1)?),
        _ => u.arbitrary()?,
    })
}

/// One item per event, as the client wrote it (the edge's split).
fn items_from_json(text: &str) -> Option<Vec<String>> {
    let whole: &RawValue = serde_json::from_str(text).ok()?;
    let raw = whole.get();
    if raw.starts_with('[') {
        let elements: Vec<&RawValue> = serde_json::from_str(raw).ok()?;
        Some(elements.iter().map(|r| r.get().to_owned()).collect())
    } else {
        Some(vec![raw.to_owned()])
    }
}

fn items_from_bytes(data: &[u8]) -> arbitrary::Result<Vec<String>> {
    let mut u = Unstructured::new(data);
    let n = u.int_in_range(0..=12)?;
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        items.push(value(&mut u, 1)?.to_string());
    }
    Ok(items)
}

/// The `type` a client wrote, when it is one string (other fields are skipped unparsed, so
/// numbers beyond f64 do not hide it).
fn sent_type(item: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        t: Option<String>,
    }
    serde_json::from_str::<Typed>(item).ok()?.t
}

fuzz_target!(|data: &[u8]| {
    let (limits, now_ms, rest) = match data.strip_prefix(b"#") {
        Some(tail) => {
            let end = tail.iter().position(|&b| b == b'\n').unwrap_or(tail.len());
            let line = String::from_utf8_lossy(&tail[..end]);
            let (limits, now_ms) = settings(&line);
            (limits, now_ms, tail.get(end + 1..).unwrap_or(&[]))
        }
        None => (RequestLimits::default(), 1_795_852_800_000, data),
    };
    let Some(now) = DateTime::from_timestamp_millis(now_ms) else {
        return;
    };
    let items = match std::str::from_utf8(rest).ok().and_then(items_from_json) {
        Some(items) => items,
        None => match items_from_bytes(rest) {
            Ok(items) => items,
            Err(_) => return,
        },
    };
    let count = items.len();
    let types: Vec<Option<String>> = items.iter().map(|i| sent_type(i)).collect();
    let texts: Vec<&str> = items.iter().map(String::as_str).collect();

    match validate_events(&texts, &limits, now) {
        Ok(valid) => {
            assert_eq!(
                valid.len(),
                count,
                "an accepted request lost or gained events"
            );
            assert!(count <= limits.max_events_per_request);
            for (event, sent_type) in valid.iter().zip(&types) {
                assert_eq!(Some(&event.event_type), sent_type.as_ref());
                let chars = event.event_type.chars().count();
                assert!(
                    (1..=MAX_TYPE_CHARS).contains(&chars),
                    "type of {chars} chars"
                );
                assert!(!event.event_type.contains('\0'), "NUL in an accepted type");
                if let Some(id) = event.id {
                    assert!(!id.is_nil() && !id.is_max());
                }
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a reason");
            let mut last = 0;
            for p in &problems {
                assert!(!p.message.is_empty());
                if p.code == Code::TooManyEvents {
                    assert!(count > limits.max_events_per_request);
                    assert_eq!(problems.len(), 1);
                    continue;
                }
                let index = p
                    .index
                    .unwrap_or_else(|| panic!("problem without an index: {p:?}"));
                assert!(index < count, "index {index} of {count} events");
                assert!(index >= last, "problems out of event order: {problems:?}");
                last = index;
            }
        }
    }
});
