//! The edge's body reader on arbitrary requests: content type, content encoding (gzip with its
//! cap), the three body shapes (object, array, NDJSON), then validation, ids, enrichment and
//! packing, in the order the handler runs them for `/v1/events`. Everything here comes from the client.
//!
//! The input reads like an HTTP request head and body:
//!
//! ```text
//! content-type: application/x-ndjson
//! content-encoding: gzip
//! x-fuzz-wrap: gzip
//! sent-at: 2026-11-28T08:00:00Z
//!
//! {"type":"a"}
//! {"type":"b"}
//! ```
//!
//! Without a blank line the whole input is the body. Two header names are the harness's own:
//! `x-fuzz-wrap` compresses the body before the edge sees it (`gzip`, `gzip-gzip`, or
//! `gzip-cut` for a truncated stream), since random bytes almost never make a valid gzip
//! stream; `x-fuzz-limits: small` swaps the default limits for tiny ones so every limit is hit.
//!
//! Properties: never panics; every refusal is a 4xx with a JSON body naming its code (nothing a
//! client sends may cause a 500); whatever is accepted packs into messages within the limits
//! that decode back to exactly the accepted ids, stamped with the key id and the edge clock.
#![no_main]

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use spillway_edge::http::headers::idempotency_key;
use spillway_edge::protocol::events::{encoding_of, format_of, parse, split_events, Encoding};
use spillway_edge::protocol::gzip::gunzip_capped;
use spillway_edge::request::prepare::prepare_events;
use spillway_edge::{EdgeError, Prepared, Stamp};
use spillway_shared::limits::{validate, ENRICHMENT_BYTES, ENVELOPE_OVERHEAD_BYTES};
use spillway_shared::{open, BufferLimits, Keyring, RequestLimits, SigningKey, Unsigned};

const NOW_MS: u64 = 1_795_852_800_000;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).expect("in memory");
    e.finish().expect("in memory")
}

/// The smallest consistent limits: a message holds one event of `max_event_bytes` plus the
/// enrichment allowance and the envelope (`limits::validate`), and barely more, so that
/// requests of a few events spread over several messages and batch requests.
fn small_limits() -> (RequestLimits, BufferLimits) {
    let max_event_bytes = 256;
    let max_message_bytes = max_event_bytes + ENRICHMENT_BYTES + ENVELOPE_OVERHEAD_BYTES;
    let request = RequestLimits {
        max_body_bytes: 2048,
        max_decompressed_bytes: 4096,
        max_event_bytes,
        max_events_per_request: 8,
        max_json_depth: 4,
    };
    let buffer = BufferLimits {
        bytes_per_entry: max_message_bytes,
        bytes_per_call: 2 * max_message_bytes,
        ..BufferLimits::default()
    };
    (request, buffer)
}

fn split(data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let Some(end) = data.windows(2).position(|w| w == b"\n\n") else {
        return (headers, data);
    };
    for line in data[..end].split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    (headers, &data[end + 2..])
}

/// What the client would get for `error`: never a 5xx, always a JSON body with the code.
fn check_refusal(error: &EdgeError) {
    let reply = error.reply();
    assert!(
        (400..500).contains(&reply.status),
        "client input caused {}: {error:?}",
        reply.status
    );
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON error body");
    assert_eq!(body["error"]["code"], reply.code);
    if let EdgeError::Invalid(problems) = error {
        assert!(!problems.is_empty(), "`Invalid` without problems");
    }
}

fn run(
    headers: &HeaderMap,
    body: &[u8],
    limits: &RequestLimits,
    buffer: &BufferLimits,
) -> Result<Prepared, EdgeError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let format = format_of(header("content-type"))?;
    let encoding = encoding_of(header("content-encoding"))?;
    let idempotency = idempotency_key(headers)?;
    if body.len() > limits.max_body_bytes {
        return Err(EdgeError::BodyTooLarge {
            limit: limits.max_body_bytes,
        });
    }
    let decoded = match encoding {
        Encoding::Identity => body.to_vec(),
        Encoding::Gzip => {
            let out = gunzip_capped(body, limits.max_decompressed_bytes)?;
            assert!(out.len() <= limits.max_decompressed_bytes);
            out
        }
    };
    let stamp = Stamp {
        key_id: "web",
        idempotency_key: idempotency,
        now_ms: NOW_MS,
        edge: None,
        // A `sent-at` line in the input is the client's send time, read as the edge reads the
        // header: every event's time is then corrected with it, and the envelope carries it.
        sent_at: header("sent-at").and_then(spillway_shared::event_time::parse_sent_at),
    };
    let counter = || {
        let mut n = 0u8;
        move || {
            n = n.wrapping_add(1);
            [n; 10]
        }
    };
    // `ingest` leaves a single-object body for validation to parse; the answer must be the
    // one given when every event is checked first.
    let items = split_events(&decoded, format, limits);
    let result = items
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|items| prepare_events(items, limits, buffer, &key(), &stamp, &mut counter()));
    let checked = parse(&decoded, format, limits)
        .and_then(|items| prepare_events(&items, limits, buffer, &key(), &stamp, &mut counter()));
    assert_eq!(result, checked, "split_events and parse disagree");
    let prepared = result?;
    assert_eq!(
        prepared.ids.len(),
        items.map_or(0, |i| i.len()),
        "accepted ids vs parsed events"
    );
    Ok(prepared)
}

/// The key the edge seals with here.
fn key() -> SigningKey {
    SigningKey::new("fuzz", &[b'k'; 32]).expect("key")
}

fuzz_target!(|data: &[u8]| {
    let (headers, raw) = split(data);
    let (limits, buffer) = match headers.get("x-fuzz-limits").map(HeaderValue::as_bytes) {
        Some(b"small") => small_limits(),
        _ => (RequestLimits::default(), BufferLimits::default()),
    };
    assert_eq!(validate(&limits, &buffer), Ok(()));
    let body = match headers.get("x-fuzz-wrap").map(HeaderValue::as_bytes) {
        Some(b"gzip") => gzip(raw),
        Some(b"gzip-gzip") => gzip(&gzip(raw)),
        Some(b"gzip-cut") => {
            let z = gzip(raw);
            z[..z.len() / 2].to_vec()
        }
        _ => raw.to_vec(),
    };

    let prepared = match run(&headers, &body, &limits, &buffer) {
        Ok(p) => p,
        Err(e) => return check_refusal(&e),
    };
    assert!(!prepared.ids.is_empty());
    assert!(prepared.ids.len() <= limits.max_events_per_request);
    let mut queued = Vec::with_capacity(prepared.ids.len());
    for batch in &prepared.calls {
        assert!(!batch.entries.is_empty() && batch.entries.len() <= buffer.entries_per_call);
        assert!(batch.body_bytes() <= buffer.bytes_per_call);
        for entry in &batch.entries {
            assert!(entry.body.len() <= buffer.bytes_per_entry);
            let events = open(&entry.body, &Keyring::new(vec![key()], Unsigned::Refuse))
                .expect("the edge queued a body that does not open");
            for event in &events {
                assert_eq!(event.key_id, "web");
                assert_eq!(event.received_at.timestamp_millis() as u64, NOW_MS);
            }
            let ids: Vec<_> = events.iter().map(|e| e.id).collect();
            assert_eq!(ids, entry.event_ids);
            queued.extend(ids);
        }
    }
    assert_eq!(
        queued, prepared.ids,
        "queued ids differ from the answer's ids"
    );
});
