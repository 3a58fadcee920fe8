//! The settings to deploy with for a load: group commit only where its bill is lower than
//! sending directly, enough batchers per location that none passes its share of a Durable
//! Object's capacity, the consumer's concurrency at the connection budget, batches of about
//! `ROWS_PER_TRANSACTION` rows within Lambda's payload, and for Kinesis the shards and
//! `ParallelizationFactor`. Pure.

use crate::limits::limit;

use super::bill::bill;
use super::model::{
    edge_shards, flow, Buffer, Flow, Input, Settings, BASE64, DEFAULT_MAX_SHARDS,
    DEFAULT_MIN_SHARDS, KINESIS_KEY_BYTES, MAX_SHARDS_ROOM, ROWS_PER_TRANSACTION, SHARD_HEADROOM,
};

/// The settings for the load: group commit where it pays, enough batchers that none exceeds
/// its share of the soft limit, the consumer's concurrency at the connection budget, batches
/// of about [`ROWS_PER_TRANSACTION`] rows.
pub fn settings(input: &Input) -> Settings {
    let d = &input.deployment;
    let (min_shards, max_shards) = shard_bounds(input);
    let batch_shards = batch_shards(input);
    let s = Settings {
        group_commit: false,
        window_ms: 0.0,
        batch_shards: 1,
        min_shards,
        max_shards,
        concurrency: d.connections,
        stream_shards: 0,
        parallelization: 1,
        batch_size: 1,
        batching_window_s: 1,
    };
    let off = flow(input, 1.0, 0.0, 1);
    let on = flow(input, 1.0, d.window_ms, batch_shards);
    if on.batched_requests > 0.0 {
        let mut with = s.clone();
        with.group_commit = true;
        with.window_ms = d.window_ms;
        with.batch_shards = batch_shards;
        let (with, without) = (finish(input, with, &on), finish(input, s.clone(), &off));
        // Only where it costs less, whatever it adds to the latency (up to the window).
        if bill(input, &with).total() < bill(input, &without).total() {
            return with;
        }
        return without;
    }
    finish(input, s, &off)
}

/// `BATCH_SHARDS` and `BATCH_MAX_SHARDS` to set: the edge's floor (1: it grows the shards
/// itself), and a ceiling with room for [`MAX_SHARDS_ROOM`] times the rate, never below the
/// edge's default.
pub fn shard_bounds(input: &Input) -> (u32, u32) {
    let per_location = input.load.rps * MAX_SHARDS_ROOM / input.load.locations;
    let room = edge_shards(per_location, &input.capacities, 1, u32::MAX);
    (DEFAULT_MIN_SHARDS, room.max(DEFAULT_MAX_SHARDS))
}

/// Batchers per location the edge runs at the planned rate, within [`shard_bounds`]: none
/// serves more than its share of a Durable Object's capacity.
pub fn batch_shards(input: &Input) -> u32 {
    let (min, max) = shard_bounds(input);
    edge_shards(
        input.load.rps / input.load.locations,
        &input.capacities,
        min,
        max,
    )
}

/// The consumer's and the stream's settings for a flow.
fn finish(input: &Input, mut s: Settings, f: &Flow) -> Settings {
    let d = &input.deployment;
    s.concurrency = if d.buffer.is_kinesis() {
        d.connections.max(1)
    } else {
        d.connections
            .clamp(2, limit("lambda_sqs_max_concurrency") as u32)
    };
    // Rows per transaction, bounded by the invocation payload (records are base64 in it).
    let per_message = f.events_per_message();
    let payload = f.message_bytes * if d.buffer.is_kinesis() { BASE64 } else { 1.0 };
    let by_rows = (ROWS_PER_TRANSACTION / per_message).ceil();
    let by_payload = (limit("lambda_batch_bytes") / payload).floor();
    s.batch_size = by_rows
        .min(by_payload)
        .clamp(1.0, limit("lambda_batch_size_max")) as u32;
    // Lambda requires a window of at least 1 s above 10 SQS messages; the templates default to 1.
    s.batching_window_s = 1;
    if d.buffer.is_kinesis() {
        let need = (f.messages / limit("kinesis_shard_write_records_per_s")).max(
            f.messages * (f.message_bytes + KINESIS_KEY_BYTES)
                / limit("kinesis_shard_write_bytes_per_s"),
        );
        s.stream_shards = match d.buffer {
            Buffer::KinesisProvisioned => (need * SHARD_HEADROOM).ceil().max(1.0) as u32,
            // On-demand keeps room for twice its recent peak, and never less than 4 shards'
            // worth (4 MB/s, 4,000 records/s).
            _ => (2.0 * need).ceil().max(4.0) as u32,
        };
        s.parallelization = (s.concurrency / s.stream_shards.max(1))
            .clamp(1, limit("kinesis_parallelization_max") as u32);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::tests::input;
    use crate::plan::model::BATCHER_SHARE;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn group_commit_is_chosen_only_where_it_costs_less() {
        // 100 req/s at one location: 3 requests a flush (Poisson: 1 + 100 x 0.02).
        let i = input(100.0, 1.0, 1.0, Buffer::Sqs);
        let on = settings(&i);
        assert!(on.group_commit);
        assert_eq!((on.window_ms, on.batch_shards), (20.0, 1));
        let f = flow(&i, 1.0, on.window_ms, on.batch_shards);
        assert!(close(f.per_flush, 3.0));
        let mut off = on.clone();
        off.group_commit = false;
        off.window_ms = 0.0;
        let (b_on, b_off) = (bill(&i, &on), bill(&i, &off));
        assert!(b_on.total() < b_off.total());
        assert!(b_on.service("Durable Objects") > 0.0);
        // 10 locations: 10 req/s each, 1.2 requests a flush: below the 1.6 break-even.
        let i = input(100.0, 1.0, 10.0, Buffer::Sqs);
        assert!(!settings(&i).group_commit);
        // 100 events of 1,281 B fill 64 KiB alone: never through a batcher.
        let mut big = input(10_000.0, 100.0, 1.0, Buffer::Sqs);
        big.load.bytes_per_event = 1_281.0;
        assert!(!settings(&big).group_commit);
    }

    #[test]
    fn settings_respect_the_limits() {
        for rps in [1.0, 100.0, 10_000.0, 1e5, 1e6] {
            for locations in [1.0, 10.0, 300.0] {
                for buffer in [
                    Buffer::Sqs,
                    Buffer::KinesisOnDemand,
                    Buffer::KinesisProvisioned,
                ] {
                    let i = input(rps, 1.0, locations, buffer);
                    let s = settings(&i);
                    let f = flow(&i, 1.0, s.window_ms, s.batch_shards);
                    if s.group_commit {
                        let share = f.per_batcher / limit("do_requests_per_s");
                        assert!(share <= BATCHER_SHARE + 1e-9, "{rps} {locations}: {share}");
                    }
                    assert!((1..=10_000).contains(&s.batch_size));
                    if buffer == Buffer::Sqs {
                        assert!((2..=1_000).contains(&s.concurrency));
                    } else {
                        assert!((1..=10).contains(&s.parallelization));
                        let shards = f64::from(s.stream_shards);
                        assert!(f.messages <= shards * 1_000.0);
                        assert!(f.messages * f.message_bytes <= shards * 1_048_576.0);
                    }
                    // The batch fits Lambda's 6 MB payload.
                    let payload = f64::from(s.batch_size) * f.message_bytes;
                    assert!(payload <= limit("lambda_batch_bytes"), "{rps} {buffer:?}");
                }
            }
        }
        let i = input(10_000.0, 1.0, 1.0, Buffer::Sqs);
        let s = settings(&i);
        assert_eq!(s.batch_shards, 20, "10,000 req/s, 500 per batcher");
        // A floor of 1 (the edge grows them), room for 100,000 req/s.
        assert_eq!((s.min_shards, s.max_shards), (1, 200));
    }

    #[test]
    fn shards_are_a_floor_and_a_ceiling_and_the_edge_follows_the_rate_between() {
        // 100 req/s at one location: one batcher, the edge's defaults.
        let i = input(100.0, 1.0, 1.0, Buffer::Sqs);
        let s = settings(&i);
        assert_eq!((s.min_shards, s.batch_shards, s.max_shards), (1, 1, 32));
        // At 10x and 100x the edge adds batchers, up to the ceiling: 1,000 req/s take 2,
        // 10,000 would take 20.
        assert_eq!((s.shards_at(&i, 10.0), s.shards_at(&i, 100.0)), (2, 20));
        assert_eq!(s.shards_at(&i, 1e4), 32, "1,000,000 req/s: the ceiling");
        // Past the ceiling each batcher takes more than its share: the limits say so.
        let f = flow(&i, 1e4, s.window_ms, s.shards_at(&i, 1e4));
        assert!(f.per_batcher > 500.0 * 60.0, "{}", f.per_batcher);
        // 3,000 req/s over 3 locations: 2 each at 1x; BATCH_MAX_SHARDS covers 10x (20).
        let i = input(3_000.0, 1.0, 3.0, Buffer::Sqs);
        let s = settings(&i);
        assert_eq!((s.batch_shards, s.max_shards), (2, 32));
        let i = input(30_000.0, 1.0, 3.0, Buffer::Sqs);
        assert_eq!(settings(&i).max_shards, 200);
    }

    #[test]
    fn the_planners_batcher_share_is_the_edges_shard_target() {
        // The edge keeps each shard at or below SHARD_TARGET_RPS, with default bounds in its
        // config: the planner's model of it must use the same numbers.
        let read = |path: &str| {
            std::fs::read_to_string(crate::step::root().join(path)).expect("the edge's source")
        };
        let advice = read("edge/src/deliver/group_commit/advice.rs");
        let target = "pub const SHARD_TARGET_RPS: f64 = ";
        let at = advice.find(target).expect("SHARD_TARGET_RPS") + target.len();
        let value: f64 = advice[at..advice[at..].find(';').expect(";") + at]
            .parse()
            .expect("a number");
        assert_eq!(value, limit("do_requests_per_s") * BATCHER_SHARE);
        let config = read("edge/src/config/mod.rs");
        assert!(config.contains(&format!("max_shards: {DEFAULT_MAX_SHARDS},")));
        let wrangler = read("wrangler.toml");
        assert!(wrangler.contains(&format!(
            "BATCH_SHARDS ({DEFAULT_MIN_SHARDS}), BATCH_MAX_SHARDS ({DEFAULT_MAX_SHARDS})"
        )));
    }
}
