//! Spillway's edge: the public ingest API, run as a Cloudflare Worker (Rust on wasm), that
//! validates events and forwards them to the durable buffer: SQS, or Kinesis Data Streams
//! (`BUFFER`; each built with its cargo feature, see `buffer`).
//!
//! Everything that decides lives in plain Rust, natively tested: routing, CORS, auth, limits,
//! parsing, validation and enrichment (through `spillway-shared`), packing, the retry policy and
//! the mapping of the buffer's answers. The lower layers, from the bottom: [`config`] and
//! [`ports`], the durable buffer ([`buffer`]: its port, the retry loop, the SQS and Kinesis
//! senders), a request's way to it ([`deliver`]: direct, group commit, spill), and the
//! wasm-only `runtime`, whose
//! `#[event(fetch)]` and other entry points just adapt the Workers runtime to the ports.
//!
//! A request goes down the folders: [`handler`] routes it ([`crate::http::route`]), reads its
//! head and body ([`request`]), decodes them in its [`protocol`] (`/v1/events`, Segment or
//! PostHog), prepares its events ([`request::prepare`]), has `deliver` send them, and answers
//! ([`crate::http::answer`]). Each module uses only modules below it (`cargo xtask layers`).
//!
//! It does not keep state between requests (beyond the parsed configuration, the buffer's
//! client and the isolate's circuit breaker), nor talk to the database: that is the consumer's
//! job. During a buffer outage it writes events to its spill queue and replays them to the
//! buffer later ([`deliver::spill`]).

#[cfg(not(any(feature = "sqs", feature = "kinesis")))]
compile_error!(
    "spillway-edge needs a buffer: build it with feature `sqs` (the default) or `kinesis`"
);

pub mod buffer;
pub mod config;
pub mod deliver;
pub mod error;
pub mod handler;
pub mod http;
pub mod log;
pub mod ports;
pub mod protocol;
pub mod request;

#[cfg(target_arch = "wasm32")]
mod runtime;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use buffer::{Buffer, CallOutcome, FailedEntry, SendError};
pub use config::Config;
pub use error::EdgeError;
pub use handler::{handle, misconfigured, Deps, Handled, Spill};
pub use ports::{RateLimit, Runtime};
pub use request::prepare::{prepare, Prepared, Stamp};
