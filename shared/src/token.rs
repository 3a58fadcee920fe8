//! Browser tokens: a short-lived credential that a customer's backend mints for one key and one
//! site, so that a page never carries the ingest key itself, and a token copied out of a page
//! does not work from a browser on another site, nor after it expires.
//!
//! ```text
//! swt1.<key_id>.<base64url(origin)>.<expires>.<base64url(signature)>
//! signature = HMAC-SHA256(secret, "swt1\n" + key_id + "\n" + origin + "\n" + expires)
//! ```
//!
//! `expires` is unix seconds (decimal, no sign or leading zero). The origin is base64url
//! (no padding) because `:` and `/` would break the places a token travels: the user of HTTP
//! Basic (Segment's SDKs), a query string. Key ids are `A-Z a-z 0-9 - _ .`, so the token
//! is URL-safe as a whole and fits `?key=`, `Bearer`, `X-Api-Key` and every collector key
//! field. A key id may hold `.`: the token is read from the right (the last three fields
//! cannot hold one). The signed text separates fields with `\n`, which none may hold, so no two
//! claims sign the same bytes.
//!
//! The secret is a token secret of the key (`TOKEN_SECRETS` at the edge), never the ingest
//! key: whoever mints tokens need not hold a credential that sends events, and the two
//! rotate apart. [`check`] verifies a token against every secret of its key id (rotation
//! keeps two), then its expiry (with [`SKEW_SECS`] of clock skew either way, and at most
//! `max_ttl` seconds ahead, so a leaked long-lived token is usable for at most `max_ttl`
//! seconds) and last that the request's `Origin` is the token's, exactly.
//!
//! What it does not do: stop a server from replaying a token it copied, with a forged
//! `Origin`, until the token expires: `Origin` binds browsers only (a page cannot set it).
//! That is why tokens are short-lived. Pure: the time is an argument; no I/O.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::url::origin_of;

type HmacSha256 = Hmac<Sha256>;

/// What every token starts with: the format's version. A later format gets another prefix, and
/// an ingest key may not start with one (the edge tells tokens from keys by it).
pub const PREFIX: &str = "swt1.";
/// The version tag at the head of the signed text.
const VERSION: &str = "swt1";
/// Clock skew allowed between the minting backend and the edge, either way, in seconds: both
/// clocks are NTP-synchronised in practice; a minute covers a drifting host without making an
/// expired token much longer-lived.
pub const SKEW_SECS: u64 = 60;
/// Shortest token secret, in bytes: HMAC-SHA256's own output, so the secret is not the weak
/// part.
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest token the edge reads: a key id of 64, an origin of 255 bytes (base64 of 340), the
/// rest fixed. Longer input is refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 512;

/// Why a token cannot be minted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MintError {
    #[error("the key id must be 1 to 64 characters of A-Z a-z 0-9 - _ .")]
    KeyId,
    #[error(
        "the origin must be exactly as a browser sends it: scheme://host[:port], lower case, \
         no path, no trailing slash, no default port (e.g. https://app.example.com)"
    )]
    Origin,
    #[error("the secret must be at least {MIN_SECRET_BYTES} bytes")]
    Secret,
}

/// Why a token is refused. The edge answers each with its own `401` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Not a token of this format, or its signature does not verify under any secret of its
    /// key id (tampered with, minted with another secret, or for a key id the edge does not
    /// know). Nothing of an unverified token is trusted, so all of these are one answer.
    #[error("the token is malformed, altered, or not signed by a secret of its key")]
    Invalid,
    /// Its expiry (plus the skew) has passed.
    #[error("the token has expired")]
    Expired,
    /// It expires further ahead than the edge accepts (`TOKEN_MAX_TTL_SECS`).
    #[error("the token expires further ahead than this service accepts")]
    TooLong,
    /// The request carries no `Origin` header: a token is for browsers, which always send one.
    #[error("a token is only accepted with the Origin header a browser sends")]
    NoOrigin,
    /// The request's `Origin` is not the token's.
    #[error("the token was minted for another origin")]
    WrongOrigin,
}

/// A token read from its text, not yet verified: nothing in it is to be trusted before
/// [`check`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    pub key_id: &'a str,
    pub origin: String,
    pub expires: u64,
    sig: Vec<u8>,
}

/// Whether `presented` is meant as a token (it starts with [`PREFIX`]), whatever else it holds.
pub fn is_token(presented: &str) -> bool {
    presented.starts_with(PREFIX)
}

fn valid_key_id(key_id: &str) -> bool {
    !key_id.is_empty()
        && key_id.len() <= 64
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `origin` is exactly what a browser sends as `Origin` for a page of that site:
/// the request's header is compared byte for byte with the token's.
pub fn canonical_origin(origin: &str) -> bool {
    origin_of(origin).is_ok_and(|o| o == origin)
        && origin == origin.to_ascii_lowercase()
        && !(origin.starts_with("https://") && origin.ends_with(":443"))
        && !(origin.starts_with("http://") && origin.ends_with(":80"))
}

fn mac(secret: &[u8], key_id: &str, origin: &str, expires: u64) -> HmacSha256 {
    // HMAC takes a key of any length; `mint` and the edge's settings ask for 32 bytes or more.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(format!("{VERSION}\n{key_id}\n{origin}\n{expires}").as_bytes());
    mac
}

/// The token for `key_id` and `origin`, valid until `expires` (unix seconds), signed with
/// `secret`.
pub fn mint(key_id: &str, origin: &str, expires: u64, secret: &[u8]) -> Result<String, MintError> {
    if !valid_key_id(key_id) {
        return Err(MintError::KeyId);
    }
    if !canonical_origin(origin) {
        return Err(MintError::Origin);
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(MintError::Secret);
    }
    let sig = mac(secret, key_id, origin, expires).finalize().into_bytes();
    Ok(format!(
        "{PREFIX}{key_id}.{}.{expires}.{}",
        URL_SAFE_NO_PAD.encode(origin),
        URL_SAFE_NO_PAD.encode(sig)
    ))
}

/// Reads a token's fields. Anything not in the format is [`TokenError::Invalid`].
pub fn parse(presented: &str) -> Result<Token<'_>, TokenError> {
    if presented.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Invalid);
    }
    let rest = presented.strip_prefix(PREFIX).ok_or(TokenError::Invalid)?;
    // From the right: signature, expiry and origin hold no `.`; the key id may.
    let mut fields = rest.rsplitn(4, '.');
    let (Some(sig), Some(expires), Some(origin), Some(key_id)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(TokenError::Invalid);
    };
    let expires_ok = !expires.is_empty()
        && expires.len() <= 20
        && expires.bytes().all(|b| b.is_ascii_digit())
        && (expires == "0" || !expires.starts_with('0'));
    if !valid_key_id(key_id) || !expires_ok {
        return Err(TokenError::Invalid);
    }
    let expires: u64 = expires.parse().map_err(|_| TokenError::Invalid)?;
    let origin = URL_SAFE_NO_PAD
        .decode(origin)
        .ok()
        .and_then(|o| String::from_utf8(o).ok())
        .filter(|o| canonical_origin(o))
        .ok_or(TokenError::Invalid)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .ok()
        .filter(|s| s.len() == 32)
        .ok_or(TokenError::Invalid)?;
    Ok(Token {
        key_id,
        origin,
        expires,
        sig,
    })
}

impl Token<'_> {
    /// Whether one of `secrets` signed this token. Every secret is tried, and each comparison
    /// takes the same time wherever the signatures differ (`Mac::verify_slice`).
    pub fn signed_by<'s>(&self, secrets: impl IntoIterator<Item = &'s [u8]>) -> bool {
        let mut any = false;
        for secret in secrets {
            let ok = mac(secret, self.key_id, &self.origin, self.expires)
                .verify_slice(&self.sig)
                .is_ok();
            any |= ok;
        }
        any
    }
}

/// Checks a parsed token for a request from `origin` (its `Origin` header) at `now` (unix
/// seconds): the signature under one of `secrets` (its key id's), the expiry with [`SKEW_SECS`],
/// the lifetime left at most `max_ttl` (plus the skew), and the origin, in that order: nothing
/// of a token is believed before its signature is.
pub fn check<'s>(
    token: &Token<'_>,
    secrets: impl IntoIterator<Item = &'s [u8]>,
    origin: Option<&str>,
    now: u64,
    max_ttl: u64,
) -> Result<(), TokenError> {
    if !token.signed_by(secrets) {
        return Err(TokenError::Invalid);
    }
    if now > token.expires.saturating_add(SKEW_SECS) {
        return Err(TokenError::Expired);
    }
    if token.expires > now.saturating_add(max_ttl).saturating_add(SKEW_SECS) {
        return Err(TokenError::TooLong);
    }
    match origin {
        None => Err(TokenError::NoOrigin),
        Some(o) if o == token.origin => Ok(()),
        Some(_) => Err(TokenError::WrongOrigin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector the docs' Node and Python snippets are checked against
    /// (`xtask/src/token.rs`); computed independently with Python's `hmac`.
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const ORIGIN: &str = "https://app.example.com";
    const EXPIRES: u64 = 1_765_000_000;
    const VECTOR: &str = "swt1.web.aHR0cHM6Ly9hcHAuZXhhbXBsZS5jb20.1765000000.\
                          FonBtVlXT6y1njQUMugvrHktvZ3jUjVEL5kZZXrL29U";
    const MAX_TTL: u64 = 3_600;

    fn secrets() -> [&'static [u8]; 1] {
        [SECRET]
    }

    #[test]
    fn minting_matches_the_vectors() {
        assert_eq!(mint("web", ORIGIN, EXPIRES, SECRET).as_deref(), Ok(VECTOR));
        // A key id with dots: read from the right.
        let dotted = mint("shop.eu", ORIGIN, EXPIRES, SECRET).expect("mint");
        assert_eq!(
            dotted,
            "swt1.shop.eu.aHR0cHM6Ly9hcHAuZXhhbXBsZS5jb20.1765000000.\
             _WFUQlF8ri3Tnv8SxflMJFJcZx4nnWkuu3O33zZH_Qc"
        );
        let t = parse(&dotted).expect("parse");
        assert_eq!(
            (t.key_id, t.origin.as_str(), t.expires),
            ("shop.eu", ORIGIN, EXPIRES)
        );
        // URL-safe as a whole: nothing a query string, a Basic user or a header would mangle.
        assert!(VECTOR
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')));
        assert!(is_token(VECTOR) && !is_token("web-secret-key-0123456789"));
    }

    #[test]
    fn minting_refuses_what_could_never_verify() {
        assert_eq!(mint("", ORIGIN, 1, SECRET), Err(MintError::KeyId));
        assert_eq!(mint("we b", ORIGIN, 1, SECRET), Err(MintError::KeyId));
        assert_eq!(mint("web", ORIGIN, 1, b"short"), Err(MintError::Secret));
        for o in [
            "https://app.example.com/",
            "https://App.example.com",
            "https://app.example.com:443",
            "http://localhost:80",
            "https://app.example.com/path",
            "app.example.com",
            "null",
        ] {
            assert_eq!(mint("web", o, 1, SECRET), Err(MintError::Origin), "{o}");
        }
        assert!(mint("web", "http://localhost:8080", 1, SECRET).is_ok());
    }

    #[test]
    fn a_valid_token_passes_within_its_window() {
        let t = parse(VECTOR).expect("parse");
        let ok = |now| check(&t, secrets(), Some(ORIGIN), now, MAX_TTL);
        assert_eq!(ok(EXPIRES - 10), Ok(()));
        // The skew either way: just past expiry, and a little more than max_ttl ahead.
        assert_eq!(ok(EXPIRES + SKEW_SECS), Ok(()));
        assert_eq!(ok(EXPIRES - MAX_TTL - SKEW_SECS), Ok(()));
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let t = parse(VECTOR).expect("parse");
        let at = |now, origin| check(&t, secrets(), origin, now, MAX_TTL);
        assert_eq!(
            at(EXPIRES + SKEW_SECS + 1, Some(ORIGIN)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            at(EXPIRES - MAX_TTL - SKEW_SECS - 1, Some(ORIGIN)),
            Err(TokenError::TooLong)
        );
        assert_eq!(at(EXPIRES, None), Err(TokenError::NoOrigin));
        for other in [
            "https://evil.example",
            "https://app.example.com.evil",
            "null",
            "",
        ] {
            assert_eq!(
                at(EXPIRES, Some(other)),
                Err(TokenError::WrongOrigin),
                "{other}"
            );
        }
        // Exact: no case folding, no trailing slash.
        assert_eq!(
            at(EXPIRES, Some("https://APP.example.com")),
            Err(TokenError::WrongOrigin)
        );
        // The signature is checked before anything else: a tampered token that is also
        // expired and from another origin is only "invalid".
        let other = [b"another-secret-0123456789abcdefXY".as_slice()];
        assert_eq!(
            check(&t, other, None, u64::MAX, MAX_TTL),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            check(&t, [] as [&[u8]; 0], Some(ORIGIN), EXPIRES, MAX_TTL),
            Err(TokenError::Invalid)
        );
        // Rotation: any of the key's secrets.
        let both = [other[0], SECRET];
        assert_eq!(check(&t, both, Some(ORIGIN), EXPIRES, MAX_TTL), Ok(()));
    }

    #[test]
    fn tampering_with_any_field_is_invalid() {
        let evil = URL_SAFE_NO_PAD.encode("https://evil.example");
        let tampered = [
            VECTOR.replacen("swt1.web.", "swt1.app.", 1),
            VECTOR.replacen("aHR0cHM6Ly9hcHAuZXhhbXBsZS5jb20", &evil, 1),
            VECTOR.replacen(".1765000000.", ".1765000999.", 1),
            VECTOR.replacen("FonBtVl", "GonBtVl", 1),
        ];
        for t in &tampered {
            let parsed = parse(t).expect("still well-formed");
            assert_eq!(
                check(&parsed, secrets(), Some(&parsed.origin), EXPIRES, MAX_TTL),
                Err(TokenError::Invalid),
                "{t}"
            );
        }
    }

    #[test]
    fn malformed_tokens_are_invalid() {
        let long = format!("{VECTOR}{}", "A".repeat(MAX_TOKEN_BYTES));
        for bad in [
            "",
            "swt1.",
            "swt2.web.aHR0cHM6Ly9hcHAuZXhhbXBsZS5jb20.1765000000.x",
            "swt1.web.1765000000.FonBtVlXT6y1njQUMugvrHktvZ3jUjVEL5kZZXrL29U",
            // Expiry: signs, leading zeros, not digits.
            &VECTOR.replacen(".1765000000.", ".01765000000.", 1),
            &VECTOR.replacen(".1765000000.", ".+1765000000.", 1),
            &VECTOR.replacen(".1765000000.", "..", 1),
            &VECTOR.replacen(".1765000000.", ".99999999999999999999.", 1),
            // Origin: not base64url, or not canonical once decoded.
            &VECTOR.replacen("aHR0cHM6Ly9hcHAuZXhhbXBsZS5jb20", "aHR0cHM6Ly9hcHAuZXhhbXBsZS5jb20=", 1),
            &VECTOR.replacen(
                "aHR0cHM6Ly9hcHAuZXhhbXBsZS5jb20",
                &URL_SAFE_NO_PAD.encode("https://app.example.com/"),
                1,
            ),
            // Signature: the wrong length.
            &VECTOR.replacen("FonBtVlXT6y1njQUMugvrHktvZ3jUjVEL5kZZXrL29U", "FonBtVl", 1),
            &long,
            "swt1..aHR0cHM6Ly9hcHAuZXhhbXBsZS5jb20.1765000000.FonBtVlXT6y1njQUMugvrHktvZ3jUjVEL5kZZXrL29U",
        ] {
            assert_eq!(parse(bad), Err(TokenError::Invalid), "{bad}");
        }
    }
}
