//! The Lambda function binary. `spillway-consumer` serves Lambda invocations;
//! `spillway-consumer migrate` applies the schema migrations and exits.
//!
//! Only wiring lives here: logging, configuration, dependencies, the runtime loop.

use anyhow::Context as _;
use lambda_runtime::{service_fn, LambdaEvent};
use spillway_consumer::config::ConsumerConfig;
use spillway_consumer::handler::{lambda_handler, Deps, SystemClock};
use spillway_consumer::pg::PgStore;
use spillway_consumer::{migrate, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let config = ConsumerConfig::from_env().context("invalid configuration")?;
    let store = PgStore::new(&config.db).context("invalid database settings")?;
    match std::env::args().nth(1).as_deref() {
        None => {
            // lambda_runtime panics without its environment; say what is wrong instead.
            if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
                anyhow::bail!(
                    "AWS_LAMBDA_RUNTIME_API is not set: this serves Lambda invocations. \
                     Locally, run `spillway-poller`; to apply migrations, `spillway-consumer migrate`"
                );
            }
            let deps = Deps {
                store,
                clock: SystemClock,
                metrics_namespace: config.metrics_namespace,
                metrics_service: config.metrics_service,
            };
            let deps = &deps;
            lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
                lambda_handler(deps, event)
            }))
            .await
            .map_err(|e| anyhow::anyhow!(e))
        }
        Some("migrate") => {
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
        Some(other) => {
            anyhow::bail!("unknown command `{other}`; usage: spillway-consumer [migrate]")
        }
    }
}
