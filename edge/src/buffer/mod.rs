//! The durable buffer, as the request path sees it: the port ([`Buffer`]: one call's entries
//! in, an outcome per position out), the limits of one call (a value,
//! [`spillway_shared::BufferLimits`], which the packer and the group commit's "full" take), the
//! retry loop over many calls ([`send_all`]), and the implementations, each behind its cargo
//! feature: SQS (`sqs`, feature `sqs`) and Kinesis Data Streams (`kinesis`, feature `kinesis`),
//! both over the fetch [`connector`], and [`Configured`], the one the configuration names.
//!
//! Nothing above this module knows what a buffer calls its entries or how it names failures:
//! SQS answers by entry id, and `sqs` maps those ids back to positions in the call; Kinesis
//! answers by position. It does not decide where a request's events go when the buffer fails
//! them (that is `deliver`, above it).
#![allow(async_fn_in_trait)]

pub mod classify;
mod configured;
pub mod connector;
#[cfg(feature = "kinesis")]
pub mod kinesis;
mod retry;
#[cfg(feature = "sqs")]
pub mod sqs;

pub use configured::Configured;
pub use retry::{backoff, send_all, SendReport, Shared};

use spillway_shared::BufferEntry;
use thiserror::Error;

/// What the buffer said about one call that it answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOutcome {
    /// Entries the buffer did not take. Every entry of the call that is not listed here was
    /// acknowledged.
    pub failed: Vec<FailedEntry>,
}

/// One entry the buffer refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    /// Where the entry was in the call (0-based), which is how every buffer can name it.
    pub position: usize,
    /// `false` when sending the same entry again cannot succeed (the buffer blames the sender).
    pub retryable: bool,
    /// The buffer's error code, for the log.
    pub code: String,
}

/// A call that got no usable answer at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// Worth another try: connection failures, timeouts, 5xx, throttling (Kinesis: also
    /// throughput exceeded, and an answer that does not name every record).
    #[error("transient queue error: {0}")]
    Transient(String),
    /// Will fail again the same way: access denied, no such queue or stream, malformed request.
    #[error("permanent queue error: {0}")]
    Permanent(String),
}

impl SendError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Transient(_))
    }
}

/// The buffer: one call.
///
/// `async fn` deliberately carries no `Send` bound: a Worker isolate is single-threaded and its
/// JS-backed futures are not `Send`.
pub trait Buffer {
    /// Sends `entries` (within the buffer's [`BufferLimits`](spillway_shared::BufferLimits)) as
    /// one call. `group` is the ingest key id of the entries' events (on every path: direct,
    /// group commit, spill replay), which orders them where the buffer can: the message group
    /// of a FIFO queue, the partition key with `KINESIS_PARTITION_KEY=key_id`. Buffers without
    /// ordering ignore it.
    async fn send(&self, entries: &[BufferEntry], group: &str) -> Result<CallOutcome, SendError>;
}
