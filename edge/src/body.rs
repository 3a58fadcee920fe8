//! From request bytes to JSON values: content type, `Content-Encoding: gzip` with a hard cap on
//! the inflated size, and the three body shapes (one object, an array, NDJSON).

use std::io::Read;

use flate2::read::MultiGzDecoder;
use serde_json::value::RawValue;
use spillway_shared::{Code, Limits, Problem};

use crate::error::EdgeError;

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

/// Inflates a gzip body, refusing it as soon as the output would exceed `cap` bytes: a small
/// bomb costs at most `cap` bytes of work and memory, never its full inflated size.
pub fn gunzip_capped(body: &[u8], cap: usize) -> Result<Vec<u8>, EdgeError> {
    const CHUNK: usize = 64 * 1024;
    let mut decoder = MultiGzDecoder::new(body);
    let mut out = Vec::with_capacity((body.len() * 4).min(cap).min(1024 * 1024));
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = decoder
            .read(&mut chunk)
            .map_err(|e| EdgeError::InvalidGzip(e.to_string()))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > cap {
            return Err(EdgeError::DecompressedTooLarge { limit: cap });
        }
        out.extend_from_slice(&chunk[..n]);
    }
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
    limits: &Limits,
) -> Result<Vec<&'a str>, EdgeError> {
    split(body, format, limits, true)
}

/// [`parse`] for the request path: the same events and the same errors, except that a body of
/// one JSON object is not checked here. Validation parses that object anyway, so checking it
/// first would parse the whole event twice; `handler::prepare_events` asks [`malformed`] only
/// when validation could not read it, and answers with what [`parse`] would have.
pub fn split_events<'a>(
    body: &'a [u8],
    format: Format,
    limits: &Limits,
) -> Result<Vec<&'a str>, EdgeError> {
    split(body, format, limits, false)
}

/// `check_object`: whether a body of one JSON object is checked too.
fn split<'a>(
    body: &'a [u8],
    format: Format,
    limits: &Limits,
    check_object: bool,
) -> Result<Vec<&'a str>, EdgeError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|e| EdgeError::InvalidJson {
        message: format!("body is not UTF-8 (at byte {})", e.valid_up_to()),
        index: None,
    })?;
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
pub fn malformed(event: &str, limits: &Limits) -> Option<EdgeError> {
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
    limits: &Limits,
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

fn too_many(limits: &Limits) -> EdgeError {
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
    limits: &Limits,
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

fn parse_ndjson<'a>(text: &'a str, limits: &Limits) -> Result<Vec<&'a str>, EdgeError> {
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
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).expect("in memory");
        e.finish().expect("in memory")
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
    fn gzip_round_trip_and_concatenated_members() {
        let mut two = gzip(b"[{\"type\":\"a\"},");
        two.extend(gzip(b"{\"type\":\"b\"}]"));
        assert_eq!(
            gunzip_capped(&two, 1024).expect("valid"),
            b"[{\"type\":\"a\"},{\"type\":\"b\"}]"
        );
    }

    #[test]
    fn corrupt_gzip_is_refused() {
        let mut z = gzip(b"{\"type\":\"a\"}");
        let mid = z.len() / 2;
        z[mid] ^= 0xff;
        assert!(matches!(
            gunzip_capped(&z, 1024),
            Err(EdgeError::InvalidGzip(_))
        ));
        assert!(matches!(
            gunzip_capped(b"not gzip at all", 1024),
            Err(EdgeError::InvalidGzip(_))
        ));
        let truncated = &gzip(b"{\"type\":\"a\"}")[..10];
        assert!(matches!(
            gunzip_capped(truncated, 1024),
            Err(EdgeError::InvalidGzip(_))
        ));
    }

    #[test]
    fn gzip_bomb_stops_at_the_cap() {
        // 256 MiB of zeros compress to about 250 KiB.
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..256 {
            e.write_all(&zeros).expect("in memory");
        }
        let bomb = e.finish().expect("in memory");
        assert!(bomb.len() < 300 * 1024, "{}", bomb.len());
        let started = std::time::Instant::now();
        assert_eq!(
            gunzip_capped(&bomb, 4 * 1024 * 1024),
            Err(EdgeError::DecompressedTooLarge {
                limit: 4 * 1024 * 1024
            })
        );
        // Inflating the whole bomb would take seconds in a debug build; the cap stops it early.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn exactly_at_the_cap_is_fine() {
        let body = vec![b' '; 1000];
        assert_eq!(gunzip_capped(&gzip(&body), 1000).expect("fits").len(), 1000);
        assert!(gunzip_capped(&gzip(&body), 999).is_err());
    }

    fn limits() -> Limits {
        Limits::default()
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
        let l = Limits {
            max_event_bytes: 20,
            ..limits()
        };
        let body = br#"[{"type":"a"},{"type":"this one is long"}]"#;
        let items = parse(body, Format::Json, &l).expect("ok");
        assert_eq!(items[1], r#"{"type":"this one is long"}"#);
    }

    #[test]
    fn too_many_events_stop_parsing() {
        let l = Limits {
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
