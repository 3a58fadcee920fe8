//! Gathering in the isolate: one Durable Object request carries several client requests.
//!
//! A batcher answers every client request it gathers with its own outcome, but each of them
//! used to be its own Durable Object request, billed ($0.15 per million) beside the Workers
//! request the client already costs: at 1,000 requests/s that alone put group commit at 1.44x
//! the floor. Here the first small request of an isolate for a batcher opens a *gathering*
//! and, for the time [`super::gather_for`] decides (zero when nothing is expected to join,
//! so a lone request pays no extra wait), collects the isolate's other requests for the same
//! batcher. Then it alone (the *leader*) makes the one Durable Object request, a bundle
//! ([`super::encode_bundle`]), and hands each other request (a *follower*) its own answer.
//!
//! # What crosses between requests, and why that is safe on Workers
//!
//! workerd forbids one request from using another's I/O objects (streams, request and response
//! bodies: "Cannot perform I/O on behalf of a different request"). Nothing of the kind crosses
//! here: a follower hands the leader plain Rust values (its encoded events), and gets back
//! plain Rust values (its decoded [`Answer`]); the Durable Object request, its body and its
//! response belong to the leader's request alone, and the leader reads the response to bytes
//! before it answers anyone. What matters as much is *where* a request resumes: the isolate
//! runs every request's Rust future on one executor, and a future woken directly by another
//! request's code is polled in that other request's context, where the `Response` it then
//! builds is refused (measured under `wrangler dev`: some followers got `500`). So a request
//! never wakes another's future itself: each hand-over ([`Handoff`], and the seal that wakes a
//! leader early) goes through [`Runtime::wake_up`], a JavaScript promise made by the waiting
//! request, whose continuation workerd runs in the request that made it.
//!
//! # Every follower keeps its guarantees
//!
//! - `202` only once the buffer holds its events: its answer is the batcher's report of its
//!   own events, as if it had asked alone.
//! - The deadline: a follower waits for its answer under its own deadline (`deliver`); its
//!   submission's `wait_ms` is shortened by the time it gathered, and the batcher shortens its
//!   window by it too (`waited_ms`), so no request waits more than one window in all.
//! - The fallback: when the leader's Durable Object request fails, every follower hears the
//!   error at once and sends directly. When the leader's future ends before it answered (its
//!   client went away and the runtime dropped it, or its own deadline passed), dropping it
//!   drops the followers' channels and closes the gathering, so each follower falls back at
//!   once too. A leader that is neither answered nor dropped (its request's I/O cancelled
//!   and its future never woken again) leaves its followers to their own deadlines: then the
//!   spill, or `503` with `Retry-After`, as when a batcher does not answer; never a false
//!   `202`. Events the batcher did send before a fallback are stored once all the same (same
//!   ids, the consumer's `ON CONFLICT`).
//!
//! It does not decide whether to batch or for how long (`advice`), and does not send to the
//! buffer (the batcher does).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::select;

use super::wire::{decode_answer, decode_answers, encode_bundle, encode_submission_reporting};
use super::{Answer, Submission};
use crate::ports::{BatcherLink, Runtime, Wake};

/// At most this many client requests in one Durable Object request: one more seals the
/// gathering (its leader asks at once) and opens the next.
pub const GATHER_MAX_REQUESTS: usize = 256;
/// At most this many bytes of events in one Durable Object request (far below the 100 MB a
/// Workers request body may have; a batcher's flush is at most one buffer call anyway).
pub const GATHER_MAX_BYTES: usize = 1 << 20;

/// What a gathered request hears: its answer, or why the leader's request did not bring one.
type Heard = Result<Answer, String>;

/// The isolate's open gatherings, one per batcher name at most. One per isolate, kept between
/// its requests (like the advisor); single-threaded, never borrowed across an `await`.
#[derive(Debug, Default)]
pub struct Gatherer {
    open: RefCell<HashMap<String, Rc<Gathering>>>,
    /// The isolate's requests inside [`Gatherer::submit`] now.
    in_flight: std::cell::Cell<usize>,
    /// When a request last asked each batcher at once (without gathering): the batch it
    /// opened there stays open a window, which a gathering opened meanwhile should reach.
    asked_alone: RefCell<HashMap<String, u64>>,
}

/// Counts a request inside [`Gatherer::submit`] until its future ends, answered or dropped.
struct InFlight<'a>(&'a std::cell::Cell<usize>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

#[derive(Debug, Default)]
struct Gathering {
    inner: RefCell<Parts>,
}

#[derive(Debug, Default)]
struct Parts {
    /// The requests gathered, each with when it arrived (runtime ms); the leader's first.
    submissions: Vec<(Submission, u64)>,
    /// Where each follower hears its answer, in the order of `submissions[1..]`.
    followers: Vec<Handoff<Heard>>,
    bytes: usize,
    /// Wakes the leader early: the gathering is full.
    seal: Option<Wake>,
}

/// A value one request hands another: put in a shared slot, then the receiver is woken
/// through [`Runtime::wake_up`], so that it resumes in its own request's context, never in
/// the sender's (see the module's notes). Dropped unsent, it wakes the receiver to an empty
/// slot.
struct Handoff<T> {
    value: Rc<RefCell<Option<T>>>,
    wake: Wake,
}

impl<T> Handoff<T> {
    fn send(self, value: T) {
        *self.value.borrow_mut() = Some(value);
        self.wake.wake();
    }
}

impl<T> std::fmt::Debug for Handoff<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handoff")
    }
}

/// A [`Handoff`] and the future that hears it: the value, or `None` when it was dropped unsent.
fn handoff<T: 'static, R: Runtime>(
    rt: &R,
) -> (Handoff<T>, impl std::future::Future<Output = Option<T>>) {
    let (wake, woken) = rt.wake_up();
    let value = Rc::new(RefCell::new(None));
    let heard = value.clone();
    (Handoff { value, wake }, async move {
        woken.await;
        heard.borrow_mut().take()
    })
}

impl Parts {
    fn fits(&self, bytes: usize) -> bool {
        self.submissions.len() < GATHER_MAX_REQUESTS
            && self.bytes.saturating_add(bytes) <= GATHER_MAX_BYTES
    }
}

/// Closes the leader's gathering however the leader's future ends: answered, or dropped before
/// (its followers then hear at once that no answer comes).
struct Lead<'a> {
    open: &'a RefCell<HashMap<String, Rc<Gathering>>>,
    name: &'a str,
    gathering: Rc<Gathering>,
}

impl Lead<'_> {
    fn close(&self) {
        let mut open = self.open.borrow_mut();
        if open
            .get(self.name)
            .is_some_and(|g| Rc::ptr_eq(g, &self.gathering))
        {
            open.remove(self.name);
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.close();
        // Dropping the channels tells the followers still waiting.
        self.gathering.inner.borrow_mut().followers.clear();
    }
}

/// A gathering that should reach a batch already open at the batcher ends this fraction of
/// the window before that batch closes (1/4: 5 ms of 20), for the Durable Object request's
/// way there.
const REACH_MARGIN: u64 = 4;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn size(submission: &Submission) -> usize {
    submission.events.iter().map(|e| e.text.len()).sum()
}

impl Gatherer {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many of the isolate's requests wait on a batcher now (the advisor gathers while
    /// requests overlap, [`super::gather_for`]).
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Whether a gathering is open for the batcher `name` (tests).
    pub fn is_open(&self, name: &str) -> bool {
        self.open.borrow().contains_key(name)
    }

    /// Asks the batcher `name` for `submission`'s answer: with a gathering open for it, by
    /// joining it; otherwise by opening one for `gather` (or asking at once, for zero) and
    /// leading it. `Err` says why no answer came (the caller then sends directly).
    pub async fn submit<R: Runtime>(
        &self,
        link: &dyn BatcherLink,
        rt: &R,
        name: &str,
        submission: Submission,
        gather: Duration,
    ) -> Heard {
        let now = rt.now_ms();
        self.in_flight.set(self.in_flight.get() + 1);
        let _in_flight = InFlight(&self.in_flight);
        let bytes = size(&submission);
        let joined = {
            let mut open = self.open.borrow_mut();
            match open.get(name).cloned() {
                Some(gathering) => {
                    let mut parts = gathering.inner.borrow_mut();
                    if parts.fits(bytes) {
                        let (tx, rx) = handoff(rt);
                        parts.submissions.push((submission, now));
                        parts.followers.push(tx);
                        parts.bytes += bytes;
                        Ok(rx)
                    } else {
                        // Full: its leader asks now; this request leads the next one.
                        if let Some(seal) = parts.seal.take() {
                            seal.wake();
                        }
                        drop(parts);
                        open.remove(name);
                        Err(submission)
                    }
                }
                None => Err(submission),
            }
        };
        let submission = match joined {
            Ok(rx) => {
                return rx.await.unwrap_or_else(|| {
                    Err("the request that carried it to the batcher ended first".into())
                })
            }
            Err(submission) => submission,
        };

        let (seal, sealed) = rt.wake_up();
        let gathering = Rc::new(Gathering {
            inner: RefCell::new(Parts {
                submissions: vec![(submission, now)],
                followers: Vec::new(),
                bytes,
                seal: Some(seal),
            }),
        });
        // A request of this isolate asked this batcher alone less than a window ago: its batch
        // there is still open, so gather only until shortly before it closes
        // ([`REACH_MARGIN`] of the window), for the bundle to join it rather than flush alone.
        let gather = match self.asked_alone.borrow().get(name) {
            Some(&at) if !gather.is_zero() && now < at.saturating_add(ms(gather)) => {
                let until = at + ms(gather) - ms(gather) / REACH_MARGIN;
                Duration::from_millis(until.saturating_sub(now))
            }
            _ => gather,
        };
        if gather.is_zero() {
            self.asked_alone.borrow_mut().insert(name.to_owned(), now);
        }
        let lead = Lead {
            open: &self.open,
            name,
            gathering: gathering.clone(),
        };
        if !gather.is_zero() {
            self.open
                .borrow_mut()
                .insert(name.to_owned(), gathering.clone());
            select(Box::pin(rt.sleep(gather)), sealed).await;
            lead.close();
        }
        let (submissions, followers) = {
            let mut parts = gathering.inner.borrow_mut();
            (
                std::mem::take(&mut parts.submissions),
                std::mem::take(&mut parts.followers),
            )
        };
        let asked = rt.now_ms();
        let submissions: Vec<Submission> = submissions
            .into_iter()
            .map(|(mut s, arrived)| {
                let waited = asked.saturating_sub(arrived);
                s.waited_ms = waited;
                s.wait_ms = s.wait_ms.saturating_sub(waited);
                s
            })
            .collect();
        let heard = ask(link, name, &submissions).await;
        match heard {
            Ok(mut answers) => {
                let mine = answers.remove(0);
                for (tx, answer) in followers.into_iter().zip(answers) {
                    // A follower may have gone (its client left, its deadline passed).
                    tx.send(Ok(answer));
                }
                Ok(mine)
            }
            Err(problem) => {
                for tx in followers {
                    tx.send(Err(problem.clone()));
                }
                Err(problem)
            }
        }
    }
}

/// One Durable Object request for `submissions` (one as a plain submission, several as a
/// bundle); their answers in order, or why not.
async fn ask(
    link: &dyn BatcherLink,
    name: &str,
    submissions: &[Submission],
) -> Result<Vec<Answer>, String> {
    let one = match submissions {
        [one] => Some(one),
        _ => None,
    };
    let body = match one {
        Some(s) if s.waited_ms == 0 => {
            encode_submission_reporting(&s.group, s.wait_ms, s.direct, &s.events)
        }
        _ => encode_bundle(submissions),
    };
    let answer = link.submit(name, body).await.map_err(|e| e.to_string())?;
    let answers = if one.is_some_and(|s| s.waited_ms == 0) {
        decode_answer(&answer).map(|a| vec![a])
    } else {
        decode_answers(&answer)
    }
    .map_err(|e| e.to_string())?;
    if answers.len() != submissions.len() {
        return Err(format!(
            "the batcher answered {} of {} gathered requests",
            answers.len(),
            submissions.len()
        ));
    }
    Ok(answers)
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::time::Duration;

    use futures_channel::oneshot;
    use futures_util::future::{join, join_all, select, Either, LocalBoxFuture};
    use spillway_shared::{encode_events, BufferLimits, Event, RawJson};
    use uuid::Uuid;

    use super::*;
    use crate::config::tests::config_with;
    use crate::ports::BatcherError;
    use crate::testkit::{FakeQueue, FakeRuntime, LocalBatcher};

    const WINDOW: Duration = Duration::from_millis(20);

    fn submission(n: u128) -> Submission {
        let event = Event {
            id: Uuid::from_u128(n + 1),
            event_type: "page_view".into(),
            occurred_at: None,
            event_time: None,
            received_at: chrono::DateTime::from_timestamp_millis(1_764_316_800_123).expect("time"),
            key_id: "key0".into(),
            edge: None,
            source: Default::default(),
            data: RawJson::from_json(&format!("{{\"request\":{n}}}")).expect("json"),
        };
        Submission {
            group: "key0".into(),
            wait_ms: 2_000,
            direct: 0,
            waited_ms: 0,
            events: encode_events(&[event], &BufferLimits::default()).expect("encodes"),
        }
    }

    /// `n` requests for the batcher `local/0`, submitted at the same moment; their answers.
    async fn submit_together(
        gatherer: &Gatherer,
        link: &dyn BatcherLink,
        rt: &FakeRuntime,
        n: u128,
    ) -> Vec<Heard> {
        let asks = (0..n).map(|n| gatherer.submit(link, rt, "local/0", submission(n), WINDOW));
        join_all(asks).await
    }

    fn batcher() -> LocalBatcher {
        let config = config_with(&[("BATCH_WINDOW_MS", "20")]).expect("config");
        LocalBatcher::new(&config, FakeQueue::new(vec![]))
    }

    fn acked(heard: &Heard) -> bool {
        heard
            .as_ref()
            .is_ok_and(|a| a.report.unacknowledged.is_empty())
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_of_an_isolate_share_one_durable_object_request() {
        let link = batcher();
        let rt = FakeRuntime::new();
        let gatherer = Gatherer::new();
        let start = rt.now_ms();
        // 30 requests arrive 0.5 ms apart, all for the same batcher: the first gathers for the
        // window, the others join it.
        let asks = (0..30u128).map(|n| {
            let (gatherer, link, rt) = (&gatherer, &link, &rt);
            async move {
                rt.sleep(Duration::from_micros(500 * n as u64)).await;
                let heard = gatherer
                    .submit(link, rt, "local/0", submission(n), WINDOW)
                    .await;
                (heard, rt.now_ms() - start)
            }
        });
        let heard = join_all(asks).await;
        assert!(heard.iter().all(|(h, _)| acked(h)), "{heard:?}");
        // One Durable Object request carried all 30, in one flush, in one SQS call.
        assert_eq!(link.names(), vec!["local/0".to_owned()]);
        let flushes = link.flushes();
        assert_eq!(flushes.len(), 1, "{flushes:?}");
        assert_eq!((flushes[0].requests, flushes[0].calls), (30, 1));
        assert_eq!(link.queue().calls().len(), 1);
        let mut sent = link.queue().sent_event_ids();
        sent.sort();
        assert_eq!(
            sent,
            (0..30u128)
                .map(|n| Uuid::from_u128(n + 1))
                .collect::<Vec<_>>()
        );
        // The batcher waited only what was left of the window: nobody waited more than one
        // window in all (the first request the whole window, the last one less).
        let waits: Vec<u64> = heard.iter().map(|(_, ms)| *ms).collect();
        assert!(
            waits.iter().all(|&ms| ms <= WINDOW.as_millis() as u64 + 1),
            "{waits:?}"
        );
        assert!(!gatherer.is_open("local/0"));
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_to_gather_a_request_asks_at_once() {
        let link = batcher();
        let rt = FakeRuntime::new();
        let gatherer = Gatherer::new();
        // The batcher itself waits its window for company from other isolates, as without
        // gathering: the isolate adds nothing.
        let start = rt.now_ms();
        let heard = gatherer
            .submit(&link, &rt, "local/0", submission(1), Duration::ZERO)
            .await;
        assert!(acked(&heard));
        assert_eq!(rt.now_ms() - start, WINDOW.as_millis() as u64);
        assert_eq!(link.flushes()[0].calls, 1);
        assert!(!gatherer.is_open("local/0"));
    }

    #[tokio::test(start_paused = true)]
    async fn different_batchers_gather_apart_and_a_full_gathering_goes_at_once() {
        let link = batcher();
        let rt = FakeRuntime::new();
        let gatherer = Gatherer::new();
        let asks = (0..(GATHER_MAX_REQUESTS as u128 + 4)).map(|n| {
            let name = if n % 2 == 0 { "local/0" } else { "local/1" };
            let (gatherer, link, rt) = (&gatherer, &link, &rt);
            async move { gatherer.submit(link, rt, name, submission(n), WINDOW).await }
        });
        let heard = join_all(asks).await;
        assert!(heard.iter().all(acked));
        // 130 per batcher, at most 256 per gathering: one Durable Object request each.
        let mut names = link.names();
        names.sort();
        assert_eq!(names, vec!["local/0".to_owned(), "local/1".to_owned()]);

        // 300 for one batcher: the 257th seals the first gathering (its leader asks at once)
        // and opens the next.
        let link = batcher();
        let heard = submit_together(&gatherer, &link, &rt, 300).await;
        assert!(heard.iter().all(acked));
        assert_eq!(link.names().len(), 2);
        let calls: u32 = link.flushes().iter().map(|f| f.calls).sum();
        let requests: u32 = link.flushes().iter().map(|f| f.requests).sum();
        assert_eq!(requests, 300);
        assert!(calls <= 2, "{:?}", link.flushes());
    }

    /// A link that fails, or answers only once told to.
    #[derive(Debug, Default)]
    struct Held {
        calls: Cell<u32>,
        fail: bool,
        release: RefCell<Option<oneshot::Receiver<()>>>,
    }

    impl BatcherLink for Held {
        fn submit<'a>(
            &'a self,
            _name: &'a str,
            _submission: Vec<u8>,
        ) -> LocalBoxFuture<'a, Result<Vec<u8>, BatcherError>> {
            self.calls.set(self.calls.get() + 1);
            let release = self.release.borrow_mut().take();
            Box::pin(async move {
                if let Some(release) = release {
                    let _ = release.await;
                }
                if self.fail {
                    Err(BatcherError("no such object".into()))
                } else {
                    std::future::pending().await
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_leaders_request_fails_every_follower_hears_it_at_once() {
        let link = Held {
            fail: true,
            ..Held::default()
        };
        let rt = FakeRuntime::new();
        let gatherer = Gatherer::new();
        let start = rt.now_ms();
        let heard = submit_together(&gatherer, &link, &rt, 5).await;
        assert_eq!(link.calls.get(), 1);
        assert!(
            heard
                .iter()
                .all(|h| h.as_ref().is_err_and(|e| e.contains("no such object"))),
            "{heard:?}"
        );
        // Heard when the leader did: after the window, not at a deadline.
        assert_eq!(rt.now_ms() - start, WINDOW.as_millis() as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_leader_is_dropped_its_followers_hear_at_once_and_the_gathering_closes() {
        let (release, held) = oneshot::channel();
        let link = Held {
            release: RefCell::new(Some(held)),
            ..Held::default()
        };
        let rt = FakeRuntime::new();
        let gatherer = Gatherer::new();
        // The leader's client goes away 5 ms into the window (its request's future dropped).
        let leader = Box::pin(gatherer.submit(&link, &rt, "local/0", submission(0), WINDOW));
        let gone = Box::pin(rt.sleep(Duration::from_millis(5)));
        let follower = async {
            rt.sleep(Duration::from_millis(1)).await;
            gatherer
                .submit(&link, &rt, "local/0", submission(1), WINDOW)
                .await
        };
        let start = rt.now_ms();
        // The leader's future is dropped as soon as its client is gone (`select` would
        // otherwise hand it back, alive).
        let dropped = async { matches!(select(leader, gone).await, Either::Right(_)) };
        let (dropped, heard) = join(dropped, follower).await;
        assert!(dropped, "the leader was dropped");
        assert!(heard.is_err_and(|e| e.contains("ended first")));
        assert_eq!(
            rt.now_ms() - start,
            5,
            "heard when the leader went, not later"
        );
        assert!(
            !gatherer.is_open("local/0"),
            "nobody joins a gathering without a leader"
        );
        assert_eq!(link.calls.get(), 0);
        drop(release);

        // Dropped while its Durable Object request is out: the same.
        let (release, held) = oneshot::channel::<()>();
        *link.release.borrow_mut() = Some(held);
        let leader = Box::pin(gatherer.submit(&link, &rt, "local/0", submission(2), WINDOW));
        let gone = Box::pin(rt.sleep(Duration::from_millis(30)));
        let follower = async {
            rt.sleep(Duration::from_millis(1)).await;
            gatherer
                .submit(&link, &rt, "local/0", submission(3), WINDOW)
                .await
        };
        let dropped = async { matches!(select(leader, gone).await, Either::Right(_)) };
        let (dropped, heard) = join(dropped, follower).await;
        assert!(dropped);
        assert!(heard.is_err());
        assert_eq!(link.calls.get(), 1);
        drop(release);
    }
}
