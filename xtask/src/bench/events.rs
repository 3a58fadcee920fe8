//! Realistic events for every figure (the same shapes as edge/benches/floor.rs).

use std::process::Command;

use serde_json::{json, Value};

use crate::step::output;

// ---------------------------------------------------------------------------------------------
// Realistic events (the same shapes as edge/benches/floor.rs)

/// A realistic analytics event of roughly `bytes` bytes of JSON.
pub(super) fn event(i: usize, bytes: usize, timestamp: &str, id: Option<String>) -> Value {
    let mut e = json!({
        "type": "page_view",
        "timestamp": timestamp,
        "data": {
            "path": format!("/products/{i}"),
            "referrer": "https://www.example.com/search?q=shoes",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
            "session": "0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10",
            "viewport": {"w": 1440, "h": 900},
            "tags": ["a", "b", "c"],
            "pad": ""
        }
    });
    if let Some(id) = id {
        e["id"] = json!(id);
    }
    let pad = bytes.saturating_sub(e.to_string().len());
    e["data"]["pad"] = json!("x".repeat(pad));
    e
}

/// Sizes cycle through 512, 1024, 1536 and 2048 bytes.
pub(super) fn size_of_event(i: usize) -> usize {
    512 * (1 + i % 4)
}

pub(super) fn request_body(
    n: usize,
    first: usize,
    timestamp: &str,
    ids: &mut dyn FnMut() -> Option<String>,
) -> Vec<u8> {
    let events: Vec<Value> = (first..first + n)
        .map(|i| event(i, size_of_event(i), timestamp, ids()))
        .collect();
    if n == 1 {
        events[0].to_string().into_bytes()
    } else {
        Value::Array(events).to_string().into_bytes()
    }
}

pub(super) fn now_rfc3339() -> String {
    output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%S.000Z"]))
        .unwrap_or_else(|| "2026-11-28T08:00:00.000Z".into())
}
