//! The SQS message envelope: `{"v":1,"events":[...]}`.
//!
//! One SQS message carries several events, which keeps the message count (and SQS's per-request
//! bill) low. The version field comes first so a consumer can refuse a format it does not know
//! instead of misreading it.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::event::Event;

/// The envelope version this crate writes and reads.
pub const ENVELOPE_VERSION: u64 = 1;

pub(crate) const PREFIX: &[u8] = b"{\"v\":1,\"events\":[";
pub(crate) const SUFFIX: &[u8] = b"]}";

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u64,
    pub events: Vec<Event>,
}

/// Why a message body is not a usable envelope. Every variant is permanent: retrying the same
/// body cannot succeed, so the consumer sends it towards the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("body is not JSON: {0}")]
    InvalidJson(String),
    #[error("body has no numeric `v` field")]
    MissingVersion,
    #[error("envelope version {0} is not supported (this build reads version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u64),
    #[error("envelope does not match version {ENVELOPE_VERSION}: {0}")]
    InvalidEnvelope(String),
    #[error("envelope holds no events")]
    Empty,
}

/// Serialises one event as it is embedded in a message body.
///
/// SQS refuses message bodies with characters outside XML's character set. serde_json already
/// escapes control characters; the two non-characters U+FFFE and U+FFFF it leaves raw, so they
/// are escaped here (they only ever occur inside JSON strings, where `\uFFFE` means the same).
pub fn encode_event(event: &Event) -> Result<Vec<u8>, serde_json::Error> {
    // Room for the event's own text and the fields around it, so the writer never regrows.
    let mut json = Vec::with_capacity(event.data.get().len() + event.event_type.len() + 256);
    serde_json::to_writer(&mut json, event)?;
    const FFFE: &[u8] = "\u{FFFE}".as_bytes();
    const FFFF: &[u8] = "\u{FFFF}".as_bytes();
    // Both start with 0xEF, which is rare in text: look for that byte first.
    let has_non_character = memchr::memchr_iter(0xEF, &json)
        .any(|i| matches!(json.get(i..i + 3), Some(w) if w == FFFE || w == FFFF));
    if !has_non_character {
        return Ok(json);
    }
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut i = 0;
    while i < json.len() {
        match json.get(i..i + 3) {
            Some(w) if w == FFFE => {
                out.extend_from_slice(b"\\ufffe");
                i += 3;
            }
            Some(w) if w == FFFF => {
                out.extend_from_slice(b"\\uffff");
                i += 3;
            }
            _ => {
                out.push(json[i]);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Size of a message holding events of the given encoded sizes.
pub(crate) fn message_len(event_lens_sum: usize, count: usize) -> usize {
    PREFIX.len() + event_lens_sum + count.saturating_sub(1) + SUFFIX.len()
}

/// Builds a message body from already encoded events (see [`encode_event`]).
pub fn encode_message<'a>(encoded_events: impl IntoIterator<Item = &'a [u8]>) -> String {
    write_message(Vec::from(PREFIX), encoded_events)
}

/// [`encode_message`] for the packer, which knows the message's size ([`message_len`]): the
/// body is written into one allocation of that size instead of growing as it goes.
pub(crate) fn encode_message_sized(encoded_events: &[Vec<u8>], len: usize) -> String {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(PREFIX);
    write_message(out, encoded_events.iter().map(Vec::as_slice))
}

/// Appends the events and the suffix to `out`, which holds the prefix.
fn write_message<'a>(
    mut out: Vec<u8>,
    encoded_events: impl IntoIterator<Item = &'a [u8]>,
) -> String {
    for (i, e) in encoded_events.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.extend_from_slice(SUFFIX);
    // Every piece is serde_json output or ASCII, hence UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[derive(Deserialize)]
struct VersionProbe {
    v: Option<serde_json::Value>,
}

/// Decodes a message body into its events, refusing versions it does not know.
pub fn decode(body: &str) -> Result<Vec<Event>, DecodeError> {
    let probe: VersionProbe =
        serde_json::from_str(body).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    match probe.v.as_ref().and_then(serde_json::Value::as_u64) {
        None => return Err(DecodeError::MissingVersion),
        Some(ENVELOPE_VERSION) => {}
        Some(other) => return Err(DecodeError::UnsupportedVersion(other)),
    }
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| DecodeError::InvalidEnvelope(e.to_string()))?;
    if envelope.events.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(envelope.events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_version_is_typed() {
        assert_eq!(
            decode(r#"{"v":2,"events":[]}"#),
            Err(DecodeError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn missing_or_odd_version() {
        assert_eq!(decode(r#"{"events":[]}"#), Err(DecodeError::MissingVersion));
        assert_eq!(decode(r#"{"v":"1"}"#), Err(DecodeError::MissingVersion));
        assert_eq!(decode(r#"{"v":-1}"#), Err(DecodeError::MissingVersion));
    }

    #[test]
    fn not_json() {
        assert!(matches!(decode("hello"), Err(DecodeError::InvalidJson(_))));
        assert!(matches!(decode("[1,2]"), Err(DecodeError::InvalidJson(_))));
    }

    #[test]
    fn empty_and_malformed_envelopes() {
        assert_eq!(decode(r#"{"v":1,"events":[]}"#), Err(DecodeError::Empty));
        assert!(matches!(
            decode(r#"{"v":1,"events":[{"type":"x"}]}"#),
            Err(DecodeError::InvalidEnvelope(_))
        ));
    }
}
