//! Every way a request can fail, and the one place that turns each into a status and a body.

use serde::Serialize;
use spillway_shared::{Code, PackError, Problem};
use thiserror::Error;
use uuid::Uuid;

/// A request the edge refuses or cannot complete.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EdgeError {
    #[error("no such path")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("no ingest key")]
    MissingKey,
    #[error("wrong ingest key")]
    InvalidKey,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u32 },
    #[error("body over {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("decompressed body over {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("unsupported content type {0:?}")]
    UnsupportedMediaType(String),
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),
    #[error("corrupt gzip: {0}")]
    InvalidGzip(String),
    #[error("invalid JSON: {message}")]
    InvalidJson {
        message: String,
        index: Option<usize>,
    },
    #[error("no events")]
    NoEvents,
    #[error("invalid Idempotency-Key")]
    InvalidIdempotencyKey,
    /// A header the request path reads holds bytes no header value may hold.
    #[error("the {0} header cannot be read")]
    InvalidHeader(&'static str),
    #[error("could not read the body: {0}")]
    BodyRead(String),
    /// Validation problems, in event order (never empty).
    #[error("{} invalid event(s)", .0.len())]
    Invalid(Vec<Problem>),
    #[error("{0}")]
    Pack(PackError),
    /// The queue did not acknowledge these events (request order).
    #[error("queue unavailable")]
    QueueUnavailable {
        unacknowledged: Vec<Uuid>,
        total: usize,
        timed_out: bool,
        retry_after_secs: u32,
    },
    #[error("misconfigured")]
    Misconfigured,
    /// A request names two different keys (two head forms, head and body, or two messages).
    #[error("two different ingest keys")]
    ConflictingKeys,
    /// A collector body sent with `?compression=base64` is not base64.
    #[error("invalid base64: {0}")]
    InvalidBase64(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a [Problem]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unacknowledged: Option<&'a [Uuid]>,
}

/// A status, extra headers and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    pub status: u16,
    pub code: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

fn problem_status(code: Code) -> u16 {
    match code {
        Code::EventTooLarge | Code::TooManyEvents => 413,
        _ => 400,
    }
}

impl EdgeError {
    /// The answer to the client. The only place that maps errors to statuses and codes.
    pub fn reply(&self) -> ErrorReply {
        let mut headers = Vec::new();
        let mut index = None;
        let mut details = None;
        let mut unacked = None;
        let (status, code, message): (u16, &'static str, String) = match self {
            EdgeError::NotFound => (404, "not_found", "no such path; events go to POST /v1/events".into()),
            EdgeError::MethodNotAllowed { allow } => {
                headers.push(("allow", (*allow).to_owned()));
                (405, "method_not_allowed", format!("this path accepts {allow}"))
            }
            EdgeError::MissingKey => (
                401,
                "missing_key",
                "send an ingest key as `Authorization: Bearer <key>`, `X-Api-Key: <key>` or `?key=<key>`".into(),
            ),
            EdgeError::InvalidKey => (401, "invalid_key", "the ingest key is not valid".into()),
            EdgeError::RateLimited { retry_after_secs } => {
                headers.push(("retry-after", retry_after_secs.to_string()));
                (429, "rate_limited", format!("too many requests for this key; retry in {retry_after_secs} s"))
            }
            EdgeError::BodyTooLarge { limit } => (
                413,
                "payload_too_large",
                format!("the body is larger than {limit} bytes"),
            ),
            EdgeError::DecompressedTooLarge { limit } => (
                413,
                "payload_too_large",
                format!("the decompressed body is larger than {limit} bytes"),
            ),
            EdgeError::UnsupportedMediaType(ct) => (
                415,
                "unsupported_media_type",
                format!("content type {ct:?} is not supported; use application/json, application/x-ndjson or text/plain (UTF-8)"),
            ),
            EdgeError::UnsupportedEncoding(enc) => (
                415,
                "unsupported_encoding",
                format!("content encoding {enc:?} is not supported; use gzip or none"),
            ),
            EdgeError::InvalidGzip(why) => (400, "invalid_gzip", format!("the gzip body is corrupt: {why}")),
            EdgeError::InvalidJson { message, index: i } => {
                index = *i;
                (400, "invalid_json", message.clone())
            }
            EdgeError::NoEvents => (400, "no_events", "the request holds no events".into()),
            EdgeError::InvalidHeader(name) => (
                400,
                "invalid_header",
                format!("the {name} header holds characters a header value may not hold (control characters, DEL or non-ASCII)"),
            ),
            EdgeError::InvalidIdempotencyKey => (
                400,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters (no spaces or control characters)".into(),
            ),
            EdgeError::BodyRead(why) => (400, "invalid_body", format!("could not read the body: {why}")),
            EdgeError::Invalid(problems) => {
                let first = problems.first();
                index = first.and_then(|p| p.index);
                details = Some(problems.as_slice());
                let code = first.map_or(Code::InvalidEvent, |p| p.code);
                let message = match (first, problems.len()) {
                    (Some(p), 1) => p.message.clone(),
                    (Some(p), n) => format!("{} (and {} more problems, see details)", p.message, n - 1),
                    (None, _) => "invalid events".into(),
                };
                (problem_status(code), code.as_str(), message)
            }
            EdgeError::Pack(PackError::EventTooLarge { index: i, size, max }) => {
                index = Some(*i);
                (
                    413,
                    Code::EventTooLarge.as_str(),
                    format!("event {i} is {size} bytes once enriched; the limit is {max} bytes"),
                )
            }
            EdgeError::Pack(PackError::Encode { index: i, .. }) => {
                index = Some(*i);
                (500, "internal", format!("event {i} could not be encoded"))
            }
            EdgeError::QueueUnavailable { unacknowledged, total, timed_out, retry_after_secs } => {
                headers.push(("retry-after", retry_after_secs.to_string()));
                unacked = Some(unacknowledged.as_slice());
                let why = if *timed_out { "before the deadline" } else { "(it refused them)" };
                (
                    503,
                    "queue_unavailable",
                    format!(
                        "the queue did not acknowledge {} of {total} events {why}; retrying the same request is safe when it has an Idempotency-Key or event ids",
                        unacknowledged.len()
                    ),
                )
            }
            // 401 as for a wrong key: the request is not authenticated, whichever key is valid.
            EdgeError::ConflictingKeys => (
                401,
                "conflicting_keys",
                "the request names two different ingest keys (headers, query or body); send one".into(),
            ),
            EdgeError::InvalidBase64(why) => (400, "invalid_base64", format!("the body is not base64: {why}")),
            EdgeError::Misconfigured => (
                500,
                "misconfigured",
                "the ingest service is misconfigured; the operator has been told in the logs".into(),
            ),
        };
        let body = Body {
            error: ErrorBody {
                code,
                message,
                index,
                details,
                unacknowledged: unacked,
            },
        };
        let body = serde_json::to_string(&body)
            .unwrap_or_else(|_| format!(r#"{{"error":{{"code":"{code}","message":"error"}}}}"#));
        ErrorReply {
            status,
            code,
            headers,
            body,
        }
    }
}

impl EdgeError {
    /// The answer on a collector route (Segment, PostHog): as [`EdgeError::reply`], except
    /// that what is too large or of an unsupported type is `400`. Those SDKs drop a batch on
    /// `400`; some of them retry a `413` or `415` as if it might pass later, and it never does.
    pub fn reply_collector(&self) -> ErrorReply {
        let mut reply = self.reply();
        if matches!(reply.status, 413 | 415) {
            reply.status = 400;
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_routes_answer_400_where_others_answer_413_or_415() {
        let e = EdgeError::BodyTooLarge { limit: 10 };
        assert_eq!(e.reply().status, 413);
        assert_eq!(e.reply_collector().status, 400);
        assert_eq!(e.reply_collector().code, "payload_too_large");
        let e = EdgeError::UnsupportedEncoding("br".into());
        assert_eq!(e.reply_collector().status, 400);
        for e in [
            EdgeError::InvalidKey,
            EdgeError::RateLimited {
                retry_after_secs: 3,
            },
            EdgeError::QueueUnavailable {
                unacknowledged: vec![],
                total: 1,
                timed_out: false,
                retry_after_secs: 2,
            },
        ] {
            assert_eq!(e.reply_collector(), e.reply());
        }
    }

    fn json(e: &EdgeError) -> (u16, serde_json::Value) {
        let r = e.reply();
        (r.status, serde_json::from_str(&r.body).expect("JSON body"))
    }

    #[test]
    fn invalid_events_carry_index_and_details() {
        let problems = vec![
            Problem {
                code: Code::UnknownField,
                message: "unknown field `x`".into(),
                index: Some(2),
                field: Some("x".into()),
            },
            Problem {
                code: Code::MissingField,
                message: "`type` is required".into(),
                index: Some(3),
                field: Some("type".into()),
            },
        ];
        let (status, body) = json(&EdgeError::Invalid(problems));
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "unknown_field");
        assert_eq!(body["error"]["index"], 2);
        assert_eq!(body["error"]["details"][1]["code"], "missing_field");
        assert_eq!(body["error"]["details"][1]["field"], "type");
    }

    #[test]
    fn size_problems_are_413() {
        let p = Problem {
            code: Code::TooManyEvents,
            message: "many".into(),
            index: None,
            field: None,
        };
        let (status, body) = json(&EdgeError::Invalid(vec![p]));
        assert_eq!(status, 413);
        assert!(body["error"].get("index").is_none());
    }

    #[test]
    fn unavailable_lists_ids_and_retry_after() {
        let id = Uuid::from_u128(7);
        let r = EdgeError::QueueUnavailable {
            unacknowledged: vec![id],
            total: 3,
            timed_out: true,
            retry_after_secs: 5,
        }
        .reply();
        assert_eq!(r.status, 503);
        assert_eq!(r.headers, vec![("retry-after", "5".to_owned())]);
        let body: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(body["error"]["unacknowledged"][0], id.to_string());
    }
}
