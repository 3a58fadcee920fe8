//! The I/O half of the poller: long-polls SQS, runs the handler on each gathered batch, deletes
//! what succeeded, receiving the next batch beside each invocation and deleting in the
//! background. What to build and what to delete is decided in [`super::record`]; when to
//! receive ahead and how long such a batch may wait, in [`super::prefetch`]; when to stop
//! receiving because the database is away, in [`crate::breaker`] (one breaker shared by the
//! workers).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use super::config::PollerConfig;
use super::prefetch::Prefetch;
use super::record::{sqs_event, to_delete, QueueInfo};
use super::sqs::{
    delete_owned, gather, join_receiving, received, release, sleep_until_some, spawn_gather,
    Gathered, Receiving,
};
use crate::breaker::{BatchHealth, Breaker, Step, Transition};
use crate::handler::{handle, Clock, Deps};
use crate::store::{EventStore, FailureKind};

/// The breaker the workers of one poller share. A plain mutex: it is held for a few
/// comparisons, never across an await.
pub type SharedBreaker = Arc<Mutex<Breaker>>;

fn breaker_do<T>(breaker: &SharedBreaker, f: impl FnOnce(&mut Breaker) -> T) -> T {
    // A worker that panicked mid-update left a consistent state (every update is one
    // assignment): keep using it.
    f(&mut breaker.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Logs a change of the breaker's state.
fn log_transition(worker: usize, transition: Transition) {
    match transition {
        Transition::None => {}
        Transition::Opened => warn!(
            worker,
            "database unavailable: receiving paused (the messages wait in the queue without \
             spending their receive counts); probing the database"
        ),
        Transition::StillOpen { next_probe_in } => info!(
            worker,
            next_probe_ms = next_probe_in.as_millis() as u64,
            "database still unavailable; receiving stays paused"
        ),
        Transition::Closed { open_for } => info!(
            worker,
            paused_ms = open_for.as_millis() as u64,
            "database reachable again: receiving resumed"
        ),
    }
}

/// Runs the probe the breaker asked for and reports it.
async fn probe<S: EventStore>(worker: usize, store: &S, breaker: &SharedBreaker) {
    let reachable = match store.probe().await {
        Ok(()) => true,
        // Reached, but unhappy (a timeout, a table not migrated): not an outage.
        Err(e) if e.kind != FailureKind::Unavailable => {
            warn!(worker, error = %e, "database probe answered with an error; resuming");
            true
        }
        Err(_) => false,
    };
    let transition = breaker_do(breaker, |b| b.probed(reachable, Instant::now().into_std()));
    log_transition(worker, transition);
}

#[derive(Debug, Error)]
pub enum PollerError {
    #[error("cannot read the attributes of {url}: {reason}")]
    QueueAttributes { url: String, reason: String },
    #[error("a worker stopped abnormally: {0}")]
    Worker(String),
}

/// Reads the queue's ARN (for `eventSourceARN`); fails at start-up if the queue is missing.
pub async fn queue_info(
    client: &aws_sdk_sqs::Client,
    url: &str,
    region: &str,
) -> Result<QueueInfo, PollerError> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .map_err(|e| PollerError::QueueAttributes {
            url: url.to_owned(),
            reason: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
        })?;
    let arn = out
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| PollerError::QueueAttributes {
            url: url.to_owned(),
            reason: "no QueueArn in the answer".to_owned(),
        })?;
    let visibility_timeout = out
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
        .and_then(|v| v.parse().ok());
    Ok(QueueInfo {
        url: url.to_owned(),
        arn,
        region: region.to_owned(),
        visibility_timeout,
    })
}

/// What a worker did, for the final log line and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub invocations: u64,
    pub records: u64,
    pub deleted: u64,
    pub failed: u64,
    /// Wall time inside invocations (building the event, verifying, decoding, writing), in
    /// milliseconds; the rest of a worker's time is waiting for a batch or for the breaker.
    pub invocation_ms: u64,
    /// Receives started beside an invocation ([`Prefetch`]).
    pub received_ahead: u64,
    /// Messages received ahead and given back to the queue unhandled (breaker, shutdown, the
    /// wait's bound).
    pub released: u64,
}

impl WorkerStats {
    fn add(&mut self, o: WorkerStats) {
        self.invocations += o.invocations;
        self.records += o.records;
        self.deleted += o.deleted;
        self.failed += o.failed;
        self.invocation_ms += o.invocation_ms;
        self.received_ahead += o.received_ahead;
        self.released += o.released;
    }
}

/// One worker: gather, handle, delete, until shutdown; while `breaker` is open, receive
/// nothing and probe the database when it says so.
///
/// While an invocation runs, the worker receives its next batch beside it and deletes the
/// previous batch's successes in the background, as Lambda's mapping does outside the function
/// ([`Prefetch`] says when, and bounds how long a batch received ahead waits). Every guarantee
/// of the one-step-after-the-other loop holds: a message is deleted only once its invocation
/// answered and did not name it; a batch received ahead is handled, or given back to the queue
/// (the breaker opened, shutdown, the wait's bound), never dropped; no receive starts while the
/// breaker is open; on shutdown the invocation in flight finishes and its deletes are awaited.
pub async fn run_worker<S, C>(
    worker: usize,
    client: aws_sdk_sqs::Client,
    config: PollerConfig,
    queue: QueueInfo,
    deps: Deps<S, C>,
    breaker: SharedBreaker,
    mut shutdown: watch::Receiver<bool>,
) -> WorkerStats
where
    S: EventStore,
    C: Clock,
{
    let visibility = config
        .visibility_timeout
        .map(|v| u64::try_from(v).unwrap_or(0))
        .or(queue.visibility_timeout)
        .map(Duration::from_secs);
    let prefetch = Prefetch::new(visibility, config.batching_window);
    let mut stats = WorkerStats::default();
    // A batch received ahead, waiting for its invocation; a receive still running.
    let mut ready: Option<Gathered> = None;
    let mut receiving: Option<Receiving> = None;
    let mut deletes: JoinSet<u64> = JoinSet::new();
    let mut last_invocation: Option<Duration> = None;
    while !*shutdown.borrow() {
        while let Some(done) = deletes.try_join_next() {
            stats.deleted += done.unwrap_or(0);
        }
        let step = breaker_do(&breaker, |b| b.step(Instant::now().into_std()));
        if step != Step::Receive {
            // Paused: what was received ahead is not handled now (it would fail and spend a
            // receive); it goes back to the queue, to be received once the breaker closes. A
            // receive still running is awaited first (a long poll: at most
            // `WAIT_TIME_SECONDS`, or until shutdown), since dropping it could leave messages
            // it was handed invisible for a whole visibility timeout.
            if let Some(r) = receiving.take() {
                ready = ready.or(received(worker, r.await));
            }
            if let Some(batch) = ready.take() {
                stats.released += release(
                    worker,
                    &client,
                    &queue,
                    batch,
                    "the database is unavailable",
                )
                .await;
            }
        }
        match step {
            Step::Receive => {}
            Step::Probe => {
                probe(worker, &deps.store, &breaker).await;
                continue;
            }
            Step::WaitUntil(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(Instant::from_std(at)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        }
        let batch = match (ready.take(), receiving.take()) {
            (Some(batch), r) => {
                receiving = r;
                batch
            }
            (None, Some(r)) => match received(worker, r.await) {
                Some(batch) => batch,
                None => continue,
            },
            (None, None) => {
                // One step after the other, as without receiving ahead: the last batch's
                // deletes land before the next receive, so a message whose visibility timeout
                // already ran out is not received again before its delete.
                while let Some(done) = deletes.join_next().await {
                    stats.deleted += done.unwrap_or(0);
                }
                match gather(&client, &config, &queue, &mut shutdown).await {
                    Ok(m) if m.is_empty() => continue,
                    Ok(messages) => Gathered {
                        messages,
                        at: Instant::now(),
                    },
                    Err(e) => {
                        warn!(worker, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receive failed");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.changed() => {}
                        }
                        continue;
                    }
                }
            }
        };
        // From here the batch is in flight: it is finished even if shutdown is asked.
        stats.invocations += 1;
        let request_id = format!("poller-{worker}-{}", stats.invocations);
        let messages = batch.messages;
        let started = Instant::now();
        let event = sqs_event(&messages, &queue);
        if prefetch.wanted(last_invocation) && breaker_do(&breaker, |b| b.is_closed()) {
            receiving = Some(spawn_gather(&client, &config, &queue, &shutdown));
            stats.received_ahead += 1;
        }
        let invocation = handle(&deps, &event, &request_id);
        tokio::pin!(invocation);
        let outcome = loop {
            let release_at = ready
                .as_ref()
                .and_then(|b| prefetch.release_at(b.at.into_std()))
                .map(Instant::from_std);
            tokio::select! {
                outcome = &mut invocation => break outcome,
                joined = join_receiving(&mut receiving) => {
                    receiving = None;
                    ready = received(worker, joined);
                }
                _ = sleep_until_some(release_at) => {
                    if let Some(batch) = ready.take() {
                        stats.released += release(worker, &client, &queue, batch, "waited its bound for the invocation before it").await;
                    }
                }
            }
        };
        let took = started.elapsed();
        last_invocation = Some(took);
        stats.invocation_ms += took.as_millis() as u64;
        println!("{}", outcome.emf);
        let health = if outcome.database_unavailable {
            BatchHealth::DatabaseUnavailable
        } else {
            BatchHealth::DatabaseAnswered
        };
        let transition = breaker_do(&breaker, |b| b.observe(health, Instant::now().into_std()));
        log_transition(worker, transition);
        let items: Vec<(String, String)> = to_delete(&messages, &outcome.response)
            .into_iter()
            .map(|(id, receipt)| (id.to_owned(), receipt.to_owned()))
            .collect();
        stats.records += messages.len() as u64;
        stats.failed += (messages.len() - items.len()) as u64;
        if !items.is_empty() {
            deletes.spawn(delete_owned(client.clone(), queue.clone(), items));
        }
    }
    // Shutdown: a receive still running returns at once (it watches the same signal); what it
    // or an earlier one brought goes back to the queue unhandled.
    if let Some(r) = receiving.take() {
        ready = ready.or(received(worker, r.await));
    }
    if let Some(batch) = ready.take() {
        stats.released += release(worker, &client, &queue, batch, "shutdown").await;
    }
    while let Some(done) = deletes.join_next().await {
        stats.deleted += done.unwrap_or(0);
    }
    stats
}

/// Runs `deps.len()` workers (one per store, so one connection each) until `shutdown` turns
/// true, then waits for their in-flight batches. The workers share one breaker
/// ([`PollerConfig::breaker`]).
pub async fn run<S, C>(
    client: aws_sdk_sqs::Client,
    config: PollerConfig,
    queue: QueueInfo,
    deps: Vec<Deps<S, C>>,
    shutdown: watch::Receiver<bool>,
) -> Result<WorkerStats, PollerError>
where
    S: EventStore + Send + Sync + 'static,
    C: Clock + 'static,
{
    info!(
        queue = %queue.url,
        batch_size = config.batch_size,
        window_s = config.batching_window.as_secs(),
        concurrency = deps.len(),
        "poller started"
    );
    if config.visibility_timeout.is_none()
        && queue
            .visibility_timeout
            .is_some_and(|v| v <= config.batching_window.as_secs())
    {
        warn!(
            queue_visibility_s = queue.visibility_timeout,
            window_s = config.batching_window.as_secs(),
            "the queue's visibility timeout is not longer than the batching window: \
             records will come back while they are gathered (set VISIBILITY_TIMEOUT_SECONDS)"
        );
    }
    let breaker: SharedBreaker = Arc::new(Mutex::new(Breaker::new(config.breaker)));
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, d) in deps.into_iter().enumerate() {
        tasks.spawn(run_worker(
            worker,
            client.clone(),
            config.clone(),
            queue.clone(),
            d,
            breaker.clone(),
            shutdown.clone(),
        ));
    }
    let mut total = WorkerStats::default();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(s) => total.add(s),
            Err(e) => failure = Some(PollerError::Worker(e.to_string())),
        }
    }
    info!(
        invocations = total.invocations,
        records = total.records,
        deleted = total.deleted,
        failed = total.failed,
        invocation_ms = total.invocation_ms,
        received_ahead = total.received_ahead,
        released = total.released,
        "poller stopped"
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(total),
    }
}
