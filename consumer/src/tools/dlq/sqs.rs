//! The SQS calls of the tool: receive (hidden for a pass), restore visibility, send and delete.
//! What to do with the answers is decided in [`super::plan`].

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use thiserror::Error;

use super::kinesis::Streams;
use super::plan::{entry_id, plan_redrive, sendable, split_new, RedriveReport, Sent};
use super::report::kinesis_dead_letter;

/// How long a scan keeps what it received hidden, so that the next receive of the same pass
/// returns other messages. [`restore`] ends it early; should the tool die, SQS ends it.
pub const SCAN_VISIBILITY: Duration = Duration::from_secs(30);

/// Long-poll wait of each receive: long enough that an empty answer means an empty queue
/// (a short poll samples only some SQS servers), short enough to end a pass promptly.
const RECEIVE_WAIT_SECONDS: i32 = 1;

/// An SQS call that failed.
#[derive(Debug, Error)]
#[error("{action} on {queue} failed: {reason}")]
pub struct SqsError {
    pub action: &'static str,
    pub queue: String,
    pub reason: String,
}

fn sqs_error<E: std::error::Error>(action: &'static str, queue: &str, e: E) -> SqsError {
    SqsError {
        action,
        queue: queue.to_owned(),
        reason: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
    }
}

/// How many messages `queue` holds now, visible or in flight (SQS's approximate counts). A
/// redrive of "all" moves this many: a redriven record that fails again comes back as a new
/// message within milliseconds (the Kinesis consumer dead-letters it itself), and a pass
/// bounded only by what it has not seen yet would go round it for ever.
pub async fn depth(client: &aws_sdk_sqs::Client, queue: &str) -> Result<usize, SqsError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = client
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| sqs_error("GetQueueAttributes", queue, e))?;
    let attrs = out.attributes.unwrap_or_default();
    let count = |a: A| {
        attrs
            .get(&a)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    Ok(count(A::ApproximateNumberOfMessages) + count(A::ApproximateNumberOfMessagesNotVisible))
}

/// Up to 10 messages, hidden for `visibility`, with every attribute.
async fn receive(
    client: &aws_sdk_sqs::Client,
    queue: &str,
    want: usize,
    visibility: Duration,
) -> Result<Vec<Message>, SqsError> {
    let out = client
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(want.clamp(1, 10) as i32)
        .visibility_timeout(visibility.as_secs() as i32)
        .wait_time_seconds(RECEIVE_WAIT_SECONDS)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| sqs_error("ReceiveMessage", queue, e))?;
    Ok(out.messages.unwrap_or_default())
}

/// Receives that bring back only messages already seen, in a row, before a pass gives up.
/// A seen message comes back when a long pass outlives its visibility timeout; it is hidden
/// again by that receive, so this bound is only reached when little else is left.
const IDLE_RECEIVES: usize = 3;

/// Receives up to `max` distinct messages. They stay hidden until [`restore`] (or
/// [`SCAN_VISIBILITY`]) ends; the caller must restore them.
pub async fn scan(
    client: &aws_sdk_sqs::Client,
    dlq: &str,
    max: usize,
) -> Result<Vec<Message>, SqsError> {
    let mut seen: Vec<Message> = Vec::new();
    let mut ids = HashSet::new();
    let mut idle = 0;
    while seen.len() < max && idle < IDLE_RECEIVES {
        let got = match receive(client, dlq, max - seen.len(), SCAN_VISIBILITY).await {
            Ok(got) => got,
            Err(e) => {
                // Do not leave what was already received hidden.
                restore(client, dlq, &seen).await;
                return Err(e);
            }
        };
        if got.is_empty() {
            break;
        }
        let new = split_new(got, &mut ids, &mut seen);
        idle = if new.is_empty() { idle + 1 } else { 0 };
        seen.extend(new);
    }
    seen.truncate(max);
    Ok(seen)
}

/// Makes `messages` visible again now. Best effort: a message it misses reappears when its
/// visibility timeout ends anyway. Returns how many SQS confirmed.
pub async fn restore(client: &aws_sdk_sqs::Client, queue: &str, messages: &[Message]) -> usize {
    let mut restored = 0;
    for chunk in messages.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(entry_id(i))
                    .receipt_handle(m.receipt_handle()?)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            continue;
        }
        match client
            .change_message_visibility_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                restored += out.successful().len();
                for f in out.failed() {
                    eprintln!(
                        "warning: {} stays hidden until its visibility timeout ends: {}",
                        f.id(),
                        f.message().unwrap_or(f.code())
                    );
                }
            }
            Err(e) => eprintln!(
                "warning: messages stay hidden for up to {} s: {}",
                SCAN_VISIBILITY.as_secs(),
                sqs_error("ChangeMessageVisibilityBatch", queue, e)
            ),
        }
    }
    restored
}

/// Moves up to `max` messages from `dlq`, 10 at a time: an SQS dead letter to `queue`, a
/// Kinesis one into its stream through `streams`; with `dry_run`, only receives them, reports
/// them and makes them visible again.
pub async fn redrive(
    client: &aws_sdk_sqs::Client,
    dlq: &str,
    queue: Option<&str>,
    streams: &mut Streams,
    max: usize,
    dry_run: bool,
) -> Result<RedriveReport, SqsError> {
    if dry_run {
        let seen = scan(client, dlq, max).await?;
        restore(client, dlq, &seen).await;
        return Ok(RedriveReport {
            would_move: seen
                .iter()
                .map(|m| m.message_id().unwrap_or_default().to_owned())
                .collect(),
            ..RedriveReport::default()
        });
    }
    let mut report = RedriveReport::default();
    // Messages that could not be sent stay hidden until the end, so that this pass does not
    // receive them again; then they are made visible.
    let mut kept: Vec<Message> = Vec::new();
    let mut ids = HashSet::new();
    let mut idle = 0;
    let done = |r: &RedriveReport| r.moved.len() + r.not_moved.len() + r.not_deleted.len();
    while done(&report) < max && idle < IDLE_RECEIVES {
        let got = match receive(client, dlq, max - done(&report), SCAN_VISIBILITY).await {
            Ok(got) => got,
            Err(e) => {
                restore(client, dlq, &kept).await;
                return Err(e);
            }
        };
        if got.is_empty() {
            break;
        }
        let batch = split_new(got, &mut ids, &mut kept);
        if batch.is_empty() {
            idle += 1;
            continue;
        }
        idle = 0;
        // Kinesis records' dead letters go back into their streams, SQS ones to the queue.
        let mut to_queue = Vec::new();
        let mut to_streams = Vec::new();
        for m in batch {
            match kinesis_dead_letter(&m) {
                None => to_queue.push(m),
                Some(Ok(letter)) => to_streams.push((m, letter)),
                Some(Err(e)) => {
                    let id = m.message_id().unwrap_or_default().to_owned();
                    report
                        .not_moved
                        .push((id, format!("a Kinesis dead letter: {e}")));
                    kept.push(m);
                }
            }
        }
        let mut deletes = Vec::new();
        if !to_streams.is_empty() {
            let letters: Vec<_> = to_streams.iter().map(|(_, l)| l).collect();
            let answers = streams.put(&letters).await;
            for ((m, _), answer) in to_streams.into_iter().zip(answers) {
                let message_id = m.message_id().unwrap_or_default().to_owned();
                match (answer, m.receipt_handle()) {
                    (Ok(new_id), Some(receipt)) => {
                        deletes.push((message_id, new_id, receipt.to_owned()))
                    }
                    (Ok(new_id), None) => report.not_deleted.push((
                        message_id,
                        format!("put as {new_id}, but it has no receipt handle to delete it with"),
                    )),
                    (Err(why), _) => {
                        report.not_moved.push((message_id, why));
                        kept.push(m);
                    }
                }
            }
        }
        let batch = to_queue;
        if batch.is_empty() {
            delete_sent(client, dlq, deletes, &mut report).await;
            continue;
        }
        let Some(queue) = queue else {
            for m in batch {
                let id = m.message_id().unwrap_or_default().to_owned();
                report.not_moved.push((
                    id,
                    "an SQS dead letter, and no --queue-url (SQS_QUEUE_URL) to send it to"
                        .to_owned(),
                ));
                kept.push(m);
            }
            delete_sent(client, dlq, deletes, &mut report).await;
            continue;
        };
        let entries: Vec<_> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(entry_id(i))
                    .message_body(m.body().unwrap_or_default())
                    .set_message_attributes(sendable(m.message_attributes()))
                    .build()
                    .ok()
            })
            .collect();
        let plan = match client
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                let ok: Vec<(String, String)> = out
                    .successful()
                    .iter()
                    .map(|s| (s.id().to_owned(), s.message_id().to_owned()))
                    .collect();
                let failed: Vec<(String, String)> = out
                    .failed()
                    .iter()
                    .map(|f| {
                        let why = format!("{}: {}", f.code(), f.message().unwrap_or_default());
                        (f.id().to_owned(), why)
                    })
                    .collect();
                plan_redrive(&batch, &ok, &failed)
            }
            Err(e) => {
                // Nothing was sent: keep the whole batch where it is and stop.
                kept.extend(batch);
                restore(client, dlq, &kept).await;
                return Err(sqs_error("SendMessageBatch", queue, e));
            }
        };
        for (m, sent) in batch.into_iter().zip(plan) {
            match sent {
                Sent::Yes {
                    message_id,
                    new_id,
                    receipt_handle,
                } => deletes.push((message_id, new_id, receipt_handle)),
                Sent::No { message_id, reason } => {
                    report.not_moved.push((message_id, reason));
                    kept.push(m);
                }
            }
        }
        delete_sent(client, dlq, deletes, &mut report).await;
    }
    restore(client, dlq, &kept).await;
    Ok(report)
}

/// Deletes from the DLQ what the main queue now holds.
async fn delete_sent(
    client: &aws_sdk_sqs::Client,
    dlq: &str,
    sent: Vec<(String, String, String)>,
    report: &mut RedriveReport,
) {
    if sent.is_empty() {
        return;
    }
    let entries: Vec<_> = sent
        .iter()
        .enumerate()
        .filter_map(|(i, (_, _, receipt))| {
            DeleteMessageBatchRequestEntry::builder()
                .id(entry_id(i))
                .receipt_handle(receipt)
                .build()
                .ok()
        })
        .collect();
    let answer = client
        .delete_message_batch()
        .queue_url(dlq)
        .set_entries(Some(entries))
        .send()
        .await;
    let failed: Vec<(String, String)> = match answer {
        Ok(out) => out
            .failed()
            .iter()
            .map(|f| {
                let why = format!("{}: {}", f.code(), f.message().unwrap_or_default());
                (f.id().to_owned(), why)
            })
            .collect(),
        Err(e) => {
            let why = sqs_error("DeleteMessageBatch", dlq, e).to_string();
            (0..sent.len())
                .map(|i| (entry_id(i), why.clone()))
                .collect()
        }
    };
    for (i, (message_id, new_id, _)) in sent.into_iter().enumerate() {
        match failed.iter().find(|(id, _)| *id == entry_id(i)) {
            Some((_, why)) => report.not_deleted.push((message_id, why.clone())),
            None => report.moved.push((message_id, new_id)),
        }
    }
}
