//! Realistic analytics events, the one generator every benchmark sends: criterion's edge bench
//! (`edge/benches/floor.rs`) and every figure of `cargo xtask bench`. Pure: the timestamp and the
//! ids come in as arguments.

use serde_json::{json, Value};

/// The timestamp the criterion bench and the computed figures use, so their bodies are equal.
pub const FIXED_TIMESTAMP: &str = "2026-11-28T07:59:00.123Z";

/// A page-view event of roughly `bytes` bytes of JSON (padded in `data.pad`), number `i`.
pub fn event(i: usize, bytes: usize, timestamp: &str, id: Option<String>) -> Value {
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
pub fn size_of_event(i: usize) -> usize {
    512 * (1 + i % 4)
}

/// A request body of `n` events numbered from `first`: one object for `n == 1`, else an array.
/// `ids` gives each event its client id, or none.
pub fn request_body(
    n: usize,
    first: usize,
    timestamp: &str,
    ids: &mut dyn FnMut() -> Option<String>,
) -> Vec<u8> {
    let mut events: Vec<Value> = (first..first + n)
        .map(|i| event(i, size_of_event(i), timestamp, ids()))
        .collect();
    if n == 1 {
        events.pop().unwrap_or(Value::Null).to_string().into_bytes()
    } else {
        Value::Array(events).to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_sizes_asked_for() {
        for i in 0..8 {
            let e = event(i, size_of_event(i), FIXED_TIMESTAMP, None);
            assert_eq!(e.to_string().len(), size_of_event(i));
        }
    }

    #[test]
    fn one_event_is_an_object_and_more_are_an_array() {
        let one: Value = serde_json::from_slice(&request_body(1, 0, FIXED_TIMESTAMP, &mut || None))
            .expect("json");
        assert!(one.is_object());
        let mut k = 0;
        let many: Value = serde_json::from_slice(&request_body(3, 5, FIXED_TIMESTAMP, &mut || {
            k += 1;
            Some(format!("id-{k}"))
        }))
        .expect("json");
        let a = many.as_array().expect("array");
        assert_eq!(a.len(), 3);
        assert_eq!(a[0]["data"]["path"], "/products/5");
        assert_eq!(a[2]["id"], "id-3");
    }
}
