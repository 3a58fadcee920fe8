//! The request path: route -> CORS -> auth -> rate limit -> size limits -> content type and
//! encoding -> parse -> validate -> ids and enrichment -> pack -> send -> answer. The collector
//! routes (Segment, PostHog) take their own path through `collector::collect` and share the
//! sending and the answer.
//!
//! A plain async function over a deps struct: the Worker calls it with adapters over the Workers
//! runtime, the tests with in-memory fakes.

use chrono::{DateTime, Utc};
use http::{HeaderMap, Request, Response};
use serde::Serialize;
use spillway_shared::{
    assign_ids, encode_events, pack_encoded, uuid_v7, validate_events, BatchRequest, BufferLimits,
    Code, EdgeInfo, EncodedEvent, Event, IdSource, Limits, SigningKey,
};
use uuid::Uuid;

use crate::body::{gunzip_capped, malformed, split_events, Encoding, Format};
use crate::buffer::Buffer;
use crate::collector::{collect, Collector};
use crate::config::{Config, ConfigError};
pub use crate::deliver::Spill;
use crate::deliver::{Delivery, Sender};
use crate::error::EdgeError;
use crate::gate::{cors_headers, log_path, preflight_headers, route, Route, PANIC_PATH};
use crate::head::{head, read_body, Reading};
use crate::log::RequestLog;
use crate::ports::{BatcherLink, BodySource, RateLimit, Runtime};

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

#[derive(Serialize)]
struct Accepted<'a> {
    accepted: usize,
    ids: &'a [Uuid],
    /// Of those, events the spill queue holds (SQS will get them on replay); absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    spilled: Option<usize>,
}

enum Success {
    Health,
    Preflight {
        path_allows: Vec<(&'static str, String)>,
    },
    Accepted(Vec<Uuid>),
    /// A collector route accepted this many messages.
    Collected(Collector, usize),
}

pub(crate) fn header(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn request_id<R: Runtime>(headers: &HeaderMap, rt: &R, now_ms: u64) -> String {
    match header(headers, "cf-ray") {
        Some(ray) if !ray.is_empty() && ray.len() <= 64 => ray.to_owned(),
        _ => {
            let b = rt.random_bytes();
            let mut ten = [0u8; 10];
            ten.copy_from_slice(&b[..10]);
            uuid_v7(now_ms, ten).to_string()
        }
    }
}

fn respond(status: u16, headers: Vec<(&'static str, String)>, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            h.append(name, v);
        }
    }
    response
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
    let collector = matches!(routed, Ok(Route::Collect(_)));
    let result = match routed {
        Ok(Route::Panic) => {
            panic!("deliberate panic at {PANIC_PATH} (SPILLWAY_PANIC_ROUTE=enabled)")
        }
        Ok(Route::Health) => Ok(Success::Health),
        Ok(Route::Preflight) => Ok(Success::Preflight {
            path_allows: preflight_headers(parts.uri.path()),
        }),
        Ok(Route::Ingest) => ingest(deps, &parts, body, started, &mut log)
            .await
            .map(Success::Accepted),
        Ok(Route::Collect(c)) => collect(deps, &parts, body, c, started, &mut log)
            .await
            .map(|n| Success::Collected(c, n)),
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
            let body = serde_json::to_string(&Accepted {
                accepted: ids.len(),
                ids: &ids,
                spilled: log.spilled.filter(|&n| n > 0),
            })
            .unwrap_or_default();
            (202, body)
        }
        Ok(Success::Collected(c, n)) => {
            headers.push(json);
            (200, c.success_body(n))
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

async fn ingest<Q, L, R, B>(
    deps: &Deps<'_, Q, L, R>,
    parts: &http::request::Parts,
    body: B,
    now_ms: u64,
    log: &mut RequestLog,
) -> Result<Vec<Uuid>, EdgeError>
where
    Q: Buffer,
    L: RateLimit,
    R: Runtime,
    B: BodySource,
{
    let config = deps.config;
    let limits = &config.limits;
    let head = head(parts, config, None)?;
    let Reading::Events { format, encoding } = head.reading else {
        return Err(EdgeError::NotFound);
    };
    let key_id = head.key_id().ok_or(EdgeError::MissingKey)?;
    rate_limit(deps, key_id, log).await?;

    let raw = read_body(body, &head, limits.max_body_bytes).await?;
    log.bytes = raw.len();
    let decoded = match encoding {
        Encoding::Identity => raw,
        Encoding::Gzip => gunzip_capped(&raw, limits.max_decompressed_bytes)?,
    };

    let stamp = Stamp {
        key_id,
        idempotency_key: head.idempotency_key,
        now_ms,
        edge: edge_info(parts),
    };
    let mut random = || random_ten(deps.rt);
    let items = split_events(&decoded, format, limits)?;
    log.events = items.len();
    let (ids, encoded) = prepare_encoded(&items, limits, &config.buffer, &stamp, &mut random)?;
    drop(items);
    drop(decoded);
    deliver(deps, encoded, ids, key_id, log).await
}

/// Delivers a request's events ([`crate::deliver`]) and writes what happened in the log: the
/// one place a delivery report becomes log fields, and a `503` when events are not held.
pub(crate) async fn deliver<Q, L, R>(
    deps: &Deps<'_, Q, L, R>,
    encoded: Vec<EncodedEvent>,
    ids: Vec<Uuid>,
    key_id: &str,
    log: &mut RequestLog,
) -> Result<Vec<Uuid>, EdgeError>
where
    Q: Buffer,
    R: Runtime,
{
    let delivery = Delivery {
        config: deps.config,
        buffer: deps.queue,
        rt: deps.rt,
        group_commit: deps.batcher,
        spill: deps.spill,
    };
    let sender = Sender {
        key_id,
        colo: log.colo.as_deref(),
        request_id: &log.request_id,
    };
    let report = crate::deliver::deliver(&delivery, encoded, &sender).await;
    log.breaker = report.breaker.map(|b| b.as_str());
    if let Some(route) = report.route {
        log.send = Some(route.as_str());
        log.sqs_calls = report.calls;
        log.retries = report.retries;
        log.queue_error = report.buffer_error.clone();
    }
    if let Some(shared) = report.shared {
        log.batch_requests = Some(shared.requests);
        log.batch_events = Some(shared.events);
    }
    if report.fallback.is_some() {
        log.note = report.fallback.clone();
    }
    log.spilled = report.spilled;
    log.spill_error = report.spill_error.clone();
    if report.delivered() {
        Ok(ids)
    } else {
        Err(EdgeError::QueueUnavailable {
            total: ids.len(),
            unacknowledged: report.unacknowledged,
            timed_out: report.timed_out,
            retry_after_secs: deps.config.retry_after_secs,
        })
    }
}

/// Asks the rate limiter about `key_id` (when one is configured), noting the key in the log.
/// The limiter failing lets the request through: losing events is worse than briefly not
/// limiting.
pub(crate) async fn rate_limit<Q, L, R>(
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

/// Where the runtime saw the request, when it says.
pub(crate) fn edge_info(parts: &http::request::Parts) -> Option<EdgeInfo> {
    parts
        .extensions
        .get::<EdgeInfo>()
        .filter(|e| e.colo.is_some() || e.country.is_some())
        .cloned()
}

/// The ten random bytes of a UUIDv7, from the runtime.
pub(crate) fn random_ten<R: Runtime>(rt: &R) -> [u8; 10] {
    let b = rt.random_bytes();
    let mut ten = [0u8; 10];
    ten.copy_from_slice(&b[..10]);
    ten
}

/// What enrichment stamps on every event of a request.
#[derive(Debug, Clone)]
pub struct Stamp<'a> {
    /// Which ingest key sent the request.
    pub key_id: &'a str,
    /// The request's `Idempotency-Key`, if any.
    pub idempotency_key: Option<&'a str>,
    /// The edge clock when the request arrived (ms since the Unix epoch).
    pub now_ms: u64,
    /// Where the edge saw the request, when the runtime says.
    pub edge: Option<EdgeInfo>,
}

/// A request's events, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Every event's id, in request order.
    pub ids: Vec<Uuid>,
    pub batches: Vec<BatchRequest>,
}

/// The pure middle of the request path: parse -> validate -> ids and enrichment -> pack.
///
/// `random` supplies the random bytes of UUIDv7 ids.
pub fn prepare(
    body: &[u8],
    format: Format,
    limits: &Limits,
    buffer: &BufferLimits,
    key: &SigningKey,
    stamp: &Stamp<'_>,
    random: &mut dyn FnMut() -> [u8; 10],
) -> Result<Prepared, EdgeError> {
    let items = split_events(body, format, limits)?;
    prepare_events(&items, limits, buffer, key, stamp, random)
}

/// [`prepare`] once the body is split into the raw text of each event (by
/// [`split_events`] or [`parse`](crate::body::parse)).
pub fn prepare_events(
    items: &[&str],
    limits: &Limits,
    buffer: &BufferLimits,
    key: &SigningKey,
    stamp: &Stamp<'_>,
    random: &mut dyn FnMut() -> [u8; 10],
) -> Result<Prepared, EdgeError> {
    let (ids, encoded) = prepare_encoded(items, limits, buffer, stamp, random)?;
    let batches = pack_encoded(&encoded, buffer, key);
    Ok(Prepared { ids, batches })
}

/// [`prepare_events`] up to the encoded events, before packing: what a batcher takes.
pub fn prepare_encoded(
    items: &[&str],
    limits: &Limits,
    buffer: &BufferLimits,
    stamp: &Stamp<'_>,
    random: &mut dyn FnMut() -> [u8; 10],
) -> Result<(Vec<Uuid>, Vec<EncodedEvent>), EdgeError> {
    let received_at =
        DateTime::<Utc>::from_timestamp_millis(i64::try_from(stamp.now_ms).unwrap_or(i64::MAX))
            .unwrap_or_default();
    let valid = validate_events(items, limits, received_at).map_err(|problems| {
        // A body of one object reaches validation unchecked (`split_events`). When validation
        // could not read it, it may be no JSON at all: then the answer is `parse`'s.
        let unreadable = problems
            .iter()
            .any(|p| p.code == Code::InvalidJson && p.field.is_none());
        match items {
            [single] if unreadable => malformed(single, limits),
            _ => None,
        }
        .unwrap_or(EdgeError::Invalid(problems))
    })?;
    let source = match stamp.idempotency_key {
        Some(idempotency_key) => IdSource::Idempotency {
            key_id: stamp.key_id,
            idempotency_key,
        },
        None => IdSource::Generated {
            unix_ms: stamp.now_ms,
        },
    };
    let ids = assign_ids(&valid, items, &source, random).map_err(EdgeError::Invalid)?;
    let events: Vec<Event> = valid
        .into_iter()
        .zip(&ids)
        .map(|(v, &id)| v.enrich(id, received_at, stamp.key_id, stamp.edge.clone()))
        .collect();
    let encoded = encode_events(&events, buffer).map_err(EdgeError::Pack)?;
    Ok((ids, encoded))
}
