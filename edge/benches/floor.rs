//! The edge's cost per event against its floor, side by side in one run: the pure request path
//! (`prepare`: parse -> validate -> ids and enrichment -> pack) and plain `serde_json` parse +
//! serialise of the same request bytes, for requests of 1 and 100 events of 0.5 to 2 KiB.
//!
//! `cargo bench -p spillway-edge --bench floor`; `cargo xtask bench` runs it and reads the
//! estimates criterion writes under `$CARGO_TARGET_DIR/criterion/edge_cost/`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use spillway_edge::body::Format;
use spillway_edge::handler::{prepare, Stamp};
use spillway_edge::log::RequestLog;
use spillway_shared::{EdgeInfo, Limits};

/// A realistic analytics event of roughly `bytes` bytes of JSON.
fn event(i: usize, bytes: usize) -> serde_json::Value {
    let base = json!({
        "type": "page_view",
        "timestamp": "2026-11-28T07:59:00.123Z",
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
    let pad = bytes.saturating_sub(base.to_string().len());
    let mut e = base;
    e["data"]["pad"] = json!("x".repeat(pad));
    e
}

fn body(n: usize) -> Vec<u8> {
    // Sizes cycle through 512, 1024, 1536 and 2048 bytes.
    let events: Vec<_> = (0..n).map(|i| event(i, 512 * (1 + i % 4))).collect();
    if n == 1 {
        serde_json::to_vec(&events[0]).expect("json")
    } else {
        serde_json::to_vec(&events).expect("json")
    }
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let stamp = Stamp {
        key_id: "web",
        idempotency_key: None,
        now_ms: 1_795_852_800_000,
        edge: Some(EdgeInfo {
            colo: Some("FRA".into()),
            country: Some("DE".into()),
        }),
    };
    let mut group = c.benchmark_group("edge_cost");
    for n in [1usize, 100] {
        let body = body(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("request_path", n), &body, |b, body| {
            let mut counter = 0u64;
            // Distinct bytes per call where UUIDv7 keeps them (all but four bits of the
            // first byte): the counter fills the last eight.
            let mut random = || {
                counter += 1;
                let mut r = [0u8; 10];
                r[2..].copy_from_slice(&counter.to_be_bytes());
                r
            };
            b.iter(|| {
                let mut log = RequestLog::default();
                let prepared = prepare(body, Format::Json, &limits, &stamp, &mut random, &mut log)
                    .expect("valid request");
                assert_eq!(prepared.ids.len(), n);
                prepared
            })
        });
        // The floor: what any JSON service pays to read these bytes and write them back out.
        group.bench_with_input(BenchmarkId::new("serde_json_floor", n), &body, |b, body| {
            b.iter(|| {
                let value: serde_json::Value =
                    serde_json::from_slice(std::hint::black_box(body)).expect("json");
                serde_json::to_vec(&value).expect("json")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
