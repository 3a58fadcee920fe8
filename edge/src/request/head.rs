//! The request head, decided in one step before any body byte is read: which key (when the
//! head carries one), how long the body says it is, how to read it, and the idempotency key.
//! One function per kind of route, so each returns exactly what its route needs: a
//! `/v1/events` head always has a key and a checked content type and encoding; a collector
//! head may leave the key to the body and the decoding to its protocol.
//!
//! Pure: headers in, a head or the [`EdgeError`] the client gets out. It does not read the body
//! ([`crate::request::body`]) nor rate-limit (`handler`).

use http::request::Parts;
use spillway_shared::EdgeInfo;

use crate::config::Config;
use crate::error::EdgeError;
use crate::http::auth::{authenticate, keys_in_head};
use crate::http::headers::{check_read_headers, header, idempotency_key, UnreadableHeaders};
use crate::protocol::events::{encoding_of, format_of, Encoding, Format};
use crate::protocol::{Collector, Protocol};

/// What the head of a `/v1/events` request says, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsHead<'a> {
    /// The `key_id` the head's key authenticated as (`/v1/events` requires one in the head).
    pub key_id: &'a str,
    /// `Content-Length`, when declared: the body must have exactly this many bytes.
    pub declared_len: Option<u64>,
    pub idempotency_key: Option<&'a str>,
    pub format: Format,
    pub encoding: Encoding,
}

/// What the head of a collector request says, checked. Its body is decoded by its protocol
/// from the same headers and the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorHead<'a> {
    /// The key presented in the head, if any, and the `key_id` it authenticated as; else the
    /// key may come in the body.
    pub key: Option<(String, &'a str)>,
    /// `Content-Length`, when declared: the body must have exactly this many bytes.
    pub declared_len: Option<u64>,
    pub idempotency_key: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub query: Option<&'a str>,
}

/// Checks the head of a `/v1/events` request. In order: headers that could not be read, the
/// key (at most one distinct key, required), the declared length against the body cap, the
/// content type and encoding, the idempotency key.
pub fn events_head<'a>(parts: &'a Parts, config: &'a Config) -> Result<EventsHead<'a>, EdgeError> {
    let (_, key_id) = head_key(parts, config, Protocol::Events)?.ok_or(EdgeError::MissingKey)?;
    let declared_len = declared_len(parts, config)?;
    let format = format_of(header(&parts.headers, http::header::CONTENT_TYPE))?;
    let encoding = encoding_of(header(&parts.headers, http::header::CONTENT_ENCODING))?;
    Ok(EventsHead {
        key_id,
        declared_len,
        idempotency_key: idempotency_key(&parts.headers)?,
        format,
        encoding,
    })
}

/// Checks the head of a collector request, in the order of [`events_head`]; a key is checked
/// when the head has one, before the body is read, so a wrong key costs no body.
pub fn collector_head<'a>(
    parts: &'a Parts,
    config: &'a Config,
    collector: Collector,
) -> Result<CollectorHead<'a>, EdgeError> {
    let key = head_key(parts, config, Protocol::Collector(collector))?;
    let declared_len = declared_len(parts, config)?;
    Ok(CollectorHead {
        key,
        declared_len,
        idempotency_key: idempotency_key(&parts.headers)?,
        content_type: header(&parts.headers, http::header::CONTENT_TYPE),
        content_encoding: header(&parts.headers, http::header::CONTENT_ENCODING),
        query: parts.uri.query(),
    })
}

/// The key the head presents, authenticated, after refusing headers that could not be read.
/// Two different keys are refused before either is checked: which one is valid is nothing the
/// answer should tell.
fn head_key<'a>(
    parts: &Parts,
    config: &'a Config,
    protocol: Protocol,
) -> Result<Option<(String, &'a str)>, EdgeError> {
    let headers = &parts.headers;
    check_read_headers(headers, parts.extensions.get::<UnreadableHeaders>())?;
    let mut keys = keys_in_head(headers, parts.uri.query(), protocol);
    if keys.len() > 1 {
        return Err(EdgeError::ConflictingKeys);
    }
    keys.pop()
        .map(|k| authenticate(&config.ingest_keys, Some(&k)).map(|key_id| (k, key_id)))
        .transpose()
}

/// `Content-Length`, when declared and readable; one over the body cap is refused at once.
fn declared_len(parts: &Parts, config: &Config) -> Result<Option<u64>, EdgeError> {
    let limit = config.limits.max_body_bytes;
    let declared = header(&parts.headers, http::header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(EdgeError::BodyTooLarge { limit });
    }
    Ok(declared)
}

/// Where the runtime saw the request, when it says.
pub fn edge_info(parts: &Parts) -> Option<EdgeInfo> {
    parts
        .extensions
        .get::<EdgeInfo>()
        .filter(|e| e.colo.is_some() || e.country.is_some())
        .cloned()
}
