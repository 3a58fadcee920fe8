//! The collector routes: Segment's tracking API and PostHog's capture API over HTTP, so the
//! SDKs of those services deliver to Spillway unchanged.
//!
//! What is HTTP lives here: the routes, where each protocol puts the key (HTTP Basic user,
//! `?token=`, besides the forms `/v1/events` reads), and how bodies are encoded
//! (`Content-Encoding: gzip`, PostHog's `?compression=`, gzip found by its magic bytes,
//! base64, form-encoded `data=`). Reading the bodies into messages is `spillway-shared`'s
//! (`collector`); sending is the same as for `/v1/events`. The guarantees are the same too: the
//! answer comes once SQS holds every message, and a body with any invalid message enqueues
//! nothing.

use std::borrow::Cow;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use spillway_shared::collector::{self, posthog, segment, BodyProblem};
use spillway_shared::{encode_events, IdSource, Limits, Source};

use crate::body::{encoding_of, format_of, gunzip_capped, Encoding};
use crate::buffer::Buffer;
use crate::error::EdgeError;
use crate::gate::{authenticate, presented_keys};
use crate::handler::{deliver, edge_info, header, random_ten, rate_limit, Deps};
use crate::head::{head, read_body};
use crate::log::RequestLog;
use crate::ports::{BodySource, RateLimit, Runtime};

/// A collector protocol and, for Segment, which call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collector {
    Segment(segment::Call),
    Posthog,
}

impl Collector {
    pub fn source(self) -> Source {
        match self {
            Collector::Segment(_) => Source::Segment,
            Collector::Posthog => Source::Posthog,
        }
    }

    /// The body of a success: what each protocol's own service answers, plus the count.
    pub fn success_body(self, accepted: usize) -> String {
        match self {
            Collector::Segment(_) => format!(r#"{{"success":true,"accepted":{accepted}}}"#),
            Collector::Posthog => format!(r#"{{"status":1,"accepted":{accepted}}}"#),
        }
    }
}

/// Every collector path, as the log names it.
const ROUTES: &[(&str, Collector)] = {
    use segment::{Call::*, MessageType::*};
    use Collector::{Posthog as P, Segment as S};
    &[
        ("/v1/batch", S(Batch)),
        ("/v1/b", S(Batch)),
        ("/v1/track", S(Single(Track))),
        ("/v1/t", S(Single(Track))),
        ("/v1/identify", S(Single(Identify))),
        ("/v1/i", S(Single(Identify))),
        ("/v1/page", S(Single(Page))),
        ("/v1/p", S(Single(Page))),
        ("/v1/screen", S(Single(Screen))),
        ("/v1/s", S(Single(Screen))),
        ("/v1/group", S(Single(Group))),
        ("/v1/g", S(Single(Group))),
        ("/v1/alias", S(Single(Alias))),
        ("/v1/a", S(Single(Alias))),
        ("/batch", P),
        ("/batch/", P),
        ("/capture", P),
        ("/capture/", P),
        ("/e", P),
        ("/e/", P),
        ("/i/v0/e", P),
        ("/i/v0/e/", P),
    ]
};

/// The collector a path belongs to, and the path as a static string (for the log).
pub fn collector_route(path: &str) -> Option<(Collector, &'static str)> {
    ROUTES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(p, c)| (*c, *p))
}

/// The user of `Authorization: Basic` (Segment's SDKs send the write key as the user, with an
/// empty password).
pub fn basic_user(headers: &HeaderMap) -> Option<String> {
    let v = header(headers, http::header::AUTHORIZATION)?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    (!user.is_empty()).then(|| user.to_owned())
}

/// Every distinct key the request head presents: the forms of `/v1/events` (each of them), the
/// Basic user, and for PostHog `?token=` / `?api_key=`.
pub fn head_keys(headers: &HeaderMap, query: Option<&str>, collector: Collector) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    keys.extend(
        presented_keys(headers, query)
            .into_iter()
            .map(Cow::into_owned),
    );
    keys.extend(basic_user(headers));
    if collector == Collector::Posthog {
        if let Some(q) = query {
            keys.extend(
                form_urlencoded::parse(q.as_bytes())
                    .filter(|(name, v)| (name == "token" || name == "api_key") && !v.is_empty())
                    .map(|(_, v)| v.into_owned()),
            );
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// PostHog's `?compression=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Base64,
}

fn compression_of(query: Option<&str>) -> Result<Option<Compression>, EdgeError> {
    let Some(q) = query else { return Ok(None) };
    let Some((_, v)) = form_urlencoded::parse(q.as_bytes()).find(|(n, _)| n == "compression")
    else {
        return Ok(None);
    };
    match v.as_ref() {
        "" => Ok(None),
        "gzip" | "gzip-js" => Ok(Some(Compression::Gzip)),
        "base64" => Ok(Some(Compression::Base64)),
        other => Err(EdgeError::UnsupportedEncoding(
            other.chars().take(100).collect(),
        )),
    }
}

/// The JSON text of a collector body: form-encoded `data=` taken out, base64 undone, gzip
/// inflated (when the header or `?compression=` says so, or the bytes start with gzip's
/// magic number) within the decompressed-size limit.
pub fn decode_body(
    raw: Vec<u8>,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    query: Option<&str>,
    collector: Collector,
    limits: &Limits,
) -> Result<Vec<u8>, EdgeError> {
    let form = match content_type {
        Some(ct)
            if collector == Collector::Posthog
                && ct.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                }) =>
        {
            true
        }
        _ => {
            format_of(content_type)?;
            false
        }
    };
    let encoding = encoding_of(content_encoding)?;
    let compression = match collector {
        Collector::Posthog => compression_of(query)?,
        Collector::Segment(_) => None,
    };
    let mut bytes = raw;
    if form {
        bytes = form_urlencoded::parse(&bytes)
            .find(|(n, _)| n == "data")
            .map(|(_, v)| v.into_owned().into_bytes())
            .ok_or_else(|| EdgeError::InvalidJson {
                message: "a form-encoded body needs a `data` field".to_owned(),
                index: None,
            })?;
    }
    if compression == Some(Compression::Base64) {
        let text: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        bytes = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|e| EdgeError::InvalidBase64(e.to_string()))?;
    }
    let gzip = encoding == Encoding::Gzip
        || compression == Some(Compression::Gzip)
        || bytes.starts_with(&[0x1f, 0x8b]);
    if gzip {
        bytes = gunzip_capped(&bytes, limits.max_decompressed_bytes)?;
    }
    Ok(bytes)
}

fn body_problem(p: BodyProblem) -> EdgeError {
    match p {
        BodyProblem::Malformed(message) => EdgeError::InvalidJson {
            message,
            index: None,
        },
        BodyProblem::Empty => EdgeError::NoEvents,
        BodyProblem::ConflictingKeys => EdgeError::ConflictingKeys,
        BodyProblem::TooLarge { limit } => EdgeError::BodyTooLarge { limit },
        BodyProblem::Invalid(problems) => EdgeError::Invalid(problems),
    }
}

/// Reads a decoded body with the collector's protocol.
pub fn parse<'a>(
    body: &'a [u8],
    collector: Collector,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<collector::Batch<'a>, EdgeError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|e| EdgeError::InvalidJson {
        message: format!("body is not UTF-8 (at byte {})", e.valid_up_to()),
        index: None,
    })?;
    match collector {
        Collector::Segment(call) => segment::parse(text, call, limits, now),
        Collector::Posthog => posthog::parse(text, limits, now),
    }
    .map_err(body_problem)
}

/// Handles a collector request after routing: the accepted message count, or why not.
pub async fn collect<Q, L, R, B>(
    deps: &Deps<'_, Q, L, R>,
    parts: &http::request::Parts,
    body: B,
    collector: Collector,
    now_ms: u64,
    log: &mut RequestLog,
) -> Result<usize, EdgeError>
where
    Q: Buffer,
    L: RateLimit,
    R: Runtime,
    B: BodySource,
{
    let config = deps.config;
    let limits = &config.limits;
    // A key in the head is checked before the body is read, so a wrong key costs no body.
    let head = head(parts, config, Some(collector))?;
    if let Some(id) = head.key_id() {
        rate_limit(deps, id, log).await?;
    }
    let raw = read_body(body, &head, limits.max_body_bytes).await?;
    log.bytes = raw.len();
    let decoded = decode_body(
        raw,
        head.content_type,
        head.content_encoding,
        head.query,
        collector,
        limits,
    )?;
    let received_at =
        DateTime::<Utc>::from_timestamp_millis(i64::try_from(now_ms).unwrap_or(i64::MAX))
            .unwrap_or_default();
    let batch = parse(&decoded, collector, limits, received_at)?;
    log.events = batch.messages.len();

    let key_id = match (&head.key, batch.key.as_deref()) {
        (Some((head_key, id)), Some(body_key)) => {
            if head_key != body_key {
                return Err(EdgeError::ConflictingKeys);
            }
            *id
        }
        (Some((_, id)), None) => *id,
        (None, body_key) => {
            let id = authenticate(&config.ingest_keys, body_key)?;
            rate_limit(deps, id, log).await?;
            id
        }
    };
    log.key_id = Some(key_id.to_owned());

    let fallback = match head.idempotency_key {
        Some(idempotency_key) => IdSource::Idempotency {
            key_id,
            idempotency_key,
        },
        None => IdSource::Generated { unix_ms: now_ms },
    };
    let mut random = || random_ten(deps.rt);
    let source = collector.source();
    let ids = collector::assign_ids(&batch.messages, source, key_id, &fallback, &mut random);
    let events = collector::into_events(
        batch.messages,
        &ids,
        source,
        received_at,
        key_id,
        edge_info(parts),
    );
    let encoded = encode_events(&events, &config.buffer).map_err(EdgeError::Pack)?;
    drop(events);
    drop(decoded);
    deliver(deps, encoded, ids, key_id, log)
        .await
        .map(|ids| ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("valid header"));
        }
        h
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn basic_user_is_the_key() {
        let h = headers(&[("authorization", &format!("Basic {}", b64("wk-123:")))]);
        assert_eq!(basic_user(&h).as_deref(), Some("wk-123"));
        let h = headers(&[("authorization", &format!("basic {}", b64("wk-123")))]);
        assert_eq!(basic_user(&h).as_deref(), Some("wk-123"));
        for bad in [
            format!("Basic {}", b64(":password-only")),
            "Basic not base64!".to_owned(),
            format!("Bearer {}", b64("wk:")),
        ] {
            assert_eq!(
                basic_user(&headers(&[("authorization", &bad)])),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn head_keys_by_protocol() {
        let h = headers(&[("authorization", &format!("Basic {}", b64("k1:")))]);
        let seg = Collector::Segment(segment::Call::Batch);
        assert_eq!(head_keys(&h, None, seg), ["k1"]);
        // The same key twice is one key; two keys are two.
        let h = headers(&[
            ("authorization", &format!("Basic {}", b64("k1:"))),
            ("x-api-key", "k1"),
        ]);
        assert_eq!(head_keys(&h, None, seg), ["k1"]);
        let h = headers(&[
            ("authorization", &format!("Basic {}", b64("k1:"))),
            ("x-api-key", "k2"),
        ]);
        assert_eq!(head_keys(&h, None, seg), ["k1", "k2"]);
        // `?token=` is PostHog's only.
        assert!(head_keys(&HeaderMap::new(), Some("token=t"), seg).is_empty());
        assert_eq!(
            head_keys(&HeaderMap::new(), Some("ver=1&token=t"), Collector::Posthog),
            ["t"]
        );
    }

    #[test]
    fn bodies_are_decoded_by_header_query_or_magic_bytes() {
        use std::io::Write;
        let json = br#"{"event":"e","distinct_id":"d"}"#;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(json).expect("in memory");
        let z = e.finish().expect("in memory");
        let l = Limits::default();
        let ph = Collector::Posthog;
        let decode = |raw: &[u8], ct, ce, q| decode_body(raw.to_vec(), ct, ce, q, ph, &l);
        assert_eq!(decode(json, None, None, None).expect("plain"), json);
        assert_eq!(decode(&z, None, Some("gzip"), None).expect("header"), json);
        assert_eq!(
            decode(&z, None, None, Some("compression=gzip-js")).expect("query"),
            json
        );
        assert_eq!(
            decode(&z, Some("text/plain"), None, None).expect("magic"),
            json
        );
        let b = b64(std::str::from_utf8(json).expect("utf8"));
        assert_eq!(
            decode(b.as_bytes(), None, None, Some("compression=base64")).expect("base64"),
            json
        );
        let form = format!("data={}", b64(std::str::from_utf8(json).expect("utf8")));
        assert_eq!(
            decode(
                form.as_bytes(),
                Some("application/x-www-form-urlencoded"),
                None,
                Some("compression=base64")
            )
            .expect("form"),
            json
        );
        // Form bodies are PostHog's; Segment refuses them.
        assert!(matches!(
            decode_body(
                form.into_bytes(),
                Some("application/x-www-form-urlencoded"),
                None,
                None,
                Collector::Segment(segment::Call::Batch),
                &l
            ),
            Err(EdgeError::UnsupportedMediaType(_))
        ));
        // The decompressed-size cap holds here too.
        let tight = Limits {
            max_decompressed_bytes: 10,
            max_body_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            decode_body(z, None, None, None, ph, &tight),
            Err(EdgeError::DecompressedTooLarge { limit: 10 })
        );
    }
}
