//! Spill: accepting through an outage of the buffer (SQS or Kinesis, whichever is configured).
//!
//! When the buffer does not acknowledge a request's events in time, the edge does not hand the
//! outage to the client: with a Cloudflare Queue bound as `SPILL_QUEUE`, the events it did not
//! take are written there instead ([`pack_spill`]: ids, key ids and receive times unchanged,
//! within the Queue's limits), and the client hears `202` once the Queue holds them. A
//! [`Breaker`] per isolate stops an outage from costing every request the whole deadline: after
//! repeated failures requests go straight to the spill for a short, growing interval, then one
//! request probes the buffer again. The Worker's queue consumer ([`replay`]) later sends the
//! spilled events on to it with the same ids, acknowledging each Queue message only once the
//! buffer holds its events; the consumer's `ON CONFLICT (id)` makes a double delivery harmless.
//!
//! Everything here is plain Rust over the ports, tested natively; the Queue binding and the
//! `#[event(queue)]` handler are thin adapters (`runtime/fetch.rs`, `runtime/replay.rs`). The
//! replay sends through the same buffer port ([`crate::buffer::Buffer`]) as a request does.

mod breaker;
mod pack;
mod replay;

pub use breaker::{Breaker, BreakerSettings, Path};
pub use pack::{
    decode_spill, pack_spill, SpillPackError, Spilled, BATCH_BYTES, BATCH_MESSAGES, MESSAGE_BYTES,
    MESSAGE_OVERHEAD_BYTES,
};
pub use replay::{replay, retry_delay, Disposition, ReplayReport};

use std::time::Duration;

/// Most of the deadline kept for the spill: a quarter of `SQS_DEADLINE_MS`, at most 2 s. With
/// a spill queue, SQS gets the rest, so a request that spills still answers within the deadline.
pub const SPILL_RESERVE_MAX: Duration = Duration::from_millis(2_000);

/// The part of `deadline` kept for the spill ([`SPILL_RESERVE_MAX`]).
pub fn spill_reserve(deadline: Duration) -> Duration {
    (deadline / 4).min(SPILL_RESERVE_MAX)
}

#[cfg(test)]
mod tests;
