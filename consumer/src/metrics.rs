//! One CloudWatch Embedded Metric Format (EMF) record per invocation.
//!
//! Lambda sends every stdout line to CloudWatch Logs; a JSON line with an `_aws` member is
//! turned into metrics without any API call. Building the record is pure (the timestamp is an
//! argument); printing it is the caller's job.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::plan::Plan;
use crate::source::{oldest_sent_at, BufferedRecord};
use crate::store::WriteCounts;

/// What one invocation did, as counted by the handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvocationMetrics {
    /// Records in the delivered event (SQS or Kinesis).
    pub batch_size: u64,
    /// Events newly written to the table.
    pub events_stored: u64,
    /// Events skipped because their id was already stored (or repeated within the batch).
    pub duplicates_skipped: u64,
    /// Records reported in `batchItemFailures`.
    pub records_failed: u64,
    /// Records that cannot succeed on retry (undecodable, refused data). SQS: all of them are
    /// among `records_failed` (SQS moves them to its DLQ after `maxReceiveCount`). Kinesis:
    /// those dead-lettered now are not reported; those after the batch's lowest reported
    /// record are (they come back anyway, and are dead-lettered then).
    pub records_rejected: u64,
    /// Kinesis only: records the handler sent to the dead-letter queue in this invocation
    /// (`None` for SQS, whose dead letters SQS moves itself). Alarm on it: each one is a
    /// record that is not in the table.
    pub records_dead_lettered: Option<u64>,
    /// Time spent writing, connection set-up included.
    pub db_write_ms: u64,
    /// Now minus the oldest record's [`BufferedRecord::sent_at`] (SQS: `SentTimestamp`); `None`
    /// when no record has one.
    pub queue_lag_ms: Option<u64>,
    /// Now minus the oldest decoded event's `received_at` (the edge clock).
    pub end_to_end_lag_ms: Option<u64>,
}

impl InvocationMetrics {
    /// The figures of one invocation, from its plan once every failure is in it, what the
    /// store wrote, and the time the writes took.
    pub fn of<R: BufferedRecord>(
        plan: &Plan,
        records: &[R],
        written: WriteCounts,
        db_write_ms: u64,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            batch_size: plan.batch_size as u64,
            events_stored: written.inserted,
            duplicates_skipped: written.duplicates,
            records_failed: plan.failed.len() as u64,
            records_rejected: plan
                .failed
                .iter()
                .filter(|f| !f.reason.is_retryable())
                .count() as u64,
            db_write_ms,
            records_dead_lettered: None,
            queue_lag_ms: oldest_sent_at(records).map(|t| lag_ms(now, t)),
            end_to_end_lag_ms: plan.oldest_received_at().map(|t| lag_ms(now, t)),
        }
    }
}

/// Milliseconds from `then` to `now`, clamped at zero (clocks of different machines).
pub fn lag_ms(now: DateTime<Utc>, then: DateTime<Utc>) -> u64 {
    u64::try_from((now - then).num_milliseconds()).unwrap_or(0)
}

/// The EMF record for one invocation, as a single JSON line.
///
/// `service` is the only dimension (so the metrics aggregate across function versions);
/// `request_id` is a plain property, searchable in Logs Insights but not a dimension.
pub fn emf_line(
    namespace: &str,
    service: &str,
    request_id: &str,
    metrics: &InvocationMetrics,
    timestamp: DateTime<Utc>,
) -> String {
    let mut definitions = vec![
        json!({"Name": "EventsStored", "Unit": "Count"}),
        json!({"Name": "DuplicatesSkipped", "Unit": "Count"}),
        json!({"Name": "RecordsFailed", "Unit": "Count"}),
        json!({"Name": "RecordsRejected", "Unit": "Count"}),
        json!({"Name": "BatchSize", "Unit": "Count"}),
        json!({"Name": "DbWriteMs", "Unit": "Milliseconds"}),
    ];
    let mut record = json!({
        "Service": service,
        "RequestId": request_id,
        "EventsStored": metrics.events_stored,
        "DuplicatesSkipped": metrics.duplicates_skipped,
        "RecordsFailed": metrics.records_failed,
        "RecordsRejected": metrics.records_rejected,
        "BatchSize": metrics.batch_size,
        "DbWriteMs": metrics.db_write_ms,
    });
    // A lag that cannot be computed is left out rather than reported as 0, which would
    // flatter the statistics; so is the dead-letter count of an SQS batch (SQS counts its own).
    for (name, value, unit) in [
        (
            "RecordsDeadLettered",
            metrics.records_dead_lettered,
            "Count",
        ),
        ("QueueLagMs", metrics.queue_lag_ms, "Milliseconds"),
        ("EndToEndLagMs", metrics.end_to_end_lag_ms, "Milliseconds"),
    ] {
        if let (Some(v), Value::Object(map)) = (value, &mut record) {
            definitions.push(json!({"Name": name, "Unit": unit}));
            map.insert(name.to_owned(), json!(v));
        }
    }
    if let Value::Object(map) = &mut record {
        map.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": timestamp.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [["Service"]],
                    "Metrics": definitions,
                }],
            }),
        );
    }
    record.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap_or_default()
    }

    #[test]
    fn record_is_valid_emf() {
        let m = InvocationMetrics {
            batch_size: 4,
            events_stored: 7,
            duplicates_skipped: 2,
            records_failed: 1,
            records_rejected: 1,
            db_write_ms: 12,
            records_dead_lettered: None,
            queue_lag_ms: Some(250),
            end_to_end_lag_ms: Some(900),
        };
        let line = emf_line(
            "Spillway",
            "spillway-consumer",
            "req-1",
            &m,
            at(1_700_000_000_000),
        );
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Spillway");
        assert_eq!(directive["Dimensions"], json!([["Service"]]));
        // Every declared metric has a numeric value at the top level (what CloudWatch needs).
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .filter_map(|d| d["Name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "EventsStored",
                "DuplicatesSkipped",
                "RecordsFailed",
                "RecordsRejected",
                "BatchSize",
                "DbWriteMs",
                "QueueLagMs",
                "EndToEndLagMs"
            ]
        );
        for name in names {
            assert!(v[name].is_u64(), "{name} has no value");
        }
        assert_eq!(v["EventsStored"], 7);
        assert_eq!(v["QueueLagMs"], 250);
        assert_eq!(v["EndToEndLagMs"], 900);
        assert_eq!(v["Service"], "spillway-consumer");
        assert_eq!(v["RequestId"], "req-1");
    }

    #[test]
    fn a_kinesis_batch_counts_its_dead_letters() {
        let m = InvocationMetrics {
            records_dead_lettered: Some(2),
            ..InvocationMetrics::default()
        };
        let v: Value = serde_json::from_str(&emf_line("NS", "svc", "r", &m, at(0))).expect("json");
        assert_eq!(v["RecordsDeadLettered"], 2);
        let defs = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics");
        assert!(defs.contains(&json!({"Name": "RecordsDeadLettered", "Unit": "Count"})));
        assert_eq!(defs.len(), 7);
    }

    #[test]
    fn unknown_lags_are_left_out() {
        let line = emf_line(
            "Custom/NS",
            "svc",
            "r",
            &InvocationMetrics::default(),
            at(0),
        );
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Custom/NS");
        assert!(v.get("QueueLagMs").is_none());
        assert!(v.get("EndToEndLagMs").is_none());
        assert!(v.get("RecordsDeadLettered").is_none());
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .map(Vec::len),
            Some(6)
        );
    }

    #[test]
    fn lag_is_clamped_at_zero() {
        assert_eq!(lag_ms(at(1_000), at(400)), 600);
        assert_eq!(lag_ms(at(400), at(1_000)), 0);
    }
}
