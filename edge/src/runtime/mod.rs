//! The Workers runtime under the edge: its entry points ([`fetch`]: requests; [`replay`]: the
//! spill queue's consumer; [`group_commit_object`]: the batchers' Durable Object), and what
//! they share here: the isolate's configuration, buffer client (the one `BUFFER` names, so
//! direct sends, group commits and the spill replay all use it), breaker and group-commit
//! advisor ([`app`]), and the
//! clock, randomness and timers ([`WorkerRuntime`]). Thin adapters only: every decision is in
//! the natively tested modules they call. Built for wasm32 only.

mod fetch;
mod group_commit_object;
mod replay;

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use aws_smithy_async::rt::sleep::SharedAsyncSleep;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use futures_util::future::LocalBoxFuture;
use worker::{js_sys, Env};

use crate::buffer::connector::{DateTimeSource, DelaySleep, FetchHttpClient};
use crate::buffer::Configured;
use crate::config::{Config, ConfigError};
use crate::deliver::group_commit::{Advisor, AdvisorSettings, Gatherer};
use crate::deliver::spill::{Breaker, BreakerSettings};
use crate::ports::{Runtime, Wake};

/// What an isolate builds once: its environment does not change while it lives.
pub(crate) struct App {
    pub(crate) config: Config,
    pub(crate) queue: Configured,
    /// What this isolate has seen of the buffer lately (used only with a spill queue).
    pub(crate) breaker: RefCell<Breaker>,
    /// Whether group commit pays now, over how many batchers (used only with `BATCHER`).
    pub(crate) advisor: RefCell<Advisor>,
    /// The isolate's small requests gathering for one Durable Object request (with `BATCHER`).
    pub(crate) gatherer: Gatherer,
}

thread_local! {
    static APP: OnceCell<Rc<Result<App, ConfigError>>> = const { OnceCell::new() };
}

pub(crate) fn app(env: &Env) -> Rc<Result<App, ConfigError>> {
    APP.with(|cell| cell.get_or_init(|| Rc::new(build(env))).clone())
}

/// The configuration from the Worker's environment: the one place the runtime reads it (the
/// isolate's [`App`] and each group commit's Durable Object).
pub(crate) fn config_from(env: &Env) -> Result<Config, ConfigError> {
    Config::from_env(|name| env.var(name).ok().map(|v| v.to_string()))
}

fn build(env: &Env) -> Result<App, ConfigError> {
    let config = config_from(env)?;
    let queue = buffer_client(&config);
    let breaker = RefCell::new(Breaker::new(BreakerSettings::for_deadline(
        config.retry.deadline,
    )));
    let advisor = RefCell::new(Advisor::new(AdvisorSettings::from_config(&config)));
    Ok(App {
        config,
        queue,
        breaker,
        advisor,
        gatherer: Gatherer::new(),
    })
}

/// The configured buffer's client over the Workers runtime: Fetch, its clock, its timers and
/// its randomness.
pub(crate) fn buffer_client(config: &Config) -> Configured {
    Configured::new(
        config,
        SharedHttpClient::new(FetchHttpClient),
        SharedTimeSource::new(DateTimeSource),
        SharedAsyncSleep::new(DelaySleep),
        || WorkerRuntime.random_bytes(),
    )
}

/// Clock, randomness and timers of the Workers runtime.
#[derive(Debug)]
pub(crate) struct WorkerRuntime;

impl Runtime for WorkerRuntime {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    fn random_bytes(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // crypto.getRandomValues is always there on Workers; this only keeps ids unique.
            for b in &mut bytes {
                *b = (js_sys::Math::random() * 256.0) as u8;
            }
        }
        bytes
    }

    async fn sleep(&self, duration: Duration) {
        worker::Delay::from(duration).await
    }

    /// A JavaScript promise made in the asking request: workerd runs the continuation of a
    /// promise resolved from another request in the request that made it, so the awaiting
    /// future resumes in its own context.
    fn wake_up(&self) -> (Wake, LocalBoxFuture<'static, ()>) {
        let mut resolve = None;
        let promise = js_sys::Promise::new(&mut |res, _rej| resolve = Some(res));
        let wake = Wake::new(move || {
            if let Some(resolve) = resolve {
                let _ = resolve.call0(&worker::wasm_bindgen::JsValue::UNDEFINED);
            }
        });
        let resumed = worker::wasm_bindgen_futures::JsFuture::from(promise);
        (
            wake,
            Box::pin(async move {
                let _ = resumed.await;
            }),
        )
    }
}
