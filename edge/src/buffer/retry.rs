//! The retry loop: sends packed calls to the buffer concurrently, resending only the entries it
//! did not take, with exponential backoff and jitter, until everything is acknowledged or the
//! deadline passes. It does not pack, and does not decide what happens to what is left.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use spillway_shared::{BufferCall, BufferEntry};
use uuid::Uuid;

use super::{Buffer, CallOutcome, SendError};
use crate::config::RetryPolicy;
use crate::ports::Runtime;

/// How sending went: what the retry loop returns, and what a group commit answers each of its
/// requests with (over the wire, hence serde).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReport {
    /// Events the buffer did not acknowledge, in request order. Empty means success.
    pub unacknowledged: Vec<Uuid>,
    /// Some entries failed in a way retrying cannot fix.
    pub rejected: bool,
    /// The deadline passed with entries still unacknowledged.
    pub timed_out: bool,
    /// Calls made to the buffer.
    pub calls: u32,
    /// Of those, calls that resent entries.
    pub retries: u32,
    /// Last error seen, for the log (never contains payloads or secrets).
    pub last_error: Option<String>,
    /// When the calls carried other requests' events too (a group commit): how many requests
    /// and events shared them, and the calls and retries above are those of the whole group.
    /// Zero when the calls were the request's own.
    pub shared: Shared,
}

/// The requests and events that shared a send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    pub requests: u32,
    pub events: u32,
}

/// The backoff before retry number `attempt` (0-based): `base * 2^attempt`, capped at `max`,
/// then "equal jitter": half of it fixed, half drawn from `random` (uniform in `[0, 1)`).
pub fn backoff(policy: &RetryPolicy, attempt: u32, random: f64) -> Duration {
    let exp = policy
        .base
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
    let capped = exp.min(policy.max);
    let half = capped / 2;
    half + half.mul_f64(random.clamp(0.0, 1.0))
}

fn unit_random(bytes: [u8; 16]) -> f64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    // 53 random bits -> [0, 1).
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

type SendFuture<'a> =
    Pin<Box<dyn Future<Output = (BufferCall, Result<CallOutcome, SendError>)> + 'a>>;

/// Sends `batches`, retrying what failed, and reports which events were not acknowledged.
pub async fn send_all<Q: Buffer, R: Runtime>(
    queue: &Q,
    rt: &R,
    batches: Vec<BufferCall>,
    group: &str,
    policy: &RetryPolicy,
) -> SendReport {
    let order: Vec<Uuid> = batches
        .iter()
        .flat_map(|b| b.entries.iter().flat_map(|e| e.event_ids.iter().copied()))
        .collect();
    let mut acked: HashSet<Uuid> = HashSet::with_capacity(order.len());
    let mut report = SendReport::default();
    let deadline_ms = rt
        .now_ms()
        .saturating_add(u64::try_from(policy.deadline.as_millis()).unwrap_or(u64::MAX));
    // One timer for the whole send: it only fires while a call is still outstanding.
    let mut deadline = Box::pin(rt.sleep(policy.deadline));
    let concurrency = policy.concurrency.max(1);

    let mut pending = batches;
    let mut attempt = 0u32;
    'rounds: while !pending.is_empty() {
        let mut todo = pending.into_iter();
        let mut retry_next: Vec<BufferCall> = Vec::new();
        let mut in_flight: FuturesUnordered<SendFuture<'_>> = FuturesUnordered::new();
        loop {
            while in_flight.len() < concurrency {
                let Some(batch) = todo.next() else { break };
                report.calls += 1;
                if attempt > 0 {
                    report.retries += 1;
                }
                in_flight.push(Box::pin(async move {
                    let result = queue.send(&batch.entries, group).await;
                    (batch, result)
                }));
            }
            if in_flight.is_empty() {
                break;
            }
            match select(in_flight.next(), deadline.as_mut()).await {
                Either::Left((Some((batch, result)), _)) => match result {
                    Ok(outcome) => {
                        let mut failed: Vec<BufferEntry> = Vec::new();
                        for (position, entry) in batch.entries.into_iter().enumerate() {
                            match outcome.failed.iter().find(|f| f.position == position) {
                                None => acked.extend(entry.event_ids.iter().copied()),
                                Some(f) if f.retryable => {
                                    report.last_error = Some(format!("entry failed: {}", f.code));
                                    failed.push(entry);
                                }
                                Some(f) => {
                                    report.last_error = Some(format!("entry rejected: {}", f.code));
                                    report.rejected = true;
                                }
                            }
                        }
                        if !failed.is_empty() {
                            retry_next.push(BufferCall { entries: failed });
                        }
                    }
                    Err(e) => {
                        report.last_error = Some(e.to_string());
                        if e.is_retryable() {
                            retry_next.push(batch);
                        } else {
                            report.rejected = true;
                        }
                    }
                },
                Either::Left((None, _)) => break,
                Either::Right(((), _)) => {
                    report.timed_out = true;
                    break 'rounds;
                }
            }
            if rt.now_ms() >= deadline_ms && (!in_flight.is_empty() || !todo.as_slice().is_empty())
            {
                report.timed_out = true;
                break 'rounds;
            }
        }
        if retry_next.is_empty() {
            break;
        }
        let delay = backoff(policy, attempt, unit_random(rt.random_bytes()));
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        if rt.now_ms().saturating_add(delay_ms) >= deadline_ms {
            report.timed_out = true;
            break;
        }
        rt.sleep(delay).await;
        attempt += 1;
        pending = retry_next;
    }
    report.unacknowledged = order.into_iter().filter(|id| !acked.contains(id)).collect();
    if report.unacknowledged.is_empty() {
        report.timed_out = false;
    }
    report
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::buffer::FailedEntry;
    use crate::testkit::{batches_of, FakeQueue, FakeRuntime, Reply};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            deadline: Duration::from_millis(2_000),
            base: Duration::from_millis(50),
            max: Duration::from_millis(400),
            concurrency: 6,
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let p = policy();
        assert_eq!(backoff(&p, 0, 0.0), Duration::from_millis(25));
        assert_eq!(backoff(&p, 0, 1.0), Duration::from_millis(50));
        assert_eq!(backoff(&p, 1, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(&p, 3, 0.5), Duration::from_millis(300));
        assert_eq!(backoff(&p, 30, 1.0), Duration::from_millis(400));
        let u = unit_random([0xff; 16]);
        assert!((0.0..1.0).contains(&u));
    }

    #[tokio::test(start_paused = true)]
    async fn all_acknowledged_first_time() {
        let rt = FakeRuntime::new();
        let q = FakeQueue::new(vec![]);
        let batches = batches_of(&[3, 2]);
        let ids: Vec<Uuid> = batches
            .iter()
            .flat_map(|b| b.entries.iter().flat_map(|e| e.event_ids.clone()))
            .collect();
        let r = send_all(&q, &rt, batches, "g", &policy()).await;
        assert_eq!(r.unacknowledged, Vec::<Uuid>::new());
        assert_eq!((r.calls, r.retries), (2, 0));
        assert_eq!(q.sent_event_ids(), ids);
        assert!(rt.sleeps().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn partial_failure_resends_only_failed_entries() {
        let rt = FakeRuntime::new();
        // Batch of 3 entries; SQS fails m1, the second (retryable), on the first call.
        let q = FakeQueue::new(vec![Reply::Outcome(CallOutcome {
            failed: vec![FailedEntry {
                position: 1,
                retryable: true,
                code: "InternalError".into(),
            }],
        })]);
        let batches = batches_of(&[3]);
        let r = send_all(&q, &rt, batches, "g", &policy()).await;
        assert!(r.unacknowledged.is_empty(), "{r:?}");
        let calls = q.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0], vec!["m0", "m1", "m2"]);
        assert_eq!(calls[1], vec!["m1"], "only the failed entry is sent again");
        assert_eq!((r.calls, r.retries), (2, 1));
        let sleeps = rt.sleeps();
        assert_eq!(sleeps.len(), 1);
        assert!((25..=50).contains(&sleeps[0]), "{sleeps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn server_errors_and_throttling_are_retried() {
        let rt = FakeRuntime::new();
        let q = FakeQueue::new(vec![
            Reply::Error(SendError::Transient("HTTP 500 InternalError".into())),
            Reply::Error(SendError::Transient("ThrottlingException".into())),
        ]);
        let r = send_all(&q, &rt, batches_of(&[2]), "g", &policy()).await;
        assert!(r.unacknowledged.is_empty(), "{r:?}");
        assert_eq!((r.calls, r.retries), (3, 2));
        let sleeps = rt.sleeps();
        assert_eq!(sleeps.len(), 2);
        assert!(
            sleeps[1] >= 50 && sleeps[1] <= 100,
            "second backoff doubles: {sleeps:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let rt = FakeRuntime::new();
        let q = FakeQueue::new(vec![Reply::Outcome(CallOutcome {
            failed: vec![FailedEntry {
                position: 0,
                retryable: false,
                code: "InvalidMessageContents".into(),
            }],
        })]);
        let batches = batches_of(&[2]);
        let first = batches[0].entries[0].event_ids.clone();
        let r = send_all(&q, &rt, batches, "g", &policy()).await;
        assert_eq!(r.unacknowledged, first);
        assert!(r.rejected && !r.timed_out);
        assert_eq!(r.calls, 1);

        let q = FakeQueue::new(vec![Reply::Error(SendError::Permanent(
            "AccessDenied".into(),
        ))]);
        let r = send_all(&q, &rt, batches_of(&[1]), "g", &policy()).await;
        assert_eq!(r.unacknowledged.len(), 1);
        assert_eq!(r.calls, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_names_the_unacknowledged_events_in_order() {
        let rt = FakeRuntime::new();
        // Always failing, and each call takes 300 virtual ms.
        let q = FakeQueue::always(Reply::Error(SendError::Transient("HTTP 503".into())))
            .with_latency_ms(300);
        let batches = batches_of(&[2, 1]);
        let all: Vec<Uuid> = batches
            .iter()
            .flat_map(|b| b.entries.iter().flat_map(|e| e.event_ids.clone()))
            .collect();
        let r = send_all(&q, &rt, batches, "g", &policy()).await;
        assert!(r.timed_out);
        assert_eq!(r.unacknowledged, all);
        assert!(
            rt.now_ms() - FakeRuntime::START_MS <= 2_000,
            "never sleeps past the deadline"
        );
        assert!(r.calls >= 4, "kept retrying until the deadline: {r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_is_cut_by_the_deadline() {
        let rt = FakeRuntime::new();
        let q = FakeQueue::new(vec![Reply::Hang]);
        let batches = batches_of(&[1, 1]);
        let second = batches[1].entries[0].event_ids.clone();
        let first = batches[0].entries[0].event_ids.clone();
        let r = send_all(&q, &rt, batches, "g", &policy()).await;
        assert!(r.timed_out);
        // The second batch was acknowledged; the hanging first one is reported.
        assert_eq!(r.unacknowledged, first);
        assert_ne!(first, second);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_six_calls_in_flight() {
        let rt = FakeRuntime::new();
        let q = FakeQueue::new(vec![]).yielding();
        let r = send_all(&q, &rt, batches_of(&[1; 15]), "g", &policy()).await;
        assert!(r.unacknowledged.is_empty());
        assert_eq!(r.calls, 15);
        assert_eq!(q.max_in_flight(), 6);
        let p = RetryPolicy {
            concurrency: 2,
            ..policy()
        };
        let q = FakeQueue::new(vec![]).yielding();
        send_all(&q, &rt, batches_of(&[1; 5]), "g", &p).await;
        assert_eq!(q.max_in_flight(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn group_is_passed_through() {
        let rt = FakeRuntime::new();
        let q = FakeQueue::new(vec![]);
        send_all(&q, &rt, batches_of(&[1]), "web", &policy()).await;
        assert_eq!(q.groups(), vec!["web".to_owned()]);
    }
}
