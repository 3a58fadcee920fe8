//! The envelope keys the consumer verifies messages with (`ENVELOPE_KEYS`, or the secret
//! `ENVELOPE_KEYS_SECRET_ARN` names), and whether it still stores unsigned (version 1) bodies
//! (`UNSIGNED_ENVELOPES`). Read once at start-up; a missing or weak key stops the process
//! before the first invocation, because without keys every message would go to the DLQ.
//!
//! The format and the checks are [`spillway_shared::seal`]'s: `kid:secret` pairs,
//! comma-separated, every one accepted. Rotation without downtime: add the new key to the
//! consumer's list, then put it first in the edge's, then drop the old key from the consumer
//! once no message sealed with it can still be delivered (the queue's and the DLQ's retention).

use spillway_shared::{parse_keys, Keyring, Unsigned};

use crate::config::{invalid, ConfigError, SecretArn};

/// Where the keys are.
#[derive(Clone, PartialEq, Eq)]
pub enum KeysSource {
    /// `ENVELOPE_KEYS`: the pairs themselves (the poller, tests).
    Env(String),
    /// `ENVELOPE_KEYS_SECRET_ARN`: a secret whose SecretString is the pairs, read at cold start
    /// (what `infra/template.yaml` sets).
    Secret(SecretArn),
}

// By hand: the derived form would print the secrets.
impl std::fmt::Debug for KeysSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(_) => f.write_str("Env(ENVELOPE_KEYS)"),
            Self::Secret(arn) => f.debug_tuple("Secret").field(arn).finish(),
        }
    }
}

/// What the secret must hold, for its errors.
pub const SECRET_TEXT: &str = "kid:secret pairs, comma-separated";

impl KeysSource {
    /// Exactly one of `ENVELOPE_KEYS` and `ENVELOPE_KEYS_SECRET_ARN` (empty counts as unset).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name| lookup(name).filter(|v| !v.trim().is_empty());
        match (set("ENVELOPE_KEYS"), set("ENVELOPE_KEYS_SECRET_ARN")) {
            (Some(_), Some(_)) => Err(ConfigError::Conflict(
                "ENVELOPE_KEYS",
                "ENVELOPE_KEYS_SECRET_ARN",
            )),
            (Some(raw), None) => Ok(Self::Env(raw)),
            (None, Some(arn)) => Ok(Self::Secret(SecretArn::parse(
                "ENVELOPE_KEYS_SECRET_ARN",
                &arn,
            )?)),
            (None, None) => Err(ConfigError::Missing(
                "ENVELOPE_KEYS or ENVELOPE_KEYS_SECRET_ARN",
            )),
        }
    }
}

/// The keyring from the pairs (`raw`, wherever they came from; `origin` names it in errors,
/// which never quote a secret) and `UNSIGNED_ENVELOPES` (`refuse`, the default, or `accept`).
pub fn keyring(
    raw: &str,
    origin: &'static str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Keyring, ConfigError> {
    let keys = parse_keys(raw).map_err(|e| invalid(origin, e.to_string()))?;
    let unsigned = match lookup("UNSIGNED_ENVELOPES")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("refuse") => Unsigned::Refuse,
        Some("accept") => Unsigned::Accept,
        Some(_) => {
            return Err(invalid(
                "UNSIGNED_ENVELOPES",
                "must be `refuse` (the default) or `accept` (only while an upgrade drains)",
            ))
        }
    };
    Ok(Keyring::new(keys, unsigned))
}

/// [`KeysSource::from_lookup`] and [`keyring`] for a process whose keys are in its environment
/// (the poller, the dead-letter tool, tests).
pub fn keyring_from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Keyring, ConfigError> {
    match KeysSource::from_lookup(lookup)? {
        KeysSource::Env(raw) => keyring(&raw, "ENVELOPE_KEYS", lookup),
        KeysSource::Secret(_) => Err(invalid(
            "ENVELOPE_KEYS_SECRET_ARN",
            "is read by the Lambda function only; set ENVELOPE_KEYS here",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;

    const KEYS: &str = "k2:0123456789abcdef0123456789abcdef,k1:fedcba9876543210fedcba9876543210";

    #[test]
    fn keys_from_the_environment_every_one_accepted() {
        let ring = keyring_from_env(&env(&[("ENVELOPE_KEYS", KEYS)])).expect("valid");
        assert_eq!(ring.kids().collect::<Vec<_>>(), ["k2", "k1"]);
        assert_eq!(ring.unsigned(), Unsigned::Refuse);
        let ring = keyring_from_env(&env(&[
            ("ENVELOPE_KEYS", KEYS),
            ("UNSIGNED_ENVELOPES", "accept"),
        ]))
        .expect("valid");
        assert_eq!(ring.unsigned(), Unsigned::Accept);
    }

    #[test]
    fn missing_conflicting_or_weak_keys_stop_start_up_without_quoting_them() {
        assert_eq!(
            keyring_from_env(&env(&[])),
            Err(ConfigError::Missing(
                "ENVELOPE_KEYS or ENVELOPE_KEYS_SECRET_ARN"
            ))
        );
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keys-AbCdEf";
        assert!(matches!(
            KeysSource::from_lookup(&env(&[
                ("ENVELOPE_KEYS", KEYS),
                ("ENVELOPE_KEYS_SECRET_ARN", arn)
            ])),
            Err(ConfigError::Conflict(..))
        ));
        assert!(matches!(
            KeysSource::from_lookup(&env(&[("ENVELOPE_KEYS_SECRET_ARN", arn)])),
            Ok(KeysSource::Secret(_))
        ));
        let weak = keyring_from_env(&env(&[("ENVELOPE_KEYS", "k1:weak-secret")]))
            .expect_err("weak")
            .to_string();
        assert!(weak.contains("ENVELOPE_KEYS"), "{weak}");
        assert!(!weak.contains("weak-secret"), "{weak}");
        let source = KeysSource::from_lookup(&env(&[("ENVELOPE_KEYS", KEYS)])).expect("env");
        assert!(!format!("{source:?}").contains("0123456789"));
        assert!(keyring_from_env(&env(&[
            ("ENVELOPE_KEYS", KEYS),
            ("UNSIGNED_ENVELOPES", "yes")
        ]))
        .is_err());
    }
}

/// A fixed key for tests, never for a deployment: its secret is public.
pub mod testing {
    use spillway_shared::{Keyring, SigningKey, Unsigned};

    /// `ENVELOPE_KEYS` of tests whose messages are not sealed by a running edge.
    pub const TEST_KEYS: &str = "test-1:spillway-test-envelope-secret-0123456789";

    /// The key [`TEST_KEYS`] names.
    pub fn test_key() -> SigningKey {
        SigningKey::new("test-1", b"spillway-test-envelope-secret-0123456789")
            .unwrap_or_else(|e| panic!("the test key is valid: {e}"))
    }

    /// A keyring holding [`test_key`], refusing unsigned bodies.
    pub fn test_keyring() -> Keyring {
        Keyring::new(vec![test_key()], Unsigned::Refuse)
    }
}
