//! The local poller: runs the consumer's handler against an SQS queue (real or emulated) the
//! way Lambda's event source mapping would. Only wiring lives here; see
//! `spillway_consumer::tools::poller`.
//!
//! Stops on SIGTERM or Ctrl-C after finishing the batches in flight.

use anyhow::Context as _;
use aws_config::BehaviorVersion;
use spillway_consumer::config::ConsumerConfig;
use spillway_consumer::handler::{Deps, SystemClock};
use spillway_consumer::keys::keyring_from_env;
use spillway_consumer::pg::PgStore;
use spillway_consumer::telemetry;
use spillway_consumer::tools::poller::{self, PollerConfig};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let consumer = ConsumerConfig::from_env().context("invalid consumer configuration")?;
    let config = PollerConfig::from_env().context("invalid poller configuration")?;
    let keys = keyring_from_env(&|k| std::env::var(k).ok()).context("invalid envelope keys")?;

    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&config.endpoint)
        .load()
        .await;
    let region = sdk
        .region()
        .map(ToString::to_string)
        .context("AWS_REGION is required")?;
    let client = aws_sdk_sqs::Client::new(&sdk);
    let queue = poller::queue_info(&client, &config.queue_url, &region).await?;

    let mut deps = Vec::with_capacity(config.maximum_concurrency);
    for _ in 0..config.maximum_concurrency {
        deps.push(Deps {
            store: PgStore::new(&consumer.db).context("invalid database settings")?,
            clock: SystemClock,
            metrics_namespace: consumer.metrics_namespace.clone(),
            metrics_service: consumer.metrics_service.clone(),
            keys: keys.clone(),
            dead_letters: spillway_consumer::dead_letter::NoDeadLetters,
        });
    }

    let (stop, stopped) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutdown asked; finishing the batches in flight");
        let _ = stop.send(true);
    });

    poller::run(client, config, queue, deps, stopped).await?;
    Ok(())
}
