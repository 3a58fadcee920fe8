//! Event time: when an event happened, in the edge's clock, corrected for a wrong client clock
//! with what the client says about when it sent the request.
//!
//! Segment, RudderStack and PostHog all compute it the same way, and so does this module:
//!
//! - a `timestamp` and a send time (`sentAt`, `sent_at`, `Sent-At`): `received_at - (sent_at -
//!   timestamp)`. The difference of two readings of the same client clock is right however
//!   wrong that clock is; only the request's transit time is added (the event appears that much
//!   later than it happened).
//! - PostHog's `offset` (milliseconds between the event and the send): `received_at - offset`.
//!   It needs no client clock at all, so it wins over a `timestamp`, as in PostHog.
//! - a `timestamp` without a send time: the timestamp as it is (nothing to correct it with).
//! - neither: `received_at`.
//!
//! Bounds: a corrected time is never after `received_at` (an event cannot happen after the
//! edge received it; a send time earlier than the timestamp is a client bug) and never more than
//! [`MAX_TIMESTAMP_BEHIND`] before it (the window a live `timestamp` must be in). PostHog clamps
//! only times more than 23 h ahead to its receive time; we clamp every corrected time ahead of
//! `received_at`, because a corrected time is already in the edge's clock.
//!
//! A historical import (PostHog `historical_migration`, Segment `/v1/import`) and a PostHog
//! event with `properties.$ignore_sent_at: true` are not corrected with a send time: the
//! importer's send time says nothing about the clocks that stamped old events. PostHog's
//! ingestion honours `$ignore_sent_at` the same way.
//!
//! What this module does not do: read requests (the collectors and the edge find the values),
//! or refuse anything. A send time that is not a valid time is ignored, as the peers ignore it,
//! and every raw value stays in the event's `data` as the client wrote it. Pure: no clock.

use chrono::{DateTime, Duration, Utc};

use crate::event::MAX_TIMESTAMP_BEHIND;
use crate::timestamp;

/// What a client said about when it sent an event, beside the event's `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendTime {
    /// When the client sent the request, in its own clock. `None` when it did not say, or when
    /// its send time must not correct the timestamp (see [`SendTime::correctable`]).
    pub sent_at: Option<DateTime<Utc>>,
    /// Milliseconds between the event and the send (PostHog's `offset`).
    pub offset_ms: Option<i64>,
    /// Whether a send time may correct the timestamp: false for historical imports and PostHog's
    /// `$ignore_sent_at`, whatever send time the request carries.
    pub correctable: bool,
}

impl SendTime {
    /// A live event's send time: correctable.
    pub fn live(sent_at: Option<DateTime<Utc>>, offset_ms: Option<i64>) -> SendTime {
        SendTime {
            sent_at,
            offset_ms,
            correctable: true,
        }
    }

    /// Takes the request's send time (a header or query parameter) when the event's own body
    /// named none, unless the event must not be corrected.
    pub fn or_request(self, request: Option<DateTime<Utc>>) -> SendTime {
        SendTime {
            sent_at: self.sent_at.or(request.filter(|_| self.correctable)),
            ..self
        }
    }
}

/// The event time of an event received at `received_at` (the edge clock), with the client's
/// `timestamp` (its clock) and what it said about sending it. See the module header.
pub fn event_time(
    received_at: DateTime<Utc>,
    timestamp: Option<DateTime<Utc>>,
    send: &SendTime,
) -> DateTime<Utc> {
    let sent_at = send.sent_at.filter(|_| send.correctable);
    // How long before the send (hence, give or take the transit, before `received_at`) the
    // event happened, by the client's own account.
    let age = match (send.offset_ms, timestamp, sent_at) {
        (Some(ms), _, _) => Some(Duration::milliseconds(ms)),
        (None, Some(t), Some(s)) => Some(s.signed_duration_since(t)),
        (None, Some(t), None) => return t,
        (None, None, _) => None,
    };
    match age {
        None => received_at,
        Some(age) => {
            let age = age.clamp(Duration::zero(), MAX_TIMESTAMP_BEHIND);
            received_at - age
        }
    }
}

/// The event time as the envelope carries it: only when it differs from what the consumer
/// derives without it (`occurred_at`, else `received_at`), so envelopes of requests without a
/// send time stay byte for byte what they were, and the consumer computes the rest.
pub fn carried(
    received_at: DateTime<Utc>,
    occurred_at: Option<DateTime<Utc>>,
    send: &SendTime,
) -> Option<DateTime<Utc>> {
    let t = event_time(received_at, occurred_at, send);
    (t != derived(received_at, occurred_at)).then_some(t)
}

/// What the consumer stores when the envelope carries no event time: `occurred_at`, else
/// `received_at` (right for every event of an edge older than event times, and for every event
/// without a send time or offset).
pub fn derived(received_at: DateTime<Utc>, occurred_at: Option<DateTime<Utc>>) -> DateTime<Utc> {
    occurred_at.unwrap_or(received_at)
}

/// A send time as written: RFC 3339 (rounded to microseconds as PostgreSQL rounds it, like a
/// `timestamp`), or whole milliseconds since the Unix epoch (what `Date.now()` gives, and what
/// posthog-js puts in `?_=`). `None` for anything else, a leap second that cannot be one
/// included.
pub fn parse_sent_at(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis);
    }
    timestamp::parse(text).and_then(Result::ok)
}

/// A JSON value holding a send time: a string as [`parse_sent_at`] reads it, or a number of
/// milliseconds since the Unix epoch. `None` for anything else.
pub fn sent_at_of_json(raw: &str) -> Option<DateTime<Utc>> {
    match serde_json::from_str::<serde_json::Value>(raw).ok()? {
        serde_json::Value::String(s) => parse_sent_at(&s),
        serde_json::Value::Number(n) => n.as_i64().and_then(DateTime::<Utc>::from_timestamp_millis),
        _ => None,
    }
}

/// PostHog's `offset` as JSON: a whole number of milliseconds (as PostHog reads it, `as_i64`).
pub fn offset_of_json(raw: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(raw)
        .ok()?
        .as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    /// The edge received the request at 12:00:00.
    fn received() -> DateTime<Utc> {
        t("2026-12-01T12:00:00Z")
    }

    #[test]
    fn a_clock_an_hour_fast_or_slow_is_corrected() {
        // The event happened 10 s before the send, which reached the edge at 12:00:00.
        for skew in [Duration::hours(1), Duration::hours(-1), Duration::zero()] {
            let ts = t("2026-12-01T11:59:50Z") + skew;
            let sent = t("2026-12-01T12:00:00Z") + skew;
            let got = event_time(received(), Some(ts), &SendTime::live(Some(sent), None));
            assert_eq!(got, t("2026-12-01T11:59:50Z"), "{skew}");
        }
    }

    #[test]
    fn offset_needs_no_clock_and_wins_over_a_timestamp() {
        let send = SendTime::live(None, Some(2_500));
        assert_eq!(
            event_time(received(), None, &send),
            t("2026-12-01T11:59:57.500Z")
        );
        // As in PostHog: an offset wins over a timestamp, with or without a send time.
        let send = SendTime::live(Some(t("2026-12-01T13:00:00Z")), Some(2_500));
        assert_eq!(
            event_time(received(), Some(t("2026-12-01T12:59:00Z")), &send),
            t("2026-12-01T11:59:57.500Z")
        );
    }

    #[test]
    fn without_a_send_time_the_timestamp_is_kept_and_without_both_received_at() {
        let ts = t("2026-12-01T13:30:00Z");
        assert_eq!(
            event_time(received(), Some(ts), &SendTime::live(None, None)),
            ts
        );
        assert_eq!(
            event_time(received(), None, &SendTime::live(Some(ts), None)),
            received()
        );
        assert_eq!(
            event_time(received(), None, &SendTime::default()),
            received()
        );
    }

    #[test]
    fn imports_and_ignore_sent_at_are_not_corrected() {
        let ts = t("2019-03-01T00:00:00Z");
        let send = SendTime {
            sent_at: Some(t("2026-12-01T12:00:05Z")),
            offset_ms: None,
            correctable: false,
        };
        assert_eq!(event_time(received(), Some(ts), &send), ts);
        // Nor does a request-level send time reach them; a live event takes it.
        assert_eq!(
            SendTime::default().or_request(Some(received())).sent_at,
            None
        );
        let own = t("2026-12-01T12:00:01Z");
        assert_eq!(
            SendTime::live(Some(own), None)
                .or_request(Some(received()))
                .sent_at,
            Some(own)
        );
        assert_eq!(
            SendTime::live(None, None).or_request(Some(own)).sent_at,
            Some(own)
        );
    }

    #[test]
    fn corrected_times_stay_between_the_window_and_received_at() {
        // Stamped after it was sent (a client bug): no later than the edge received it.
        let send = SendTime::live(Some(t("2026-12-01T12:00:00Z")), None);
        assert_eq!(
            event_time(received(), Some(t("2026-12-01T12:05:00Z")), &send),
            received()
        );
        assert_eq!(
            event_time(received(), None, &SendTime::live(None, Some(-5_000))),
            received()
        );
        // A send time years after the timestamp: no earlier than the live window.
        let send = SendTime::live(Some(t("2099-01-01T00:00:00Z")), None);
        assert_eq!(
            event_time(received(), Some(t("2026-12-01T11:00:00Z")), &send),
            received() - MAX_TIMESTAMP_BEHIND
        );
        assert_eq!(
            event_time(received(), None, &SendTime::live(None, Some(i64::MAX))),
            received() - MAX_TIMESTAMP_BEHIND
        );
    }

    #[test]
    fn the_envelope_carries_only_what_the_consumer_cannot_derive() {
        let ts = t("2026-12-01T11:59:00Z");
        assert_eq!(carried(received(), Some(ts), &SendTime::default()), None);
        assert_eq!(carried(received(), None, &SendTime::default()), None);
        // A send time equal to the edge clock corrects nothing.
        let send = SendTime::live(Some(received()), None);
        assert_eq!(carried(received(), Some(ts), &send), None);
        let send = SendTime::live(Some(t("2026-12-01T13:00:00Z")), None);
        assert_eq!(
            carried(received(), Some(t("2026-12-01T12:59:00Z")), &send),
            Some(ts)
        );
        assert_eq!(derived(received(), Some(ts)), ts);
        assert_eq!(derived(received(), None), received());
    }

    #[test]
    fn send_times_as_written() {
        assert_eq!(
            parse_sent_at("2026-12-01T12:00:00.1234567+01:00"),
            Some(t("2026-12-01T11:00:00.123457Z"))
        );
        assert_eq!(
            parse_sent_at("1764590400000"),
            Some(t("2025-12-01T12:00:00Z"))
        );
        for bad in [
            "",
            "yesterday",
            "2026-12-01",
            "2026-12-01T12:00:60Z",
            "-5",
            "1e12",
        ] {
            assert_eq!(parse_sent_at(bad), None, "{bad}");
        }
        assert_eq!(
            sent_at_of_json(r#""2026-12-01T12:00:00Z""#),
            Some(received())
        );
        assert_eq!(
            sent_at_of_json("1764590400000"),
            Some(t("2025-12-01T12:00:00Z"))
        );
        for bad in ["null", "true", "{}", r#""x""#, "1.5"] {
            assert_eq!(sent_at_of_json(bad), None, "{bad}");
        }
        assert_eq!(offset_of_json("1500"), Some(1500));
        assert_eq!(offset_of_json("-3"), Some(-3));
        for bad in ["1.5", r#""1500""#, "null"] {
            assert_eq!(offset_of_json(bad), None, "{bad}");
        }
    }
}
