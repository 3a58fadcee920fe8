//! Which limit binds first as the load grows: the share of each documented limit
//! (`crate::limits`) and of each measured capacity a load uses, at a multiple of the planned
//! rate, with the settings planned for 1x (a deployment does not re-plan itself), except the
//! batchers per location, which the edge grows with the rate up to `BATCH_MAX_SHARDS`. Pure.
//!
//! A share of 1 or more binds. Not every limit is a rate: the SQS mapping's scale-up is shown
//! as the concurrency needed against what the mapping reaches within its first minute.

use crate::limits::limit;

use super::model::{flow, pack, Buffer, Input, Settings};

/// One limit at one load.
#[derive(Debug, Clone, PartialEq)]
pub struct Use {
    pub limit: &'static str,
    /// What the load needs, over what the limit allows.
    pub share: f64,
    /// The two numbers, in words.
    pub detail: String,
    /// Met only through an outage of the buffer (the spill queue), not in steady operation.
    pub outage: bool,
}

/// The limits the load at `multiple` x its rate meets, the most used first.
pub fn uses(input: &Input, s: &Settings, multiple: f64) -> Vec<Use> {
    let (load, d, c) = (&input.load, &input.deployment, &input.capacities);
    // The edge follows the rate with its batchers, up to `BATCH_MAX_SHARDS`.
    let f = flow(input, multiple, s.window_ms, s.shards_at(input, multiple));
    let mut out = Vec::new();
    let mut add = |limit: &'static str, need: f64, allowed: f64, detail: String| {
        out.push(Use {
            limit,
            share: need / allowed,
            detail,
            outage: false,
        })
    };
    if f.batched_requests > 0.0 {
        let soft = limit("do_requests_per_s");
        add(
            "a batcher (Durable Object soft limit)",
            f.per_batcher,
            soft,
            format!(
                "{} req/s per batcher of {} ({} per location, BATCH_MAX_SHARDS {})",
                n(f.per_batcher),
                n(soft),
                f.batchers / load.locations,
                s.max_shards
            ),
        );
    }
    let conc = s.consumer_concurrency(d.buffer);
    let drain = conc * c.drain_per_connection;
    add(
        "the database (connections x rows/s per connection)",
        f.events,
        drain,
        format!(
            "{} events/s of {} ({} connections x {})",
            n(f.events),
            n(drain),
            n(conc),
            n(c.drain_per_connection)
        ),
    );
    let needed = (f.events / c.drain_per_connection).ceil().min(conc);
    if d.buffer == Buffer::Sqs {
        if d.ramp {
            let first_minute =
                limit("lambda_sqs_initial_concurrency") + limit("lambda_sqs_scale_per_minute");
            add(
                "Lambda's SQS scale-up (5, then +300 a minute)",
                needed,
                first_minute,
                format!(
                    "{} concurrent needed; {} within the first minute",
                    n(needed),
                    n(first_minute)
                ),
            );
        }
        let in_flight = needed * f64::from(s.batch_size);
        add(
            "SQS messages in flight",
            in_flight,
            limit("sqs_in_flight"),
            format!(
                "{} ({} invocations x {} messages) of {}",
                n(in_flight),
                n(needed),
                s.batch_size,
                n(limit("sqs_in_flight"))
            ),
        );
    }
    let account = limit("lambda_account_concurrency");
    add(
        "Lambda account concurrency (default quota)",
        needed,
        account,
        format!("{} of {}", n(needed), n(account)),
    );
    let record_bytes = f.messages * f.message_bytes;
    match d.buffer {
        Buffer::KinesisProvisioned => {
            let shards = f64::from(s.stream_shards);
            let records = f.messages / (shards * limit("kinesis_shard_write_records_per_s"));
            let bytes = record_bytes / (shards * limit("kinesis_shard_write_bytes_per_s"));
            add(
                "the stream's shards (1,000 records/s, 1 MiB/s each)",
                records.max(bytes),
                1.0,
                format!(
                    "{} records/s, {} MiB/s into {} shards",
                    n(f.messages),
                    n(record_bytes / 1_048_576.0),
                    s.stream_shards
                ),
            );
        }
        Buffer::KinesisOnDemand => {
            // On-demand takes up to twice its recent peak (the planned rate) at once, and
            // never less than its first 4 MB/s and 4,000 records/s.
            let base = flow(input, 1.0, s.window_ms, s.batch_shards);
            let bytes_room = (2.0 * base.messages * base.message_bytes)
                .max(limit("kinesis_on_demand_initial_bytes_per_s"));
            let records_room = (2.0 * base.messages).max(4.0 * 1_000.0);
            add(
                "on-demand capacity (twice the recent peak, at least 4 MB/s)",
                (record_bytes / bytes_room).max(f.messages / records_room),
                1.0,
                format!(
                    "{} records/s, {} MB/s",
                    n(f.messages),
                    n(record_bytes / 1e6)
                ),
            );
            add(
                "an on-demand stream's ceiling (10 GB/s in us-east-1)",
                record_bytes,
                limit("kinesis_on_demand_max_bytes_per_s"),
                format!("{} MB/s", n(record_bytes / 1e6)),
            );
        }
        Buffer::Sqs => {}
    }
    if let Some(edge) = d.edge_rps {
        add(
            "the edge, as measured here",
            f.requests,
            edge,
            format!("{} req/s of {}", n(f.requests), n(edge)),
        );
    }
    // Through an SQS outage every request spills: one queue message per 128 KB of its events.
    let one = pack(load.events_per_request, load, c);
    let spill = f.requests * (one.bytes / limit("queues_message_bytes")).ceil().max(1.0);
    out.push(Use {
        limit: "the spill queue, through an SQS outage (5,000 messages/s)",
        share: spill / limit("queues_messages_per_s"),
        detail: format!(
            "{} messages/s of {}",
            n(spill),
            n(limit("queues_messages_per_s"))
        ),
        outage: true,
    });
    out.sort_by(|a, b| b.share.total_cmp(&a.share));
    out
}

/// The first limit that binds (share of 1 or more) in steady operation, if any.
pub fn binding(uses: &[Use]) -> Option<&Use> {
    uses.iter().find(|u| !u.outage).filter(|u| u.share >= 1.0)
}

/// The limit met only through an outage of the buffer (the spill queue).
pub fn outage(uses: &[Use]) -> Option<&Use> {
    uses.iter().find(|u| u.outage)
}

/// A number for a sentence: grouped thousands, no more decimals than it needs.
pub fn n(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let decimals = if x.abs() >= 100.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{x:.decimals$}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::tests::input;
    use crate::plan::settings::settings;

    fn first(i: &Input, k: f64) -> Option<&'static str> {
        let s = settings(i);
        binding(&uses(i, &s, k)).map(|u| u.limit)
    }

    #[test]
    fn the_binding_limit_changes_with_the_rate() {
        // 100 req/s at one location, a fast database: one batcher at 100 req/s. At 10x the
        // edge runs 2 (500 req/s each), at 100x 20; past BATCH_MAX_SHARDS (32 here, room
        // for 10x) each batcher takes more than the soft limit.
        let mut i = input(100.0, 1.0, 1.0, Buffer::Sqs);
        i.capacities.drain_per_connection = 1e6;
        assert_eq!(first(&i, 1.0), None);
        assert_eq!(first(&i, 10.0), None);
        let at = |k: f64| {
            let s = settings(&i);
            let list = uses(&i, &s, k);
            let u = list
                .iter()
                .find(|u| u.limit.starts_with("a batcher"))
                .cloned();
            u.expect("batching")
        };
        assert!((at(10.0).share - 0.5).abs() < 1e-9);
        assert!(at(10.0)
            .detail
            .contains("(2 per location, BATCH_MAX_SHARDS 32)"));
        assert_eq!(
            first(&i, 1_000.0),
            Some("a batcher (Durable Object soft limit)")
        );
        assert!((at(1_000.0).share - 100_000.0 / 32.0 / 1_000.0).abs() < 1e-9);
        // Spread over 100 locations (no batching) with a slow database: the database first.
        let mut i = input(1_000.0, 1.0, 100.0, Buffer::Sqs);
        i.deployment.connections = 2;
        i.capacities.drain_per_connection = 1_000.0;
        assert_eq!(first(&i, 1.0), None);
        assert_eq!(
            first(&i, 10.0),
            Some("the database (connections x rows/s per connection)")
        );
        // A fast database: nothing binds at 10,000 req/s but the spill queue's 5,000
        // messages/s, and that only through an SQS outage.
        i.capacities.drain_per_connection = 1e6;
        assert_eq!(first(&i, 10.0), None);
        let s = settings(&i);
        let list = uses(&i, &s, 10.0);
        assert_eq!(
            list[0].limit,
            "the spill queue, through an SQS outage (5,000 messages/s)"
        );
        assert!(list[0].share >= 1.0);
        assert_eq!(outage(&list).map(|u| u.share), Some(list[0].share));
        // A provisioned stream sized for 1x: its shards at 10x.
        let i = input(500.0, 1.0, 100.0, Buffer::KinesisProvisioned);
        assert_eq!(first(&i, 1.0), None);
        assert_eq!(
            first(&i, 10.0),
            Some("the stream's shards (1,000 records/s, 1 MiB/s each)")
        );
    }

    #[test]
    fn shares_are_sorted_and_sqs_scale_up_counts_the_first_minute() {
        let mut i = input(100_000.0, 1.0, 300.0, Buffer::Sqs);
        i.deployment.connections = 1_000;
        let s = settings(&i);
        let list = uses(&i, &s, 1.0);
        assert!(list.windows(2).all(|w| w[0].share >= w[1].share));
        let scale = list
            .iter()
            .find(|u| u.limit.starts_with("Lambda's SQS scale-up"))
            .expect("as set up");
        // 100,000 events/s at 5,000 per connection: 20 invocations of the 305 reached.
        assert!((scale.share - 20.0 / 305.0).abs() < 1e-9, "{}", scale.share);
    }

    #[test]
    fn numbers_read_as_in_a_sentence() {
        assert_eq!(n(1_234_567.0), "1,234,567");
        assert_eq!(n(12.5), "12.5");
        assert_eq!(n(0.25), "0.25");
        assert_eq!(n(3.0), "3");
        assert_eq!(n(-1_500.0), "-1,500");
        assert_eq!(n(f64::INFINITY), "n/a");
    }
}
