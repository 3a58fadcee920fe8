//! The local poller: plays Lambda's SQS event source mapping, so the consumer runs (and is
//! tested) outside AWS with the same handler.
//!
//! Like the mapping, each of `MAXIMUM_CONCURRENCY` workers long-polls the queue, gathers up to
//! `BATCH_SIZE` records (waiting at most `MAXIMUM_BATCHING_WINDOW_IN_SECONDS` once the first
//! arrived), builds the `SqsEvent` JSON Lambda would deliver, calls [`handle`], deletes the
//! records that succeeded and leaves the failed ones to reappear after the visibility timeout
//! (and to reach the DLQ after the queue's `maxReceiveCount`). Each worker owns its own store,
//! hence its own database connection: connections = `MAXIMUM_CONCURRENCY`, as on Lambda.
//!
//! On shutdown a worker finishes the batch it is handling, deletes what succeeded and stops. A
//! receive that is still waiting is abandoned; if SQS had already handed it messages they stay
//! invisible for one visibility timeout and then come back, none is lost.
//!
//! [`lambda_record`], [`sqs_event`] and [`to_delete`] are pure and unit-tested; the rest moves
//! bytes between SQS and the handler.

use std::collections::HashSet;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::PollerConfig;
use crate::handler::{handle, Clock, Deps};
use crate::store::EventStore;

/// Lambda's invocation payload limit is 6 MB; stop gathering well before it.
const MAX_GATHER_BYTES: usize = 5 * 1024 * 1024;

/// Identity of the queue, as it appears in every record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub url: String,
    pub arn: String,
    pub region: String,
    /// The queue's own visibility timeout in seconds, when SQS said.
    pub visibility_timeout: Option<u64>,
}

#[derive(Debug, Error)]
pub enum PollerError {
    #[error("cannot read the attributes of {url}: {reason}")]
    QueueAttributes { url: String, reason: String },
    #[error("a worker stopped abnormally: {0}")]
    Worker(String),
}

/// One SDK message as the record JSON Lambda delivers (field names and shapes as AWS
/// documents them: string attributes, `stringListValues`/`binaryListValues` always present,
/// binary values in base64).
pub fn lambda_record(msg: &Message, queue: &QueueInfo) -> Value {
    let mut attributes = Map::new();
    if let Some(attrs) = msg.attributes() {
        let mut sorted: Vec<_> = attrs.iter().collect();
        sorted.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        for (name, value) in sorted {
            attributes.insert(name.as_str().to_owned(), json!(value));
        }
    }
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut message_attributes = Map::new();
    if let Some(attrs) = msg.message_attributes() {
        for (name, v) in attrs {
            let mut a = Map::new();
            if let Some(s) = v.string_value() {
                a.insert("stringValue".into(), json!(s));
            }
            if let Some(b) = v.binary_value() {
                a.insert("binaryValue".into(), json!(b64(b.as_ref())));
            }
            a.insert("stringListValues".into(), json!(v.string_list_values()));
            let binaries: Vec<String> = v
                .binary_list_values()
                .iter()
                .map(|b| b64(b.as_ref()))
                .collect();
            a.insert("binaryListValues".into(), json!(binaries));
            a.insert("dataType".into(), json!(v.data_type()));
            message_attributes.insert(name.clone(), Value::Object(a));
        }
    }
    let mut record = Map::new();
    record.insert("messageId".into(), json!(msg.message_id()));
    record.insert("receiptHandle".into(), json!(msg.receipt_handle()));
    record.insert("body".into(), json!(msg.body()));
    record.insert("attributes".into(), Value::Object(attributes));
    record.insert(
        "messageAttributes".into(),
        Value::Object(message_attributes),
    );
    record.insert("md5OfBody".into(), json!(msg.md5_of_body()));
    if let Some(md5) = msg.md5_of_message_attributes() {
        record.insert("md5OfMessageAttributes".into(), json!(md5));
    }
    record.insert("eventSource".into(), json!("aws:sqs"));
    record.insert("eventSourceARN".into(), json!(queue.arn));
    record.insert("awsRegion".into(), json!(queue.region));
    Value::Object(record)
}

/// The `SqsEvent` JSON for a batch, and the typed event the handler takes (parsed from that
/// JSON, exactly as the Lambda runtime would).
pub fn sqs_event(messages: &[Message], queue: &QueueInfo) -> (Value, SqsEvent) {
    let records: Vec<Value> = messages.iter().map(|m| lambda_record(m, queue)).collect();
    let json = json!({ "Records": records });
    // Every value above is a string, map or list of the right shape, so this cannot fail;
    // should it ever, the records are parsed one by one and an unparsable one is left to
    // time out (and reach the DLQ) rather than fail its neighbours.
    let event = serde_json::from_value::<SqsEvent>(json.clone()).unwrap_or_else(|_| {
        let mut e = SqsEvent::default();
        e.records = records
            .iter()
            .filter_map(|r| serde_json::from_value::<SqsMessage>(r.clone()).ok())
            .collect();
        e
    });
    (json, event)
}

/// `(message id, receipt handle)` of the messages to delete after the handler answered.
///
/// As Lambda does, a response naming an empty, unknown or missing message id fails the whole
/// batch: nothing is deleted.
pub fn to_delete<'a>(
    messages: &'a [Message],
    response: &SqsBatchResponse,
) -> Vec<(&'a str, &'a str)> {
    let ids: HashSet<&str> = messages.iter().filter_map(Message::message_id).collect();
    let failed: HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    if failed.iter().any(|f| !ids.contains(f)) {
        return Vec::new();
    }
    messages
        .iter()
        .filter_map(|m| Some((m.message_id()?, m.receipt_handle()?)))
        .filter(|(id, _)| !failed.contains(id))
        .collect()
}

/// Adds freshly received messages to a batch being gathered. A message received again
/// (its visibility timeout ran out while the window was open) replaces its older copy: only
/// the newest receipt handle can still delete it.
pub fn merge_received(batch: &mut Vec<Message>, received: Vec<Message>) {
    for m in received {
        let again = batch
            .iter()
            .position(|b| b.message_id().is_some() && b.message_id() == m.message_id());
        match again {
            Some(i) => {
                warn!(
                    message_id = m.message_id().unwrap_or(""),
                    "message received twice while gathering: its visibility timeout is shorter than the batching window"
                );
                batch[i] = m;
            }
            None => batch.push(m),
        }
    }
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
}

impl WorkerStats {
    fn add(&mut self, o: WorkerStats) {
        self.invocations += o.invocations;
        self.records += o.records;
        self.deleted += o.deleted;
        self.failed += o.failed;
    }
}

/// Gathers one batch: long-polls until a first message, then keeps receiving until the batch
/// is full, the window has passed or shutdown was asked. Returns what it has.
async fn gather(
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
async fn delete(client: &aws_sdk_sqs::Client, queue: &QueueInfo, items: &[(&str, &str)]) -> u64 {
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

/// One worker: gather, handle, delete, until shutdown.
pub async fn run_worker<S, C>(
    worker: usize,
    client: aws_sdk_sqs::Client,
    config: PollerConfig,
    queue: QueueInfo,
    deps: Deps<S, C>,
    mut shutdown: watch::Receiver<bool>,
) -> WorkerStats
where
    S: EventStore,
    C: Clock,
{
    let mut stats = WorkerStats::default();
    while !*shutdown.borrow() {
        let messages = match gather(&client, &config, &queue, &mut shutdown).await {
            Ok(m) => m,
            Err(e) => {
                warn!(worker, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receive failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        // From here the batch is in flight: it is finished even if shutdown is asked.
        stats.invocations += 1;
        let request_id = format!("poller-{worker}-{}", stats.invocations);
        let (_, event) = sqs_event(&messages, &queue);
        let outcome = handle(&deps, &event, &request_id).await;
        println!("{}", outcome.emf);
        let items = to_delete(&messages, &outcome.response);
        stats.records += messages.len() as u64;
        stats.failed += (messages.len() - items.len()) as u64;
        stats.deleted += delete(&client, &queue, &items).await;
    }
    stats
}

/// Runs `deps.len()` workers (one per store, so one connection each) until `shutdown` turns
/// true, then waits for their in-flight batches.
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
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, d) in deps.into_iter().enumerate() {
        tasks.spawn(run_worker(
            worker,
            client.clone(),
            config.clone(),
            queue.clone(),
            d,
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
        "poller stopped"
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::MessageAttributeValue;

    fn queue() -> QueueInfo {
        QueueInfo {
            url: "http://127.0.0.1:5000/123456789012/q".into(),
            arn: "arn:aws:sqs:us-east-1:123456789012:q".into(),
            region: "us-east-1".into(),
            visibility_timeout: Some(30),
        }
    }

    fn message(id: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("rh-{id}"))
            .body("Test message.")
            .md5_of_body("e4e68fb7bd0e697a0ae8f1bb342846b3")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "1")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1545082649183")
            .attributes(
                MessageSystemAttributeName::SenderId,
                "AIDAIENQZJOLO23YVJ4VO",
            )
            .attributes(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                "1545082649185",
            )
            .build()
    }

    #[test]
    fn record_has_the_shape_lambda_delivers() {
        let mut m = message("059f36b4-87a3-44ab-83d2-661975830a7d");
        m.message_attributes = Some(
            [(
                "myAttribute".to_owned(),
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("myValue")
                    .build()
                    .expect("attr"),
            )]
            .into(),
        );
        m.md5_of_message_attributes = Some("abc".into());
        let got = lambda_record(&m, &queue());
        let expected = json!({
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "receiptHandle": "rh-059f36b4-87a3-44ab-83d2-661975830a7d",
            "body": "Test message.",
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1545082649183",
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "ApproximateFirstReceiveTimestamp": "1545082649185"
            },
            "messageAttributes": {
                "myAttribute": {
                    "stringValue": "myValue",
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": "String"
                }
            },
            "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "md5OfMessageAttributes": "abc",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
            "awsRegion": "us-east-1"
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn the_fixture_and_the_poller_agree_on_the_shape() {
        // The AWS-documented event (tests/fixtures/sqs/) has the same keys at every level
        // as what the poller builds.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/sqs/aws_documented.json"
        );
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
        let documented = &fixture["Records"][0];
        let (built, event) = sqs_event(&[message("a")], &queue());
        let ours = &built["Records"][0];
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            k.sort();
            k
        };
        let mut documented_keys = keys(documented);
        documented_keys.retain(|k| k != "md5OfMessageAttributes");
        assert_eq!(keys(ours), documented_keys);
        assert_eq!(keys(&ours["attributes"]), keys(&documented["attributes"]));
        assert_eq!(event.records.len(), 1);
        assert_eq!(event.records[0].event_source.as_deref(), Some("aws:sqs"));
        assert_eq!(
            event.records[0]
                .attributes
                .get("SentTimestamp")
                .map(String::as_str),
            Some("1545082649183")
        );
    }

    #[test]
    fn binary_attributes_are_base64() {
        let mut m = message("a");
        m.message_attributes = Some(
            [(
                "bin".to_owned(),
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(b"hi".to_vec()))
                    .build()
                    .expect("attr"),
            )]
            .into(),
        );
        let r = lambda_record(&m, &queue());
        assert_eq!(r["messageAttributes"]["bin"]["binaryValue"], "aGk=");
        let (_, e) = sqs_event(&[m], &queue());
        let attr = &e.records[0].message_attributes["bin"];
        assert_eq!(
            attr.binary_value.as_ref().map(|b| b.0.as_slice()),
            Some(&b"hi"[..])
        );
    }

    fn response(ids: &[&str]) -> SqsBatchResponse {
        let mut r = SqsBatchResponse::default();
        for id in ids {
            r.add_failure(*id);
        }
        r
    }

    #[test]
    fn a_message_received_twice_keeps_its_newest_receipt_handle() {
        let mut batch = vec![message("a"), message("b")];
        let mut again = message("a");
        again.receipt_handle = Some("rh-a-2".into());
        merge_received(&mut batch, vec![again, message("c")]);
        let handles: Vec<_> = batch.iter().filter_map(Message::receipt_handle).collect();
        assert_eq!(handles, ["rh-a-2", "rh-b", "rh-c"]);
    }

    #[test]
    fn failures_stay_and_the_rest_is_deleted() {
        let msgs = [message("a"), message("b"), message("c")];
        let del = to_delete(&msgs, &response(&["b"]));
        assert_eq!(del, [("a", "rh-a"), ("c", "rh-c")]);
        assert_eq!(to_delete(&msgs, &response(&[])).len(), 3);
    }

    #[test]
    fn an_unknown_or_empty_failure_id_fails_the_whole_batch() {
        let msgs = [message("a"), message("b")];
        assert!(to_delete(&msgs, &response(&[""])).is_empty());
        assert!(to_delete(&msgs, &response(&["zzz"])).is_empty());
    }
}
