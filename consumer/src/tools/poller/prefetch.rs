//! Whether a worker receives its next batch while the current one is handled, and how long a
//! batch received ahead may wait for its invocation. Pure: durations and instants in,
//! decisions out; [`super::worker`] does the receiving, releasing and deleting.
//!
//! Why: handled one step after the other (receive, verify, write, delete), a worker's database
//! connection sits idle through both SQS calls. Lambda's event source mapping polls and batches
//! outside the function, so there the function's time is the write; the poller plays that by
//! receiving the next batch while the current invocation runs.
//!
//! The cost: a batch received ahead is invisible from its receive, and its visibility clock
//! runs while it waits. So the wait is bounded ([`Prefetch::release_at`]): half of what the
//! visibility timeout leaves after the batching window, the other half being its own
//! invocation and delete. A batch still waiting at that bound is given back to the queue
//! (visibility 0: at once visible to any worker, one receive count spent), never handled
//! late. And a worker whose last invocation took more than half of that bound does not
//! receive ahead at all (it works one step after the other, as before), so slow invocations
//! do not spend receive counts on batches that would only be given back. Without a known
//! visibility timeout, or with a window that leaves none, nothing is received ahead.

use std::time::{Duration, Instant};

/// The prefetch bound of one poller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefetch {
    /// How long a gathered batch may wait for its invocation; `None`: never receive ahead.
    hold: Option<Duration>,
}

impl Prefetch {
    /// `visibility`: the timeout the received messages get (`VISIBILITY_TIMEOUT_SECONDS`, or
    /// the queue's own); `window`: `MAXIMUM_BATCHING_WINDOW_IN_SECONDS`, during which the first
    /// message of a batch already ages.
    pub fn new(visibility: Option<Duration>, window: Duration) -> Self {
        let hold = visibility
            .and_then(|v| v.checked_sub(window))
            .map(|left| left / 2)
            .filter(|h| !h.is_zero());
        Self { hold }
    }

    /// The longest a gathered batch waits for its invocation, if any batch is received ahead.
    pub fn hold(&self) -> Option<Duration> {
        self.hold
    }

    /// Whether to receive the next batch while an invocation runs, given how long this worker's
    /// last invocation took (`None`: none yet, so nothing says it is slow).
    pub fn wanted(&self, last_invocation: Option<Duration>) -> bool {
        match (self.hold, last_invocation) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(hold), Some(last)) => last <= hold / 2,
        }
    }

    /// The instant at which a batch gathered at `gathered`, still waiting for its invocation,
    /// is given back to the queue.
    pub fn release_at(&self, gathered: Instant) -> Option<Instant> {
        self.hold.map(|h| gathered + h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_wait_is_half_of_what_the_visibility_timeout_leaves_after_the_window() {
        assert_eq!(Prefetch::new(Some(S(30)), S(0)).hold(), Some(S(15)));
        assert_eq!(Prefetch::new(Some(S(30)), S(2)).hold(), Some(S(14)));
        let at = Instant::now();
        assert_eq!(
            Prefetch::new(Some(S(30)), S(0)).release_at(at),
            Some(at + S(15))
        );
    }

    #[test]
    fn nothing_is_received_ahead_without_room_in_the_visibility_timeout() {
        // Unknown timeout, a window as long or longer than it: no bound can be kept.
        for p in [
            Prefetch::new(None, S(0)),
            Prefetch::new(Some(S(3)), S(3)),
            Prefetch::new(Some(S(1)), S(3)),
        ] {
            assert_eq!(p.hold(), None);
            assert!(!p.wanted(None));
            assert!(!p.wanted(Some(Duration::ZERO)));
            assert_eq!(p.release_at(Instant::now()), None);
        }
    }

    #[test]
    fn a_slow_last_invocation_turns_receiving_ahead_off_until_one_is_fast_again() {
        let p = Prefetch::new(Some(S(30)), S(0));
        assert!(p.wanted(None), "the first invocation receives ahead");
        assert!(p.wanted(Some(Duration::from_millis(40))));
        assert!(
            p.wanted(Some(Duration::from_millis(7_500))),
            "half the hold"
        );
        assert!(!p.wanted(Some(Duration::from_millis(7_501))));
        assert!(!p.wanted(Some(S(60))));
        assert!(p.wanted(Some(Duration::from_millis(40))), "fast again");
    }

    #[test]
    fn a_one_second_visibility_timeout_still_bounds_the_wait() {
        // The moto tests' queues: 1 s, so half a second of waiting, and only behind an
        // invocation of at most a quarter second.
        let p = Prefetch::new(Some(S(1)), S(0));
        assert_eq!(p.hold(), Some(Duration::from_millis(500)));
        assert!(p.wanted(Some(Duration::from_millis(250))));
        assert!(!p.wanted(Some(Duration::from_millis(251))));
    }
}
