//! The request path end to end, natively, through [`handle`](super::handle) over the testkit's
//! fakes ([`edge::Edge`]): every status and error code of the contract, auth, gzip,
//! idempotency, CORS, rate limiting, retries and the log line on `/v1/events`, and the
//! collector routes. One file per topic; the `/v1/events` request builders are here.

mod accepted;
mod any_input;
mod auth;
mod bad_input_matrix;
mod collector;
mod collector_keys;
pub(crate) mod edge;
mod kinesis;
mod log_line;
mod queue;
mod refused;
mod routes;

use http::{Method, Request};
use serde_json::{json, Value};
use spillway_shared::{derive_id, EdgeInfo};
use spillway_support::gzip;

use crate::buffer::{CallOutcome, FailedEntry, SendError};
use crate::config::tests::{config_with, KEY_APP, KEY_WEB};
use crate::config::ConfigError;
use crate::handler::misconfigured;
use crate::http::headers::UnreadableHeaders;
use crate::ports::BodySource;
use crate::testkit::{FakeLimiter, FakeQueue, FakeRuntime, Reply};
use edge::Edge;

fn post(body: impl Into<Vec<u8>>) -> http::request::Builder {
    let body: Vec<u8> = body.into();
    Request::builder()
        .method(Method::POST)
        .uri("https://ingest.example.com/v1/events")
        .header("content-length", body.len().to_string())
}

fn authed(body: impl Into<Vec<u8>>) -> Request<Vec<u8>> {
    let body: Vec<u8> = body.into();
    post(body.clone())
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY_WEB}"))
        .body(body)
        .expect("request")
}

fn get(path: &str) -> Request<Vec<u8>> {
    Request::builder()
        .method(Method::GET)
        .uri(format!("https://ingest.example.com{path}"))
        .body(Vec::new())
        .expect("request")
}

fn with_idempotency(body: &str, key: &str, api_key: &str) -> Request<Vec<u8>> {
    post(body)
        .header("x-api-key", api_key)
        .header("idempotency-key", key)
        .body(body.as_bytes().to_vec())
        .expect("request")
}

/// A body that must never be read.
struct Unread;
impl BodySource for Unread {
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, String>> {
        panic!("the body must not be read")
    }
}
