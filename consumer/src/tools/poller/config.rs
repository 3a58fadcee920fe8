//! The poller's settings, named like the Lambda event source mapping's, read once at start-up.

use std::time::Duration;

use crate::breaker::BreakerPolicy;
use crate::config::{invalid, number, origin_of, ConfigError};

/// Which event source mapping the poller plays (`BUFFER`, as the edge's setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    /// `sqs` or unset: the SQS mapping, [`PollerConfig`].
    Sqs,
    /// `kinesis`: the Kinesis mapping, [`super::kinesis::KinesisPollerConfig`].
    Kinesis,
}

/// Reads `BUFFER`.
pub fn buffer(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Buffer, ConfigError> {
    match lookup("BUFFER")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("sqs") => Ok(Buffer::Sqs),
        Some("kinesis") => Ok(Buffer::Kinesis),
        Some(other) => Err(invalid(
            "BUFFER",
            format!("`{other}` is neither sqs nor kinesis"),
        )),
    }
}

/// Settings of the local poller, named like the Lambda event source mapping's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollerConfig {
    /// `SQS_QUEUE_URL` (required).
    pub queue_url: String,
    /// `SQS_ENDPOINT`, default: the origin of `SQS_QUEUE_URL` (as in the contract).
    pub endpoint: String,
    /// `BATCH_SIZE`, default 10, 1..=10,000 (Lambda's range for standard queues). Above 10,
    /// `MAXIMUM_BATCHING_WINDOW_IN_SECONDS` must be at least 1, as Lambda requires.
    pub batch_size: usize,
    /// `MAXIMUM_BATCHING_WINDOW_IN_SECONDS`, default 0, 0..=300: how long to keep gathering
    /// records once the first one arrived.
    pub batching_window: Duration,
    /// `MAXIMUM_CONCURRENCY`, default 2, 1..=1,000: concurrent invocations, each with its own
    /// database connection. Lambda's minimum is 2; 1 is allowed here for local debugging.
    pub maximum_concurrency: usize,
    /// `VISIBILITY_TIMEOUT_SECONDS`, optional, 0..=43,200: overrides the queue's visibility
    /// timeout for received messages. Unset, the queue's own applies (as with Lambda).
    pub visibility_timeout: Option<i32>,
    /// `WAIT_TIME_SECONDS`, default 20 (Lambda long-polls for 20 s), 0..=20.
    pub wait_time_seconds: i32,
    /// The circuit breaker's probes while the database is unavailable: the first after 1 s,
    /// doubling up to `BREAKER_MAX_PROBE_SECONDS` (default 10, 1..=300), the longest a backlog
    /// waits after the database returns before it starts draining. The deployed function's
    /// schedule probes every minute instead (`infra/template.yaml`).
    pub breaker: BreakerPolicy,
}

impl PollerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let queue_url = lookup("SQS_QUEUE_URL")
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::Missing("SQS_QUEUE_URL"))?;
        let origin = origin_of(&queue_url).ok_or_else(|| {
            invalid(
                "SQS_QUEUE_URL",
                format!("`{queue_url}` is not an http(s) URL"),
            )
        })?;
        let endpoint = match lookup("SQS_ENDPOINT").filter(|v| !v.trim().is_empty()) {
            None => origin,
            Some(e) => origin_of(&e)
                .ok_or_else(|| invalid("SQS_ENDPOINT", format!("`{e}` is not an http(s) URL")))?,
        };
        let batch_size = number(lookup, "BATCH_SIZE", 10usize, 1..=10_000)?;
        let window = number(lookup, "MAXIMUM_BATCHING_WINDOW_IN_SECONDS", 0u64, 0..=300)?;
        if batch_size > 10 && window == 0 {
            return Err(invalid(
                "BATCH_SIZE",
                "above 10 needs MAXIMUM_BATCHING_WINDOW_IN_SECONDS of at least 1 (as in Lambda)",
            ));
        }
        let maximum_concurrency = number(lookup, "MAXIMUM_CONCURRENCY", 2usize, 1..=1_000)?;
        let visibility_timeout =
            match lookup("VISIBILITY_TIMEOUT_SECONDS").filter(|v| !v.trim().is_empty()) {
                None => None,
                Some(_) => Some(number(
                    lookup,
                    "VISIBILITY_TIMEOUT_SECONDS",
                    0i32,
                    0..=43_200,
                )?),
            };
        if let Some(v) = visibility_timeout {
            // Lambda's rule, for the same reason: records must stay invisible while they are
            // gathered and handled, or they are delivered twice.
            if u64::try_from(v).unwrap_or(0) <= window {
                return Err(invalid(
                    "VISIBILITY_TIMEOUT_SECONDS",
                    format!(
                        "{v} must be longer than MAXIMUM_BATCHING_WINDOW_IN_SECONDS ({window})"
                    ),
                ));
            }
        }
        let wait_time_seconds = number(lookup, "WAIT_TIME_SECONDS", 20i32, 0..=20)?;
        let max_probe = number(lookup, "BREAKER_MAX_PROBE_SECONDS", 10u64, 1..=300)?;
        let breaker = BreakerPolicy {
            first_probe: Duration::from_secs(1),
            max_probe: Duration::from_secs(max_probe),
        };
        Ok(Self {
            queue_url,
            endpoint,
            batch_size,
            batching_window: Duration::from_secs(window),
            maximum_concurrency,
            visibility_timeout,
            wait_time_seconds,
            breaker,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;

    const Q: (&str, &str) = (
        "SQS_QUEUE_URL",
        "http://127.0.0.1:5000/123456789012/spillway-events",
    );

    #[test]
    fn buffer_selects_the_mapping() {
        assert_eq!(buffer(&env(&[])), Ok(Buffer::Sqs));
        assert_eq!(buffer(&env(&[("BUFFER", "sqs")])), Ok(Buffer::Sqs));
        assert_eq!(buffer(&env(&[("BUFFER", "Kinesis")])), Ok(Buffer::Kinesis));
        assert!(buffer(&env(&[("BUFFER", "kafka")])).is_err());
    }

    #[test]
    fn poller_defaults_follow_lambda() {
        let c = PollerConfig::from_lookup(&env(&[Q])).expect("valid");
        assert_eq!(c.endpoint, "http://127.0.0.1:5000");
        assert_eq!(c.batch_size, 10);
        assert_eq!(c.batching_window, Duration::ZERO);
        assert_eq!(c.maximum_concurrency, 2);
        assert_eq!(c.visibility_timeout, None);
        assert_eq!(c.wait_time_seconds, 20);
        assert_eq!(c.breaker, BreakerPolicy::default());
    }

    #[test]
    fn poller_settings_are_validated() {
        let c = PollerConfig::from_lookup(&env(&[
            Q,
            ("SQS_ENDPOINT", "http://localhost:4566/"),
            ("BATCH_SIZE", "100"),
            ("MAXIMUM_BATCHING_WINDOW_IN_SECONDS", "2"),
            ("MAXIMUM_CONCURRENCY", "5"),
            ("VISIBILITY_TIMEOUT_SECONDS", "30"),
            ("BREAKER_MAX_PROBE_SECONDS", "3"),
        ]))
        .expect("valid");
        assert_eq!(c.breaker.max_probe, Duration::from_secs(3));
        assert_eq!(c.endpoint, "http://localhost:4566");
        assert_eq!(c.batch_size, 100);
        assert_eq!(c.batching_window, Duration::from_secs(2));
        assert_eq!(c.maximum_concurrency, 5);
        assert_eq!(c.visibility_timeout, Some(30));

        // Lambda refuses a batch size above 10 without a batching window.
        let err = PollerConfig::from_lookup(&env(&[Q, ("BATCH_SIZE", "11")])).err();
        assert!(matches!(
            err,
            Some(ConfigError::Invalid {
                name: "BATCH_SIZE",
                ..
            })
        ));
        for (k, v) in [
            ("BATCH_SIZE", "0"),
            ("MAXIMUM_CONCURRENCY", "0"),
            ("MAXIMUM_BATCHING_WINDOW_IN_SECONDS", "301"),
            ("WAIT_TIME_SECONDS", "21"),
            ("VISIBILITY_TIMEOUT_SECONDS", "-1"),
            ("VISIBILITY_TIMEOUT_SECONDS", "0"),
            ("BREAKER_MAX_PROBE_SECONDS", "0"),
            ("BREAKER_MAX_PROBE_SECONDS", "301"),
        ] {
            assert!(
                PollerConfig::from_lookup(&env(&[Q, (k, v)])).is_err(),
                "{k}={v} accepted"
            );
        }
        assert_eq!(
            PollerConfig::from_lookup(&env(&[])).err(),
            Some(ConfigError::Missing("SQS_QUEUE_URL"))
        );
        assert!(PollerConfig::from_lookup(&env(&[("SQS_QUEUE_URL", "queue")])).is_err());
        // The edge's rule: no credentials inside the URL.
        assert!(PollerConfig::from_lookup(&env(&[(
            "SQS_QUEUE_URL",
            "http://user:pw@127.0.0.1:5000/123456789012/q"
        )]))
        .is_err());
        let err = PollerConfig::from_lookup(&env(&[
            Q,
            ("MAXIMUM_BATCHING_WINDOW_IN_SECONDS", "5"),
            ("VISIBILITY_TIMEOUT_SECONDS", "5"),
        ]))
        .err();
        assert!(matches!(
            err,
            Some(ConfigError::Invalid {
                name: "VISIBILITY_TIMEOUT_SECONDS",
                ..
            })
        ));
    }
}
