//! The edge's typed configuration, parsed from the Worker's environment strings and validated
//! once, before the first request is served.
//!
//! Every setting is documented where it is declared, with its default. Secrets (`INGEST_KEYS`,
//! `AWS_SECRET_ACCESS_KEY`, `ENVELOPE_KEYS`, `TOKEN_SECRETS`) live in types whose `Debug` prints nothing of the
//! value ([`Secret`], [`SigningKey`]), and no error message ever quotes them.

mod access;
mod buffer;
mod context;
mod keys;
mod problem;

use std::time::Duration;

use spillway_shared::event::MAX_KEY_ID_CHARS;
use spillway_shared::limits::{validate_within, BufferLimits, RequestLimits};
use spillway_shared::{parse_keys, SigningKey};

use access::read_access;
pub use access::KeyAccess;
#[cfg(feature = "kinesis")]
pub use buffer::KinesisTarget;
use buffer::{origin_of, read_target};
pub use buffer::{BufferKind, PartitionKey, StreamArn, Target};
#[cfg(feature = "sqs")]
pub use buffer::{QueueUrl, SqsTarget};
pub use context::{ContextField, ContextFields, ContextPolicy, IpPolicy};
pub use keys::{IngestKey, Secret};
pub use problem::{ConfigError, ConfigProblem};
use spillway_shared::valid_region;

/// Which browser origins get CORS headers (`ALLOWED_ORIGINS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any origin (the local pipeline uses this).
    Any,
    /// An explicit list of origins such as `https://app.example.com`; may be empty (no CORS).
    List(Vec<String>),
}

impl AllowedOrigins {
    /// The value of `Access-Control-Allow-Origin` for a request from `origin`, if allowed.
    pub fn allow<'a>(&self, origin: &'a str) -> Option<&'a str> {
        match self {
            AllowedOrigins::Any => Some("*"),
            AllowedOrigins::List(list) => list
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
                .then_some(origin),
        }
    }
}

/// How the edge retries its calls to the buffer (`SendMessageBatch`, `PutRecords`) and when it
/// gives up. The settings keep their `SQS_` names whichever buffer is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Overall budget for getting every event of a request acknowledged (`SQS_DEADLINE_MS`,
    /// default 8,000 ms). When it passes, the request is answered `503`.
    pub deadline: Duration,
    /// First backoff (`SQS_RETRY_BASE_MS`, default 50 ms); doubles on each retry.
    pub base: Duration,
    /// Longest single backoff (`SQS_RETRY_MAX_MS`, default 1,000 ms).
    pub max: Duration,
    /// Calls to the buffer in flight at once (`SQS_CONCURRENCY`, default and maximum 6:
    /// a Worker may hold at most 6 simultaneous outgoing connections).
    pub concurrency: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(8_000),
            base: Duration::from_millis(50),
            max: Duration::from_millis(1_000),
            concurrency: MAX_CONCURRENCY,
        }
    }
}

/// Workers allow 6 simultaneous open outgoing connections per request.
pub const MAX_CONCURRENCY: usize = 6;

/// Group commit: how the edge gathers small requests into shared calls to the buffer (see
/// `deliver::group_commit`). Used only when the `BATCHER` Durable Object binding exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitPolicy {
    /// How long a batcher holds its first pending event before it sends (`BATCH_WINDOW_MS`,
    /// default 20 ms with SQS, 0 with Kinesis, where a batcher never pays; `0` turns batching
    /// off and every request sends directly).
    pub window: Duration,
    /// The fewest batchers per location (`BATCH_SHARDS`, default 1): requests spread over them
    /// by a hash. Each isolate adds shards as the batchers report more traffic, so that each
    /// sees at most about 500 requests/s (one object takes about 1,000), and drops them as it
    /// falls; every shard more splits the traffic, so batches get smaller (costlier) at the
    /// same rate.
    pub shards: u32,
    /// The most batchers per location (`BATCH_MAX_SHARDS`, default 32; taken as at least
    /// `BATCH_SHARDS`): about 16,000 requests/s per location before each batcher goes past
    /// its 500.
    pub max_shards: u32,
    /// `BATCH_WHEN=always`: every small request goes through a batcher, whether it pays or not
    /// (for the throughput of a FIFO queue, about 300 calls/s per action, or to test the
    /// batcher). The default, `pays`, batches only where it costs less than sending directly
    /// (`deliver::group_commit::advice`).
    pub always: bool,
}

impl GroupCommitPolicy {
    /// Whether requests go through a batcher at all (given the binding).
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }
}

impl Default for GroupCommitPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(20),
            shards: 1,
            max_shards: 32,
            always: false,
        }
    }
}

/// Everything the edge needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `BUFFER` and that buffer's settings (`SQS_QUEUE_URL`, `SQS_ENDPOINT`;
    /// `KINESIS_STREAM_ARN`, `KINESIS_ENDPOINT`, `KINESIS_PARTITION_KEY`): see [`Target`].
    pub target: Target,
    /// `AWS_REGION` (required with SQS; with Kinesis the stream ARN's region, which
    /// `AWS_REGION` must equal when set).
    pub region: String,
    /// `AWS_ACCESS_KEY_ID` (required).
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY` (required).
    pub secret_access_key: Secret,
    /// `INGEST_KEYS`: comma-separated `key_id:key` pairs (required, at least one).
    pub ingest_keys: Vec<IngestKey>,
    /// `ENVELOPE_KEYS` (required, secret): comma-separated `kid:secret` pairs, the same the
    /// consumer holds; every message is sealed with the first ([`spillway_shared::seal`]).
    /// The others are ignored here: the variable can be the consumer's own list during a
    /// rotation.
    pub envelope_key: SigningKey,
    /// `ALLOWED_ORIGINS`: comma-separated origins, or `*`. Default: none (no CORS headers).
    /// Every origin of `KEY_ORIGINS` is added to the list: CORS decides only whether a browser
    /// lets a page send and read the answer; which key may be used from where is [`KeyAccess`].
    pub allowed_origins: AllowedOrigins,
    /// `EDGE_CONTEXT` and `IP_POLICY`: what the edge stores with each event of what only it
    /// knows (see [`ContextPolicy`]).
    pub context: ContextPolicy,
    /// Browser tokens and per-key origins: `TOKEN_SECRETS`, `TOKEN_MAX_TTL_SECS`,
    /// `TOKEN_REQUIRED`, `KEY_ORIGINS` (see [`KeyAccess`]).
    pub access: KeyAccess,
    /// The request's limits: `MAX_BODY_BYTES`, `MAX_DECOMPRESSED_BYTES`, `MAX_EVENT_BYTES`,
    /// `MAX_EVENTS_PER_REQUEST`, `MAX_JSON_DEPTH`; defaults in [`RequestLimits`].
    pub limits: RequestLimits,
    /// The buffer's limits: `MAX_MESSAGE_BYTES`, `MAX_BATCH_BYTES` (a record and a `PutRecords`
    /// call with Kinesis) and the buffer's entries per call (SQS 10, Kinesis 500); defaults in
    /// [`Target::default_limits`], validated against [`Target::ceiling`].
    pub buffer: BufferLimits,
    /// `SQS_DEADLINE_MS`, `SQS_RETRY_BASE_MS`, `SQS_RETRY_MAX_MS`, `SQS_CONCURRENCY`.
    pub retry: RetryPolicy,
    /// `BATCH_WINDOW_MS`, `BATCH_SHARDS`, `BATCH_MAX_SHARDS`, `BATCH_WHEN`.
    pub group_commit: GroupCommitPolicy,
    /// `Retry-After` of a `503` (`RETRY_AFTER_SECS`, default 5).
    pub retry_after_secs: u32,
    /// `Retry-After` of a `429` (`RATE_LIMIT_PERIOD_SECS`, default 60): the period of the
    /// rate-limiting binding, after which a key's budget is refilled.
    pub rate_limit_period_secs: u32,
    /// `SPILLWAY_PANIC_ROUTE=enabled` turns on a test hook: a request to `/__spillway/panic`
    /// panics, so the tests prove a panic still answers a JSON `500` and the next request is
    /// served. Off unless exactly `enabled`; never set it in production.
    pub panic_route: bool,
}

/// The numeric settings, before validation across them. Defaults are those of [`RequestLimits`],
/// [`BufferLimits`] and [`RetryPolicy`], and the ones documented on [`Config`].
#[derive(Debug, Clone, Copy)]
struct Tuning {
    limits: RequestLimits,
    buffer: BufferLimits,
    retry: RetryPolicy,
    group_commit: GroupCommitPolicy,
    retry_after_secs: u32,
    rate_limit_period_secs: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            limits: RequestLimits::default(),
            buffer: BufferLimits::default(),
            retry: RetryPolicy::default(),
            group_commit: GroupCommitPolicy::default(),
            retry_after_secs: 5,
            rate_limit_period_secs: 60,
        }
    }
}

/// One numeric setting: its variable, its bounds, and where its value goes.
struct NumericSetting {
    name: &'static str,
    min: u64,
    max: u64,
    set: fn(&mut Tuning, u64),
}

/// Upper bound of the byte and count limits: no real bound of its own ([`validate`]
/// checks them against each other and SQS); values past `usize` saturate.
const BIG: u64 = u64::MAX >> 1;

const fn setting(
    name: &'static str,
    min: u64,
    max: u64,
    set: fn(&mut Tuning, u64),
) -> NumericSetting {
    NumericSetting {
        name,
        min,
        max,
        set,
    }
}

fn size(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn secs(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Every numeric setting of the edge, read the same way: unset keeps the default, anything but
/// a whole number within the bounds is a problem naming the variable.
const NUMERIC_SETTINGS: &[NumericSetting] = &[
    setting("MAX_BODY_BYTES", 1, BIG, |t, v| {
        t.limits.max_body_bytes = size(v)
    }),
    setting("MAX_DECOMPRESSED_BYTES", 1, BIG, |t, v| {
        t.limits.max_decompressed_bytes = size(v)
    }),
    setting("MAX_EVENT_BYTES", 1, BIG, |t, v| {
        t.limits.max_event_bytes = size(v)
    }),
    setting("MAX_EVENTS_PER_REQUEST", 1, BIG, |t, v| {
        t.limits.max_events_per_request = size(v)
    }),
    setting("MAX_MESSAGE_BYTES", 1, BIG, |t, v| {
        t.buffer.bytes_per_entry = size(v)
    }),
    setting("MAX_BATCH_BYTES", 1, BIG, |t, v| {
        t.buffer.bytes_per_call = size(v)
    }),
    setting("MAX_JSON_DEPTH", 1, 128, |t, v| {
        t.limits.max_json_depth = size(v)
    }),
    setting("SQS_DEADLINE_MS", 100, 120_000, |t, v| {
        t.retry.deadline = ms(v)
    }),
    setting("SQS_RETRY_BASE_MS", 1, 10_000, |t, v| t.retry.base = ms(v)),
    setting("SQS_RETRY_MAX_MS", 1, 60_000, |t, v| t.retry.max = ms(v)),
    setting("SQS_CONCURRENCY", 1, MAX_CONCURRENCY as u64, |t, v| {
        t.retry.concurrency = size(v)
    }),
    setting("RETRY_AFTER_SECS", 1, 3_600, |t, v| {
        t.retry_after_secs = secs(v)
    }),
    setting("RATE_LIMIT_PERIOD_SECS", 1, 3_600, |t, v| {
        t.rate_limit_period_secs = secs(v)
    }),
    setting("BATCH_WINDOW_MS", 0, 1_000, |t, v| {
        t.group_commit.window = ms(v)
    }),
    setting("BATCH_SHARDS", 1, 1_024, |t, v| {
        t.group_commit.shards = secs(v)
    }),
    setting("BATCH_MAX_SHARDS", 1, 1_024, |t, v| {
        t.group_commit.max_shards = secs(v)
    }),
];

/// Shortest accepted ingest key: anything shorter can be guessed.
pub const MIN_KEY_CHARS: usize = 16;

impl Config {
    /// Reads and validates the configuration. `get` returns the variable's value, if set;
    /// empty values count as unset.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut problems = Vec::new();
        let required = |name: &'static str, problems: &mut Vec<ConfigProblem>| {
            let v = get(name);
            if v.is_none() {
                problems.push(ConfigProblem::Missing(name));
            }
            v
        };

        let access_key_id = required("AWS_ACCESS_KEY_ID", &mut problems);
        let secret = required("AWS_SECRET_ACCESS_KEY", &mut problems);
        let keys_raw = required("INGEST_KEYS", &mut problems);
        let envelope_raw = required("ENVELOPE_KEYS", &mut problems);

        let region = get("AWS_REGION").filter(|r| {
            let ok = valid_region(r);
            if !ok {
                problems.push(ConfigProblem::Invalid {
                    name: "AWS_REGION",
                    reason: "must look like eu-west-1".into(),
                });
            }
            ok
        });
        let target = read_target(&get, region, &mut problems);
        let ingest_keys = keys_raw
            .map(|raw| match parse_ingest_keys(&raw) {
                Ok(keys) => keys,
                Err(reason) => {
                    problems.push(ConfigProblem::Invalid {
                        name: "INGEST_KEYS",
                        reason,
                    });
                    Vec::new()
                }
            })
            .unwrap_or_default();
        let envelope_key = envelope_raw.and_then(|raw| match parse_keys(&raw) {
            Ok(keys) => keys.into_iter().next(),
            Err(e) => {
                problems.push(ConfigProblem::Invalid {
                    name: "ENVELOPE_KEYS",
                    reason: e.to_string(),
                });
                None
            }
        });
        let access = read_access(&get, &ingest_keys, &mut problems);
        let mut allowed_origins = match get("ALLOWED_ORIGINS") {
            None => AllowedOrigins::List(Vec::new()),
            Some(raw) => parse_origins(&raw).unwrap_or_else(|reason| {
                problems.push(ConfigProblem::Invalid {
                    name: "ALLOWED_ORIGINS",
                    reason,
                });
                AllowedOrigins::List(Vec::new())
            }),
        };
        if let AllowedOrigins::List(list) = &mut allowed_origins {
            for o in access.all_origins() {
                if !list.iter().any(|l| l.eq_ignore_ascii_case(o)) {
                    list.push(o.to_owned());
                }
            }
        }

        let mut context = ContextPolicy::default();
        if let Some(raw) = get("EDGE_CONTEXT") {
            match context::parse_fields(&raw) {
                Ok(fields) => context.fields = fields,
                Err(reason) => problems.push(ConfigProblem::Invalid {
                    name: "EDGE_CONTEXT",
                    reason,
                }),
            }
        }
        if let Some(raw) = get("IP_POLICY") {
            match context::parse_ip_policy(&raw) {
                Ok(ip) => context.ip = ip,
                Err(reason) => problems.push(ConfigProblem::Invalid {
                    name: "IP_POLICY",
                    reason,
                }),
            }
        }

        let mut tuning = Tuning::default();
        if let Some((target, _)) = &target {
            tuning.buffer = target.default_limits();
            if target.kind() == BufferKind::Kinesis {
                // Kinesis bills records, not calls: a batcher never pays there
                // (`deliver::group_commit::advice`), so it is off unless asked for.
                tuning.group_commit.window = Duration::ZERO;
            }
        }
        for setting in NUMERIC_SETTINGS {
            let Some(raw) = get(setting.name) else {
                continue;
            };
            match raw.parse::<u64>() {
                Ok(v) if (setting.min..=setting.max).contains(&v) => (setting.set)(&mut tuning, v),
                _ => problems.push(ConfigProblem::Invalid {
                    name: setting.name,
                    reason: format!(
                        "must be a whole number from {} to {}",
                        setting.min, setting.max
                    ),
                }),
            }
        }
        match get("BATCH_WHEN").as_deref() {
            None | Some("pays") => {}
            Some("always") => tuning.group_commit.always = true,
            Some(_) => problems.push(ConfigProblem::Invalid {
                name: "BATCH_WHEN",
                reason: "must be pays or always".into(),
            }),
        }
        let Tuning {
            limits,
            buffer,
            retry,
            group_commit,
            retry_after_secs,
            rate_limit_period_secs,
        } = tuning;

        let panic_route = get("SPILLWAY_PANIC_ROUTE").as_deref() == Some("enabled");

        if let Some((target, _)) = &target {
            if let Err(e) = validate_within(&limits, &buffer, &target.ceiling()) {
                problems.push(ConfigProblem::RequestLimits(e));
            }
        }
        if retry.base > retry.max {
            problems.push(ConfigProblem::Invalid {
                name: "SQS_RETRY_BASE_MS",
                reason: "must not exceed SQS_RETRY_MAX_MS".into(),
            });
        }

        match (target, access_key_id, secret, envelope_key) {
            (Some((target, region)), Some(access_key_id), Some(secret), Some(envelope_key))
                if problems.is_empty() =>
            {
                Ok(Config {
                    target,
                    region,
                    access_key_id,
                    secret_access_key: Secret::new(secret),
                    ingest_keys,
                    envelope_key,
                    allowed_origins,
                    context,
                    access,
                    limits,
                    buffer,
                    retry,
                    group_commit,
                    retry_after_secs,
                    rate_limit_period_secs,
                    panic_route,
                })
            }
            _ => Err(ConfigError(problems)),
        }
    }
}

/// `key_id:key,key_id:key`. The key may itself contain `:`; ids and keys must be unique.
fn parse_ingest_keys(raw: &str) -> Result<Vec<IngestKey>, String> {
    let mut keys: Vec<IngestKey> = Vec::new();
    for (n, pair) in raw.split(',').enumerate() {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let n = n + 1;
        let Some((key_id, key)) = pair.split_once(':') else {
            return Err(format!("entry {n} is not key_id:key"));
        };
        let (key_id, key) = (key_id.trim(), key.trim());
        let id_ok = !key_id.is_empty()
            && key_id.chars().count() <= MAX_KEY_ID_CHARS
            && key_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !id_ok {
            return Err(format!(
                "entry {n}: key_id must be 1 to {MAX_KEY_ID_CHARS} characters of A-Z a-z 0-9 - _ ."
            ));
        }
        if key.chars().count() < MIN_KEY_CHARS
            || key.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "entry {n}: the key must be at least {MIN_KEY_CHARS} characters, without spaces"
            ));
        }
        if keys.iter().any(|k| k.key_id == key_id) {
            return Err(format!("entry {n}: its key_id appears twice"));
        }
        if keys.iter().any(|k| k.key.expose() == key) {
            return Err(format!("entry {n}: reuses the key of another entry"));
        }
        keys.push(IngestKey {
            key_id: key_id.to_owned(),
            key: Secret::new(key),
        });
    }
    if keys.is_empty() {
        return Err("holds no key_id:key pair".into());
    }
    Ok(keys)
}

fn parse_origins(raw: &str) -> Result<AllowedOrigins, String> {
    if raw == "*" {
        return Ok(AllowedOrigins::Any);
    }
    let mut list = Vec::new();
    for o in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if o == "*" {
            return Err("`*` must stand alone".into());
        }
        match origin_of(o) {
            Ok(origin) if origin.eq_ignore_ascii_case(o.trim_end_matches('/')) => list.push(origin),
            _ => {
                return Err(format!(
                    "entry {o:?} is not an origin such as https://app.example.com"
                ))
            }
        }
    }
    Ok(AllowedOrigins::List(list))
}

#[cfg(test)]
pub(crate) mod tests;
