//! Replay: the Worker's queue consumer sends spilled events on to the buffer (SQS or Kinesis).
//!
//! A batch of Queue messages is decoded, its events grouped by key id (the message group on a
//! FIFO queue) and sent with the edge's own packer and retry policy, with the ids they were
//! accepted with. A message is acknowledged only once the buffer holds every one of its events;
//! the rest are retried by the Queue after [`retry_delay`], and after the Queue's `max_retries`
//! they go to its dead-letter queue. A message that cannot be read is retried the same way,
//! so it ends in the dead-letter queue too, never dropped. When one key id's send runs out of
//! time, the batch's other key ids wait for the next delivery rather than each waiting out the
//! deadline against an SQS that is down.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;
use spillway_shared::{pack_encoded, BufferLimits, EncodedEvent, SigningKey};
use uuid::Uuid;

use super::pack::decode_spill;
use crate::buffer::{send_all, Buffer};
use crate::config::RetryPolicy;
use crate::ports::Runtime;

/// What to do with one Queue message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// SQS holds all its events.
    Ack,
    /// Some are not in SQS yet (or it cannot be read): deliver it again later.
    Retry,
}

/// What one replay did, for its log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Queue messages in the batch.
    pub messages: usize,
    /// Events in the messages that could be read.
    pub events: usize,
    /// Events SQS acknowledged (those of acknowledged messages).
    pub replayed: usize,
    /// Messages left for the Queue to deliver again.
    pub retried: usize,
    /// Messages that are not spill messages (retried, so they end in the dead-letter queue).
    pub unreadable: usize,
    /// Calls made to the buffer, and of those resends.
    pub sqs_calls: u32,
    pub sqs_retries: u32,
    /// The last problem seen (SQS error codes, a decoding error), never a payload.
    pub last_error: Option<String>,
}

impl ReplayReport {
    /// The replay consumer's log line, one per batch of spill messages: `"kind":"replay"` and
    /// the counts (never a payload).
    pub fn log_line(&self, duration_ms: u64) -> String {
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
            messages: self.messages,
            events: self.events,
            replayed: self.replayed,
            retried: self.retried,
            unreadable: self.unreadable,
            sqs_calls: self.sqs_calls,
            retries: self.sqs_retries,
            duration_ms,
            queue_error: self.last_error.as_deref(),
        })
        .unwrap_or_else(|_| r#"{"kind":"replay"}"#.to_owned())
    }
}

/// Replays `messages` (each a message body, `None` when it is not text) through the same buffer
/// port as a request's own send, and says what to do with each, in order.
pub async fn replay<Q: Buffer, R: Runtime>(
    queue: &Q,
    rt: &R,
    messages: &[Option<String>],
    limits: &BufferLimits,
    key: &SigningKey,
    policy: &RetryPolicy,
) -> (Vec<Disposition>, ReplayReport) {
    let mut report = ReplayReport {
        messages: messages.len(),
        ..ReplayReport::default()
    };
    // Per message: its key id and event ids, or `None` when it cannot be read.
    let mut decoded: Vec<Option<(String, Vec<Uuid>)>> = Vec::with_capacity(messages.len());
    // Per key id, in order of first appearance: every event to send.
    let mut groups: Vec<(String, Vec<EncodedEvent>)> = Vec::new();
    for message in messages {
        let spilled = match message.as_deref().map(decode_spill) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                report.unreadable += 1;
                report.last_error = Some(e.to_string());
                decoded.push(None);
                continue;
            }
            None => {
                report.unreadable += 1;
                report.last_error = Some("not a spill message: the body is not text".into());
                decoded.push(None);
                continue;
            }
        };
        report.events += spilled.events.len();
        decoded.push(Some((
            spilled.key_id.clone(),
            spilled.events.iter().map(|e| e.id).collect(),
        )));
        match groups.iter_mut().find(|(k, _)| *k == spilled.key_id) {
            Some((_, events)) => events.extend(spilled.events),
            None => groups.push((spilled.key_id, spilled.events)),
        }
    }

    let mut unacknowledged: HashSet<Uuid> = HashSet::new();
    // Once one key id's send runs out of time, SQS is taken for down: the other key ids are
    // left for the next delivery instead of each waiting out the deadline in turn.
    let mut down = false;
    for (key_id, events) in &groups {
        if down {
            unacknowledged.extend(events.iter().map(|e| e.id));
            continue;
        }
        let sent = send_all(queue, rt, pack_encoded(events, limits, key), key_id, policy).await;
        report.sqs_calls += sent.calls;
        report.sqs_retries += sent.retries;
        if sent.last_error.is_some() {
            report.last_error = sent.last_error;
        }
        down = sent.timed_out;
        unacknowledged.extend(sent.unacknowledged);
    }

    let dispositions = decoded
        .iter()
        .map(|m| match m {
            Some((_, ids)) if ids.iter().all(|id| !unacknowledged.contains(id)) => {
                report.replayed += ids.len();
                Disposition::Ack
            }
            _ => {
                report.retried += 1;
                Disposition::Retry
            }
        })
        .collect();
    (dispositions, report)
}

/// Shortest wait before the Queue delivers a retried message again.
const RETRY_MIN: Duration = Duration::from_secs(2);
/// Longest wait between deliveries.
const RETRY_MAX: Duration = Duration::from_secs(600);

/// How long the Queue waits before delivering a retried message again, from how long ago it was
/// spilled: half its age, from 2 s to 10 min, so the waits grow by half each time an outage
/// goes on (2, 3, 4.5, ... s) and a long one costs a retry every 10 minutes. With the Queue's
/// `max_retries = 100` that covers about 14 hours of SQS outage.
pub fn retry_delay(age: Duration) -> Duration {
    (age / 2).clamp(RETRY_MIN, RETRY_MAX)
}
