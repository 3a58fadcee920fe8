//! The SQS calls of a worker: gather a batch (long polls over the batching window), delete what
//! succeeded, give a batch received ahead back to the queue; and the small futures that let a
//! worker wait on a receive running beside its invocation. What to call when is decided in
//! [`super::worker`] and [`super::prefetch`]; nothing here keeps state between calls.

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName,
};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;
use tracing::{info, warn};

use super::config::PollerConfig;
use super::record::{merge_received, QueueInfo};

/// Lambda's invocation payload limit is 6 MB; stop gathering well before it.
const MAX_GATHER_BYTES: usize = 5 * 1024 * 1024;

/// Gathers one batch: long-polls until a first message, then keeps receiving until the batch
/// is full, the window has passed or shutdown was asked. Returns what it has.
pub(super) async fn gather(
    client: &aws_sdk_sqs::Client,
    config: &PollerConfig,
    queue: &QueueInfo,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Vec<Message>, aws_sdk_sqs::Error> {
    let mut batch: Vec<Message> = Vec::new();
    let mut bytes = 0usize;
    let mut deadline: Option<Instant> = None;
    loop {
        let want = (config.batch_size - batch.len()).min(10) as i32;
        let wait = match deadline {
            None => config.wait_time_seconds,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (left.as_secs_f64().ceil() as i32).min(20)
            }
        };
        let mut request = client
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(want)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All");
        if let Some(v) = config.visibility_timeout {
            request = request.visibility_timeout(v);
        }
        let received = tokio::select! {
            r = request.send() => match r {
                Ok(r) => r,
                // Keep what was gathered: it is handled now instead of reappearing later.
                Err(e) if !batch.is_empty() => {
                    warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receive failed; handling the partial batch");
                    return Ok(batch);
                }
                Err(e) => return Err(e.into()),
            },
            _ = shutdown.changed() => return Ok(batch),
        };
        let messages = received.messages.unwrap_or_default();
        if !messages.is_empty() && deadline.is_none() {
            deadline = Some(Instant::now() + config.batching_window);
        }
        bytes += messages
            .iter()
            .map(|m| m.body().map_or(0, str::len))
            .sum::<usize>();
        merge_received(&mut batch, messages);
        let full = batch.len() >= config.batch_size || bytes >= MAX_GATHER_BYTES;
        let window_over = deadline.is_some_and(|d| Instant::now() >= d);
        if !batch.is_empty() && (full || window_over) {
            return Ok(batch);
        }
        if *shutdown.borrow() {
            return Ok(batch);
        }
    }
}

/// Deletes what succeeded, 10 per request; returns how many SQS confirmed.
pub(super) async fn delete(
    client: &aws_sdk_sqs::Client,
    queue: &QueueInfo,
    items: &[(&str, &str)],
) -> u64 {
    let mut deleted = 0;
    for chunk in items.chunks(10) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, (_, receipt))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("d{i}"))
                    .receipt_handle(*receipt)
                    .build()
                    .ok()
            })
            .collect();
        match client
            .delete_message_batch()
            .queue_url(&queue.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                deleted += out.successful().len() as u64;
                for f in out.failed() {
                    // Not deleted means delivered again later: a duplicate, which the
                    // table skips. Worth a warning, not a failure.
                    warn!(entry = f.id(), code = f.code(), "delete failed");
                }
            }
            Err(e) => warn!(
                error = %aws_sdk_sqs::error::DisplayErrorContext(e),
                "DeleteMessageBatch failed; the messages will be delivered again"
            ),
        }
    }
    deleted
}

/// A batch gathered and not yet handled.
pub(super) struct Gathered {
    pub(super) messages: Vec<Message>,
    /// When the gather returned: the wait for its invocation counts from here
    /// ([`Prefetch::release_at`]).
    pub(super) at: Instant,
}

/// A receive running beside the invocation, in its own task (so that reading a large answer
/// runs on another core than the handler), and what it returns.
pub(super) type Receiving = JoinHandle<Result<Vec<Message>, aws_sdk_sqs::Error>>;

pub(super) fn spawn_gather(
    client: &aws_sdk_sqs::Client,
    config: &PollerConfig,
    queue: &QueueInfo,
    shutdown: &watch::Receiver<bool>,
) -> Receiving {
    let (client, config, queue) = (client.clone(), config.clone(), queue.clone());
    let mut shutdown = shutdown.clone();
    tokio::spawn(async move {
        if *shutdown.borrow() {
            return Ok(Vec::new());
        }
        gather(&client, &config, &queue, &mut shutdown).await
    })
}

/// What a receive that ran beside an invocation brought: a batch, or nothing (an empty long
/// poll, an error, which the next receive will meet again if it lasts).
pub(super) fn received(
    worker: usize,
    joined: Result<Result<Vec<Message>, aws_sdk_sqs::Error>, JoinError>,
) -> Option<Gathered> {
    match joined {
        Ok(Ok(messages)) if !messages.is_empty() => Some(Gathered {
            messages,
            at: Instant::now(),
        }),
        Ok(Ok(_)) => None,
        Ok(Err(e)) => {
            warn!(worker, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receive ahead failed");
            None
        }
        Err(e) => {
            warn!(worker, error = %e, "receive ahead stopped abnormally");
            None
        }
    }
}

/// Gives a batch back to the queue (visibility 0), unhandled: at once visible to any worker
/// again, with one receive count spent. A call that fails leaves the messages to come back
/// after their visibility timeout instead; either way none is deleted.
pub(super) async fn release(
    worker: usize,
    client: &aws_sdk_sqs::Client,
    queue: &QueueInfo,
    batch: Gathered,
    why: &str,
) -> u64 {
    let mut released = 0;
    for chunk in batch.messages.chunks(10) {
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(format!("r{i}"))
                    .receipt_handle(m.receipt_handle()?)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        match client
            .change_message_visibility_batch()
            .queue_url(&queue.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => released += out.successful().len() as u64,
            Err(e) => warn!(
                worker,
                error = %aws_sdk_sqs::error::DisplayErrorContext(e),
                "ChangeMessageVisibilityBatch failed; the messages come back after their visibility timeout"
            ),
        }
    }
    info!(
        worker,
        messages = batch.messages.len(),
        released,
        reason = why,
        "batch received ahead given back to the queue, unhandled"
    );
    released
}

/// [`delete`] with owned values, for a task of its own: the next invocation does not wait for
/// it.
pub(super) async fn delete_owned(
    client: aws_sdk_sqs::Client,
    queue: QueueInfo,
    items: Vec<(String, String)>,
) -> u64 {
    let items: Vec<(&str, &str)> = items
        .iter()
        .map(|(i, r)| (i.as_str(), r.as_str()))
        .collect();
    delete(&client, &queue, &items).await
}

/// The receive running beside an invocation, if any; never ready otherwise.
pub(super) async fn join_receiving(
    receiving: &mut Option<Receiving>,
) -> Result<Result<Vec<Message>, aws_sdk_sqs::Error>, JoinError> {
    match receiving {
        Some(r) => r.await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; forever without it.
pub(super) async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
