//! The request head, decided in one step before any body byte is read: which key (when the
//! head carries one), how long the body says it is, how to read it, and the idempotency key.
//! Then [`read_body`] reads the body against what the head declared. Both the `/v1/events`
//! path and the collector routes go through here.
//!
//! Pure: headers in, a [`Head`] or the [`EdgeError`] the client gets out.

use http::request::Parts;

use crate::body::{encoding_of, format_of, Encoding, Format};
use crate::collector::{head_keys, Collector};
use crate::config::Config;
use crate::error::EdgeError;
use crate::gate::{
    authenticate, check_read_headers, idempotency_key, presented_keys, UnreadableHeaders,
};
use crate::ports::{read_capped, BodyError, BodySource};

/// How the body of a request is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// `/v1/events`: the content type and encoding, checked.
    Events { format: Format, encoding: Encoding },
    /// A collector route: its own decoding, from the same headers and the query.
    Collector(Collector),
}

/// What the head of one request says, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    /// The key presented in the head, if any, and the `key_id` it authenticated as. Always
    /// present for `/v1/events`; a collector's key may come in the body instead.
    pub key: Option<(String, &'a str)>,
    /// `Content-Length`, when declared: the body must have exactly this many bytes.
    pub declared_len: Option<u64>,
    pub idempotency_key: Option<&'a str>,
    pub reading: Reading,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub query: Option<&'a str>,
}

impl<'a> Head<'a> {
    /// The authenticated `key_id`, when the head carried the key.
    pub fn key_id(&self) -> Option<&'a str> {
        self.key.as_ref().map(|(_, id)| *id)
    }
}

fn header(parts: &Parts, name: http::header::HeaderName) -> Option<&str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks the head of a request for `/v1/events` (`collector: None`) or a collector route.
///
/// In order: headers that could not be read, the key (at most one distinct key in the head,
/// on every route; required on `/v1/events`, where a collector's may come in the body), the
/// declared length against the body cap, how to read the body, the idempotency key.
pub fn head<'a>(
    parts: &'a Parts,
    config: &'a Config,
    collector: Option<Collector>,
) -> Result<Head<'a>, EdgeError> {
    let headers = &parts.headers;
    let query = parts.uri.query();
    check_read_headers(headers, parts.extensions.get::<UnreadableHeaders>())?;

    let mut keys = match collector {
        None => presented_keys(headers, query)
            .into_iter()
            .map(|k| k.into_owned())
            .collect(),
        Some(c) => head_keys(headers, query, c),
    };
    // Two different keys are refused before either is checked: which one is valid is
    // nothing the answer should tell.
    if keys.len() > 1 {
        return Err(EdgeError::ConflictingKeys);
    }
    let key = match (keys.pop(), collector) {
        (Some(k), _) => {
            let key_id = authenticate(&config.ingest_keys, Some(&k))?;
            Some((k, key_id))
        }
        (None, None) => return Err(EdgeError::MissingKey),
        (None, Some(_)) => None,
    };

    let limits = &config.limits;
    let declared_len =
        header(parts, http::header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > limits.max_body_bytes as u64) {
        return Err(EdgeError::BodyTooLarge {
            limit: limits.max_body_bytes,
        });
    }
    let content_type = header(parts, http::header::CONTENT_TYPE);
    let content_encoding = header(parts, http::header::CONTENT_ENCODING);
    let reading = match collector {
        None => Reading::Events {
            format: format_of(content_type)?,
            encoding: encoding_of(content_encoding)?,
        },
        Some(c) => Reading::Collector(c),
    };
    let idempotency_key = idempotency_key(headers)?;
    Ok(Head {
        key,
        declared_len,
        idempotency_key,
        reading,
        content_type,
        content_encoding,
        query,
    })
}

/// Reads the body within the cap; a body that is not as long as its head declared is refused
/// (a truncated or padded body must not be half-read into events).
pub async fn read_body<B: BodySource>(
    body: B,
    head: &Head<'_>,
    cap: usize,
) -> Result<Vec<u8>, EdgeError> {
    let raw = read_capped(body, cap).await.map_err(|e| match e {
        BodyError::TooLarge(limit) => EdgeError::BodyTooLarge { limit },
        BodyError::Read(why) => EdgeError::BodyRead(why),
    })?;
    if let Some(len) = head.declared_len.filter(|&len| len != raw.len() as u64) {
        return Err(EdgeError::BodyRead(format!(
            "the body has {} bytes but Content-Length says {len}",
            raw.len()
        )));
    }
    Ok(raw)
}
