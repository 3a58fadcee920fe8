//! Spillway's own API (`/v1/events`): its content types and encodings, and its three body
//! shapes (one object, an array, NDJSON) split into the raw text of each event.
//!
//! It does not judge the events (that is `validate_events`, in `request::prepare`) nor inflate
//! gzip (`protocol::gzip`).

use serde_json::value::RawValue;
use spillway_shared::{Code, Problem, RequestLimits};

use crate::error::EdgeError;
use crate::protocol::body_text;

/// How the body's events are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object or a JSON array of them (`application/json`, `text/plain`).
    Json,
    /// One JSON object per line (`application/x-ndjson`).
    Ndjson,
}

/// Reads `Content-Type`. Parameters are allowed; a `charset` must be UTF-8. A request without a
/// content type is read as JSON.
pub fn format_of(content_type: Option<&str>) -> Result<Format, EdgeError> {
    let Some(raw) = content_type else {
        return Ok(Format::Json);
    };
    let mut parts = raw.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let format = match media.as_str() {
        "application/json" | "text/plain" => Format::Json,
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Format::Ndjson,
        _ => return Err(EdgeError::UnsupportedMediaType(truncate(raw))),
    };
    for param in parts {
        if let Some((name, value)) = param.split_once('=') {
            if name.trim().eq_ignore_ascii_case("charset") {
                let value = value.trim().trim_matches('"');
                if !value.eq_ignore_ascii_case("utf-8") && !value.eq_ignore_ascii_case("utf8") {
                    return Err(EdgeError::UnsupportedMediaType(truncate(raw)));
                }
            }
        }
    }
    Ok(format)
}

/// `Content-Encoding` the edge can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

pub fn encoding_of(content_encoding: Option<&str>) -> Result<Encoding, EdgeError> {
    match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => Ok(Encoding::Identity),
        Some("gzip") | Some("x-gzip") => Ok(Encoding::Gzip),
        Some(other) => Err(EdgeError::UnsupportedEncoding(truncate(other))),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

/// Splits the body into its events, each as the client wrote it, without yet judging them (that
/// is `validate_events`). Every event is checked to be well-formed JSON; none is parsed into
/// values, so `data` keeps the client's exact text.
///
/// Events larger than `max_event_bytes` are passed on unchecked (validation refuses them as
/// `event_too_large` by their size). More events than `max_events_per_request` stop at once.
pub fn parse<'a>(
    body: &'a [u8],
    format: Format,
    limits: &RequestLimits,
) -> Result<Vec<&'a str>, EdgeError> {
    split(body, format, limits, true)
}

/// [`parse`] for the request path: the same events and the same errors, except that a body of
/// one JSON object is not checked here. Validation parses that object anyway, so checking it
/// first would parse the whole event twice; `request::prepare::prepare_encoded` asks [`malformed`] only
/// when validation could not read it, and answers with what [`parse`] would have.
pub fn split_events<'a>(
    body: &'a [u8],
    format: Format,
    limits: &RequestLimits,
) -> Result<Vec<&'a str>, EdgeError> {
    split(body, format, limits, false)
}

/// `check_object`: whether a body of one JSON object is checked too.
fn split<'a>(
    body: &'a [u8],
    format: Format,
    limits: &RequestLimits,
    check_object: bool,
) -> Result<Vec<&'a str>, EdgeError> {
    let text = body_text(body)?;
    let items = match format {
        Format::Json => parse_json(text, limits, check_object)?,
        Format::Ndjson => parse_ndjson(text, limits)?,
    };
    if items.is_empty() {
        return Err(EdgeError::NoEvents);
    }
    Ok(items)
}

/// The error [`parse`] gives for a body that is this one event, when it is not well-formed
/// JSON; `None` when it is (or when it is too large to be checked).
pub fn malformed(event: &str, limits: &RequestLimits) -> Option<EdgeError> {
    if event.len() > limits.max_event_bytes {
        return None;
    }
    well_formed(event).err().map(|e| {
        let message = e.to_string();
        json_error(e, message, None, limits)
    })
}

/// Checks that `text` is one well-formed JSON value, keeping it as text.
fn well_formed(text: &str) -> Result<&str, serde_json::Error> {
    serde_json::from_str::<&RawValue>(text).map(RawValue::get)
}

/// A parse error as the client sees it. JSON nested deeper than the parser goes (128 levels)
/// is reported as `too_deep`, like shallower nesting over the configured limit.
fn json_error(
    e: serde_json::Error,
    message: String,
    index: Option<usize>,
    limits: &RequestLimits,
) -> EdgeError {
    if e.to_string().starts_with("recursion limit exceeded") {
        return EdgeError::Invalid(vec![Problem {
            code: Code::TooDeep,
            message: format!(
                "JSON nested too deep; the limit is {} levels",
                limits.max_json_depth
            ),
            index,
            field: None,
        }]);
    }
    EdgeError::InvalidJson { message, index }
}

fn too_many(limits: &RequestLimits) -> EdgeError {
    EdgeError::Invalid(vec![Problem {
        code: Code::TooManyEvents,
        message: format!(
            "more than {max} events in one request; the limit is {max}",
            max = limits.max_events_per_request
        ),
        index: None,
        field: None,
    }])
}

fn parse_json<'a>(
    text: &'a str,
    limits: &RequestLimits,
    check_object: bool,
) -> Result<Vec<&'a str>, EdgeError> {
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if trimmed.is_empty() {
        return Ok(Vec::new()); // answered as `no_events`
    }
    if !trimmed.starts_with('[') {
        // One event. An object may be left for validation to parse (`split_events`); anything
        // else is checked here, since validation refuses a non-object without reading it.
        if check_object || !trimmed.starts_with('{') {
            if let Some(e) = malformed(trimmed, limits) {
                return Err(e);
            }
        }
        return Ok(vec![trimmed]);
    }
    // An array: split into raw elements, so each event's size as sent is known.
    let elements: Vec<&RawValue> = serde_json::from_str(trimmed).map_err(|e| {
        let message = e.to_string();
        json_error(e, message, None, limits)
    })?;
    if elements.len() > limits.max_events_per_request {
        return Err(too_many(limits));
    }
    Ok(elements.into_iter().map(RawValue::get).collect())
}

fn parse_ndjson<'a>(text: &'a str, limits: &RequestLimits) -> Result<Vec<&'a str>, EdgeError> {
    let mut items = Vec::new();
    for (line_no, line) in text.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if items.len() == limits.max_events_per_request {
            return Err(too_many(limits));
        }
        let index = items.len();
        if line.len() <= limits.max_event_bytes {
            well_formed(line).map_err(|e| {
                let message = format!("line {}: {e}", line_no + 1);
                json_error(e, message, Some(index), limits)
            })?;
        }
        items.push(line);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RequestLimits {
        RequestLimits::default()
    }

    #[test]
    fn content_types() {
        assert_eq!(format_of(None), Ok(Format::Json));
        assert_eq!(format_of(Some("application/json")), Ok(Format::Json));
        assert_eq!(
            format_of(Some("Application/JSON; charset=UTF-8")),
            Ok(Format::Json)
        );
        assert_eq!(
            format_of(Some("text/plain;charset=\"utf-8\"")),
            Ok(Format::Json)
        );
        assert_eq!(format_of(Some("application/x-ndjson")), Ok(Format::Ndjson));
        assert!(matches!(
            format_of(Some("application/json; charset=latin1")),
            Err(EdgeError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            format_of(Some("application/x-www-form-urlencoded")),
            Err(EdgeError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            format_of(Some("multipart/form-data; boundary=x")),
            Err(EdgeError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn encodings() {
        assert_eq!(encoding_of(None), Ok(Encoding::Identity));
        assert_eq!(encoding_of(Some("GZIP")), Ok(Encoding::Gzip));
        assert!(matches!(
            encoding_of(Some("br")),
            Err(EdgeError::UnsupportedEncoding(_))
        ));
        assert!(matches!(
            encoding_of(Some("gzip, br")),
            Err(EdgeError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn single_object_array_and_sizes() {
        let one = parse(br#"  {"type":"a"}  "#, Format::Json, &limits()).expect("ok");
        assert_eq!(one, vec![r#"{"type":"a"}"#]);
        let many = parse(
            br#"[{"type":"a"}, { "type" : "bb"}]"#,
            Format::Json,
            &limits(),
        )
        .expect("ok");
        assert_eq!(many, vec![r#"{"type":"a"}"#, r#"{ "type" : "bb"}"#]);
        // A bare scalar is well-formed; validation calls it an invalid event.
        assert_eq!(
            parse(b"42", Format::Json, &limits()).expect("ok"),
            vec!["42"]
        );
        // Numbers no f64 holds are JSON all the same.
        assert_eq!(
            parse(
                b"[{\"type\":\"a\",\"data\":{\"n\":1e400}}]",
                Format::Json,
                &limits()
            )
            .expect("ok"),
            vec![r#"{"type":"a","data":{"n":1e400}}"#]
        );
    }

    #[test]
    fn malformed_json() {
        for body in [
            &b"{"[..],
            b"[{\"type\":\"a\"},]",
            b"{\"type\":\"a\"} {\"type\":\"b\"}",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(
                    parse(body, Format::Json, &limits()),
                    Err(EdgeError::InvalidJson { .. })
                ),
                "{body:?}"
            );
        }
        assert_eq!(
            parse(b"[]", Format::Json, &limits()),
            Err(EdgeError::NoEvents)
        );
        assert_eq!(
            parse(b"", Format::Json, &limits()),
            Err(EdgeError::NoEvents)
        );
        assert_eq!(
            parse(b" \n ", Format::Json, &limits()),
            Err(EdgeError::NoEvents)
        );
        // A byte-order mark is tolerated.
        assert!(parse(b"\xEF\xBB\xBF{\"type\":\"a\"}", Format::Json, &limits()).is_ok());
    }

    #[test]
    fn split_events_leaves_only_a_single_object_unchecked() {
        let broken = br#" {"type":"a" "#;
        assert_eq!(
            split_events(broken, Format::Json, &limits()),
            Ok(vec![r#"{"type":"a""#])
        );
        let Err(EdgeError::InvalidJson { message, index }) = parse(broken, Format::Json, &limits())
        else {
            panic!("parse checks every event");
        };
        assert_eq!(index, None);
        assert_eq!(
            malformed(r#"{"type":"a""#, &limits()),
            Some(EdgeError::InvalidJson { message, index })
        );
        assert_eq!(malformed(r#"{"type":"a"}"#, &limits()), None);
        // Whatever is not one object is checked as `parse` checks it.
        for (body, format) in [
            (&b"\"abc"[..], Format::Json),
            (b"tru", Format::Json),
            (b"[{\"type\":\"a\"},{]", Format::Json),
            (b"{\"type\":\"a\"}\n{", Format::Ndjson),
            (b"{\"type\":\"a\"", Format::Ndjson),
        ] {
            let checked = parse(body, format, &limits());
            assert!(checked.is_err(), "{body:?}");
            assert_eq!(split_events(body, format, &limits()), checked, "{body:?}");
        }
    }

    #[test]
    fn ndjson_lines_blank_lines_and_errors() {
        let body = b"{\"type\":\"a\"}\r\n\n  \n{\"type\":\"b\"}\n";
        let items = parse(body, Format::Ndjson, &limits()).expect("ok");
        assert_eq!(items.len(), 2);
        assert_eq!(items[1], r#"{"type":"b"}"#);
        let err =
            parse(b"{\"type\":\"a\"}\n\n{oops}\n", Format::Ndjson, &limits()).expect_err("bad");
        match err {
            EdgeError::InvalidJson { message, index } => {
                assert_eq!(index, Some(1));
                assert!(message.starts_with("line 3:"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(b"\n \n", Format::Ndjson, &limits()),
            Err(EdgeError::NoEvents)
        );
    }

    #[test]
    fn oversized_events_are_not_parsed() {
        let l = RequestLimits {
            max_event_bytes: 20,
            ..limits()
        };
        let body = br#"[{"type":"a"},{"type":"this one is long"}]"#;
        let items = parse(body, Format::Json, &l).expect("ok");
        assert_eq!(items[1], r#"{"type":"this one is long"}"#);
    }

    #[test]
    fn too_many_events_stop_parsing() {
        let l = RequestLimits {
            max_events_per_request: 2,
            ..limits()
        };
        let err = parse(b"[{},{},{}]", Format::Json, &l).expect_err("too many");
        assert!(
            matches!(&err, EdgeError::Invalid(p) if p[0].code == Code::TooManyEvents),
            "{err:?}"
        );
        let err = parse(b"{}\n{}\n{}\n", Format::Ndjson, &l).expect_err("too many");
        assert!(
            matches!(&err, EdgeError::Invalid(p) if p[0].code == Code::TooManyEvents),
            "{err:?}"
        );
    }
}
