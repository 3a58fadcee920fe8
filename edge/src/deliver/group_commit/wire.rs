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
//!
//! An isolate that gathered several requests sends them as a bundle ([`encode_bundle`]): a
//! line `{"bundle":1,"parts":[n,...]}` with each submission's byte length, then the
//! submissions; the answer is then a JSON array of answers in the same order. The header's
//! `waited_ms` says how long the request already gathered in its isolate.

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
    #[serde(default)]
    waited_ms: u64,
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

/// One submission, whole (its `waited_ms` included).
fn encode_one(s: &Submission) -> Vec<u8> {
    encode_header(
        Header {
            v: WIRE_VERSION,
            group: s.group.clone(),
            wait_ms: s.wait_ms,
            direct: s.direct,
            waited_ms: s.waited_ms,
            ids: s.events.iter().map(|e| e.id).collect(),
            sizes: s.events.iter().map(|e| e.text.len()).collect(),
        },
        &s.events,
    )
}

/// The first line of a bundle: the byte length of each submission that follows it.
#[derive(Serialize, Deserialize)]
struct BundleHeader {
    bundle: u32,
    parts: Vec<usize>,
}

/// The version of a bundle (several submissions in one Durable Object request, gathered by
/// one isolate, [`super::Gatherer`]).
const BUNDLE_VERSION: u32 = 1;

/// Several submissions in one body: a header line with each one's length, then each one as
/// [`decode_submission`] reads it.
pub fn encode_bundle(submissions: &[Submission]) -> Vec<u8> {
    let parts: Vec<Vec<u8>> = submissions.iter().map(encode_one).collect();
    let header = BundleHeader {
        bundle: BUNDLE_VERSION,
        parts: parts.iter().map(Vec::len).collect(),
    };
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    for part in parts {
        out.extend_from_slice(&part);
    }
    out
}

/// A body from an edge: a bundle ([`encode_bundle`]), or one submission (sent alone); `true`
/// with a bundle, whose answer is then [`encode_answers`] rather than [`encode_answer`].
pub fn decode_bundle(bytes: &[u8]) -> Result<(Vec<Submission>, bool), WireError> {
    let split = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(WireError::NoHeader)?;
    let Ok(header) = serde_json::from_slice::<BundleHeader>(&bytes[..split]) else {
        return decode_submission(bytes).map(|s| (vec![s], false));
    };
    if header.bundle != BUNDLE_VERSION {
        return Err(WireError::Version(header.bundle));
    }
    let mut rest = &bytes[split + 1..];
    let mut out = Vec::with_capacity(header.parts.len());
    for len in header.parts {
        if len > rest.len() {
            return Err(WireError::Sizes);
        }
        let (part, tail) = rest.split_at(len);
        out.push(decode_submission(part)?);
        rest = tail;
    }
    if !rest.is_empty() || out.is_empty() {
        return Err(WireError::Sizes);
    }
    Ok((out, true))
}

/// The answers to a bundle, in its order.
pub fn encode_answers(answers: &[Answer]) -> Vec<u8> {
    serde_json::to_vec(answers).unwrap_or_default()
}

pub fn decode_answers(bytes: &[u8]) -> Result<Vec<Answer>, WireError> {
    serde_json::from_slice(bytes).map_err(|e| WireError::Report(e.to_string()))
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
        waited_ms: 0,
        ids: events.iter().map(|e| e.id).collect(),
        sizes: events.iter().map(|e| e.text.len()).collect(),
    };
    encode_header(header, events)
}

fn encode_header(header: Header, events: &[EncodedEvent]) -> Vec<u8> {
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
        waited_ms: header.waited_ms,
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
