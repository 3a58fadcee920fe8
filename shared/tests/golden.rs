//! Golden files pin the envelope format: a change here is a wire-format change that every
//! deployed consumer must understand, so it needs a new envelope version.
//!
//! Regenerate deliberately with `SPILLWAY_BLESS=1 cargo test -p spillway-shared --test golden`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use spillway_shared::{
    decode, derive_id, open, pack, BufferLimits, DecodeError, EdgeInfo, Event, Keyring, RawJson,
    SealError, SigningKey, Unsigned,
};
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
            event_time: None,
            key_id: "web".into(),
            edge: Some(EdgeInfo {
                colo: Some("FRA".into()),
                country: Some("DE".into()),
                ..Default::default()
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
            event_time: None,
            key_id: "web".into(),
            edge: None,
            source: Default::default(),
            data: RawJson::empty_object(),
        },
    ]
}

/// The key the golden body is sealed with. A fixture's secret, never a deployment's.
fn golden_key() -> SigningKey {
    SigningKey::new("golden-2026", b"spillway-golden-fixture-secret-of-40-bytes").expect("key")
}

fn keyring(unsigned: Unsigned) -> Keyring {
    Keyring::new(vec![golden_key()], unsigned)
}

#[test]
fn envelope_v2_golden() {
    let batches = pack(&sample(), &BufferLimits::default(), &golden_key()).expect("fits");
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].entries.len(), 1);
    golden("v2_two_events.json", &batches[0].entries[0].body);
}

#[test]
fn golden_v2_opens_to_the_sample() {
    let body = std::fs::read_to_string(fixture("v2_two_events.json")).expect("fixture");
    assert_eq!(
        open(&body, &keyring(Unsigned::Refuse)).expect("opens"),
        sample()
    );
}

#[test]
fn golden_v2_altered_or_unknown_is_refused() {
    let body = std::fs::read_to_string(fixture("v2_two_events.json")).expect("fixture");
    // Another tenant's key id, an older receive time, another source: each one byte or field.
    for (from, to) in [
        (r#""key_id":"web""#, r#""key_id":"wex""#),
        ("2026-11-28T08:00:00.123Z", "2020-11-28T08:00:00.123Z"),
        (r#""data":{}"#, r#""source":"posthog","data":{}"#),
    ] {
        let altered = body.replacen(from, to, 1);
        assert_ne!(altered, body);
        assert_eq!(
            open(&altered, &keyring(Unsigned::Refuse)),
            Err(DecodeError::Seal(SealError::BadSignature(
                "golden-2026".into()
            ))),
            "{from} -> {to}"
        );
    }
    let other = Keyring::new(
        vec![SigningKey::new("other", &[b'o'; 32]).expect("key")],
        Unsigned::Accept,
    );
    assert_eq!(
        open(&body, &other),
        Err(DecodeError::Seal(SealError::UnknownKid(
            "golden-2026".into()
        )))
    );
    // The same kid with another secret does not verify either.
    let forged = Keyring::new(
        vec![SigningKey::new("golden-2026", &[b'f'; 32]).expect("key")],
        Unsigned::Refuse,
    );
    assert_eq!(
        open(&body, &forged),
        Err(DecodeError::Seal(SealError::BadSignature(
            "golden-2026".into()
        )))
    );
    // Without its signature, or with the signature moved, it is not sealed.
    let cut = body.rfind(r#","sig":"#).expect("sig");
    let unsigned = format!("{}}}", &body[..cut]);
    assert_eq!(
        open(&unsigned, &keyring(Unsigned::Accept)),
        Err(DecodeError::Seal(SealError::NoSignature))
    );
    let no_kid = body.replacen(r#""kid":"golden-2026","#, "", 1);
    assert_eq!(
        open(&no_kid, &keyring(Unsigned::Refuse)),
        Err(DecodeError::Seal(SealError::NoKid))
    );
}

/// Version 1, unsigned, is what edges before the seal wrote: read by tools, stored only while
/// an upgrade accepts it.
#[test]
fn golden_v1_is_refused_unless_unsigned_bodies_are_accepted() {
    let body = std::fs::read_to_string(fixture("v1_two_events.json")).expect("fixture");
    assert_eq!(decode(&body).expect("decodes"), sample());
    assert_eq!(
        open(&body, &keyring(Unsigned::Refuse)),
        Err(DecodeError::Seal(SealError::Unsigned))
    );
    assert_eq!(
        open(&body, &keyring(Unsigned::Accept)).expect("accepted"),
        sample()
    );
}

#[test]
fn golden_v3_is_refused_with_a_typed_error() {
    let body = std::fs::read_to_string(fixture("v3_unknown.json")).expect("fixture");
    assert_eq!(decode(&body), Err(DecodeError::UnsupportedVersion(3)));
    assert_eq!(
        open(&body, &keyring(Unsigned::Accept)),
        Err(DecodeError::UnsupportedVersion(3))
    );
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
