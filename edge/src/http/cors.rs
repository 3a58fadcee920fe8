//! CORS: the headers of an answer to an allowed origin, and of a preflight. It does not
//! decide whether a path exists (`http::route`).

use crate::config::AllowedOrigins;
use crate::http::route::{HEALTH_ALLOW, INGEST_ALLOW};

/// Headers a browser may send with an ingest request. `x-retry-count` is
/// @segment/analytics-next's (on every request, with the write key as `Authorization: Basic`):
/// a preflight that refused it would lose every event that SDK sends from a browser.
/// `sent-at` is the client's send time, which corrects its events' timestamps
/// (`request::head::sent_at`).
const ALLOW_HEADERS: &str = "authorization, content-type, content-encoding, x-api-key, idempotency-key, x-retry-count, sent-at";

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
