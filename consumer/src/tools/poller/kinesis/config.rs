//! The Kinesis mapping's settings, named like the Lambda event source mapping's, read once at
//! start-up and validated there (ranges and defaults as Lambda documents them for Kinesis).
//!
//! It does not read the consumer's own settings (database, keys, `DEAD_LETTER_QUEUE_URL`):
//! those belong to the handler.

use std::path::PathBuf;
use std::time::Duration;

use spillway_shared::StreamArn;

use crate::config::{invalid, number, origin_of, ConfigError};

/// Where a shard without a checkpoint starts (`STARTING_POSITION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record the stream still holds (the local default: nothing put before the
    /// poller started is skipped).
    TrimHorizon,
    /// Only records put after the iterator was taken.
    Latest,
}

/// Settings of the local Kinesis poller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisPollerConfig {
    /// `KINESIS_STREAM_ARN` (required), `arn:<partition>:kinesis:<region>:<account>:stream/<name>`.
    pub stream_arn: String,
    /// The ARN's region (the events' `awsRegion`).
    pub region: String,
    /// The ARN's account (for the `invokeIdentityArn` the events carry).
    pub account: String,
    /// `KINESIS_ENDPOINT`, an origin; default the ARN region's public endpoint (required for a
    /// partition whose domain is not known, as on the edge: [`StreamArn::default_endpoint`]).
    pub endpoint: String,
    /// `BATCH_SIZE`, default 100, 1..=10,000 (Lambda's Kinesis range).
    pub batch_size: usize,
    /// `MAXIMUM_BATCHING_WINDOW_IN_SECONDS`, default 0, 0..=300: how long a lane waits for a
    /// full batch once it holds a record. With 0 a batch goes as soon as records are read.
    pub batching_window: Duration,
    /// `PARALLELIZATION_FACTOR`, default 1, 1..=10: concurrent batches per shard (lanes chosen
    /// by partition key). Database connections = shards x this factor, as on Lambda.
    pub parallelization_factor: usize,
    /// `BISECT_BATCH_ON_FUNCTION_ERROR`, default false (as Lambda).
    pub bisect_on_error: bool,
    /// `MAXIMUM_RETRY_ATTEMPTS`: `None` is -1, infinite (Lambda's default: one poison record
    /// then blocks its shard until it expires from the stream), else 0..=10,000.
    pub maximum_retry_attempts: Option<u32>,
    /// `MAXIMUM_RECORD_AGE_IN_SECONDS`: `None` is -1, infinite (Lambda's default), else
    /// 60..=604,800.
    pub maximum_record_age: Option<Duration>,
    /// `STARTING_POSITION`, default `TRIM_HORIZON` locally (Lambda has no default).
    pub starting_position: StartingPosition,
    /// `ON_FAILURE_DESTINATION`, optional SQS queue URL: gets Lambda's on-failure record (the
    /// batch's shard and sequence range, not its data) for batches given up on. Unset, they are
    /// dropped with an error log line, as Lambda drops them.
    pub on_failure_destination: Option<String>,
    /// `CHECKPOINT_FILE`, optional: where the per-shard checkpoints are kept across restarts.
    /// Unset, a restart begins again at `STARTING_POSITION`.
    pub checkpoint_file: Option<PathBuf>,
}

fn flag(lookup: &dyn Fn(&str) -> Option<String>, name: &'static str) -> Result<bool, ConfigError> {
    match lookup(name)
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(invalid(
            name,
            format!("`{other}` is neither true nor false"),
        )),
    }
}

/// `-1` (infinite, `None`) or a number in `range`; `None` when unset.
fn infinite_or(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<Option<u32>, ConfigError> {
    match lookup(name).map(|v| v.trim().to_owned()).as_deref() {
        None | Some("") | Some("-1") => Ok(None),
        Some(_) => number(lookup, name, 0u32, range).map(Some),
    }
}

impl KinesisPollerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let stream_arn = lookup("KINESIS_STREAM_ARN")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::Missing("KINESIS_STREAM_ARN"))?;
        let arn = StreamArn::parse(&stream_arn)
            .map_err(|e| invalid("KINESIS_STREAM_ARN", format!("`{stream_arn}` {e}")))?;
        let endpoint = match lookup("KINESIS_ENDPOINT").filter(|v| !v.trim().is_empty()) {
            // A partition whose domain is not known (`aws-iso`, ...) needs it set, as the edge.
            None => arn
                .default_endpoint()
                .ok_or(ConfigError::Missing("KINESIS_ENDPOINT"))?,
            Some(e) => origin_of(&e).ok_or_else(|| {
                invalid("KINESIS_ENDPOINT", format!("`{e}` is not an http(s) URL"))
            })?,
        };
        let on_failure_destination =
            match lookup("ON_FAILURE_DESTINATION").filter(|v| !v.trim().is_empty()) {
                None => None,
                Some(url) if origin_of(&url).is_some() => Some(url.trim().to_owned()),
                Some(url) => {
                    return Err(invalid(
                        "ON_FAILURE_DESTINATION",
                        format!("`{url}` is not an SQS queue URL"),
                    ))
                }
            };
        let starting_position = match lookup("STARTING_POSITION")
            .map(|v| v.trim().to_ascii_uppercase())
            .as_deref()
        {
            None | Some("") | Some("TRIM_HORIZON") => StartingPosition::TrimHorizon,
            Some("LATEST") => StartingPosition::Latest,
            Some(other) => {
                return Err(invalid(
                    "STARTING_POSITION",
                    format!("`{other}` is neither TRIM_HORIZON nor LATEST"),
                ))
            }
        };
        Ok(Self {
            region: arn.region().to_owned(),
            account: arn.account().to_owned(),
            endpoint,
            batch_size: number(lookup, "BATCH_SIZE", 100usize, 1..=10_000)?,
            batching_window: Duration::from_secs(number(
                lookup,
                "MAXIMUM_BATCHING_WINDOW_IN_SECONDS",
                0u64,
                0..=300,
            )?),
            parallelization_factor: number(lookup, "PARALLELIZATION_FACTOR", 1usize, 1..=10)?,
            bisect_on_error: flag(lookup, "BISECT_BATCH_ON_FUNCTION_ERROR")?,
            maximum_retry_attempts: infinite_or(lookup, "MAXIMUM_RETRY_ATTEMPTS", 0..=10_000)?,
            maximum_record_age: infinite_or(lookup, "MAXIMUM_RECORD_AGE_IN_SECONDS", 60..=604_800)?
                .map(|s| Duration::from_secs(s.into())),
            starting_position,
            on_failure_destination,
            checkpoint_file: lookup("CHECKPOINT_FILE")
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from),
            stream_arn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;

    const ARN: (&str, &str) = (
        "KINESIS_STREAM_ARN",
        "arn:aws:kinesis:us-east-1:000000000000:stream/spillway-events",
    );

    #[test]
    fn defaults_follow_lambda() {
        let c = KinesisPollerConfig::from_lookup(&env(&[ARN])).expect("valid");
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.account, "000000000000");
        assert_eq!(c.endpoint, "https://kinesis.us-east-1.amazonaws.com");
        assert_eq!(c.batch_size, 100);
        assert_eq!(c.batching_window, Duration::ZERO);
        assert_eq!(c.parallelization_factor, 1);
        assert!(!c.bisect_on_error);
        assert_eq!(c.maximum_retry_attempts, None);
        assert_eq!(c.maximum_record_age, None);
        assert_eq!(c.starting_position, StartingPosition::TrimHorizon);
        assert_eq!(c.on_failure_destination, None);
        assert_eq!(c.checkpoint_file, None);
    }

    #[test]
    fn settings_are_read_and_validated() {
        let c = KinesisPollerConfig::from_lookup(&env(&[
            ARN,
            ("KINESIS_ENDPOINT", "http://127.0.0.1:4567/"),
            ("BATCH_SIZE", "10000"),
            ("MAXIMUM_BATCHING_WINDOW_IN_SECONDS", "300"),
            ("PARALLELIZATION_FACTOR", "10"),
            ("BISECT_BATCH_ON_FUNCTION_ERROR", "TRUE"),
            ("MAXIMUM_RETRY_ATTEMPTS", "0"),
            ("MAXIMUM_RECORD_AGE_IN_SECONDS", "60"),
            ("STARTING_POSITION", "latest"),
            (
                "ON_FAILURE_DESTINATION",
                "http://127.0.0.1:5000/000000000000/failed",
            ),
            ("CHECKPOINT_FILE", "/tmp/cp.json"),
        ]))
        .expect("valid");
        assert_eq!(c.endpoint, "http://127.0.0.1:4567");
        assert_eq!(c.batch_size, 10_000);
        assert_eq!(c.batching_window, Duration::from_secs(300));
        assert_eq!(c.parallelization_factor, 10);
        assert!(c.bisect_on_error);
        assert_eq!(c.maximum_retry_attempts, Some(0));
        assert_eq!(c.maximum_record_age, Some(Duration::from_secs(60)));
        assert_eq!(c.starting_position, StartingPosition::Latest);
        assert_eq!(
            c.on_failure_destination.as_deref(),
            Some("http://127.0.0.1:5000/000000000000/failed")
        );
        assert_eq!(c.checkpoint_file, Some(PathBuf::from("/tmp/cp.json")));
        let infinite = KinesisPollerConfig::from_lookup(&env(&[
            ARN,
            ("MAXIMUM_RETRY_ATTEMPTS", "-1"),
            ("MAXIMUM_RECORD_AGE_IN_SECONDS", "-1"),
        ]))
        .expect("valid");
        assert_eq!(infinite.maximum_retry_attempts, None);
        assert_eq!(infinite.maximum_record_age, None);
        let top = KinesisPollerConfig::from_lookup(&env(&[
            ARN,
            ("MAXIMUM_RETRY_ATTEMPTS", "10000"),
            ("MAXIMUM_RECORD_AGE_IN_SECONDS", "604800"),
        ]))
        .expect("valid");
        assert_eq!(top.maximum_retry_attempts, Some(10_000));

        for (k, v) in [
            ("BATCH_SIZE", "0"),
            ("BATCH_SIZE", "10001"),
            ("MAXIMUM_BATCHING_WINDOW_IN_SECONDS", "301"),
            ("PARALLELIZATION_FACTOR", "0"),
            ("PARALLELIZATION_FACTOR", "11"),
            ("BISECT_BATCH_ON_FUNCTION_ERROR", "yes"),
            ("MAXIMUM_RETRY_ATTEMPTS", "-2"),
            ("MAXIMUM_RETRY_ATTEMPTS", "10001"),
            ("MAXIMUM_RECORD_AGE_IN_SECONDS", "59"),
            ("MAXIMUM_RECORD_AGE_IN_SECONDS", "604801"),
            ("STARTING_POSITION", "AT_TIMESTAMP"),
            ("ON_FAILURE_DESTINATION", "failed-queue"),
            ("KINESIS_ENDPOINT", "localhost:4567"),
        ] {
            assert!(
                KinesisPollerConfig::from_lookup(&env(&[ARN, (k, v)])).is_err(),
                "{k}={v} accepted"
            );
        }
        assert_eq!(
            KinesisPollerConfig::from_lookup(&env(&[])).err(),
            Some(ConfigError::Missing("KINESIS_STREAM_ARN"))
        );
        for bad in [
            "spillway-events",
            "arn:aws:sqs:us-east-1:000000000000:q",
            "arn:aws:kinesis:us-east-1:000000000000:spillway-events",
            "arn:aws:kinesis::000000000000:stream/s",
        ] {
            // (Every shape refused is in `spillway_shared::arn`'s tests; these show it is used.)
            assert!(
                KinesisPollerConfig::from_lookup(&env(&[("KINESIS_STREAM_ARN", bad)])).is_err(),
                "{bad} accepted"
            );
        }
    }
}
