//! The one structured log line written per request. It names the request, the key's id and what
//! happened; it never holds a key, a secret, a query string, any event payload, nor the
//! client's address (whatever `IP_POLICY` says: that decides only what the events carry). Of
//! where the request came from it holds the data centre alone (`colo`).

use serde::{Serialize, Serializer};

use crate::deliver::{BreakerState, DeliveryRoute};

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
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "route_name")]
    pub send: Option<DeliveryRoute>,
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
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "breaker_name"
    )]
    pub breaker: Option<BreakerState>,
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

/// A route by its name in the log line (`DeliveryRoute::as_str`: `direct`, `batched`, ...).
fn route_name<S: Serializer>(route: &Option<DeliveryRoute>, s: S) -> Result<S::Ok, S::Error> {
    route.map(DeliveryRoute::as_str).serialize(s)
}

/// The breaker by its name in the log line (`open`, `probe`).
fn breaker_name<S: Serializer>(breaker: &Option<BreakerState>, s: S) -> Result<S::Ok, S::Error> {
    breaker.map(BreakerState::as_str).serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_route_and_the_breaker() {
        let mut log = RequestLog::new("r".into(), "POST", "/v1/events");
        let line: serde_json::Value = serde_json::from_str(&log.to_json()).expect("JSON");
        assert!(
            line.get("send").is_none() && line.get("breaker").is_none(),
            "{line}"
        );
        for (route, name) in [
            (DeliveryRoute::Direct, "direct"),
            (DeliveryRoute::GroupCommit, "batched"),
            (DeliveryRoute::DirectFallback, "direct_fallback"),
        ] {
            log.send = Some(route);
            let line: serde_json::Value = serde_json::from_str(&log.to_json()).expect("JSON");
            assert_eq!(line["send"], name);
        }
        for (breaker, name) in [(BreakerState::Open, "open"), (BreakerState::Probe, "probe")] {
            log.breaker = Some(breaker);
            let line: serde_json::Value = serde_json::from_str(&log.to_json()).expect("JSON");
            assert_eq!(line["breaker"], name);
        }
    }
}
