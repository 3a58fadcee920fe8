//! Ingest keys and browser tokens: every key a request head presents, in the forms its
//! protocol allows, and which configured key (if any) one of them is: a key compared in
//! constant time, or a token (`spillway_shared::token`) checked against its key's secrets,
//! expiry and the request's `Origin`; then the key's own limits on browsers (`TOKEN_REQUIRED`,
//! `KEY_ORIGINS`). It does not refuse two keys or a missing one: that is the request head's
//! decision (`request::head`).

use std::borrow::Cow;

use base64::Engine as _;
use http::HeaderMap;
use subtle::{Choice, ConstantTimeEq};

use spillway_shared::token;

use crate::config::Config;
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

/// What, besides the key, decides whether it is accepted: where the request comes from and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    /// The `Origin` header, as sent; browsers send it on every `POST`, beacons included, and a
    /// page cannot change it. Servers usually send none.
    pub origin: Option<&'a str>,
    /// Now, in unix seconds (the edge's clock).
    pub now_secs: u64,
}

impl<'a> Caller<'a> {
    /// The caller of a request with these headers, at `now_ms`.
    pub fn of(headers: &'a HeaderMap, now_ms: u64) -> Self {
        Self {
            origin: header(headers, http::header::ORIGIN),
            now_secs: now_ms / 1_000,
        }
    }
}

/// The `key_id` the presented key or token authenticates as, for `caller`. Every configured
/// key is compared, always; a token is believed only once its signature verifies. Then the
/// key's limits on browsers: a `TOKEN_REQUIRED` key's raw key is refused with an `Origin`, and
/// a key limited by `KEY_ORIGINS` is refused from any other origin.
pub fn authenticate<'k>(
    config: &'k Config,
    presented: Option<&str>,
    caller: Caller<'_>,
) -> Result<&'k str, EdgeError> {
    let presented = presented.ok_or(EdgeError::MissingKey)?;
    let key_id = if token::is_token(presented) {
        token_key(config, presented, caller)?
    } else {
        let key_id = raw_key(config, presented)?;
        if caller.origin.is_some() && config.access.token_required(key_id) {
            return Err(EdgeError::TokenRequired);
        }
        key_id
    };
    match (config.access.origins_of(key_id), caller.origin) {
        (Some(allowed), Some(origin)) if !allowed.iter().any(|o| o == origin) => {
            Err(EdgeError::OriginNotAllowed)
        }
        _ => Ok(key_id),
    }
}

/// The `key_id` of a raw ingest key.
fn raw_key<'k>(config: &'k Config, presented: &str) -> Result<&'k str, EdgeError> {
    let mut found = None;
    for k in &config.ingest_keys {
        if bool::from(ct_equal(presented.as_bytes(), k.key.expose().as_bytes())) {
            found = Some(k.key_id.as_str());
        }
    }
    found.ok_or(EdgeError::InvalidKey)
}

/// The `key_id` of a token, once its signature, expiry and origin check. A token naming a key
/// id the edge does not know is checked against no secret, so it is refused as any forged one.
fn token_key<'k>(
    config: &'k Config,
    presented: &str,
    caller: Caller<'_>,
) -> Result<&'k str, EdgeError> {
    let parsed = token::parse(presented).map_err(EdgeError::Token)?;
    let key_id = config
        .ingest_keys
        .iter()
        .find(|k| k.key_id == parsed.key_id)
        .map(|k| k.key_id.as_str());
    let secrets = key_id
        .into_iter()
        .flat_map(|id| config.access.secrets_of(id));
    token::check(
        &parsed,
        secrets,
        caller.origin,
        caller.now_secs,
        config.access.max_ttl_secs,
    )
    .map_err(EdgeError::Token)?;
    key_id.ok_or(EdgeError::Token(token::TokenError::Invalid))
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
    use crate::config::tests::{config_with, KEY_APP, KEY_WEB};
    use http::HeaderValue;
    use spillway_shared::collector::segment::Call;
    use spillway_shared::token::{mint, TokenError, SKEW_SECS};

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

    const NOW: u64 = 1_765_000_000;
    const SITE: &str = "https://app.example.com";
    const SECRET: &str = "web-token-secret-0123456789abcdef";

    fn from(origin: Option<&str>) -> Caller<'_> {
        Caller {
            origin,
            now_secs: NOW,
        }
    }

    #[test]
    fn authentication() {
        let c = config_with(&[]).expect("config");
        let auth = |k: Option<&str>| authenticate(&c, k, from(None));
        assert_eq!(auth(Some(KEY_APP)), Ok("app"));
        assert_eq!(auth(Some(KEY_WEB)), Ok("web"));
        assert_eq!(auth(None), Err(EdgeError::MissingKey));
        assert_eq!(auth(Some(&KEY_WEB[1..])), Err(EdgeError::InvalidKey));
        assert_eq!(
            auth(Some(&format!("{KEY_WEB}X"))),
            Err(EdgeError::InvalidKey)
        );
        assert_eq!(auth(Some("")), Err(EdgeError::InvalidKey));
        // Without per-key settings a key works from any origin (ALLOWED_ORIGINS is CORS only).
        assert_eq!(
            authenticate(&c, Some(KEY_WEB), from(Some("https://x.example"))),
            Ok("web")
        );
    }

    fn with_tokens(extra: &[(&'static str, &str)]) -> Config {
        let secrets = format!("web:{SECRET}");
        let mut vars = vec![
            ("TOKEN_SECRETS", secrets.as_str()),
            ("TOKEN_MAX_TTL_SECS", "3600"),
        ];
        vars.extend_from_slice(extra);
        config_with(&vars).expect("config")
    }

    fn token(key_id: &str, origin: &str, expires: u64) -> String {
        mint(key_id, origin, expires, SECRET.as_bytes()).expect("mint")
    }

    #[test]
    fn a_token_authenticates_as_its_key_from_its_origin() {
        let c = with_tokens(&[]);
        let t = token("web", SITE, NOW + 600);
        assert_eq!(authenticate(&c, Some(&t), from(Some(SITE))), Ok("web"));
        // The key itself still works (servers), with or without an Origin.
        assert_eq!(authenticate(&c, Some(KEY_WEB), from(Some(SITE))), Ok("web"));
        assert_eq!(authenticate(&c, Some(KEY_WEB), from(None)), Ok("web"));
    }

    #[test]
    fn every_token_refusal() {
        let c = with_tokens(&[]);
        let refused = |t: &str, origin| match authenticate(&c, Some(t), from(origin)) {
            Err(EdgeError::Token(why)) => why,
            other => panic!("{t}: {other:?}"),
        };
        let good = token("web", SITE, NOW + 600);
        assert_eq!(
            refused(&token("web", SITE, NOW - SKEW_SECS - 1), Some(SITE)),
            TokenError::Expired
        );
        assert_eq!(
            refused(&token("web", SITE, NOW + 3_600 + SKEW_SECS + 1), Some(SITE)),
            TokenError::TooLong
        );
        assert_eq!(
            refused(&good, Some("https://evil.example")),
            TokenError::WrongOrigin
        );
        assert_eq!(refused(&good, None), TokenError::NoOrigin);
        // Tampered with: another key id, another expiry; unknown key ids; no token secret.
        assert_eq!(
            refused(&good.replacen("swt1.web.", "swt1.app.", 1), Some(SITE)),
            TokenError::Invalid
        );
        let later = good.replacen(&format!(".{}.", NOW + 600), &format!(".{}.", NOW + 900), 1);
        assert_eq!(refused(&later, Some(SITE)), TokenError::Invalid);
        assert_eq!(
            refused(&token("nobody", SITE, NOW + 600), Some(SITE)),
            TokenError::Invalid
        );
        assert_eq!(
            refused(&token("app", SITE, NOW + 600), Some(SITE)),
            TokenError::Invalid
        );
        assert_eq!(refused("swt1.garbage", Some(SITE)), TokenError::Invalid);
        // Without TOKEN_SECRETS no token is accepted at all.
        let plain = config_with(&[]).expect("config");
        assert_eq!(
            authenticate(&plain, Some(&good), from(Some(SITE))),
            Err(EdgeError::Token(TokenError::Invalid))
        );
    }

    #[test]
    fn token_required_refuses_the_key_from_browsers_only() {
        let c = with_tokens(&[("TOKEN_REQUIRED", "web")]);
        assert_eq!(
            authenticate(&c, Some(KEY_WEB), from(Some(SITE))),
            Err(EdgeError::TokenRequired)
        );
        assert_eq!(authenticate(&c, Some(KEY_WEB), from(None)), Ok("web"));
        let t = token("web", SITE, NOW + 60);
        assert_eq!(authenticate(&c, Some(&t), from(Some(SITE))), Ok("web"));
        // Other keys are not affected.
        assert_eq!(authenticate(&c, Some(KEY_APP), from(Some(SITE))), Ok("app"));
    }

    #[test]
    fn key_origins_limit_keys_and_tokens_alike() {
        let c = with_tokens(&[(
            "KEY_ORIGINS",
            "web=https://app.example.com|http://localhost:3000",
        )]);
        for ok in [SITE, "http://localhost:3000"] {
            assert_eq!(authenticate(&c, Some(KEY_WEB), from(Some(ok))), Ok("web"));
        }
        assert_eq!(
            authenticate(&c, Some(KEY_WEB), from(Some("https://evil.example"))),
            Err(EdgeError::OriginNotAllowed)
        );
        // Exactly: another case or a trailing slash is another origin.
        assert_eq!(
            authenticate(&c, Some(KEY_WEB), from(Some("https://APP.example.com"))),
            Err(EdgeError::OriginNotAllowed)
        );
        // No Origin: not a browser, nothing to check.
        assert_eq!(authenticate(&c, Some(KEY_WEB), from(None)), Ok("web"));
        // A valid token for an origin the key is not limited to.
        let t = token("web", "https://other.example", NOW + 60);
        assert_eq!(
            authenticate(&c, Some(&t), from(Some("https://other.example"))),
            Err(EdgeError::OriginNotAllowed)
        );
        // Keys without an entry are not limited.
        assert_eq!(
            authenticate(&c, Some(KEY_APP), from(Some("https://evil.example"))),
            Ok("app")
        );
        // Their origins join ALLOWED_ORIGINS for CORS.
        assert_eq!(
            c.allowed_origins.allow("http://localhost:3000"),
            Some("http://localhost:3000")
        );
    }

    #[test]
    fn the_caller_is_read_from_the_head() {
        let h = headers(&[("origin", SITE)]);
        assert_eq!(
            Caller::of(&h, 1_765_000_000_999),
            Caller {
                origin: Some(SITE),
                now_secs: 1_765_000_000
            }
        );
        assert_eq!(Caller::of(&HeaderMap::new(), 0).origin, None);
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
