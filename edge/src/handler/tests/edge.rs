//! The harness of the native request-path tests (these, and those of group commit and the
//! spill): `handle` over the testkit's fakes, and the answer with the assertions they use.

use std::cell::RefCell;

use http::Request;
use serde_json::Value;
use spillway_shared::{open, Event};
use uuid::Uuid;

use crate::config::tests::config_with;
use crate::config::Config;
use crate::deliver::group_commit::{Advisor, AdvisorSettings, Gatherer};
use crate::deliver::spill::{Breaker, BreakerSettings};
use crate::handler::{handle, Deps, GroupCommit, Handled, Spill};
use crate::ports::BatcherLink;
use crate::ports::BodySource;
use crate::testkit::{
    envelope_keyring, FakeLimiter, FakeQueue, FakeRuntime, FakeSpill, LocalBatcher,
};

/// An edge over in-memory fakes.
pub(crate) struct Edge {
    pub(crate) config: Config,
    pub(crate) queue: FakeQueue,
    pub(crate) limiter: Option<FakeLimiter>,
    pub(crate) rt: FakeRuntime,
    /// Group commit, when a test asks for it ([`Edge::batching`]).
    pub(crate) batcher: Option<LocalBatcher>,
    /// The spill queue, when a test asks for it ([`Edge::spilling`]), and the breaker.
    pub(crate) spill: Option<FakeSpill>,
    pub(crate) breaker: RefCell<Breaker>,
    /// The isolate's group-commit advisor.
    pub(crate) advisor: RefCell<Advisor>,
    /// The isolate's gathering of small requests for one Durable Object request.
    pub(crate) gatherer: Gatherer,
}

impl Edge {
    pub(crate) fn new() -> Self {
        Self::with(&[])
    }

    pub(crate) fn with(overrides: &[(&'static str, &str)]) -> Self {
        let config = config_with(overrides).expect("valid config");
        Self {
            advisor: RefCell::new(Advisor::new(AdvisorSettings::from_config(&config))),
            gatherer: Gatherer::new(),
            config,
            queue: FakeQueue::new(vec![]),
            limiter: None,
            rt: FakeRuntime::new(),
            batcher: None,
            spill: None,
            breaker: RefCell::new(Breaker::new(BreakerSettings::for_deadline(
                std::time::Duration::from_secs(8),
            ))),
        }
    }

    /// With a spill queue (and a breaker set for the configured deadline).
    pub(crate) fn spilling(mut self) -> Self {
        self.spill = Some(FakeSpill::new());
        self.breaker = RefCell::new(Breaker::new(BreakerSettings::for_deadline(
            self.config.retry.deadline,
        )));
        self
    }

    pub(crate) fn spill(&self) -> &FakeSpill {
        self.spill.as_ref().expect("spilling")
    }

    /// With a batcher sending to its own `queue` (the edge's queue is the direct path).
    pub(crate) fn batching(mut self, queue: FakeQueue) -> Self {
        self.batcher = Some(LocalBatcher::new(&self.config, queue));
        self
    }

    pub(crate) fn queue(mut self, queue: FakeQueue) -> Self {
        self.queue = queue;
        self
    }

    pub(crate) async fn call<B: BodySource>(&self, req: Request<B>) -> Answer {
        let deps = Deps {
            config: &self.config,
            queue: &self.queue,
            limiter: self.limiter.as_ref(),
            rt: &self.rt,
            batcher: self.batcher.as_ref().map(|b| GroupCommit {
                link: b as &dyn BatcherLink,
                advisor: &self.advisor,
                gatherer: &self.gatherer,
            }),
            spill: self.spill.as_ref().map(|queue| Spill {
                queue,
                breaker: &self.breaker,
            }),
        };
        Answer(handle(&deps, req).await)
    }

    /// Every event that reached the queue, from the message bodies, each of which must be
    /// sealed with the configured key (what the consumer verifies).
    pub(crate) fn queued(&self) -> Vec<Event> {
        self.queue
            .bodies()
            .iter()
            .flat_map(|b| open(b, &envelope_keyring()).expect("a sealed envelope"))
            .collect()
    }
}

/// One answer and its log line.
#[derive(Debug)]
pub(crate) struct Answer(pub(crate) Handled);

impl Answer {
    pub(crate) fn status(&self) -> u16 {
        self.0.response.status().as_u16()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.0
            .response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(self.0.response.body()).expect("JSON body")
    }

    pub(crate) fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub(crate) fn ids(&self) -> Vec<Uuid> {
        self.json()["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| {
                v.as_str()
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .expect("uuid")
            })
            .collect()
    }

    /// Asserts `200` (the collector routes' success) and returns the body.
    #[track_caller]
    pub(crate) fn ok(&self) -> Value {
        assert_eq!(self.status(), 200, "{}", self.0.response.body());
        self.json()
    }

    /// Asserts an error status and code (in the body and the log line, as JSON), and returns
    /// the error object.
    #[track_caller]
    pub(crate) fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status(), status, "{}", self.0.response.body());
        assert_eq!(self.code(), code, "{}", self.0.response.body());
        assert_eq!(self.0.log.code.map(str::to_owned), Some(code.to_owned()));
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        self.json()["error"].clone()
    }
}
