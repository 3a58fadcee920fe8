//! Delivery: a request's way to the buffer. Its events go directly (one request's own calls,
//! [`crate::buffer::send_all`]), through a group commit shared with other requests
//! ([`group_commit`]), or, when the buffer does not take them in time and the Worker has a spill
//! queue, into the spill ([`spill`]). `202` follows only from here.
//!
//! It takes only what it needs ([`Delivery`]) and returns what happened ([`DeliveryReport`]);
//! the request path turns that into its answer and its log line. It does not parse, validate or
//! answer a request, and knows the buffer only through its port.

pub mod group_commit;
pub mod spill;

use std::cell::RefCell;
use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::{select, Either};
use spillway_shared::{pack_encoded, EncodedEvent};
use uuid::Uuid;

use crate::buffer::{send_all, Buffer, SendReport, Shared};
use crate::config::{Config, RetryPolicy};
use crate::ports::{BatcherLink, Runtime, SpillQueue};
use group_commit::{batcher_name, Advisor, Gatherer, Route, Submission, GROUP_COMMIT_BELOW_BYTES};
use spill::{pack_spill, spill_reserve, Breaker, Path};

/// The way to the spill ([`spill`]).
#[derive(Debug, Clone, Copy)]
pub struct Spill<'a> {
    pub queue: &'a dyn SpillQueue,
    /// One per isolate: what this isolate has seen of the buffer lately.
    pub breaker: &'a RefCell<Breaker>,
}

/// The way to the group commits: the batchers, the isolate's [`Advisor`] (whether batching
/// pays now, over how many batchers, gathering for how long) and its [`Gatherer`] (the
/// isolate's requests that share one Durable Object request).
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit<'a> {
    pub link: &'a dyn BatcherLink,
    /// One per isolate, like the spill's breaker.
    pub advisor: &'a RefCell<Advisor>,
    /// One per isolate.
    pub gatherer: &'a Gatherer,
}

/// What delivery needs: the configuration (deadline, limits, group commit, envelope key), the
/// buffer, the runtime, and the optional group commit and spill.
#[derive(Debug)]
pub struct Delivery<'a, Q, R> {
    pub config: &'a Config,
    pub buffer: &'a Q,
    pub rt: &'a R,
    /// The group commits; `None` when the `BATCHER` binding is not configured, and then every
    /// request sends directly.
    pub group_commit: Option<GroupCommit<'a>>,
    /// The spill queue and the isolate's breaker; `None` when the `SPILL_QUEUE` binding is not
    /// configured, and then a request the buffer does not take in time fails.
    pub spill: Option<Spill<'a>>,
}

/// Whose events these are: the request's key id (the message group of a FIFO queue), and where
/// and as what the request was seen (they pick its group commit).
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub key_id: &'a str,
    /// `cf.colo`, when the runtime says.
    pub colo: Option<&'a str>,
    pub request_id: &'a str,
}

/// How a request's events went to the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryRoute {
    /// The request's own calls.
    Direct,
    /// A group commit carried them.
    GroupCommit,
    /// The group commit did not answer usably; the request then sent them itself.
    DirectFallback,
}

impl DeliveryRoute {
    /// The name in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryRoute::Direct => "direct",
            DeliveryRoute::GroupCommit => "batched",
            DeliveryRoute::DirectFallback => "direct_fallback",
        }
    }
}

/// The breaker of the spill, when it was not closed for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// The request went straight to the spill.
    Open,
    /// The request tried the buffer for the isolate.
    Probe,
}

impl BreakerState {
    /// The name in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Open => "open",
            BreakerState::Probe => "probe",
        }
    }
}

/// What delivery did, for the answer and the log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The request's events that neither the buffer nor the spill holds, in request order.
    /// Empty means every event is held (the request is accepted).
    pub unacknowledged: Vec<Uuid>,
    /// The deadline passed with events unacknowledged (rather than the buffer refusing them).
    pub timed_out: bool,
    /// How the events went to the buffer; `None` when they did not (the breaker was open).
    pub route: Option<DeliveryRoute>,
    /// Calls to the buffer and retries that carried the events (with a group commit, those of
    /// the whole group, shared with its other requests, [`DeliveryReport::shared`]).
    pub calls: u32,
    pub retries: u32,
    /// With a group commit: how many requests and events shared it.
    pub shared: Option<Shared>,
    /// The last buffer error, when there was one (error codes and statuses only).
    pub buffer_error: Option<String>,
    /// Why the group commit was not used after all, when it was not.
    pub fallback: Option<String>,
    /// The spill's breaker, when it was not closed.
    pub breaker: Option<BreakerState>,
    /// Events the spill holds instead of the buffer; `None` when nothing was spilled.
    pub spilled: Option<usize>,
    /// Why the spill failed, when it did.
    pub spill_error: Option<String>,
}

impl DeliveryReport {
    /// Whether every event is held, by the buffer or the spill.
    pub fn delivered(&self) -> bool {
        self.unacknowledged.is_empty()
    }

    /// Notes a send to the buffer.
    fn sent(&mut self, sent: &SendReport) {
        self.calls = sent.calls;
        self.retries = sent.retries;
        self.buffer_error = sent.last_error.clone();
    }
}

/// Sends the events of a request; the report's `unacknowledged` is empty only once the buffer
/// has acknowledged every one, or, with a spill queue, once the buffer and the spill between
/// them hold every one.
///
/// Small requests go through a group commit when there is one and the isolate's advisor says
/// it pays (or it probes); the rest, and every request whose group commit does not answer, send
/// directly. With a spill queue ([`spill`]), the
/// buffer gets the deadline less [`spill_reserve`], what it did not take in that time goes to
/// the spill, and while the breaker is open nothing waits for the buffer at all.
pub async fn deliver<Q, R>(
    delivery: &Delivery<'_, Q, R>,
    encoded: Vec<EncodedEvent>,
    sender: &Sender<'_>,
) -> DeliveryReport
where
    Q: Buffer,
    R: Runtime,
{
    let rt = delivery.rt;
    let deadline = delivery.config.retry.deadline;
    let mut report = DeliveryReport::default();
    let Some(spill) = delivery.spill else {
        let sent = to_buffer(delivery, &encoded, sender, deadline, &mut report).await;
        report.unacknowledged = sent.unacknowledged;
        report.timed_out = sent.timed_out;
        return report;
    };

    let started = rt.now_ms();
    let path = spill.breaker.borrow_mut().path(started);
    let missing: Vec<EncodedEvent> = match path {
        Path::Spill => {
            report.breaker = Some(BreakerState::Open);
            encoded
        }
        Path::Buffer | Path::Probe => {
            if path == Path::Probe {
                report.breaker = Some(BreakerState::Probe);
            }
            let budget = deadline.saturating_sub(spill_reserve(deadline));
            let sent = to_buffer(delivery, &encoded, sender, budget, &mut report).await;
            let ok = sent.unacknowledged.is_empty();
            spill.breaker.borrow_mut().record(path, ok, rt.now_ms());
            if ok {
                return report;
            }
            if sent.rejected {
                // The buffer refused some events for what they are: the spill would only defer
                // that.
                report.unacknowledged = sent.unacknowledged;
                report.timed_out = sent.timed_out;
                return report;
            }
            let unacked: HashSet<Uuid> = sent.unacknowledged.iter().copied().collect();
            encoded
                .into_iter()
                .filter(|e| unacked.contains(&e.id))
                .collect()
        }
    };

    // The spill always gets at least its reserve. Only an isolate so busy that its timers fire
    // late (the buffer's budget then ends past the deadline) answers later than the deadline
    // this way, and its events get their chance to be held instead of a `503`.
    let elapsed = rt.now_ms().saturating_sub(started);
    let left = Duration::from_millis(
        u64::try_from(deadline.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_sub(elapsed),
    )
    .max(spill_reserve(deadline));
    match to_spill(spill.queue, rt, &missing, sender.key_id, left).await {
        Ok(()) => report.spilled = Some(missing.len()),
        Err(problem) => {
            report.spill_error = Some(problem);
            report.unacknowledged = missing.iter().map(|e| e.id).collect();
            report.timed_out = true;
        }
    }
    report
}

/// Writes `events` to the spill queue within `left`; `Err` says why not (for the log).
async fn to_spill<R: Runtime>(
    queue: &dyn SpillQueue,
    rt: &R,
    events: &[EncodedEvent],
    key_id: &str,
    left: Duration,
) -> Result<(), String> {
    let batches = pack_spill(events, key_id).map_err(|e| e.to_string())?;
    let send = async {
        for batch in &batches {
            queue.send_batch(batch).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    let outcome = match select(Box::pin(send), Box::pin(rt.sleep(left))).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err("the spill queue did not answer within the deadline".into()),
    };
    outcome
}

/// Sends `encoded` to the buffer within `budget`, through a group commit or directly, noting
/// the route and the calls in `report`.
async fn to_buffer<Q, R>(
    delivery: &Delivery<'_, Q, R>,
    encoded: &[EncodedEvent],
    sender: &Sender<'_>,
    budget: Duration,
    report: &mut DeliveryReport,
) -> SendReport
where
    Q: Buffer,
    R: Runtime,
{
    let config = delivery.config;
    let bytes: usize = encoded.iter().map(|e| e.text.len()).sum();
    let group_commit = delivery
        .group_commit
        .filter(|_| config.group_commit.enabled() && bytes < GROUP_COMMIT_BELOW_BYTES);
    let policy = RetryPolicy {
        deadline: budget,
        ..config.retry
    };
    let route = group_commit.map(|g| {
        let in_flight = g.gatherer.in_flight();
        let route = g
            .advisor
            .borrow_mut()
            .route_with(delivery.rt.now_ms(), in_flight);
        (g, route)
    });
    let sent = match route {
        Some((
            g,
            Route::Batcher {
                shards,
                direct,
                gather,
            },
        )) => {
            let asked = Asked {
                shards,
                direct,
                gather,
            };
            via_group_commit(delivery, g, asked, encoded, sender, &policy, report).await
        }
        Some((_, Route::Direct)) | None => {
            report.route = Some(DeliveryRoute::Direct);
            direct(delivery, encoded, sender.key_id, &policy).await
        }
    };
    report.sent(&sent);
    sent
}

/// The request's own calls: its events packed within the buffer's limits and sent.
async fn direct<Q, R>(
    delivery: &Delivery<'_, Q, R>,
    encoded: &[EncodedEvent],
    key_id: &str,
    policy: &RetryPolicy,
) -> SendReport
where
    Q: Buffer,
    R: Runtime,
{
    let config = delivery.config;
    let calls = pack_encoded(encoded, &config.buffer, &config.envelope_key);
    send_all(delivery.buffer, delivery.rt, calls, key_id, policy).await
}

/// Most of the deadline the group commit is told to keep for itself, so that its answer
/// reaches the request before the request's own deadline.
const HANDOFF_MARGIN_MS: u64 = 250;

/// How the advisor sent a request to its group commit.
#[derive(Debug, Clone, Copy)]
struct Asked {
    /// Batchers at the location now.
    shards: u32,
    /// Small requests the isolate sent directly since its last submission.
    direct: u32,
    /// How long to gather the isolate's other requests, when this one opens a gathering.
    gather: Duration,
}

/// Hands the events to the request's group commit and reports what it says (its advice goes to
/// the isolate's advisor). A group commit
/// that cannot be reached, fails, or answers nonsense costs only the time it took: the events
/// then go directly, within what is left of the deadline. The same ids either way, so a call
/// the group commit did make before failing is stored once all the same (the consumer's
/// `ON CONFLICT`).
async fn via_group_commit<Q, R>(
    delivery: &Delivery<'_, Q, R>,
    group_commit: GroupCommit<'_>,
    asked: Asked,
    encoded: &[EncodedEvent],
    sender: &Sender<'_>,
    policy: &RetryPolicy,
    report: &mut DeliveryReport,
) -> SendReport
where
    Q: Buffer,
    R: Runtime,
{
    let rt = delivery.rt;
    let started = rt.now_ms();
    let deadline_ms = u64::try_from(policy.deadline.as_millis()).unwrap_or(u64::MAX);
    let margin = (deadline_ms / 10).min(HANDOFF_MARGIN_MS);
    let name = batcher_name(sender.colo, sender.request_id, asked.shards);
    let submission = Submission {
        group: sender.key_id.to_owned(),
        wait_ms: deadline_ms - margin,
        direct: asked.direct,
        waited_ms: 0,
        events: encoded.to_vec(),
    };
    let answered = select(
        Box::pin(group_commit.gatherer.submit(
            group_commit.link,
            rt,
            &name,
            submission,
            asked.gather,
        )),
        Box::pin(rt.sleep(policy.deadline)),
    )
    .await;
    let advisor = group_commit.advisor;
    let problem = match answered {
        Either::Left((Ok(answer), _)) => {
            match &answer.advice {
                Some(advice) => advisor.borrow_mut().heard(rt.now_ms(), advice),
                None => advisor.borrow_mut().unheard(rt.now_ms()),
            }
            report.route = Some(DeliveryRoute::GroupCommit);
            report.shared = Some(answer.report.shared);
            return answer.report;
        }
        Either::Left((Err(e), _)) => e,
        Either::Right(((), _)) => {
            advisor.borrow_mut().unheard(rt.now_ms());
            report.route = Some(DeliveryRoute::GroupCommit);
            return SendReport {
                unacknowledged: encoded.iter().map(|e| e.id).collect(),
                timed_out: true,
                last_error: Some("the batcher did not answer within the deadline".into()),
                ..SendReport::default()
            };
        }
    };
    advisor.borrow_mut().unheard(rt.now_ms());
    report.route = Some(DeliveryRoute::DirectFallback);
    report.fallback = Some(problem);
    let left = deadline_ms.saturating_sub(rt.now_ms().saturating_sub(started));
    if left == 0 {
        return SendReport {
            unacknowledged: encoded.iter().map(|e| e.id).collect(),
            timed_out: true,
            ..SendReport::default()
        };
    }
    let policy = RetryPolicy {
        deadline: Duration::from_millis(left),
        ..*policy
    };
    direct(delivery, encoded, sender.key_id, &policy).await
}

#[cfg(test)]
mod tests;
