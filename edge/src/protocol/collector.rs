//! The collector protocols' bodies (Segment, PostHog): how they are encoded, and reading the
//! decoded JSON into messages with `spillway-shared`'s `collector`.
//!
//! A body is read by what it is, as the collectors' own gateways read it, whatever its
//! `Content-Type` says: gzip is found by its magic bytes (and undone when `Content-Encoding:
//! gzip` or PostHog's `?compression=gzip|gzip-js` says so), a PostHog form body `data=...`
//! gives its `data` field (and its `compression` field as a hint), PostHog's base64 (said by
//! `?compression=base64`, or found because the whole body is base64 of JSON or gzip) is
//! undone, up to [`MAX_LAYERS`] layers. These are what posthog-js (gzip-js `text/plain`,
//! base64 form bodies, `sendBeacon` blobs without a type), posthog-node, Segment's
//! analytics.js / analytics-next (`text/plain` JSON) and analytics-node and RudderStack's SDKs
//! (JSON, gzip) send. A body that is none of these is refused as its declared type says: `415`
//! when that type is none the protocol speaks, else `400 invalid_json`. PostHog's `lz64`
//! (lz-string) is refused with `415 unsupported_encoding`: current posthog-js no longer sends
//! it.
//!
//! The decompressed-size limit applies to every gzip layer; base64 and form decoding only
//! shrink a body. It does not find the key (`http::auth`), assign ids or enrich
//! (`request::prepare`), nor send. The guarantees are those of `/v1/events`: the answer comes
//! once the buffer holds every message, and a body with any invalid message enqueues nothing.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use spillway_shared::collector::{self, posthog, segment, BodyProblem};
use spillway_shared::RequestLimits;

use crate::error::EdgeError;
use crate::protocol::events::{encoding_of, format_of, Encoding};
use crate::protocol::gzip::gunzip_capped;
use crate::protocol::{body_text, Collector};

/// How many encodings may wrap a body (e.g. gzip in base64 in a form field, in gzip): more than
/// any SDK sends, and a bound on the work one body can ask for.
pub const MAX_LAYERS: usize = 4;

/// A compression hint: PostHog's `?compression=` or a form body's `compression` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Base64,
}

/// A hint's value, as PostHog's capture service reads it: `gzip`/`gzip-js`, `base64`/`b64`;
/// `lz64`/`lz-string` is refused (not decoded here); anything else is ignored, the body being
/// read by what it is.
fn hint_of(value: &str) -> Result<Option<Compression>, EdgeError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "gzip" | "gzip-js" => Ok(Some(Compression::Gzip)),
        "base64" | "b64" => Ok(Some(Compression::Base64)),
        "lz64" | "lz-string" => Err(EdgeError::UnsupportedEncoding(
            value.chars().take(100).collect(),
        )),
        _ => Ok(None),
    }
}

fn query_hint(query: Option<&str>) -> Result<Option<Compression>, EdgeError> {
    let Some(q) = query else { return Ok(None) };
    match form_urlencoded::parse(q.as_bytes()).find(|(n, _)| n == "compression") {
        Some((_, v)) => hint_of(&v),
        None => Ok(None),
    }
}

/// Whether the body is JSON text (an object or an array), by its first byte past whitespace
/// and a byte-order mark.
fn is_json(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    matches!(
        bytes.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{') | Some(b'[')
    )
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// A form body's `data` and `compression` fields, when the body is a form with `data`.
fn form_fields(bytes: &[u8]) -> Option<(String, Option<String>)> {
    let named = |name: &[u8]| {
        bytes.starts_with(name)
            || bytes
                .windows(name.len() + 1)
                .any(|w| w[0] == b'&' && &w[1..] == name)
    };
    if !named(b"data=") {
        return None;
    }
    let mut data = None;
    let mut compression = None;
    for (name, value) in form_urlencoded::parse(bytes) {
        match name.as_ref() {
            "data" if data.is_none() => data = Some(value.into_owned()),
            "compression" if compression.is_none() => compression = Some(value.into_owned()),
            _ => {}
        }
    }
    let data = data?;
    // A `+` of base64 sent unescaped reads as a space: restore it, as PostHog does.
    let data = if data.bytes().all(|b| b == b' ' || is_base64_byte(b)) {
        data.replace(' ', "+")
    } else {
        data
    };
    Some((data, compression))
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
}

/// Standard or URL-safe base64, padded or not, whitespace ignored.
fn unbase64(bytes: &[u8]) -> Result<Vec<u8>, EdgeError> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let url_safe = text.iter().any(|b| matches!(b, b'-' | b'_'));
    let engine = if url_safe {
        GeneralPurpose::new(&alphabet::URL_SAFE, config)
    } else {
        GeneralPurpose::new(&alphabet::STANDARD, config)
    };
    engine
        .decode(&text)
        .map_err(|e| EdgeError::InvalidBase64(e.to_string()))
}

/// The JSON text of a collector body, read by what it is (see the module header), every gzip
/// layer within the decompressed-size limit.
pub fn decode_body(
    raw: Vec<u8>,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    query: Option<&str>,
    collector: Collector,
    limits: &RequestLimits,
) -> Result<Vec<u8>, EdgeError> {
    let cap = limits.max_decompressed_bytes;
    let posthog = collector == Collector::Posthog;
    let mut hint = if posthog { query_hint(query)? } else { None };
    let mut bytes = raw;
    if encoding_of(content_encoding)? == Encoding::Gzip {
        bytes = gunzip_capped(&bytes, cap)?;
    }
    for _ in 0..MAX_LAYERS {
        if is_json(&bytes) {
            return Ok(bytes);
        }
        if is_gzip(&bytes) || hint == Some(Compression::Gzip) {
            bytes = gunzip_capped(&bytes, cap)?;
            hint = None;
        } else if !posthog {
            break;
        } else if let Some((data, compression)) = form_fields(&bytes) {
            if let Some(c) = compression {
                hint = hint_of(&c)?.or(hint);
            }
            bytes = data.into_bytes();
        } else if hint == Some(Compression::Base64) {
            bytes = unbase64(&bytes)?;
            hint = None;
        } else if bytes.len() >= 4
            && bytes
                .iter()
                .all(|&b| is_base64_byte(b) || b.is_ascii_whitespace())
        {
            // Unasked-for base64 is taken only when it holds what a body may be.
            match unbase64(&bytes) {
                Ok(inner) if is_json(&inner) || is_gzip(&inner) => bytes = inner,
                _ => break,
            }
        } else {
            break;
        }
    }
    if !is_json(&bytes) {
        // Nothing recognisable: the declared type decides between 415 and invalid JSON.
        let speaks_form = posthog
            && content_type.is_some_and(|ct| {
                ct.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        if !speaks_form {
            format_of(content_type)?;
        }
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

    #[test]
    fn a_body_is_read_by_what_it_is_whatever_its_head_says() {
        let json = br#"[{"event":"e","distinct_id":"d"}]"#;
        let l = RequestLimits::default();
        let ph = Collector::Posthog;
        let seg = Collector::Segment(segment::Call::Batch);
        // JSON under any declared type, for either protocol.
        for ct in [
            "application/x-www-form-urlencoded",
            "text/csv",
            "application/octet-stream",
            "text/plain; charset=latin1",
        ] {
            for c in [ph, seg] {
                assert_eq!(
                    decode_body(json.to_vec(), Some(ct), None, None, c, &l).expect(ct),
                    json
                );
            }
        }
        // posthog-js's beacon on unload: a gzip ArrayBuffer, no Content-Type, `beacon=1`.
        let q = Some("ver=1.300.0&compression=gzip-js&_=1764316798250&beacon=1");
        assert_eq!(
            decode_body(gzip(json), None, None, q, ph, &l).expect("beacon"),
            json
        );
        // A base64 form without `?compression=` (the form may say it, or nothing at all),
        // `+` sent unescaped (read as a space), and URL-safe base64 without padding.
        let b = b64(std::str::from_utf8(json).expect("utf8"));
        for form in [
            format!("data={}&compression=base64", b.replace('+', "%2B")),
            format!("data={}", b.replace('+', "%2B")),
            format!("data={b}"),
        ] {
            assert_eq!(
                decode_body(
                    form.clone().into_bytes(),
                    Some("application/x-www-form-urlencoded"),
                    None,
                    None,
                    ph,
                    &l
                )
                .expect(&form),
                json
            );
        }
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(gzip(json));
        assert_eq!(
            decode_body(
                url_safe.into_bytes(),
                Some("text/plain"),
                None,
                None,
                ph,
                &l
            )
            .expect("url-safe"),
            json
        );
        // gzip inside base64 inside a form, inside gzip.
        let form = format!(
            "data={}",
            base64::engine::general_purpose::STANDARD
                .encode(gzip(json))
                .replace('+', "%2B")
        );
        assert_eq!(
            decode_body(gzip(form.as_bytes()), None, Some("gzip"), None, ph, &l).expect("layers"),
            json
        );
        // An unknown hint is ignored, as PostHog ignores it; lz-string is refused.
        assert_eq!(
            decode_body(json.to_vec(), None, None, Some("compression=zstd"), ph, &l)
                .expect("unknown"),
            json
        );
        assert!(matches!(
            decode_body(json.to_vec(), None, None, Some("compression=lz64"), ph, &l),
            Err(EdgeError::UnsupportedEncoding(_))
        ));
        // Base64 nobody asked for is taken only when it holds JSON or gzip: else the body is
        // left as it is (and is invalid JSON), or refused by its declared type.
        assert_eq!(
            decode_body(b"abcd1234".to_vec(), Some("text/plain"), None, None, ph, &l)
                .expect("as is"),
            b"abcd1234"
        );
        assert!(matches!(
            decode_body(b"abcd1234".to_vec(), Some("text/csv"), None, None, ph, &l),
            Err(EdgeError::UnsupportedMediaType(_))
        ));
        // Segment reads neither forms nor base64: it never sends them.
        assert!(matches!(
            decode_body(b.clone().into_bytes(), Some("text/plain"), None, None, seg, &l),
            Ok(body) if body == b.as_bytes()
        ));
    }

    #[test]
    fn layers_are_bounded_and_every_gzip_layer_is_capped() {
        let json = br#"{"event":"e","distinct_id":"d"}"#;
        let l = RequestLimits::default();
        let mut deep = json.to_vec();
        for _ in 0..=MAX_LAYERS {
            deep = gzip(&deep);
        }
        let left = decode_body(deep, None, None, None, Collector::Posthog, &l).expect("left as is");
        assert!(is_gzip(&left), "one layer too many stays gzip");
        // A small inner bomb, wrapped in base64 and a form: the cap holds after every layer.
        let tight = RequestLimits {
            max_decompressed_bytes: 1000,
            ..RequestLimits::default()
        };
        let bomb = gzip(&vec![b' '; 100_000]);
        let form = format!(
            "data={}",
            base64::engine::general_purpose::STANDARD
                .encode(&bomb)
                .replace('+', "%2B")
        );
        assert_eq!(
            decode_body(
                form.into_bytes(),
                None,
                None,
                None,
                Collector::Posthog,
                &tight
            ),
            Err(EdgeError::DecompressedTooLarge { limit: 1000 })
        );
    }
}
