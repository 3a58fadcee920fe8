//! What is decided from the request head alone: the route, CORS, the ingest key and the
//! `Idempotency-Key`.

use http::{HeaderMap, Method};
use subtle::{Choice, ConstantTimeEq};

use crate::collector::{collector_route, Collector};
use crate::config::{AllowedOrigins, IngestKey};
use crate::error::EdgeError;

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Ingest,
    /// A collector protocol's route (Segment, PostHog).
    Collect(Collector),
    Health,
    /// CORS preflight on a known path.
    Preflight,
    /// The test hook: the handler panics, to prove a panic still answers a JSON `500`.
    Panic,
}

/// The path as the log line names it: a known route, or `(unknown)`. A mistyped path can hold
/// anything the client typed, an ingest key included (`/v1/events&key=...`), so it is never
/// logged as sent.
pub fn log_path(path: &str) -> &'static str {
    match path {
        "/v1/events" => "/v1/events",
        "/healthz" => "/healthz",
        _ => collector_route(path).map_or("(unknown)", |(_, known)| known),
    }
}

/// Request headers that the runtime could not represent as `http` header values (a control
/// character or DEL in the value), by name. The adapter records them instead of failing the
/// request, so that the request path can refuse the ones it reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnreadableHeaders(pub Vec<String>);

/// The headers the ingest path reads.
const READ_HEADERS: [&str; 6] = [
    "authorization",
    "x-api-key",
    "content-type",
    "content-encoding",
    "content-length",
    "idempotency-key",
];

/// Refuses a request whose headers that matter cannot be read as sent: a header the runtime
/// could not represent, or one with bytes other than visible ASCII. Treating it as absent
/// would silently change the request (an `Idempotency-Key` ignored, so a retry is stored
/// twice; a `Content-Type` with a stray control byte accepted as JSON).
pub fn check_read_headers(
    headers: &HeaderMap,
    unreadable: Option<&UnreadableHeaders>,
) -> Result<(), EdgeError> {
    for name in READ_HEADERS {
        let lost = unreadable.is_some_and(|u| u.0.iter().any(|n| n.eq_ignore_ascii_case(name)));
        let garbled = headers.get_all(name).iter().any(|v| v.to_str().is_err());
        if lost || garbled {
            return Err(EdgeError::InvalidHeader(name));
        }
    }
    Ok(())
}

const INGEST_ALLOW: &str = "POST, OPTIONS";
const HEALTH_ALLOW: &str = "GET, HEAD, OPTIONS";

/// The path of the test hook that panics (see [`crate::config::Config::panic_route`]).
pub const PANIC_PATH: &str = "/__spillway/panic";

/// What a request is for. `panic_route` turns on the test hook at [`PANIC_PATH`].
pub fn route(method: &Method, path: &str, panic_route: bool) -> Result<Route, EdgeError> {
    let (allow, route) = match path {
        PANIC_PATH if panic_route => return Ok(Route::Panic),
        "/v1/events" => (
            INGEST_ALLOW,
            (method == Method::POST).then_some(Route::Ingest),
        ),
        "/healthz" => (
            HEALTH_ALLOW,
            (method == Method::GET || method == Method::HEAD).then_some(Route::Health),
        ),
        _ => match collector_route(path) {
            Some((c, _)) => (
                INGEST_ALLOW,
                (method == Method::POST).then_some(Route::Collect(c)),
            ),
            None => return Err(EdgeError::NotFound),
        },
    };
    match route {
        Some(r) => Ok(r),
        None if method == Method::OPTIONS => Ok(Route::Preflight),
        None => Err(EdgeError::MethodNotAllowed { allow }),
    }
}

/// Headers a browser may send with an ingest request.
const ALLOW_HEADERS: &str =
    "authorization, content-type, content-encoding, x-api-key, idempotency-key";

/// CORS headers for a response to a request from `origin`, when that origin is allowed.
pub fn cors_headers(allowed: &AllowedOrigins, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let Some(allow) = origin.and_then(|o| allowed.allow(o)) else {
        return Vec::new();
    };
    let mut h = vec![("access-control-allow-origin", allow.to_owned())];
    if allow != "*" {
        h.push(("vary", "Origin".to_owned()));
    }
    h.push((
        "access-control-expose-headers",
        "retry-after, x-request-id".to_owned(),
    ));
    h
}

/// Extra headers of a preflight answer from an allowed origin.
pub fn preflight_headers(path: &str) -> Vec<(&'static str, String)> {
    let methods = if path == "/healthz" {
        HEALTH_ALLOW
    } else {
        INGEST_ALLOW
    };
    vec![
        ("access-control-allow-methods", methods.to_owned()),
        ("access-control-allow-headers", ALLOW_HEADERS.to_owned()),
        ("access-control-max-age", "86400".to_owned()),
    ]
}

/// Every distinct key the client presented in the forms of `/v1/events`: each
/// `Authorization: Bearer`, each `X-Api-Key` and each `?key=`, in that order, empty ones
/// skipped. More than one is refused by the caller: taking one by precedence would accept a
/// request whose other key is wrong, or another tenant's.
pub fn presented_keys<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Vec<std::borrow::Cow<'a, str>> {
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
    let mut keys: Vec<std::borrow::Cow<'a, str>> = Vec::new();
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

/// The `Idempotency-Key`, if sent: 1 to 255 visible ASCII characters (`!` to `~`: no space,
/// as documented). Whitespace around the value is HTTP's, not the key's.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, EdgeError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| EdgeError::InvalidIdempotencyKey)?
        .trim();
    if v.is_empty() || v.len() > 255 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(EdgeError::InvalidIdempotencyKey);
    }
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use http::HeaderValue;

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

    #[test]
    fn routes() {
        assert_eq!(route(&Method::POST, "/v1/events", false), Ok(Route::Ingest));
        assert_eq!(route(&Method::GET, "/healthz", false), Ok(Route::Health));
        assert_eq!(route(&Method::HEAD, "/healthz", false), Ok(Route::Health));
        assert_eq!(
            route(&Method::OPTIONS, "/v1/events", false),
            Ok(Route::Preflight)
        );
        assert_eq!(
            route(&Method::GET, "/v1/events", false),
            Err(EdgeError::MethodNotAllowed {
                allow: "POST, OPTIONS"
            })
        );
        assert_eq!(
            route(&Method::POST, "/healthz", false),
            Err(EdgeError::MethodNotAllowed {
                allow: "GET, HEAD, OPTIONS"
            })
        );
        assert_eq!(
            route(&Method::POST, "/v1/events/", false),
            Err(EdgeError::NotFound)
        );
        assert_eq!(
            route(&Method::OPTIONS, "/nope", false),
            Err(EdgeError::NotFound)
        );
        // The test hook exists only when the configuration turns it on.
        assert_eq!(
            route(&Method::GET, PANIC_PATH, false),
            Err(EdgeError::NotFound)
        );
        assert_eq!(route(&Method::GET, PANIC_PATH, true), Ok(Route::Panic));
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
    fn cors() {
        let list = AllowedOrigins::List(vec!["https://app.example.com".into()]);
        let h = cors_headers(&list, Some("https://app.example.com"));
        assert_eq!(
            h[0],
            (
                "access-control-allow-origin",
                "https://app.example.com".to_owned()
            )
        );
        assert!(h.contains(&("vary", "Origin".to_owned())));
        assert!(cors_headers(&list, Some("https://evil.example")).is_empty());
        assert!(cors_headers(&list, None).is_empty());
        let any = cors_headers(&AllowedOrigins::Any, Some("https://x.example"));
        assert_eq!(any[0].1, "*");
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(idempotency_key(&HeaderMap::new()), Ok(None));
        assert_eq!(
            idempotency_key(&headers(&[("idempotency-key", "req-1")])),
            Ok(Some("req-1"))
        );
        assert!(idempotency_key(&headers(&[("idempotency-key", " ")])).is_err());
        // Visible ASCII only: no space or tab inside; 255 characters at most.
        for bad in ["a b", "a\tb", "req 1 "] {
            assert_eq!(
                idempotency_key(&headers(&[("idempotency-key", bad)])),
                Err(EdgeError::InvalidIdempotencyKey),
                "{bad:?}"
            );
        }
        assert_eq!(
            idempotency_key(&headers(&[("idempotency-key", " req-1 ")])),
            Ok(Some("req-1"))
        );
        let longest = "~".repeat(255);
        assert_eq!(
            idempotency_key(&headers(&[("idempotency-key", &longest)])),
            Ok(Some(longest.as_str()))
        );
        assert!(idempotency_key(&headers(&[("idempotency-key", &"x".repeat(256))])).is_err());
    }
}
