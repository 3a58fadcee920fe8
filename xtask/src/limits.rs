//! The one table of documented cloud limits the planner (`cargo xtask plan`) sizes a deployment
//! against, each with the source it was read from and when, beside the prices of
//! `crate::prices`. A limit here is what the provider documents, not what was measured: the
//! capacities measured on this machine come from the bench's results file (`crate::plan`).
//!
//! How they were read: on 2026-12-06, from stored copies of public pages (this machine reaches
//! no website). Where no stored copy said it, the entry says "from memory, unverified". Limits
//! move (SQS's message size went from 256 KiB to 1 MiB in 2025); check the live pages before
//! relying on a plan. This module does no arithmetic beyond looking a value up.

/// One documented limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Stable name the code looks limits up by.
    pub id: &'static str,
    pub service: &'static str,
    /// What is limited, and the unit of `value`.
    pub what: &'static str,
    /// The number; `f64::INFINITY` where the provider documents no ceiling.
    pub value: f64,
    /// Hard (refused past it), soft (an observed average: slower past it), or a quota AWS
    /// raises on request.
    pub kind: &'static str,
    pub source: &'static str,
    /// When it was read, and from what.
    pub read: &'static str,
}

const READ: &str = "2026-12-06, stored copy";
const UNVERIFIED: &str = "from memory, unverified";

/// The limits, in the order the planner's table shows them.
pub const LIMITS: &[Limit] = &[
    Limit {
        id: "do_requests_per_s",
        service: "Cloudflare Durable Objects",
        what: "requests per second one object serves (single-threaded)",
        value: 1_000.0,
        kind: "soft: an observed average; past it requests queue and latency grows",
        source: "https://developers.cloudflare.com/durable-objects/platform/limits/ (\"How much work can a single Durable Object do?\"); cloudflare/cloudflare-docs issue 10550 (1k replaced the older 100)",
        read: READ,
    },
    Limit {
        id: "do_idle_hibernate_s",
        service: "Cloudflare Durable Objects",
        what: "seconds an idle, hibernatable object stays in memory (not billed while idle and hibernatable)",
        value: 10.0,
        kind: "runtime behaviour",
        source: "https://developers.cloudflare.com/durable-objects/concepts/durable-object-lifecycle/; https://developers.cloudflare.com/durable-objects/platform/pricing/ (duration billed while active or idle but unable to hibernate)",
        read: READ,
    },
    Limit {
        id: "workers_connections_per_request",
        service: "Cloudflare Workers",
        what: "simultaneous outgoing connections per request",
        value: 6.0,
        kind: "hard: a seventh waits",
        source: "https://developers.cloudflare.com/workers/platform/limits/",
        read: READ,
    },
    Limit {
        id: "workers_requests_per_s",
        service: "Cloudflare Workers (paid)",
        what: "requests per second",
        value: f64::INFINITY,
        kind: "none documented (\"Requests: No limit\" on the paid plan)",
        source: "https://developers.cloudflare.com/workers/platform/limits/",
        read: READ,
    },
    Limit {
        id: "queues_messages_per_s",
        service: "Cloudflare Queues",
        what: "messages per second per queue (the spill queue)",
        value: 5_000.0,
        kind: "hard: 429 past it",
        source: "https://developers.cloudflare.com/queues/platform/limits/ (via api-evangelist/cloudflare-queues rate-limits.yml)",
        read: READ,
    },
    Limit {
        id: "queues_message_bytes",
        service: "Cloudflare Queues",
        what: "bytes per message",
        value: 128.0 * 1024.0,
        kind: "hard",
        source: "https://developers.cloudflare.com/queues/platform/limits/ (via api-evangelist/cloudflare-queues rate-limits.yml)",
        read: READ,
    },
    Limit {
        id: "sqs_requests_per_s",
        service: "Amazon SQS (standard queue)",
        what: "API calls per second per action",
        value: f64::INFINITY,
        kind: "none (\"nearly unlimited\")",
        source: "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html",
        read: READ,
    },
    Limit {
        id: "sqs_batch_entries",
        service: "Amazon SQS",
        what: "messages per SendMessageBatch / DeleteMessageBatch / ReceiveMessage",
        value: 10.0,
        kind: "hard",
        source: "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html",
        read: READ,
    },
    Limit {
        id: "sqs_message_bytes",
        service: "Amazon SQS",
        what: "bytes per message, and per SendMessageBatch call (1 MiB since 2025; 256 KiB before)",
        value: 1_048_576.0,
        kind: "hard",
        source: "https://aws.amazon.com/blogs/compute/more-room-to-build-serverless-services-now-support-payloads-up-to-1-mb (and shared/src/limits.rs)",
        read: READ,
    },
    Limit {
        id: "sqs_in_flight",
        service: "Amazon SQS (standard queue)",
        what: "messages in flight (received, not yet deleted)",
        value: 120_000.0,
        kind: "quota: raised on request; with long polling receives return nothing past it",
        source: "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-queues.html",
        read: READ,
    },
    Limit {
        id: "lambda_sqs_initial_concurrency",
        service: "AWS Lambda, SQS event source mapping",
        what: "concurrent batches it starts with when messages appear",
        value: 5.0,
        kind: "behaviour",
        source: "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html",
        read: READ,
    },
    Limit {
        id: "lambda_sqs_scale_per_minute",
        service: "AWS Lambda, SQS event source mapping",
        what: "more concurrent invocations per minute while messages wait",
        value: 300.0,
        kind: "hard",
        source: "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html",
        read: READ,
    },
    Limit {
        id: "lambda_sqs_max_concurrency",
        service: "AWS Lambda, SQS event source mapping",
        what: "MaximumConcurrency (2 to 1,000; also the most batches one mapping runs at once)",
        value: 1_000.0,
        kind: "hard",
        source: "https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-lambda-eventsourcemapping-scalingconfig.html; https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html",
        read: READ,
    },
    Limit {
        id: "lambda_scale_per_10s",
        service: "AWS Lambda",
        what: "new execution environments per function every 10 seconds",
        value: 1_000.0,
        kind: "hard",
        source: "https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html",
        read: READ,
    },
    Limit {
        id: "lambda_account_concurrency",
        service: "AWS Lambda",
        what: "concurrent executions per account and region (default quota; new accounts start lower)",
        value: 1_000.0,
        kind: "quota: raised on request",
        source: UNVERIFIED,
        read: UNVERIFIED,
    },
    Limit {
        id: "lambda_batch_bytes",
        service: "AWS Lambda, event source mappings",
        what: "bytes of one invocation's payload (a batch)",
        value: 6_000_000.0,
        kind: "hard",
        source: "infra/template.yaml and docs/deploy.md section 8 (AWS's Lambda quotas page; from memory, unverified here)",
        read: UNVERIFIED,
    },
    Limit {
        id: "kinesis_shard_write_bytes_per_s",
        service: "Amazon Kinesis Data Streams",
        what: "bytes per second written to one shard",
        value: 1_048_576.0,
        kind: "hard: ProvisionedThroughputExceeded, record by record",
        source: "https://docs.aws.amazon.com/streams/latest/dev/working-with-streams.html",
        read: READ,
    },
    Limit {
        id: "kinesis_shard_write_records_per_s",
        service: "Amazon Kinesis Data Streams",
        what: "records per second written to one shard",
        value: 1_000.0,
        kind: "hard: ProvisionedThroughputExceeded, record by record",
        source: "https://docs.aws.amazon.com/streams/latest/dev/working-with-streams.html",
        read: READ,
    },
    Limit {
        id: "kinesis_put_records",
        service: "Amazon Kinesis Data Streams",
        what: "records per PutRecords call",
        value: 500.0,
        kind: "hard",
        source: "docs/deploy.md section 10 and shared/src/limits.rs (AWS PutRecords reference, checked 2026-12)",
        read: READ,
    },
    Limit {
        id: "kinesis_call_bytes",
        service: "Amazon Kinesis Data Streams",
        what: "bytes per PutRecords call (what every emulator and older region enforces)",
        value: 5_242_880.0,
        kind: "hard",
        source: "docs/deploy.md section 10 and shared/src/limits.rs (AWS PutRecords reference, checked 2026-12)",
        read: READ,
    },
    Limit {
        id: "kinesis_on_demand_initial_bytes_per_s",
        service: "Amazon Kinesis Data Streams, on-demand",
        what: "write bytes per second of a new stream (4 MB/s; then up to twice the peak of the last 30 days)",
        value: 4_000_000.0,
        kind: "adaptive: a jump past twice the recent peak is throttled while shards are added",
        source: "https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html",
        read: READ,
    },
    Limit {
        id: "kinesis_on_demand_max_bytes_per_s",
        service: "Amazon Kinesis Data Streams, on-demand",
        what: "write bytes per second of one stream (us-east-1, us-west-2, eu-west-1; 200 MB/s elsewhere)",
        value: 10e9,
        kind: "quota",
        source: "https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html",
        read: READ,
    },
    Limit {
        id: "kinesis_parallelization_max",
        service: "AWS Lambda, Kinesis event source mapping",
        what: "ParallelizationFactor: concurrent batches per shard",
        value: 10.0,
        kind: "hard",
        source: "https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-parameters.html",
        read: READ,
    },
    Limit {
        id: "lambda_batch_size_max",
        service: "AWS Lambda, SQS and Kinesis event source mappings",
        what: "BatchSize (messages or records per invocation)",
        value: 10_000.0,
        kind: "hard",
        source: "https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-parameters.html; infra/template.yaml",
        read: READ,
    },
];

/// The limit named `id`. Every id the code uses is in [`LIMITS`] (a test checks each).
pub fn limit(id: &str) -> f64 {
    LIMITS
        .iter()
        .find(|l| l.id == id)
        .map_or(f64::NAN, |l| l.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_limit_has_a_source() {
        for (i, l) in LIMITS.iter().enumerate() {
            assert!(
                LIMITS[i + 1..].iter().all(|m| m.id != l.id),
                "{} twice",
                l.id
            );
            assert!(l.value > 0.0, "{}", l.id);
            assert!(!l.source.is_empty() && !l.read.is_empty(), "{}", l.id);
        }
        assert!(
            limit("no such limit").is_nan(),
            "a missing limit is never 0"
        );
        assert_eq!(limit("do_requests_per_s"), 1_000.0);
    }

    #[test]
    fn sqs_limits_agree_with_the_packer() {
        assert_eq!(
            limit("sqs_batch_entries") as usize,
            spillway_shared::limits::SQS_MAX_BATCH_ENTRIES
        );
        assert_eq!(
            limit("sqs_message_bytes") as usize,
            spillway_shared::limits::SQS_MAX_MESSAGE_BYTES
        );
        assert_eq!(
            limit("kinesis_put_records") as usize,
            spillway_shared::limits::KINESIS_MAX_RECORDS
        );
        assert_eq!(
            limit("kinesis_call_bytes") as usize,
            spillway_shared::limits::KINESIS_MAX_CALL_BYTES
        );
    }
}
