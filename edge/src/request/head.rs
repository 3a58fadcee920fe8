//! The request head, decided in one step before any body byte is read: which key (when the
//! head carries one), how long the body says it is, how to read it, and the idempotency key.
//! One function per kind of route, so each returns exactly what its route needs: a
//! `/v1/events` head always has a key and a checked content type and encoding; a collector
//! head may leave the key to the body and the decoding to its protocol.
//!
//! Pure: headers in, a head or the [`EdgeError`] the client gets out. It does not read the body
//! ([`crate::request::body`]) nor rate-limit (`handler`).

use chrono::{DateTime, Utc};
use http::request::Parts;
use spillway_shared::event_time::parse_sent_at;
use spillway_shared::{Code, EdgeInfo, Problem};

use crate::config::Config;
use crate::error::EdgeError;
use crate::http::auth::{authenticate, keys_in_head, Caller};
use crate::http::headers::{check_read_headers, header, idempotency_key, UnreadableHeaders};
use crate::protocol::events::{encoding_of, format_of, Encoding, Format};
use crate::protocol::{Collector, Protocol};
use crate::request::context::{edge_context, CfFields};

/// What the head of a `/v1/events` request says, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsHead<'a> {
    /// The `key_id` the head's key authenticated as (`/v1/events` requires one in the head).
    pub key_id: &'a str,
    /// `Content-Length`, when declared: the body must have exactly this many bytes.
    pub declared_len: Option<u64>,
    pub idempotency_key: Option<&'a str>,
    pub format: Format,
    pub encoding: Encoding,
    /// When the client sent the request, in its clock ([`sent_at`]).
    pub sent_at: Option<DateTime<Utc>>,
}

/// What the head of a collector request says, checked. Its body is decoded by its protocol
/// from the same headers and the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorHead<'a> {
    /// The key presented in the head, if any, and the `key_id` it authenticated as; else the
    /// key may come in the body.
    pub key: Option<(String, &'a str)>,
    /// `Content-Length`, when declared: the body must have exactly this many bytes.
    pub declared_len: Option<u64>,
    pub idempotency_key: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub query: Option<&'a str>,
    /// When the client sent the request, in its clock, when the head says ([`sent_at`]); a
    /// message's own send time, or its body's, comes first.
    pub sent_at: Option<DateTime<Utc>>,
}

/// Checks the head of a `/v1/events` request. In order: headers that could not be read, the
/// key (at most one distinct key, required), the declared length against the body cap, the
/// content type and encoding, the idempotency key. `now_ms` dates a browser token.
pub fn events_head<'a>(
    parts: &'a Parts,
    config: &'a Config,
    now_ms: u64,
) -> Result<EventsHead<'a>, EdgeError> {
    let (_, key_id) =
        head_key(parts, config, Protocol::Events, now_ms)?.ok_or(EdgeError::MissingKey)?;
    let declared_len = declared_len(parts, config)?;
    let format = format_of(header(&parts.headers, http::header::CONTENT_TYPE))?;
    let encoding = encoding_of(header(&parts.headers, http::header::CONTENT_ENCODING))?;
    Ok(EventsHead {
        key_id,
        declared_len,
        idempotency_key: idempotency_key(&parts.headers)?,
        format,
        encoding,
        sent_at: sent_at(parts, Protocol::Events)?,
    })
}

/// Checks the head of a collector request, in the order of [`events_head`]; a key is checked
/// when the head has one, before the body is read, so a wrong key costs no body.
pub fn collector_head<'a>(
    parts: &'a Parts,
    config: &'a Config,
    collector: Collector,
    now_ms: u64,
) -> Result<CollectorHead<'a>, EdgeError> {
    let key = head_key(parts, config, Protocol::Collector(collector), now_ms)?;
    let declared_len = declared_len(parts, config)?;
    Ok(CollectorHead {
        key,
        declared_len,
        idempotency_key: idempotency_key(&parts.headers)?,
        content_type: header(&parts.headers, http::header::CONTENT_TYPE),
        content_encoding: header(&parts.headers, http::header::CONTENT_ENCODING),
        query: parts.uri.query(),
        sent_at: sent_at(parts, Protocol::Collector(collector))?,
    })
}

/// The key the head presents, authenticated, after refusing headers that could not be read.
/// Two different keys are refused before either is checked: which one is valid is nothing the
/// answer should tell.
fn head_key<'a>(
    parts: &Parts,
    config: &'a Config,
    protocol: Protocol,
    now_ms: u64,
) -> Result<Option<(String, &'a str)>, EdgeError> {
    let headers = &parts.headers;
    check_read_headers(headers, parts.extensions.get::<UnreadableHeaders>())?;
    let mut keys = keys_in_head(headers, parts.uri.query(), protocol);
    if keys.len() > 1 {
        return Err(EdgeError::ConflictingKeys);
    }
    keys.pop()
        .map(|k| {
            authenticate(config, Some(&k), Caller::of(headers, now_ms)).map(|key_id| (k, key_id))
        })
        .transpose()
}

/// `Content-Length`, when declared and readable; one over the body cap is refused at once.
fn declared_len(parts: &Parts, config: &Config) -> Result<Option<u64>, EdgeError> {
    let limit = config.limits.max_body_bytes;
    let declared = header(&parts.headers, http::header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(EdgeError::BodyTooLarge { limit });
    }
    Ok(declared)
}

/// The request's send time in the client's clock, which corrects its events' timestamps
/// ([`spillway_shared::event_time`]): the `Sent-At` header, else `?sent_at=` (for beacons,
/// which cannot set headers), each RFC 3339 or milliseconds since the Unix epoch; on PostHog's
/// routes also `?_=` (milliseconds), which posthog-js adds to every request.
///
/// On `/v1/events` a value that is not a time is refused (`400 invalid_field`, naming where it
/// was): the client asked for a correction it would not get. On collector routes it is ignored,
/// as the collectors themselves ignore a bad send time, so their SDKs are answered as before.
pub fn sent_at(parts: &Parts, protocol: Protocol) -> Result<Option<DateTime<Utc>>, EdgeError> {
    let query = |name: &str| {
        parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.into_owned())
        })
    };
    let mut given = Vec::new();
    if let Some(v) = parts.headers.get("sent-at") {
        given.push(("Sent-At", v.to_str().unwrap_or_default().to_owned()));
    }
    if let Some(v) = query("sent_at") {
        given.push(("sent_at", v));
    }
    if protocol == Protocol::Collector(Collector::Posthog) {
        given.extend(query("_").map(|v| ("_", v)));
    }
    for (place, text) in given {
        match parse_sent_at(&text) {
            Some(t) => return Ok(Some(t)),
            None if protocol == Protocol::Events => {
                return Err(EdgeError::Invalid(vec![Problem {
                    code: Code::InvalidField,
                    message: format!(
                        "`{place}` must be an RFC 3339 date-time such as 2026-11-28T08:00:00.000Z, or milliseconds since the Unix epoch"
                    ),
                    index: None,
                    field: Some(place.to_owned()),
                }]))
            }
            None => {}
        }
    }
    Ok(None)
}

/// What the edge adds to the request's events of what only it knows (`EDGE_CONTEXT`,
/// `IP_POLICY`), from what the runtime read of `request.cf` and the request's headers.
pub fn edge_info(parts: &Parts, config: &Config) -> Option<EdgeInfo> {
    edge_context(
        parts.extensions.get::<CfFields>(),
        &parts.headers,
        &config.context,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{config_with, KEY_APP, KEY_WEB};
    use spillway_shared::collector::segment::Call;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn an_events_head_has_its_key_type_and_encoding() {
        let config = config_with(&[]).expect("config");
        let bearer = format!("Bearer {KEY_WEB}");
        let p = parts(
            "https://x/v1/events",
            &[
                ("authorization", &bearer),
                ("content-type", "application/x-ndjson"),
                ("content-encoding", "gzip"),
                ("content-length", "12"),
                ("idempotency-key", "req-1"),
            ],
        );
        assert_eq!(
            events_head(&p, &config, 0),
            Ok(EventsHead {
                key_id: "web",
                declared_len: Some(12),
                idempotency_key: Some("req-1"),
                format: Format::Ndjson,
                encoding: Encoding::Gzip,
                sent_at: None,
            })
        );
    }

    #[test]
    fn the_send_time_comes_from_a_header_or_the_query() {
        let config = config_with(&[]).expect("config");
        let bearer = format!("Bearer {KEY_WEB}");
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&Utc)
        };
        let events = |uri: &str, sent: Option<&str>| {
            let mut h = vec![("authorization", bearer.as_str())];
            h.extend(sent.map(|s| ("sent-at", s)));
            events_head(&parts(uri, &h), &config, 0).map(|h| h.sent_at)
        };
        let t = at("2026-11-28T09:00:00.250Z");
        assert_eq!(
            events("https://x/v1/events", Some("2026-11-28T10:00:00.250+01:00")),
            Ok(Some(t))
        );
        // A beacon: in the query, as RFC 3339 or `Date.now()`; the header wins over it.
        assert_eq!(
            events(
                "https://x/v1/events?sent_at=2026-11-28T09%3A00%3A00.250Z",
                None
            ),
            Ok(Some(t))
        );
        assert_eq!(
            events("https://x/v1/events?sent_at=1795856400250", None),
            Ok(Some(t))
        );
        assert_eq!(
            events(
                "https://x/v1/events?sent_at=0",
                Some("2026-11-28T09:00:00.250Z")
            ),
            Ok(Some(t))
        );
        assert_eq!(events("https://x/v1/events", None), Ok(None));
        // PostHog's `_` is not ours.
        assert_eq!(
            events("https://x/v1/events?_=1795856400250", None),
            Ok(None)
        );
        // What is not a time is refused on our own route, naming where it was.
        for (uri, sent, place) in [
            ("https://x/v1/events", Some("yesterday"), "Sent-At"),
            ("https://x/v1/events?sent_at=soon", None, "sent_at"),
        ] {
            match events(uri, sent) {
                Err(EdgeError::Invalid(p)) => {
                    assert_eq!(
                        (p[0].code, p[0].field.as_deref()),
                        (Code::InvalidField, Some(place))
                    )
                }
                other => panic!("{uri}: {other:?}"),
            }
        }
        // Collectors: PostHog's `?_=`, and a bad value is ignored, as the collectors ignore it.
        let head =
            |uri: &str, c| collector_head(&parts(uri, &[]), &config, c, 0).map(|h| h.sent_at);
        assert_eq!(
            head("https://x/e/?ver=1.3&_=1764316800250", Collector::Posthog),
            Ok(Some(at("2025-11-28T08:00:00.250Z")))
        );
        assert_eq!(
            head(
                "https://x/v1/batch?_=1764316800250",
                Collector::Segment(Call::Batch)
            ),
            Ok(None)
        );
        assert_eq!(head("https://x/e/?_=soon", Collector::Posthog), Ok(None));
        assert_eq!(
            head(
                "https://x/e/?sent_at=soon&_=1764316800250",
                Collector::Posthog
            ),
            Ok(Some(at("2025-11-28T08:00:00.250Z")))
        );
    }

    #[test]
    fn events_head_checks_in_order() {
        let config = config_with(&[]).expect("config");
        let web = format!("Bearer {KEY_WEB}");
        let too_long = (config.limits.max_body_bytes + 1).to_string();
        // Two keys before a missing or wrong one; the key before the length; the length before
        // the content type; the content type before the idempotency key.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, EdgeError);
        let cases: [Case; 5] = [
            (
                &[("x-api-key", "wrong")],
                "?key=other",
                EdgeError::ConflictingKeys,
            ),
            (&[("content-length", &too_long)], "", EdgeError::MissingKey),
            (
                &[("x-api-key", "wrong-key-0123456789")],
                "",
                EdgeError::InvalidKey,
            ),
            (
                &[
                    ("authorization", &web),
                    ("content-length", &too_long),
                    ("content-type", "a/b"),
                ],
                "",
                EdgeError::BodyTooLarge {
                    limit: config.limits.max_body_bytes,
                },
            ),
            (
                &[
                    ("authorization", &web),
                    ("content-type", "a/b"),
                    ("idempotency-key", " "),
                ],
                "",
                EdgeError::UnsupportedMediaType("a/b".into()),
            ),
        ];
        for (headers, query, want) in cases {
            let p = parts(&format!("https://x/v1/events{query}"), headers);
            assert_eq!(
                events_head(&p, &config, 0),
                Err(want),
                "{headers:?} {query}"
            );
        }
    }

    #[test]
    fn a_collector_head_may_leave_the_key_to_the_body() {
        let config = config_with(&[]).expect("config");
        let segment = Collector::Segment(Call::Batch);
        let p = parts(
            "https://x/v1/batch?ver=1",
            &[("content-type", "text/plain")],
        );
        let head = collector_head(&p, &config, segment, 0).expect("no key is fine");
        assert_eq!(head.key, None);
        assert_eq!(head.content_type, Some("text/plain"));
        assert_eq!(head.query, Some("ver=1"));
        // A key in the head is checked at once, and two are refused.
        let p = parts("https://x/capture?token=nope-0123456789abcdef", &[]);
        assert_eq!(
            collector_head(&p, &config, Collector::Posthog, 0),
            Err(EdgeError::InvalidKey)
        );
        let p = parts(&format!("https://x/capture?token={KEY_APP}"), &[]);
        let head = collector_head(&p, &config, Collector::Posthog, 0).expect("valid key");
        assert_eq!(head.key, Some((KEY_APP.to_owned(), "app")));
        let p = parts(
            &format!("https://x/v1/batch?key={KEY_APP}"),
            &[("x-api-key", KEY_WEB)],
        );
        assert_eq!(
            collector_head(&p, &config, segment, 0),
            Err(EdgeError::ConflictingKeys)
        );
    }
}
