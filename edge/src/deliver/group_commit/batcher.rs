//! The batcher itself: pending batches, when they are sent, and who hears what.
//!
//! One pending batch per message group (one in all for standard queues). The request that
//! opens a batch leads it: it waits `window` (never past the earliest deadline among the
//! batch's requests), or until a later request finds the batch full and seals it, then sends
//! it and answers every request of it. Every other request only waits for its answer. All of
//! it runs on one thread (a Durable Object, or a test's runtime): the shared state is a
//! `RefCell`, never borrowed across an `await`.
//!
//! It also keeps what its flushes carried and how long it was active ([`FlushStats`]): each
//! answer carries that advice ([`Batcher::answer`]), and each flush's leader gets a
//! [`FlushLog`] for the Durable Object to log (what the bench bills Durable Object duration
//! from). Active means at least one request is inside the batcher: the wall time a Durable
//! Object is billed for, less the runtime's own time around a request.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::future::{join_all, select};
use spillway_shared::{pack_encoded, BufferLimits, CallBudget, EncodedEvent, SigningKey};
use uuid::Uuid;

use super::advice::FlushStats;
use super::wire::Answer;
use super::Submission;
use crate::buffer::{send_all, Buffer, SendReport, Shared};
use crate::config::{Config, RetryPolicy};
use crate::ports::Runtime;

/// What a batcher is configured with: the edge's own settings.
#[derive(Debug, Clone)]
pub struct BatcherSettings {
    /// How long the first event of a batch waits for company (`BATCH_WINDOW_MS`).
    pub window: Duration,
    /// The buffer's limits: a batch is full when one more event would need a second call.
    pub limits: BufferLimits,
    /// Retries and concurrency of the sends (the deadline comes from each request).
    pub retry: RetryPolicy,
    /// Whether the buffer orders by group (a FIFO queue; Kinesis keyed by `key_id`): then each
    /// group (ingest key id) is batched on its own, so a call carries one group.
    pub by_group: bool,
    /// Seals every message ([`spillway_shared::seal`]).
    pub envelope_key: SigningKey,
}

impl BatcherSettings {
    /// The edge's settings for its batchers: the one place they are read from the
    /// configuration (the Durable Object and the tests' local batcher both use it).
    pub fn from_config(config: &Config) -> Self {
        Self {
            window: config.group_commit.window,
            limits: config.buffer,
            retry: config.retry,
            by_group: config.target.orders_by_group(),
            envelope_key: config.envelope_key.clone(),
        }
    }
}

/// Gathers submissions into shared calls to the buffer.
#[derive(Debug)]
pub struct Batcher<Q, R> {
    queue: Q,
    rt: R,
    settings: BatcherSettings,
    open: RefCell<HashMap<String, Rc<Pending>>>,
    stats: RefCell<FlushStats>,
    activity: RefCell<Activity>,
    /// Numbers the Durable Object requests ([`Batcher::answer_all`]): a flush counts the
    /// distinct ones that carried its requests.
    calls: std::cell::Cell<u64>,
}

/// One flush, as the Durable Object logs it: `{"kind":"batch",...}` in the edge's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushLog {
    /// Client requests whose events the flush carried.
    pub requests: u32,
    /// Durable Object requests that carried them (what Cloudflare bills): fewer than
    /// `requests` where isolates gathered their requests ([`super::Gatherer`]).
    pub calls: u32,
    pub events: u32,
    /// Milliseconds the batcher was active since the previous flush's log (so the sum over a
    /// run is its active time, but for the answers after the last flush).
    pub active_ms: u64,
}

impl FlushLog {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "kind": "batch",
            "requests": self.requests,
            "calls": self.calls,
            "events": self.events,
            "active_ms": self.active_ms,
        })
        .to_string()
    }
}

/// What [`Batcher::answer`] gives the Durable Object: the request's answer, and the flush it
/// led, if it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub answer: Answer,
    pub flush: Option<FlushLog>,
}

/// The batcher's active wall time: while at least one request is inside it.
#[derive(Debug, Default)]
struct Activity {
    inside: u32,
    /// Since when the time not yet accrued runs (while `inside > 0`).
    since: u64,
    accrued: u64,
}

impl Activity {
    fn enter(&mut self, now: u64) {
        if self.inside == 0 {
            self.since = now;
        }
        self.inside += 1;
    }

    fn leave(&mut self, now: u64) {
        self.inside = self.inside.saturating_sub(1);
        if self.inside == 0 {
            self.accrued += now.saturating_sub(self.since);
        }
    }

    /// The active time since the last call.
    fn take(&mut self, now: u64) -> u64 {
        if self.inside > 0 {
            self.accrued += now.saturating_sub(self.since);
            self.since = now;
        }
        std::mem::take(&mut self.accrued)
    }
}

/// Leaves the activity when the request's future ends, answered or dropped (its caller gone).
struct Inside<'a, R: Runtime> {
    activity: &'a RefCell<Activity>,
    rt: &'a R,
}

impl<R: Runtime> Drop for Inside<'_, R> {
    fn drop(&mut self) {
        self.activity.borrow_mut().leave(self.rt.now_ms());
    }
}

/// Pending once (waking itself at once), then ready: lets the futures polled beside this one
/// (the other submissions of a bundle, [`Batcher::answer_all`]) run first, on any executor.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// A batch still taking events, or sealed and about to be sent by its leader.
#[derive(Debug)]
struct Pending {
    inner: RefCell<Gathered>,
}

#[derive(Debug)]
struct Gathered {
    fill: CallBudget,
    /// The earliest deadline (runtime ms) of the requests in the batch.
    deadline_at: u64,
    events: Vec<EncodedEvent>,
    waiters: Vec<Waiter>,
    /// The Durable Object requests its waiters came in.
    calls: HashSet<u64>,
    /// Wakes the leader early: the batch is full.
    seal: Option<oneshot::Sender<()>>,
}

#[derive(Debug)]
struct Waiter {
    ids: Vec<Uuid>,
    answer: oneshot::Sender<SendReport>,
}

impl Gathered {
    /// Adds `events` when they all still fit one request; otherwise leaves the batch as it was.
    fn join(&mut self, events: &mut Vec<EncodedEvent>) -> bool {
        let mut fill = self.fill;
        if !events.iter().all(|e| fill.add(e.text.len())) {
            return false;
        }
        self.fill = fill;
        self.events.append(events);
        true
    }
}

impl<Q: Buffer, R: Runtime> Batcher<Q, R> {
    pub fn new(queue: Q, rt: R, settings: BatcherSettings) -> Self {
        Self {
            queue,
            rt,
            settings,
            open: RefCell::default(),
            stats: RefCell::default(),
            activity: RefCell::default(),
            calls: std::cell::Cell::new(0),
        }
    }

    /// The submissions of one Durable Object request (one, or a bundle an isolate gathered),
    /// each answered as [`Batcher::answer`] would, in their order; and the flushes they led.
    pub async fn answer_all(&self, submissions: Vec<Submission>) -> (Vec<Answer>, Vec<FlushLog>) {
        let call = self.calls.get().wrapping_add(1);
        self.calls.set(call);
        let runs = submissions.into_iter().map(|s| self.run(s, call));
        let mut answers = Vec::new();
        let mut flushes = Vec::new();
        for (report, flush) in join_all(runs).await {
            answers.push(Answer {
                report,
                advice: Some(
                    self.stats
                        .borrow()
                        .advice(self.rt.now_ms(), self.settings.window),
                ),
            });
            flushes.extend(flush);
        }
        (answers, flushes)
    }

    /// [`Batcher::submit`], with the advice for the request's isolate and, for the request
    /// that led the flush, what the flush was.
    pub async fn answer(&self, submission: Submission) -> Answered {
        let call = self.calls.get().wrapping_add(1);
        self.calls.set(call);
        let (report, flush) = self.run(submission, call).await;
        let advice = self
            .stats
            .borrow()
            .advice(self.rt.now_ms(), self.settings.window);
        Answered {
            answer: Answer {
                report,
                advice: Some(advice),
            },
            flush,
        }
    }

    /// The queue it sends to (tests look at what was sent).
    pub fn queue(&self) -> &Q {
        &self.queue
    }

    /// The runtime it waits on.
    pub fn runtime(&self) -> &R {
        &self.rt
    }

    /// Adds a request's events to the pending batch and answers once the buffer has answered
    /// for them (or the request's wait is over).
    pub async fn submit(&self, submission: Submission) -> SendReport {
        self.answer(submission).await.answer.report
    }

    /// One submission, which came in Durable Object request `call`.
    async fn run(&self, submission: Submission, call: u64) -> (SendReport, Option<FlushLog>) {
        let Submission {
            group,
            wait_ms,
            direct,
            waited_ms,
            mut events,
        } = submission;
        let now = self.rt.now_ms();
        self.activity.borrow_mut().enter(now);
        let _inside = Inside {
            activity: &self.activity,
            rt: &self.rt,
        };
        self.stats.borrow_mut().arrived(now, direct);
        let deadline_at = now.saturating_add(wait_ms);
        let key = if self.settings.by_group {
            group
        } else {
            String::new()
        };
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let (answer, answered) = oneshot::channel();
        let waiter = Waiter {
            ids: ids.clone(),
            answer,
        };

        let lead = {
            let mut open = self.open.borrow_mut();
            let joined = match open.get(&key) {
                Some(pending) => {
                    let mut g = pending.inner.borrow_mut();
                    if g.join(&mut events) {
                        g.deadline_at = g.deadline_at.min(deadline_at);
                        g.waiters.push(waiter);
                        g.calls.insert(call);
                        None
                    } else {
                        // Full: its leader sends it now; this request opens the next batch.
                        if let Some(seal) = g.seal.take() {
                            let _ = seal.send(());
                        }
                        Some(waiter)
                    }
                }
                None => Some(waiter),
            };
            match joined {
                None => None,
                Some(waiter) => {
                    let mut fill = CallBudget::new(&self.settings.limits);
                    // A request too big for one call alone is sent at once, on its own.
                    let alone = !events.iter().all(|e| fill.add(e.text.len()));
                    let (seal, sealed) = oneshot::channel();
                    let pending = Rc::new(Pending {
                        inner: RefCell::new(Gathered {
                            fill,
                            deadline_at,
                            events,
                            waiters: vec![waiter],
                            calls: HashSet::from([call]),
                            seal: Some(seal),
                        }),
                    });
                    if alone {
                        open.remove(&key);
                    } else {
                        open.insert(key.clone(), pending.clone());
                    }
                    Some((pending, sealed, alone))
                }
            }
        };

        let mut flush = None;
        if let Some((pending, sealed, alone)) = lead {
            if !alone {
                // What the request already waited in its isolate, gathering, counts against the
                // window: no request waits more than one window in all.
                let wait = self
                    .settings
                    .window
                    .saturating_sub(Duration::from_millis(waited_ms))
                    .min(Duration::from_millis(deadline_at.saturating_sub(now)));
                // Either the window passes or the batch is sealed (or dropped) early. With no
                // window left (the isolate gathered it all), still let the rest of the same
                // bundle, polled beside this one, join before the batch goes.
                if wait.is_zero() {
                    YieldOnce(false).await;
                } else {
                    select(Box::pin(self.rt.sleep(wait)), sealed).await;
                }
                let mut open = self.open.borrow_mut();
                if open.get(&key).is_some_and(|p| Rc::ptr_eq(p, &pending)) {
                    open.remove(&key);
                }
            }
            flush = Some(self.send(&pending, &key).await);
        }
        let report = answered.await.unwrap_or_else(|_| SendReport {
            unacknowledged: ids,
            last_error: Some("the batch was dropped before it was sent".into()),
            ..SendReport::default()
        });
        (report, flush)
    }

    /// Sends a sealed batch and answers each of its requests with the fate of its own events;
    /// notes the flush in the stats and returns it.
    async fn send(&self, pending: &Pending, group: &str) -> FlushLog {
        let (events, waiters, deadline_at, calls) = {
            let mut g = pending.inner.borrow_mut();
            (
                std::mem::take(&mut g.events),
                std::mem::take(&mut g.waiters),
                g.deadline_at,
                std::mem::take(&mut g.calls),
            )
        };
        let remaining = deadline_at.saturating_sub(self.rt.now_ms());
        let report = if remaining == 0 {
            SendReport {
                unacknowledged: events.iter().map(|e| e.id).collect(),
                timed_out: true,
                ..SendReport::default()
            }
        } else {
            let policy = RetryPolicy {
                deadline: Duration::from_millis(remaining),
                ..self.settings.retry
            };
            let batches = pack_encoded(&events, &self.settings.limits, &self.settings.envelope_key);
            send_all(&self.queue, &self.rt, batches, group, &policy).await
        };
        let unacknowledged: HashSet<Uuid> = report.unacknowledged.iter().copied().collect();
        let shared = Shared {
            requests: u32::try_from(waiters.len()).unwrap_or(u32::MAX),
            events: u32::try_from(events.len()).unwrap_or(u32::MAX),
        };
        let flush = FlushLog {
            requests: shared.requests,
            calls: u32::try_from(calls.len()).unwrap_or(u32::MAX),
            events: shared.events,
            active_ms: self.activity.borrow_mut().take(self.rt.now_ms()),
        };
        self.stats
            .borrow_mut()
            .flushed(flush.requests, flush.calls, flush.active_ms);
        for waiter in waiters {
            let mine: Vec<Uuid> = waiter
                .ids
                .iter()
                .copied()
                .filter(|id| unacknowledged.contains(id))
                .collect();
            let failed = !mine.is_empty();
            // The request may have gone (its client left): nobody to tell.
            let _ = waiter.answer.send(SendReport {
                unacknowledged: mine,
                rejected: failed && report.rejected,
                timed_out: failed && report.timed_out,
                last_error: report.last_error.clone(),
                shared,
                calls: report.calls,
                retries: report.retries,
            });
        }
        flush
    }
}
