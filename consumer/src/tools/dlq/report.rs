//! What the tool prints about a dead letter: one line for `list`, the whole body for `peek`,
//! and why it failed where the body tells; for a Kinesis record the handler dead-lettered
//! (`spillway.source=kinesis`), also its stream, shard, sequence number, partition key and the
//! handler's reason, from its message attributes ([`crate::dead_letter`]).
//!
//! Bodies are anyone's text (whoever could send to the queue): everything printed goes
//! through [`printable`], so no control character of a body reaches the terminal.

use std::borrow::Cow;
use std::fmt;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};

use crate::dead_letter::{AttrValue, DeadLetter, NotADeadLetter};
use chrono::{DateTime, SecondsFormat};
use spillway_shared::{decode, open, DecodeError, Keyring, SealError};
use uuid::Uuid;

/// Event ids shown on a report line; `peek` shows them all.
const IDS_ON_A_LINE: usize = 3;

/// Why a dead letter failed, as far as its body tells.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The body is not a Spillway envelope this build reads: it fails on every delivery.
    Undecodable(DecodeError),
    /// The body is an envelope, but its seal does not verify under the keys given: not sent
    /// by the edge, altered, or sealed with a key the consumer does not hold. Never stored.
    Unverified(SealError),
    /// The body decodes (and its seal verifies, where `checked`), so it failed later:
    /// PostgreSQL refused it, or every delivery met a database that was down until
    /// `maxReceiveCount` ran out. The consumer's log line for its message id tells which.
    Decodes { ids: Vec<Uuid>, checked: bool },
}

impl Reason {
    /// Why `body` failed, checking its seal where `keys` are given (`ENVELOPE_KEYS`).
    pub fn of(body: &str, keys: Option<&Keyring>) -> Self {
        let decoded = match keys {
            Some(keys) => open(body, keys),
            None => decode(body),
        };
        match decoded {
            Ok(events) => Reason::Decodes {
                ids: events.iter().map(|e| e.id).collect(),
                checked: keys.is_some(),
            },
            Err(DecodeError::Seal(e)) => Reason::Unverified(e),
            Err(e) => Reason::Undecodable(e),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Undecodable(e) => write!(f, "undecodable: {e}"),
            Reason::Unverified(e) => write!(f, "unverified, never stored: {e}"),
            Reason::Decodes { ids, checked } => {
                let how = if *checked {
                    "decodes fine, seal verified"
                } else {
                    "decodes fine, seal not checked (set ENVELOPE_KEYS to check it)"
                };
                write!(
                    f,
                    "{how} (failed in the database or was retried out): {} event{}: ",
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
    /// The body's size; for a Kinesis dead letter, its data's.
    pub body_bytes: usize,
    pub reason: Reason,
    /// A Kinesis record's dead letter (its origin, and its data decoded when the body is
    /// base64), or why its attributes do not read as one; `None` for an SQS dead letter.
    pub kinesis: Option<Result<DeadLetter, NotADeadLetter>>,
}

/// A message's attribute `name` as [`crate::dead_letter`] reads it.
fn attribute(msg: &Message, name: &str) -> Option<AttrValue> {
    let value = msg.message_attributes()?.get(name)?;
    if value.data_type().starts_with("Binary") {
        value
            .binary_value()
            .map(|b| AttrValue::Binary(b.as_ref().to_vec()))
    } else {
        value.string_value().map(|s| AttrValue::Text(s.to_owned()))
    }
}

/// The Kinesis dead letter `msg` carries, if it is one (see [`MessageInfo::kinesis`]).
pub fn kinesis_dead_letter(msg: &Message) -> Option<Result<DeadLetter, NotADeadLetter>> {
    DeadLetter::from_message(msg.body().unwrap_or_default(), &|n| attribute(msg, n)).transpose()
}

impl MessageInfo {
    pub fn of(msg: &Message, keys: Option<&Keyring>) -> Self {
        let attr = |name: MessageSystemAttributeName| {
            msg.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
        };
        let kinesis = kinesis_dead_letter(msg);
        // A Kinesis record's data may have been sent base64: judge the data itself.
        let (data, bytes) = match &kinesis {
            Some(Ok(letter)) => (
                String::from_utf8_lossy(&letter.data).into_owned(),
                letter.data.len(),
            ),
            _ => {
                let body = msg.body().unwrap_or_default();
                (body.to_owned(), body.len())
            }
        };
        let body = data.as_str();
        Self {
            message_id: msg.message_id().unwrap_or_default().to_owned(),
            receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|v: i64| u64::try_from(v).ok()),
            sent_ms: attr(MessageSystemAttributeName::SentTimestamp),
            first_receive_ms: attr(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp),
            body_bytes: bytes,
            reason: Reason::of(body, keys),
            kinesis,
        }
    }

    /// One line: id, receives, sent, first receive, size, reason; printable as it is.
    pub fn line(&self) -> String {
        let count = self
            .receive_count
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        let line = format!(
            "{}  receives {}  sent {}  first received {}  {} bytes  {}",
            self.message_id,
            count,
            time(self.sent_ms),
            time(self.first_receive_ms),
            self.body_bytes,
            self.reason
        );
        let line = match &self.kinesis {
            None => line,
            Some(Ok(k)) => format!(
                "{line}  kinesis stream {} shard {} sequence {} partition key {}: {}",
                k.stream_arn,
                or_unknown(&k.shard_id),
                or_unknown(&k.sequence_number),
                k.partition_key,
                or_unknown(&k.reason)
            ),
            Some(Err(e)) => format!("{line}  kinesis dead letter that cannot be redriven: {e}"),
        };
        printable(&line).into_owned()
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "?"
    } else {
        s
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC, `?` when unknown.
fn time(ms: Option<i64>) -> String {
    ms.and_then(DateTime::from_timestamp_millis).map_or_else(
        || "?".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

/// What `peek` prints for one message: its line, every event id, and the body, escaped
/// ([`printable`]).
pub fn peek_text(msg: &Message, keys: Option<&Keyring>) -> String {
    let info = MessageInfo::of(msg, keys);
    let mut out = info.line();
    if let Reason::Decodes { ids, .. } = &info.reason {
        out.push_str("\n  event ids:");
        for id in ids {
            out.push_str("\n    ");
            out.push_str(&id.to_string());
        }
    }
    out.push_str("\n  body: ");
    out.push_str(&printable(msg.body().unwrap_or_default()));
    out
}

/// `text` with every character a terminal could act on written as an escape instead: the C0
/// and C1 controls and DEL (`ESC` clears screens, sets titles, and worse), and the invisible
/// characters that reorder or hide text (bidirectional controls, zero-width characters, line
/// and paragraph separators). They become `\u{1b}`; everything else stays as it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{200B}'..='\u{200F}'
                    | '\u{2028}'..='\u{202E}'
                    | '\u{2060}'..='\u{2069}'
                    | '\u{FEFF}'
            )
    }
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}
