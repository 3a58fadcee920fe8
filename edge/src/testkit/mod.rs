//! In-memory fakes of the I/O seams, for the native tests: this crate's unit tests, and its
//! integration tests and benches through the `testkit` feature (never part of the Worker).
//!
//! [`FakeQueue`] stands in for the buffer, [`FakeLimiter`] and [`FakeRuntime`] for the ports,
//! [`LocalBatcher`] for the group commits, [`FakeSpill`] for the spill queue; [`CannedSqs`] sits
//! one level lower, under the real SQS client, for tests of what goes on the wire.

mod batcher;
#[cfg(feature = "kinesis")]
mod kinesis;
mod spill;
mod sqs;

pub use batcher::{Link, LocalBatcher};
#[cfg(feature = "kinesis")]
pub use kinesis::{all_recorded, recorded_data, KINESIS_ENV, STREAM_ARN};
pub use spill::{FakeSpill, SpillMode};
#[cfg(feature = "sqs")]
pub use sqs::all_successful;
pub use sqs::{Answer, CannedSqs};

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use spillway_shared::{BufferCall, BufferEntry, Keyring, SigningKey, Unsigned};
use uuid::Uuid;

use crate::buffer::{Buffer, CallOutcome, FailedEntry, SendError};
use crate::ports::{RateLimit, RateLimitError, Runtime, Wake};

/// Virtual time on tokio's paused clock: sleeps complete when nothing else can make progress.
#[derive(Debug)]
pub struct FakeRuntime {
    start: tokio::time::Instant,
    counter: Cell<u64>,
    sleeps: RefCell<Vec<u64>>,
    /// Every timer fires this much late (an overloaded isolate).
    late_ms: u64,
}

impl FakeRuntime {
    /// 2026-11-28T08:00:00Z
    pub const START_MS: u64 = 1_795_852_800_000;

    pub fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            counter: Cell::new(0),
            sleeps: RefCell::new(Vec::new()),
            late_ms: 0,
        }
    }

    /// A runtime whose timers fire `ms` late, as in an isolate too busy to keep time.
    pub fn late_timers(mut self, ms: u64) -> Self {
        self.late_ms = ms;
        self
    }

    /// Completed sleeps, in milliseconds.
    pub fn sleeps(&self) -> Vec<u64> {
        self.sleeps.borrow().clone()
    }
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime for FakeRuntime {
    fn now_ms(&self) -> u64 {
        Self::START_MS + self.start.elapsed().as_millis() as u64
    }

    fn random_bytes(&self) -> [u8; 16] {
        // Deterministic, distinct, and spread over the whole range.
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&x.to_le_bytes());
        b[8..].copy_from_slice(&x.rotate_left(17).to_le_bytes());
        b
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration + Duration::from_millis(self.late_ms)).await;
        self.sleeps.borrow_mut().push(duration.as_millis() as u64);
    }

    fn wake_up(&self) -> (Wake, LocalBoxFuture<'static, ()>) {
        let (tx, rx) = futures_channel::oneshot::channel::<()>();
        (
            Wake::new(move || {
                let _ = tx.send(());
            }),
            Box::pin(async move {
                let _ = rx.await;
            }),
        )
    }
}

/// What the fake queue answers to one call.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The outcome as given: failures named by position in the call.
    Outcome(CallOutcome),
    /// The entries with these entry ids fail, wherever they are in the call (as SQS names
    /// them): a script that keeps failing the same entry on every resend.
    FailIds {
        ids: Vec<String>,
        retryable: bool,
        code: String,
    },
    Error(SendError),
    /// Never answers.
    Hang,
}

/// A scripted queue: answers calls with `script` in order, then with `fallback` (all acked).
#[derive(Debug)]
pub struct FakeQueue {
    script: RefCell<VecDeque<Reply>>,
    fallback: Reply,
    latency_ms: u64,
    yielding: bool,
    calls: RefCell<Vec<Vec<String>>>,
    event_ids: RefCell<Vec<Uuid>>,
    bodies: RefCell<Vec<String>>,
    groups: RefCell<Vec<String>>,
    in_flight: Cell<usize>,
    max_in_flight: Cell<usize>,
}

impl FakeQueue {
    pub fn new(script: Vec<Reply>) -> Self {
        Self {
            script: RefCell::new(script.into()),
            fallback: Reply::Outcome(CallOutcome::default()),
            latency_ms: 0,
            yielding: false,
            calls: RefCell::default(),
            event_ids: RefCell::default(),
            bodies: RefCell::default(),
            groups: RefCell::default(),
            in_flight: Cell::new(0),
            max_in_flight: Cell::new(0),
        }
    }

    pub fn always(reply: Reply) -> Self {
        Self {
            fallback: reply,
            ..Self::new(vec![])
        }
    }

    /// Each call takes this long (virtual time).
    pub fn with_latency_ms(mut self, ms: u64) -> Self {
        self.latency_ms = ms;
        self
    }

    /// Each call yields once before answering, so concurrent calls overlap.
    pub fn yielding(mut self) -> Self {
        self.yielding = true;
        self
    }

    /// Entry ids of each call, in call order.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.calls.borrow().clone()
    }

    /// Event ids of every entry sent, in call order.
    pub fn sent_event_ids(&self) -> Vec<Uuid> {
        self.event_ids.borrow().clone()
    }

    /// Message bodies of every entry sent.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.borrow().clone()
    }

    pub fn groups(&self) -> Vec<String> {
        self.groups.borrow().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.get()
    }
}

impl Buffer for FakeQueue {
    async fn send(&self, entries: &[BufferEntry], group: &str) -> Result<CallOutcome, SendError> {
        self.calls
            .borrow_mut()
            .push(entries.iter().map(|e| e.id.clone()).collect());
        self.event_ids
            .borrow_mut()
            .extend(entries.iter().flat_map(|e| e.event_ids.iter().copied()));
        self.bodies
            .borrow_mut()
            .extend(entries.iter().map(|e| e.body.clone()));
        self.groups.borrow_mut().push(group.to_owned());
        let reply = self
            .script
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| self.fallback.clone());
        self.in_flight.set(self.in_flight.get() + 1);
        self.max_in_flight
            .set(self.max_in_flight.get().max(self.in_flight.get()));
        if self.yielding {
            tokio::task::yield_now().await;
        }
        if self.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.latency_ms)).await;
        }
        self.in_flight.set(self.in_flight.get() - 1);
        match reply {
            Reply::Outcome(o) => Ok(o),
            Reply::FailIds {
                ids,
                retryable,
                code,
            } => Ok(CallOutcome {
                failed: entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| ids.contains(&e.id))
                    .map(|(position, _)| FailedEntry {
                        position,
                        retryable,
                        code: code.clone(),
                    })
                    .collect(),
            }),
            Reply::Error(e) => Err(e),
            Reply::Hang => std::future::pending().await,
        }
    }
}

/// A limiter that allows `budget` requests per key id, or is down.
#[derive(Debug)]
pub struct FakeLimiter {
    pub budget: Cell<u32>,
    pub down: bool,
    pub asked: RefCell<Vec<String>>,
}

impl FakeLimiter {
    pub fn new(budget: u32) -> Self {
        Self {
            budget: Cell::new(budget),
            down: false,
            asked: RefCell::default(),
        }
    }
}

impl RateLimit for FakeLimiter {
    async fn allow(&self, key_id: &str) -> Result<bool, RateLimitError> {
        self.asked.borrow_mut().push(key_id.to_owned());
        if self.down {
            return Err(RateLimitError("binding threw".into()));
        }
        let b = self.budget.get();
        if b == 0 {
            return Ok(false);
        }
        self.budget.set(b - 1);
        Ok(true)
    }
}

/// `ENVELOPE_KEYS` of the native tests: a test secret, never a deployment's.
pub const ENVELOPE_KEYS: &str = "edge-test:edge-test-envelope-secret-0123456789abcdef";

/// The key [`ENVELOPE_KEYS`] seals with.
pub fn envelope_key() -> SigningKey {
    spillway_shared::parse_keys(ENVELOPE_KEYS)
        .ok()
        .and_then(|keys| keys.into_iter().next())
        .unwrap_or_else(|| unreachable!("ENVELOPE_KEYS is valid"))
}

/// What the consumer would verify the edge's messages with.
pub fn envelope_keyring() -> Keyring {
    Keyring::new(vec![envelope_key()], Unsigned::Refuse)
}

/// Batches with the given entry counts; every entry holds one distinct event id.
pub fn batches_of(sizes: &[usize]) -> Vec<BufferCall> {
    let mut n = 0u128;
    sizes
        .iter()
        .map(|&size| BufferCall {
            entries: (0..size)
                .map(|_| {
                    n += 1;
                    BufferEntry {
                        id: format!("m{}", n - 1),
                        body: format!("{{\"n\":{n}}}"),
                        event_ids: vec![Uuid::from_u128(n)],
                    }
                })
                .collect(),
        })
        .collect()
}
