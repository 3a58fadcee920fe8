//! The event model of the public API, its validation rules, and the enriched event that
//! travels through SQS.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::limits::Limits;

/// Longest accepted `type`, in characters.
pub const MAX_TYPE_CHARS: usize = 128;
/// A client `timestamp` may be at most this far ahead of the edge clock (clock skew).
pub const MAX_TIMESTAMP_AHEAD: Duration = Duration::days(1);
/// A client `timestamp` may be at most this far behind the edge clock (offline buffering).
pub const MAX_TIMESTAMP_BEHIND: Duration = Duration::days(365);
/// Longest `key_id` an ingest key may have; it is stored with every event.
pub const MAX_KEY_ID_CHARS: usize = 64;

/// What went wrong, as the stable machine-readable `code` of the HTTP error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The body is not JSON (or an NDJSON line is not).
    InvalidJson,
    /// An event is not a JSON object.
    InvalidEvent,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or an unacceptable value.
    InvalidField,
    /// A top-level field the API does not know.
    UnknownField,
    /// Two events of one request carry the same `id`.
    DuplicateId,
    /// `timestamp` outside the accepted window around the edge clock.
    TimestampOutOfRange,
    /// JSON nested deeper than [`Limits::max_json_depth`].
    TooDeep,
    /// One event larger than [`Limits::max_event_bytes`].
    EventTooLarge,
    /// More events than [`Limits::max_events_per_request`].
    TooManyEvents,
}

impl Code {
    /// The code as it appears in error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidJson => "invalid_json",
            Code::InvalidEvent => "invalid_event",
            Code::MissingField => "missing_field",
            Code::InvalidField => "invalid_field",
            Code::UnknownField => "unknown_field",
            Code::DuplicateId => "duplicate_id",
            Code::TimestampOutOfRange => "timestamp_out_of_range",
            Code::TooDeep => "too_deep",
            Code::EventTooLarge => "event_too_large",
            Code::TooManyEvents => "too_many_events",
        }
    }
}

/// One validation problem: which event (`index`), which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub code: Code,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    fn at(code: Code, index: usize, field: Option<&str>, message: String) -> Self {
        Self {
            code,
            message,
            index: Some(index),
            field: field.map(str::to_owned),
        }
    }
}

/// A client event that passed validation, before the edge gives it an id and enriches it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    /// The client's `id`, when it sent one.
    pub id: Option<Uuid>,
    pub event_type: String,
    /// The client's `timestamp`, normalised to UTC.
    pub occurred_at: Option<DateTime<Utc>>,
    pub data: Map<String, Value>,
}

/// Where the edge saw the request, when the runtime says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EdgeInfo {
    /// Cloudflare data centre (IATA code), e.g. `FRA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colo: Option<String>,
    /// ISO 3166-1 alpha-2 country of the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// An accepted event as it travels in the SQS envelope and lands in the `events` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The client's clock (`occurred_at` column), absent when the client sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    /// The edge clock when the request arrived.
    pub received_at: DateTime<Utc>,
    /// Which ingest key sent it (never the key itself).
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeInfo>,
    #[serde(default)]
    pub data: Map<String, Value>,
}

impl ValidEvent {
    /// Turns a validated event into the event that is queued.
    pub fn enrich(
        self,
        id: Uuid,
        received_at: DateTime<Utc>,
        key_id: &str,
        edge: Option<EdgeInfo>,
    ) -> Event {
        Event {
            id,
            event_type: self.event_type,
            occurred_at: self.occurred_at,
            received_at,
            key_id: key_id.to_owned(),
            edge,
            data: self.data,
        }
    }
}

/// Nesting depth of a JSON value: scalars are 0, `{}` and `[]` are 1.
pub fn json_depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Validates one event, reporting every problem found in it.
///
/// `raw_len` is the size of the event as the client sent it, `now` the edge clock.
pub fn validate_event(
    value: Value,
    raw_len: usize,
    index: usize,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<ValidEvent, Vec<Problem>> {
    if raw_len > limits.max_event_bytes {
        return Err(vec![Problem::at(
            Code::EventTooLarge,
            index,
            None,
            format!(
                "event is {raw_len} bytes; the limit is {} bytes",
                limits.max_event_bytes
            ),
        )]);
    }
    let Value::Object(map) = value else {
        return Err(vec![Problem::at(
            Code::InvalidEvent,
            index,
            None,
            format!("an event must be a JSON object, not {}", kind(&value)),
        )]);
    };
    let mut problems = Vec::new();
    let mut event_type = None;
    let mut id = None;
    let mut occurred_at = None;
    let mut data = Map::new();
    let mut push = |code, field: &str, message: String| {
        problems.push(Problem::at(code, index, Some(field), message));
    };
    for (field, v) in map {
        match field.as_str() {
            "type" => match v {
                Value::String(s) => {
                    let chars = s.chars().count();
                    if chars == 0 || chars > MAX_TYPE_CHARS {
                        push(
                            Code::InvalidField,
                            "type",
                            format!("`type` must be 1 to {MAX_TYPE_CHARS} characters, got {chars}"),
                        );
                    } else {
                        event_type = Some(s);
                    }
                }
                other => push(
                    Code::InvalidField,
                    "type",
                    format!("`type` must be a string, not {}", kind(&other)),
                ),
            },
            "id" => match v.as_str().map(Uuid::try_parse) {
                Some(Ok(u)) if !u.is_nil() && !u.is_max() => id = Some(u),
                Some(Ok(_)) => push(
                    Code::InvalidField,
                    "id",
                    "`id` must not be the nil or max UUID".to_owned(),
                ),
                _ => push(
                    Code::InvalidField,
                    "id",
                    "`id` must be a UUID string such as 0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10"
                        .to_owned(),
                ),
            },
            "timestamp" => match v.as_str().map(DateTime::parse_from_rfc3339) {
                Some(Ok(t)) => {
                    let t = t.with_timezone(&Utc);
                    if t > now + MAX_TIMESTAMP_AHEAD || t < now - MAX_TIMESTAMP_BEHIND {
                        push(
                            Code::TimestampOutOfRange,
                            "timestamp",
                            format!(
                                "`timestamp` must be within {} days before and {} day after the server clock",
                                MAX_TIMESTAMP_BEHIND.num_days(),
                                MAX_TIMESTAMP_AHEAD.num_days()
                            ),
                        );
                    } else {
                        occurred_at = Some(t);
                    }
                }
                _ => push(
                    Code::InvalidField,
                    "timestamp",
                    "`timestamp` must be an RFC 3339 string such as 2026-11-28T08:00:00Z"
                        .to_owned(),
                ),
            },
            "data" => match v {
                Value::Object(m) => {
                    // The event object is level 1, `data` level 2, and so on down.
                    let depth = 2 + m.values().map(json_depth).max().unwrap_or(0);
                    if depth > limits.max_json_depth {
                        push(
                            Code::TooDeep,
                            "data",
                            format!(
                                "event nests {depth} levels deep; the limit is {}",
                                limits.max_json_depth
                            ),
                        );
                    } else {
                        data = m;
                    }
                }
                other => push(
                    Code::InvalidField,
                    "data",
                    format!("`data` must be a JSON object, not {}", kind(&other)),
                ),
            },
            other => push(
                Code::UnknownField,
                other,
                format!("unknown field `{other}`; allowed: type, id, timestamp, data"),
            ),
        }
    }
    if event_type.is_none() && !problems.iter().any(|p| p.field.as_deref() == Some("type")) {
        problems.push(Problem::at(
            Code::MissingField,
            index,
            Some("type"),
            "`type` is required".to_owned(),
        ));
    }
    match event_type {
        Some(event_type) if problems.is_empty() => Ok(ValidEvent {
            id,
            event_type,
            occurred_at,
            data,
        }),
        _ => Err(problems),
    }
}

/// Validates the events of one request: the count, each event, and that client ids are unique.
///
/// Each item is the parsed event and its size as sent. Every problem is reported, in event
/// order; a request with any problem must enqueue nothing.
pub fn validate_events(
    items: Vec<(Value, usize)>,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Vec<ValidEvent>, Vec<Problem>> {
    if items.len() > limits.max_events_per_request {
        return Err(vec![Problem {
            code: Code::TooManyEvents,
            message: format!(
                "{} events in one request; the limit is {}",
                items.len(),
                limits.max_events_per_request
            ),
            index: None,
            field: None,
        }]);
    }
    let mut problems = Vec::new();
    let mut valid = Vec::with_capacity(items.len());
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for (index, (value, raw_len)) in items.into_iter().enumerate() {
        match validate_event(value, raw_len, index, limits, now) {
            Ok(event) => {
                if let Some(id) = event.id {
                    if let Some(first) = seen.insert(id, index) {
                        problems.push(Problem::at(
                            Code::DuplicateId,
                            index,
                            Some("id"),
                            format!("`id` {id} is also used by event {first}"),
                        ));
                    }
                }
                valid.push(event);
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(valid)
    } else {
        Err(problems)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
