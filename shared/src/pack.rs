//! Packs events into SQS `SendMessageBatch` requests.
//!
//! Greedy and order-preserving: events fill a message until the next would overflow it, messages
//! fill a batch request until the entry count or the byte cap would be exceeded. The result is
//! deterministic, so the same request always packs the same way (which FIFO deduplication ids
//! rely on).

use thiserror::Error;
use uuid::Uuid;

use crate::envelope::{encode_event_text, encode_message_sized, message_len};
use crate::event::Event;
use crate::ids::ID_NAMESPACE;
use crate::limits::{Limits, SQS_MAX_BATCH_ENTRIES, SQS_MAX_MESSAGE_BYTES};

/// One message of a `SendMessageBatch` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    /// The batch entry `Id`: `m<n>`, where n counts messages across the whole request, so it
    /// is unique within any batch and names the same message on every retry.
    pub id: String,
    /// The envelope.
    pub body: String,
    /// The events inside, in order.
    pub event_ids: Vec<Uuid>,
}

impl BatchEntry {
    /// Stable `MessageDeduplicationId` for FIFO queues: a v5 UUID of the event ids. Made only
    /// when asked (FIFO queues), not for every message.
    pub fn dedup_id(&self) -> String {
        let mut name = Vec::with_capacity(self.event_ids.len() * 16);
        for id in &self.event_ids {
            name.extend_from_slice(id.as_bytes());
        }
        Uuid::new_v5(&ID_NAMESPACE, &name).to_string()
    }
}

/// One `SendMessageBatch` request: at most 10 entries, within the byte cap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchRequest {
    pub entries: Vec<BatchEntry>,
}

impl BatchRequest {
    /// Sum of the entry bodies, which is what SQS counts against its request limit.
    pub fn body_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.body.len()).sum()
    }
}

/// Why events could not be packed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PackError {
    /// One event, once enriched and encoded, does not fit in one SQS message.
    #[error("event {index} is {size} bytes once enriched and encoded for SQS; a message holds at most {max} bytes")]
    EventTooLarge {
        index: usize,
        size: usize,
        max: usize,
    },
    #[error("event {index} could not be encoded: {reason}")]
    Encode { index: usize, reason: String },
}

/// Packs `events` into batch requests within `limits` (and always within SQS's own limits).
pub fn pack(events: &[Event], limits: &Limits) -> Result<Vec<BatchRequest>, PackError> {
    let message_cap = limits.max_message_bytes.min(SQS_MAX_MESSAGE_BYTES);
    let batch_cap = limits.max_batch_bytes.min(SQS_MAX_MESSAGE_BYTES);
    // The event limit applies to what the client sent (checked by validation, on the client's
    // bytes); here only the hard cap remains: an encoded event must fit in one message.
    let event_cap = message_cap.saturating_sub(message_len(0, 1));

    let mut encoded = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let bytes = encode_event_text(event).map_err(|e| PackError::Encode {
            index,
            reason: e.to_string(),
        })?;
        if bytes.len() > event_cap {
            return Err(PackError::EventTooLarge {
                index,
                size: bytes.len(),
                max: event_cap,
            });
        }
        encoded.push(bytes);
    }

    let mut batches: Vec<BatchRequest> = Vec::new();
    let mut current = BatchRequest::default();
    let mut message_no = 0usize;
    let mut start = 0usize;
    while start < encoded.len() {
        // Grow the message [start, end) while it fits.
        let mut end = start + 1;
        let mut sum = encoded[start].len();
        while end < encoded.len()
            && message_len(sum + encoded[end].len(), end + 1 - start) <= message_cap
        {
            sum += encoded[end].len();
            end += 1;
        }
        let body = encode_message_sized(&encoded[start..end], message_len(sum, end - start));
        let event_ids: Vec<Uuid> = events[start..end].iter().map(|e| e.id).collect();
        let entry = BatchEntry {
            id: format!("m{message_no}"),
            body,
            event_ids,
        };
        message_no += 1;
        start = end;

        if current.entries.len() == SQS_MAX_BATCH_ENTRIES
            || (!current.entries.is_empty() && current.body_bytes() + entry.body.len() > batch_cap)
        {
            batches.push(std::mem::take(&mut current));
        }
        current.entries.push(entry);
    }
    if !current.entries.is_empty() {
        batches.push(current);
    }
    Ok(batches)
}
