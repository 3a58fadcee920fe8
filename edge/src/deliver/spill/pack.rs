//! The spill's messages: a request's events as Cloudflare Queue messages, and back.
//!
//! One message is a JSON text of one key id's events, each with its id and its encoded text as
//! the edge would have sent it to SQS (`received_at`, `key_id` and the rest inside, unchanged):
//!
//! ```json
//! {"v":1,"key_id":"web","events":[{"id":"0193…","event":{…}},…]}
//! ```
//!
//! Messages are filled up to [`MESSAGE_BYTES`]; `sendBatch` calls up to [`BATCH_MESSAGES`]
//! messages and [`BATCH_BYTES`], counting [`MESSAGE_OVERHEAD_BYTES`] of Queue metadata per
//! message.

use serde::Deserialize;
use serde_json::value::RawValue;
use spillway_shared::EncodedEvent;
use thiserror::Error;
use uuid::Uuid;

/// Largest message body: Queues take 128 KB (1 KB = 1,000 bytes) per message, metadata
/// included; 1,000 bytes are left for it.
pub const MESSAGE_BYTES: usize = 127_000;
/// Most messages per `sendBatch` (the Queues limit).
pub const BATCH_MESSAGES: usize = 100;
/// Most bytes per `sendBatch`, bodies plus [`MESSAGE_OVERHEAD_BYTES`] each: Queues take
/// 256 KB; 6,000 bytes are left spare.
pub const BATCH_BYTES: usize = 250_000;
/// What one message is counted for besides its body (Queues count about 100 bytes of
/// metadata per message).
pub const MESSAGE_OVERHEAD_BYTES: usize = 128;

/// The format version written in every message.
const VERSION: u32 = 1;

/// Why a request's events cannot be spilled, or a message not read back.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpillPackError {
    /// One event alone does not fit in a Queue message.
    #[error("event {id} is {size} bytes encoded, more than a spill message holds")]
    EventTooLarge { id: Uuid, size: usize },
    /// The message is not a spill message of this version.
    #[error("not a spill message: {0}")]
    Malformed(String),
}

/// What a spill message holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spilled {
    /// The request's key id: the message group on a FIFO queue.
    pub key_id: String,
    pub events: Vec<EncodedEvent>,
}

/// `{"id":"<uuid>","event":` + text + `}`
const ENTRY_FIXED: usize = r#"{"id":""#.len() + 36 + r#"","event":"#.len() + 1;

fn prefix(key_id: &str) -> String {
    let key = serde_json::to_string(key_id).unwrap_or_else(|_| "\"\"".into());
    format!(r#"{{"v":{VERSION},"key_id":{key},"events":["#)
}

const SUFFIX: &str = "]}";

fn push_entry(out: &mut String, event: &EncodedEvent) {
    out.push_str(r#"{"id":""#);
    out.push_str(&event.id.hyphenated().to_string());
    out.push_str(r#"","event":"#);
    out.push_str(&event.text);
    out.push('}');
}

/// Packs `events` (all of one request, so of one key id) into `sendBatch` calls of messages.
/// Every event lands in exactly one message, in order.
pub fn pack_spill(
    events: &[EncodedEvent],
    key_id: &str,
) -> Result<Vec<Vec<String>>, SpillPackError> {
    let head = prefix(key_id);
    let empty = head.len() + SUFFIX.len();
    let mut messages: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut count = 0usize;
    for event in events {
        let entry = ENTRY_FIXED + event.text.len();
        if empty + entry > MESSAGE_BYTES {
            return Err(SpillPackError::EventTooLarge {
                id: event.id,
                size: event.text.len(),
            });
        }
        if count > 0 && current.len() + 1 + entry + SUFFIX.len() > MESSAGE_BYTES {
            current.push_str(SUFFIX);
            messages.push(std::mem::take(&mut current));
            count = 0;
        }
        if count == 0 {
            current.push_str(&head);
        } else {
            current.push(',');
        }
        push_entry(&mut current, event);
        count += 1;
    }
    if count > 0 {
        current.push_str(SUFFIX);
        messages.push(current);
    }

    let mut batches: Vec<Vec<String>> = Vec::new();
    let mut batch: Vec<String> = Vec::new();
    let mut bytes = 0usize;
    for message in messages {
        let cost = message.len() + MESSAGE_OVERHEAD_BYTES;
        if !batch.is_empty() && (batch.len() == BATCH_MESSAGES || bytes + cost > BATCH_BYTES) {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += cost;
        batch.push(message);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    Ok(batches)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    v: u32,
    key_id: String,
    #[serde(borrow)]
    events: Vec<WireEvent<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent<'a> {
    id: Uuid,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// Reads a spill message back: the key id, and each event's id and text exactly as written.
pub fn decode_spill(message: &str) -> Result<Spilled, SpillPackError> {
    let wire: Wire<'_> =
        serde_json::from_str(message).map_err(|e| SpillPackError::Malformed(e.to_string()))?;
    if wire.v != VERSION {
        return Err(SpillPackError::Malformed(format!(
            "version {} (this edge reads {VERSION})",
            wire.v
        )));
    }
    if wire.events.is_empty() {
        return Err(SpillPackError::Malformed("no events".into()));
    }
    Ok(Spilled {
        key_id: wire.key_id,
        events: wire
            .events
            .into_iter()
            .map(|e| EncodedEvent {
                id: e.id,
                text: e.event.get().to_owned(),
            })
            .collect(),
    })
}
