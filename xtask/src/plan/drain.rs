//! How long a burst takes to reach the table: `burst_events` arrive at once on top of the
//! steady rate; the edge takes them in as fast as it can (deployed Workers: at once; a
//! provisioned stream: as fast as its shards take writes; this machine: the edge's measured
//! rate), and the consumer drains them with what its concurrency leaves over the steady rate,
//! its concurrency ramping up as Lambda's SQS mapping does (5 at first, +300 a minute) where
//! that applies. Pure: a step simulation of two rates, no clock.
//!
//! It does not model retries, a database slower under a backlog than at rest, or the batching
//! window's wait (at most `MaximumBatchingWindowInSeconds`, added once).

use crate::limits::limit;

use super::model::{flow, Buffer, Input, Settings};

/// Give up past this: a backlog that takes longer to drain never drains in practice.
const HORIZON_S: f64 = 30.0 * 86_400.0;
/// Steps of the simulation over its expected length.
const STEPS: f64 = 20_000.0;

/// The burst's fate.
#[derive(Debug, Clone, PartialEq)]
pub struct Drain {
    /// Seconds from the burst's arrival until the table holds it; `None`: the consumer (or the
    /// edge) has no capacity left over the steady rate, or it takes longer than 30 days.
    pub seconds: Option<f64>,
    /// Seconds until the edge has taken the whole burst in.
    pub accept_seconds: Option<f64>,
    /// The consumer's concurrency when the burst arrives, and at most.
    pub concurrency_start: f64,
    pub concurrency_max: f64,
    /// Events/s the consumer drains at most (concurrency x per connection).
    pub capacity: f64,
    /// What set the time: "the edge", "the consumer" or "the consumer's scale-up".
    pub bound: &'static str,
}

/// The drain of the load's burst under `s`.
pub fn drain(input: &Input, s: &Settings) -> Drain {
    let (load, d, c) = (&input.load, &input.deployment, &input.capacities);
    let f = flow(input, 1.0, s.window_ms, s.batch_shards);
    let steady = f.events;
    let per_conn = c.drain_per_connection;
    let c_max = s.consumer_concurrency(d.buffer);
    let ramps = d.ramp && d.buffer == Buffer::Sqs;
    let c_start = if ramps {
        let busy = (steady / per_conn).ceil();
        c_max.min(busy.max(limit("lambda_sqs_initial_concurrency")))
    } else {
        c_max
    };
    let ramp_per_s = limit("lambda_sqs_scale_per_minute") / 60.0;
    // Events/s the edge takes in at most, the steady traffic included.
    let mut accept = d
        .edge_rps
        .map_or(f64::INFINITY, |r| r * load.events_per_request);
    if d.buffer == Buffer::KinesisProvisioned {
        let shards = f64::from(s.stream_shards);
        let records = shards * limit("kinesis_shard_write_records_per_s");
        let bytes = shards * limit("kinesis_shard_write_bytes_per_s");
        let per_record = f.events_per_message();
        accept = accept
            .min(records * per_record)
            .min(bytes / f.message_bytes * per_record);
    }
    let capacity = c_max * per_conn;
    let mut out = Drain {
        seconds: None,
        accept_seconds: None,
        concurrency_start: c_start,
        concurrency_max: c_max,
        capacity,
        bound: "the consumer",
    };
    let burst = load.burst_events;
    let accept_spare = accept - steady;
    let drain_spare = capacity - steady;
    if accept_spare <= 0.0 || drain_spare <= 0.0 {
        out.bound = if accept_spare <= 0.0 {
            "the edge"
        } else {
            "the consumer"
        };
        return out;
    }
    let ramp_s = if ramps {
        (c_max - c_start) / ramp_per_s
    } else {
        0.0
    };
    let expected = burst / accept_spare.min(drain_spare) + ramp_s;
    let dt = (expected / STEPS).max(1e-4);
    let (mut t, mut taken, mut backlog) = (0.0, 0.0_f64, 0.0_f64);
    let mut accepted_at = if burst <= 0.0 { Some(0.0) } else { None };
    while t < HORIZON_S {
        let take = (accept_spare * dt).min(burst - taken);
        taken += take;
        backlog += take;
        t += dt;
        if accepted_at.is_none() && taken >= burst {
            accepted_at = Some(t);
        }
        let conc = if ramps {
            (c_start + ramp_per_s * t).min(c_max)
        } else {
            c_max
        };
        backlog -= ((conc * per_conn - steady).max(0.0) * dt).min(backlog);
        if taken >= burst && backlog <= 1e-9 {
            out.seconds = Some(t);
            break;
        }
    }
    out.accept_seconds = accepted_at;
    let consumer_alone = burst / drain_spare;
    out.bound = if accepted_at.is_some_and(|a| a >= consumer_alone) {
        "the edge"
    } else if ramp_s > 0.0 && out.seconds.is_some_and(|t| t > consumer_alone * 1.05) {
        "the consumer's scale-up"
    } else {
        "the consumer"
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::tests::input;
    use crate::plan::settings::settings;

    #[test]
    fn without_ramp_a_burst_drains_at_the_spare_capacity() {
        // 2 connections of 1,000 events/s, 1,000 events/s steady: 1,000 spare.
        let mut i = input(1_000.0, 1.0, 100.0, Buffer::Sqs);
        i.deployment.connections = 2;
        i.deployment.ramp = false;
        i.capacities.drain_per_connection = 1_000.0;
        i.load.burst_events = 10_000.0;
        let d = drain(&i, &settings(&i));
        let t = d.seconds.expect("as set up");
        assert!((t - 10.0).abs() < 0.01, "{t}");
        assert_eq!(d.bound, "the consumer");
        assert_eq!(d.accept_seconds.map(|a| a < 0.01), Some(true));
    }

    #[test]
    fn sqs_scale_up_is_integrated() {
        // Almost no steady traffic; 5 invocations at first, +5 a second up to 100, each
        // draining 100 events/s: by 19 s, 100 x (5 x 19 + 5 x 19^2 / 2) = 99,750 events.
        let mut i = input(0.001, 1.0, 1.0, Buffer::Sqs);
        i.deployment.connections = 100;
        i.capacities.drain_per_connection = 100.0;
        i.load.burst_events = 99_750.0;
        let d = drain(&i, &settings(&i));
        assert_eq!((d.concurrency_start, d.concurrency_max), (5.0, 100.0));
        let t = d.seconds.expect("as set up");
        assert!((t - 19.0).abs() < 0.05, "{t}");
        assert_eq!(d.bound, "the consumer's scale-up");
    }

    #[test]
    fn the_edge_or_no_capacity_bounds_it() {
        // This machine: the edge takes 100 requests of 10 events a second, 50 are steady.
        let mut i = input(50.0, 10.0, 1.0, Buffer::Sqs);
        i.deployment.edge_rps = Some(100.0);
        i.deployment.ramp = false;
        i.load.burst_events = 5_000.0;
        let d = drain(&i, &settings(&i));
        assert!((d.seconds.expect("as set up") - 10.0).abs() < 0.05);
        assert_eq!(d.bound, "the edge");
        // A consumer slower than the steady rate never drains the burst.
        i.capacities.drain_per_connection = 100.0;
        let d = drain(&i, &settings(&i));
        assert_eq!((d.seconds, d.bound), (None, "the consumer"));
    }

    #[test]
    fn a_provisioned_stream_takes_a_burst_at_its_shards_rate() {
        let mut i = input(100.0, 1.0, 100.0, Buffer::KinesisProvisioned);
        // Records of 1,018 B: the shard's 1,000 records/s bind before its 1 MiB/s.
        i.load.bytes_per_event = 100.0;
        i.capacities.drain_per_connection = 1e6;
        i.load.burst_events = 9_000.0;
        let s = settings(&i);
        assert_eq!(s.stream_shards, 1);
        let d = drain(&i, &s);
        // One shard, 1,000 records of one event a second, 100 of them steady.
        assert!((d.accept_seconds.expect("as set up") - 10.0).abs() < 0.05);
        assert_eq!(d.bound, "the edge");
    }
}
