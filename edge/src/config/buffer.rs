//! Which durable buffer the edge sends to, and where: `BUFFER` (`sqs`, the default, or
//! `kinesis`) and that buffer's own settings, read and validated with the rest of the
//! configuration ([`read_target`]).
//!
//! A buffer exists here only in a build with its cargo feature (`sqs`, `kinesis`): the
//! deployed Worker carries one SDK. A Worker whose `BUFFER` names a buffer it was not built
//! with refuses to start with [`ConfigProblem::NotBuiltWith`], naming the build to use. It does
//! not build clients (that is `buffer`, and the runtime).
//!
//! Settings that apply to whichever buffer is configured keep their historical `SQS_` names
//! (`SQS_DEADLINE_MS`, `SQS_RETRY_BASE_MS`, `SQS_RETRY_MAX_MS`, `SQS_CONCURRENCY`; see
//! [`super::RetryPolicy`]), as do `MAX_MESSAGE_BYTES` and `MAX_BATCH_BYTES`, which bound a
//! Kinesis record and `PutRecords` call the same way.

use spillway_shared::limits::BufferLimits;
/// `KINESIS_STREAM_ARN`, read by the rule the consumer's tools share ([`spillway_shared::arn`]).
pub use spillway_shared::StreamArn;

use super::problem::ConfigProblem;

/// `BUFFER`: the buffer this deployment sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferKind {
    Sqs,
    Kinesis,
}

impl BufferKind {
    /// `BUFFER`'s value for it.
    pub fn name(self) -> &'static str {
        match self {
            BufferKind::Sqs => "sqs",
            BufferKind::Kinesis => "kinesis",
        }
    }

    /// Whether this build carries the buffer's client.
    pub fn built(self) -> bool {
        match self {
            BufferKind::Sqs => cfg!(feature = "sqs"),
            BufferKind::Kinesis => cfg!(feature = "kinesis"),
        }
    }

    /// The build that carries it, for the start-up error of a build that does not.
    pub fn build_hint(self) -> &'static str {
        match self {
            BufferKind::Sqs => "the default features (`sqs`; wrangler's default environment)",
            BufferKind::Kinesis => {
                "`--no-default-features --features kinesis` (wrangler.toml's [env.kinesis]: \
                 `wrangler deploy --env kinesis`)"
            }
        }
    }
}

/// The configured buffer, with what its client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    #[cfg(feature = "sqs")]
    Sqs(SqsTarget),
    #[cfg(feature = "kinesis")]
    Kinesis(KinesisTarget),
}

impl Target {
    pub fn kind(&self) -> BufferKind {
        match self {
            #[cfg(feature = "sqs")]
            Target::Sqs(_) => BufferKind::Sqs,
            #[cfg(feature = "kinesis")]
            Target::Kinesis(_) => BufferKind::Kinesis,
        }
    }

    /// What one call to the buffer takes at most; configured limits are validated against it.
    pub fn ceiling(&self) -> BufferLimits {
        match self {
            #[cfg(feature = "sqs")]
            Target::Sqs(_) => spillway_shared::limits::SQS_CEILING,
            #[cfg(feature = "kinesis")]
            Target::Kinesis(_) => spillway_shared::limits::KINESIS_CEILING,
        }
    }

    /// The limits when `MAX_MESSAGE_BYTES` and `MAX_BATCH_BYTES` are unset. Kinesis: records of
    /// 256 KiB as SQS messages (the consumer's envelopes are the same size either way; Kinesis
    /// on-demand bills each record rounded up to 1 KiB, so larger records save nothing), and
    /// calls up to the ceiling (a 4 MiB request is one `PutRecords`).
    pub fn default_limits(&self) -> BufferLimits {
        match self {
            #[cfg(feature = "sqs")]
            Target::Sqs(_) => BufferLimits::default(),
            #[cfg(feature = "kinesis")]
            Target::Kinesis(_) => BufferLimits {
                bytes_per_entry: BufferLimits::default().bytes_per_entry,
                ..spillway_shared::limits::KINESIS_CEILING
            },
        }
    }

    /// Whether the buffer keeps each group's entries in order (a FIFO queue's message groups,
    /// Kinesis partitioned by key id), so a group commit must batch each group on its own.
    pub fn orders_by_group(&self) -> bool {
        match self {
            #[cfg(feature = "sqs")]
            Target::Sqs(t) => t.queue.is_fifo(),
            #[cfg(feature = "kinesis")]
            Target::Kinesis(t) => t.partition_key == PartitionKey::KeyId,
        }
    }
}

/// SQS: the queue and the endpoint.
#[cfg(feature = "sqs")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsTarget {
    /// `SQS_QUEUE_URL` (required with `BUFFER=sqs`).
    pub queue: QueueUrl,
    /// `SQS_ENDPOINT`, or the origin of `SQS_QUEUE_URL` when unset.
    pub endpoint: String,
}

/// The queue, from `SQS_QUEUE_URL`.
#[cfg(feature = "sqs")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrl {
    url: String,
    origin: String,
    fifo: bool,
}

#[cfg(feature = "sqs")]
impl QueueUrl {
    /// Parses an `http(s)://host[:port]/account/name` URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let origin = origin_of(url)?;
        let path = &url[origin.len()..];
        let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        if name.is_empty() {
            return Err(
                "must name a queue, e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/events"
                    .into(),
            );
        }
        Ok(Self {
            url: url.to_owned(),
            fifo: name.ends_with(".fifo"),
            origin,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// `scheme://host[:port]` of the queue URL: the default SQS endpoint.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// FIFO queues (name ending in `.fifo`) need a message group and deduplication id.
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }
}

/// Kinesis Data Streams: the stream, the endpoint, and how records are keyed.
#[cfg(feature = "kinesis")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisTarget {
    /// `KINESIS_STREAM_ARN` (required with `BUFFER=kinesis`).
    pub stream: StreamArn,
    /// `KINESIS_ENDPOINT` (an origin), or the regional endpoint of the stream's region.
    pub endpoint: String,
    /// `KINESIS_PARTITION_KEY`.
    pub partition_key: PartitionKey,
}

/// `KINESIS_PARTITION_KEY`: what a record's partition key is, which picks its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKey {
    /// `request` (default): a fresh random key (from the runtime's random source) for every
    /// record, so load spreads evenly over the shards and no client can aim at one. No order
    /// between records (the consumer does not need any: events carry their own ids and times).
    Request,
    /// `key_id`: the ingest key id, so one key's events stay in order on one shard. The cost is a
    /// hot shard: a shard takes 1 MiB/s and 1,000 records/s, so one busy ingest key is capped
    /// there whatever the stream's size, and past it Kinesis refuses records
    /// (`ProvisionedThroughputExceededException`), which the edge retries until its deadline and
    /// then answers `503` (or spills).
    KeyId,
}

/// `scheme://authority` of an absolute http(s) URL, refusing anything else: the rule the
/// consumer's tools apply too ([`spillway_shared::origin_of`]).
pub(super) fn origin_of(url: &str) -> Result<String, String> {
    spillway_shared::origin_of(url).map_err(|e| e.to_string())
}

/// An endpoint setting: an origin such as `http://127.0.0.1:4567`, without a path.
fn endpoint_setting(
    name: &'static str,
    raw: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<String> {
    match origin_of(raw) {
        Ok(origin) if raw.trim_end_matches('/') == origin => Some(origin),
        Ok(_) => {
            problems.push(ConfigProblem::Invalid {
                name,
                reason: "must be an origin such as http://127.0.0.1:9324, without a path".into(),
            });
            None
        }
        Err(reason) => {
            problems.push(ConfigProblem::Invalid { name, reason });
            None
        }
    }
}

/// Reads `BUFFER` and the chosen buffer's settings. `region` is `AWS_REGION` (already checked
/// for shape): required with SQS; with Kinesis the stream ARN's region, which `AWS_REGION`
/// must equal when set. Returns the target and the region to sign for, or records problems.
pub(super) fn read_target(
    get: &dyn Fn(&str) -> Option<String>,
    region: Option<String>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<(Target, String)> {
    let kind = match get("BUFFER").as_deref() {
        None | Some("sqs") => BufferKind::Sqs,
        Some("kinesis") => BufferKind::Kinesis,
        Some(_) => {
            problems.push(ConfigProblem::Invalid {
                name: "BUFFER",
                reason: "must be sqs or kinesis".into(),
            });
            return None;
        }
    };
    if !kind.built() {
        problems.push(ConfigProblem::NotBuiltWith {
            buffer: kind.name(),
            build: kind.build_hint(),
        });
        return None;
    }
    match kind {
        #[cfg(feature = "sqs")]
        BufferKind::Sqs => read_sqs(get, region, problems),
        #[cfg(feature = "kinesis")]
        BufferKind::Kinesis => read_kinesis(get, region, problems),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

#[cfg(feature = "sqs")]
fn read_sqs(
    get: &dyn Fn(&str) -> Option<String>,
    region: Option<String>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<(Target, String)> {
    let queue_raw = get("SQS_QUEUE_URL");
    if queue_raw.is_none() {
        problems.push(ConfigProblem::Missing("SQS_QUEUE_URL"));
    }
    if region.is_none() {
        problems.push(ConfigProblem::Missing("AWS_REGION"));
    }
    let queue = queue_raw.and_then(|raw| match QueueUrl::parse(&raw) {
        Ok(q) => Some(q),
        Err(reason) => {
            problems.push(ConfigProblem::Invalid {
                name: "SQS_QUEUE_URL",
                reason,
            });
            None
        }
    });
    let endpoint = match get("SQS_ENDPOINT") {
        Some(raw) => endpoint_setting("SQS_ENDPOINT", &raw, problems),
        None => queue.as_ref().map(|q| q.origin().to_owned()),
    };
    let (queue, endpoint, region) = (queue?, endpoint?, region?);
    Some((Target::Sqs(SqsTarget { queue, endpoint }), region))
}

#[cfg(feature = "kinesis")]
fn read_kinesis(
    get: &dyn Fn(&str) -> Option<String>,
    region: Option<String>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<(Target, String)> {
    let stream = match get("KINESIS_STREAM_ARN") {
        None => {
            problems.push(ConfigProblem::Missing("KINESIS_STREAM_ARN"));
            None
        }
        Some(raw) => match StreamArn::parse(&raw) {
            Ok(arn) => Some(arn),
            Err(e) => {
                problems.push(ConfigProblem::Invalid {
                    name: "KINESIS_STREAM_ARN",
                    reason: e.to_string(),
                });
                None
            }
        },
    };
    let partition_key = match get("KINESIS_PARTITION_KEY").as_deref() {
        None | Some("request") => Some(PartitionKey::Request),
        Some("key_id") => Some(PartitionKey::KeyId),
        Some(_) => {
            problems.push(ConfigProblem::Invalid {
                name: "KINESIS_PARTITION_KEY",
                reason: "must be request or key_id".into(),
            });
            None
        }
    };
    let endpoint = match get("KINESIS_ENDPOINT") {
        Some(raw) => endpoint_setting("KINESIS_ENDPOINT", &raw, problems),
        None => stream.as_ref().and_then(|s| {
            let endpoint = s.default_endpoint();
            if endpoint.is_none() {
                problems.push(ConfigProblem::Missing("KINESIS_ENDPOINT"));
            }
            endpoint
        }),
    };
    let stream = stream?;
    // Requests are signed for the stream's region: another AWS_REGION is a mistake to report,
    // not to guess between.
    if region.as_deref().is_some_and(|r| r != stream.region()) {
        problems.push(ConfigProblem::Invalid {
            name: "AWS_REGION",
            reason: "must be the region of KINESIS_STREAM_ARN (or unset)".into(),
        });
        return None;
    }
    let region = stream.region().to_owned();
    Some((
        Target::Kinesis(KinesisTarget {
            stream,
            endpoint: endpoint?,
            partition_key: partition_key?,
        }),
        region,
    ))
}
