//! The dead-letter queue tool behind `spillway-dlq`: list and peek at dead letters with the
//! reason they failed where it can tell, and redrive them to the main queue.
//!
//! Pure and unit-tested: [`parse_args`] (flags and environment), [`MessageInfo`] and its
//! report line, [`Reason`] (a body run through [`spillway_shared::decode`]), [`split_new`]
//! (which received messages a pass has not seen yet) and [`plan_redrive`] (which messages a
//! `SendMessageBatch` answer lets us delete). The async functions only move messages between
//! SQS and those.
//!
//! Looking never deletes: [`scan`] receives with a short visibility timeout, so that one pass
//! sees each message once, and [`restore`] makes what it saw visible again right away.
//! Receiving does count as a receive of the DLQ's copy (its `ApproximateReceiveCount` grows);
//! the DLQ has no redrive policy of its own, so that moves nothing.
//!
//! A redrive sends each message to the main queue first and deletes it from the DLQ only once
//! SQS confirmed the send. A failure in between leaves the message in both queues, which is
//! harmless: events are stored once by id. It does not handle FIFO queues (the template's
//! queues are standard ones).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use chrono::{DateTime, SecondsFormat};
use spillway_shared::{decode, DecodeError};
use thiserror::Error;
use uuid::Uuid;

use crate::config::origin_of;

/// How long a scan keeps what it received hidden, so that the next receive of the same pass
/// returns other messages. [`restore`] ends it early; should the tool die, SQS ends it.
pub const SCAN_VISIBILITY: Duration = Duration::from_secs(30);

/// Long-poll wait of each receive: long enough that an empty answer means an empty queue
/// (a short poll samples only some SQS servers), short enough to end a pass promptly.
const RECEIVE_WAIT_SECONDS: i32 = 1;

/// Event ids shown on a report line; `peek` shows them all.
const IDS_ON_A_LINE: usize = 3;

pub const USAGE: &str = "\
usage: spillway-dlq <list|peek|redrive> [options]

  list       one line per dead letter: message id, receives, sent and first-receive times,
             body size, and why it failed where the body tells
  peek       the same, plus every event id and the body
  redrive    move dead letters back to the main queue (send, then delete from the DLQ)

options:
  --dlq-url URL     the dead-letter queue (default: $SQS_DLQ_URL)
  --queue-url URL   the main queue, for redrive (default: $SQS_QUEUE_URL)
  --max N           at most N messages (default: list 100, peek 10, redrive all)
  --dry-run         redrive: only print what would be moved
  -h, --help        this text

environment: SQS_ENDPOINT (default: the origin of the DLQ URL), AWS_REGION and the AWS
default credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...).
Looking at messages never deletes them; it counts as a receive of the DLQ's copy.";

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    List,
    Peek,
    Redrive { dry_run: bool },
}

/// Everything a run needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqArgs {
    pub command: Command,
    pub dlq_url: String,
    /// Required for `redrive` only.
    pub queue_url: Option<String>,
    /// `SQS_ENDPOINT`, default: the origin of the DLQ URL (as the contract says for
    /// `SQS_QUEUE_URL`).
    pub endpoint: String,
    /// How many messages at most.
    pub max: usize,
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Run(DlqArgs),
}

/// A command line or setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UsageError {
    #[error("no command given")]
    NoCommand,
    #[error("unknown command `{0}`")]
    UnknownCommand(String),
    #[error("unknown option `{0}`")]
    UnknownOption(String),
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("--max: `{0}` is not a whole number of at least 1")]
    BadMax(String),
    #[error("--dry-run only applies to redrive")]
    DryRunWithoutRedrive,
    #[error("{0} is required (or {1})")]
    Missing(&'static str, &'static str),
    #[error("{name}: `{value}` is not an http(s) URL")]
    NotAUrl { name: &'static str, value: String },
    #[error("the main queue and the DLQ are the same queue")]
    SameQueue,
    #[error("{0}: FIFO queues are not supported")]
    Fifo(String),
}

/// Parses the arguments after the program name; flags win over the environment.
pub fn parse_args(
    args: &[String],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, UsageError> {
    let mut command = None;
    let mut dlq_flag = None;
    let mut queue_flag = None;
    let mut max = None;
    let mut dry_run = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &'static str| {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or(UsageError::MissingValue(name))
        };
        match flag {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--dlq-url" => dlq_flag = Some(value("--dlq-url")?),
            "--queue-url" => queue_flag = Some(value("--queue-url")?),
            "--max" => {
                let raw = value("--max")?;
                max = Some(
                    raw.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or(UsageError::BadMax(raw))?,
                );
            }
            "--dry-run" if inline.is_none() => dry_run = true,
            f if f.starts_with('-') => return Err(UsageError::UnknownOption(arg.clone())),
            "list" | "peek" | "redrive" if command.is_none() => command = Some(flag.to_owned()),
            _ => return Err(UsageError::UnknownCommand(arg.clone())),
        }
    }
    let command = match command.as_deref() {
        None => return Err(UsageError::NoCommand),
        Some("list") => Command::List,
        Some("peek") => Command::Peek,
        _ => Command::Redrive { dry_run },
    };
    if dry_run && !matches!(command, Command::Redrive { .. }) {
        return Err(UsageError::DryRunWithoutRedrive);
    }
    let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let url = |name: &'static str, value: String| -> Result<String, UsageError> {
        let value = value.trim().to_owned();
        if origin_of(&value).is_none() {
            return Err(UsageError::NotAUrl { name, value });
        }
        if value.ends_with(".fifo") {
            return Err(UsageError::Fifo(value));
        }
        Ok(value)
    };
    let dlq_url = dlq_flag
        .or_else(|| set("SQS_DLQ_URL"))
        .ok_or(UsageError::Missing("--dlq-url", "SQS_DLQ_URL"))?;
    let dlq_url = url("the DLQ URL", dlq_url)?;
    let queue_url = match queue_flag.or_else(|| set("SQS_QUEUE_URL")) {
        Some(q) => Some(url("the queue URL", q)?),
        None if matches!(command, Command::Redrive { .. }) => {
            return Err(UsageError::Missing("--queue-url", "SQS_QUEUE_URL"))
        }
        None => None,
    };
    if queue_url.as_deref() == Some(dlq_url.as_str()) {
        return Err(UsageError::SameQueue);
    }
    let endpoint = match set("SQS_ENDPOINT") {
        Some(e) => origin_of(&e).ok_or(UsageError::NotAUrl {
            name: "SQS_ENDPOINT",
            value: e,
        })?,
        // `url` above checked that it has one.
        None => origin_of(&dlq_url).unwrap_or_default(),
    };
    let max = max.unwrap_or(match command {
        Command::List => 100,
        Command::Peek => 10,
        Command::Redrive { .. } => usize::MAX,
    });
    Ok(Parsed::Run(DlqArgs {
        command,
        dlq_url,
        queue_url,
        endpoint,
        max,
    }))
}

/// Why a dead letter failed, as far as its body tells.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The body is not a Spillway envelope this build reads: it fails on every delivery.
    Undecodable(DecodeError),
    /// The body decodes, so it failed later: PostgreSQL refused it, or every delivery met a
    /// database that was down until `maxReceiveCount` ran out. The consumer's log line for
    /// its message id tells which.
    Decodes { ids: Vec<Uuid> },
}

impl Reason {
    pub fn of(body: &str) -> Self {
        match decode(body) {
            Ok(events) => Reason::Decodes {
                ids: events.iter().map(|e| e.id).collect(),
            },
            Err(e) => Reason::Undecodable(e),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Undecodable(e) => write!(f, "undecodable: {e}"),
            Reason::Decodes { ids } => {
                write!(
                    f,
                    "decodes fine (failed in the database or was retried out): {} event{}: ",
                    ids.len(),
                    if ids.len() == 1 { "" } else { "s" }
                )?;
                let shown: Vec<String> = ids
                    .iter()
                    .take(IDS_ON_A_LINE)
                    .map(ToString::to_string)
                    .collect();
                f.write_str(&shown.join(", "))?;
                if ids.len() > IDS_ON_A_LINE {
                    write!(f, " and {} more", ids.len() - IDS_ON_A_LINE)?;
                }
                Ok(())
            }
        }
    }
}

/// What the tool shows of one dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageInfo {
    pub message_id: String,
    /// `ApproximateReceiveCount`: deliveries so far, this tool's own receives included.
    pub receive_count: Option<u64>,
    /// `SentTimestamp`: when the edge first sent it (ms since the epoch). SQS keeps it
    /// through the move to the DLQ.
    pub sent_ms: Option<i64>,
    /// `ApproximateFirstReceiveTimestamp` (ms since the epoch).
    pub first_receive_ms: Option<i64>,
    pub body_bytes: usize,
    pub reason: Reason,
}

impl MessageInfo {
    pub fn of(msg: &Message) -> Self {
        let attr = |name: MessageSystemAttributeName| {
            msg.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
        };
        let body = msg.body().unwrap_or_default();
        Self {
            message_id: msg.message_id().unwrap_or_default().to_owned(),
            receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|v: i64| u64::try_from(v).ok()),
            sent_ms: attr(MessageSystemAttributeName::SentTimestamp),
            first_receive_ms: attr(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp),
            body_bytes: body.len(),
            reason: Reason::of(body),
        }
    }

    /// One line: id, receives, sent, first receive, size, reason.
    pub fn line(&self) -> String {
        let count = self
            .receive_count
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        format!(
            "{}  receives {}  sent {}  first received {}  {} bytes  {}",
            self.message_id,
            count,
            time(self.sent_ms),
            time(self.first_receive_ms),
            self.body_bytes,
            self.reason
        )
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC, `?` when unknown.
fn time(ms: Option<i64>) -> String {
    ms.and_then(DateTime::from_timestamp_millis).map_or_else(
        || "?".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

/// What `peek` prints for one message: its line, every event id, and the body.
pub fn peek_text(msg: &Message) -> String {
    let info = MessageInfo::of(msg);
    let mut out = info.line();
    if let Reason::Decodes { ids } = &info.reason {
        out.push_str("\n  event ids:");
        for id in ids {
            out.push_str("\n    ");
            out.push_str(&id.to_string());
        }
    }
    out.push_str("\n  body: ");
    out.push_str(msg.body().unwrap_or_default());
    out
}

/// How one message of a redrive batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// In the main queue under `new_id`; delete it from the DLQ with `receipt_handle`.
    Yes {
        message_id: String,
        new_id: String,
        receipt_handle: String,
    },
    /// Not sent: it stays in the DLQ.
    No { message_id: String, reason: String },
}

/// Matches a `SendMessageBatch` answer to the batch (entry `i` is `batch[i]`, id `m{i}`).
/// Only entries SQS lists as successful may be deleted from the DLQ; one it does not mention
/// at all counts as not sent.
pub fn plan_redrive(
    batch: &[Message],
    successful: &[(String, String)],
    failed: &[(String, String)],
) -> Vec<Sent> {
    batch
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let entry = entry_id(i);
            let message_id = m.message_id().unwrap_or_default().to_owned();
            let ok = successful.iter().find(|(id, _)| *id == entry);
            match (ok, m.receipt_handle()) {
                (Some((_, new_id)), Some(receipt)) => Sent::Yes {
                    message_id,
                    new_id: new_id.clone(),
                    receipt_handle: receipt.to_owned(),
                },
                (Some(_), None) => Sent::No {
                    message_id,
                    reason: "sent, but it has no receipt handle to delete it with".to_owned(),
                },
                (None, _) => Sent::No {
                    message_id,
                    reason: failed.iter().find(|(id, _)| *id == entry).map_or_else(
                        || "SQS did not answer for it".to_owned(),
                        |(_, why)| why.clone(),
                    ),
                },
            }
        })
        .collect()
}

fn entry_id(i: usize) -> String {
    format!("m{i}")
}

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

/// Splits a receive into the messages not seen before (returned, their ids recorded in `ids`)
/// and those seen again, whose newer copy replaces the one in `known` (only the newest receipt
/// handle can still change its visibility or delete it).
pub fn split_new(
    received: Vec<Message>,
    ids: &mut HashSet<String>,
    known: &mut [Message],
) -> Vec<Message> {
    let mut new = Vec::new();
    for m in received {
        let id = m.message_id().unwrap_or_default().to_owned();
        if ids.insert(id) {
            new.push(m);
        } else if let Some(old) = known.iter_mut().find(|o| o.message_id() == m.message_id()) {
            *old = m;
        }
    }
    new
}

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

/// What a redrive did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// Dry run: the messages that would be moved.
    pub would_move: Vec<String>,
    /// `(DLQ message id, id in the main queue)`.
    pub moved: Vec<(String, String)>,
    /// `(DLQ message id, why)`: still in the DLQ only.
    pub not_moved: Vec<(String, String)>,
    /// `(DLQ message id, why)`: sent to the main queue but still in the DLQ too.
    pub not_deleted: Vec<(String, String)>,
}

/// Keeps the attributes a sender may set: SQS refuses the reserved list fields.
fn sendable(
    attrs: Option<&std::collections::HashMap<String, MessageAttributeValue>>,
) -> Option<std::collections::HashMap<String, MessageAttributeValue>> {
    let attrs = attrs?;
    let kept: std::collections::HashMap<_, _> = attrs
        .iter()
        .filter_map(|(k, v)| {
            MessageAttributeValue::builder()
                .data_type(v.data_type())
                .set_string_value(v.string_value().map(str::to_owned))
                .set_binary_value(v.binary_value().cloned())
                .build()
                .ok()
                .map(|v| (k.clone(), v))
        })
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// Moves up to `max` messages from `dlq` to `queue`, 10 at a time; with `dry_run`, only
/// receives them, reports them and makes them visible again.
pub async fn redrive(
    client: &aws_sdk_sqs::Client,
    dlq: &str,
    queue: &str,
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
        let mut deletes = Vec::new();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;
    use std::collections::HashMap;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    const DLQ: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/spillway-dlq";
    const QUEUE: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/spillway";

    fn run(a: &str, pairs: &[(&str, &str)]) -> Result<DlqArgs, UsageError> {
        match parse_args(&args(a), &env(pairs))? {
            Parsed::Run(r) => Ok(r),
            Parsed::Help => panic!("help for `{a}`"),
        }
    }

    #[test]
    fn flags_win_over_the_environment() {
        let r = run(
            &format!("list --dlq-url {DLQ}"),
            &[("SQS_DLQ_URL", "http://127.0.0.1:5000/1/other")],
        )
        .expect("valid");
        assert_eq!(r.command, Command::List);
        assert_eq!(r.dlq_url, DLQ);
        assert_eq!(r.endpoint, "https://sqs.eu-west-1.amazonaws.com");
        assert_eq!(r.max, 100);
        assert_eq!(r.queue_url, None);

        let r = run(
            "redrive --dry-run --max=5",
            &[
                ("SQS_DLQ_URL", "http://127.0.0.1:5000/1/q-dlq"),
                ("SQS_QUEUE_URL", "http://127.0.0.1:5000/1/q"),
                ("SQS_ENDPOINT", "http://localhost:4566/"),
            ],
        )
        .expect("valid");
        assert_eq!(r.command, Command::Redrive { dry_run: true });
        assert_eq!(r.queue_url.as_deref(), Some("http://127.0.0.1:5000/1/q"));
        assert_eq!(r.endpoint, "http://localhost:4566");
        assert_eq!(r.max, 5);

        let r = run(&format!("peek --dlq-url={DLQ}"), &[]).expect("valid");
        assert_eq!((r.command, r.max), (Command::Peek, 10));
        let r = run(&format!("redrive --dlq-url {DLQ} --queue-url {QUEUE}"), &[]).expect("valid");
        assert_eq!(r.max, usize::MAX);
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        let dlq = [("SQS_DLQ_URL", DLQ)];
        // A command line, its environment, the error.
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], UsageError);
        let cases: &[Case] = &[
            ("", &dlq, UsageError::NoCommand),
            ("show", &dlq, UsageError::UnknownCommand("show".into())),
            ("list list", &dlq, UsageError::UnknownCommand("list".into())),
            (
                "list --all",
                &dlq,
                UsageError::UnknownOption("--all".into()),
            ),
            ("list --max", &dlq, UsageError::MissingValue("--max")),
            ("list --max 0", &dlq, UsageError::BadMax("0".into())),
            ("list --max ten", &dlq, UsageError::BadMax("ten".into())),
            ("list --dry-run", &dlq, UsageError::DryRunWithoutRedrive),
            ("list", &[], UsageError::Missing("--dlq-url", "SQS_DLQ_URL")),
            (
                "redrive",
                &dlq,
                UsageError::Missing("--queue-url", "SQS_QUEUE_URL"),
            ),
            (
                "list --dlq-url spillway-dlq",
                &[],
                UsageError::NotAUrl {
                    name: "the DLQ URL",
                    value: "spillway-dlq".into(),
                },
            ),
            (
                "redrive",
                &[("SQS_DLQ_URL", DLQ), ("SQS_QUEUE_URL", DLQ)],
                UsageError::SameQueue,
            ),
            (
                "list --dlq-url http://127.0.0.1:5000/1/q-dlq.fifo",
                &[],
                UsageError::Fifo("http://127.0.0.1:5000/1/q-dlq.fifo".into()),
            ),
        ];
        for (line, pairs, expected) in cases {
            assert_eq!(run(line, pairs).as_ref(), Err(expected), "`{line}`");
        }
        assert_eq!(
            parse_args(&args("redrive --help"), &env(&[])),
            Ok(Parsed::Help)
        );
    }

    fn message(id: &str, body: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("rh-{id}"))
            .body(body)
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "11")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1795852799123")
            .attributes(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                "1795852800000",
            )
            .build()
    }

    fn envelope(ids: &[u128]) -> String {
        let events: Vec<_> = ids
            .iter()
            .map(|n| spillway_shared::Event {
                id: Uuid::from_u128(*n),
                event_type: "page_view".into(),
                occurred_at: None,
                received_at: DateTime::from_timestamp_millis(1_795_852_799_000).unwrap_or_default(),
                key_id: "web".into(),
                edge: None,
                source: Default::default(),
                data: spillway_shared::RawJson::empty_object(),
            })
            .collect();
        let batches =
            spillway_shared::pack(&events, &spillway_shared::Limits::default()).expect("pack");
        batches[0].entries[0].body.clone()
    }

    #[test]
    fn the_report_line_names_the_reason() {
        let poison = MessageInfo::of(&message("m-1", "this is not JSON"));
        assert!(matches!(
            poison.reason,
            Reason::Undecodable(DecodeError::InvalidJson(_))
        ));
        let line = poison.line();
        assert!(
            line.starts_with(
                "m-1  receives 11  sent 2026-11-28T07:59:59.123Z  \
                 first received 2026-11-28T08:00:00.000Z  16 bytes  undecodable: body is not JSON: "
            ),
            "{line}"
        );

        let version = MessageInfo::of(&message("m-2", r#"{"v":2,"events":[]}"#));
        assert!(version.line().ends_with(
            "undecodable: envelope version 2 is not supported (this build reads version 1)"
        ));

        let body = envelope(&[1, 2, 3, 4, 5]);
        let good = MessageInfo::of(&message("m-3", &body));
        assert_eq!(good.body_bytes, body.len());
        assert!(
            good.line().ends_with(
                "decodes fine (failed in the database or was retried out): 5 events: \
                 00000000-0000-0000-0000-000000000001, 00000000-0000-0000-0000-000000000002, \
                 00000000-0000-0000-0000-000000000003 and 2 more"
            ),
            "{}",
            good.line()
        );
        let one = MessageInfo::of(&message("m-4", &envelope(&[7])));
        assert!(one.line().ends_with(
            "decodes fine (failed in the database or was retried out): 1 event: \
             00000000-0000-0000-0000-000000000007"
        ));

        let bare = MessageInfo::of(&Message::builder().message_id("m-5").body("{}").build());
        assert!(
            bare.line()
                .starts_with("m-5  receives ?  sent ?  first received ?  2 bytes  undecodable: "),
            "{}",
            bare.line()
        );
    }

    #[test]
    fn peek_shows_every_event_id_and_the_body() {
        let body = envelope(&[1, 2, 3, 4]);
        let text = peek_text(&message("m-1", &body));
        for n in 1..=4u128 {
            assert!(
                text.contains(&format!("\n    {}", Uuid::from_u128(n))),
                "{text}"
            );
        }
        assert!(text.ends_with(&format!("\n  body: {body}")));
    }

    #[test]
    fn only_what_sqs_confirmed_is_deleted() {
        let batch = [
            message("a", "x"),
            message("b", "y"),
            message("c", "z"),
            Message::builder().message_id("d").body("w").build(),
        ];
        let ok = [
            ("m0".to_owned(), "new-a".to_owned()),
            ("m3".to_owned(), "new-d".to_owned()),
        ];
        let failed = [("m1".to_owned(), "InvalidMessageContents: bad".to_owned())];
        let plan = plan_redrive(&batch, &ok, &failed);
        assert_eq!(
            plan,
            [
                Sent::Yes {
                    message_id: "a".into(),
                    new_id: "new-a".into(),
                    receipt_handle: "rh-a".into()
                },
                Sent::No {
                    message_id: "b".into(),
                    reason: "InvalidMessageContents: bad".into()
                },
                Sent::No {
                    message_id: "c".into(),
                    reason: "SQS did not answer for it".into()
                },
                Sent::No {
                    message_id: "d".into(),
                    reason: "sent, but it has no receipt handle to delete it with".into()
                },
            ]
        );
    }

    #[test]
    fn a_message_seen_again_is_not_new_and_keeps_its_newest_receipt_handle() {
        let mut ids = HashSet::new();
        let mut known = split_new(
            vec![message("a", "x"), message("b", "y")],
            &mut ids,
            &mut [],
        );
        assert_eq!(known.len(), 2);
        let mut again = message("a", "x");
        again.receipt_handle = Some("rh-a-2".into());
        let new = split_new(vec![again, message("c", "z")], &mut ids, &mut known);
        let new_ids: Vec<_> = new.iter().filter_map(Message::message_id).collect();
        assert_eq!(new_ids, ["c"]);
        let handles: Vec<_> = known.iter().filter_map(Message::receipt_handle).collect();
        assert_eq!(handles, ["rh-a-2", "rh-b"]);
        // Seen before but not kept (moved already): dropped, not new again.
        assert!(split_new(vec![message("b", "y")], &mut ids, &mut []).is_empty());
    }

    #[test]
    fn only_plain_attributes_are_sent_again() {
        let attrs: HashMap<String, MessageAttributeValue> = [(
            "trace".to_owned(),
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("abc")
                .set_string_list_values(Some(vec![]))
                .build()
                .expect("attr"),
        )]
        .into();
        let kept = sendable(Some(&attrs)).expect("kept");
        assert_eq!(kept["trace"].string_value(), Some("abc"));
        assert_eq!(kept["trace"].string_list_values(), &[] as &[String]);
        assert!(kept["trace"].string_list_values.is_none());
        assert_eq!(sendable(Some(&HashMap::new())), None);
        assert_eq!(sendable(None), None);
    }
}
