//! The collector protocols' bodies (Segment, PostHog): how they are encoded
//! (`Content-Encoding: gzip`, PostHog's `?compression=`, gzip found by its magic bytes, base64,
//! form-encoded `data=`) and reading the decoded JSON into messages with `spillway-shared`'s
//! `collector`.
//!
//! It does not find the key (`http::auth`), assign ids or enrich (`request::prepare`), nor
//! send. The guarantees are those of `/v1/events`: the answer comes once the buffer holds
//! every message, and a body with any invalid message enqueues nothing.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use spillway_shared::collector::{self, posthog, segment, BodyProblem};
use spillway_shared::RequestLimits;

use crate::error::EdgeError;
use crate::protocol::events::{encoding_of, format_of, Encoding};
use crate::protocol::gzip::gunzip_capped;
use crate::protocol::{body_text, Collector};

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
    limits: &RequestLimits,
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
    limits: &RequestLimits,
    now: DateTime<Utc>,
) -> Result<collector::Body<'a>, EdgeError> {
    let text = body_text(body)?;
    match collector {
        Collector::Segment(call) => segment::parse(text, call, limits, now),
        Collector::Posthog => posthog::parse(text, limits, now),
    }
    .map_err(body_problem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_support::gzip;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn bodies_are_decoded_by_header_query_or_magic_bytes() {
        let json = br#"{"event":"e","distinct_id":"d"}"#;
        let z = gzip(json);
        let l = RequestLimits::default();
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
        let tight = RequestLimits {
            max_decompressed_bytes: 10,
            max_body_bytes: 10,
            ..RequestLimits::default()
        };
        assert_eq!(
            decode_body(z, None, None, None, ph, &tight),
            Err(EdgeError::DecompressedTooLarge { limit: 10 })
        );
    }
}
