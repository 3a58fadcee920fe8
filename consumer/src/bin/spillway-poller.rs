//! The local poller: runs the consumer's handler the way Lambda's event source mapping would,
//! against an SQS queue (`BUFFER` unset or `sqs`) or a Kinesis stream (`BUFFER=kinesis`), real
//! or emulated. Only wiring lives here; see `spillway_consumer::tools::poller` and
//! `spillway_consumer::tools::poller::kinesis`.
//!
//! Stops on SIGTERM or Ctrl-C after finishing the batches in flight.

use std::sync::Arc;

use anyhow::Context as _;
use aws_config::BehaviorVersion;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use spillway_consumer::config::ConsumerConfig;
use spillway_consumer::dead_letter::{NoDeadLetters, SqsDeadLetters};
use spillway_consumer::handler::{handle_kinesis, Deps, SystemClock};
use spillway_consumer::keys::keyring_from_env;
use spillway_consumer::pg::PgStore;
use spillway_consumer::telemetry;
use spillway_consumer::tools::poller::kinesis::{
    self, Function, FunctionError, KinesisPollerConfig, SqsDestination,
};
use spillway_consumer::tools::poller::{self, Buffer, PollerConfig};
use spillway_shared::Keyring;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let consumer = ConsumerConfig::from_env().context("invalid consumer configuration")?;
    let buffer = poller::buffer(&|k| std::env::var(k).ok()).context("invalid configuration")?;
    let keys = keyring_from_env(&|k| std::env::var(k).ok()).context("invalid envelope keys")?;

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

    match buffer {
        Buffer::Sqs => run_sqs(consumer, keys, stopped).await,
        Buffer::Kinesis => run_kinesis(consumer, keys, stopped).await,
    }
}

async fn run_sqs(
    consumer: ConsumerConfig,
    keys: Keyring,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = PollerConfig::from_env().context("invalid poller configuration")?;
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
            dead_letters: NoDeadLetters,
        });
    }
    poller::run(client, config, queue, deps, stopped).await?;
    Ok(())
}

type KinesisDeps = Deps<PgStore, SystemClock, Option<SqsDeadLetters>>;

/// The consumer's Kinesis handler as the mapping's function. Each concurrent invocation takes
/// its own `Deps`, hence its own database connection, opened the first time it is needed:
/// connections = shards x `PARALLELIZATION_FACTOR` at most, as on Lambda.
struct Handler {
    idle: tokio::sync::Mutex<Vec<KinesisDeps>>,
    consumer: ConsumerConfig,
    keys: Keyring,
    dead_letters: Option<SqsDeadLetters>,
}

impl Function for Handler {
    async fn invoke(
        &self,
        event: KinesisEvent,
        request_id: String,
    ) -> Result<KinesisEventResponse, FunctionError> {
        let pooled = self.idle.lock().await.pop();
        let deps = match pooled {
            Some(d) => d,
            None => Deps {
                store: PgStore::new(&self.consumer.db).map_err(|e| FunctionError(e.to_string()))?,
                clock: SystemClock,
                metrics_namespace: self.consumer.metrics_namespace.clone(),
                metrics_service: self.consumer.metrics_service.clone(),
                keys: self.keys.clone(),
                dead_letters: self.dead_letters.clone(),
            },
        };
        let outcome = handle_kinesis(&deps, &event, &request_id).await;
        println!("{}", outcome.emf);
        self.idle.lock().await.push(deps);
        Ok(outcome.response)
    }
}

async fn run_kinesis(
    consumer: ConsumerConfig,
    keys: Keyring,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = KinesisPollerConfig::from_env().context("invalid poller configuration")?;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(config.region.clone()))
        .endpoint_url(&config.endpoint)
        .load()
        .await;
    let client = aws_sdk_kinesis::Client::new(&sdk);
    // `SQS_ENDPOINT` only for local queues; otherwise each queue URL's origin is its endpoint.
    let sqs_endpoint = std::env::var("SQS_ENDPOINT")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let dead_letters = match &consumer.dead_letter_queue_url {
        Some(url) => Some(SqsDeadLetters::connect(url, sqs_endpoint.as_deref()).await),
        None => {
            tracing::warn!("DEAD_LETTER_QUEUE_URL is unset: a record that can never be stored holds its shard until MAXIMUM_RETRY_ATTEMPTS or MAXIMUM_RECORD_AGE_IN_SECONDS");
            None
        }
    };
    let destination = match &config.on_failure_destination {
        Some(url) => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest());
            if let Some(origin) = sqs_endpoint
                .clone()
                .or_else(|| spillway_shared::origin_of(url).ok())
            {
                loader = loader.endpoint_url(origin);
            }
            Some(SqsDestination {
                client: aws_sdk_sqs::Client::new(&loader.load().await),
                queue_url: url.clone(),
            })
        }
        None => None,
    };
    let function = Arc::new(Handler {
        idle: tokio::sync::Mutex::new(Vec::new()),
        consumer,
        keys,
        dead_letters,
    });
    kinesis::run(client, config, function, destination, stopped).await?;
    Ok(())
}
