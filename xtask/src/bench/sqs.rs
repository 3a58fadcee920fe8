//! Figure 4: SQS requests billed per million events (computed by the real packer), and
//! emptying the local SQS between timed runs.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use spillway_shared::{BufferLimits, EdgeInfo, Event};
use spillway_support::{BufferKind, SqsKind, Stack};

use super::{CONSUMER_BATCH_SIZE, SQS_BILLING_CHUNK};
use crate::step::note;
use spillway_support::events::{event, size_of_event, FIXED_TIMESTAMP};

// ---------------------------------------------------------------------------------------------
// Figure 4: SQS requests per million events

#[derive(Debug, Clone)]
pub(super) struct SqsCost {
    pub(super) events_per_request: usize,
    /// Billed SendMessageBatch requests per million events, from the packer's output.
    pub(super) send_billed: f64,
    /// Client event bytes per million events / 64 KiB.
    pub(super) floor: f64,
    /// Average SQS messages per request and message body bytes.
    pub(super) messages_per_request: f64,
    pub(super) message_bytes: f64,
    /// Billed ReceiveMessage + DeleteMessageBatch requests per million events.
    pub(super) receive_billed: f64,
    pub(super) delete_billed: f64,
}

pub(super) fn chunks(bytes: usize) -> usize {
    bytes.div_ceil(SQS_BILLING_CHUNK).max(1)
}

/// Event `k` of the sample every figure sends, as the edge enriches it (`key_id`, the edge's
/// location, `received` as its clock), and the bytes the client sent for it.
pub(super) fn sample_event(
    k: usize,
    key_id: &str,
    received: chrono::DateTime<chrono::Utc>,
) -> Result<(Event, usize)> {
    let raw = event(k, size_of_event(k), FIXED_TIMESTAMP, None);
    let data = spillway_shared::RawJson::from_json(&raw["data"].to_string())
        .map_err(|e| anyhow!("event {k}'s data: {e:?}"))?;
    let e = Event {
        id: uuid::Uuid::from_u128(0x0192_f0c1_7a44_7cc3_9e2b_0000_0000_0000 + k as u128),
        event_type: "page_view".into(),
        occurred_at: Some(received),
        received_at: received,
        event_time: None,
        key_id: key_id.into(),
        edge: Some(EdgeInfo {
            colo: Some("FRA".into()),
            country: Some("DE".into()),
            ..Default::default()
        }),
        source: Default::default(),
        data,
    };
    Ok((e, raw.to_string().len()))
}

/// Fails when the packer refuses the sample: a packing failure must not read as zero sends.
pub(super) fn sqs_costs() -> Result<Vec<SqsCost>> {
    let limits = BufferLimits::default();
    let received = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(1_795_852_800_000)
        .context("the sample's receive time")?;
    // Enough events that every request size sees the whole 512..2048 size cycle many times.
    const SAMPLE: usize = 2_000;
    // Sealed as the edge seals, with a key id of the longest length a deployment may use.
    let key = spillway_shared::SigningKey::new(&"k".repeat(32), &[b's'; 32])
        .map_err(|e| anyhow!("the bench's envelope key: {e}"))?;
    let mut out = Vec::new();
    for n in [1usize, 10, 100] {
        let mut client_bytes = 0usize;
        let mut send_billed = 0usize;
        let mut messages = Vec::new();
        let mut i = 0usize;
        while i < SAMPLE {
            let events = (i..i + n)
                .map(|k| {
                    let (e, bytes) = sample_event(k, "web", received)?;
                    client_bytes += bytes;
                    Ok(e)
                })
                .collect::<Result<Vec<Event>>>()?;
            let batches = spillway_shared::pack::pack(&events, &limits, &key)
                .map_err(|e| anyhow!("the packer refused {n}-event request {}: {e:?}", i / n))?;
            for b in &batches {
                send_billed += chunks(b.body_bytes());
                messages.extend(b.entries.iter().map(|e| e.body.len()));
            }
            i += n;
        }
        let per_million = 1_000_000.0 / i as f64;
        // The consumer receives BATCH_SIZE messages per ReceiveMessage (billed by the 64 KiB
        // chunks of the bodies it returns) and deletes them with one DeleteMessageBatch.
        let mut receive_billed = 0usize;
        let mut delete_billed = 0usize;
        for group in messages.chunks(CONSUMER_BATCH_SIZE) {
            receive_billed += chunks(group.iter().sum());
            delete_billed += 1;
        }
        let requests = i / n;
        let c = SqsCost {
            events_per_request: n,
            send_billed: send_billed as f64 * per_million,
            floor: client_bytes as f64 / SQS_BILLING_CHUNK as f64 * per_million,
            messages_per_request: messages.len() as f64 / requests as f64,
            message_bytes: messages.iter().sum::<usize>() as f64 / messages.len() as f64,
            receive_billed: receive_billed as f64 * per_million,
            delete_billed: delete_billed as f64 * per_million,
        };
        out.push(c);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The local SQS's own speed, measured in the run

/// The local SQS's messages per second in `SendMessageBatch` calls of 10 messages of 1 KiB from
/// one client, timed into a scratch queue of their own (so that nothing the pipeline's poller
/// could receive is left behind), then deleted.
pub(super) fn sqs_rate(stack: &Stack) -> Result<f64> {
    const CALLS: usize = 50;
    let url = stack
        .sqs
        .create_queue(&format!("{}-rate", stack.config.queue_name), &[])?;
    let body = "x".repeat(1024);
    let entries: Vec<_> = (0..10)
        .map(|i| json!({"Id": i.to_string(), "MessageBody": body}))
        .collect();
    let request = json!({"QueueUrl": url, "Entries": entries});
    let start = Instant::now();
    let result = (0..CALLS).try_for_each(|_| {
        let answer = stack.sqs.call("SendMessageBatch", &request)?;
        if answer["Failed"].as_array().is_some_and(|f| !f.is_empty()) {
            bail!("SendMessageBatch failed entries: {answer}");
        }
        Ok(())
    });
    let secs = start.elapsed().as_secs_f64();
    stack
        .sqs
        .call("DeleteQueue", &json!({ "QueueUrl": url }))
        .context("deleting the scratch queue")?;
    result?;
    let rate = (CALLS * 10) as f64 / secs;
    note(&format!(
        "{CALLS} SendMessageBatch calls of 10 x 1 KiB in {secs:.2} s: {rate:.0} messages/s ({})",
        stack.config.sqs
    ));
    Ok(rate)
}

// ---------------------------------------------------------------------------------------------
// Emptying the local SQS between runs

/// Empties the local SQS between runs, so each starts on an empty queue (moto slows down as a
/// queue grows), on either local server. Call it with the poller stopped. Requests the edge
/// still had in flight when the load stopped may land after a purge, so it purges again until
/// the main queue and the DLQ are both seen empty, for at most 15 s.
///
/// With the Kinesis buffer there is no queue to empty (a stream cannot be purged, and its
/// records are the next figure's backlog only if a poller reads them): nothing is done.
pub(super) fn purge(stack: &Stack) -> Result<()> {
    if stack.env.buffer == BufferKind::Kinesis {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        purge_once(stack)?;
        std::thread::sleep(Duration::from_millis(500));
        let mut left = 0;
        for url in [&stack.env.sqs_queue_url, &stack.env.sqs_dlq_url] {
            let (visible, in_flight) = stack.sqs.depth(url)?;
            left += visible + in_flight;
        }
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the queues still hold {left} messages 15 s after purging");
        }
    }
}

fn purge_once(stack: &Stack) -> Result<()> {
    match stack.config.sqs {
        SqsKind::Moto => reset_moto(stack),
        // LocalStack allows `PurgeQueue` again at once (moto and real SQS only once a minute).
        SqsKind::LocalStack => {
            for url in [&stack.env.sqs_queue_url, &stack.env.sqs_dlq_url] {
                stack
                    .sqs
                    .call("PurgeQueue", &json!({ "QueueUrl": url }))
                    .with_context(|| format!("PurgeQueue {url}"))?;
            }
            Ok(())
        }
    }
}

/// moto's `PurgeQueue` is allowed once a minute, so instead its state is reset and the two
/// queues are made again with the same names, hence the same URLs the edge and poller use.
fn reset_moto(stack: &Stack) -> Result<()> {
    ureq::post(&format!("{}/moto-api/reset", stack.env.sqs_endpoint))
        .send_bytes(&[])
        .context("resetting moto")?;
    let cfg = &stack.config;
    let dlq_url = stack
        .sqs
        .create_queue(&format!("{}-dlq", cfg.queue_name), &[])?;
    let dlq_arn = stack
        .sqs
        .attributes(&dlq_url)?
        .remove("QueueArn")
        .context("DLQ has no QueueArn")?;
    let redrive = json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": cfg.max_receive_count.to_string(),
    })
    .to_string();
    let url = stack.sqs.create_queue(
        &cfg.queue_name,
        &[
            ("RedrivePolicy", redrive),
            ("VisibilityTimeout", cfg.visibility_timeout_secs.to_string()),
        ],
    )?;
    if url != stack.env.sqs_queue_url || dlq_url != stack.env.sqs_dlq_url {
        bail!("queues came back with other URLs: {url}, {dlq_url}");
    }
    Ok(())
}
