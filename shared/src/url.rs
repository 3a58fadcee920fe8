//! The one rule for "the origin of an http(s) URL", so the edge (`SQS_QUEUE_URL`,
//! `SQS_ENDPOINT`, `ALLOWED_ORIGINS`) and the consumer's tools (`SQS_QUEUE_URL`,
//! `SQS_ENDPOINT`, `--dlq-url`) accept and refuse the same settings.
//!
//! Only what an endpoint or a browser origin can be: `http` or `https`, a host, an optional
//! port. User information (`user:pw@host`) is refused: it would put a credential into a URL
//! that is logged and compared as plain text.

use thiserror::Error;

/// Why a string is not an http(s) URL with an origin. The messages complete "NAME ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OriginError {
    #[error("is not a valid URL")]
    NotAUrl,
    #[error("must start with http:// or https://")]
    Scheme,
    #[error("must name a host")]
    NoHost,
    #[error("must not carry user information")]
    UserInfo,
}

/// `scheme://host[:port]` of an absolute http(s) URL, refusing anything else.
pub fn origin_of(url: &str) -> Result<String, OriginError> {
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err(OriginError::NotAUrl);
    }
    let (scheme, rest) = url.split_once("://").ok_or(OriginError::Scheme)?;
    if scheme != "http" && scheme != "https" {
        return Err(OriginError::Scheme);
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(OriginError::UserInfo);
    }
    let (host, port) = split_port(authority)?;
    if host.is_empty() {
        return Err(OriginError::NoHost);
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        // An IPv6 literal.
        inner.strip_suffix(']').is_some_and(|ip| {
            !ip.is_empty()
                && ip
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
        })
    } else {
        host.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~'))
    };
    if !host_ok {
        return Err(OriginError::NotAUrl);
    }
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(OriginError::NotAUrl);
        }
        if port.parse::<u32>().map_or(true, |p| p > 65_535) {
            return Err(OriginError::NotAUrl);
        }
    }
    Ok(format!("{scheme}://{authority}"))
}

/// `host` and the text after its port colon, if any (not inside an IPv6 literal).
fn split_port(authority: &str) -> Result<(&str, Option<&str>), OriginError> {
    if authority.starts_with('[') {
        return match authority.find(']') {
            None => Err(OriginError::NotAUrl),
            Some(end) => match &authority[end + 1..] {
                "" => Ok((authority, None)),
                after => match after.strip_prefix(':') {
                    Some(port) => Ok((&authority[..=end], Some(port))),
                    None => Err(OriginError::NotAUrl),
                },
            },
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_endpoints_and_queue_urls() {
        for (url, origin) in [
            (
                "https://sqs.eu-west-1.amazonaws.com/123456789012/events",
                "https://sqs.eu-west-1.amazonaws.com",
            ),
            (
                "http://127.0.0.1:4566/000000000000/q",
                "http://127.0.0.1:4566",
            ),
            ("http://localhost:5000", "http://localhost:5000"),
            ("https://app.example.com/", "https://app.example.com"),
            ("http://[::1]:9324/q", "http://[::1]:9324"),
            ("https://h.example?x=1", "https://h.example"),
        ] {
            assert_eq!(origin_of(url).as_deref(), Ok(origin), "{url}");
        }
    }

    #[test]
    fn what_is_not_an_origin_says_why() {
        for (url, why) in [
            ("sqs.example.com/1/q", OriginError::Scheme),
            ("ftp://sqs.example.com/1/q", OriginError::Scheme),
            ("HTTP://sqs.example.com", OriginError::Scheme),
            ("https://", OriginError::NoHost),
            ("https:///path", OriginError::NoHost),
            ("http://:80/", OriginError::NoHost),
            ("https://user:pw@sqs.example.com/1/q", OriginError::UserInfo),
            ("https://user@sqs.example.com", OriginError::UserInfo),
            ("https://sqs example.com", OriginError::NotAUrl),
            ("https://sqs.example.com:99999", OriginError::NotAUrl),
            ("https://sqs.example.com:", OriginError::NotAUrl),
            ("https://sqs.example.com:8a", OriginError::NotAUrl),
            ("https://[::1", OriginError::NotAUrl),
            ("https://h\u{e9}.example", OriginError::NotAUrl),
            ("https://a,b.example", OriginError::NotAUrl),
        ] {
            assert_eq!(origin_of(url), Err(why), "{url}");
        }
    }
}
