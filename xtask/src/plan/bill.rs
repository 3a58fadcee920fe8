//! The monthly bill of a load under its settings, line by line and by service, at the list
//! prices of `crate::prices`: Workers requests and CPU, Durable Object requests and duration,
//! the buffer's writes, reads and fixed part, Lambda invocations and duration. Pure.
//!
//! Free tiers and included amounts are ignored (they take a fixed amount off, not a share);
//! not billed here: the spill queue (paid only through an SQS outage), Workers' $5 monthly
//! minimum, CloudWatch, the SQS mapping's idle long polls.

use crate::limits::limit;
use crate::prices::{
    kinesis_retention_months, kinesis_shard_hour_with_retention, usd, HOURS_PER_MONTH,
};

use super::model::{
    flow, Buffer, Flow, Input, Settings, DO_GB, GIB, KIB, SECONDS_PER_MONTH, SQS_CHUNK,
};

/// One line of the monthly bill.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub service: &'static str,
    pub item: &'static str,
    /// Billed units a month, in `unit`.
    pub units: f64,
    pub unit: &'static str,
    pub usd: f64,
    /// Paid however little is sent (an on-demand stream, provisioned shards).
    pub fixed: bool,
}

/// The monthly bill of the load under `settings`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bill {
    pub lines: Vec<Line>,
    /// Events a month.
    pub events: f64,
}

impl Bill {
    pub fn total(&self) -> f64 {
        self.lines.iter().map(|l| l.usd).sum()
    }

    /// What varies with the traffic, per million events (the fixed lines left out).
    pub fn per_million_events(&self) -> f64 {
        let variable: f64 = self.lines.iter().filter(|l| !l.fixed).map(|l| l.usd).sum();
        variable / self.events * 1e6
    }

    /// What varies with the traffic per million events, of the lines `counted` keeps: a bill
    /// compared with one that counts fewer services.
    pub fn per_million_events_of(&self, counted: impl Fn(&Line) -> bool) -> f64 {
        let sum: f64 = self
            .lines
            .iter()
            .filter(|l| !l.fixed && counted(l))
            .map(|l| l.usd)
            .sum();
        sum / self.events * 1e6
    }

    /// The sum of one service's lines.
    pub fn service(&self, service: &str) -> f64 {
        self.lines
            .iter()
            .filter(|l| l.service == service)
            .map(|l| l.usd)
            .sum()
    }
}

/// The monthly bill at the load's rate.
pub fn bill(input: &Input, s: &Settings) -> Bill {
    let (d, c) = (&input.deployment, &input.capacities);
    let f = flow(input, 1.0, s.window_ms, s.batch_shards);
    let month = SECONDS_PER_MONTH;
    let mut lines = Vec::new();
    let mut line = |service, item, units: f64, unit, price: f64, fixed| {
        lines.push(Line {
            service,
            item,
            units,
            unit,
            usd: units * price,
            fixed,
        })
    };
    let per_m = |id: &str| usd(id) / 1e6;
    let requests = f.requests * month;
    line(
        "Workers",
        "requests",
        requests,
        "requests",
        per_m("workers_request"),
        false,
    );
    line(
        "Workers",
        "CPU",
        requests * c.cpu_ms_per_request,
        "CPU ms",
        per_m("workers_cpu_ms"),
        false,
    );
    if f.batched_requests > 0.0 {
        line(
            "Durable Objects",
            "requests",
            f.do_requests * month,
            "requests",
            per_m("do_request"),
            false,
        );
        line(
            "Durable Objects",
            "duration",
            f.batchers * f.batcher_active * month * DO_GB,
            "GB-s",
            per_m("do_gb_s"),
            false,
        );
    }
    let messages = f.messages * month;
    let bytes = messages * f.message_bytes;
    match d.buffer {
        Buffer::Sqs => {
            line(
                "SQS",
                "sends",
                f.sqs_billed * month,
                "requests",
                per_m("sqs_request"),
                false,
            );
            // Full receives of 10, each billed per started 64 KiB returned, and a delete each.
            let receives = messages / limit("sqs_batch_entries");
            let chunks = (f.message_bytes * limit("sqs_batch_entries") / SQS_CHUNK)
                .ceil()
                .max(1.0);
            line(
                "SQS",
                "receives and deletes",
                receives * (chunks + 1.0),
                "requests",
                per_m("sqs_request"),
                false,
            );
        }
        Buffer::KinesisOnDemand => {
            line(
                "Kinesis",
                "data in (records rounded up to 1 KiB)",
                f.kinesis_kib * month * KIB / GIB,
                "GiB",
                usd("kinesis_od_in_gb"),
                false,
            );
            line(
                "Kinesis",
                "data out",
                bytes / GIB,
                "GiB",
                usd("kinesis_od_out_gb"),
                false,
            );
            let months_kept = kinesis_retention_months();
            line(
                "Kinesis",
                "retention past 24 h",
                bytes / GIB * months_kept,
                "GiB-months",
                usd("kinesis_od_retention_gb_month"),
                false,
            );
            line(
                "Kinesis",
                "stream-hours",
                HOURS_PER_MONTH,
                "hours",
                usd("kinesis_od_stream_hour"),
                true,
            );
        }
        Buffer::KinesisProvisioned => {
            line(
                "Kinesis",
                "PUT payload units",
                f.put_units * month,
                "units",
                per_m("kinesis_put_unit"),
                false,
            );
            line(
                "Kinesis",
                "shard-hours (retention included)",
                f64::from(s.stream_shards) * HOURS_PER_MONTH,
                "shard-hours",
                kinesis_shard_hour_with_retention(),
                true,
            );
        }
    }
    line(
        "Lambda",
        "invocations",
        messages / per_invocation(input, s, &f),
        "invocations",
        per_m("lambda_request"),
        false,
    );
    // A connection drains `drain_per_connection` events/s while its invocation runs, so every
    // event costs 1/drain seconds of one invocation's duration.
    line(
        "Lambda",
        "duration",
        f.events * month / c.drain_per_connection * d.memory_mb / 1024.0,
        "GB-s",
        usd("lambda_gb_s"),
        false,
    );
    Bill {
        lines,
        events: f.events * month,
    }
}

/// Messages (records) one invocation carries at the flow's rate: what arrives within the
/// batching window (per shard, for Kinesis), up to the batch size.
pub fn per_invocation(input: &Input, s: &Settings, f: &Flow) -> f64 {
    let window = f64::from(s.batching_window_s.max(1));
    let per_source = if input.deployment.buffer.is_kinesis() {
        f.messages / f64::from(s.stream_shards.max(1))
    } else {
        f.messages
    };
    (per_source * window).clamp(1.0, f64::from(s.batch_size.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::tests::input;
    use crate::plan::settings::settings;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn the_bill_is_the_sum_of_its_lines_and_direct_sqs_is_figure_9s() {
        let i = input(100.0, 1.0, 100.0, Buffer::Sqs);
        let s = settings(&i);
        assert!(
            !s.group_commit,
            "one request a second per location: nothing to gather"
        );
        let b = bill(&i, &s);
        let sum: f64 = b.lines.iter().map(|l| l.usd).sum();
        assert!(close(b.total(), sum));
        let services: f64 = ["Workers", "Durable Objects", "SQS", "Lambda"]
            .iter()
            .map(|sv| b.service(sv))
            .sum();
        assert!(close(services, sum));
        assert_eq!(b.service("Durable Objects"), 0.0);
        let events = 100.0 * SECONDS_PER_MONTH;
        assert!(close(b.events, events));
        let per_m = |sv: &str| b.service(sv) / events * 1e6;
        // Workers: $0.30 a million requests + 3 ms x $0.02 a million ms.
        assert!(close(per_m("Workers"), 0.30 + 3.0 * 0.02));
        // SQS: a send per event, a receive and a delete per 10: $0.40 + $0.08.
        assert!(close(per_m("SQS"), 0.48));
        // Lambda: 100 messages a second in 1 s windows: 100 per invocation; 1/5,000 s of
        // 0.5 GB per event.
        let lambda = 1e6 / 100.0 * 0.20 / 1e6 + 1e6 / 5_000.0 * 0.5 * usd("lambda_gb_s");
        assert!(close(per_m("Lambda"), lambda));
        assert!(close(b.per_million_events(), sum / events * 1e6));
    }

    #[test]
    fn kinesis_bills_kib_or_put_units_and_its_fixed_part() {
        let i = input(1_000.0, 1.0, 100.0, Buffer::KinesisOnDemand);
        let s = settings(&i);
        let b = bill(&i, &s);
        // On-demand: a stream-hour all month, whatever the traffic.
        let fixed: f64 = b.lines.iter().filter(|l| l.fixed).map(|l| l.usd).sum();
        assert!(close(fixed, 29.2));
        // 1,466 B records: 2 KiB each.
        let data_in = b
            .lines
            .iter()
            .find(|l| l.item.starts_with("data in"))
            .expect("as set up");
        assert!(close(
            data_in.units,
            1_000.0 * SECONDS_PER_MONTH * 2.0 * KIB / GIB
        ));
        let i = input(1_000.0, 1.0, 100.0, Buffer::KinesisProvisioned);
        let s = settings(&i);
        assert_eq!(s.stream_shards, 2, "1,000 records/s with 25 % headroom");
        let b = bill(&i, &s);
        let shards = b.lines.iter().find(|l| l.fixed).expect("as set up");
        assert!(close(shards.usd, 2.0 * 730.0 * (0.015 + 0.02)));
    }
}
