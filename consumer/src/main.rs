//! The Lambda function binary. `spillway-consumer` serves Lambda invocations;
//! `spillway-consumer migrate` applies the schema migrations and exits.
//!
//! Only wiring lives here: logging, configuration (the database URL from `DATABASE_URL`, or
//! fetched once from the secret `DATABASE_URL_SECRET_ARN` names), dependencies, the runtime
//! loop. One binary serves both buffers: each invocation is an SQS or a Kinesis event, told
//! apart by its records' `eventSource` ([`EventSource::of`]). A third kind of invocation is the
//! circuit breaker's scheduled probe ([`ProbeRequest`]), which disables or enables the
//! function's own event source mapping ([`spillway_consumer::probe`]).

use anyhow::Context as _;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use spillway_consumer::breaker::ProbeRequest;
use spillway_consumer::config::{ConsumerConfig, DatabaseUrl, DatabaseUrlSource};
use spillway_consumer::dead_letter::{DeadLetterSink, SqsDeadLetters};
use spillway_consumer::handler::{handle, handle_kinesis, Clock, Deps, SystemClock};
use spillway_consumer::keys::{self, KeysSource};
use spillway_consumer::pg::PgStore;
use spillway_consumer::probe::{probe_emf, run_probe, Mappings};
use spillway_consumer::source::{EventSource, UnknownEvent};
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
            // `SQS_ENDPOINT` only for a local queue; on AWS the queue URL's origin is the
            // regional endpoint.
            let sqs_endpoint = lookup("SQS_ENDPOINT").filter(|v| !v.trim().is_empty());
            let dead_letters = match &config.dead_letter_queue_url {
                Some(url) => Some(SqsDeadLetters::connect(url, sqs_endpoint.as_deref()).await),
                None => None,
            };
            tracing::info!(dead_letter_queue = ?config.dead_letter_queue_url, "dead letters of Kinesis records");
            let deps = Deps {
                store,
                clock: SystemClock,
                metrics_namespace: config.metrics_namespace,
                metrics_service: config.metrics_service,
                keys,
                dead_letters,
            };
            let deps = &deps;
            let mappings = &tokio::sync::OnceCell::new();
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
                invoke(deps, mappings, event)
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

/// One invocation: handles the event by its source, prints the EMF record (Lambda turns that
/// stdout line into metrics), answers the batch response. An error only for an event that is
/// neither SQS's nor Kinesis's (or does not parse as one), as `lambda_runtime` answered
/// before for an event that was not SQS's, and for a breaker probe that could not read or
/// change its mapping; otherwise failures are per record.
async fn invoke<S, C, D>(
    deps: &Deps<S, C, D>,
    mappings: &tokio::sync::OnceCell<Mappings>,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error>
where
    S: EventStore,
    C: Clock,
    D: DeadLetterSink,
{
    let request_id = &event.context.request_id;
    if let Some(request) = ProbeRequest::of(&event.payload) {
        let request = request?;
        let mappings = mappings.get_or_init(Mappings::connect).await;
        let report = run_probe(&deps.store, mappings, &request).await?;
        println!(
            "{}",
            probe_emf(
                &deps.metrics_namespace,
                &deps.metrics_service,
                &report,
                deps.clock.now()
            )
        );
        return Ok(serde_json::to_value(report)?);
    }
    let (emf, response) = match EventSource::of(&event.payload) {
        // An event without records goes where it always went: the SQS handler answers it
        // with no failures (or the event does not parse, as before).
        Ok(EventSource::Sqs) | Err(UnknownEvent::NoRecords) => {
            let sqs: SqsEvent = serde_json::from_value(event.payload)?;
            let outcome = handle(deps, &sqs, request_id).await;
            (outcome.emf, serde_json::to_value(outcome.response)?)
        }
        Ok(EventSource::Kinesis) => {
            let kinesis: KinesisEvent = serde_json::from_value(event.payload)?;
            let outcome = handle_kinesis(deps, &kinesis, request_id).await;
            (outcome.emf, serde_json::to_value(outcome.response)?)
        }
        Err(unknown) => return Err(unknown.into()),
    };
    println!("{emf}");
    Ok(response)
}
