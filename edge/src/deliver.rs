//! Delivery: getting a request's events into SQS, or, when SQS does not take them in time and
//! the Worker has a spill queue, into the spill. `202` follows only from here.

use std::cell::RefCell;
use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::{select, Either};
use spillway_shared::{pack_encoded, EncodedEvent};
use uuid::Uuid;

use crate::batch::{batcher_name, decode_verdict, encode_submission, DIRECT_FROM_BYTES};
use crate::config::RetryPolicy;
use crate::error::EdgeError;
use crate::handler::Deps;
use crate::log::RequestLog;
use crate::ports::{BatcherLink, QueueSender, Runtime, SpillQueue};
use crate::send::{send_all, SendReport};
use crate::spill::{pack_spill, spill_reserve, Breaker, Path};

/// The way to the spill ([`crate::spill`]).
#[derive(Debug, Clone, Copy)]
pub struct Spill<'a> {
    pub queue: &'a dyn SpillQueue,
    /// One per isolate: what this isolate has seen of SQS lately.
    pub breaker: &'a RefCell<Breaker>,
}

/// Sends the events of a request; `Ok(ids)` only once SQS has acknowledged every one, or, with
/// a spill queue, once SQS and the spill between them hold every one.
///
/// Small requests go through a batcher when there is one (group commit); the rest, and every
/// request whose batcher does not answer, send directly. With a spill queue
/// ([`crate::spill`]), SQS gets the deadline less [`spill_reserve`], what it did not take in
/// that time goes to the spill, and while the breaker is open nothing waits for SQS at all.
pub(crate) async fn deliver<Q, L, R>(
    deps: &Deps<'_, Q, L, R>,
    encoded: Vec<EncodedEvent>,
    ids: Vec<Uuid>,
    key_id: &str,
    log: &mut RequestLog,
) -> Result<Vec<Uuid>, EdgeError>
where
    Q: QueueSender,
    R: Runtime,
{
    let config = deps.config;
    let rt = deps.rt;
    let deadline = config.retry.deadline;
    let unavailable = |unacknowledged: Vec<Uuid>, timed_out: bool| EdgeError::QueueUnavailable {
        total: ids.len(),
        unacknowledged,
        timed_out,
        retry_after_secs: config.retry_after_secs,
    };
    let Some(spill) = deps.spill else {
        let report = to_sqs(deps, &encoded, key_id, deadline, log).await;
        return if report.unacknowledged.is_empty() {
            Ok(ids)
        } else {
            Err(unavailable(report.unacknowledged, report.timed_out))
        };
    };

    let started = rt.now_ms();
    let path = spill.breaker.borrow_mut().path(started);
    let missing: Vec<EncodedEvent> = match path {
        Path::Spill => {
            log.breaker = Some("open");
            encoded
        }
        Path::Sqs | Path::Probe => {
            if path == Path::Probe {
                log.breaker = Some("probe");
            }
            let budget = deadline.saturating_sub(spill_reserve(deadline));
            let report = to_sqs(deps, &encoded, key_id, budget, log).await;
            let ok = report.unacknowledged.is_empty();
            spill.breaker.borrow_mut().record(path, ok, rt.now_ms());
            if ok {
                return Ok(ids);
            }
            if report.rejected {
                // SQS refused some events for what they are: the spill would only defer that.
                return Err(unavailable(report.unacknowledged, report.timed_out));
            }
            let unacked: HashSet<Uuid> = report.unacknowledged.iter().copied().collect();
            encoded
                .into_iter()
                .filter(|e| unacked.contains(&e.id))
                .collect()
        }
    };

    // The spill always gets at least its reserve. Only an isolate so busy that its timers fire
    // late (SQS's budget then ends past the deadline) answers later than the deadline this way,
    // and its events get their chance to be held instead of a `503`.
    let elapsed = rt.now_ms().saturating_sub(started);
    let left = Duration::from_millis(
        u64::try_from(deadline.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_sub(elapsed),
    )
    .max(spill_reserve(deadline));
    match to_spill(spill.queue, rt, &missing, key_id, left).await {
        Ok(()) => {
            log.spilled = Some(missing.len());
            Ok(ids)
        }
        Err(problem) => {
            log.spill_error = Some(problem);
            Err(unavailable(missing.iter().map(|e| e.id).collect(), true))
        }
    }
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

/// Sends `encoded` to SQS within `budget`, through the batcher or directly, noting the calls
/// in the log.
async fn to_sqs<Q, L, R>(
    deps: &Deps<'_, Q, L, R>,
    encoded: &[EncodedEvent],
    key_id: &str,
    budget: Duration,
    log: &mut RequestLog,
) -> SendReport
where
    Q: QueueSender,
    R: Runtime,
{
    let config = deps.config;
    let bytes: usize = encoded.iter().map(|e| e.text.len()).sum();
    let batcher = deps
        .batcher
        .filter(|_| config.batch.enabled() && bytes < DIRECT_FROM_BYTES);
    let policy = RetryPolicy {
        deadline: budget,
        ..config.retry
    };
    let report = match batcher {
        Some(link) => via_batcher(deps, link, encoded, key_id, &policy, log).await,
        None => {
            log.send = Some("direct");
            let batches = pack_encoded(encoded, &config.limits, &config.envelope_key);
            send_all(deps.queue, deps.rt, batches, key_id, &policy).await
        }
    };
    log.sqs_calls = report.calls;
    log.retries = report.retries;
    log.queue_error = report.last_error.clone();
    report
}

/// Most of the deadline the batcher is told to keep for itself, so that its answer reaches the
/// request before the request's own deadline.
const HANDOFF_MARGIN_MS: u64 = 250;

/// Hands the events to the request's batcher and reports what it says. A batcher that cannot
/// be reached, fails, or answers nonsense costs only the time it took: the events then go
/// directly, within what is left of the deadline. The same ids either way, so a batch the
/// batcher did send before failing is stored once all the same (the consumer's `ON CONFLICT`).
async fn via_batcher<Q, L, R>(
    deps: &Deps<'_, Q, L, R>,
    link: &dyn BatcherLink,
    encoded: &[EncodedEvent],
    key_id: &str,
    policy: &RetryPolicy,
    log: &mut RequestLog,
) -> SendReport
where
    Q: QueueSender,
    R: Runtime,
{
    let config = deps.config;
    let rt = deps.rt;
    let started = rt.now_ms();
    let deadline_ms = u64::try_from(policy.deadline.as_millis()).unwrap_or(u64::MAX);
    let margin = (deadline_ms / 10).min(HANDOFF_MARGIN_MS);
    let name = batcher_name(log.colo.as_deref(), &log.request_id, config.batch.shards);
    let submission = encode_submission(key_id, deadline_ms - margin, encoded);
    let asked = select(
        link.submit(&name, submission),
        Box::pin(rt.sleep(policy.deadline)),
    )
    .await;
    let problem = match asked {
        Either::Left((Ok(answer), _)) => match decode_verdict(&answer) {
            Ok(v) => {
                log.send = Some("batched");
                log.batch_requests = Some(v.requests);
                log.batch_events = Some(v.events);
                return SendReport {
                    unacknowledged: v.unacknowledged,
                    rejected: v.rejected,
                    timed_out: v.timed_out,
                    calls: v.calls,
                    retries: v.retries,
                    last_error: v.last_error,
                };
            }
            Err(e) => e.to_string(),
        },
        Either::Left((Err(e), _)) => e.to_string(),
        Either::Right(((), _)) => {
            log.send = Some("batched");
            return SendReport {
                unacknowledged: encoded.iter().map(|e| e.id).collect(),
                timed_out: true,
                last_error: Some("the batcher did not answer within the deadline".into()),
                ..SendReport::default()
            };
        }
    };
    log.send = Some("direct_fallback");
    log.note = Some(problem);
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
    let batches = pack_encoded(encoded, &config.limits, &config.envelope_key);
    send_all(deps.queue, rt, batches, key_id, &policy).await
}
