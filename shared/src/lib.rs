//! The message schema that Spillway's edge and consumer both speak.
//!
//! This crate owns the wire format: the event model of the public HTTP API and its validation
//! rules, the request's [`RequestLimits`] and the buffer's [`BufferLimits`], how event ids are
//! made, the versioned envelope an SQS message or a Kinesis record carries (sealed with an HMAC
//! that the consumer verifies, [`seal`]) with the packer that fits events into
//! `SendMessageBatch` or `PutRecords` calls, the reading of a Kinesis stream ARN
//! ([`StreamArn`]) and of a `PutRecords` answer ([`read_put_result`]), the bodies of the collector protocols (Segment, PostHog) that existing
//! SDKs send, and the browser tokens a customer's backend mints for one key and one site
//! ([`token`]).
//!
//! It deliberately does no I/O, reads no clock and draws no random numbers: the current time
//! and random bytes are arguments, so every rule here is deterministic and tested natively.
//! It builds for `wasm32-unknown-unknown` (the edge) and for the host (the consumer).

pub mod arn;
pub mod collector;
pub mod envelope;
pub mod event;
pub mod event_time;
pub mod ids;
pub mod json;
pub mod limits;
pub mod pack;
pub mod put_records;
pub mod seal;
pub mod timestamp;
pub mod token;
pub mod url;

pub use arn::{valid_region, StreamArn, StreamArnError};
pub use envelope::{decode, encode_message, open, DecodeError, Envelope, ENVELOPE_VERSION};
pub use event::{
    assign_ids, validate_event, validate_events, Code, EdgeInfo, Event, Problem, Source,
    ValidEvent, MAX_TYPE_CHARS,
};
pub use ids::{derive_id, uuid_v7, IdSource};
pub use json::RawJson;
pub use limits::{BufferLimits, LimitsError, RequestLimits};
pub use pack::{
    encode_events, pack, pack_encoded, BufferCall, BufferEntry, CallBudget, EncodedEvent, PackError,
};
pub use put_records::{read_put_result, PutRecordResult};
pub use seal::{parse_keys, KeyError, Keyring, SealError, SigningKey, Unsigned};
pub use url::{origin_of, OriginError};
