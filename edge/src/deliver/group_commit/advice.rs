//! Whether a group commit pays, and over how many batchers: the batcher's side (what its
//! flushes carried, [`FlushStats`]) and the isolate's side (where its next small request goes,
//! [`Advisor`]). Pure: clock readings in, decisions out; the request path and the Durable
//! Object only carry the numbers. It does not send anything, and knows nothing of the wire.
//!
//! # Break-even
//!
//! Per small request, with prices per unit (not per million):
//!
//! - direct: one call to the buffer, `b` (SQS: one request, $0.40 per million, for a request
//!   below 64 KiB);
//! - batched, `r` requests per flush: one Durable Object request each, `o` ($0.15 per
//!   million), plus the flush's share of one call, `b / r`, plus its share of the batcher's
//!   duration, `d / r`, where `d` = 0.128 GB x the batcher's active seconds per flush x $12.50
//!   per million GB-s (an object is billed for its wall time while a request is in it, at
//!   128 MB, whatever it uses).
//!
//! Batching pays when `o + (b + d) / r < b`, that is when `r > (b + d) / (b - o)`: with SQS and
//! no duration, `r > 0.40 / 0.25 = 1.6`; with the 35 ms a 20 ms window and one send keep a
//! batcher active, `d` = $0.056 per million flushes and `r > 1.82`. When `b <= o` it never
//! pays: with Kinesis a shared call saves no call price (Kinesis bills records by size, not
//! calls), only the rounding of small records, at most 1 KiB at $0.08 per GB ($0.076 per
//! million) on demand or one 25 KB PUT payload unit ($0.014 per million) provisioned, both below
//! a Durable Object request, so an edge on Kinesis sends directly (figure 9 of BENCHMARKS.md
//! measured it). Workers requests are paid either way and cancel out.
//!
//! An isolate gathers its own concurrent small requests and carries them to the batcher in one
//! Durable Object request ([`super::Gatherer`]): a flush of `r` requests then costs `c` Durable
//! Object requests, `c <= r` (one per isolate that took part), and batching pays when
//! `c o + b + d < r b`, that is when `r > 1 + (c o + d) / b`; with `c = r` this is the rule
//! above. With one busy isolate (`c = 1`) and 35 ms of activity, SQS pays from `r > 1.52`. The prices are those of
//! xtask/src/prices.rs (one table, with sources; a test of xtask checks these against it).
//!
//! # What `r` is
//!
//! The larger of what the batcher's recent flushes carried (a decayed average) and what the
//! arrival rate predicts: a flush opened by one request gathers those arriving in its window,
//! `r = 1 + rate x window`. The rate counts requests that reached the batcher and those its
//! isolates sent directly meanwhile (each submission reports them), so a batcher keeps seeing
//! the traffic it could batch while the isolates send directly. The isolate also knows its own
//! rate, a lower bound of the batcher's: when that alone says batching pays, it batches
//! without asking.
//!
//! # Probing
//!
//! Below break-even, an isolate sends directly for a hold, then one request probes (goes through
//! the batcher and brings back its advice). The hold starts at [`HOLD_MIN_MS`] and doubles to
//! [`HOLD_MAX_MS`] while probes keep saying no: a probe costs a Durable Object request and a
//! window of latency, so at most one per hold per isolate is paid for traffic that other
//! isolates may have grown meanwhile. A fresh isolate asks first: it does not know the others.
//!
//! # Shards
//!
//! Cloudflare documents a soft limit of about 1,000 requests/s per Durable Object. An isolate
//! spreads its requests over enough batchers per location that each sees at most
//! [`SHARD_TARGET_RPS`] (half the limit: the estimate lags, and bursts come above it), between
//! `BATCH_SHARDS` and `BATCH_MAX_SHARDS`; it shrinks back once the traffic would fit in fewer
//! with room to spare ([`SHRINK_BELOW`]), so a shard count does not flap at the boundary.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{BufferKind, Config};

/// A Durable Object request, $ per million (xtask/src/prices.rs `do_request`).
pub const DO_REQUEST_USD_PER_M: f64 = 0.15;
/// Durable Object duration, $ per million GB-s (xtask/src/prices.rs `do_gb_s`).
pub const DO_GB_S_USD_PER_M: f64 = 12.50;
/// The memory a Durable Object's duration is billed at, GB.
pub const DO_GB: f64 = 0.128;
/// An SQS request (up to 64 KiB), $ per million (xtask/src/prices.rs `sqs_request`).
pub const SQS_REQUEST_USD_PER_M: f64 = 0.40;
/// Kinesis on-demand ingest, $ per GB (xtask/src/prices.rs `kinesis_od_in_gb`): what one
/// record's rounding up to 1 KiB can cost at most, and so the most a shared record saves.
pub const KINESIS_OD_IN_USD_PER_GB: f64 = 0.08;
/// Kinesis provisioned, $ per million PUT payload units (xtask/src/prices.rs
/// `kinesis_put_unit`).
pub const KINESIS_PUT_UNIT_USD_PER_M: f64 = 0.014;

/// Each batcher shard is kept at or below this many requests/s: half the documented soft limit
/// of about 1,000 requests/s per Durable Object.
pub const SHARD_TARGET_RPS: f64 = 500.0;
/// Shards shrink by one or more only once the traffic fits in fewer at this fraction of
/// [`SHARD_TARGET_RPS`] each.
pub const SHRINK_BELOW: f64 = 0.7;
/// First and longest hold between probes while batching does not pay.
pub const HOLD_MIN_MS: u64 = 30_000;
pub const HOLD_MAX_MS: u64 = 300_000;
/// Time constant of the decaying arrival rates: long enough to smooth the direct requests an
/// isolate reports in one lump at its next submission.
pub const RATE_TAU_MS: f64 = 2_000.0;
/// Weight of the newest flush in the decayed averages per flush.
const FLUSH_WEIGHT: f64 = 0.25;
/// What a batcher's active time per flush is taken to be before one has said: the window and
/// one send to the buffer.
const SEND_MS_GUESS: f64 = 15.0;

/// What group commit costs and saves per request, in dollars per unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pricing {
    /// One Durable Object request.
    pub do_request: f64,
    /// One millisecond of one active batcher.
    pub do_ms: f64,
    /// What a request sending directly pays the buffer that a shared call saves: one call.
    pub direct_call: f64,
}

impl Pricing {
    /// The prices for the configured buffer.
    pub fn for_buffer(kind: BufferKind) -> Self {
        let direct_call = match kind {
            BufferKind::Sqs => SQS_REQUEST_USD_PER_M / 1e6,
            // At most one KiB of rounding (on demand) or one PUT payload unit (provisioned).
            BufferKind::Kinesis => (KINESIS_OD_IN_USD_PER_GB * 1024.0 / f64::from(1u32 << 30))
                .max(KINESIS_PUT_UNIT_USD_PER_M / 1e6),
        };
        Self {
            do_request: DO_REQUEST_USD_PER_M / 1e6,
            do_ms: DO_GB * DO_GB_S_USD_PER_M / 1e6 / 1e3,
            direct_call,
        }
    }

    /// Requests per flush above which batching is cheaper than sending directly, when a flush
    /// keeps the batcher active `active_ms` and each request is its own Durable Object request
    /// (nothing gathered in the isolates); `None` when it never is.
    pub fn break_even(&self, active_ms: f64) -> Option<f64> {
        let saved = self.direct_call - self.do_request;
        (saved > 0.0).then(|| (self.direct_call + self.do_ms * active_ms.max(0.0)) / saved)
    }

    /// Whether `per_flush` requests per flush, each its own Durable Object request, keeping the
    /// batcher active `active_ms`, pay.
    pub fn pays(&self, per_flush: f64, active_ms: f64) -> bool {
        self.pays_with_calls(per_flush, per_flush, active_ms)
    }

    /// Whether `per_flush` requests per flush, carried by `calls` Durable Object requests
    /// (`calls <= per_flush`: the isolates gathered), keeping the batcher active `active_ms`,
    /// cost less than sending each directly: `calls o + b + d < per_flush b`.
    pub fn pays_with_calls(&self, per_flush: f64, calls: f64, active_ms: f64) -> bool {
        let calls = calls.clamp(1.0_f64.min(per_flush), per_flush.max(1.0));
        let batched = calls * self.do_request + self.direct_call + self.do_ms * active_ms.max(0.0);
        batched < per_flush * self.direct_call
    }
}

/// What a batcher tells each request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    /// Requests per flush, a decayed average of its recent flushes (1 before any).
    pub per_flush: f64,
    /// Requests/s arriving at it, and sent directly by its isolates meanwhile (decayed).
    pub rps: f64,
    /// Milliseconds it was active per flush (decayed average).
    pub active_ms: f64,
    /// Durable Object requests per flush (decayed average; fewer than `per_flush` where the
    /// isolates gathered). Absent from older batchers: then each request was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_flush: Option<f64>,
}

/// A rate that decays with [`RATE_TAU_MS`]: each arrival adds `1 / tau`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateMeter {
    rate: f64,
    at_ms: u64,
}

impl RateMeter {
    /// The rate (per second) at `now_ms`.
    pub fn rate(&self, now_ms: u64) -> f64 {
        let dt = now_ms.saturating_sub(self.at_ms) as f64;
        self.rate * (-dt / RATE_TAU_MS).exp()
    }

    /// Counts `n` arrivals at `now_ms`.
    pub fn add(&mut self, now_ms: u64, n: u32) {
        self.rate = self.rate(now_ms) + f64::from(n) * 1e3 / RATE_TAU_MS;
        self.at_ms = self.at_ms.max(now_ms);
    }
}

/// The batcher's side: what its arrivals and flushes have been.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlushStats {
    arrivals: RateMeter,
    per_flush: Option<f64>,
    calls_per_flush: Option<f64>,
    active_ms: Option<f64>,
}

impl FlushStats {
    /// A submission arrived, reporting `direct` requests its isolate sent directly since its
    /// last one.
    pub fn arrived(&mut self, now_ms: u64, direct: u32) {
        self.arrivals.add(now_ms, direct.saturating_add(1));
    }

    /// A flush carried `requests`, which came in `calls` Durable Object requests, and kept
    /// the batcher active `active_ms` since the last one.
    pub fn flushed(&mut self, requests: u32, calls: u32, active_ms: u64) {
        let blend =
            |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o + FLUSH_WEIGHT * (new - o)));
        self.per_flush = blend(self.per_flush, f64::from(requests));
        self.calls_per_flush = blend(self.calls_per_flush, f64::from(calls.min(requests)));
        self.active_ms = blend(self.active_ms, active_ms as f64);
    }

    pub fn advice(&self, now_ms: u64, window: Duration) -> Advice {
        Advice {
            per_flush: self.per_flush.unwrap_or(1.0),
            rps: self.arrivals.rate(now_ms),
            active_ms: self
                .active_ms
                .unwrap_or(window.as_secs_f64() * 1e3 + SEND_MS_GUESS),
            calls_per_flush: Some(self.calls_per_flush.unwrap_or(1.0)),
        }
    }
}

/// What an isolate's advisor is set with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdvisorSettings {
    pub window: Duration,
    pub pricing: Pricing,
    /// `BATCH_SHARDS` and `BATCH_MAX_SHARDS` (at least the former).
    pub min_shards: u32,
    pub max_shards: u32,
    /// `BATCH_WHEN=always`: every request goes through a batcher (shards still follow the
    /// rate).
    pub always: bool,
    /// Whether an isolate gathers its requests into one Durable Object request
    /// ([`super::Gatherer`]). On in the Worker; off only in tests that look at one request per
    /// Durable Object request.
    pub gather: bool,
}

impl AdvisorSettings {
    pub fn from_config(config: &Config) -> Self {
        let g = &config.group_commit;
        let min_shards = g.shards.max(1);
        Self {
            window: g.window,
            pricing: Pricing::for_buffer(config.target.kind()),
            min_shards,
            max_shards: g.max_shards.max(min_shards),
            always: g.always,
            gather: true,
        }
    }
}

/// Where a small request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through one of `shards` batchers, reporting `direct` requests sent directly since the
    /// isolate's last submission; a request that finds no gathering open for its batcher
    /// gathers the isolate's others for `gather` before it asks ([`gather_for`]).
    Batcher {
        shards: u32,
        direct: u32,
        gather: Duration,
    },
    /// Directly: batching does not pay now.
    Direct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Every small request goes through a batcher (a fresh isolate starts here).
    Batching,
    /// Directly until `until` (runtime ms), unless the isolate's own rate says batching pays.
    Holding { until: u64 },
    /// One request went to ask; the others go directly until it answers.
    Probing,
}

/// The isolate's side: one per isolate, kept between its requests.
#[derive(Debug, Clone)]
pub struct Advisor {
    settings: AdvisorSettings,
    state: State,
    hold_ms: u64,
    shards: u32,
    /// This isolate's small requests.
    local: RateMeter,
    /// Small requests sent directly since the last submission.
    direct: u32,
    /// The last batcher's active time per flush.
    active_ms: f64,
}

impl Advisor {
    pub fn new(settings: AdvisorSettings) -> Self {
        Self {
            settings,
            state: State::Batching,
            hold_ms: HOLD_MIN_MS,
            shards: settings.min_shards,
            local: RateMeter::default(),
            direct: 0,
            active_ms: settings.window.as_secs_f64() * 1e3 + SEND_MS_GUESS,
        }
    }

    /// The batchers per location it spreads over now.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// Where a small request arriving at `now_ms` goes, with none of the isolate's others
    /// waiting on a batcher.
    pub fn route(&mut self, now_ms: u64) -> Route {
        self.route_with(now_ms, 0)
    }

    /// Where a small request arriving at `now_ms` goes, while `in_flight` of the isolate's
    /// other requests wait on a batcher ([`gather_for`]).
    pub fn route_with(&mut self, now_ms: u64, in_flight: usize) -> Route {
        self.local.add(now_ms, 1);
        let ask = match self.state {
            _ if self.settings.always => true,
            State::Batching => true,
            _ if self.locally_pays(now_ms) => true,
            State::Holding { until } if now_ms >= until => {
                self.state = State::Probing;
                true
            }
            State::Holding { .. } | State::Probing => false,
        };
        if ask {
            Route::Batcher {
                shards: self.shards,
                direct: std::mem::take(&mut self.direct),
                gather: self.gather(self.local.rate(now_ms) / f64::from(self.shards), in_flight),
            }
        } else {
            self.direct = self.direct.saturating_add(1);
            Route::Direct
        }
    }

    /// A batcher answered with `advice` at `now_ms`.
    pub fn heard(&mut self, now_ms: u64, advice: &Advice) {
        self.active_ms = advice.active_ms;
        let local = self.local.rate(now_ms);
        let per_shard = advice.rps.max(local / f64::from(self.shards));
        self.shards = next_shards(
            self.shards,
            (advice.rps * f64::from(self.shards)).max(local),
            self.settings.min_shards,
            self.settings.max_shards,
        );
        let predicted = 1.0 + per_shard * self.settings.window.as_secs_f64();
        let r = advice.per_flush.max(predicted);
        // Durable Object requests per flush: what the batcher saw (an older one says nothing:
        // one per request), at most one per request this isolate would gather into one call.
        let mut calls = advice.calls_per_flush.unwrap_or(advice.per_flush);
        if !self.gather(local / f64::from(self.shards), 0).is_zero() {
            calls = calls.min(
                (r - local / f64::from(self.shards) * self.settings.window.as_secs_f64()).max(1.0),
            );
        }
        if self
            .settings
            .pricing
            .pays_with_calls(r, calls, advice.active_ms)
        {
            self.state = State::Batching;
            self.hold_ms = HOLD_MIN_MS;
        } else {
            self.hold(now_ms);
            self.hold_ms = (self.hold_ms * 2).min(HOLD_MAX_MS);
        }
    }

    /// A request that went to a batcher got no usable answer (it then went directly): a probe
    /// is held again; while batching, each request keeps asking (and falling back).
    pub fn unheard(&mut self, now_ms: u64) {
        if self.state == State::Probing {
            self.hold(now_ms);
        }
    }

    fn hold(&mut self, now_ms: u64) {
        self.state = State::Holding {
            until: now_ms.saturating_add(self.hold_ms),
        };
    }

    /// [`gather_for`], where gathering is on ([`AdvisorSettings::gather`]).
    fn gather(&self, rps_per_shard: f64, in_flight: usize) -> Duration {
        if self.settings.gather {
            gather_for(rps_per_shard, in_flight, self.settings.window)
        } else {
            Duration::ZERO
        }
    }

    /// Whether this isolate's own traffic, alone, fills flushes past break-even (in one
    /// Durable Object request per flush when it gathers them, [`gather_for`]).
    fn locally_pays(&self, now_ms: u64) -> bool {
        let per_shard = self.local.rate(now_ms) / f64::from(self.shards);
        let r = 1.0 + per_shard * self.settings.window.as_secs_f64();
        let calls = if self.gather(per_shard, 0).is_zero() {
            r
        } else {
            1.0
        };
        self.settings
            .pricing
            .pays_with_calls(r, calls, self.active_ms)
    }
}

/// An isolate gathers its own requests for a batcher only where at least this many others are
/// expected within the window: below it, a request would mostly wait for nobody.
pub const GATHER_FROM: f64 = 1.0;

/// How long a request that opens a gathering waits for the isolate's other requests to the
/// same batcher, at `rps_per_shard` small requests/s of this isolate per batcher while
/// `in_flight` of its requests already wait on a batcher: the whole window where
/// [`GATHER_FROM`] others are expected in it, or where requests already overlap (a burst the
/// decayed rate has not caught up with yet), else not at all (the request goes at once, and
/// only the batcher's window is waited). The batcher shortens its own window by the time a
/// submission already waited here, so a request never waits more than one window in all:
/// gathering costs no latency, only the chance that another isolate's requests join the
/// batcher's batch (it flushes as soon as the gathered window is over).
pub fn gather_for(rps_per_shard: f64, in_flight: usize, window: Duration) -> Duration {
    if in_flight > 0 || rps_per_shard.max(0.0) * window.as_secs_f64() >= GATHER_FROM {
        window
    } else {
        Duration::ZERO
    }
}

/// The shard count for `total_rps` at a location, from `current`, within `min..=max`: up at once
/// to keep each at most [`SHARD_TARGET_RPS`], down only once the traffic fits in fewer at
/// [`SHRINK_BELOW`] of it.
pub fn next_shards(current: u32, total_rps: f64, min: u32, max: u32) -> u32 {
    let max = max.max(min).max(1);
    let min = min.max(1);
    let needed = |per_shard: f64| {
        let n = (total_rps.max(0.0) / per_shard).ceil();
        if n >= f64::from(max) {
            max
        } else {
            (n as u32).clamp(min, max)
        }
    };
    let current = current.clamp(min, max);
    let up = needed(SHARD_TARGET_RPS);
    if up > current {
        return up;
    }
    let down = needed(SHARD_TARGET_RPS * SHRINK_BELOW);
    down.min(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(20);

    fn sqs() -> AdvisorSettings {
        AdvisorSettings {
            window: WINDOW,
            pricing: Pricing::for_buffer(BufferKind::Sqs),
            min_shards: 1,
            max_shards: 32,
            always: false,
            gather: true,
        }
    }

    fn advice(per_flush: f64, rps: f64) -> Advice {
        Advice {
            per_flush,
            rps,
            active_ms: 35.0,
            calls_per_flush: None,
        }
    }

    fn batcher(route: Route) -> bool {
        matches!(route, Route::Batcher { .. })
    }

    #[test]
    fn break_even_is_derived_from_the_prices() {
        let sqs = Pricing::for_buffer(BufferKind::Sqs);
        // $0.40 / ($0.40 - $0.15) without duration.
        assert!((sqs.break_even(0.0).expect("pays somewhere") - 1.6).abs() < 1e-9);
        // 35 ms active per flush: 0.128 GB x 0.035 s x $12.50 per million GB-s = $0.056/M.
        let with_duration = sqs.break_even(35.0).expect("pays somewhere");
        assert!(
            (with_duration - (0.40 + 0.056) / 0.25).abs() < 1e-9,
            "{with_duration}"
        );
        assert!(!sqs.pays(1.8, 35.0) && sqs.pays(1.9, 35.0));
        // Kinesis: a shared record saves less than a Durable Object request costs.
        let kinesis = Pricing::for_buffer(BufferKind::Kinesis);
        assert_eq!(kinesis.break_even(0.0), None);
        assert!(!kinesis.pays(500.0, 0.0));
    }

    /// A request that goes to the first batcher at once, reporting `direct` sent directly.
    fn asks_at_once(direct: u32) -> Route {
        Route::Batcher {
            shards: 1,
            direct,
            gather: Duration::ZERO,
        }
    }

    #[test]
    fn below_break_even_sends_directly_and_probes_after_the_hold() {
        let mut a = Advisor::new(sqs());
        // A fresh isolate asks.
        assert_eq!(a.route(0), asks_at_once(0));
        // One request per flush, 1 request/s: batching costs more than it saves.
        a.heard(40, &advice(1.0, 1.0));
        assert_eq!(a.route(1_000), Route::Direct);
        assert_eq!(a.route(2_000), Route::Direct);
        assert_eq!(a.route(40 + HOLD_MIN_MS - 1), Route::Direct);
        // The hold is over: one request probes, reporting the three sent directly; the others
        // go directly while it is out.
        let probe = 40 + HOLD_MIN_MS;
        assert_eq!(a.route(probe), asks_at_once(3));
        assert_eq!(a.route(probe + 5), Route::Direct);
        // Still below: the next hold is twice as long.
        a.heard(probe + 40, &advice(1.0, 1.0));
        let next = probe + 40 + 2 * HOLD_MIN_MS;
        assert_eq!(a.route(next - 1), Route::Direct);
        assert_eq!(a.route(next), asks_at_once(2));
        // Now the batcher's flushes carry 4 requests: every request batches.
        a.heard(next + 40, &advice(4.0, 1.0));
        assert!(batcher(a.route(next + 50)) && batcher(a.route(next + 60)));
    }

    #[test]
    fn an_isolate_gathers_only_where_others_are_expected_and_never_past_the_window() {
        // Nothing to gather: no wait at all.
        assert_eq!(gather_for(10.0, 0, WINDOW), Duration::ZERO);
        assert_eq!(gather_for(0.0, 0, WINDOW), Duration::ZERO);
        assert_eq!(gather_for(49.0, 0, WINDOW), Duration::ZERO);
        // 50 requests/s per batcher: one more expected in 20 ms.
        assert_eq!(gather_for(50.0, 0, WINDOW), WINDOW);
        assert_eq!(gather_for(1_000.0, 0, WINDOW), WINDOW);
        // Requests already overlapping (a burst): gather, whatever the rate says.
        assert_eq!(gather_for(0.5, 3, WINDOW), WINDOW);
        // No window, no gathering.
        assert_eq!(gather_for(1e6, 9, Duration::ZERO), Duration::ZERO);

        // Through the advisor: a fresh isolate's first request asks at once; at 200 req/s of
        // its own, its requests gather.
        let mut a = Advisor::new(sqs());
        assert_eq!(a.route(0), asks_at_once(0));
        let routes: Vec<Route> = (1..=400).map(|i| a.route_with(i * 5, 0)).collect();
        assert!(
            matches!(routes.last(), Some(Route::Batcher { gather, .. }) if *gather == WINDOW),
            "{:?}",
            routes.last()
        );
        assert!(matches!(
            Advisor::new(sqs()).route_with(0, 2),
            Route::Batcher { gather, .. } if gather == WINDOW
        ));
    }

    #[test]
    fn gathered_flushes_pay_from_fewer_requests() {
        let sqs = Pricing::for_buffer(BufferKind::Sqs);
        // A Durable Object request per client request: the old rule (1.82 at 35 ms).
        assert!(!sqs.pays_with_calls(1.8, 1.8, 35.0) && sqs.pays_with_calls(1.9, 1.9, 35.0));
        // One Durable Object request per flush: 1 + (0.15 + 0.056) / 0.40 = 1.515.
        assert!(!sqs.pays_with_calls(1.5, 1.0, 35.0) && sqs.pays_with_calls(1.53, 1.0, 35.0));
        // At 1,000 req/s gathered into one call per 20 ms window, a request costs a fiftieth
        // of a Durable Object request.
        assert!(sqs.pays_with_calls(21.0, 1.0, 35.0));
        // The batcher reports calls per flush; an isolate hearing 3 requests in 1 call batches
        // where 3 calls for 3 requests would also pay, and 1.6 in 1 call pays where 1.6 in 1.6
        // does not.
        let mut a = Advisor::new(AdvisorSettings {
            window: Duration::from_millis(20),
            ..sqs_settings()
        });
        a.route(0);
        a.heard(
            40,
            &Advice {
                per_flush: 1.6,
                rps: 1.0,
                active_ms: 35.0,
                calls_per_flush: Some(1.0),
            },
        );
        assert!(batcher(a.route(50)));
        a.heard(60, &advice(1.6, 1.0));
        assert_eq!(a.route(70), Route::Direct);
    }

    fn sqs_settings() -> AdvisorSettings {
        sqs()
    }

    #[test]
    fn always_batches_whatever_the_advice() {
        let mut a = Advisor::new(AdvisorSettings {
            always: true,
            ..sqs()
        });
        a.route(0);
        a.heard(40, &advice(1.0, 0.5));
        assert!((1..100).all(|i| batcher(a.route(40 + i * 1_000))));
    }

    #[test]
    fn a_probe_that_is_not_answered_is_held_again() {
        let mut a = Advisor::new(sqs());
        a.route(0);
        a.heard(40, &advice(1.0, 0.5));
        assert!(batcher(a.route(40 + HOLD_MIN_MS)));
        // Held for the hold now due (twice the first, since the first probe said no).
        a.unheard(100 + HOLD_MIN_MS);
        assert_eq!(a.route(200 + HOLD_MIN_MS), Route::Direct);
        assert_eq!(a.route(99 + 3 * HOLD_MIN_MS), Route::Direct);
        assert!(batcher(a.route(100 + 3 * HOLD_MIN_MS)));
    }

    #[test]
    fn the_rate_the_batcher_reports_decides_even_with_few_requests_per_flush() {
        let mut a = Advisor::new(sqs());
        a.route(0);
        // 100 requests/s at the batcher (its isolates' direct ones included): a flush would
        // gather 1 + 100 x 0.02 = 3.
        a.heard(40, &advice(1.0, 100.0));
        assert!(batcher(a.route(50)));
        // 20 requests/s: 1.4, below 1.82.
        a.heard(60, &advice(1.0, 20.0));
        assert_eq!(a.route(70), Route::Direct);
    }

    #[test]
    fn an_isolate_busy_enough_alone_batches_without_waiting_for_a_probe() {
        let mut a = Advisor::new(sqs());
        a.route(0);
        a.heard(40, &advice(1.0, 1.0));
        // 10 requests/s of its own: 1.2 per flush, still direct.
        let steady: Vec<Route> = (1..=50).map(|i| a.route(40 + i * 100)).collect();
        assert!(steady.iter().all(|r| *r == Route::Direct));
        // 200 requests/s: within a second its own rate says 1 + 200 x 0.02 = 5.
        let busy: Vec<Route> = (1..=200).map(|i| a.route(5_040 + i * 5)).collect();
        assert_eq!(busy[0], Route::Direct);
        assert!(batcher(*busy.last().expect("routes")), "{:?}", &busy[190..]);
    }

    #[test]
    fn shards_grow_with_the_rate_and_shrink_back() {
        // Up at once past 500 requests/s per shard.
        assert_eq!(next_shards(1, 400.0, 1, 32), 1);
        assert_eq!(next_shards(1, 1_200.0, 1, 32), 3);
        // 1,000 requests/s fit in 2, but not at 70 % of 500 each: stays at 3.
        assert_eq!(next_shards(3, 1_000.0, 1, 32), 3);
        assert_eq!(next_shards(3, 600.0, 1, 32), 2);
        assert_eq!(next_shards(2, 200.0, 1, 32), 1);
        // Within BATCH_SHARDS..=BATCH_MAX_SHARDS.
        assert_eq!(next_shards(1, 1e9, 1, 32), 32);
        assert_eq!(next_shards(1, 0.0, 4, 32), 4);
        assert_eq!(
            next_shards(9, 0.0, 4, 2),
            4,
            "a maximum below the minimum is the minimum"
        );

        // Through the advisor: the batcher's rate is per shard.
        let mut a = Advisor::new(sqs());
        a.route(0);
        a.heard(10, &advice(16.0, 800.0));
        assert_eq!(a.shards(), 2);
        assert_eq!(
            a.route(20),
            Route::Batcher {
                shards: 2,
                direct: 0,
                gather: Duration::ZERO
            }
        );
        a.heard(30, &advice(16.0, 900.0));
        assert_eq!(a.shards(), 4);
        // The traffic falls: back to one.
        a.heard(40, &advice(3.0, 40.0));
        assert_eq!(a.shards(), 1);
    }

    #[test]
    fn the_batcher_counts_direct_requests_in_its_rate_and_averages_its_flushes() {
        let mut s = FlushStats::default();
        let before = s.advice(0, WINDOW);
        assert_eq!((before.per_flush, before.rps), (1.0, 0.0));
        assert!((before.active_ms - 35.0).abs() < 1e-9);
        // One submission reporting 9 sent directly: 10 arrivals, each 1 / 2 s.
        s.arrived(1_000, 9);
        assert!((s.advice(1_000, WINDOW).rps - 5.0).abs() < 1e-9);
        // Decays with the time constant.
        let later = s.advice(3_000, WINDOW).rps;
        assert!((later - 5.0 * (-1.0f64).exp()).abs() < 1e-9, "{later}");
        s.flushed(4, 4, 30);
        s.flushed(8, 2, 50);
        let a = s.advice(3_000, WINDOW);
        assert!((a.per_flush - 5.0).abs() < 1e-9 && (a.active_ms - 35.0).abs() < 1e-9);
    }
}
