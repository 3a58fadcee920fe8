//! Typed configuration, read from the environment once at start-up and validated there, so a
//! bad setting stops the process before the first invocation.
//!
//! Every setting has its default documented where it is declared. Reading goes through a
//! lookup function so that tests pass a map instead of touching the process environment.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("{0} and {1} are both set: set only one")]
    Conflict(&'static str, &'static str),
}

pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

/// Reads an optional number in `range`, `default` when unset.
pub(crate) fn number<T>(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let value = match lookup(name).filter(|v| !v.trim().is_empty()) {
        None => default,
        Some(raw) => raw
            .trim()
            .parse::<T>()
            .map_err(|_| invalid(name, format!("`{raw}` is not a whole number")))?,
    };
    if !range.contains(&value) {
        return Err(invalid(
            name,
            format!("{value} is outside {}..={}", range.start(), range.end()),
        ));
    }
    Ok(value)
}

/// How the consumer reaches PostgreSQL.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `DATABASE_URL` (required): a `postgres://` URL or a libpq key=value string.
    /// `sslmode=require` turns on TLS with full certificate and host name verification
    /// (stricter than libpq's `require`); `disable` and `prefer` (the default) connect in
    /// plain text, because an unverified TLS session would only look safe.
    pub url: tokio_postgres::Config,
    /// `DB_STATEMENT_TIMEOUT_MS`, default 10,000: keep it well under the Lambda timeout so a
    /// stuck write fails the batch instead of timing out the function.
    pub statement_timeout: Duration,
    /// `DB_CONNECT_TIMEOUT_MS`, default 5,000.
    pub connect_timeout: Duration,
    /// `DB_CA_CERT_PATH`, optional: a PEM bundle of extra trusted roots, for servers whose CA
    /// is not public (Amazon RDS publishes such a bundle). Mozilla's roots are always trusted.
    pub ca_cert_path: Option<PathBuf>,
}

/// `DATABASE_URL` from the environment; an unset or blank value is missing.
fn env_database_url(lookup: &dyn Fn(&str) -> Option<String>) -> Result<DatabaseUrl, ConfigError> {
    lookup("DATABASE_URL")
        .filter(|v| !v.trim().is_empty())
        .map(DatabaseUrl::Env)
        .ok_or(ConfigError::Missing("DATABASE_URL"))
}

impl DbConfig {
    /// Reads `DATABASE_URL` and the other database settings (the poller, `migrate`, tests).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_url(lookup, &env_database_url(lookup)?)
    }

    /// The database settings with the URL already known (from the environment, or fetched
    /// from the secret `DATABASE_URL_SECRET_ARN` names). Errors name where the URL came from
    /// and never quote it: it holds the password.
    pub fn from_url(
        lookup: &dyn Fn(&str) -> Option<String>,
        url: &DatabaseUrl,
    ) -> Result<Self, ConfigError> {
        let origin = url.origin();
        let url = tokio_postgres::Config::from_str(url.expose().trim())
            .map_err(|e| invalid(origin, e.to_string()))?;
        if url.get_hosts().is_empty() {
            return Err(invalid(origin, "names no host"));
        }
        let statement_timeout = Duration::from_millis(number(
            lookup,
            "DB_STATEMENT_TIMEOUT_MS",
            10_000u64,
            1..=900_000,
        )?);
        let connect_timeout = Duration::from_millis(number(
            lookup,
            "DB_CONNECT_TIMEOUT_MS",
            5_000u64,
            1..=120_000,
        )?);
        let ca_cert_path = lookup("DB_CA_CERT_PATH")
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from);
        if let Some(path) = &ca_cert_path {
            if !path.is_file() {
                return Err(invalid(
                    "DB_CA_CERT_PATH",
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        Ok(Self {
            url,
            statement_timeout,
            connect_timeout,
            ca_cert_path,
        })
    }
}

/// A Secrets Manager secret's ARN, parsed: `DATABASE_URL_SECRET_ARN` (its SecretString is the
/// database URL) or `ENVELOPE_KEYS_SECRET_ARN` (the envelope keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretArn {
    /// The whole ARN, as given.
    pub arn: String,
    /// The secret's region (the ARN's fourth field): the secret is read from there.
    pub region: String,
}

impl SecretArn {
    /// Accepts `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME`, the value of the
    /// setting `name`.
    pub fn parse(name: &'static str, raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        let bad = || {
            invalid(
                name,
                format!(
                    "`{raw}` is not a Secrets Manager secret ARN \
                     (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
                ),
            )
        };
        let fields: Vec<&str> = raw.splitn(7, ':').collect();
        match fields.as_slice() {
            ["arn", partition, "secretsmanager", region, account, "secret", name]
                if !partition.is_empty()
                    && !region.is_empty()
                    && !account.is_empty()
                    && !name.is_empty() =>
            {
                Ok(Self {
                    arn: raw.to_owned(),
                    region: (*region).to_owned(),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// Where the Lambda function finds its database URL.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrlSource {
    /// `DATABASE_URL`: the URL itself (local runs, the poller, tests).
    Env(String),
    /// `DATABASE_URL_SECRET_ARN`: read the URL from this secret, once, at cold start (what
    /// `infra/template.yaml` sets, so the URL never appears in the function's configuration).
    Secret(SecretArn),
}

// By hand: the derived form would print the password inside the URL.
impl std::fmt::Debug for DatabaseUrlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(_) => f.write_str("Env(DATABASE_URL)"),
            Self::Secret(arn) => f.debug_tuple("Secret").field(arn).finish(),
        }
    }
}

impl DatabaseUrlSource {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// Exactly one of `DATABASE_URL` and `DATABASE_URL_SECRET_ARN` must be set (an empty
    /// value counts as unset). Both would leave it unclear which database is written to.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name| lookup(name).filter(|v| !v.trim().is_empty());
        match (set("DATABASE_URL"), set("DATABASE_URL_SECRET_ARN")) {
            (Some(_), Some(_)) => Err(ConfigError::Conflict(
                "DATABASE_URL",
                "DATABASE_URL_SECRET_ARN",
            )),
            (Some(url), None) => Ok(Self::Env(url)),
            (None, Some(arn)) => Ok(Self::Secret(SecretArn::parse(
                "DATABASE_URL_SECRET_ARN",
                &arn,
            )?)),
            (None, None) => Err(ConfigError::Missing(
                "DATABASE_URL or DATABASE_URL_SECRET_ARN",
            )),
        }
    }
}

/// A database URL and where it came from. Its `Debug` never shows the URL.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// Read from `DATABASE_URL`.
    Env(String),
    /// The SecretString of the secret `DATABASE_URL_SECRET_ARN` names.
    Secret(String),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl(from {})", self.origin())
    }
}

impl DatabaseUrl {
    /// The setting to name in errors.
    pub fn origin(&self) -> &'static str {
        match self {
            Self::Env(_) => "DATABASE_URL",
            Self::Secret(_) => "the secret DATABASE_URL_SECRET_ARN names",
        }
    }

    /// The URL itself, password included: only for connecting, never for logs.
    pub fn expose(&self) -> &str {
        match self {
            Self::Env(url) | Self::Secret(url) => url,
        }
    }
}

/// Settings of the consumer (the Lambda function and the handler inside the poller).
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub db: DbConfig,
    /// `METRICS_NAMESPACE`, default `Spillway`: the CloudWatch namespace of the EMF records.
    pub metrics_namespace: String,
    /// `METRICS_SERVICE`, default `spillway-consumer`: the value of the `Service` dimension.
    pub metrics_service: String,
    /// `DEAD_LETTER_QUEUE_URL`, optional: the SQS queue (standard, not FIFO) where the Kinesis
    /// handler puts records it can never store. Required in practice for a Kinesis source:
    /// without it such a record is reported failed on every delivery and holds its shard until
    /// the mapping's retry budget ends (see `crate::dead_letter`). SQS sources do not use it.
    pub dead_letter_queue_url: Option<String>,
}

impl ConsumerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// Reads `DATABASE_URL` and every other setting (the poller, `migrate`, tests).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_url(lookup, &env_database_url(lookup)?)
    }

    /// Every setting, with the database URL already resolved (see [`DatabaseUrlSource`]).
    pub fn from_url(
        lookup: &dyn Fn(&str) -> Option<String>,
        url: &DatabaseUrl,
    ) -> Result<Self, ConfigError> {
        let metrics_namespace = lookup("METRICS_NAMESPACE")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "Spillway".to_owned());
        validate_metric_name("METRICS_NAMESPACE", &metrics_namespace)?;
        let metrics_service = lookup("METRICS_SERVICE")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "spillway-consumer".to_owned());
        validate_metric_name("METRICS_SERVICE", &metrics_service)?;
        let dead_letter_queue_url = match lookup("DEAD_LETTER_QUEUE_URL")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        {
            None => None,
            Some(url) if origin_of(&url).is_none() => {
                return Err(invalid(
                    "DEAD_LETTER_QUEUE_URL",
                    format!("`{url}` is not an http(s) queue URL"),
                ))
            }
            // A FIFO queue needs a message group id per message, which would also serialise
            // every dead letter behind one group: a standard queue is what the template makes.
            Some(url) if url.ends_with(".fifo") => {
                return Err(invalid(
                    "DEAD_LETTER_QUEUE_URL",
                    format!("`{url}` is a FIFO queue; use a standard queue"),
                ))
            }
            Some(url) => Some(url),
        };
        Ok(Self {
            db: DbConfig::from_url(lookup, url)?,
            metrics_namespace,
            metrics_service,
            dead_letter_queue_url,
        })
    }
}

/// CloudWatch namespaces: 1-255 characters of `0-9A-Za-z.-_/#:` (dimension values here too).
fn validate_metric_name(name: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
    if value.len() > 255 || !value.chars().all(ok_char) {
        return Err(invalid(
            name,
            format!("`{value}` must be 1-255 characters of 0-9 A-Z a-z . - _ / # :"),
        ));
    }
    Ok(())
}

/// `scheme://host[:port]` of an http(s) URL, by the same rule as the edge's settings
/// ([`spillway_shared::origin_of`]: no user information, a host, a valid port).
pub(crate) fn origin_of(url: &str) -> Option<String> {
    spillway_shared::origin_of(url.trim()).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A lookup over fixed pairs, standing in for the process environment.
    pub(crate) fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const DB: (&str, &str) = ("DATABASE_URL", "postgres://u@127.0.0.1:5432/db");

    #[test]
    fn consumer_defaults() {
        let c = ConsumerConfig::from_lookup(&env(&[DB])).expect("valid");
        assert_eq!(c.metrics_namespace, "Spillway");
        assert_eq!(c.metrics_service, "spillway-consumer");
        assert_eq!(c.db.statement_timeout, Duration::from_secs(10));
        assert_eq!(c.db.connect_timeout, Duration::from_secs(5));
        assert_eq!(
            c.db.url.get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
    }

    #[test]
    fn database_url_is_required_and_parsed() {
        assert_eq!(
            ConsumerConfig::from_lookup(&env(&[])).err(),
            Some(ConfigError::Missing("DATABASE_URL"))
        );
        let err = ConsumerConfig::from_lookup(&env(&[(
            "DATABASE_URL",
            "postgres://h/db?sslmode=sometimes",
        )]))
        .err();
        assert!(matches!(
            err,
            Some(ConfigError::Invalid {
                name: "DATABASE_URL",
                ..
            })
        ));
        let c = ConsumerConfig::from_lookup(&env(&[(
            "DATABASE_URL",
            "postgres://u:p@db.example.com/app?sslmode=require",
        )]))
        .expect("valid");
        assert_eq!(
            c.db.url.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    const ARN: &str =
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:spillway/database-url-AbCdEf";

    #[test]
    fn the_database_url_comes_from_exactly_one_place() {
        let source = DatabaseUrlSource::from_lookup(&env(&[DB])).expect("url");
        assert_eq!(source, DatabaseUrlSource::Env(DB.1.to_owned()));

        let source =
            DatabaseUrlSource::from_lookup(&env(&[("DATABASE_URL_SECRET_ARN", ARN)])).expect("arn");
        assert_eq!(
            source,
            DatabaseUrlSource::Secret(SecretArn {
                arn: ARN.to_owned(),
                region: "eu-west-1".to_owned()
            })
        );

        let both = DatabaseUrlSource::from_lookup(&env(&[DB, ("DATABASE_URL_SECRET_ARN", ARN)]))
            .expect_err("both set");
        assert_eq!(
            both.to_string(),
            "DATABASE_URL and DATABASE_URL_SECRET_ARN are both set: set only one"
        );

        // Empty counts as unset, as for every other setting.
        for pairs in [
            &[][..],
            &[("DATABASE_URL", " "), ("DATABASE_URL_SECRET_ARN", "")][..],
        ] {
            let neither = DatabaseUrlSource::from_lookup(&env(pairs)).expect_err("neither set");
            assert_eq!(
                neither.to_string(),
                "DATABASE_URL or DATABASE_URL_SECRET_ARN is required"
            );
        }
        let only_arn = DatabaseUrlSource::from_lookup(&env(&[
            ("DATABASE_URL", ""),
            ("DATABASE_URL_SECRET_ARN", ARN),
        ]));
        assert!(matches!(only_arn, Ok(DatabaseUrlSource::Secret(_))));
    }

    #[test]
    fn the_secret_arn_must_name_a_secret() {
        let gov = SecretArn::parse(
            "DATABASE_URL_SECRET_ARN",
            "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:db-url-AbCdEf",
        )
        .expect("GovCloud ARN");
        assert_eq!(gov.region, "us-gov-west-1");
        for bad in [
            "spillway/database-url",
            "arn:aws:ssm:eu-west-1:123456789012:parameter/db-url",
            "arn:aws:secretsmanager::123456789012:secret:db-url",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:",
            "arn:aws:secretsmanager:eu-west-1:123456789012",
        ] {
            let err = SecretArn::parse("DATABASE_URL_SECRET_ARN", bad).expect_err(bad);
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        name: "DATABASE_URL_SECRET_ARN",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_url_from_the_secret_is_validated_without_being_quoted() {
        let url = DatabaseUrl::Secret("postgres://u:hunter2-pw@db.example.com/app".to_owned());
        let c = ConsumerConfig::from_url(&env(&[]), &url).expect("valid");
        assert_eq!(c.db.url.get_dbname(), Some("app"));
        assert!(!format!("{url:?} {c:?}").contains("hunter2-pw"));

        for bad in [
            "postgres://u:hunter2-pw@db.example.com/app?sslmode=sometimes",
            "user=u password=hunter2-pw dbname=app",
        ] {
            let err = ConsumerConfig::from_url(&env(&[]), &DatabaseUrl::Secret(bad.to_owned()))
                .expect_err(bad);
            let shown = err.to_string();
            assert!(
                shown.starts_with("the secret DATABASE_URL_SECRET_ARN names: "),
                "{shown}"
            );
            assert!(!shown.contains("hunter2-pw"), "{shown}");
        }
        let source = DatabaseUrlSource::Env("postgres://u:hunter2-pw@h/db".to_owned());
        assert!(!format!("{source:?}").contains("hunter2-pw"));
    }

    #[test]
    fn the_dead_letter_queue_is_optional_and_checked() {
        let c = ConsumerConfig::from_lookup(&env(&[DB])).expect("valid");
        assert_eq!(c.dead_letter_queue_url, None);
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/spillway-kinesis-dlq";
        let c = ConsumerConfig::from_lookup(&env(&[DB, ("DEAD_LETTER_QUEUE_URL", url)]))
            .expect("valid");
        assert_eq!(c.dead_letter_queue_url.as_deref(), Some(url));
        for bad in [
            "spillway-dlq",
            "https://sqs.us-east-1.amazonaws.com/1/q.fifo",
        ] {
            let err = ConsumerConfig::from_lookup(&env(&[DB, ("DEAD_LETTER_QUEUE_URL", bad)]))
                .expect_err(bad);
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        name: "DEAD_LETTER_QUEUE_URL",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn bad_numbers_and_names_fail_loudly() {
        let err =
            ConsumerConfig::from_lookup(&env(&[DB, ("DB_STATEMENT_TIMEOUT_MS", "soon")])).err();
        assert!(matches!(
            err,
            Some(ConfigError::Invalid {
                name: "DB_STATEMENT_TIMEOUT_MS",
                ..
            })
        ));
        let err = ConsumerConfig::from_lookup(&env(&[DB, ("DB_STATEMENT_TIMEOUT_MS", "0")])).err();
        assert!(err.is_some());
        let err = ConsumerConfig::from_lookup(&env(&[DB, ("METRICS_NAMESPACE", "bad{ns}")])).err();
        assert!(matches!(
            err,
            Some(ConfigError::Invalid {
                name: "METRICS_NAMESPACE",
                ..
            })
        ));
        let err =
            ConsumerConfig::from_lookup(&env(&[DB, ("DB_CA_CERT_PATH", "/nonexistent.pem")])).err();
        assert!(matches!(
            err,
            Some(ConfigError::Invalid {
                name: "DB_CA_CERT_PATH",
                ..
            })
        ));
    }
}
