//! Sealed envelopes: the edge signs every message body it sends, and the consumer stores only
//! bodies it can verify.
//!
//! Anyone who can send to the queue (a leaked access key, a policy one line too wide) could
//! otherwise write rows with any `key_id`, `source` or `received_at`. The seal is an
//! HMAC-SHA256, under a secret shared by edge and consumer, over the body up to its last field:
//!
//! ```text
//! {"v":2,"kid":"k1","events":[...],"sig":"<64 lowercase hex digits>"}
//! └────────────── signed bytes ───┘
//! ```
//!
//! The key id (`kid`) names the secret, so secrets rotate without downtime: the consumer holds
//! every key it accepts, the edge signs with one. The signed bytes are the body as sent, not a
//! re-serialisation, so nothing has to be made canonical; the signature is a fixed-length
//! suffix, so a verifier finds it without parsing, and the body stays one JSON object that the
//! dead-letter tool can show.
//!
//! Keys are configured as `kid:secret` pairs, comma-separated (`ENVELOPE_KEYS`): the edge signs
//! with the first, the consumer accepts each of them. Pure: no clock, no randomness.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// Longest key id, in bytes: ids are written into every body without escaping.
pub const MAX_KID_BYTES: usize = 32;
/// Shortest secret, in bytes: HMAC-SHA256's own output size, so the secret is not the weak part.
pub const MIN_SECRET_BYTES: usize = 32;
/// Hex digits of a signature.
pub const SIG_HEX_LEN: usize = 64;

/// What stands between the events and the end of a sealed body, before the signature.
pub(crate) const SIG_FIELD: &str = ",\"sig\":\"";
/// Bytes after the signed part: `,"sig":"<hex>"}`.
pub(crate) const SEAL_SUFFIX_LEN: usize = SIG_FIELD.len() + SIG_HEX_LEN + 2;

/// One `kid:secret` pair. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    kid: String,
    secret: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("secret", &"***")
            .finish()
    }
}

/// Why `ENVELOPE_KEYS` cannot be used. Never quotes a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("holds no kid:secret pair")]
    Empty,
    #[error("entry {0} is not kid:secret")]
    NotAPair(usize),
    #[error("entry {0}: the key id must be 1 to {MAX_KID_BYTES} characters of A-Z a-z 0-9 - _ .")]
    BadKid(usize),
    #[error("entry {0}: the secret must be at least {MIN_SECRET_BYTES} bytes, without spaces")]
    WeakSecret(usize),
    #[error("entry {0}: its key id appears twice")]
    DuplicateKid(usize),
}

impl SigningKey {
    /// A key from its id and secret, checked as [`parse_keys`] checks each entry.
    pub fn new(kid: &str, secret: &[u8]) -> Result<Self, KeyError> {
        let kid_ok = !kid.is_empty()
            && kid.len() <= MAX_KID_BYTES
            && kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !kid_ok {
            return Err(KeyError::BadKid(1));
        }
        if secret.len() < MIN_SECRET_BYTES
            || secret
                .iter()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(KeyError::WeakSecret(1));
        }
        Ok(Self {
            kid: kid.to_owned(),
            secret: secret.to_vec(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
    }

    /// The signature of `signed` (the body up to its `sig` field), as lowercase hex.
    pub fn sign(&self, signed: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(signed);
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `sig_hex` is the signature of `signed`, compared in constant time.
    fn verifies(&self, signed: &[u8], sig_hex: &str) -> bool {
        let Some(sig) = unhex(sig_hex) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(signed);
        mac.verify_slice(&sig).is_ok()
    }
}

/// `kid:secret,kid:secret`, in order (the edge signs with the first). Secrets may hold `:`.
pub fn parse_keys(raw: &str) -> Result<Vec<SigningKey>, KeyError> {
    let mut keys: Vec<SigningKey> = Vec::new();
    for (n, pair) in raw.split(',').enumerate() {
        let n = n + 1;
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (kid, secret) = pair.split_once(':').ok_or(KeyError::NotAPair(n))?;
        let key = SigningKey::new(kid.trim(), secret.trim().as_bytes()).map_err(|e| match e {
            KeyError::BadKid(_) => KeyError::BadKid(n),
            _ => KeyError::WeakSecret(n),
        })?;
        if keys.iter().any(|k| k.kid == key.kid) {
            return Err(KeyError::DuplicateKid(n));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(keys)
}

/// Whether bodies of envelope version 1 (written before envelopes were sealed) are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unsigned {
    /// Refused, like any body that does not verify (the default).
    #[default]
    Refuse,
    /// Stored unverified: only while an upgrade drains messages the old edge sent.
    Accept,
}

/// The keys a consumer accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<SigningKey>,
    unsigned: Unsigned,
}

impl Keyring {
    pub fn new(keys: Vec<SigningKey>, unsigned: Unsigned) -> Self {
        Self { keys, unsigned }
    }

    pub fn unsigned(&self) -> Unsigned {
        self.unsigned
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

/// Why a sealed body's seal does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SealError {
    #[error("unsigned envelope (version 1): refused unless UNSIGNED_ENVELOPES=accept")]
    Unsigned,
    #[error("envelope has no signature where version 2 puts it (its last field)")]
    NoSignature,
    #[error("envelope has no key id (`kid`)")]
    NoKid,
    #[error("envelope is signed with key id {0:?}, which this consumer does not hold")]
    UnknownKid(String),
    #[error("signature does not verify under key id {0:?}: altered, or not sent by the edge")]
    BadSignature(String),
}

/// The signed part and the signature of a sealed body, found by position: the body must end
/// with `,"sig":"<64 hex>"}`.
pub(crate) fn split_sealed(body: &str) -> Option<(&str, &str)> {
    let cut = body.len().checked_sub(SEAL_SUFFIX_LEN)?;
    let (signed, suffix) = (body.get(..cut)?, body.get(cut..)?);
    let sig = suffix.strip_prefix(SIG_FIELD)?.strip_suffix("\"}")?;
    (sig.len() == SIG_HEX_LEN).then_some((signed, sig))
}

/// Checks the seal of a version 2 body whose `kid` field says `kid`.
pub(crate) fn verify(body: &str, kid: Option<&str>, keys: &Keyring) -> Result<(), SealError> {
    let (signed, sig) = split_sealed(body).ok_or(SealError::NoSignature)?;
    let kid = kid.ok_or(SealError::NoKid)?;
    let key = keys
        .get(kid)
        .ok_or_else(|| SealError::UnknownKid(kid.to_owned()))?;
    if key.verifies(signed.as_bytes(), sig) {
        Ok(())
    } else {
        Err(SealError::BadSignature(kid.to_owned()))
    }
}

/// A key for this crate's own tests.
#[cfg(test)]
pub(crate) fn test_key() -> SigningKey {
    SigningKey::new("test", &[b't'; 32]).unwrap_or_else(|e| panic!("{e}"))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Lowercase hex only: the edge writes no other form, so no other form verifies.
fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn keys_parse_in_order_and_refuse_what_is_weak() {
        let keys = parse_keys(&format!(
            "k2:{},k1:{}",
            "s".repeat(40),
            std::str::from_utf8(SECRET).expect("ascii")
        ))
        .expect("two keys");
        assert_eq!(
            keys.iter().map(SigningKey::kid).collect::<Vec<_>>(),
            ["k2", "k1"]
        );
        assert_eq!(parse_keys(""), Err(KeyError::Empty));
        assert_eq!(parse_keys(" , "), Err(KeyError::Empty));
        assert_eq!(parse_keys("nokey"), Err(KeyError::NotAPair(1)));
        assert_eq!(parse_keys("k:short"), Err(KeyError::WeakSecret(1)));
        let long = "x".repeat(32);
        assert_eq!(
            parse_keys(&format!("k:{long},:{long}")),
            Err(KeyError::BadKid(2))
        );
        assert_eq!(
            parse_keys(&format!("{}:{long}", "k".repeat(33))),
            Err(KeyError::BadKid(1))
        );
        assert_eq!(
            parse_keys(&format!("k\"x:{long}")),
            Err(KeyError::BadKid(1))
        );
        assert_eq!(
            parse_keys(&format!("k:{long},k:{long}y")),
            Err(KeyError::DuplicateKid(2))
        );
        // A secret may hold `:`.
        assert!(parse_keys(&format!("k:{long}:more")).is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = SigningKey::new("k1", SECRET).expect("key");
        let ring = Keyring::new(vec![key.clone()], Unsigned::Refuse);
        let text = format!("{key:?} {ring:?}");
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(text.contains("k1"), "{text}");
    }

    #[test]
    fn signature_is_hmac_sha256_of_the_signed_bytes() {
        // RFC 4231, test case 2.
        let key = SigningKey {
            kid: "t".into(),
            secret: b"Jefe".to_vec(),
        };
        assert_eq!(
            key.sign(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(key.verifies(
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        ));
        // Upper case is not what the edge writes.
        assert!(!key.verifies(
            b"what do ya want for nothing?",
            "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843"
        ));
        assert!(!key.verifies(b"what do ya want for nothing?", "5bdc"));
    }

    #[test]
    fn the_signature_is_found_by_position() {
        let sig = "a".repeat(64);
        let body = format!("{{\"v\":2,\"kid\":\"k\",\"events\":[]{SIG_FIELD}{sig}\"}}");
        assert_eq!(
            split_sealed(&body),
            Some(("{\"v\":2,\"kid\":\"k\",\"events\":[]", sig.as_str()))
        );
        assert_eq!(split_sealed("{}"), None);
        assert_eq!(split_sealed(&body[..body.len() - 1]), None);
        let short = format!("{{\"events\":[]{SIG_FIELD}{}\"}}", "a".repeat(63));
        assert_eq!(split_sealed(&short), None);
        // A multi-byte character where the cut falls is not a panic.
        let odd = format!("é{}", "x".repeat(SEAL_SUFFIX_LEN - 1));
        assert_eq!(split_sealed(&odd), None);
    }
}
