//! The event model of the public API, its validation rules, and the enriched event that
//! travels through SQS.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::ids::IdSource;
use crate::json::{check_storable, JsonIssue, RawJson};
use crate::limits::RequestLimits;
use crate::timestamp;

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
    /// Two events of one request would have the same `id` (sent or derived).
    DuplicateId,
    /// `timestamp` outside the accepted window around the edge clock.
    TimestampOutOfRange,
    /// JSON nested deeper than [`RequestLimits::max_json_depth`].
    TooDeep,
    /// One event larger than [`RequestLimits::max_event_bytes`].
    EventTooLarge,
    /// More events than [`RequestLimits::max_events_per_request`].
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
    pub(crate) fn at(code: Code, index: usize, field: Option<&str>, message: String) -> Self {
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
    /// The client's `timestamp` in UTC, rounded to microseconds as PostgreSQL rounds it.
    pub occurred_at: Option<DateTime<Utc>>,
    /// The client's `data` as written (`{}` when absent).
    pub data: RawJson,
}

/// What the edge knows of a request that the client did not send: where Cloudflare saw it
/// (`request.cf`) and, only where the deployment asks for it (`IP_POLICY`), the client's
/// address. The consumer stores the whole of it in the `context` column, and `colo` and
/// `country` in `edge_colo` and `edge_country` as well.
///
/// Which fields are filled is the edge's `EDGE_CONTEXT`; every field is optional and left out
/// of the envelope when empty, so an envelope written before the other fields existed (only
/// `colo` and `country`) reads unchanged, and writes byte for byte as it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EdgeInfo {
    /// Cloudflare data centre (IATA code), e.g. `FRA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colo: Option<String>,
    /// ISO 3166-1 alpha-2 country of the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// First-level region (state, province), e.g. `Texas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ISO 3166-2 code of the region, e.g. `TX`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// Continent code, e.g. `EU`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continent: Option<String>,
    /// IANA time zone, e.g. `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Degrees north, as Cloudflare estimates them from the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Degrees east.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// Autonomous system number of the client's network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// Name of that network's operator, e.g. `Deutsche Telekom AG`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_organization: Option<String>,
    /// Whether the country is in the European Union.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_eu_country: Option<bool>,
    /// The client's address, whole or truncated, only where `IP_POLICY` asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

impl EdgeInfo {
    /// Whether no field is filled (such an `edge` is left out of the event).
    pub fn is_empty(&self) -> bool {
        *self == EdgeInfo::default()
    }
}

/// Which wire protocol an event came in by (the `source` column).
///
/// In the envelope only when it is not [`Source::Spillway`], so envelopes of `/v1/events`
/// are byte-identical to those written before collectors existed, and consumers built before
/// then read them unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Spillway's own `POST /v1/events`.
    #[default]
    Spillway,
    /// Segment's HTTP tracking API (`/v1/batch`, `/v1/track`, ...).
    Segment,
    /// PostHog's capture API (`/batch`, `/capture`, `/e`, `/i/v0/e`).
    Posthog,
}

impl Source {
    /// The name stored in the `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Spillway => "spillway",
            Source::Segment => "segment",
            Source::Posthog => "posthog",
        }
    }

    /// Whether this is the default, left out of the envelope.
    pub fn is_spillway(&self) -> bool {
        *self == Source::Spillway
    }
}

/// An accepted event as it travels in the SQS envelope and lands in the `events` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The client's clock (`occurred_at` column), absent when the client sent none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::timestamp::serialize_rfc3339_opt"
    )]
    pub occurred_at: Option<DateTime<Utc>>,
    /// The edge clock when the request arrived.
    #[serde(serialize_with = "crate::timestamp::serialize_rfc3339")]
    pub received_at: DateTime<Utc>,
    /// When the event happened in the edge's clock, corrected with the client's send time
    /// ([`crate::event_time`]); only when it differs from `occurred_at` (else `received_at`),
    /// which the consumer stores when this is absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::timestamp::serialize_rfc3339_opt"
    )]
    pub event_time: Option<DateTime<Utc>>,
    /// Which ingest key sent it (never the key itself).
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeInfo>,
    /// Which protocol it came in by; absent from the envelope for `/v1/events`.
    #[serde(default, skip_serializing_if = "Source::is_spillway")]
    pub source: Source,
    /// The client's `data`, exactly as written.
    #[serde(default)]
    pub data: RawJson,
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
            event_time: None,
            key_id: key_id.to_owned(),
            edge,
            source: Source::Spillway,
            data: self.data,
        }
    }
}

/// Validates one event as the client wrote it (`raw`, one well-formed JSON value), reporting
/// every problem found in it. `now` is the edge clock.
///
/// `data` is kept as written; only what PostgreSQL could not store as sent is refused.
pub fn validate_event(
    raw: &str,
    index: usize,
    limits: &RequestLimits,
    now: DateTime<Utc>,
) -> Result<ValidEvent, Vec<Problem>> {
    if raw.len() > limits.max_event_bytes {
        return Err(vec![Problem::at(
            Code::EventTooLarge,
            index,
            None,
            format!(
                "event is {} bytes; the limit is {} bytes",
                raw.len(),
                limits.max_event_bytes
            ),
        )]);
    }
    let fields = match fields_of(raw) {
        Ok(fields) => fields,
        Err(FieldsError::NotObject(kind)) => {
            return Err(vec![Problem::at(
                Code::InvalidEvent,
                index,
                None,
                format!("an event must be a JSON object, not {kind}"),
            )])
        }
        Err(FieldsError::Json(message)) => {
            return Err(vec![Problem::at(Code::InvalidJson, index, None, message)])
        }
    };
    let mut problems = Vec::new();
    let mut event_type = None;
    let mut id = None;
    let mut occurred_at = None;
    let mut data = None;
    let mut push = |code, field: &str, message: String| {
        problems.push(Problem::at(code, index, Some(field), message));
    };
    for (field, value) in fields {
        let v = value.get();
        match field.as_ref() {
            "type" => match serde_json::from_str::<String>(v) {
                Ok(s) => {
                    let chars = s.chars().count();
                    if chars == 0 || chars > MAX_TYPE_CHARS {
                        push(
                            Code::InvalidField,
                            "type",
                            format!("`type` must be 1 to {MAX_TYPE_CHARS} characters, got {chars}"),
                        );
                    } else if s.contains('\0') {
                        push(
                            Code::InvalidField,
                            "type",
                            "`type` must not contain U+0000 (NUL): PostgreSQL cannot store it"
                                .to_owned(),
                        );
                    } else {
                        event_type = Some(s);
                    }
                }
                Err(_) => push(
                    Code::InvalidField,
                    "type",
                    format!("`type` must be a string, not {}", kind_of(v)),
                ),
            },
            // Only the hyphenated form (either case): the braced, URN and 32-digit forms the
            // uuid crate also reads are not what PostgreSQL or most clients call a UUID.
            "id" => match serde_json::from_str::<String>(v)
                .map(|s| Uuid::try_parse(&s).ok().filter(|_| s.len() == 36))
            {
                Ok(Some(u)) if !u.is_nil() && !u.is_max() => id = Some(u),
                Ok(Some(_)) => push(
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
            "timestamp" => match json_str(v).and_then(|s| timestamp::parse(&s)) {
                Some(Ok(t)) => {
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
                Some(Err(timestamp::LeapSecond)) => push(
                    Code::InvalidField,
                    "timestamp",
                    "`timestamp` has second 60: accepted only as a whole leap second, 23:59:60 UTC on the last day of a month"
                        .to_owned(),
                ),
                None => push(
                    Code::InvalidField,
                    "timestamp",
                    "`timestamp` must be an RFC 3339 string such as 2026-11-28T08:00:00Z"
                        .to_owned(),
                ),
            },
            "data" if !v.starts_with('{') => push(
                Code::InvalidField,
                "data",
                format!("`data` must be a JSON object, not {}", kind_of(v)),
            ),
            // The event object is level 1, `data` level 2, and so on down.
            // `value` came from the JSON parser: kept as it is, not parsed again.
            "data" => match check_storable(v, "data", 2, limits.max_json_depth) {
                Ok(()) => data = Some(RawJson::from_raw(value)),
                Err(issue) => {
                    let (code, message) = describe(issue, limits);
                    push(code, "data", message);
                }
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
            data: data.unwrap_or_default(),
        }),
        _ => Err(problems),
    }
}

/// A JSON string's value, borrowed when it holds no escapes; `None` when `raw` is no string.
fn json_str(raw: &str) -> Option<Cow<'_, str>> {
    match serde_json::from_str::<&str>(raw) {
        Ok(s) => Some(Cow::Borrowed(s)),
        // Escapes (or not a string at all).
        Err(_) => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
    }
}

pub(crate) fn describe(issue: JsonIssue, limits: &RequestLimits) -> (Code, String) {
    match issue {
        JsonIssue::TooDeep { .. } => (
            Code::TooDeep,
            format!(
                "event nests more than {} levels deep; the limit is {}",
                limits.max_json_depth, limits.max_json_depth
            ),
        ),
        JsonIssue::Nul { path } => (
            Code::InvalidField,
            format!("`{path}` contains U+0000 (NUL), which PostgreSQL cannot store"),
        ),
        JsonIssue::DuplicateKey { path } => (Code::InvalidJson, format!("duplicate key `{path}`")),
        JsonIssue::NumberOutOfRange { path, number } => (
            Code::InvalidField,
            format!(
                "the number {number} at `{path}` is beyond what PostgreSQL's numeric can store"
            ),
        ),
        JsonIssue::LoneSurrogate { path } => (
            Code::InvalidJson,
            format!("`{path}` holds half of a UTF-16 surrogate pair, which is no character"),
        ),
        JsonIssue::Malformed { at } => (
            Code::InvalidJson,
            format!("`data` is not well-formed JSON (at byte {at})"),
        ),
    }
}

pub(crate) enum FieldsError {
    NotObject(&'static str),
    Json(String),
}

/// The top-level fields of an event object, each value as written; a key is borrowed from
/// `raw` unless it holds escapes. A key given twice is refused: the client would never learn
/// which value was stored.
pub(crate) fn fields_of(raw: &str) -> Result<Vec<(Cow<'_, str>, &RawValue)>, FieldsError> {
    if !raw.trim_start().starts_with('{') {
        return Err(FieldsError::NotObject(kind_of(raw)));
    }
    let Fields(fields) =
        serde_json::from_str::<Fields<'_>>(raw).map_err(|e| FieldsError::Json(e.to_string()))?;
    Ok(fields)
}

struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

/// An object key, borrowed from the text when it holds no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                // An event has a handful of fields, compared with each other; thousands of
                // unknown ones must not cost a quadratic scan, so past a few they are hashed.
                const FEW: usize = 16;
                let mut out: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
                let mut many: Option<HashSet<Cow<'de, str>>> = None;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let value = map.next_value::<&'de RawValue>()?;
                    let repeated = if out.len() < FEW {
                        out.iter().any(|(k, _)| *k == key)
                    } else {
                        !many
                            .get_or_insert_with(|| out.iter().map(|(k, _)| k.clone()).collect())
                            .insert(key.clone())
                    };
                    if repeated {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate key `{}`",
                            key.chars().take(100).collect::<String>()
                        )));
                    }
                    out.push((key, value));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// What kind of JSON value a well-formed text is, for messages.
pub(crate) fn kind_of(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Validates the events of one request: the count and each event (ids are checked once they
/// are final, by [`assign_ids`]).
///
/// Each item is one event as the client wrote it. Every problem is reported, in event
/// order; a request with any problem must enqueue nothing.
pub fn validate_events(
    items: &[&str],
    limits: &RequestLimits,
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
    for (index, raw) in items.iter().enumerate() {
        match validate_event(raw, index, limits, now) {
            Ok(event) => valid.push(event),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(valid)
    } else {
        Err(problems)
    }
}

/// Gives every event of a request its final id (see [`IdSource::id_for`]; `raws` are the
/// events as sent, in the same order as `valid`) and refuses the request when two events end
/// with the same id, whether the client chose it or the edge derived it: both would be
/// answered as accepted and only one stored.
pub fn assign_ids(
    valid: &[ValidEvent],
    raws: &[&str],
    source: &IdSource<'_>,
    random: &mut dyn FnMut() -> [u8; 10],
) -> Result<Vec<Uuid>, Vec<Problem>> {
    // Up to this many events, the ids so far are searched instead of hashed.
    const FEW: usize = 16;
    let few = valid.len() <= FEW;
    let mut ids = Vec::with_capacity(valid.len());
    let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(if few { 0 } else { valid.len() });
    let mut problems = Vec::new();
    for (index, (event, raw)) in valid.iter().zip(raws).enumerate() {
        let id = source.id_for(event.id, index, raw, random);
        // The latest earlier event with this id, either way.
        let earlier = if few {
            ids.iter().rposition(|&other| other == id)
        } else {
            seen.insert(id, index)
        };
        if let Some(first) = earlier {
            problems.push(Problem::at(
                Code::DuplicateId,
                index,
                Some("id"),
                format!("event {index} would have the id {id} of event {first}"),
            ));
        }
        ids.push(id);
    }
    if problems.is_empty() {
        Ok(ids)
    } else {
        Err(problems)
    }
}
