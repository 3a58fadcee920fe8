//! Reading request headers: one header as text, the headers the request path reads checked to
//! be readable as sent, and the `Idempotency-Key`. It does not read keys (`http::auth`).

use http::HeaderMap;

use crate::error::EdgeError;

/// A header's value as text; `None` when absent or not visible ASCII.
pub fn header(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("valid header"));
        }
        h
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
