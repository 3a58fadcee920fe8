//! The Lambda function binary. `spillway-consumer` serves Lambda invocations;
//! `spillway-consumer migrate` applies the schema migrations and exits.
//!
//! Only wiring lives here: logging, configuration (the database URL from `DATABASE_URL`, or
//! fetched once from the secret `DATABASE_URL_SECRET_ARN` names), dependencies, the runtime
//! loop.

use std::convert::Infallible;

use anyhow::Context as _;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, LambdaEvent};
use spillway_consumer::config::{ConsumerConfig, DatabaseUrl, DatabaseUrlSource};
use spillway_consumer::handler::{handle, Clock, Deps, SystemClock};
use spillway_consumer::keys::{self, KeysSource};
use spillway_consumer::pg::PgStore;
use spillway_consumer::store::EventStore;
use spillway_consumer::{migrate, secret, telemetry};

enum Command {
    Serve,
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let command = match std::env::args().nth(1).as_deref() {
        None => Command::Serve,
        Some("migrate") => Command::Migrate,
        Some(other) => {
            anyhow::bail!("unknown command `{other}`; usage: spillway-consumer [migrate]")
        }
    };
    // lambda_runtime panics without its environment; say what is wrong instead, before
    // reaching out to Secrets Manager.
    if matches!(command, Command::Serve) && std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        anyhow::bail!(
            "AWS_LAMBDA_RUNTIME_API is not set: this serves Lambda invocations. \
             Locally, run `spillway-poller`; to apply migrations, `spillway-consumer migrate`"
        );
    }

    // Cold start: the URL is resolved once, before the runtime loop asks for work.
    let url = match DatabaseUrlSource::from_env().context("invalid configuration")? {
        DatabaseUrlSource::Env(url) => DatabaseUrl::Env(url),
        DatabaseUrlSource::Secret(arn) => {
            let client = secret::client(&arn).await;
            let url = secret::fetch_database_url(&client, &arn).await?;
            tracing::info!(secret = %arn.arn, "database URL read from Secrets Manager");
            url
        }
    };
    let config = ConsumerConfig::from_url(&|k| std::env::var(k).ok(), &url)
        .context("invalid configuration")?;
    let lookup = |k: &str| std::env::var(k).ok();
    drop(url);
    let store = PgStore::new(&config.db).context("invalid database settings")?;
    match command {
        Command::Serve => {
            let keys = match KeysSource::from_lookup(&lookup).context("invalid configuration")? {
                KeysSource::Env(raw) => keys::keyring(&raw, "ENVELOPE_KEYS", &lookup),
                KeysSource::Secret(arn) => {
                    let client = secret::client(&arn).await;
                    let raw = secret::fetch_text(&client, &arn, keys::SECRET_TEXT).await?;
                    tracing::info!(secret = %arn.arn, "envelope keys read from Secrets Manager");
                    keys::keyring(&raw, "the secret ENVELOPE_KEYS_SECRET_ARN names", &lookup)
                }
            }
            .context("invalid configuration")?;
            tracing::info!(kids = ?keys.kids().collect::<Vec<_>>(), unsigned = ?keys.unsigned(), "envelope keys");
            let deps = Deps {
                store,
                clock: SystemClock,
                metrics_namespace: config.metrics_namespace,
                metrics_service: config.metrics_service,
                keys,
            };
            let deps = &deps;
            lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
                invoke(deps, event)
            }))
            .await
            .map_err(|e| anyhow::anyhow!(e))
        }
        Command::Migrate => {
            let mut client = store.open().await.context("cannot connect")?;
            let report = migrate::run(&mut client, migrate::MIGRATIONS).await?;
            tracing::info!(
                applied = ?report.applied,
                already = ?report.already,
                unknown = ?report.unknown,
                "migrations done"
            );
            Ok(())
        }
    }
}

/// One invocation: handles the event, prints the EMF record (Lambda turns that stdout line
/// into metrics), answers the batch response. Never an error: failures are per record.
async fn invoke<S, C>(
    deps: &Deps<S, C>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Infallible>
where
    S: EventStore,
    C: Clock,
{
    let outcome = handle(deps, &event.payload, &event.context.request_id).await;
    println!("{}", outcome.emf);
    Ok(outcome.response)
}
