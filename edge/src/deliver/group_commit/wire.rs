//! What the edge and a batcher say to each other over the Durable Object's `fetch`.
//!
//! A submission is one JSON header line (group, wait, the events' ids and sizes) followed by
//! the encoded events back to back: an event's text may hold raw line breaks (the client's
//! own `data`), so the sizes delimit them, not separators. The header also reports how many
//! small requests the isolate sent directly since its last submission (`direct`; absent from
//! older edges, and then 0). The answer is a JSON [`SendReport`] (the request's own share of
//! the group's send) with the batcher's [`Advice`] beside its fields ([`Answer`]); an edge that
//! does not know `advice` ignores it, and one that gets none (an older batcher) learns nothing
//! from the answer ([`super::Advisor::unheard`]).

use serde::{Deserialize, Serialize};
use spillway_shared::EncodedEvent;
use thiserror::Error;
use uuid::Uuid;

use super::advice::Advice;
use super::Submission;
use crate::buffer::SendReport;

/// The first field of every submission header: what the batcher checks before anything else,
/// so an edge and a batcher of different versions (during a deploy) refuse each other cleanly.
const WIRE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    v: u32,
    group: String,
    wait_ms: u64,
    #[serde(default)]
    direct: u32,
    ids: Vec<Uuid>,
    sizes: Vec<usize>,
}

/// A batcher's answer to one request: its report, and what the batcher advises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    #[serde(flatten)]
    pub report: SendReport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<Advice>,
}

/// A submission or answer that is not what this build sends.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("batch submission has no header line")]
    NoHeader,
    #[error("batch submission header: {0}")]
    Header(String),
    #[error("batch submission version {0} is not {WIRE_VERSION}")]
    Version(u32),
    #[error("batch submission sizes do not add up to its body, or cut its text")]
    Sizes,
    #[error("batch answer: {0}")]
    Report(String),
}

pub fn encode_submission(group: &str, wait_ms: u64, events: &[EncodedEvent]) -> Vec<u8> {
    encode_submission_reporting(group, wait_ms, 0, events)
}

/// [`encode_submission`], reporting `direct` small requests the isolate sent directly since its
/// last submission (the batcher counts them in its arrival rate).
pub fn encode_submission_reporting(
    group: &str,
    wait_ms: u64,
    direct: u32,
    events: &[EncodedEvent],
) -> Vec<u8> {
    let header = Header {
        v: WIRE_VERSION,
        group: group.to_owned(),
        wait_ms,
        direct,
        ids: events.iter().map(|e| e.id).collect(),
        sizes: events.iter().map(|e| e.text.len()).collect(),
    };
    let body_len: usize = header.sizes.iter().sum();
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.reserve(body_len + 1);
    out.push(b'\n');
    for e in events {
        out.extend_from_slice(e.text.as_bytes());
    }
    out
}

pub fn decode_submission(bytes: &[u8]) -> Result<Submission, WireError> {
    let split = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(WireError::NoHeader)?;
    let (head, rest) = (&bytes[..split], &bytes[split + 1..]);
    let header: Header =
        serde_json::from_slice(head).map_err(|e| WireError::Header(e.to_string()))?;
    if header.v != WIRE_VERSION {
        return Err(WireError::Version(header.v));
    }
    if header.ids.len() != header.sizes.len()
        || header
            .sizes
            .iter()
            .try_fold(0usize, |a, &s| a.checked_add(s))
            != Some(rest.len())
    {
        return Err(WireError::Sizes);
    }
    let rest = std::str::from_utf8(rest).map_err(|_| WireError::Sizes)?;
    let mut at = 0;
    let mut events = Vec::with_capacity(header.ids.len());
    for (&id, &size) in header.ids.iter().zip(&header.sizes) {
        // A size that cuts a character in two is as wrong as one that misses the end.
        let text = rest.get(at..at + size).ok_or(WireError::Sizes)?;
        at += size;
        events.push(EncodedEvent {
            id,
            text: text.to_owned(),
        });
    }
    Ok(Submission {
        group: header.group,
        wait_ms: header.wait_ms,
        direct: header.direct,
        events,
    })
}

pub fn encode_report(report: &SendReport) -> Vec<u8> {
    serde_json::to_vec(report).unwrap_or_default()
}

pub fn decode_report(bytes: &[u8]) -> Result<SendReport, WireError> {
    serde_json::from_slice(bytes).map_err(|e| WireError::Report(e.to_string()))
}

pub fn encode_answer(answer: &Answer) -> Vec<u8> {
    serde_json::to_vec(answer).unwrap_or_default()
}

pub fn decode_answer(bytes: &[u8]) -> Result<Answer, WireError> {
    serde_json::from_slice(bytes).map_err(|e| WireError::Report(e.to_string()))
}
