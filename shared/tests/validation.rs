//! One test per validation rule of the public event model.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use spillway_shared::{
    assign_ids, derive_id, validate_event, validate_events, Code, IdSource, Problem, RequestLimits,
};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T08:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

fn check(v: Value) -> Result<spillway_shared::ValidEvent, Vec<Problem>> {
    validate_event(&v.to_string(), 0, &RequestLimits::default(), now())
}

fn check_text(text: &str) -> Result<spillway_shared::ValidEvent, Vec<Problem>> {
    validate_event(text, 0, &RequestLimits::default(), now())
}

#[test]
fn ids_are_hyphenated_uuids_only() {
    for id in [
        "{6e1a1f52-0d8e-4c1e-9f0b-3a2b1c4d5e6f}",
        "urn:uuid:6e1a1f52-0d8e-4c1e-9f0b-3a2b1c4d5e6f",
        "6e1a1f520d8e4c1e9f0b3a2b1c4d5e6f",
    ] {
        assert_eq!(
            codes(check(json!({"type": "t", "id": id}))),
            vec![(Code::InvalidField, Some("id".into()))],
            "{id}"
        );
    }
    assert!(check(json!({"type": "t", "id": "6E1A1F52-0D8E-4C1E-9F0B-3A2B1C4D5E6F"})).is_ok());
}

#[test]
fn data_is_kept_exactly_as_written() {
    let text = r#"{"type":"t","data":{ "pi": 3.14159265358979323846, "big": 18446744073709551616,
        "huge": 1e400, "tiny": 1e-400, "neg0": -0, "s": "\u00e9\/" }}"#;
    let e = check_text(text).expect("valid");
    assert_eq!(
        e.data.get(),
        r#"{ "pi": 3.14159265358979323846, "big": 18446744073709551616,
        "huge": 1e400, "tiny": 1e-400, "neg0": -0, "s": "\u00e9\/" }"#
    );
}

#[test]
fn what_postgresql_cannot_store_is_refused_naming_the_field() {
    for (text, field, needle) in [
        (r#"{"type":"t","data":{"s":"a\u0000b"}}"#, "data", "data.s"),
        (r#"{"type":"t","data":{"k\u0000":1}}"#, "data", "NUL"),
        (r#"{"type":"a\u0000b"}"#, "type", "U+0000"),
        (
            r#"{"type":"t","data":{"n":[1e-16384]}}"#,
            "data",
            "data.n[0]",
        ),
        (r#"{"type":"t","data":{"n":1e131072}}"#, "data", "numeric"),
    ] {
        let p = check_text(text).expect_err(text);
        assert_eq!(p.len(), 1, "{text}: {p:?}");
        assert_eq!(p[0].code, Code::InvalidField, "{text}");
        assert_eq!(p[0].field.as_deref(), Some(field), "{text}");
        assert!(p[0].message.contains(needle), "{text}: {}", p[0].message);
    }
}

#[test]
fn duplicate_keys_are_refused_at_any_level() {
    for (text, field) in [
        (r#"{"type":"a","type":"b"}"#, None),
        (
            r#"{"type":"t","data":{"a":1,"a":2}}"#,
            Some("data".to_owned()),
        ),
        (
            r#"{"type":"t","data":{"x":{"a":1,"\u0061":2}}}"#,
            Some("data".to_owned()),
        ),
        // Top-level keys compare as decoded, escaped or not, however many there are.
        (r#"{"type":"a","\u0074ype":"b"}"#, None),
        (r#"{"\u0074ype":"a","type":"b"}"#, None),
    ] {
        assert_eq!(
            codes(check_text(text)),
            vec![(Code::InvalidJson, field)],
            "{text}"
        );
    }
    let many: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
    let repeated = format!(r#"{{"type":"a",{},"k7":0}}"#, many.join(","));
    let err = check_text(&repeated).expect_err("k7 twice");
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].code, Code::InvalidJson);
    assert!(
        err[0].message.starts_with("duplicate key `k7` at"),
        "{err:?}"
    );
    // Once each, they are only unknown.
    let unknown = check_text(&format!(r#"{{"type":"a",{}}}"#, many.join(","))).expect_err("");
    assert_eq!(unknown.len(), 40);
    assert!(unknown.iter().all(|p| p.code == Code::UnknownField));
}

#[test]
fn an_escaped_field_name_is_the_field() {
    let e = check_text(r#"{"\u0074ype":"a","d\u0061ta":{"k":1}}"#).expect("valid");
    assert_eq!(e.event_type, "a");
    assert_eq!(e.data.get(), r#"{"k":1}"#);
    let p = check_text(r#"{"type":"a","\u0078":1}"#).expect_err("unknown");
    assert_eq!(
        codes(Err(p)),
        vec![(Code::UnknownField, Some("x".to_owned()))]
    );
}

#[test]
fn timestamps_are_stored_as_postgresql_reads_them() {
    let e =
        check_text(r#"{"type":"t","timestamp":"2026-11-28T07:00:00.0000015Z"}"#).expect("valid");
    assert_eq!(
        e.occurred_at.map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-11-28T07:00:00.000002+00:00")
    );
    assert_eq!(
        codes(check_text(
            r#"{"type":"t","timestamp":"2026-11-28T07:00:60Z"}"#
        )),
        vec![(Code::InvalidField, Some("timestamp".into()))]
    );
}

fn codes(r: Result<spillway_shared::ValidEvent, Vec<Problem>>) -> Vec<(Code, Option<String>)> {
    r.expect_err("should be invalid")
        .into_iter()
        .map(|p| (p.code, p.field))
        .collect()
}

#[test]
fn minimal_event_is_valid_with_empty_data() {
    let e = check(json!({"type": "page_view"})).expect("valid");
    assert_eq!(e.event_type, "page_view");
    assert_eq!(e.id, None);
    assert_eq!(e.occurred_at, None);
    assert_eq!(e.data.get(), "{}");
}

#[test]
fn full_event_is_valid() {
    let e = check(json!({
        "type": "signup",
        "id": "0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10",
        "timestamp": "2026-11-28T09:30:00+01:00",
        "data": {"plan": "pro", "seats": 3}
    }))
    .expect("valid");
    assert_eq!(
        e.id.map(|u| u.to_string()).as_deref(),
        Some("0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10")
    );
    assert_eq!(
        e.occurred_at.map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-11-28T08:30:00+00:00"),
        "normalised to UTC"
    );
    assert_eq!(e.data.get(), r#"{"plan":"pro","seats":3}"#);
}

#[test]
fn not_an_object() {
    for v in [json!([]), json!("x"), json!(1), json!(null), json!(true)] {
        assert_eq!(codes(check(v)), vec![(Code::InvalidEvent, None)]);
    }
}

#[test]
fn type_is_required() {
    assert_eq!(
        codes(check(json!({"data": {}}))),
        vec![(Code::MissingField, Some("type".into()))]
    );
}

#[test]
fn type_must_be_a_string_of_1_to_128_chars() {
    for bad in [json!(""), json!(5), json!(null), json!("é".repeat(129))] {
        assert_eq!(
            codes(check(json!({"type": bad}))),
            vec![(Code::InvalidField, Some("type".into()))],
            "{bad}"
        );
    }
    assert!(
        check(json!({"type": "é".repeat(128)})).is_ok(),
        "128 chars, 256 bytes"
    );
}

#[test]
fn id_must_be_a_uuid() {
    for bad in [
        json!("not-a-uuid"),
        json!(123),
        json!("00000000-0000-0000-0000-000000000000"),
        json!("ffffffff-ffff-ffff-ffff-ffffffffffff"),
        json!(null),
    ] {
        assert_eq!(
            codes(check(json!({"type": "t", "id": bad}))),
            vec![(Code::InvalidField, Some("id".into()))],
            "{bad}"
        );
    }
}

#[test]
fn timestamp_must_be_rfc3339() {
    for bad in [
        json!("2026-11-28"),
        json!("yesterday"),
        json!(1764316800),
        json!("2026-11-28 08:00:00"),
    ] {
        assert_eq!(
            codes(check(json!({"type": "t", "timestamp": bad}))),
            vec![(Code::InvalidField, Some("timestamp".into()))],
            "{bad}"
        );
    }
}

#[test]
fn timestamp_window_is_one_day_ahead_and_a_year_behind() {
    let at = |d: Duration| json!({"type": "t", "timestamp": (now() + d).to_rfc3339()});
    assert!(check(at(Duration::hours(23))).is_ok());
    assert!(check(at(-Duration::days(364))).is_ok());
    for far in [Duration::days(2), -Duration::days(366)] {
        assert_eq!(
            codes(check(at(far))),
            vec![(Code::TimestampOutOfRange, Some("timestamp".into()))]
        );
    }
}

#[test]
fn data_must_be_an_object() {
    for bad in [json!([]), json!("x"), json!(null), json!(1)] {
        assert_eq!(
            codes(check(json!({"type": "t", "data": bad}))),
            vec![(Code::InvalidField, Some("data".into()))]
        );
    }
}

#[test]
fn data_depth_is_limited() {
    let limits = RequestLimits::default();
    // Event (1) + data (2) + nested objects: build exactly the limit, then one more.
    let nest = |levels: usize| {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!({ "a": v });
        }
        v
    };
    let ok = json!({"type": "t", "data": nest(limits.max_json_depth - 1)});
    assert!(check(ok).is_ok());
    let deep = json!({"type": "t", "data": nest(limits.max_json_depth)});
    assert_eq!(
        codes(check(deep)),
        vec![(Code::TooDeep, Some("data".into()))]
    );
}

#[test]
fn unknown_fields_are_named() {
    let p = check(json!({"type": "t", "user": 1})).expect_err("invalid");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].code, Code::UnknownField);
    assert_eq!(p[0].field.as_deref(), Some("user"));
    assert!(p[0].message.contains("`user`"));
}

#[test]
fn every_problem_is_reported() {
    let p = codes(check(json!({"id": "x", "timestamp": 3, "extra": 1})));
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(p.contains(&(Code::InvalidField, Some("id".into()))));
    assert!(p.contains(&(Code::InvalidField, Some("timestamp".into()))));
    assert!(p.contains(&(Code::UnknownField, Some("extra".into()))));
    assert!(p.contains(&(Code::MissingField, Some("type".into()))));
}

#[test]
fn event_size_is_limited() {
    let limits = RequestLimits::default();
    // Measured on the client's bytes, whitespace included.
    let sized = |n: usize| format!("{{\"type\":\"t\"{}}}", " ".repeat(n - 12));
    let r = validate_event(&sized(limits.max_event_bytes + 1), 4, &limits, now());
    let p = r.expect_err("too large");
    assert_eq!(p[0].code, Code::EventTooLarge);
    assert_eq!(p[0].index, Some(4));
    assert!(validate_event(&sized(limits.max_event_bytes), 4, &limits, now()).is_ok());
}

#[test]
fn event_count_is_limited() {
    let limits = RequestLimits {
        max_events_per_request: 3,
        ..RequestLimits::default()
    };
    let items = |n| vec![r#"{"type":"t"}"#; n];
    assert_eq!(
        validate_events(&items(3), &limits, now()).map(|v| v.len()),
        Ok(3)
    );
    let p = validate_events(&items(4), &limits, now()).expect_err("too many");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].code, Code::TooManyEvents);
    assert_eq!(p[0].index, None);
}

#[test]
fn duplicate_client_ids_in_one_request() {
    let id = "0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10";
    let a = format!(r#"{{"type":"a","id":"{id}"}}"#);
    let c = format!(r#"{{"type":"c","id":"{id}"}}"#);
    let items = [a.as_str(), r#"{"type":"b"}"#, c.as_str()];
    let valid = validate_events(&items, &RequestLimits::default(), now()).expect("each is valid");
    let source = IdSource::Generated { unix_ms: 0 };
    let p = assign_ids(&valid, &items, &source, &mut || [7; 10]).expect_err("dup");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].code, Code::DuplicateId);
    assert_eq!(p[0].index, Some(2));
}

/// Each repeat names the latest earlier event with its id, in small requests and large ones.
#[test]
fn each_repeated_id_names_the_latest_earlier_event() {
    let id = "0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10";
    let same = format!(r#"{{"type":"a","id":"{id}"}}"#);
    for n in [3, 16, 17, 40] {
        // Events 0, n/2 and n-1 share the id; the others get fresh ones.
        let items: Vec<&str> = (0..n)
            .map(|i| {
                if i == 0 || i == n / 2 || i == n - 1 {
                    same.as_str()
                } else {
                    r#"{"type":"b"}"#
                }
            })
            .collect();
        let valid =
            validate_events(&items, &RequestLimits::default(), now()).expect("each is valid");
        let mut k = 0u8;
        let mut random = || {
            k += 1;
            [k; 10]
        };
        let source = IdSource::Generated { unix_ms: 0 };
        let p = assign_ids(&valid, &items, &source, &mut random).expect_err("dup");
        let found: Vec<(Option<usize>, String)> =
            p.into_iter().map(|p| (p.index, p.message)).collect();
        let (mid, last) = (n / 2, n - 1);
        assert_eq!(
            found,
            vec![
                (
                    Some(mid),
                    format!("event {mid} would have the id {id} of event 0")
                ),
                (
                    Some(last),
                    format!("event {last} would have the id {id} of event {mid}")
                ),
            ],
            "{n} events"
        );
    }
}

#[test]
fn a_client_id_equal_to_a_derived_id_is_a_duplicate() {
    // The final ids are compared, whatever made them: event 1's derived id, sent as event 0's
    // own `id`, would otherwise answer `ids: [x, x]` and store one row.
    let second = r#"{"type":"b"}"#;
    let source = IdSource::Idempotency {
        key_id: "web",
        idempotency_key: "req-1",
    };
    let derived = derive_id("web", "req-1", 1, second);
    let first = format!(r#"{{"type":"a","id":"{derived}"}}"#);
    let items = [first.as_str(), second];
    let valid = validate_events(&items, &RequestLimits::default(), now()).expect("each is valid");
    let p = assign_ids(&valid, &items, &source, &mut || [7; 10]).expect_err("dup");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].code, Code::DuplicateId);
    assert_eq!(p[0].index, Some(1));
}

#[test]
fn problems_carry_the_event_index_in_order() {
    let items = [r#"{"type":"ok"}"#, r#"{"nope":1}"#, r#""x""#];
    let p = validate_events(&items, &RequestLimits::default(), now()).expect_err("invalid");
    let idx: Vec<_> = p.iter().map(|p| p.index).collect();
    assert_eq!(idx, vec![Some(1), Some(1), Some(2)]);
}

#[test]
fn codes_have_stable_names() {
    let all = [
        (Code::InvalidJson, "invalid_json"),
        (Code::InvalidEvent, "invalid_event"),
        (Code::MissingField, "missing_field"),
        (Code::InvalidField, "invalid_field"),
        (Code::UnknownField, "unknown_field"),
        (Code::DuplicateId, "duplicate_id"),
        (Code::TimestampOutOfRange, "timestamp_out_of_range"),
        (Code::TooDeep, "too_deep"),
        (Code::EventTooLarge, "event_too_large"),
        (Code::TooManyEvents, "too_many_events"),
    ];
    for (code, name) in all {
        assert_eq!(code.as_str(), name);
        assert_eq!(serde_json::to_value(code).expect("serialises"), json!(name));
    }
}
