//! The circuit breaker, pure: when the consumer stops taking deliveries because the database is
//! unavailable, when it probes the database, and when it takes deliveries again.
//!
//! Why: an SQS message's receive count only grows. While PostgreSQL is down every delivery
//! fails and costs one receive, so without a breaker a long enough outage moves every waiting
//! message to the dead-letter queue (`maxReceiveCount` x visibility timeout: about an hour with
//! the template's defaults), and the DLQ fills with healthy events. With the breaker a message
//! is received at most once or twice per outage (the batches in flight when it trips, and one
//! more per flap), whatever the outage's length; the backlog waits in the queue (up to its
//! retention) and drains by itself when the database answers again.
//!
//! Two players use it:
//! - the local poller ([`Breaker`]): the first batch that finds the database
//!   [`FailureKind::Unavailable`](crate::store::FailureKind::Unavailable) opens it; every
//!   worker then stops receiving; one worker at a time probes the database with a backoff
//!   ([`BreakerPolicy`]) and the first probe that connects closes it;
//! - the deployed function ([`mapping_action`]): a schedule invokes it every minute with a
//!   [`ProbeRequest`] naming its event source mapping; it probes the database and disables the
//!   mapping while the database is unavailable, and enables it again once it answers.
//!
//! Only [`FailureKind::Unavailable`](crate::store::FailureKind::Unavailable) opens it. A
//! transient failure on a healthy connection (a timeout, a table not migrated yet) or a refused
//! record does not: those are about the batch or the deploy, not an outage, and a poison record
//! must still reach the DLQ alone. It does no I/O and knows no clock: callers pass `now`.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

/// How long the poller waits between probes while the breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Wait before the first probe; each failed probe doubles the wait.
    pub first_probe: Duration,
    /// The longest wait between two probes: the worst delay between the database's return and
    /// the first delivery after it.
    pub max_probe: Duration,
}

impl Default for BreakerPolicy {
    /// 1 s, doubling to 10 s: a probe is one connection attempt, cheap even every second, and
    /// a backlog starts draining at most 10 s after the database is back.
    fn default() -> Self {
        Self {
            first_probe: Duration::from_secs(1),
            max_probe: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Deliveries are taken.
    Closed,
    /// No deliveries; the next probe is due at `next_probe`.
    Open {
        since: Instant,
        next_probe: Instant,
        failed_probes: u32,
    },
    /// No deliveries; one worker is probing now.
    Probing { since: Instant, failed_probes: u32 },
}

/// What a worker should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Receive and handle a batch.
    Receive,
    /// Probe the database, then report with [`Breaker::probed`]. Only one worker is told so at
    /// a time.
    Probe,
    /// Receive nothing; ask again at this instant (or sooner on shutdown).
    WaitUntil(Instant),
}

/// A change of state worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// The breaker opened: deliveries stop.
    Opened,
    /// A probe failed; the next is due after this wait.
    StillOpen { next_probe_in: Duration },
    /// A probe succeeded after the breaker was open this long: deliveries resume.
    Closed { open_for: Duration },
}

/// How the batch a worker just handled went, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchHealth {
    /// At least one write found the database unavailable.
    DatabaseUnavailable,
    /// Anything else (stored, duplicates, refused data, transient failures).
    DatabaseAnswered,
}

/// The local poller's breaker, shared by its workers (behind a mutex).
#[derive(Debug, Clone)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: State,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            state: State::Closed,
        }
    }

    /// Whether deliveries are taken now.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// What a worker should do now.
    pub fn step(&mut self, now: Instant) -> Step {
        match self.state {
            State::Closed => Step::Receive,
            State::Open {
                since,
                next_probe,
                failed_probes,
            } if now >= next_probe => {
                self.state = State::Probing {
                    since,
                    failed_probes,
                };
                Step::Probe
            }
            State::Open { next_probe, .. } => Step::WaitUntil(next_probe),
            // Another worker is probing: look again after the shortest probe wait.
            State::Probing { .. } => Step::WaitUntil(now + self.policy.first_probe),
        }
    }

    /// Takes what a handled batch showed. A batch that found the database unavailable opens
    /// the breaker; one that reached it changes nothing (the breaker closes only on a probe).
    pub fn observe(&mut self, health: BatchHealth, now: Instant) -> Transition {
        match (health, self.state) {
            (BatchHealth::DatabaseUnavailable, State::Closed) => {
                self.state = State::Open {
                    since: now,
                    next_probe: now + self.policy.first_probe,
                    failed_probes: 0,
                };
                Transition::Opened
            }
            _ => Transition::None,
        }
    }

    /// Takes the result of the probe [`Breaker::step`] asked for.
    pub fn probed(&mut self, reachable: bool, now: Instant) -> Transition {
        let State::Probing {
            since,
            failed_probes,
        } = self.state
        else {
            return Transition::None;
        };
        if reachable {
            self.state = State::Closed;
            return Transition::Closed {
                open_for: now.saturating_duration_since(since),
            };
        }
        let failed_probes = failed_probes.saturating_add(1);
        let wait = self.backoff(failed_probes);
        self.state = State::Open {
            since,
            next_probe: now + wait,
            failed_probes,
        };
        Transition::StillOpen {
            next_probe_in: wait,
        }
    }

    /// The wait after `failed` failed probes: the first wait doubled each time, capped.
    fn backoff(&self, failed: u32) -> Duration {
        let factor = 1u32.checked_shl(failed.min(16)).unwrap_or(u32::MAX);
        self.policy
            .first_probe
            .saturating_mul(factor)
            .min(self.policy.max_probe)
    }
}

/// The scheduled invocation that drives the deployed breaker:
/// `{"spillway_breaker": {"event_source_mapping": "<UUID>"}}`, the schedule's fixed input in
/// `infra/template.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProbeRequest {
    /// The UUID of the event source mapping to disable and enable.
    pub event_source_mapping: String,
}

impl ProbeRequest {
    /// The probe request inside an invocation payload; `None` for any other payload (an SQS or
    /// Kinesis event). A payload that names the key but is malformed is an error, so a broken
    /// schedule shows in the function's errors instead of passing for an empty SQS event.
    pub fn of(payload: &Value) -> Option<Result<Self, String>> {
        let inner = payload.get("spillway_breaker")?;
        Some(
            serde_json::from_value::<ProbeRequest>(inner.clone())
                .map_err(|e| format!("malformed spillway_breaker request: {e}"))
                .and_then(|r| {
                    if r.event_source_mapping.trim().is_empty() {
                        Err("spillway_breaker.event_source_mapping is empty".to_owned())
                    } else {
                        Ok(r)
                    }
                }),
        )
    }
}

/// What the scheduled probe does to the event source mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingAction {
    /// `UpdateEventSourceMapping Enabled=false`: the database is unavailable.
    Disable,
    /// `UpdateEventSourceMapping Enabled=true`: the database answers again.
    Enable,
    /// Already in the right state, or changing state (Lambda refuses an update then; the next
    /// probe, a minute later, looks again).
    Nothing,
}

/// The deployed breaker's decision, from the probe's result and the mapping's `State` as
/// `GetEventSourceMapping` reports it (`Creating`, `Enabling`, `Enabled`, `Disabling`,
/// `Disabled`, `Updating`, `Deleting`).
///
/// Only `Disabled` is enabled: the schedule exists only while the stack's `ConsumerEnabled` is
/// true, so a disabled mapping under a schedule is the breaker's own doing (or a person's, which
/// the runbook says to do by setting `ConsumerEnabled` instead).
pub fn mapping_action(database_reachable: bool, mapping_state: &str) -> MappingAction {
    match (database_reachable, mapping_state) {
        (false, "Enabled" | "Enabling") => MappingAction::Disable,
        (true, "Disabled") => MappingAction::Enable,
        _ => MappingAction::Nothing,
    }
}

/// Whether deliveries are paused by the breaker after `action` on a mapping in
/// `mapping_state`: the value of the probe's `ConsumerPaused` metric, which the template's
/// alarm watches.
pub fn paused_after(action: MappingAction, mapping_state: &str) -> bool {
    match action {
        MappingAction::Disable => true,
        MappingAction::Enable => false,
        MappingAction::Nothing => matches!(mapping_state, "Disabled" | "Disabling"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn breaker() -> (Breaker, Instant) {
        (Breaker::new(BreakerPolicy::default()), Instant::now())
    }

    #[test]
    fn closed_until_a_batch_finds_the_database_unavailable() {
        let (mut b, t0) = breaker();
        assert_eq!(b.step(t0), Step::Receive);
        // Refused data, duplicates, transient errors: the database answered.
        assert_eq!(
            b.observe(BatchHealth::DatabaseAnswered, t0),
            Transition::None
        );
        assert!(b.is_closed());
        assert_eq!(
            b.observe(BatchHealth::DatabaseUnavailable, t0),
            Transition::Opened
        );
        assert!(!b.is_closed());
        // No worker receives until the first probe is due.
        assert_eq!(b.step(t0), Step::WaitUntil(t0 + secs(1)));
        // A second worker's failed batch does not restart the clock.
        assert_eq!(
            b.observe(BatchHealth::DatabaseUnavailable, t0 + secs(0)),
            Transition::None
        );
    }

    #[test]
    fn one_worker_probes_at_a_time_and_a_failed_probe_backs_off_to_the_cap() {
        let (mut b, t0) = breaker();
        b.observe(BatchHealth::DatabaseUnavailable, t0);
        let mut now = t0 + secs(1);
        let mut waits = Vec::new();
        for _ in 0..6 {
            assert_eq!(b.step(now), Step::Probe);
            // The other worker waits while the probe runs, and receives nothing.
            assert!(matches!(b.step(now), Step::WaitUntil(_)));
            match b.probed(false, now) {
                Transition::StillOpen { next_probe_in } => {
                    waits.push(next_probe_in.as_secs());
                    // Not due before its time.
                    assert_eq!(b.step(now), Step::WaitUntil(now + next_probe_in));
                    now += next_probe_in;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(waits, [2, 4, 8, 10, 10, 10]);
    }

    #[test]
    fn a_probe_that_connects_closes_it_and_says_for_how_long_it_was_open() {
        let (mut b, t0) = breaker();
        b.observe(BatchHealth::DatabaseUnavailable, t0);
        assert_eq!(b.step(t0 + secs(1)), Step::Probe);
        b.probed(false, t0 + secs(1));
        assert_eq!(b.step(t0 + secs(3)), Step::Probe);
        assert_eq!(
            b.probed(true, t0 + secs(4)),
            Transition::Closed { open_for: secs(4) }
        );
        assert_eq!(b.step(t0 + secs(4)), Step::Receive);
        // It opens again on the next outage, with the backoff from the start.
        b.observe(BatchHealth::DatabaseUnavailable, t0 + secs(9));
        assert_eq!(b.step(t0 + secs(9)), Step::WaitUntil(t0 + secs(10)));
    }

    #[test]
    fn a_probe_result_nobody_asked_for_changes_nothing() {
        let (mut b, t0) = breaker();
        assert_eq!(b.probed(false, t0), Transition::None);
        assert!(b.is_closed());
        b.observe(BatchHealth::DatabaseUnavailable, t0);
        // Open, but no probe handed out yet.
        assert_eq!(b.probed(true, t0), Transition::None);
        assert!(!b.is_closed());
    }

    #[test]
    fn the_backoff_never_overflows() {
        let mut b = Breaker::new(BreakerPolicy {
            first_probe: secs(3),
            max_probe: secs(45),
        });
        let t0 = Instant::now();
        b.observe(BatchHealth::DatabaseUnavailable, t0);
        let mut now = t0;
        for _ in 0..100 {
            now += secs(60);
            assert_eq!(b.step(now), Step::Probe);
            b.probed(false, now);
        }
        assert_eq!(b.step(now), Step::WaitUntil(now + secs(45)));
    }

    #[test]
    fn the_deployed_probe_disables_while_down_and_enables_once_back() {
        use MappingAction::*;
        assert_eq!(mapping_action(false, "Enabled"), Disable);
        assert_eq!(mapping_action(false, "Enabling"), Disable);
        assert_eq!(mapping_action(false, "Disabled"), Nothing);
        assert_eq!(mapping_action(false, "Disabling"), Nothing);
        assert_eq!(mapping_action(true, "Disabled"), Enable);
        assert_eq!(mapping_action(true, "Enabled"), Nothing);
        // Lambda refuses an update while the mapping changes state: next minute.
        for state in ["Creating", "Updating", "Deleting", "Disabling", "Enabling"] {
            assert_eq!(mapping_action(true, state), Nothing, "{state}");
        }
        assert!(paused_after(Disable, "Enabled"));
        assert!(!paused_after(Enable, "Disabled"));
        assert!(paused_after(Nothing, "Disabled"));
        assert!(!paused_after(Nothing, "Enabled"));
    }

    #[test]
    fn probe_requests_are_told_from_buffer_events() {
        let ok = json!({"spillway_breaker": {"event_source_mapping": "a1b2"}});
        assert_eq!(
            ProbeRequest::of(&ok),
            Some(Ok(ProbeRequest {
                event_source_mapping: "a1b2".into()
            }))
        );
        assert_eq!(ProbeRequest::of(&json!({"Records": []})), None);
        assert!(matches!(
            ProbeRequest::of(&json!({"spillway_breaker": {}})),
            Some(Err(_))
        ));
        assert!(matches!(
            ProbeRequest::of(&json!({"spillway_breaker": {"event_source_mapping": " "}})),
            Some(Err(_))
        ));
    }
}
