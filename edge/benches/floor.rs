//! The edge's cost per event against its floor, side by side in one run: the pure request path
//! (`prepare`: parse -> validate -> ids and enrichment -> pack) and plain `serde_json` parse +
//! serialise of the same request bytes, for requests of 1 and 100 events of 0.5 to 2 KiB.
//!
//! `cargo bench -p spillway-edge --bench floor`; `cargo xtask bench` runs it and reads the
//! estimates criterion writes under `$CARGO_TARGET_DIR/criterion/edge_cost/`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spillway_edge::protocol::events::Format;
use spillway_edge::{prepare, Stamp};
use spillway_shared::{BufferLimits, EdgeInfo, RequestLimits};
use spillway_support::events::{request_body, FIXED_TIMESTAMP};

fn body(n: usize) -> Vec<u8> {
    // The generator `cargo xtask bench` sends too (tests/support/src/events.rs).
    request_body(n, 0, FIXED_TIMESTAMP, &mut || None)
}

fn bench(c: &mut Criterion) {
    let limits = RequestLimits::default();
    let stamp = Stamp {
        key_id: "web",
        idempotency_key: None,
        now_ms: 1_795_852_800_000,
        edge: Some(EdgeInfo {
            colo: Some("FRA".into()),
            country: Some("DE".into()),
            ..Default::default()
        }),
        sent_at: None,
    };
    let mut group = c.benchmark_group("edge_cost");
    for n in [1usize, 100] {
        let body = body(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("request_path", n), &body, |b, body| {
            // Deterministic but well spread (splitmix64): the id generator keeps only some of
            // these bits, so a plain counter gave 100 events duplicate ids.
            let mut state = 0u64;
            let mut random = || {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                let mut r = [0u8; 10];
                r[..8].copy_from_slice(&z.to_le_bytes());
                r[8..].copy_from_slice(&z.rotate_left(17).to_le_bytes()[..2]);
                r
            };
            let key = spillway_edge::testkit::envelope_key();
            b.iter(|| {
                let prepared = prepare(
                    body,
                    Format::Json,
                    &limits,
                    &BufferLimits::default(),
                    &key,
                    &stamp,
                    &mut random,
                )
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
