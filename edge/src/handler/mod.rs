//! The top of the request path: [`handle`] routes a request (`http::route`), reads its head,
//! its body (`request`) and decodes it in its protocol (`protocol`), prepares its events
//! (`request::prepare`), has `deliver` send them, writes the request's log line once from what
//! it saw and what delivery reports, and answers (`http::answer`). Rate limiting is here, the
//! one step that asks a port before the body.
//!
//! A plain async function over a deps struct: the Worker calls it with adapters over the Workers
//! runtime, the tests with in-memory fakes. It decides nothing the layers below decide.

use http::{Request, Response};
use spillway_shared::EncodedEvent;
use uuid::Uuid;

use crate::buffer::Buffer;
use crate::config::{Config, ConfigError};
use crate::deliver::{deliver, Delivery, DeliveryReport, Sender};
pub use crate::deliver::{GroupCommit, Spill};
use crate::error::EdgeError;
use crate::http::answer::{accepted_body, collected_body, respond};
use crate::http::auth::{authenticate, Caller};
use crate::http::cors::{cors_headers, preflight_headers};
use crate::http::headers::header;
use crate::http::route::{log_path, route, Route, PANIC_PATH};
use crate::log::RequestLog;
use crate::ports::{BodySource, RateLimit, Runtime};
use crate::protocol::collector::{decode_body, parse};
use crate::protocol::events::{split_events, Encoding};
use crate::protocol::gzip::gunzip_capped;
use crate::protocol::{Collector, Protocol};
use crate::request::body::read_body;
use crate::request::context::CfFields;
use crate::request::head::{collector_head, edge_info, events_head};
use crate::request::ids::{request_id, uuid_random_bytes};
use crate::request::prepare::{prepare_encoded, prepare_messages, received_at, Stamp};

#[cfg(test)]
pub(crate) mod tests;

/// What a request needs, built once per isolate (config, queue) or per request (limiter, runtime).
#[derive(Debug)]
pub struct Deps<'a, Q, L, R> {
    pub config: &'a Config,
    pub queue: &'a Q,
    /// `None` when no rate-limiting binding is configured.
    pub limiter: Option<&'a L>,
    pub rt: &'a R,
    /// The batchers (group commit) and the isolate's advisor; `None` when the `BATCHER` binding
    /// is not configured, and then every request sends directly.
    pub batcher: Option<GroupCommit<'a>>,
    /// The spill queue and the isolate's breaker; `None` when the `SPILL_QUEUE` binding is not
    /// configured, and then a request SQS does not take in time is answered `503`.
    pub spill: Option<Spill<'a>>,
}

/// The answer and the log line that goes with it.
#[derive(Debug)]
pub struct Handled {
    pub response: Response<String>,
    pub log: RequestLog,
}

enum Success {
    Health,
    Preflight {
        path_allows: Vec<(&'static str, String)>,
    },
    /// `/v1/events` accepted these events.
    Accepted(Vec<Uuid>),
    /// A collector route accepted this many messages.
    Collected(Collector, usize),
}

/// Handles one request.
pub async fn handle<Q, L, R, B>(deps: &Deps<'_, Q, L, R>, req: Request<B>) -> Handled
where
    Q: Buffer,
    L: RateLimit,
    R: Runtime,
    B: BodySource,
{
    let started = deps.rt.now_ms();
    let (parts, body) = req.into_parts();
    let mut log = RequestLog::new(
        request_id(&parts.headers, deps.rt, started),
        parts.method.as_str(),
        log_path(parts.uri.path()),
    );
    log.colo = parts.extensions.get::<CfFields>().and_then(CfFields::colo);
    let cors = cors_headers(
        &deps.config.allowed_origins,
        header(&parts.headers, http::header::ORIGIN),
    );

    let routed = route(&parts.method, parts.uri.path(), deps.config.panic_route);
    // Collector routes answer in the way their SDKs act on (`EdgeError::reply_collector`).
    let collector = matches!(routed, Ok(Route::Ingest(Protocol::Collector(_))));
    let mut seen = Seen::default();
    let result = match routed {
        Ok(Route::Panic) => {
            panic!("deliberate panic at {PANIC_PATH} (SPILLWAY_PANIC_ROUTE=enabled)")
        }
        Ok(Route::Health) => Ok(Success::Health),
        Ok(Route::Preflight) => Ok(Success::Preflight {
            path_allows: preflight_headers(parts.uri.path()),
        }),
        Ok(Route::Ingest(protocol)) => {
            let ready = match protocol {
                Protocol::Events => events(deps, &parts, body, started, &mut seen).await,
                Protocol::Collector(c) => messages(deps, &parts, body, c, started, &mut seen).await,
            };
            match ready {
                Ok(ready) => {
                    let sender = Sender {
                        key_id: ready.key_id,
                        colo: log.colo.as_deref(),
                        request_id: &log.request_id,
                    };
                    let report = deliver(&delivery(deps), ready.encoded, &sender).await;
                    let held = held(deps.config, ready.ids, &report);
                    seen.delivery = Some(report);
                    held.map(|ids| match protocol {
                        Protocol::Events => Success::Accepted(ids),
                        Protocol::Collector(c) => Success::Collected(c, ids.len()),
                    })
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    seen.write(&mut log);

    let mut headers = vec![
        ("x-request-id", log.request_id.clone()),
        ("cache-control", "no-store".to_owned()),
    ];
    let json = ("content-type", "application/json; charset=utf-8".to_owned());
    let (status, body) = match result {
        Ok(Success::Health) => {
            headers.push(json);
            (200, r#"{"status":"ok"}"#.to_owned())
        }
        Ok(Success::Preflight { path_allows }) => {
            if !cors.is_empty() {
                headers.extend(path_allows);
            }
            (204, String::new())
        }
        Ok(Success::Accepted(ids)) => {
            headers.push(json);
            (202, accepted_body(&ids, log.spilled))
        }
        Ok(Success::Collected(c, n)) => {
            headers.push(json);
            (200, collected_body(c, n))
        }
        Err(e) => {
            let reply = if collector {
                e.reply_collector()
            } else {
                e.reply()
            };
            log.code = Some(reply.code);
            headers.push(json);
            headers.extend(reply.headers);
            (reply.status, reply.body)
        }
    };
    headers.extend(cors);
    log.status = status;
    log.duration_ms = deps.rt.now_ms().saturating_sub(started);
    Handled {
        response: respond(status, headers, body),
        log,
    }
}

/// The answer when the configuration is unusable: `500 misconfigured` for every request, and a
/// log line naming the problems (variable names only, never values).
pub fn misconfigured<R: Runtime, B>(req: &Request<B>, error: &ConfigError, rt: &R) -> Handled {
    let now = rt.now_ms();
    let mut log = RequestLog::new(
        request_id(req.headers(), rt, now),
        req.method().as_str(),
        log_path(req.uri().path()),
    );
    let reply = EdgeError::Misconfigured.reply();
    log.status = reply.status;
    log.code = Some(reply.code);
    log.note = Some(error.to_string());
    let mut headers = vec![
        ("x-request-id", log.request_id.clone()),
        ("content-type", "application/json; charset=utf-8".to_owned()),
        ("cache-control", "no-store".to_owned()),
    ];
    headers.extend(reply.headers);
    Handled {
        response: respond(reply.status, headers, reply.body),
        log,
    }
}

/// `/v1/events` up to delivery: its events, ready to send, or why not.
async fn events<'r, Q, L, R, B>(
    deps: &Deps<'r, Q, L, R>,
    parts: &'r http::request::Parts,
    body: B,
    now_ms: u64,
    seen: &mut Seen,
) -> Result<Ready<'r>, EdgeError>
where
    Q: Buffer,
    L: RateLimit,
    R: Runtime,
    B: BodySource,
{
    let limits = &deps.config.limits;
    let head = events_head(parts, deps.config, now_ms)?;
    rate_limit(deps, head.key_id, seen).await?;

    let raw = read_body(body, head.declared_len, limits.max_body_bytes).await?;
    seen.bytes = raw.len();
    let decoded = match head.encoding {
        Encoding::Identity => raw,
        Encoding::Gzip => gunzip_capped(&raw, limits.max_decompressed_bytes)?,
    };

    let stamp = Stamp {
        key_id: head.key_id,
        idempotency_key: head.idempotency_key,
        now_ms,
        edge: edge_info(parts, deps.config),
        sent_at: head.sent_at,
    };
    let items = split_events(&decoded, head.format, limits)?;
    seen.events = items.len();
    let (ids, encoded) = prepare_encoded(&items, limits, &deps.config.buffer, &stamp, &mut || {
        uuid_random_bytes(deps.rt)
    })?;
    Ok(Ready {
        ids,
        encoded,
        key_id: head.key_id,
    })
}

/// A collector route up to delivery: its messages as events, ready to send, or why not.
async fn messages<'r, Q, L, R, B>(
    deps: &Deps<'r, Q, L, R>,
    parts: &'r http::request::Parts,
    body: B,
    collector: Collector,
    now_ms: u64,
    seen: &mut Seen,
) -> Result<Ready<'r>, EdgeError>
where
    Q: Buffer,
    L: RateLimit,
    R: Runtime,
    B: BodySource,
{
    let config = deps.config;
    let limits = &config.limits;
    let head = collector_head(parts, config, collector, now_ms)?;
    if let Some((_, key_id)) = &head.key {
        rate_limit(deps, key_id, seen).await?;
    }
    let raw = read_body(body, head.declared_len, limits.max_body_bytes).await?;
    seen.bytes = raw.len();
    let decoded = decode_body(
        raw,
        head.content_type,
        head.content_encoding,
        head.query,
        collector,
        limits,
    )?;
    let body = parse(&decoded, collector, limits, received_at(now_ms))?;
    seen.events = body.messages.len();

    let key_id = match (head.key, body.key.as_deref()) {
        (Some((head_key, key_id)), Some(body_key)) => {
            if head_key != body_key {
                return Err(EdgeError::ConflictingKeys);
            }
            key_id
        }
        (Some((_, key_id)), None) => key_id,
        (None, body_key) => {
            let key_id = authenticate(config, body_key, Caller::of(&parts.headers, now_ms))?;
            rate_limit(deps, key_id, seen).await?;
            key_id
        }
    };
    seen.key_id = Some(key_id.to_owned());

    let stamp = Stamp {
        key_id,
        idempotency_key: head.idempotency_key,
        now_ms,
        edge: edge_info(parts, config),
        sent_at: head.sent_at,
    };
    let (ids, encoded) = prepare_messages(
        body.messages,
        collector,
        &config.buffer,
        &stamp,
        &mut || uuid_random_bytes(deps.rt),
    )?;
    Ok(Ready {
        ids,
        encoded,
        key_id,
    })
}

/// Asks the rate limiter about `key_id` (when one is configured), noting the key for the log.
/// The limiter failing lets the request through: losing events is worse than briefly not
/// limiting.
async fn rate_limit<Q, L, R>(
    deps: &Deps<'_, Q, L, R>,
    key_id: &str,
    seen: &mut Seen,
) -> Result<(), EdgeError>
where
    L: RateLimit,
{
    seen.key_id = Some(key_id.to_owned());
    if let Some(limiter) = deps.limiter {
        match limiter.allow(key_id).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(EdgeError::RateLimited {
                    retry_after_secs: deps.config.rate_limit_period_secs,
                })
            }
            Err(e) => seen.limiter_error = Some(e.to_string()),
        }
    }
    Ok(())
}

/// A request's events, prepared and ready to send, and whose they are.
struct Ready<'r> {
    /// Every event's id, in request order.
    ids: Vec<Uuid>,
    encoded: Vec<EncodedEvent>,
    /// The `key_id` the request authenticated as.
    key_id: &'r str,
}

/// What delivery needs of the request's deps.
fn delivery<'d, Q, L, R>(deps: &Deps<'d, Q, L, R>) -> Delivery<'d, Q, R> {
    Delivery {
        config: deps.config,
        buffer: deps.queue,
        rt: deps.rt,
        group_commit: deps.batcher,
        spill: deps.spill,
    }
}

/// The request's ids once every event is held (by the buffer or the spill), else the `503`
/// that lists the events that are not.
fn held(config: &Config, ids: Vec<Uuid>, report: &DeliveryReport) -> Result<Vec<Uuid>, EdgeError> {
    if report.delivered() {
        Ok(ids)
    } else {
        Err(EdgeError::QueueUnavailable {
            total: ids.len(),
            unacknowledged: report.unacknowledged.clone(),
            timed_out: report.timed_out,
            retry_after_secs: config.retry_after_secs,
        })
    }
}

/// What the request path saw on the way, whatever the outcome: written into the log line once,
/// by [`Seen::write`].
#[derive(Debug, Default)]
struct Seen {
    /// The `key_id` of the key the request presented, once it is known.
    key_id: Option<String>,
    /// Body bytes as received.
    bytes: usize,
    /// Events (or messages) in the body, before validation.
    events: usize,
    /// Why the rate limiter could not be asked (the request then went through).
    limiter_error: Option<String>,
    /// What delivery did, when the request got that far.
    delivery: Option<DeliveryReport>,
}

impl Seen {
    /// The one place what the request path saw and what delivery reports become log fields.
    fn write(self, log: &mut RequestLog) {
        log.key_id = self.key_id;
        log.bytes = self.bytes;
        log.events = self.events;
        log.note = self.limiter_error;
        let Some(report) = self.delivery else {
            return;
        };
        log.breaker = report.breaker;
        if let Some(route) = report.route {
            log.send = Some(route);
            log.sqs_calls = report.calls;
            log.retries = report.retries;
            log.queue_error = report.buffer_error;
        }
        if let Some(shared) = report.shared {
            log.batch_requests = Some(shared.requests);
            log.batch_events = Some(shared.events);
        }
        if report.fallback.is_some() {
            // Why the group commit was not used says more than a rate limiter's hiccup.
            log.note = report.fallback;
        }
        log.spilled = report.spilled;
        log.spill_error = report.spill_error;
    }
}
