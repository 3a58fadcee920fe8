//! Collector protocols: the bodies that existing analytics SDKs send (Segment's tracking API,
//! PostHog's capture API), read into messages that become ordinary [`Event`]s.
//!
//! Each protocol module turns a decoded request body into a [`Body`]: the key found in the
//! body (if any) and every message, checked against the protocol's own limits and Spillway's
//! [`RequestLimits`]. A body with any invalid message yields the problems of all of them and no
//! messages, so the edge enqueues nothing. What this module never does: HTTP (routes, headers,
//! compression are the edge's), and it never rewrites a message beyond taking its key out: the
//! message as the SDK wrote it, less every member where the protocol carries an ingest key
//! ([`KeyPlaces`]), is the event's `data`.
//!
//! # Mapping
//! - `type`: the event name for Segment `track` and every PostHog capture, otherwise the
//!   Segment message type (`identify`, `page`, `screen`, `group`, `alias`).
//! - `occurred_at`: the message's `timestamp`, under the same window as `/v1/events`; a
//!   historical import ([`Window::Historical`]: PostHog's `historical_migration` batches,
//!   Segment batches sent to `/v1/import`) may be older, back to the Unix epoch.
//! - event time ([`crate::event_time`]): corrected with the message's send time, its own
//!   (`sentAt`, `sent_at`) else its body's, and PostHog's `offset`; never for a historical
//!   import, nor for a PostHog event with `properties.$ignore_sent_at: true`. An unreadable send
//!   time or offset is ignored (the peers accept such messages), and stays in `data`.
//! - `data`: the whole message, less its key ([`without_keys`]).
//! - `source`: the protocol ([`Source`]).
//! - id: see [`message_id`].

mod keys;
pub mod posthog;
pub mod segment;

use std::borrow::Cow;

pub(crate) use keys::one_key;
pub use keys::{without_keys, KeyPlaces};

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::event::{
    describe, fields_of, kind_of, Code, EdgeInfo, Event, FieldsError, Problem, Source,
    MAX_TIMESTAMP_AHEAD, MAX_TIMESTAMP_BEHIND, MAX_TYPE_CHARS,
};
use crate::event_time::{self, offset_of_json, sent_at_of_json, SendTime};
use crate::ids::{IdSource, ID_NAMESPACE};
use crate::json::{check_storable, RawJson};
use crate::limits::RequestLimits;
use crate::timestamp;

/// A message's own id, as the SDK sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageId {
    /// A UUID in the hyphenated form (not nil, not max): kept as the row id.
    Uuid(Uuid),
    /// Any other string (Segment's `messageId` is free-form): the row id derives from it.
    Text(String),
    /// No id: named as `/v1/events` names an event without one.
    Absent,
}

impl MessageId {
    fn from_text(s: String) -> MessageId {
        match Uuid::try_parse(&s) {
            Ok(u) if s.len() == 36 && !u.is_nil() && !u.is_max() => MessageId::Uuid(u),
            _ => MessageId::Text(s),
        }
    }
}

/// One valid message of a collector request.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    /// The whole message as sent, key included: ids derived from a message's text use this,
    /// so they are what they were before keys were taken out of `data`.
    pub raw: &'a str,
    /// What is stored: `raw` less its key ([`without_keys`]); `raw` itself when it holds none.
    pub data: Cow<'a, str>,
    pub event_type: String,
    pub occurred_at: Option<DateTime<Utc>>,
    /// What the message (or its body) says about when it was sent.
    pub send: SendTime,
    pub id: MessageId,
}

/// A collector request's body, read: its key and messages. (Not a batch: group commit, a
/// queue's batch call and Segment's `/v1/batch` call are other things.)
#[derive(Debug, Clone, PartialEq)]
pub struct Body<'a> {
    /// The ingest key named in the body (`writeKey`, `api_key`, `token`), when there is one.
    pub key: Option<String>,
    pub messages: Vec<Message<'a>>,
}

/// Why a collector body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyProblem {
    /// The body is not JSON, or not of the protocol's shape.
    Malformed(String),
    /// The body holds no message.
    Empty,
    /// The body names two different keys (in the body, or in different messages).
    ConflictingKeys,
    /// The body is larger than the protocol allows (bytes), after decompression.
    TooLarge { limit: usize },
    /// Messages were refused, in message order (never empty).
    Invalid(Vec<Problem>),
}

/// The id of a message whose own id is not a UUID: a v5 UUID of the protocol, the key id and
/// the message id, length-prefixed so that no two different inputs make the same name.
///
/// Only these: never the message's content, because an SDK's retry of the same message is not
/// byte-identical (Segment's `sentAt`, PostHog's `sent_at` and `$lib` fields change), and it
/// must still find the row of the first attempt. The key id keeps tenants apart.
pub fn message_id(source: Source, key_id: &str, id: &str) -> Uuid {
    let name = format!(
        "collector:{}:{}:{key_id}{}:{id}",
        source.as_str(),
        key_id.len(),
        id.len()
    );
    Uuid::new_v5(&ID_NAMESPACE, name.as_bytes())
}

/// The row id of every message, in order: the message's UUID, an id derived from its
/// non-UUID id ([`message_id`]), or for messages without one, what `fallback` gives (as on
/// `/v1/events`: from `Idempotency-Key`, else a UUIDv7).
///
/// Two messages with the same id are one message sent twice (an SDK retried inside one
/// batch): both are accepted and stored once, as a resend would be.
pub fn assign_ids(
    messages: &[Message<'_>],
    source: Source,
    key_id: &str,
    fallback: &IdSource<'_>,
    random: &mut dyn FnMut() -> [u8; 10],
) -> Vec<Uuid> {
    messages
        .iter()
        .enumerate()
        .map(|(index, m)| match &m.id {
            MessageId::Uuid(u) => *u,
            MessageId::Text(t) => message_id(source, key_id, t),
            MessageId::Absent => fallback.id_for(None, index, m.raw, random),
        })
        .collect()
}

/// The events to queue: one per message, with the ids from [`assign_ids`], each with its
/// event time when that is not what the consumer derives ([`event_time::carried`]).
pub fn into_events(
    messages: Vec<Message<'_>>,
    ids: &[Uuid],
    source: Source,
    received_at: DateTime<Utc>,
    key_id: &str,
    edge: Option<EdgeInfo>,
) -> Vec<Event> {
    messages
        .into_iter()
        .zip(ids)
        .map(|(m, &id)| Event {
            id,
            event_type: m.event_type,
            occurred_at: m.occurred_at,
            received_at,
            event_time: event_time::carried(received_at, m.occurred_at, &m.send),
            key_id: key_id.to_owned(),
            edge: edge.clone(),
            source,
            // Every message passed `check_storable`, and taking members out keeps it JSON.
            data: RawJson::from_json(&m.data).unwrap_or_default(),
        })
        .collect()
}

/// A message's top-level fields, each as written.
pub(crate) struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Fields<'a> {
    pub(crate) fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// A field that must be a string when present.
    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.get() == "null" => Ok(None),
            Some(v) => serde_json::from_str::<String>(v.get())
                .map(Some)
                .map_err(|_| format!("`{name}` must be a string, not {}", kind_of(v.get()))),
        }
    }

    /// Whether a field holds a non-empty string or a number (what SDKs use for user ids).
    pub(crate) fn has_id(&self, name: &str) -> bool {
        match self.get(name).map(RawValue::get) {
            Some(v) if v.starts_with('"') => {
                serde_json::from_str::<String>(v).is_ok_and(|s| !s.is_empty())
            }
            Some(v) => kind_of(v) == "a number",
            None => false,
        }
    }
}

/// The fields of a JSON object, or why it is none.
pub(crate) fn object_fields(raw: &str) -> Result<Fields<'_>, String> {
    match fields_of(raw) {
        Ok(f) => Ok(Fields(f)),
        Err(FieldsError::NotObject(kind)) => Err(format!("must be a JSON object, not {kind}")),
        Err(FieldsError::Json(e)) => Err(e),
    }
}

/// The elements of a JSON array, each as written.
pub(crate) fn array_elements(raw: &str) -> Result<Vec<&str>, String> {
    serde_json::from_str::<Vec<&RawValue>>(raw)
        .map(|v| v.into_iter().map(RawValue::get).collect())
        .map_err(|e| e.to_string())
}

/// What a protocol reads from a message beyond the common checks.
pub(crate) struct Kind {
    /// The `type` column: an event name or a message type.
    pub event_type: String,
    /// The field holding the message's id.
    pub id_field: &'static str,
}

/// Which client timestamps a body may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Live traffic: as on `/v1/events`, at most [`MAX_TIMESTAMP_BEHIND`] before and
    /// [`MAX_TIMESTAMP_AHEAD`] after the edge clock (a wrong client clock is refused, not stored).
    Live,
    /// A historical import, marked so by its protocol: any time from the Unix epoch up to
    /// [`MAX_TIMESTAMP_AHEAD`] after the edge clock. Only the lower bound moves: an import's
    /// events are old, never in the future.
    Historical,
}

impl Window {
    fn earliest(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Window::Live => now - MAX_TIMESTAMP_BEHIND,
            Window::Historical => DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    fn describe(self) -> String {
        match self {
            Window::Live => format!(
                "`timestamp` must be within {} days before and {} day after the server clock",
                MAX_TIMESTAMP_BEHIND.num_days(),
                MAX_TIMESTAMP_AHEAD.num_days()
            ),
            Window::Historical => format!(
                "`timestamp` of a historical import must be after 1970-01-01T00:00:00Z and at most {} day after the server clock",
                MAX_TIMESTAMP_AHEAD.num_days()
            ),
        }
    }
}

/// Where a protocol's messages say when they were sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendFields {
    /// The member naming the send time, in a message and in the body around it.
    pub sent_at: &'static str,
    /// The body's own send time (a batch's), when it names a valid one.
    pub batch_sent_at: Option<DateTime<Utc>>,
    /// PostHog's `offset` and `properties.$ignore_sent_at` are read.
    pub posthog: bool,
}

impl SendFields {
    /// The send-time fields of a body whose top-level members are `top`.
    pub(crate) fn of_body(sent_at: &'static str, top: Option<&Fields<'_>>, posthog: bool) -> Self {
        SendFields {
            sent_at,
            batch_sent_at: top
                .and_then(|t| t.get(sent_at))
                .and_then(|v| sent_at_of_json(v.get())),
            posthog,
        }
    }

    /// What one message says about its send, within a body of `window`.
    fn read(&self, fields: &Fields<'_>, window: Window) -> SendTime {
        let offset_ms = if self.posthog {
            fields.get("offset").and_then(|v| offset_of_json(v.get()))
        } else {
            None
        };
        let ignored = self.posthog
            && fields
                .get("properties")
                .and_then(|p| object_fields(p.get()).ok())
                .and_then(|p| p.get("$ignore_sent_at"))
                .is_some_and(|v| v.get() == "true");
        if window == Window::Historical || ignored {
            return SendTime {
                sent_at: None,
                offset_ms,
                correctable: false,
            };
        }
        let own = fields
            .get(self.sent_at)
            .and_then(|v| sent_at_of_json(v.get()));
        SendTime::live(own.or(self.batch_sent_at), offset_ms)
    }
}

/// Checks one message, common to every protocol: size, shape, what PostgreSQL can store,
/// timestamp (within `window` of `now`, the edge clock) and id, and takes its key out of what
/// is stored (`keys`); `kind` reads the protocol's own fields (and names their problems).
pub(crate) fn check_message<'a>(
    raw: &'a str,
    index: usize,
    max_bytes: usize,
    limits: &RequestLimits,
    (now, window, send): (DateTime<Utc>, Window, &SendFields),
    keys: &KeyPlaces,
    kind: impl FnOnce(&Fields<'a>) -> Result<Kind, (String, String)>,
) -> Result<Message<'a>, Vec<Problem>> {
    if raw.len() > max_bytes {
        return Err(vec![Problem::at(
            Code::EventTooLarge,
            index,
            None,
            format!(
                "message {index} is {} bytes; the limit is {max_bytes} bytes",
                raw.len()
            ),
        )]);
    }
    let fields = object_fields(raw).map_err(|m| {
        vec![Problem::at(
            Code::InvalidEvent,
            index,
            None,
            format!("message {index} {m}"),
        )]
    })?;
    // The message object is level 1: it is what `data` holds.
    if let Err(issue) = check_storable(raw, "message", 1, limits.max_json_depth) {
        let (code, message) = describe(issue, limits);
        return Err(vec![Problem::at(code, index, None, message)]);
    }
    // Refused rather than stored with its key, should the text ever not read as it did above.
    let data = without_keys(raw, keys).map_err(|issue| {
        let (code, message) = describe(issue, limits);
        vec![Problem::at(code, index, None, message)]
    })?;
    let mut problems = Vec::new();
    let kind = match kind(&fields) {
        Ok(k) => Some(k),
        Err((field, message)) => {
            let code = if fields.get(&field).is_none() {
                Code::MissingField
            } else {
                Code::InvalidField
            };
            problems.push(Problem::at(code, index, Some(&field), message));
            None
        }
    };
    let occurred_at = match fields.string("timestamp") {
        Ok(None) => None,
        Ok(Some(s)) => match timestamp::parse(&s) {
            Some(Ok(t)) if t > now + MAX_TIMESTAMP_AHEAD || t < window.earliest(now) => {
                problems.push(Problem::at(
                    Code::TimestampOutOfRange,
                    index,
                    Some("timestamp"),
                    window.describe(),
                ));
                None
            }
            Some(Ok(t)) => Some(t),
            _ => {
                problems.push(Problem::at(
                    Code::InvalidField,
                    index,
                    Some("timestamp"),
                    "`timestamp` must be an ISO 8601 / RFC 3339 date-time such as 2026-11-28T08:00:00.000Z"
                        .to_owned(),
                ));
                None
            }
        },
        Err(m) => {
            problems.push(Problem::at(Code::InvalidField, index, Some("timestamp"), m));
            None
        }
    };
    let id = match kind.as_ref().map(|k| k.id_field) {
        Some(id_field) => match fields.string(id_field) {
            Ok(Some(s)) if !s.is_empty() => MessageId::from_text(s),
            Ok(_) => MessageId::Absent,
            Err(m) => {
                problems.push(Problem::at(Code::InvalidField, index, Some(id_field), m));
                MessageId::Absent
            }
        },
        None => MessageId::Absent,
    };
    match kind {
        Some(kind) if problems.is_empty() => Ok(Message {
            raw,
            data,
            event_type: kind.event_type,
            occurred_at,
            send: send.read(&fields, window),
            id,
        }),
        _ => Err(problems),
    }
}

/// An event name as the `type` column holds it: refused when empty or holding NUL, cut to
/// [`MAX_TYPE_CHARS`] characters when longer (the whole name stays in `data`).
pub(crate) fn event_name(name: &str, field: &str) -> Result<String, (String, String)> {
    if name.is_empty() {
        return Err((field.to_owned(), format!("`{field}` must not be empty")));
    }
    if name.contains('\0') {
        return Err((
            field.to_owned(),
            format!("`{field}` must not contain U+0000 (NUL): PostgreSQL cannot store it"),
        ));
    }
    Ok(name.chars().take(MAX_TYPE_CHARS).collect())
}

/// Checks every message with `check`, collecting the problems of all of them.
pub(crate) fn check_all<'a>(
    raws: &[&'a str],
    limits: &RequestLimits,
    mut check: impl FnMut(&'a str, usize) -> Result<Message<'a>, Vec<Problem>>,
) -> Result<Vec<Message<'a>>, BodyProblem> {
    if raws.is_empty() {
        return Err(BodyProblem::Empty);
    }
    if raws.len() > limits.max_events_per_request {
        return Err(BodyProblem::Invalid(vec![Problem {
            code: Code::TooManyEvents,
            message: format!(
                "{} messages in one request; the limit is {}",
                raws.len(),
                limits.max_events_per_request
            ),
            index: None,
            field: None,
        }]));
    }
    let mut problems = Vec::new();
    let mut messages = Vec::with_capacity(raws.len());
    for (index, raw) in raws.iter().enumerate() {
        match check(raw, index) {
            Ok(m) => messages.push(m),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(messages)
    } else {
        Err(BodyProblem::Invalid(problems))
    }
}

#[cfg(test)]
mod tests;
