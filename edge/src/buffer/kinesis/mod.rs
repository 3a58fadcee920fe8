//! The buffer over `aws-sdk-kinesis`: one `PutRecords` per call, each entry one record whose
//! data is the entry's body unchanged (the same sealed envelope an SQS message carries; Kinesis
//! takes bytes, so nothing is added), and the mapping of Kinesis's answers onto positions in the
//! call and retry decisions.
//!
//! Kinesis answers a call that succeeds as a whole with one result per record, in request
//! order, each either a sequence number (stored) or an error code (not stored). Every result is
//! read; `FailedRecordCount` is not trusted (a sink that trusted it dropped partial failures:
//! vectordotdev/vector#16954), a result without either counts as failed, and an answer with
//! another number of results than records sent fails the whole call (transient: all of it is
//! sent again, and the consumer stores each event once by its id).
//!
//! Partition keys ([`PartitionKey`]): with `request`, every record gets a fresh random key
//! (one 128-bit draw from the runtime's random source per call, offset by the record's
//! position), so records spread evenly over the shards; with `key_id`, the `group` the retry
//! loop passes (the ingest key id, on every path: direct, group commit, spill replay) keeps one
//! key's records in order on one shard.
//!
//! As for SQS, the SDK's own retries, timeouts and identity cache are off; the HTTP client,
//! clock and sleep are passed in (Fetch on Workers, a canned connector in native tests).

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{
    BehaviorVersion, Credentials, IdentityCache, Region, SharedAsyncSleep, SharedHttpClient,
    StalledStreamProtectionConfig,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry};
use aws_smithy_async::time::SharedTimeSource;
use spillway_shared::limits::{
    KINESIS_MAX_CALL_BYTES, KINESIS_MAX_PARTITION_KEY_BYTES, KINESIS_MAX_RECORDS,
    KINESIS_MAX_RECORD_BYTES,
};
use spillway_shared::{read_put_result, BufferEntry, PutRecordResult};

use super::classify::{self, short_code, transient_code};
use super::{Buffer, CallOutcome, FailedEntry, SendError};
use crate::config::{Config, KinesisTarget, PartitionKey};

/// Sends calls to the configured stream.
#[derive(Debug, Clone)]
pub struct KinesisSender {
    client: aws_sdk_kinesis::Client,
    stream_arn: String,
    partition_key: PartitionKey,
    /// Fresh random bytes (the runtime's random source), for `request` partition keys.
    random: fn() -> [u8; 16],
}

impl KinesisSender {
    /// A client for `target`'s stream and endpoint, with `config`'s region and static
    /// credentials. `random` draws the `request` partition keys.
    pub fn new(
        config: &Config,
        target: &KinesisTarget,
        http: SharedHttpClient,
        time: SharedTimeSource,
        sleep: SharedAsyncSleep,
        random: fn() -> [u8; 16],
    ) -> Self {
        let credentials = Credentials::new(
            config.access_key_id.clone(),
            config.secret_access_key.expose().to_owned(),
            None,
            None,
            "spillway-edge-env",
        );
        let sdk = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            // Always set (the regional endpoint by default): the SDK would otherwise derive an
            // account-specific host from the stream ARN, which emulators do not serve.
            .endpoint_url(target.endpoint.clone())
            .http_client(http)
            .time_source(time)
            .sleep_impl(sleep)
            // Retries, timeouts and stalled-stream checks are the edge's job: the SDK's would
            // resend whole calls and ignore the request's deadline.
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            // Static credentials need no cache (and no background refresh timers).
            .identity_cache(IdentityCache::no_cache())
            .build();
        Self {
            client: aws_sdk_kinesis::Client::from_conf(sdk),
            stream_arn: target.stream.as_str().to_owned(),
            partition_key: target.partition_key,
            random,
        }
    }

    /// The partition keys of a call's `count` records.
    fn keys(&self, count: usize, group: &str) -> Vec<String> {
        partition_keys(self.partition_key, group, count, (self.random)())
    }
}

/// The partition keys of `count` records: `group` for every record with [`PartitionKey::KeyId`]
/// (when it is a usable key), else one random key per record, `random` offset by the position
/// (32 hex digits; Kinesis hashes keys with MD5, so neighbouring values land anywhere).
pub fn partition_keys(
    mode: PartitionKey,
    group: &str,
    count: usize,
    random: [u8; 16],
) -> Vec<String> {
    let usable = !group.is_empty() && group.len() <= KINESIS_MAX_PARTITION_KEY_BYTES;
    if mode == PartitionKey::KeyId && usable {
        return vec![group.to_owned(); count];
    }
    let base = u128::from_le_bytes(random);
    (0..count)
        .map(|i| format!("{:032x}", base.wrapping_add(i as u128)))
        .collect()
}

/// Checks a call against Kinesis's `PutRecords` limits, counting data plus partition key as
/// Kinesis does. The packer keeps within them (its ceiling reserves a full-length key per
/// record); this refuses, as permanent, a call the service would refuse as a whole.
pub fn check_call(entries: &[BufferEntry], keys: &[String]) -> Result<(), SendError> {
    if entries.len() > KINESIS_MAX_RECORDS {
        return Err(SendError::Permanent(format!(
            "{} records in one PutRecords; Kinesis takes at most {KINESIS_MAX_RECORDS}",
            entries.len()
        )));
    }
    let mut total = 0usize;
    for (position, (entry, key)) in entries.iter().zip(keys).enumerate() {
        let size = entry.body.len() + key.len();
        if size > KINESIS_MAX_RECORD_BYTES {
            return Err(SendError::Permanent(format!(
                "record {position} is {size} bytes with its partition key; Kinesis takes at most \
                 {KINESIS_MAX_RECORD_BYTES}"
            )));
        }
        total += size;
    }
    if total > KINESIS_MAX_CALL_BYTES {
        return Err(SendError::Permanent(format!(
            "PutRecords of {total} bytes with partition keys; Kinesis takes at most \
             {KINESIS_MAX_CALL_BYTES}"
        )));
    }
    Ok(())
}

impl Buffer for KinesisSender {
    async fn send(&self, entries: &[BufferEntry], group: &str) -> Result<CallOutcome, SendError> {
        let keys = self.keys(entries.len(), group);
        check_call(entries, &keys)?;
        let mut records = Vec::with_capacity(entries.len());
        for (e, key) in entries.iter().zip(keys) {
            records.push(
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(e.body.as_bytes()))
                    .partition_key(key)
                    .build()
                    .map_err(|e| SendError::Permanent(format!("building the request: {e}")))?,
            );
        }
        let result = self
            .client
            .put_records()
            .stream_arn(&self.stream_arn)
            .set_records(Some(records))
            .send()
            .await;
        match result {
            Ok(out) => outcome(entries.len(), out.records()),
            Err(e) => Err(classify::classify(&e, whole_call_transient)),
        }
    }
}

/// Whole-call error codes worth another try: the generic ones, and Kinesis's throughput and
/// KMS throttling (`ProvisionedThroughputExceededException`, `KMSThrottlingException`).
/// `ResourceNotFoundException`, `AccessDeniedException`, `ValidationException`,
/// `InvalidArgumentException` and the other KMS errors stay permanent.
pub fn whole_call_transient(code: &str) -> bool {
    transient_code(code)
        || matches!(
            short_code(code),
            "ProvisionedThroughputExceededException" | "KMSThrottlingException"
        )
}

/// Whether a record Kinesis refused may be stored if sent again. Kinesis documents two
/// per-record codes, both transient: `ProvisionedThroughputExceededException` (the shard is
/// over 1 MiB/s or 1,000 records/s) and `InternalFailure`. Any other code is not retried.
pub fn record_retryable(code: &str) -> bool {
    matches!(
        short_code(code),
        "ProvisionedThroughputExceededException" | "InternalFailure"
    )
}

/// Turns Kinesis's results (one per record, in request order) into the positions of the
/// records that were not stored, each result read by the rule the dead-letter tool shares
/// ([`read_put_result`]: only a sequence number without an error acknowledges a record);
/// `FailedRecordCount` is never read.
pub fn outcome(sent: usize, results: &[PutRecordsResultEntry]) -> Result<CallOutcome, SendError> {
    if results.len() != sent {
        return Err(SendError::Transient(format!(
            "PutRecords answered {} results for {sent} records",
            results.len()
        )));
    }
    let failed = results
        .iter()
        .enumerate()
        .filter_map(
            |(position, r)| match read_put_result(r.error_code(), r.sequence_number()) {
                PutRecordResult::Refused(code) => Some(FailedEntry {
                    position,
                    retryable: record_retryable(code),
                    code: code.to_owned(),
                }),
                PutRecordResult::Stored(_) => None,
                PutRecordResult::Unacknowledged => Some(FailedEntry {
                    position,
                    retryable: true,
                    code: "NoSequenceNumber".to_owned(),
                }),
            },
        )
        .collect();
    Ok(CallOutcome { failed })
}

#[cfg(test)]
mod tests;
