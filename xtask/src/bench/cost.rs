//! Figure 9's bill: dollars per million events, by service, from what a meter counted between
//! the edge and its buffer in a run (`buffers.rs`) and the one price table (`crate::prices`).
//! Pure: the counted units in, the dollars out.
//!
//! Counted: the buffer's writes as the meter saw them (SQS requests per 64 KiB, Kinesis KiB
//! and PUT payload units per record). Derived from those counts: the consumer's reads (SQS:
//! one `ReceiveMessage` and one `DeleteMessageBatch` per full batch; Kinesis on-demand: every
//! byte read once; provisioned: free), the stream's retention past 24 h (the template's
//! `RetentionPeriodHours`) and the consumer's Lambda invocations (full batches). From the
//! requests: one Workers request per client request. From the batchers' flush log of the run
//! (`{"kind":"batch",...}` lines, read by figure 7's [`Flushes`]): the Durable Object requests
//! (group commit on, the edge's advisor sends directly where batching does not pay, so not
//! every request reaches a batcher) and their duration (active wall time at 128 MB). Not
//! counted here: Workers CPU (figure 3), Lambda duration, the spill queue.

use spillway_support::MeterSnapshot;

use super::batching::{Flushes, DO_GB};

use crate::prices::{
    kinesis_retention_months, kinesis_shard_hour_with_retention, usd, HOURS_PER_MONTH,
};

/// The consumer's batch sizes (messages per SQS receive, records per Kinesis batch): the
/// defaults of the SAM templates.
pub(super) const SQS_BATCH: f64 = 10.0;
pub(super) const KINESIS_BATCH: f64 = 100.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// How the buffer's part is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Billing {
    Sqs,
    KinesisOnDemand,
    KinesisProvisioned,
}

impl Billing {
    pub(super) fn label(self) -> &'static str {
        match self {
            Billing::Sqs => "SQS",
            Billing::KinesisOnDemand => "Kinesis on-demand",
            Billing::KinesisProvisioned => "Kinesis provisioned",
        }
    }
}

/// One design's bill per million events.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Bill {
    pub(super) billing: Billing,
    /// The buffer's billed write units per million events: SQS requests, KiB in, or PUT
    /// payload units.
    pub(super) units: f64,
    pub(super) unit: &'static str,
    pub(super) workers: f64,
    /// Durable Object requests and duration, from the batchers' flush log.
    pub(super) durable_objects: f64,
    pub(super) do_duration: f64,
    pub(super) buffer_in: f64,
    pub(super) buffer_out: f64,
    /// Keeping the records past the first 24 h (on-demand: per GB-month; provisioned: in the
    /// monthly part, per shard).
    pub(super) retention: f64,
    pub(super) lambda: f64,
    /// What is paid per month whatever the traffic: a stream (on-demand), a shard (provisioned).
    pub(super) per_month: f64,
}

impl Bill {
    pub(super) fn total(&self) -> f64 {
        self.workers
            + self.durable_objects
            + self.do_duration
            + self.buffer_in
            + self.buffer_out
            + self.retention
            + self.lambda
    }
}

/// The Durable Object requests the batchers' flushes of a run cost: the Durable Object
/// requests that brought the client requests a flush carried (`calls`; fewer than the
/// requests where an isolate gathered its own into one). The one place that says so.
pub(super) fn do_requests(f: &Flushes) -> f64 {
    f.calls as f64
}

/// The bill of a run that sent `events_per_request`-event requests, whose buffer writes `m`
/// counted and whose batchers logged `flushes` (none with group commit off), under `billing`.
/// NaN where nothing reached the buffer.
pub(super) fn bill(
    m: &MeterSnapshot,
    events_per_request: usize,
    flushes: &Flushes,
    billing: Billing,
) -> Bill {
    let per_m = |count: f64| {
        if m.events == 0 {
            f64::NAN
        } else {
            count * 1e6 / m.events as f64
        }
    };
    let requests = 1e6 / events_per_request as f64;
    let entries = per_m(m.entries as f64);
    let price = |id: &str, count: f64| count * usd(id) / 1e6;
    let mut b = Bill {
        billing,
        units: f64::NAN,
        unit: "",
        workers: price("workers_request", requests),
        durable_objects: price("do_request", per_m(do_requests(flushes))),
        do_duration: price("do_gb_s", per_m(flushes.active_ms as f64 / 1e3 * DO_GB)),
        buffer_in: f64::NAN,
        buffer_out: f64::NAN,
        retention: 0.0,
        lambda: f64::NAN,
        per_month: 0.0,
    };
    match billing {
        Billing::Sqs => {
            b.units = per_m(m.billed as f64);
            b.unit = "SQS requests";
            b.buffer_in = price("sqs_request", b.units);
            // Full receives of SQS_BATCH messages, each billed per started 64 KiB of what it
            // returns, and one delete per receive.
            let bytes_per_message = m.body_bytes as f64 / m.entries.max(1) as f64;
            let receives = entries / SQS_BATCH;
            let chunks = (bytes_per_message * SQS_BATCH / 65_536.0).ceil().max(1.0);
            b.buffer_out = price("sqs_request", receives * chunks + receives);
            b.lambda = price("lambda_request", receives);
        }
        Billing::KinesisOnDemand => {
            b.units = per_m(m.kinesis_kb as f64);
            b.unit = "KiB in";
            b.buffer_in = b.units * 1024.0 / GIB * usd("kinesis_od_in_gb");
            let gb = per_m(m.body_bytes as f64) / GIB;
            b.buffer_out = gb * usd("kinesis_od_out_gb");
            b.retention = gb * kinesis_retention_months() * usd("kinesis_od_retention_gb_month");
            b.lambda = price("lambda_request", entries / KINESIS_BATCH);
            b.per_month = usd("kinesis_od_stream_hour") * HOURS_PER_MONTH;
        }
        Billing::KinesisProvisioned => {
            b.units = per_m(m.put_units as f64);
            b.unit = "PUT payload units";
            b.buffer_in = price("kinesis_put_unit", b.units);
            b.buffer_out = 0.0;
            b.lambda = price("lambda_request", entries / KINESIS_BATCH);
            b.per_month = kinesis_shard_hour_with_retention() * HOURS_PER_MONTH;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn one_event_per_sqs_message_direct() {
        // 1,000 events, one 1,430 B message each, one billed send each.
        let m = MeterSnapshot {
            events: 1_000,
            entries: 1_000,
            body_bytes: 1_430_000,
            billed: 1_000,
            ..MeterSnapshot::default()
        };
        let b = bill(&m, 1, &Flushes::default(), Billing::Sqs);
        assert_eq!(b.units, 1e6);
        // Workers: 1M requests at $0.30/M; SQS: 1M sends at $0.40/M.
        assert!(close(b.workers, 0.30));
        assert!(close(b.buffer_in, 0.40));
        // 100,000 receives of 10 x 1,430 B (one 64 KiB chunk) and 100,000 deletes.
        assert!(close(b.buffer_out, 0.08));
        assert!(close(b.lambda, 0.02));
        assert_eq!((b.durable_objects, b.do_duration), (0.0, 0.0));
        assert!(close(b.total(), 0.30 + 0.40 + 0.08 + 0.02));
    }

    #[test]
    fn durable_objects_are_billed_from_the_flush_log_not_per_request() {
        // 3 events per message: a third of the sends; every request reached a batcher, whose
        // 1,000 flushes were active 35 s in all.
        let m = MeterSnapshot {
            events: 3_000,
            entries: 1_000,
            body_bytes: 4_000_000,
            billed: 1_000,
            ..MeterSnapshot::default()
        };
        let all = Flushes {
            flushes: 1_000,
            requests: 3_000,
            calls: 3_000,
            events: 3_000,
            active_ms: 35_000,
        };
        let b = bill(&m, 1, &all, Billing::Sqs);
        assert!(close(b.buffer_in, 0.40 / 3.0));
        assert!(close(b.durable_objects, 0.15));
        // 35 s x 0.128 GB per 3,000 events: 1,493.3 GB-s per million at $12.50 per million.
        assert!(close(b.do_duration, 35.0 * 0.128 / 3_000.0 * 12.50));
        assert!(close(
            b.total(),
            0.30 + 0.15 + b.do_duration + b.buffer_in + b.buffer_out + b.lambda
        ));
        // The advisor sent 2,700 of them directly: only the 300 a batcher carried are billed.
        let few = Flushes {
            flushes: 300,
            requests: 300,
            calls: 300,
            events: 300,
            active_ms: 9_000,
        };
        let b = bill(&m, 1, &few, Billing::Sqs);
        assert!(close(b.durable_objects, 0.015));
        assert!(close(b.do_duration, 9.0 * 0.128 / 3_000.0 * 12.50));
        assert_eq!(do_requests(&few), 300.0);
        // Gathered by the isolates: 3,000 requests in 1,000 Durable Object requests.
        let gathered = Flushes {
            calls: 1_000,
            ..all
        };
        let b = bill(&m, 1, &gathered, Billing::Sqs);
        assert!(close(b.durable_objects, 0.05));
    }

    #[test]
    fn kinesis_bills_rounded_kib_or_put_units_and_a_monthly_part() {
        // 100 records of 1,500 B (2 KiB billed each on-demand, 1 PUT unit each provisioned),
        // 100 events each: 10,000 events.
        let m = MeterSnapshot {
            events: 10_000,
            entries: 100,
            body_bytes: 150_000,
            kinesis_kb: 200,
            put_units: 100,
            ..MeterSnapshot::default()
        };
        let none = Flushes::default();
        let od = bill(&m, 100, &none, Billing::KinesisOnDemand);
        assert!(close(od.units, 20_000.0));
        assert!(close(od.buffer_in, 20_000.0 * 1024.0 / GIB * 0.08));
        assert!(close(od.buffer_out, 15_000_000.0 / GIB * 0.04));
        // 10,000 records per million events, in batches of 100.
        assert!(close(od.lambda, 100.0 * 0.20 / 1e6));
        // Kept 144 h past the first 24: 15 MB x 144/730 month x $0.10.
        assert!(close(
            od.retention,
            15_000_000.0 / GIB * 144.0 / 730.0 * 0.10
        ));
        assert!(close(od.per_month, 29.2));
        let pr = bill(&m, 100, &none, Billing::KinesisProvisioned);
        assert!(close(pr.buffer_in, 10_000.0 * 0.014 / 1e6));
        assert_eq!(pr.buffer_out, 0.0);
        // A shard, and its retention past 24 h: ($0.015 + $0.02) x 730 h.
        assert!(close(pr.per_month, 25.55));
        assert_eq!(pr.retention, 0.0);
        // 10,000 requests per million events.
        assert!(close(pr.workers, 10_000.0 * 0.30 / 1e6));
    }

    #[test]
    fn nothing_counted_is_unknown_not_free() {
        let b = bill(
            &MeterSnapshot::default(),
            1,
            &Flushes::default(),
            Billing::KinesisOnDemand,
        );
        assert!(b.buffer_in.is_nan() && b.total().is_nan());
    }
}
