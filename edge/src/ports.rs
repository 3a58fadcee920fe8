//! The I/O seams of the request path besides the buffer (`buffer`): the group commit's
//! link, the spill queue, the rate limiter, the request body, and the runtime's clock,
//! randomness and timers. The Worker implements them over the Workers runtime; tests implement
//! them in memory.
//!
//! `async fn` in these traits deliberately carries no `Send` bound: a Worker isolate is
//! single-threaded and its JS-backed futures are not `Send`.
#![allow(async_fn_in_trait)]

use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use thiserror::Error;

/// The group commit could not be asked, or gave no usable answer: the request then sends
/// directly.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("batcher unavailable: {0}")]
pub struct BatcherError(pub String);

/// The way to the group commits (Durable Objects in the Worker, an in-process batcher in tests).
/// Object-safe, so the request path takes it as `&dyn` whatever the runtime.
pub trait BatcherLink: std::fmt::Debug {
    /// Hands `submission` (`deliver::group_commit::encode_submission`) to the batcher called
    /// `name` and returns the body of its answer.
    fn submit<'a>(
        &'a self,
        name: &'a str,
        submission: Vec<u8>,
    ) -> LocalBoxFuture<'a, Result<Vec<u8>, BatcherError>>;
}

/// The spill queue did not take a `sendBatch`: the request then answers `503` as without it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("spill queue unavailable: {0}")]
pub struct SpillError(pub String);

/// The spill queue (a Cloudflare Queue bound as `SPILL_QUEUE` in the Worker, a fake in tests),
/// taking the messages of `deliver::spill::pack_spill`. Object-safe, like [`BatcherLink`].
pub trait SpillQueue: std::fmt::Debug {
    /// Sends `messages` (text bodies, within the limits `pack_spill` keeps) in one `sendBatch`;
    /// `Ok` once the Queue has them.
    fn send_batch<'a>(
        &'a self,
        messages: &'a [String],
    ) -> LocalBoxFuture<'a, Result<(), SpillError>>;
}

/// The rate limiter could not be asked; the edge then lets the request through.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("rate limiter unavailable: {0}")]
pub struct RateLimitError(pub String);

/// Per-`key_id` request budget (Cloudflare's rate-limiting binding).
pub trait RateLimit {
    /// `true` when `key_id` may make another request now.
    async fn allow(&self, key_id: &str) -> Result<bool, RateLimitError>;
}

/// No rate limiting (the binding is not configured).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl RateLimit for Unlimited {
    async fn allow(&self, _key_id: &str) -> Result<bool, RateLimitError> {
        Ok(true)
    }
}

/// Reading the request body failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BodyError {
    /// More bytes than the cap: reading stopped there.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("could not read the body: {0}")]
    Read(String),
}

/// The request body as the runtime delivers it: chunk by chunk.
pub trait BodySource {
    /// The next chunk; `None` at the end of the body.
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, String>>;

    /// Called once the body is refused for its size, with the rest unread. The Worker reads and
    /// drops a bounded rest there (see its adapter); the default does nothing.
    async fn abandon(&mut self) {}
}

/// Reads the whole body, refusing it as soon as it passes `cap`, so an oversized body is never
/// buffered whole. The one place the body cap is applied.
pub async fn read_capped<B: BodySource>(mut body: B, cap: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next_chunk().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        if out.len() + chunk.len() > cap {
            body.abandon().await;
            return Err(BodyError::TooLarge(cap));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A body held in memory (tests, benches): one chunk.
impl BodySource for Vec<u8> {
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, String>> {
        if self.is_empty() {
            None
        } else {
            Some(Ok(std::mem::take(self)))
        }
    }
}

impl BodySource for &[u8] {
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, String>> {
        if self.is_empty() {
            None
        } else {
            Some(Ok(std::mem::take(self).to_vec()))
        }
    }
}

/// Time, randomness and timers, passed in so the core never reads them itself.
pub trait Runtime {
    /// Wall clock, milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Fresh random bytes (ids, backoff jitter).
    fn random_bytes(&self) -> [u8; 16];
    /// Waits for `duration`.
    async fn sleep(&self, duration: Duration);
    /// A wake-up that one request of the isolate gives another: the [`Wake`] may be called (or
    /// dropped, which wakes all the same) from any request, and the future, awaited by the
    /// request that asked for the pair, then resumes in that request's own context. On Workers
    /// this is what lets requests hand each other plain values: a request whose Rust future is
    /// woken directly by another's would resume in the other's context, where the runtime refuses
    /// its I/O ("Cannot perform I/O on behalf of a different request").
    fn wake_up(&self) -> (Wake, LocalBoxFuture<'static, ()>);
}

/// The calling side of [`Runtime::wake_up`]: wakes its future once, when called or dropped.
pub struct Wake(Option<Box<dyn FnOnce()>>);

impl Wake {
    pub fn new(wake: impl FnOnce() + 'static) -> Self {
        Self(Some(Box::new(wake)))
    }

    /// Wakes the future now (dropping does the same).
    pub fn wake(mut self) {
        if let Some(wake) = self.0.take() {
            wake();
        }
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        if let Some(wake) = self.0.take() {
            wake();
        }
    }
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wake")
    }
}
