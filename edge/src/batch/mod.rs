//! Group commit: single-event requests from many clients share one `SendMessageBatch`.
//!
//! A request whose events are small is not sent by the request itself. Its events (already
//! validated, given ids and encoded) go to a batcher, a Durable Object chosen by
//! [`batcher_name`]: near the request (its location) and one of `BATCH_SHARDS` (by a hash of
//! the request id). The batcher ([`Batcher`]) holds each request open, gathers the events of
//! every request that arrives within `BATCH_WINDOW_MS` of the first, or until one more would
//! not fit one `SendMessageBatch`, sends them together with the edge's own retry policy, and
//! answers each request with the fate of its own events ([`Verdict`]). Events keep their own
//! ids and key ids inside the shared messages; the consumer never learns which request an
//! event came from.
//!
//! Everything here is plain Rust over the ports, tested natively; the Durable Object and the
//! stub call are thin adapters (`adapter.rs`). When no batcher answers, the request path sends
//! directly, as without batching ([`crate::handler`]).

mod batcher;
mod wire;

pub use batcher::{Batcher, BatcherSettings};
pub use wire::{decode_submission, decode_verdict, encode_submission, encode_verdict, WireError};

use serde::{Deserialize, Serialize};
use spillway_shared::EncodedEvent;
use uuid::Uuid;

/// Requests whose encoded events reach this many bytes send directly: one such request alone
/// already fills a billed 64 KiB chunk, so sharing its `SendMessageBatch` saves nothing.
pub const DIRECT_FROM_BYTES: usize = 64 * 1024;

/// One request's events, handed to a batcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The message group of a FIFO queue (the request's `key_id`); other queues ignore it.
    pub group: String,
    /// How long, from its arrival at the batcher, the request may wait for SQS.
    pub wait_ms: u64,
    pub events: Vec<EncodedEvent>,
}

/// What became of one request's events in the batch that carried them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The request's events SQS did not acknowledge, in request order. Empty means success.
    pub unacknowledged: Vec<Uuid>,
    /// Some of them failed in a way retrying cannot fix.
    pub rejected: bool,
    /// The deadline passed with some of them unacknowledged.
    pub timed_out: bool,
    /// The last SQS error of the batch, for the log.
    pub last_error: Option<String>,
    /// The batch: how many requests and events shared it, and its `SendMessageBatch` calls.
    pub requests: u32,
    pub events: u32,
    pub calls: u32,
    pub retries: u32,
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
