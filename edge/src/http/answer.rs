//! The answer to a request, in one place: a success's status and body per route, every
//! [`EdgeError`]'s status, code, headers and body (the only mapping from errors to answers), and
//! the `http::Response` they make. It does not decide what happened, only how it is said.

use serde::Serialize;
use spillway_shared::token::TokenError;
use spillway_shared::{Code, PackError, Problem};
use uuid::Uuid;

use crate::error::EdgeError;
use crate::protocol::Collector;

/// The body of `202` on `/v1/events`.
#[derive(Serialize)]
struct Accepted<'a> {
    accepted: usize,
    ids: &'a [Uuid],
    /// Of those, events the spill queue holds (SQS will get them on replay); absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    spilled: Option<usize>,
}

/// The body of `202` on `/v1/events`: the ids in request order, and how many of them the spill
/// queue holds (when any).
pub fn accepted_body(ids: &[Uuid], spilled: Option<usize>) -> String {
    serde_json::to_string(&Accepted {
        accepted: ids.len(),
        ids,
        spilled: spilled.filter(|&n| n > 0),
    })
    .unwrap_or_default()
}

/// The body of a collector route's success: what each protocol's own service answers, plus
/// the count.
pub fn collected_body(collector: Collector, accepted: usize) -> String {
    match collector {
        Collector::Segment(_) => format!(r#"{{"success":true,"accepted":{accepted}}}"#),
        Collector::Posthog => format!(r#"{{"status":1,"accepted":{accepted}}}"#),
    }
}

/// The response: `status` (500 if it is no status), the headers that are valid header values,
/// and the body.
pub fn respond(
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
) -> http::Response<String> {
    let mut response = http::Response::new(body);
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            h.append(name, v);
        }
    }
    response
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
            EdgeError::Token(why) => {
                let code = match why {
                    TokenError::Invalid => "token_invalid",
                    TokenError::Expired => "token_expired",
                    TokenError::TooLong => "token_lifetime",
                    TokenError::NoOrigin | TokenError::WrongOrigin => "token_origin",
                };
                (401, code, why.to_string())
            }
            EdgeError::TokenRequired => (
                401,
                "token_required",
                "from a browser this key is accepted only as a token minted by your backend; the key itself belongs on servers".into(),
            ),
            // 403, not 401: the key is valid, this origin may not use it.
            EdgeError::OriginNotAllowed => (
                403,
                "origin_not_allowed",
                "this key may not be used from the request's origin".into(),
            ),
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
    use spillway_shared::collector::segment::Call;

    #[test]
    fn success_bodies_per_protocol() {
        let ids = [Uuid::from_u128(1)];
        assert_eq!(
            accepted_body(&ids, Some(0)),
            r#"{"accepted":1,"ids":["00000000-0000-0000-0000-000000000001"]}"#
        );
        assert_eq!(
            accepted_body(&ids, Some(1)),
            r#"{"accepted":1,"ids":["00000000-0000-0000-0000-000000000001"],"spilled":1}"#
        );
        assert_eq!(
            collected_body(Collector::Segment(Call::Batch), 2),
            r#"{"success":true,"accepted":2}"#
        );
        assert_eq!(
            collected_body(Collector::Posthog, 2),
            r#"{"status":1,"accepted":2}"#
        );
    }

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

    #[test]
    fn token_refusals_have_distinct_codes_on_every_route() {
        let cases = [
            (EdgeError::Token(TokenError::Invalid), 401, "token_invalid"),
            (EdgeError::Token(TokenError::Expired), 401, "token_expired"),
            (EdgeError::Token(TokenError::TooLong), 401, "token_lifetime"),
            (
                EdgeError::Token(TokenError::WrongOrigin),
                401,
                "token_origin",
            ),
            (EdgeError::Token(TokenError::NoOrigin), 401, "token_origin"),
            (EdgeError::TokenRequired, 401, "token_required"),
            (EdgeError::OriginNotAllowed, 403, "origin_not_allowed"),
        ];
        for (e, status, code) in cases {
            let (s, body) = json(&e);
            assert_eq!((s, body["error"]["code"].as_str()), (status, Some(code)));
            assert_eq!(e.reply_collector(), e.reply(), "{code}");
        }
        // The two origin refusals say which.
        let (_, none) = json(&EdgeError::Token(TokenError::NoOrigin));
        let (_, other) = json(&EdgeError::Token(TokenError::WrongOrigin));
        assert_ne!(none["error"]["message"], other["error"]["message"]);
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
