//! Reads the database URL and the envelope keys from AWS Secrets Manager: the adapter behind
//! `DATABASE_URL_SECRET_ARN` and `ENVELOPE_KEYS_SECRET_ARN`.
//!
//! The Lambda function calls [`fetch_database_url`] and [`fetch_text`] once, at cold start,
//! before its runtime loop; invocations never touch Secrets Manager. Credentials come from the SDK's default chain
//! (on Lambda, the execution role's keys in the environment); the client is sent to the
//! secret's own region, taken from its ARN. `AWS_ENDPOINT_URL` (or
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`) points it elsewhere, for tests against a local emulator.
//!
//! The URL holds the database password and the keys their secrets: nothing here logs them or
//! puts them in an error, and the SDK's own `Debug` output of the answer redacts them.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::config::Region;
use thiserror::Error;

use crate::config::{DatabaseUrl, SecretArn};

/// Lambda gives the whole init phase 10 s. A subnet with no route to Secrets Manager would
/// otherwise hang there and end in an opaque init timeout, instead of this adapter's error.
const FETCH_TIMEOUT: Duration = Duration::from_secs(8);

/// Why the database URL could not be read from its secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretError {
    #[error("cannot read the secret {arn}: {reason}")]
    Fetch { arn: String, reason: String },
    #[error("the secret {arn} has no SecretString (it must be {what} as text)")]
    NotText { arn: String, what: &'static str },
    #[error("the secret {arn} is empty (it must be {what})")]
    Empty { arn: String, what: &'static str },
}

const URL: &str = "the postgres:// URL";

/// A SecretString that must hold `what`: present and not blank.
fn text_from(
    arn: &str,
    secret_string: Option<&str>,
    what: &'static str,
) -> Result<String, SecretError> {
    match secret_string {
        None => Err(SecretError::NotText {
            arn: arn.to_owned(),
            what,
        }),
        Some(s) if s.trim().is_empty() => Err(SecretError::Empty {
            arn: arn.to_owned(),
            what,
        }),
        Some(s) => Ok(s.trim().to_owned()),
    }
}

/// What a `GetSecretValue` answer means for us. Pure: the adapter below only fetches.
pub fn database_url_from(
    arn: &str,
    secret_string: Option<&str>,
) -> Result<DatabaseUrl, SecretError> {
    text_from(arn, secret_string, URL).map(DatabaseUrl::Secret)
}

/// A Secrets Manager client for the secret's region, with the default credential chain.
pub async fn client(secret: &SecretArn) -> aws_sdk_secretsmanager::Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(secret.region.clone()))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(FETCH_TIMEOUT)
                .build(),
        )
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&sdk)
}

/// Fetches the current version of the secret and returns its SecretString as the URL.
pub async fn fetch_database_url(
    client: &aws_sdk_secretsmanager::Client,
    secret: &SecretArn,
) -> Result<DatabaseUrl, SecretError> {
    fetch_text(client, secret, URL)
        .await
        .map(DatabaseUrl::Secret)
}

/// Fetches the current version of the secret and returns its SecretString, which must hold
/// `what` (named in errors).
pub async fn fetch_text(
    client: &aws_sdk_secretsmanager::Client,
    secret: &SecretArn,
    what: &'static str,
) -> Result<String, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(&secret.arn)
        .send()
        .await
        .map_err(|e| SecretError::Fetch {
            arn: secret.arn.clone(),
            // The error holds the request and the service's message, never the secret value.
            reason: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        })?;
    text_from(&secret.arn, out.secret_string(), what)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf";

    #[test]
    fn the_secret_string_is_the_url() {
        let url =
            database_url_from(ARN, Some(" postgres://u:pw@db.example.com/app\n")).expect("a URL");
        assert_eq!(url.expose(), "postgres://u:pw@db.example.com/app");
        assert_eq!(url.origin(), "the secret DATABASE_URL_SECRET_ARN names");
    }

    #[test]
    fn a_binary_or_empty_secret_is_refused_naming_the_secret() {
        let binary = database_url_from(ARN, None).expect_err("binary secret");
        assert_eq!(
            binary.to_string(),
            format!(
                "the secret {ARN} has no SecretString (it must be the postgres:// URL as text)"
            )
        );
        let empty = database_url_from(ARN, Some("  ")).expect_err("empty secret");
        assert!(matches!(empty, SecretError::Empty { .. }));
        assert!(empty.to_string().contains(ARN));
    }
}
