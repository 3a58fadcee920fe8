//! The circuit breaker in front of the buffer (SQS or Kinesis): one per isolate, no shared state.
//!
//! Closed, every request tries the buffer. After [`BreakerSettings::failures`] requests in a row
//! whose events it did not all acknowledge, it opens: requests go straight to the spill for
//! [`BreakerSettings::open_first`]. Then one request probes the buffer while the others keep
//! spilling; its success closes the breaker, its failure opens it again for twice as long, up to
//! [`BreakerSettings::open_max`]. A probe that never reports (its request was cancelled) is
//! replaced after [`BreakerSettings::probe_timeout`].

use std::time::Duration;

/// The breaker's tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failed requests in a row that open the breaker (3).
    pub failures: u32,
    /// How long it first stays open (1 s).
    pub open_first: Duration,
    /// The longest it stays open between probes (30 s).
    pub open_max: Duration,
    /// After this long without news from a probe, the next request probes instead (the SQS
    /// deadline).
    pub probe_timeout: Duration,
}

impl BreakerSettings {
    /// The defaults, with probes replaced after `deadline`.
    pub fn for_deadline(deadline: Duration) -> Self {
        Self {
            failures: 3,
            open_first: Duration::from_secs(1),
            open_max: Duration::from_secs(30),
            probe_timeout: deadline,
        }
    }
}

/// Where a request's events go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// To the buffer, SQS (the breaker is closed).
    Buffer,
    /// To the buffer, as the one request that finds out whether it is back.
    Probe,
    /// Straight to the spill: the buffer is believed down.
    Spill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until_ms: u64, interval_ms: u64 },
    Probing { since_ms: u64, interval_ms: u64 },
}

/// The breaker. Plain state: the caller passes the clock.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: State::Closed { failures: 0 },
        }
    }

    /// Where the next request goes, at `now_ms`. A [`Path::Probe`] answer makes that request
    /// the probe: report its outcome with [`Breaker::record`].
    pub fn path(&mut self, now_ms: u64) -> Path {
        match self.state {
            State::Closed { .. } => Path::Buffer,
            State::Open {
                until_ms,
                interval_ms,
            } => {
                if now_ms < until_ms {
                    Path::Spill
                } else {
                    self.state = State::Probing {
                        since_ms: now_ms,
                        interval_ms,
                    };
                    Path::Probe
                }
            }
            State::Probing {
                since_ms,
                interval_ms,
            } => {
                if now_ms.saturating_sub(since_ms) >= millis(self.settings.probe_timeout) {
                    self.state = State::Probing {
                        since_ms: now_ms,
                        interval_ms,
                    };
                    Path::Probe
                } else {
                    Path::Spill
                }
            }
        }
    }

    /// What SQS did for a request that took `path`: `ok` when it acknowledged every event.
    pub fn record(&mut self, path: Path, ok: bool, now_ms: u64) {
        if ok {
            // Any success closes it: SQS took something, so it is up.
            if path != Path::Spill {
                self.state = State::Closed { failures: 0 };
            }
            return;
        }
        let first = millis(self.settings.open_first);
        let max = millis(self.settings.open_max).max(first);
        match (path, self.state) {
            (Path::Probe, State::Probing { interval_ms, .. }) => {
                let interval_ms = interval_ms.saturating_mul(2).clamp(first, max);
                self.state = State::Open {
                    until_ms: now_ms.saturating_add(interval_ms),
                    interval_ms,
                };
            }
            (Path::Buffer, State::Closed { failures }) => {
                let failures = failures + 1;
                self.state = if failures >= self.settings.failures {
                    State::Open {
                        until_ms: now_ms.saturating_add(first),
                        interval_ms: first,
                    }
                } else {
                    State::Closed { failures }
                };
            }
            // A failure of a request that started before the breaker opened, or of a probe
            // already replaced: it tells nothing new.
            _ => {}
        }
    }

    /// `true` while requests are being sent straight to the spill (open, or probing).
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }
}
