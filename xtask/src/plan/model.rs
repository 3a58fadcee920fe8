//! The planner's model of a deployment's traffic: the load (requests/s, events per request,
//! bytes per event, locations), the deployment's fixed facts, the capacities measured here,
//! and what follows for the buffer ([`flow`]): how many requests a batcher gathers per flush,
//! how events pack into messages, how many calls and billed units that makes. Pure arithmetic
//! over the limits table (`crate::limits`); no I/O, no clock. The settings are `settings.rs`'s,
//! the bill `bill.rs`'s.
//!
//! What it assumes, so that the output can say so: traffic spreads evenly over the locations;
//! requests are all alike (same events, same bytes); arrivals within a second are either
//! independent (Poisson) or evenly spaced.

use crate::limits::limit;
use crate::prices::HOURS_PER_MONTH;

/// Seconds in the month AWS bills by.
pub const SECONDS_PER_MONTH: f64 = HOURS_PER_MONTH * 3600.0;
pub(super) const KIB: f64 = 1024.0;
pub(super) const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// SQS bills each started 64 KiB of a call's payload as one request.
pub(super) const SQS_CHUNK: f64 = 64.0 * KIB;
/// Provisioned Kinesis bills each started 25 KiB of a record as one PUT payload unit (as the
/// metering proxy of figure 9 counts them).
const KINESIS_PUT_UNIT: f64 = 25.0 * KIB;
/// The edge's partition key (the request id, a UUID) rides with every Kinesis record and is
/// billed with its data.
pub(super) const KINESIS_KEY_BYTES: f64 = 36.0;
/// The edge's default `MAX_MESSAGE_BYTES`: how many events share one message or record.
const MAX_MESSAGE_BYTES: f64 = 256.0 * KIB;
/// Only requests whose encoded events stay below this go through a batcher
/// (`GROUP_COMMIT_BELOW_BYTES` of edge/src/deliver/group_commit): a bigger one already fills a
/// billed 64 KiB chunk alone.
const GROUP_COMMIT_BELOW_BYTES: f64 = 64.0 * KIB;
/// Memory a Durable Object is billed for while active.
pub(super) const DO_GB: f64 = 0.128;
/// A batcher is sized to half of the documented soft limit: the limit is an average observed
/// by Cloudflare, and a location's rate is not flat within a second. The edge keeps each shard
/// at or below the same (`SHARD_TARGET_RPS` of edge/src/deliver/group_commit/advice.rs, 500
/// requests/s; a test holds the two equal).
pub const BATCHER_SHARE: f64 = 0.5;
/// The edge's defaults of `BATCH_SHARDS` (the fewest batchers per location) and
/// `BATCH_MAX_SHARDS` (the most), edge/src/config.
pub const DEFAULT_MIN_SHARDS: u32 = 1;
pub const DEFAULT_MAX_SHARDS: u32 = 32;
/// `BATCH_MAX_SHARDS` is planned with room for this multiple of the planned rate.
pub const MAX_SHARDS_ROOM: f64 = 10.0;
/// Rows per consumer transaction the batch size aims at (docs/deploy.md section 8: a few
/// hundred to a few thousand).
pub(super) const ROWS_PER_TRANSACTION: f64 = 1_000.0;
/// Provisioned shards are sized 25 % above the rate: a shard at 100 % refuses records on the
/// first uneven second.
pub(super) const SHARD_HEADROOM: f64 = 1.25;
/// Of a Kinesis record, what the Lambda payload holds: base64 (4 bytes for 3).
pub(super) const BASE64: f64 = 4.0 / 3.0;

/// The buffer between edge and consumer, and how it is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    Sqs,
    KinesisOnDemand,
    KinesisProvisioned,
}

impl Buffer {
    pub fn label(self) -> &'static str {
        match self {
            Buffer::Sqs => "SQS",
            Buffer::KinesisOnDemand => "Kinesis on-demand",
            Buffer::KinesisProvisioned => "Kinesis provisioned",
        }
    }

    pub fn is_kinesis(self) -> bool {
        self != Buffer::Sqs
    }
}

/// How requests arrive within a second: independently (Poisson, as from many clients), or
/// evenly spaced (as the bench's open-loop client sends them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    Poisson,
    Uniform,
}

/// The load to plan for.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// Requests per second, all locations together.
    pub rps: f64,
    pub events_per_request: f64,
    /// Bytes of one event as the client sends it.
    pub bytes_per_event: f64,
    /// Cloudflare locations the traffic spreads over, evenly.
    pub locations: f64,
    /// Events arriving at once on top of the steady rate.
    pub burst_events: f64,
    pub arrivals: Arrivals,
}

/// What the deployment fixes, beside what the planner chooses.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub buffer: Buffer,
    /// The database's connection budget: the most connections the consumer may hold.
    pub connections: u32,
    /// `BATCH_WINDOW_MS` to use where group commit pays.
    pub window_ms: f64,
    /// How long a batcher's call to the buffer takes (from the Cloudflare location to the AWS
    /// region), during which the batcher is active and billed.
    pub send_ms: f64,
    /// Worker isolates per location: an isolate gathers its concurrent requests for a batcher
    /// into one Durable Object request (edge/src/deliver/group_commit/gather.rs). `None`:
    /// every request in an isolate of its own, so one Durable Object request each.
    pub isolates: Option<f64>,
    /// The consumer's memory (`FunctionMemorySize`), for its GB-s.
    pub memory_mb: f64,
    /// Requests/s the edge takes at most; `None`: Workers scale with the traffic (deployed).
    pub edge_rps: Option<f64>,
    /// Whether the consumer's concurrency ramps up as Lambda's SQS mapping does (5 at first,
    /// +300 a minute); the local poller starts all its workers at once.
    pub ramp: bool,
}

/// Capacities measured here (or documented defaults: `inputs.rs` says which).
#[derive(Debug, Clone, PartialEq)]
pub struct Capacities {
    /// Events per second one database connection stores, end to end.
    pub drain_per_connection: f64,
    /// Requests per second one batcher serves before its latency grows.
    pub batcher_rps: f64,
    /// Workers CPU per request of this load's size.
    pub cpu_ms_per_request: f64,
    /// Bytes of a message besides its events (envelope, seal).
    pub message_overhead: f64,
    /// Bytes the edge adds to each event (id, received_at, key_id, location).
    pub event_overhead: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub load: Load,
    pub deployment: Deployment,
    pub capacities: Capacities,
}

/// What to deploy with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub group_commit: bool,
    /// `BATCH_WINDOW_MS` (0: group commit off).
    pub window_ms: f64,
    /// Batchers per location the edge runs at the planned rate: it follows the rate between
    /// `min_shards` and `max_shards` (edge/src/deliver/group_commit/advice.rs).
    pub batch_shards: u32,
    /// `BATCH_SHARDS` (a floor) and `BATCH_MAX_SHARDS` (a ceiling) to set.
    pub min_shards: u32,
    pub max_shards: u32,
    /// SQS: `MaximumConcurrency`; Kinesis: `ConnectionBudget` (the function's reserved
    /// concurrency).
    pub concurrency: u32,
    /// Kinesis: `ShardCount` (provisioned) or the shards on-demand will have (at least 4).
    pub stream_shards: u32,
    /// Kinesis: `ParallelizationFactor`.
    pub parallelization: u32,
    /// Messages (SQS) or records (Kinesis) per invocation.
    pub batch_size: u32,
    /// `MaximumBatchingWindowInSeconds`.
    pub batching_window_s: u32,
}

/// Batchers per location the edge runs for `rps` requests/s at a location, between `min` and
/// `max`: enough that each sees at most [`BATCHER_SHARE`] of a batcher's capacity, as the
/// edge's advisor grows them (it shrinks them later than it grows them, which a steady rate
/// does not show).
pub fn edge_shards(rps_per_location: f64, c: &Capacities, min: u32, max: u32) -> u32 {
    let (min, max) = (min.max(1), max.max(min).max(1));
    let needed = (rps_per_location.max(0.0) / (c.batcher_rps * BATCHER_SHARE)).ceil();
    if needed >= f64::from(max) {
        max
    } else {
        (needed as u32).clamp(min, max)
    }
}

impl Settings {
    /// Batchers per location the edge runs at `multiple` times the planned rate.
    pub fn shards_at(&self, input: &Input, multiple: f64) -> u32 {
        let per_location = input.load.rps * multiple / input.load.locations;
        edge_shards(
            per_location,
            &input.capacities,
            self.min_shards,
            self.max_shards,
        )
    }

    /// Invocations the consumer runs at most at once: its database connections.
    pub fn consumer_concurrency(&self, buffer: Buffer) -> f64 {
        let c = f64::from(self.concurrency);
        if buffer.is_kinesis() {
            c.min(f64::from(self.stream_shards * self.parallelization))
        } else {
            c
        }
    }
}

/// Events packed into buffer messages (records), as the edge's packer fills them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Packed {
    pub messages: f64,
    pub bytes: f64,
}

/// Events of the load per message at most (`MAX_MESSAGE_BYTES`).
fn events_per_full_message(load: &Load, c: &Capacities) -> f64 {
    let per_event = load.bytes_per_event + c.event_overhead;
    ((MAX_MESSAGE_BYTES - c.message_overhead) / per_event)
        .floor()
        .max(1.0)
}

/// `events` events of the load, packed.
pub fn pack(events: f64, load: &Load, c: &Capacities) -> Packed {
    let per_event = load.bytes_per_event + c.event_overhead;
    let messages = (events / events_per_full_message(load, c)).ceil().max(1.0);
    Packed {
        messages,
        bytes: messages * c.message_overhead + events * per_event,
    }
}

/// The traffic the buffer and the consumer see, per second, at `multiple` times the load.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub requests: f64,
    pub events: f64,
    /// Requests that go through a batcher.
    pub batched_requests: f64,
    /// Durable Object requests that bring them: one per isolate taking part in a flush.
    pub do_requests: f64,
    /// Requests one flush carries on average (1 without group commit).
    pub per_flush: f64,
    /// Requests/s one batcher sees.
    pub per_batcher: f64,
    pub batchers: f64,
    /// Share of the time a batcher is active (billed).
    pub batcher_active: f64,
    /// Messages (SQS) or records (Kinesis) per second.
    pub messages: f64,
    pub message_bytes: f64,
    /// SQS requests billed for the sends, per second.
    pub sqs_billed: f64,
    /// Kinesis: KiB billed on-demand (each record rounded up) and PUT payload units, per second.
    pub kinesis_kib: f64,
    pub put_units: f64,
}

impl Flow {
    pub fn events_per_message(&self) -> f64 {
        self.events / self.messages
    }
}

/// SQS requests billed for one call of `bytes`, split into as few calls as SQS takes.
fn sqs_billed(p: Packed) -> f64 {
    let calls = (p.messages / limit("sqs_batch_entries"))
        .ceil()
        .max((p.bytes / limit("sqs_message_bytes")).ceil())
        .max(1.0);
    calls * (p.bytes / calls / SQS_CHUNK).ceil().max(1.0)
}

/// How many isolates `requests` spread evenly at random over `isolates` come from: the
/// Durable Object requests of a flush that carries them. Without a number of isolates, one per
/// request.
pub fn isolates_in(requests: f64, isolates: Option<f64>) -> f64 {
    match isolates {
        Some(k) if k >= 1.0 => (k * (1.0 - (1.0 - 1.0 / k).powf(requests))).min(requests),
        _ => requests,
    }
}

/// The flow at `multiple` times the load, group commit on (`window_ms` > 0, `shards`
/// batchers per location) or off.
pub fn flow(input: &Input, multiple: f64, window_ms: f64, shards: u32) -> Flow {
    let (load, c) = (&input.load, &input.capacities);
    let requests = load.rps * multiple;
    let epr = load.events_per_request;
    let one = pack(epr, load, c);
    let batchable = window_ms > 0.0 && one.bytes < GROUP_COMMIT_BELOW_BYTES;
    let batchers = load.locations * f64::from(shards.max(1));
    let per_batcher = requests / batchers;
    let mut f = Flow {
        requests,
        events: requests * epr,
        batched_requests: 0.0,
        do_requests: 0.0,
        per_flush: 1.0,
        per_batcher: 0.0,
        batchers: 0.0,
        batcher_active: 0.0,
        messages: requests * one.messages,
        message_bytes: one.bytes / one.messages,
        sqs_billed: requests * sqs_billed(one),
        kinesis_kib: 0.0,
        put_units: 0.0,
    };
    if batchable {
        let window = window_ms / 1000.0;
        let gathered = match load.arrivals {
            // The request that opens a batch, and those arriving within its window.
            Arrivals::Poisson => 1.0 + per_batcher * window,
            // Evenly spaced: the one arriving exactly as the window ends still joins (the
            // batcher's timer fires after, never before, the window).
            Arrivals::Uniform => 1.0 + (per_batcher * window + 1e-9).floor(),
        };
        // A batch is sealed once one more request would need a second call.
        let (entries, call_bytes) = if input.deployment.buffer.is_kinesis() {
            (limit("kinesis_put_records"), limit("kinesis_call_bytes"))
        } else {
            (limit("sqs_batch_entries"), limit("sqs_message_bytes"))
        };
        let per_call_events = (entries * events_per_full_message(load, c)).min(
            (call_bytes - entries * c.message_overhead) / (load.bytes_per_event + c.event_overhead),
        );
        let per_flush = gathered.min((per_call_events / epr).floor().max(1.0));
        let flushes = requests / per_flush;
        let packed = pack(per_flush * epr, load, c);
        f.batched_requests = requests;
        f.do_requests = flushes * isolates_in(per_flush, input.deployment.isolates);
        f.per_flush = per_flush;
        f.per_batcher = per_batcher;
        f.batchers = batchers;
        // Each flush keeps its batcher active for the window and the call.
        f.batcher_active =
            (flushes / batchers * (window + input.deployment.send_ms / 1000.0)).min(1.0);
        f.messages = flushes * packed.messages;
        f.message_bytes = packed.bytes / packed.messages;
        f.sqs_billed = flushes * sqs_billed(packed);
    }
    let record = f.message_bytes + KINESIS_KEY_BYTES;
    f.kinesis_kib = f.messages * (record / KIB).ceil();
    f.put_units = f.messages * (record / KINESIS_PUT_UNIT).ceil();
    f
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A deployment of the templates' defaults, measured capacities of the 2026-12-06 run's
    /// order.
    pub(in crate::plan) fn input(rps: f64, epr: f64, locations: f64, buffer: Buffer) -> Input {
        Input {
            load: Load {
                rps,
                events_per_request: epr,
                bytes_per_event: 512.0,
                locations,
                burst_events: 30_000.0,
                arrivals: Arrivals::Poisson,
            },
            deployment: Deployment {
                buffer,
                connections: 5,
                window_ms: 20.0,
                send_ms: 30.0,
                isolates: None,
                memory_mb: 512.0,
                edge_rps: None,
                ramp: true,
            },
            capacities: Capacities {
                drain_per_connection: 5_000.0,
                batcher_rps: 1_000.0,
                cpu_ms_per_request: 3.0,
                message_overhead: 795.0,
                event_overhead: 123.0,
            },
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn packing_matches_figure_4() {
        let i = input(1.0, 1.0, 1.0, Buffer::Sqs);
        // 512 + 123 + 795 = 1,430 B: figure 4's one-event message.
        assert_eq!(pack(1.0, &i.load, &i.capacities).bytes, 1_430.0);
        let mut big = i.clone();
        big.load.bytes_per_event = 1_281.0;
        let p = pack(100.0, &big.load, &big.capacities);
        assert_eq!(p.messages, 1.0);
        assert_eq!(sqs_billed(p), 3.0, "141,218 B: three 64 KiB chunks");
        // 1,000 events of 1,404 B each: 186 per 256 KiB message, 6 messages, one call of
        // 10 at most but over 1 MiB: two calls.
        let p = pack(1_000.0, &big.load, &big.capacities);
        assert_eq!(p.messages, 6.0);
        assert_eq!(sqs_billed(p), 2.0 * (p.bytes / 2.0 / SQS_CHUNK).ceil());
    }

    #[test]
    fn evenly_spaced_arrivals_gather_as_figure_7_measured() {
        // Figure 7: 325,000 billed sends per million events at 100 req/s, none saved at 10.
        let mut i = input(100.0, 1.0, 1.0, Buffer::Sqs);
        i.load.arrivals = Arrivals::Uniform;
        let f = flow(&i, 1.0, 20.0, 1);
        assert_eq!(f.per_flush, 3.0);
        assert!(close(f.sqs_billed / f.events * 1e6, 1e6 / 3.0));
        let f = flow(&i, 0.1, 20.0, 1);
        assert_eq!(f.per_flush, 1.0);
    }

    #[test]
    fn an_isolates_requests_share_one_durable_object_request() {
        // One isolate: a flush costs one Durable Object request whatever it carries.
        assert_eq!(isolates_in(30.0, Some(1.0)), 1.0);
        // Unknown isolates: one each, as without gathering.
        assert_eq!(isolates_in(30.0, None), 30.0);
        // Many isolates: nearly one each; never more than the requests.
        let many = isolates_in(3.0, Some(1_000.0));
        assert!(many < 3.0 && many > 2.99, "{many}");
        assert!(isolates_in(2.0, Some(2.0)) == 1.5);
        let mut i = input(1_000.0, 1.0, 1.0, Buffer::Sqs);
        let alone = flow(&i, 1.0, 20.0, 1);
        assert!(close(alone.do_requests, alone.requests));
        i.deployment.isolates = Some(1.0);
        let gathered = flow(&i, 1.0, 20.0, 1);
        assert!(close(
            gathered.do_requests,
            gathered.requests / gathered.per_flush
        ));
    }
}
