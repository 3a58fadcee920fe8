//! Group commit: single-event requests from many clients share one call to the buffer.
//!
//! A request whose events are small is not sent by the request itself. Its events (already
//! validated, given ids and encoded) go to a batcher, a Durable Object chosen by
//! [`batcher_name`]: near the request (its location) and one of its shards there (by a hash
//! of the request id; as many shards as the traffic needs, between `BATCH_SHARDS` and
//! `BATCH_MAX_SHARDS`, [`advice`]). The batcher ([`Batcher`]) holds each request open, gathers the events of
//! every request that arrives within `BATCH_WINDOW_MS` of the first, or until one more would
//! not fit one call ([`spillway_shared::CallBudget`]), sends them together with the edge's own
//! retry policy, and answers each request with the fate of its own events (a
//! [`SendReport`](crate::buffer::SendReport)). Events keep their own ids and key ids inside the
//! shared messages; the consumer never learns which request an event came from.
//!
//! Group commit costs a Durable Object request per request and the batcher's active time, so
//! it pays only where flushes carry enough requests: each answer carries the batcher's advice
//! (requests per flush, arrival rate, active time), and each isolate sends directly while
//! batching would cost more than it saves, probing now and then ([`advice`], with the
//! break-even derived from the prices).
//!
//! Everything here is plain Rust over the ports, tested natively; the Durable Object and the
//! stub call are thin adapters (`runtime/group_commit_object.rs`). When no batcher answers, the
//! request sends directly, as without group commit (`deliver`).
//!
//! Before a request asks a batcher, its isolate gathers its own concurrent requests for the
//! same batcher ([`Gatherer`]): one Durable Object request then carries several client requests
//! (the batcher's flush log counts both, [`FlushLog`]), which is what makes group commit
//! cheaper than a Durable Object request per client request at high rates.

pub mod advice;
mod batcher;
mod gather;
mod wire;

pub use advice::{gather_for, Advice, Advisor, AdvisorSettings, Route};
pub use batcher::{Answered, Batcher, BatcherSettings, FlushLog};
pub use gather::{Gatherer, GATHER_MAX_BYTES, GATHER_MAX_REQUESTS};
pub use wire::{
    decode_answer, decode_answers, decode_bundle, decode_report, decode_submission, encode_answer,
    encode_answers, encode_bundle, encode_report, encode_submission, encode_submission_reporting,
    Answer, WireError,
};

use spillway_shared::EncodedEvent;

/// Only requests whose encoded events stay below this many bytes go through a group commit; the
/// others send directly: one such request alone already fills a billed 64 KiB chunk, so
/// sharing its `SendMessageBatch` saves nothing.
pub const GROUP_COMMIT_BELOW_BYTES: usize = 64 * 1024;

/// One request's events, handed to a batcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The message group of a FIFO queue (the request's `key_id`); other queues ignore it.
    pub group: String,
    /// How long, from its arrival at the batcher, the request may wait for SQS.
    pub wait_ms: u64,
    /// Small requests its isolate sent directly since its last submission ([`advice`]).
    pub direct: u32,
    /// How long the request already waited in its isolate for others to gather with
    /// ([`Gatherer`]): a batch it opens waits that much less than the window.
    pub waited_ms: u64,
    pub events: Vec<EncodedEvent>,
}

/// The Durable Object name of the batcher for a request: its location (`cf.colo`; `local`
/// when the runtime does not say) and its shard. A Durable Object lives where it was first
/// used, so a batcher per location stays next to the traffic it batches.
pub fn batcher_name(colo: Option<&str>, request_id: &str, shards: u32) -> String {
    let shard = fnv1a(request_id.as_bytes()) % u64::from(shards.max(1));
    format!("{}/{shard}", colo.unwrap_or("local"))
}

/// FNV-1a, 64 bit: a stable hash (the same request id always picks the same shard).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
