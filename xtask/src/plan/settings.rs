//! The settings to deploy with for a load: group commit only where its bill is lower than
//! sending directly, enough batchers per location that none passes its share of a Durable
//! Object's capacity, the consumer's concurrency at the connection budget, batches of about
//! `ROWS_PER_TRANSACTION` rows within Lambda's payload, and for Kinesis the shards and
//! `ParallelizationFactor`. Pure.

use crate::limits::limit;

use super::bill::bill;
use super::model::{
    flow, Buffer, Flow, Input, Settings, BASE64, BATCHER_SHARE, KINESIS_KEY_BYTES,
    ROWS_PER_TRANSACTION, SHARD_HEADROOM,
};

/// The settings for the load: group commit where it pays, enough batchers that none exceeds
/// its share of the soft limit, the consumer's concurrency at the connection budget, batches
/// of about [`ROWS_PER_TRANSACTION`] rows.
pub fn settings(input: &Input) -> Settings {
    let d = &input.deployment;
    let batch_shards = batch_shards(input);
    let s = Settings {
        group_commit: false,
        window_ms: 0.0,
        batch_shards: 1,
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

/// Batchers per location such that none serves more than [`BATCHER_SHARE`] of its capacity.
pub fn batch_shards(input: &Input) -> u32 {
    let per_location = input.load.rps / input.load.locations;
    (per_location / (input.capacities.batcher_rps * BATCHER_SHARE))
        .ceil()
        .max(1.0) as u32
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
        assert_eq!(
            settings(&i).batch_shards,
            20,
            "10,000 req/s, 500 per batcher"
        );
    }
}
