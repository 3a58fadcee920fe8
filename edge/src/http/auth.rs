//! Ingest keys: every key a request head presents, in the forms its protocol allows, and which
//! configured key (if any) one of them is, compared in constant time. It does not refuse two
//! keys or a missing one: that is the request head's decision (`request::head`).

use std::borrow::Cow;

use base64::Engine as _;
use http::HeaderMap;
use subtle::{Choice, ConstantTimeEq};

use crate::config::IngestKey;
use crate::error::EdgeError;
use crate::http::headers::header;
use crate::protocol::{Collector, Protocol};

/// Every distinct key the client presented in the forms of `/v1/events`: each
/// `Authorization: Bearer`, each `X-Api-Key` and each `?key=`, in that order, empty ones
/// skipped. More than one is refused by the caller: taking one by precedence would accept a
/// request whose other key is wrong, or another tenant's.
pub fn presented_keys<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Vec<Cow<'a, str>> {
    let bearer = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let header = headers
        .get_all("x-api-key")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim);
    let in_query = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(name, _)| name == "key")
        .map(|(_, v)| v);
    let mut keys: Vec<Cow<'a, str>> = Vec::new();
    for k in bearer.chain(header).map(Into::into).chain(in_query) {
        if !k.is_empty() && !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// Equality whose running time depends only on `expected`'s length, not on where the inputs
/// differ nor on `presented`'s contents.
fn ct_equal(presented: &[u8], expected: &[u8]) -> Choice {
    let mut same = (presented.len() as u64).ct_eq(&(expected.len() as u64));
    for (i, e) in expected.iter().enumerate() {
        same &= presented.get(i).copied().unwrap_or(0).ct_eq(e);
    }
    same
}

/// The `key_id` of the presented key. Every configured key is compared, always.
pub fn authenticate<'k>(
    keys: &'k [IngestKey],
    presented: Option<&str>,
) -> Result<&'k str, EdgeError> {
    let presented = presented.ok_or(EdgeError::MissingKey)?;
    let mut found = None;
    for k in keys {
        if bool::from(ct_equal(presented.as_bytes(), k.key.expose().as_bytes())) {
            found = Some(k.key_id.as_str());
        }
    }
    found.ok_or(EdgeError::InvalidKey)
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

/// Every distinct key the request head presents in `protocol`: the forms of `/v1/events` (each
/// of them); on a collector route also the Basic user, and for PostHog `?token=` / `?api_key=`.
pub fn keys_in_head(headers: &HeaderMap, query: Option<&str>, protocol: Protocol) -> Vec<String> {
    let mut keys: Vec<String> = presented_keys(headers, query)
        .into_iter()
        .map(Cow::into_owned)
        .collect();
    if protocol == Protocol::Events {
        // In the order presented, as `/v1/events` always read them.
        return keys;
    }
    keys.extend(basic_user(headers));
    if protocol == Protocol::Collector(Collector::Posthog) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use http::HeaderValue;
    use spillway_shared::collector::segment::Call;

    fn keys() -> Vec<IngestKey> {
        vec![
            IngestKey {
                key_id: "web".into(),
                key: Secret::new("k-web-0123456789abcdef"),
            },
            IngestKey {
                key_id: "app".into(),
                key: Secret::new("k-app-0123456789abcdef"),
            },
        ]
    }

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
    fn every_key_source_is_read() {
        let keys = |h: &HeaderMap, q| -> Vec<String> {
            presented_keys(h, q)
                .into_iter()
                .map(|k| k.into_owned())
                .collect()
        };
        let h = headers(&[("authorization", "Bearer  abc "), ("x-api-key", "def")]);
        assert_eq!(keys(&h, Some("key=ghi")), ["abc", "def", "ghi"]);
        let h = headers(&[("authorization", "bearer abc")]);
        assert_eq!(keys(&h, None), ["abc"]);
        // Basic is not a form of /v1/events (the collector routes read it themselves).
        let h = headers(&[
            ("authorization", "Basic Zm9vOmJhcg=="),
            ("x-api-key", "def"),
        ]);
        assert_eq!(keys(&h, None), ["def"]);
        let h = HeaderMap::new();
        assert_eq!(keys(&h, Some("a=1&key=g%2Bh%20i")), ["g+h i"]);
        assert!(keys(&h, Some("key=")).is_empty());
        assert!(keys(&h, None).is_empty());
        // The same key in several places is one key; repeated `?key=` are all read.
        let h = headers(&[("authorization", "Bearer abc"), ("x-api-key", "abc")]);
        assert_eq!(keys(&h, Some("key=abc&key=abc")), ["abc"]);
        assert_eq!(keys(&HeaderMap::new(), Some("key=a&key=b")), ["a", "b"]);
        // Repeated headers too.
        let mut h = HeaderMap::new();
        h.append("x-api-key", HeaderValue::from_static("a"));
        h.append("x-api-key", HeaderValue::from_static("b"));
        assert_eq!(keys(&h, None), ["a", "b"]);
    }

    #[test]
    fn authentication() {
        let k = keys();
        assert_eq!(authenticate(&k, Some("k-app-0123456789abcdef")), Ok("app"));
        assert_eq!(authenticate(&k, Some("k-web-0123456789abcdef")), Ok("web"));
        assert_eq!(authenticate(&k, None), Err(EdgeError::MissingKey));
        assert_eq!(
            authenticate(&k, Some("k-web-0123456789abcde")),
            Err(EdgeError::InvalidKey)
        );
        assert_eq!(
            authenticate(&k, Some("k-web-0123456789abcdefX")),
            Err(EdgeError::InvalidKey)
        );
        assert_eq!(authenticate(&k, Some("")), Err(EdgeError::InvalidKey));
    }

    #[test]
    fn constant_time_equality_is_exact() {
        assert!(bool::from(ct_equal(b"abc", b"abc")));
        assert!(!bool::from(ct_equal(b"abc", b"abd")));
        assert!(!bool::from(ct_equal(b"ab", b"abc")));
        assert!(!bool::from(ct_equal(b"abc\0", b"abc")));
        assert!(!bool::from(ct_equal(b"", b"abc")));
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
        let seg = Protocol::Collector(Collector::Segment(Call::Batch));
        assert_eq!(keys_in_head(&h, None, seg), ["k1"]);
        // The same key twice is one key; two keys are two.
        let h = headers(&[
            ("authorization", &format!("Basic {}", b64("k1:"))),
            ("x-api-key", "k1"),
        ]);
        assert_eq!(keys_in_head(&h, None, seg), ["k1"]);
        let h = headers(&[
            ("authorization", &format!("Basic {}", b64("k1:"))),
            ("x-api-key", "k2"),
        ]);
        assert_eq!(keys_in_head(&h, None, seg), ["k1", "k2"]);
        // `?token=` is PostHog's only.
        assert!(keys_in_head(&HeaderMap::new(), Some("token=t"), seg).is_empty());
        assert_eq!(
            keys_in_head(
                &HeaderMap::new(),
                Some("ver=1&token=t"),
                Protocol::Collector(Collector::Posthog)
            ),
            ["t"]
        );
    }
}
