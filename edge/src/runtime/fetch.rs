//! `#[event(fetch)]`: converts the request, builds the ports over the runtime, calls
//! [`handle`], writes the log line and converts the answer back; nothing here decides anything.

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use worker::wasm_bindgen::JsValue;
use worker::{event, js_sys, Context, Env, QueueContentType, RawMessageBuilder};

use super::group_commit_object::{DurableBatchers, BATCHER_BINDING};
use super::{app, WorkerRuntime};
use crate::config::ContextField;
use crate::handler::{handle, misconfigured, Deps, GroupCommit, Spill};
use crate::http::headers::UnreadableHeaders;
use crate::ports::{BatcherLink, BodySource, RateLimit, RateLimitError, SpillError, SpillQueue};
use crate::request::context::CfFields;

/// Name of the optional rate-limiting binding (`[[ratelimits]]` in `wrangler.toml`).
const RATE_LIMIT_BINDING: &str = "RATE_LIMITER";

/// Name of the optional spill queue binding (`[[queues.producers]]` in `wrangler.toml`).
const SPILL_BINDING: &str = "SPILL_QUEUE";

/// The spill queue: one `sendBatch` of text messages.
#[derive(Debug)]
struct WorkerSpill(worker::Queue);

impl SpillQueue for WorkerSpill {
    fn send_batch<'a>(
        &'a self,
        messages: &'a [String],
    ) -> LocalBoxFuture<'a, Result<(), SpillError>> {
        Box::pin(async move {
            let batch: Vec<_> = messages
                .iter()
                .map(|m| {
                    RawMessageBuilder::new(JsValue::from_str(m))
                        .build_with_content_type(QueueContentType::Text)
                })
                .collect();
            self.0
                .send_raw_batch(batch)
                .await
                .map_err(|e| SpillError(e.to_string()))
        })
    }
}

struct Limiter(worker::RateLimiter);

impl RateLimit for Limiter {
    async fn allow(&self, key_id: &str) -> Result<bool, RateLimitError> {
        self.0
            .limit(key_id.to_owned())
            .await
            .map(|outcome| outcome.success)
            .map_err(|e| RateLimitError(e.to_string()))
    }
}

/// The request body, streamed: [`crate::ports::read_capped`] drops it as soon as it passes
/// the cap. The stream is opened on the first read only: a body that is never read (a request
/// refused by its head) is left untouched, which `wrangler dev` needs (see [`drain`]).
struct WorkerBody {
    request: Option<worker::Request>,
    stream: Option<worker::ByteStream>,
}

impl WorkerBody {
    fn new(req: worker::Request) -> Self {
        Self {
            request: Some(req),
            stream: None,
        }
    }
}

impl BodySource for WorkerBody {
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, String>> {
        if let Some(mut req) = self.request.take() {
            // No stream: no body at all.
            self.stream = req.stream().ok();
        }
        let chunk = self.stream.as_mut()?.next().await?;
        Some(chunk.map_err(|e| e.to_string()))
    }

    async fn abandon(&mut self) {
        if let Some(stream) = self.stream.as_mut() {
            drain(stream).await;
        }
    }
}

/// Most bytes of an oversized body read (and dropped) after the cap.
const DRAIN_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Reads and drops the rest of an oversized body, up to [`DRAIN_MAX_BYTES`]. Production does not
/// need it, but `wrangler dev` fails the *next* request when a body is abandoned half-read
/// (cloudflare/workers-sdk#15709), which would break the local pipeline after one bad client.
async fn drain(stream: &mut worker::ByteStream) {
    let mut drained = 0usize;
    while drained < DRAIN_MAX_BYTES {
        match stream.next().await {
            Some(Ok(chunk)) => drained += chunk.len(),
            _ => break,
        }
    }
}

/// Every field of `request.cf` the edge knows ([`ContextField::ALL`]) that the runtime
/// provides, as text: which of them the events carry, and bounded how, is
/// `request::context`'s decision. Reading all of them costs a property lookup each.
fn cf_fields(req: &worker::Request) -> CfFields {
    let Some(cf) = js_sys::Reflect::get(req.inner(), &JsValue::from_str("cf"))
        .ok()
        .filter(JsValue::is_object)
    else {
        return CfFields::default();
    };
    CfFields::new(ContextField::ALL.into_iter().filter_map(|field| {
        let v = js_sys::Reflect::get(&cf, &JsValue::from_str(field.cf_name())).ok()?;
        let text = v
            .as_string()
            .or_else(|| v.as_f64().map(|n| n.to_string()))
            .or_else(|| v.as_bool().map(|b| b.to_string()))?;
        Some((field, text))
    }))
}

fn to_http(req: worker::Request) -> worker::Result<http::Request<WorkerBody>> {
    // Parsed and serialised by the runtime's WHATWG `URL`, as `worker::Request::url` does with
    // the `url` crate: the same normalisation (dot segments, percent-encoding) without that
    // parser's IDNA and Unicode tables in the wasm (about 79 KB of it, gzipped).
    let url = web_sys::Url::new(&req.inner().url())?.href();
    let mut builder = http::Request::builder()
        .method(req.method().as_ref())
        .uri(url);
    let mut unreadable = UnreadableHeaders::default();
    if let Some(headers) = builder.headers_mut() {
        for (name, value) in req.headers().entries() {
            // A header `http` cannot represent is recorded by name, not dropped: the request
            // path refuses the ones it reads (http::headers::check_read_headers).
            match (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) {
                (Ok(n), Ok(v)) => {
                    headers.append(n, v);
                }
                _ => unreadable.0.push(name),
            }
        }
    }
    let cf = cf_fields(&req);
    let mut request = builder
        .body(WorkerBody::new(req))
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    request.extensions_mut().insert(cf);
    request.extensions_mut().insert(unreadable);
    Ok(request)
}

fn to_worker(response: http::Response<String>) -> worker::Result<worker::Response> {
    let headers = worker::Headers::new();
    for (name, value) in response.headers() {
        if let Ok(v) = value.to_str() {
            headers.append(name.as_str(), v)?;
        }
    }
    let status = response.status().as_u16();
    let body = response.into_body();
    let builder = worker::Response::builder()
        .with_status(status)
        .with_headers(headers);
    Ok(if body.is_empty() {
        builder.empty()
    } else {
        builder.fixed(body.into_bytes())
    })
}

#[event(fetch)]
async fn fetch(req: worker::Request, env: Env, _ctx: Context) -> worker::Result<worker::Response> {
    let rt = WorkerRuntime;
    let app = app(&env);
    let request = to_http(req)?;
    let handled = match app.as_ref() {
        Ok(app) => {
            let limiter = env.rate_limiter(RATE_LIMIT_BINDING).ok().map(Limiter);
            let batchers = env
                .durable_object(BATCHER_BINDING)
                .ok()
                .map(DurableBatchers);
            let spill = env.queue(SPILL_BINDING).ok().map(WorkerSpill);
            let deps = Deps {
                config: &app.config,
                queue: &app.queue,
                limiter: limiter.as_ref(),
                rt: &rt,
                batcher: batchers.as_ref().map(|b| GroupCommit {
                    link: b as &dyn BatcherLink,
                    advisor: &app.advisor,
                    gatherer: &app.gatherer,
                }),
                spill: spill.as_ref().map(|queue| Spill {
                    queue,
                    breaker: &app.breaker,
                }),
            };
            handle(&deps, request).await
        }
        Err(error) => misconfigured(&request, error, &rt),
    };
    worker::console_log!("{}", handled.log.to_json());
    to_worker(handled.response)
}
