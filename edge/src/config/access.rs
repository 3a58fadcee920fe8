//! Per-key access settings: the secrets that sign a key's browser tokens (`TOKEN_SECRETS`),
//! the longest token lifetime accepted (`TOKEN_MAX_TTL_SECS`), the keys browsers may use only
//! through a token (`TOKEN_REQUIRED`), and each key's allowed origins (`KEY_ORIGINS`). Read and
//! validated with the rest of the configuration; deciding a request is `http::auth`'s.
//!
//! It does not touch `ALLOWED_ORIGINS` (global, CORS only): `Config::from_env` adds every
//! origin named here to it, so that a browser may send to a key from the origins it allows.

use spillway_shared::token::{canonical_origin, MIN_SECRET_BYTES, PREFIX};

use super::keys::{IngestKey, Secret};
use super::problem::ConfigProblem;

/// Default of `TOKEN_MAX_TTL_SECS`: a day. Browser SDKs take their key once, at start-up, and
/// never ask for a new one, so a token has to outlive the longest page session that should
/// keep sending; a leaked token is usable for at most this long.
pub const DEFAULT_MAX_TTL_SECS: u64 = 86_400;
/// Bounds of `TOKEN_MAX_TTL_SECS`: a minute to a week. Past a week a token is no longer
/// short-lived, and the key itself would do as well.
const MAX_TTL_BOUNDS: (u64, u64) = (60, 604_800);

/// One `TOKEN_SECRETS` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokenSecret {
    key_id: String,
    secret: Secret,
}

/// Who may use a key, from where, and how (see the module's header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAccess {
    /// `TOKEN_SECRETS` (secret; default none, so no key accepts tokens): comma-separated
    /// `key_id:secret` pairs, each key id one of `INGEST_KEYS`, each secret at least 32 bytes
    /// and no ingest key. A key id may appear more than once: a token signed by any of its
    /// secrets is accepted, which is how a secret is rotated.
    tokens: Vec<TokenSecret>,
    /// `TOKEN_MAX_TTL_SECS` (default 86,400, from 60 to 604,800): a token expiring further
    /// ahead (beyond the allowed clock skew) is refused with `token_lifetime`.
    pub max_ttl_secs: u64,
    /// `TOKEN_REQUIRED` (default none): comma-separated key ids whose key is refused with
    /// `token_required` when a request also carries an `Origin` header (a browser's); servers,
    /// which send none, keep using the key. Each needs a `TOKEN_SECRETS` entry.
    token_required: Vec<String>,
    /// `KEY_ORIGINS` (default none): `key_id=origin|origin,key_id=origin`. A request for a key
    /// listed here whose `Origin` header is not one of its origins is refused with
    /// `origin_not_allowed` (`403`); a request without `Origin` is not a browser's and is not
    /// checked. Origins are written as browsers send them (lower case, no trailing slash, no
    /// default port), and compared exactly.
    origins: Vec<(String, Vec<String>)>,
}

impl Default for KeyAccess {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            max_ttl_secs: DEFAULT_MAX_TTL_SECS,
            token_required: Vec::new(),
            origins: Vec::new(),
        }
    }
}

impl KeyAccess {
    /// The secrets that sign `key_id`'s tokens (none for a key without tokens).
    pub fn secrets_of<'a>(&'a self, key_id: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.tokens
            .iter()
            .filter(move |t| t.key_id == key_id)
            .map(|t| t.secret.expose().as_bytes())
    }

    /// Whether browsers may use `key_id` only through a token.
    pub fn token_required(&self, key_id: &str) -> bool {
        self.token_required.iter().any(|k| k == key_id)
    }

    /// The origins `key_id` is limited to, if it is.
    pub fn origins_of(&self, key_id: &str) -> Option<&[String]> {
        self.origins
            .iter()
            .find(|(k, _)| k == key_id)
            .map(|(_, list)| list.as_slice())
    }

    /// Every origin some key is limited to.
    pub fn all_origins(&self) -> impl Iterator<Item = &str> {
        self.origins
            .iter()
            .flat_map(|(_, l)| l.iter().map(String::as_str))
    }
}

fn known(keys: &[IngestKey], key_id: &str) -> bool {
    keys.iter().any(|k| k.key_id == key_id)
}

fn invalid(name: &'static str, reason: String) -> ConfigProblem {
    ConfigProblem::Invalid { name, reason }
}

/// Reads the settings of this module. `keys` are the valid `INGEST_KEYS` (empty when that
/// setting is itself wrong: its problem is reported already, and key ids are then not checked).
pub(super) fn read_access(
    get: &impl Fn(&str) -> Option<String>,
    keys: &[IngestKey],
    problems: &mut Vec<ConfigProblem>,
) -> KeyAccess {
    let mut access = KeyAccess::default();
    if keys.iter().any(|k| k.key.expose().starts_with(PREFIX)) {
        problems.push(invalid(
            "INGEST_KEYS",
            format!("holds a key starting with {PREFIX:?}, which is how tokens start"),
        ));
    }
    let check_ids = !keys.is_empty();
    if let Some(raw) = get("TOKEN_SECRETS") {
        match parse_token_secrets(&raw, keys, check_ids) {
            Ok(tokens) => access.tokens = tokens,
            Err(reason) => problems.push(invalid("TOKEN_SECRETS", reason)),
        }
    }
    if let Some(raw) = get("TOKEN_MAX_TTL_SECS") {
        let (min, max) = MAX_TTL_BOUNDS;
        match raw.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => access.max_ttl_secs = v,
            _ => problems.push(invalid(
                "TOKEN_MAX_TTL_SECS",
                format!("must be a whole number from {min} to {max}"),
            )),
        }
    }
    if let Some(raw) = get("TOKEN_REQUIRED") {
        for (n, id) in raw.split(',').map(str::trim).enumerate() {
            if id.is_empty() {
                continue;
            }
            if !access.tokens.iter().any(|t| t.key_id == id) {
                problems.push(invalid(
                    "TOKEN_REQUIRED",
                    format!("entry {}: names no key with a TOKEN_SECRETS entry", n + 1),
                ));
                break;
            }
            access.token_required.push(id.to_owned());
        }
    }
    if let Some(raw) = get("KEY_ORIGINS") {
        match parse_key_origins(&raw, keys, check_ids) {
            Ok(origins) => access.origins = origins,
            Err(reason) => problems.push(invalid("KEY_ORIGINS", reason)),
        }
    }
    access
}

/// `key_id:secret,key_id:secret`. Messages never quote a secret.
fn parse_token_secrets(
    raw: &str,
    keys: &[IngestKey],
    check_ids: bool,
) -> Result<Vec<TokenSecret>, String> {
    let mut out: Vec<TokenSecret> = Vec::new();
    for (n, pair) in raw.split(',').map(str::trim).enumerate() {
        if pair.is_empty() {
            continue;
        }
        let n = n + 1;
        let (key_id, secret) = pair
            .split_once(':')
            .map(|(k, s)| (k.trim(), s.trim()))
            .ok_or_else(|| format!("entry {n} is not key_id:secret"))?;
        if check_ids && !known(keys, key_id) {
            return Err(format!("entry {n}: its key_id is not one of INGEST_KEYS"));
        }
        if secret.len() < MIN_SECRET_BYTES || secret.chars().any(|c| c.is_whitespace()) {
            return Err(format!(
                "entry {n}: the secret must be at least {MIN_SECRET_BYTES} bytes, without spaces"
            ));
        }
        // A token secret is not a credential: if it were also a key, whoever mints tokens
        // could send with it, and its rotation would break the servers that use the key.
        if keys.iter().any(|k| k.key.expose() == secret) {
            return Err(format!(
                "entry {n}: the secret is an ingest key; use another"
            ));
        }
        if out.iter().any(|t| t.secret.expose() == secret) {
            return Err(format!("entry {n}: reuses the secret of another entry"));
        }
        out.push(TokenSecret {
            key_id: key_id.to_owned(),
            secret: Secret::new(secret),
        });
    }
    if out.is_empty() {
        return Err("holds no key_id:secret pair".into());
    }
    Ok(out)
}

/// `key_id=origin|origin,key_id=origin`.
fn parse_key_origins(
    raw: &str,
    keys: &[IngestKey],
    check_ids: bool,
) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (n, entry) in raw.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        let n = n + 1;
        let (key_id, list) = entry
            .split_once('=')
            .map(|(k, l)| (k.trim(), l))
            .ok_or_else(|| format!("entry {n} is not key_id=origin|origin"))?;
        if check_ids && !known(keys, key_id) {
            return Err(format!("entry {n}: its key_id is not one of INGEST_KEYS"));
        }
        if out.iter().any(|(k, _)| k == key_id) {
            return Err(format!("entry {n}: its key_id appears twice"));
        }
        let mut origins = Vec::new();
        for o in list.split('|').map(str::trim) {
            if !canonical_origin(o) {
                return Err(format!(
                    "entry {n}: {o:?} is not an origin as a browser sends it \
                     (https://app.example.com: lower case, no path or trailing slash, no default port)"
                ));
            }
            origins.push(o.to_owned());
        }
        out.push((key_id.to_owned(), origins));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn keys() -> Vec<IngestKey> {
        ["web", "app"]
            .iter()
            .map(|id| IngestKey {
                key_id: (*id).to_owned(),
                key: Secret::new(format!("{id}-ingest-key-0123456789abcdefghij")),
            })
            .collect()
    }

    const S1: &str = "token-secret-one-0123456789abcdef";
    const S2: &str = "token-secret-two-0123456789abcdef";

    fn read(vars: &[(&str, &str)]) -> (KeyAccess, Vec<ConfigProblem>) {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut problems = Vec::new();
        let access = read_access(&|k: &str| env.get(k).cloned(), &keys(), &mut problems);
        (access, problems)
    }

    fn names(problems: &[ConfigProblem]) -> Vec<String> {
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_accept_no_tokens_and_limit_no_key() {
        let (a, p) = read(&[]);
        assert!(p.is_empty());
        assert_eq!(a.secrets_of("web").count(), 0);
        assert_eq!(a.max_ttl_secs, DEFAULT_MAX_TTL_SECS);
        assert!(!a.token_required("web"));
        assert_eq!(a.origins_of("web"), None);
    }

    #[test]
    fn settings_are_read() {
        let secrets = format!("web:{S1}, web:{S2}, app:{}", S1.replace("one", "thr"));
        let (a, p) = read(&[
            ("TOKEN_SECRETS", &secrets),
            ("TOKEN_MAX_TTL_SECS", "600"),
            ("TOKEN_REQUIRED", "web"),
            (
                "KEY_ORIGINS",
                "web=https://a.example|http://localhost:3000, app=https://b.example",
            ),
        ]);
        assert!(p.is_empty(), "{:?}", names(&p));
        let web: Vec<&[u8]> = a.secrets_of("web").collect();
        assert_eq!(web, [S1.as_bytes(), S2.as_bytes()]);
        assert_eq!(a.secrets_of("app").count(), 1);
        assert_eq!(a.max_ttl_secs, 600);
        assert!(a.token_required("web") && !a.token_required("app"));
        assert_eq!(
            a.origins_of("web"),
            Some(
                [
                    "https://a.example".to_owned(),
                    "http://localhost:3000".to_owned()
                ]
                .as_slice()
            )
        );
        assert_eq!(a.all_origins().count(), 3);
    }

    #[test]
    fn every_wrong_setting_is_named_without_its_secret() {
        let cases: [(&str, &str); 11] = [
            ("TOKEN_SECRETS", "web"),
            ("TOKEN_SECRETS", "nobody:token-secret-one-0123456789abcdef"),
            ("TOKEN_SECRETS", "web:too-short-secret"),
            ("TOKEN_SECRETS", "web:token secret with spaces 0123456789"),
            ("TOKEN_MAX_TTL_SECS", "59"),
            ("TOKEN_MAX_TTL_SECS", "604801"),
            ("TOKEN_REQUIRED", "app"),
            ("KEY_ORIGINS", "web"),
            ("KEY_ORIGINS", "nobody=https://a.example"),
            ("KEY_ORIGINS", "web=https://a.example/"),
            ("KEY_ORIGINS", "web=https://a.example,web=https://b.example"),
        ];
        for (name, value) in cases {
            let (_, p) = read(&[(name, value)]);
            let text = names(&p).join("; ");
            assert_eq!(p.len(), 1, "{name}={value}: {text}");
            assert!(text.starts_with(name), "{text}");
            assert!(!text.contains("token-secret-one"), "{text}");
        }
        // A secret that is an ingest key, and one secret given twice.
        let (_, p) = read(&[("TOKEN_SECRETS", "app:web-ingest-key-0123456789abcdefghij")]);
        assert!(names(&p)[0].contains("is an ingest key"), "{:?}", names(&p));
        let twice = format!("web:{S1},app:{S1}");
        let (_, p) = read(&[("TOKEN_SECRETS", &twice)]);
        assert!(names(&p)[0].contains("reuses"), "{:?}", names(&p));
        // A key that looks like a token would never be compared as a key.
        let mut problems = Vec::new();
        let swt = [IngestKey {
            key_id: "web".into(),
            key: Secret::new("swt1.looks-like-a-token-0123"),
        }];
        read_access(&|_: &str| None, &swt, &mut problems);
        assert!(names(&problems)[0].starts_with("INGEST_KEYS"));
    }
}
