//! Tests of the protocol table: routes and body text.

use super::*;

#[test]
fn every_path_names_one_protocol() {
    assert_eq!(
        protocol_route("/v1/events"),
        Some((Protocol::Events, "/v1/events"))
    );
    assert_eq!(
        protocol_route("/i/v0/e/"),
        Some((Protocol::Collector(Collector::Posthog), "/i/v0/e/"))
    );
    assert_eq!(
        protocol_route("/v1/b"),
        Some((
            Protocol::Collector(Collector::Segment(segment::Call::Batch)),
            "/v1/b"
        ))
    );
    assert_eq!(
        protocol_route("/v1/import"),
        Some((
            Protocol::Collector(Collector::Segment(segment::Call::Import)),
            "/v1/import"
        ))
    );
    assert_eq!(protocol_route("/v1/events/"), None);
    let mut paths: Vec<&str> = ROUTES.iter().map(|(p, _)| *p).collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths.len(), ROUTES.len(), "a path is listed twice");
}

#[test]
fn body_text_drops_a_bom_and_refuses_what_is_not_utf8() {
    assert_eq!(body_text(b"\xEF\xBB\xBF{}"), Ok("{}"));
    assert_eq!(
        body_text(b"{\xff}"),
        Err(EdgeError::InvalidJson {
            message: "body is not UTF-8 (at byte 1)".into(),
            index: None
        })
    );
}
