//! Spillway's edge: the public ingest API, run as a Cloudflare Worker (Rust on wasm), that
//! validates events and forwards them to SQS.
//!
//! Everything that decides lives in plain Rust, natively tested: routing, CORS, auth, limits,
//! parsing, validation and enrichment (through `spillway-shared`), packing, the retry policy and
//! the mapping of SQS answers. The Workers runtime is reached only through the traits in
//! [`ports`], implemented in the wasm-only `adapter` module, whose `#[event(fetch)]` just adapts.
//!
//! A request goes down the folders: [`handler`] routes it ([`crate::http::route`]), reads its
//! head and body ([`request`]), decodes them in its [`protocol`] (`/v1/events`, Segment or
//! PostHog), prepares its events ([`request::prepare`]), has `deliver` send them, and answers
//! ([`crate::http::answer`]). Each module uses only modules below it (`cargo xtask layers`).
//!
//! It does not keep state between requests (beyond the parsed configuration, the SQS client
//! and the isolate's circuit breaker), nor talk to the database: that is the consumer's job.
//! During an SQS outage it writes events to its spill queue and replays them to SQS later
//! ([`spill`]).

pub mod batch;
pub mod config;
pub mod connector;
mod deliver;
pub mod error;
pub mod handler;
pub mod http;
pub mod log;
pub mod ports;
pub mod protocol;
pub mod request;
pub mod send;
pub mod spill;
pub mod sqs;

#[cfg(target_arch = "wasm32")]
mod adapter;
#[cfg(target_arch = "wasm32")]
mod batcher_object;
#[cfg(target_arch = "wasm32")]
mod replay_handler;

#[cfg(test)]
mod group_commit_tests;
#[cfg(test)]
mod spill_tests;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use config::Config;
pub use error::EdgeError;
pub use handler::{handle, misconfigured, Deps, Handled, Spill};
pub use ports::{BatchOutcome, FailedEntry, QueueSender, RateLimit, Runtime, SendError};
pub use request::prepare::{prepare, Prepared, Stamp};
