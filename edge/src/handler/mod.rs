//! The top of the request path: [`handle`] routes a request (`http::route`), reads its head,
//! its body (`request`) and decodes it in its protocol (`protocol`), prepares its events
//! (`request::prepare`), has `deliver` send them, writes the request's log line and answers
//! (`http::answer`). Rate limiting is here, the one step that asks a port before the body.
//!
//! A plain async function over a deps struct: the Worker calls it with adapters over the Workers
//! runtime, the tests with in-memory fakes. It decides nothing the layers below decide.

use http::{Request, Response};
use spillway_shared::EdgeInfo;
use uuid::Uuid;

use crate::config::{Config, ConfigError};
use crate::deliver::deliver;
pub use crate::deliver::Spill;
use crate::error::EdgeError;
use crate::http::answer::{accepted_body, collected_body, respond};
use crate::http::auth::authenticate;
use crate::http::cors::{cors_headers, preflight_headers};
use crate::http::headers::header;
use crate::http::route::{log_path, route, Route, PANIC_PATH};
use crate::log::RequestLog;
use crate::ports::{BatcherLink, BodySource, QueueSender, RateLimit, Runtime};
use crate::protocol::collector::{decode_body, parse};
use crate::protocol::events::{split_events, Encoding};
use crate::protocol::gzip::gunzip_capped;
use crate::protocol::{Collector, Protocol};
use crate::request::body::read_body;
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
    /// The batchers (group commit); `None` when the `BATCHER` binding is not configured, and
    /// then every request sends directly.
    pub batcher: Option<&'a dyn BatcherLink>,
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
    Q: QueueSender,
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
    log.colo = parts
        .extensions
        .get::<EdgeInfo>()
        .and_then(|e| e.colo.clone());
    let cors = cors_headers(
        &deps.config.allowed_origins,
        header(&parts.headers, http::header::ORIGIN),
    );

    let routed = route(&parts.method, parts.uri.path(), deps.config.panic_route);
    // Collector routes answer in the way their SDKs act on (`EdgeError::reply_collector`).
    let collector = matches!(routed, Ok(Route::Ingest(Protocol::Collector(_))));
    let result = match routed {
        Ok(Route::Panic) => {
            panic!("deliberate panic at {PANIC_PATH} (SPILLWAY_PANIC_ROUTE=enabled)")
        }
        Ok(Route::Health) => Ok(Success::Health),
        Ok(Route::Preflight) => Ok(Success::Preflight {
            path_allows: preflight_headers(parts.uri.path()),
        }),
        Ok(Route::Ingest(Protocol::Events)) => events(deps, &parts, body, started, &mut log)
            .await
            .map(Success::Accepted),
        Ok(Route::Ingest(Protocol::Collector(c))) => {
            messages(deps, &parts, body, c, started, &mut log)
                .await
                .map(|n| Success::Collected(c, n))
        }
        Err(e) => Err(e),
    };

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

/// `/v1/events`: the accepted events' ids, in request order, or why not.
async fn events<Q, L, R, B>(
    deps: &Deps<'_, Q, L, R>,
    parts: &http::request::Parts,
    body: B,
    now_ms: u64,
    log: &mut RequestLog,
) -> Result<Vec<Uuid>, EdgeError>
where
    Q: QueueSender,
    L: RateLimit,
    R: Runtime,
    B: BodySource,
{
    let limits = &deps.config.limits;
    let head = events_head(parts, deps.config)?;
    rate_limit(deps, head.key_id, log).await?;

    let raw = read_body(body, head.declared_len, limits.max_body_bytes).await?;
    log.bytes = raw.len();
    let decoded = match head.encoding {
        Encoding::Identity => raw,
        Encoding::Gzip => gunzip_capped(&raw, limits.max_decompressed_bytes)?,
    };

    let stamp = Stamp {
        key_id: head.key_id,
        idempotency_key: head.idempotency_key,
        now_ms,
        edge: edge_info(parts),
    };
    let items = split_events(&decoded, head.format, limits)?;
    log.events = items.len();
    let (ids, encoded) =
        prepare_encoded(&items, limits, &stamp, &mut || uuid_random_bytes(deps.rt))?;
    drop(items);
    drop(decoded);
    deliver(deps, encoded, ids, head.key_id, log).await
}

/// A collector route: the accepted message count, or why not.
async fn messages<Q, L, R, B>(
    deps: &Deps<'_, Q, L, R>,
    parts: &http::request::Parts,
    body: B,
    collector: Collector,
    now_ms: u64,
    log: &mut RequestLog,
) -> Result<usize, EdgeError>
where
    Q: QueueSender,
    L: RateLimit,
    R: Runtime,
    B: BodySource,
{
    let config = deps.config;
    let limits = &config.limits;
    let head = collector_head(parts, config, collector)?;
    if let Some((_, key_id)) = &head.key {
        rate_limit(deps, key_id, log).await?;
    }
    let raw = read_body(body, head.declared_len, limits.max_body_bytes).await?;
    log.bytes = raw.len();
    let decoded = decode_body(
        raw,
        head.content_type,
        head.content_encoding,
        head.query,
        collector,
        limits,
    )?;
    let body = parse(&decoded, collector, limits, received_at(now_ms))?;
    log.events = body.messages.len();

    let key_id = match (head.key, body.key.as_deref()) {
        (Some((head_key, key_id)), Some(body_key)) => {
            if head_key != body_key {
                return Err(EdgeError::ConflictingKeys);
            }
            key_id
        }
        (Some((_, key_id)), None) => key_id,
        (None, body_key) => {
            let key_id = authenticate(&config.ingest_keys, body_key)?;
            rate_limit(deps, key_id, log).await?;
            key_id
        }
    };
    log.key_id = Some(key_id.to_owned());

    let stamp = Stamp {
        key_id,
        idempotency_key: head.idempotency_key,
        now_ms,
        edge: edge_info(parts),
    };
    let (ids, encoded) = prepare_messages(body.messages, collector, limits, &stamp, &mut || {
        uuid_random_bytes(deps.rt)
    })?;
    drop(decoded);
    deliver(deps, encoded, ids, key_id, log)
        .await
        .map(|ids| ids.len())
}

/// Asks the rate limiter about `key_id` (when one is configured), noting the key in the log.
/// The limiter failing lets the request through: losing events is worse than briefly not
/// limiting.
async fn rate_limit<Q, L, R>(
    deps: &Deps<'_, Q, L, R>,
    key_id: &str,
    log: &mut RequestLog,
) -> Result<(), EdgeError>
where
    L: RateLimit,
{
    log.key_id = Some(key_id.to_owned());
    if let Some(limiter) = deps.limiter {
        match limiter.allow(key_id).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(EdgeError::RateLimited {
                    retry_after_secs: deps.config.rate_limit_period_secs,
                })
            }
            Err(e) => log.note = Some(e.to_string()),
        }
    }
    Ok(())
}
