//! Golden files pin the envelope format: a change here is a wire-format change that every
//! deployed consumer must understand, so it needs a new envelope version.
//!
//! Regenerate deliberately with `SPILLWAY_BLESS=1 cargo test -p spillway-shared --test golden`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use spillway_shared::{decode, derive_id, pack, DecodeError, EdgeInfo, Event, Limits, RawJson};
use uuid::Uuid;

fn fixture(name: &str) -> PathBuf {
    // At run time: a build from another clone may be reused (shared target directory).
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/envelope")
        .join(name)
}

fn golden(name: &str, actual: &str) {
    let path = fixture(name);
    if std::env::var_os("SPILLWAY_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (bless with SPILLWAY_BLESS=1)", path.display()));
    assert_eq!(actual, expected, "{} changed", path.display());
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn sample() -> Vec<Event> {
    vec![
        Event {
            id: Uuid::parse_str("0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10").expect("uuid"),
            event_type: "page_view".into(),
            occurred_at: Some(t("2026-11-28T07:59:58.250Z")),
            received_at: t("2026-11-28T08:00:00.123Z"),
            key_id: "web".into(),
            edge: Some(EdgeInfo {
                colo: Some("FRA".into()),
                country: Some("DE".into()),
            }),
            source: Default::default(),
            data: RawJson::from_json(r#"{"path":"/pricing","ref":null,"size":[1280,720]}"#)
                .expect("json"),
        },
        Event {
            // Once derived from an Idempotency-Key; the envelope carries any id the same way.
            id: Uuid::parse_str("3a59cd1f-d5a5-5bf5-bb62-d239ef258e96").expect("uuid"),
            event_type: "signup \u{FFFE} odd".into(),
            occurred_at: None,
            received_at: t("2026-11-28T08:00:00.123Z"),
            key_id: "web".into(),
            edge: None,
            source: Default::default(),
            data: RawJson::empty_object(),
        },
    ]
}

#[test]
fn envelope_v1_golden() {
    let batches = pack(&sample(), &Limits::default()).expect("fits");
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].entries.len(), 1);
    golden("v1_two_events.json", &batches[0].entries[0].body);
}

#[test]
fn golden_v1_decodes_to_the_sample() {
    let body = std::fs::read_to_string(fixture("v1_two_events.json")).expect("fixture");
    assert_eq!(decode(&body).expect("decodes"), sample());
}

#[test]
fn golden_v2_is_refused_with_a_typed_error() {
    let body = std::fs::read_to_string(fixture("v2_unknown.json")).expect("fixture");
    assert_eq!(decode(&body), Err(DecodeError::UnsupportedVersion(2)));
}

#[test]
fn derived_id_golden() {
    golden(
        "derived_id_web_req-1_0_page_view.txt",
        &format!(
            "{}\n",
            derive_id("web", "req-1", 0, r#"{"type":"page_view"}"#)
        ),
    );
}
