//! The one structured log line written per request. It names the request, the key's id and what
//! happened; it never holds a key, a secret, a query string or any event payload.

use serde::Serialize;

use crate::spill::ReplayReport;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestLog {
    pub request_id: String,
    pub method: String,
    /// The path only: the query string may carry `?key=`.
    pub path: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Events in the request (parsed, before validation).
    pub events: usize,
    /// Body bytes as received (before decompression).
    pub bytes: usize,
    /// `SendMessageBatch` calls and retries that carried the request's events (when batched:
    /// those of its batch, shared with the other requests in it).
    pub sqs_calls: u32,
    pub retries: u32,
    /// How the events went: `batched`, `direct`, or `direct_fallback` (the batcher did not
    /// answer). Absent when nothing was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send: Option<&'static str>,
    /// When batched: requests and events in the batch that carried this request's events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_events: Option<u32>,
    /// Events written to the spill queue instead of SQS (absent when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spilled: Option<usize>,
    /// The breaker, when not closed: `open` (the request went straight to the spill) or `probe`
    /// (it tried SQS for the isolate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<&'static str>,
    /// Why the spill failed, when it did (the request was then answered `503`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spill_error: Option<String>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colo: Option<String>,
    /// Last queue error, when there was one (SQS error codes and HTTP statuses only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_error: Option<String>,
    /// Anything else the operator should know (a configuration problem, a rate limiter outage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl RequestLog {
    pub fn new(request_id: String, method: &str, path: &str) -> Self {
        Self {
            request_id,
            method: method.chars().take(16).collect(),
            path: path.chars().take(200).collect(),
            ..Self::default()
        }
    }

    /// The JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                r#"{{"request_id":"{}","status":{}}}"#,
                self.request_id, self.status
            )
        })
    }
}

/// The replay consumer's log line, one per batch of spill messages: `"kind":"replay"` and the
/// counts of [`ReplayReport`] (never a payload).
pub fn replay_line(report: &ReplayReport, duration_ms: u64) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        kind: &'static str,
        messages: usize,
        events: usize,
        replayed: usize,
        retried: usize,
        unreadable: usize,
        sqs_calls: u32,
        retries: u32,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        queue_error: Option<&'a str>,
    }
    serde_json::to_string(&Line {
        kind: "replay",
        messages: report.messages,
        events: report.events,
        replayed: report.replayed,
        retried: report.retried,
        unreadable: report.unreadable,
        sqs_calls: report.sqs_calls,
        retries: report.sqs_retries,
        duration_ms,
        queue_error: report.last_error.as_deref(),
    })
    .unwrap_or_else(|_| r#"{"kind":"replay"}"#.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_line_counts_and_names_no_payload() {
        let report = ReplayReport {
            messages: 3,
            events: 40,
            replayed: 30,
            retried: 1,
            unreadable: 0,
            sqs_calls: 4,
            sqs_retries: 1,
            last_error: Some("HTTP 503".into()),
        };
        let v: serde_json::Value = serde_json::from_str(&replay_line(&report, 12)).expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({"kind": "replay", "messages": 3, "events": 40, "replayed": 30,
                "retried": 1, "unreadable": 0, "sqs_calls": 4, "retries": 1,
                "duration_ms": 12, "queue_error": "HTTP 503"})
        );
    }
}
