//! Packs events into calls to the durable buffer (SQS `SendMessageBatch`, Kinesis `PutRecords`),
//! within the buffer's limits as a value ([`BufferLimits`]); it knows no buffer's own numbers.
//!
//! Greedy and order-preserving: events fill an entry (a message) until the next would overflow
//! it, entries fill a call until the entry count or the byte cap would be exceeded. The result is
//! deterministic, so the same request always packs the same way (which FIFO deduplication ids
//! rely on).

use thiserror::Error;
use uuid::Uuid;

use crate::envelope::{encode_event_text, encode_message_sized, message_len};
use crate::event::Event;
use crate::ids::ID_NAMESPACE;
use crate::limits::BufferLimits;
use crate::seal::SigningKey;

/// One message of a `SendMessageBatch` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferEntry {
    /// The batch entry `Id`: `m<n>`, where n counts messages across the whole request, so it
    /// is unique within any batch and names the same message on every retry.
    pub id: String,
    /// The envelope.
    pub body: String,
    /// The events inside, in order.
    pub event_ids: Vec<Uuid>,
}

impl BufferEntry {
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

/// One call to the buffer: at most [`BufferLimits::entries_per_call`] entries, within the byte
/// cap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BufferCall {
    pub entries: Vec<BufferEntry>,
}

impl BufferCall {
    /// Sum of the entry bodies, which is what the buffer counts against its call limit.
    pub fn body_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.body.len()).sum()
    }
}

/// Why events could not be packed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PackError {
    /// One event, once enriched and encoded, does not fit in one entry.
    #[error("event {index} is {size} bytes once enriched and encoded for SQS; a message holds at most {max} bytes")]
    EventTooLarge {
        index: usize,
        size: usize,
        max: usize,
    },
    #[error("event {index} could not be encoded: {reason}")]
    Encode { index: usize, reason: String },
}

/// One event as it goes into a message body ([`encode_event`](crate::envelope::encode_event)),
/// with its id.
///
/// What the edge's batcher gathers from many requests: the packer needs nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    pub id: Uuid,
    pub text: String,
}

/// Encodes `events` for the buffer, refusing one that cannot fit in an entry under `limits`.
pub fn encode_events(
    events: &[Event],
    limits: &BufferLimits,
) -> Result<Vec<EncodedEvent>, PackError> {
    // The event limit applies to what the client sent (checked by validation, on the client's
    // bytes); here only the hard cap remains: an encoded event must fit in one entry.
    let event_cap = limits.bytes_per_entry.saturating_sub(message_len(0, 1));
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
        encoded.push(EncodedEvent {
            id: event.id,
            text: bytes,
        });
    }
    Ok(encoded)
}

/// Packs `events` into calls within `limits`, each entry sealed with `key`.
pub fn pack(
    events: &[Event],
    limits: &BufferLimits,
    key: &SigningKey,
) -> Result<Vec<BufferCall>, PackError> {
    Ok(pack_encoded(&encode_events(events, limits)?, limits, key))
}

/// Packs already encoded events (see [`encode_events`], which refuses the ones too large for a
/// entry) into calls, by the rules of [`pack`].
pub fn pack_encoded(
    encoded: &[EncodedEvent],
    limits: &BufferLimits,
    key: &SigningKey,
) -> Vec<BufferCall> {
    let (message_cap, batch_cap) = (limits.bytes_per_entry, limits.bytes_per_call);
    let mut batches: Vec<BufferCall> = Vec::new();
    let mut current = BufferCall::default();
    // The bytes of `current`'s messages as budgeted ([`message_len`], the longest key id), so
    // that the packer and [`CallBudget`] agree whichever key signs.
    let mut current_bytes = 0usize;
    let mut message_no = 0usize;
    let mut start = 0usize;
    while start < encoded.len() {
        // Grow the message [start, end) while it fits.
        let mut end = start + 1;
        let mut sum = encoded[start].text.len();
        while end < encoded.len()
            && message_len(sum + encoded[end].text.len(), end + 1 - start) <= message_cap
        {
            sum += encoded[end].text.len();
            end += 1;
        }
        let budget = message_len(sum, end - start);
        let body = encode_message_sized(
            encoded[start..end].iter().map(|e| e.text.as_str()),
            budget,
            key,
        );
        let event_ids: Vec<Uuid> = encoded[start..end].iter().map(|e| e.id).collect();
        let entry = BufferEntry {
            id: format!("m{message_no}"),
            body,
            event_ids,
        };
        message_no += 1;
        start = end;

        if current.entries.len() == limits.entries_per_call
            || (!current.entries.is_empty() && current_bytes + budget > batch_cap)
        {
            batches.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += budget;
        current.entries.push(entry);
    }
    if !current.entries.is_empty() {
        batches.push(current);
    }
    batches
}

/// Whether events, added one by one, still pack into a single call: the same rules as
/// [`pack_encoded`], kept incrementally (constant work per event), so a group commit can tell
/// when it is full without packing it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallBudget {
    entries_per_call: usize,
    message_cap: usize,
    batch_cap: usize,
    /// Messages closed so far, and the bytes of their bodies.
    closed: usize,
    closed_bytes: usize,
    /// The open message: encoded bytes of its events and how many.
    open_sum: usize,
    open_count: usize,
}

impl CallBudget {
    pub fn new(limits: &BufferLimits) -> Self {
        Self {
            entries_per_call: limits.entries_per_call,
            message_cap: limits.bytes_per_entry,
            batch_cap: limits.bytes_per_call,
            closed: 0,
            closed_bytes: 0,
            open_sum: 0,
            open_count: 0,
        }
    }

    /// Adds an event of `len` encoded bytes when the events so far and it still make one
    /// call; otherwise leaves `self` unchanged and returns `false`. The first event always
    /// fits ([`encode_events`] has refused any that cannot).
    pub fn add(&mut self, len: usize) -> bool {
        let mut next = *self;
        if next.open_count > 0
            && message_len(next.open_sum + len, next.open_count + 1) > next.message_cap
        {
            next.closed += 1;
            next.closed_bytes += message_len(next.open_sum, next.open_count);
            next.open_sum = 0;
            next.open_count = 0;
        }
        next.open_sum += len;
        next.open_count += 1;
        let messages = next.closed + 1;
        let bytes = next.closed_bytes + message_len(next.open_sum, next.open_count);
        if self.open_count > 0
            && (messages > next.entries_per_call || (messages > 1 && bytes > next.batch_cap))
        {
            return false;
        }
        *self = next;
        true
    }

    /// Whether no event was added yet.
    pub fn is_empty(&self) -> bool {
        self.open_count == 0
    }
}
