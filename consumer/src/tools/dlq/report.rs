//! What the tool prints about a dead letter: one line for `list`, the whole body for `peek`,
//! and why it failed where the body tells.

use std::fmt;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use chrono::{DateTime, SecondsFormat};
use spillway_shared::{decode, DecodeError};
use uuid::Uuid;

/// Event ids shown on a report line; `peek` shows them all.
const IDS_ON_A_LINE: usize = 3;

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
