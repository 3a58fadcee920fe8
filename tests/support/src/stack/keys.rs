//! The ingest keys a local edge serves: one fresh `dev` key, or the `key_id:key` pairs of
//! `SPILLWAY_INGEST_KEYS`, checked before anything starts. A key is never printed: `Debug` and
//! every error name the key id or the entry's position only.

use std::fmt;
use std::fs;

use anyhow::{bail, Result};

/// Key id of the one key a stack serves when none are given.
pub const KEY_ID: &str = "dev";

/// The environment variable of `cargo xtask dev|up` listing the keys to serve.
pub const KEYS_VAR: &str = "SPILLWAY_INGEST_KEYS";

/// Longest key id the edge accepts (`MAX_KEY_ID_CHARS` in the shared crate).
const MAX_KEY_ID_CHARS: usize = 64;
/// Shortest key the edge accepts (`MIN_KEY_CHARS` in its configuration).
const MIN_KEY_CHARS: usize = 16;

/// One ingest key: the public `key_id` stored with each event, and the secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct IngestKey {
    pub key_id: String,
    pub key: String,
}

impl fmt::Debug for IngestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestKey")
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl IngestKey {
    /// A key named `key_id` with 24 random bytes as its key (hex).
    pub fn fresh(key_id: &str) -> Result<IngestKey> {
        Ok(IngestKey {
            key_id: key_id.to_owned(),
            key: random_key()?,
        })
    }
}

/// 24 random bytes, hex: a key nobody else knows.
pub(crate) fn random_key() -> Result<String> {
    let mut bytes = [0u8; 24];
    use std::io::Read;
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `INGEST_KEYS` for the edge: `key_id:key` pairs, comma-separated.
pub fn ingest_keys_var(keys: &[IngestKey]) -> String {
    keys.iter()
        .map(|k| format!("{}:{}", k.key_id, k.key))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `SPILLWAY_INGEST_KEYS`: `key_id:key` pairs, comma-separated, in order (the first is
/// `INGEST_KEY` of `dev.env`). The rules are the edge's own (`INGEST_KEYS`), so a list the edge
/// would refuse fails here, before anything starts, with a message that names no key: a key id
/// of 1 to 64 characters of `A-Z a-z 0-9 - _ .`; a key of at least 16 characters without
/// spaces, control characters or quotes (it may hold `:`); no key id and no key twice.
pub fn parse_ingest_keys(raw: &str) -> Result<Vec<IngestKey>> {
    let mut keys: Vec<IngestKey> = Vec::new();
    if raw.trim().is_empty() {
        bail!("{KEYS_VAR} is set but empty: give key_id:key pairs, comma-separated, or unset it");
    }
    for (n, pair) in raw.split(',').enumerate() {
        let n = n + 1;
        let pair = pair.trim();
        if pair.is_empty() {
            bail!("{KEYS_VAR}: entry {n} is empty (a stray comma?)");
        }
        let Some((key_id, key)) = pair.split_once(':') else {
            bail!("{KEYS_VAR}: entry {n} is not key_id:key");
        };
        let (key_id, key) = (key_id.trim(), key.trim());
        if key_id.is_empty() {
            bail!("{KEYS_VAR}: entry {n} has an empty key id");
        }
        if key_id.chars().count() > MAX_KEY_ID_CHARS
            || !key_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bail!(
                "{KEYS_VAR}: entry {n}: a key id is 1 to {MAX_KEY_ID_CHARS} characters of \
                 A-Z a-z 0-9 - _ ."
            );
        }
        if key.is_empty() {
            bail!("{KEYS_VAR}: entry {n} (key id `{key_id}`) has an empty key");
        }
        if key.chars().count() < MIN_KEY_CHARS
            || key
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\'' | '"'))
        {
            bail!(
                "{KEYS_VAR}: entry {n} (key id `{key_id}`): a key is at least {MIN_KEY_CHARS} \
                 characters, without spaces or quotes"
            );
        }
        if keys.iter().any(|k| k.key_id == key_id) {
            bail!("{KEYS_VAR}: entry {n}: key id `{key_id}` appears twice");
        }
        if let Some(other) = keys.iter().find(|k| k.key == key) {
            bail!(
                "{KEYS_VAR}: entry {n} (key id `{key_id}`) has the same key as `{}`",
                other.key_id
            );
        }
        keys.push(IngestKey {
            key_id: key_id.to_owned(),
            key: key.to_owned(),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "0123456789abcdef0123";
    const K2: &str = "fedcba9876543210fedc";

    fn error(raw: &str) -> String {
        format!("{:#}", parse_ingest_keys(raw).expect_err(raw))
    }

    #[test]
    fn pairs_are_read_in_order() {
        let keys = parse_ingest_keys(&format!(" web:{K1} , app.v2:{K2}:with:colons")).expect("ok");
        assert_eq!(
            keys,
            [
                IngestKey {
                    key_id: "web".into(),
                    key: K1.into()
                },
                IngestKey {
                    key_id: "app.v2".into(),
                    key: format!("{K2}:with:colons")
                },
            ]
        );
        assert_eq!(
            ingest_keys_var(&keys),
            format!("web:{K1},app.v2:{K2}:with:colons")
        );
        assert_eq!(
            parse_ingest_keys(&ingest_keys_var(&keys)).expect("ok"),
            keys
        );
    }

    #[test]
    fn every_mistake_is_named_without_the_key() {
        for (raw, says) in [
            ("", "is set but empty"),
            ("  ", "is set but empty"),
            (&format!("web:{K1},"), "entry 2 is empty"),
            (&format!(",web:{K1}"), "entry 1 is empty"),
            (&format!("web{K1}"), "entry 1 is not key_id:key"),
            (&format!(":{K1}"), "entry 1 has an empty key id"),
            (&format!(" :{K1}"), "entry 1 has an empty key id"),
            ("web:", "entry 1 (key id `web`) has an empty key"),
            (
                &format!("web:{K1},app: "),
                "entry 2 (key id `app`) has an empty key",
            ),
            ("web:short", "at least 16 characters"),
            (&format!("web:{K1} x"), "without spaces"),
            (&format!("web:{K1}'"), "without spaces or quotes"),
            (&format!("w b:{K1}"), "1 to 64 characters"),
            (&format!("{}:{K1}", "a".repeat(65)), "1 to 64 characters"),
            (&format!("web:{K1},web:{K2}"), "key id `web` appears twice"),
            (
                &format!("web:{K1},app:{K1}"),
                "entry 2 (key id `app`) has the same key as `web`",
            ),
        ] {
            let e = error(raw);
            assert!(e.contains(says), "{raw:?}: {e}");
            assert!(e.starts_with(KEYS_VAR), "{e}");
            for key in [K1, K2, "short"] {
                assert!(!e.contains(key), "the error shows a key: {e}");
            }
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = IngestKey::fresh("web").expect("key");
        assert_eq!(key.key.len(), 48);
        let shown = format!("{key:?} {:?}", std::slice::from_ref(&key));
        assert!(
            shown.contains("web") && !shown.contains(&key.key),
            "{shown}"
        );
        assert_ne!(key, IngestKey::fresh("web").expect("key"));
    }
}
