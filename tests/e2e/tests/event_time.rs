//! Event time against wrong client clocks, end to end: clients whose clocks are an hour fast
//! and an hour slow send through `wrangler dev`, the buffer (the local SQS queue) and the poller
//! into PostgreSQL, as their SDKs send: Segment's `/v1/batch` with a batch `sentAt`
//! (`@segment/analytics-node`, analytics-next), PostHog's `/batch/` with `sent_at`
//! (posthog-node) and an event carrying only `offset`, and `POST /v1/events` with the `Sent-At`
//! header and a beacon's `?sent_at=` (milliseconds, what `Date.now()` gives).
//!
//! Each event happened 2 s before its request was sent, by the test's own clock (the truth, and
//! the clock `wrangler dev` runs on); every stored `event_time` must be within 1 s of that, while
//! `occurred_at` keeps the client's clock as sent and `data` the raw values.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use spillway_e2e::{start, wait_until};
use spillway_support::{BufferKind, Stack};

/// How long before its send each event happened.
const AGE_MS: i64 = 2_000;

/// The test's clock (the truth), in ms since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// `ms` since the Unix epoch as RFC 3339 with milliseconds, as the SDKs write their times
/// (`Date.prototype.toISOString`). Days to a civil date: Howard Hinnant's `civil_from_days`.
fn rfc3339(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let s = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms_of_day % 1000
    )
}

/// A client whose clock is `skew_ms` off.
struct Client<'a> {
    stack: &'a Stack,
    agent: ureq::Agent,
    skew_ms: i64,
}

impl Client<'_> {
    fn origin(&self) -> String {
        self.stack
            .env
            .ingest_url
            .trim_end_matches("/v1/events")
            .to_owned()
    }

    /// The client's clock now.
    fn clock(&self, truth: i64) -> i64 {
        truth + self.skew_ms
    }

    /// POSTs `body` and returns the true send time; the edge must answer 2xx.
    fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: impl FnOnce(i64) -> String,
    ) -> i64 {
        let sent = now_ms();
        let mut req = self.agent.post(&format!("{}{path}", self.origin()));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let text = body(sent);
        let resp = match req.send_string(&text) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                panic!("{path}: {code} {}", r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("{path}: {e}"),
        };
        assert!(
            (200..300).contains(&resp.status()),
            "{path}: {}",
            resp.status()
        );
        sent
    }

    /// Sends one of each kind of request; returns each label's true event time.
    fn send_all(&self, run: &str, who: &str) -> BTreeMap<String, i64> {
        let key = self.stack.env.ingest_key.clone();
        let mut truth = BTreeMap::new();
        let label = |kind: &str| format!("{who}:{kind}");

        // Segment: `/v1/batch`, the key as `writeKey`, a batch `sentAt` (analytics-node).
        let l = label("segment");
        let sent = self.post(
            "/v1/batch",
            &[("Content-Type", "application/json".into())],
            |t| {
                json!({
                    "writeKey": key,
                    "sentAt": rfc3339(self.clock(t)),
                    "batch": [{
                        "type": "track", "event": "Clock Test", "userId": "u-1",
                        "timestamp": rfc3339(self.clock(t) - AGE_MS),
                        "messageId": format!("{run}-{l}"),
                        "properties": {"run": run, "label": l},
                    }],
                })
                .to_string()
            },
        );
        truth.insert(l, sent - AGE_MS);

        // PostHog: `/batch/` with `sent_at` (posthog-node), one event with a timestamp and one
        // with only `offset`.
        let (lt, lo) = (label("posthog"), label("posthog-offset"));
        let sent = self.post(
            "/batch/",
            &[("Content-Type", "application/json".into())],
            |t| {
                json!({
                    "api_key": key,
                    "sent_at": rfc3339(self.clock(t)),
                    "batch": [
                        {"event": "clock test", "distinct_id": "d-1",
                         "timestamp": rfc3339(self.clock(t) - AGE_MS),
                         "properties": {"run": run, "label": lt}},
                        {"event": "clock test", "distinct_id": "d-1", "offset": AGE_MS,
                         "properties": {"run": run, "label": lo}},
                    ],
                })
                .to_string()
            },
        );
        truth.insert(lt, sent - AGE_MS);
        truth.insert(lo, sent - AGE_MS);

        // `/v1/events` with `Sent-At`.
        let l = label("events");
        let sent_at = std::cell::Cell::new(0);
        let sent = self.post(
            "/v1/events",
            &[
                ("Authorization", format!("Bearer {key}")),
                ("Content-Type", "application/json".into()),
                ("Sent-At", {
                    let t = now_ms();
                    sent_at.set(t);
                    rfc3339(self.clock(t))
                }),
            ],
            |_| {
                json!([{"type": "clock_test",
                        "timestamp": rfc3339(self.clock(sent_at.get()) - AGE_MS),
                        "data": {"run": run, "label": l}}])
                .to_string()
            },
        );
        // The header was written a moment before the request went: the truth is its time.
        assert!(sent - sent_at.get() < 100);
        truth.insert(l, sent_at.get() - AGE_MS);

        // A beacon: `?key=` and `?sent_at=` (ms), `text/plain`.
        let l = label("beacon");
        let t = now_ms();
        let path = format!("/v1/events?key={key}&sent_at={}", self.clock(t));
        self.post(&path, &[("Content-Type", "text/plain".into())], |_| {
            json!({"type": "clock_test", "timestamp": rfc3339(self.clock(t) - AGE_MS),
                   "data": {"run": run, "label": l}})
            .to_string()
        });
        truth.insert(l, t - AGE_MS);
        truth
    }
}

/// Every stored row of `run`: label -> (event_time, occurred_at) in ms since the Unix epoch.
fn stored(stack: &Stack, run: &str) -> BTreeMap<String, (i64, Option<i64>)> {
    let out = stack
        .pg
        .psql(&format!(
            "select coalesce(json_agg(json_build_array(
                 coalesce(data->>'label', data->'properties'->>'label'),
                 round(extract(epoch from event_time) * 1000),
                 round(extract(epoch from occurred_at) * 1000))), '[]')
             from events where position('{run}' in data::text) > 0"
        ))
        .expect("psql");
    let rows: Vec<(String, Option<f64>, Option<f64>)> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out:.300}"));
    rows.into_iter()
        .map(|(label, event_time, occurred_at)| {
            let event_time = event_time.unwrap_or_else(|| panic!("{label}: no event_time"));
            (label, (event_time as i64, occurred_at.map(|t| t as i64)))
        })
        .collect()
}

#[test]
fn times_are_written_as_the_sdks_write_them() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(1_795_852_800_250), "2026-11-28T08:00:00.250Z");
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
}

#[test]
fn an_hour_fast_or_slow_client_clock_gives_event_times_within_a_second() {
    if !spillway_support::worker_built_for("event_time", BufferKind::Sqs) {
        return;
    }
    let stack = start("evtime", |c| c.buffer = BufferKind::Sqs);
    let run = format!("evtime-{}", uuid::Uuid::new_v4().simple());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let mut truth = BTreeMap::new();
    let mut skews = BTreeMap::new();
    for (who, skew_ms) in [("fast", 3_600_000), ("slow", -3_600_000)] {
        let client = Client {
            stack: &stack,
            agent: agent.clone(),
            skew_ms,
        };
        for (label, t) in client.send_all(&run, who) {
            skews.insert(label.clone(), skew_ms);
            truth.insert(label, t);
        }
    }
    let mut rows = BTreeMap::new();
    wait_until("every event stored", Duration::from_secs(90), || {
        rows = stored(&stack, &run);
        rows.len() >= truth.len()
    })
    .unwrap_or_else(|e| panic!("{e}: stored {rows:?}"));
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        truth.keys().collect::<Vec<_>>(),
        "one row per event"
    );
    for (label, (event_time, occurred_at)) in &rows {
        let want = truth[label];
        let off = event_time - want;
        eprintln!("[event_time] {label}: event_time is {off:+} ms from the truth");
        assert!(
            off.abs() <= 1_000,
            "{label}: event_time {event_time} is {off} ms from the true {want}"
        );
        // `occurred_at` stays the client's clock as sent (none for the offset-only event).
        match occurred_at {
            Some(o) => assert!(
                (o - (want + skews[label])).abs() <= 150,
                "{label}: occurred_at {o} is not the client's clock"
            ),
            None => assert!(label.ends_with("posthog-offset"), "{label}: no occurred_at"),
        }
    }
    // The raw values stay in `data` as the client wrote them.
    let raw: Value = serde_json::from_str(
        &stack
            .pg
            .psql(&format!(
                "select json_build_array(count(*) filter (where data ? 'sentAt'),
                                         count(*) filter (where data ? 'offset'))
                 from events where position('{run}' in data::text) > 0"
            ))
            .expect("psql"),
    )
    .expect("json");
    // analytics-node puts `sentAt` on the batch, not the message: none in `data`; each
    // offset-only PostHog event keeps its `offset`.
    assert_eq!(raw, json!([0, 2]));
}
