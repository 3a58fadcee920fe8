use super::*;

fn check(text: &str) -> Result<(), JsonIssue> {
    check_storable(text, "data", 2, 32)
}

#[test]
fn raw_json_keeps_the_clients_text() {
    let raw = RawJson::from_json(r#"{ "n" : 1e400, "z": -0 }"#).expect("json");
    assert_eq!(raw.get(), r#"{ "n" : 1e400, "z": -0 }"#);
    let wire = serde_json::to_string(&raw).expect("serialise");
    assert_eq!(wire, r#"{ "n" : 1e400, "z": -0 }"#);
    let back: RawJson = serde_json::from_str(&wire).expect("deserialise");
    assert_eq!(back, raw);
    assert_eq!(RawJson::default().get(), "{}");
}

#[test]
fn nul_anywhere_is_found_with_its_path() {
    assert_eq!(
        check(r#"{"s":"a\u0000b"}"#),
        Err(JsonIssue::Nul {
            path: "data.s".into()
        })
    );
    assert_eq!(
        check(r#"{"a":[1,{"k\u0000":2}]}"#),
        Err(JsonIssue::Nul {
            path: "data.a[1].k\u{0}".into()
        })
    );
    // An escaped backslash followed by u0000 is not a NUL.
    assert_eq!(check(r#"{"s":"\\u0000"}"#), Ok(()));
    assert_eq!(check(r#"{"s":"\u0001\u00a0\ud83d\ude00"}"#), Ok(()));
}

#[test]
fn surrogate_escapes_come_in_pairs() {
    for lone in [
        r#"{"s":"\ud800"}"#,
        r#"{"s":"\udc00"}"#,
        r#"{"s":"\ud800x"}"#,
        r#"{"s":"\ude00\ud83d"}"#,
        r#"{"s":"\ud83d\ud83d"}"#,
        r#"{"\ud800":1}"#,
    ] {
        assert!(
            matches!(check(lone), Err(JsonIssue::LoneSurrogate { .. })),
            "{lone}"
        );
    }
    assert_eq!(check(r#"{"s":"\ud83d\ude00\uD83D\uDE00"}"#), Ok(()));
}

#[test]
fn duplicate_keys_compare_decoded() {
    assert_eq!(
        check(r#"{"a":1,"\u0061":2}"#),
        Err(JsonIssue::DuplicateKey {
            path: "data.a".into()
        })
    );
    assert_eq!(check(r#"{"a":{"a":1},"b":{"a":1}}"#), Ok(()));
}

#[test]
fn repeated_keys_are_found_per_object_however_many_and_however_nested() {
    // Keys of an inner object are its own, before and after it.
    assert_eq!(check(r#"{"a":1,"n":{"a":1,"b":2},"b":2}"#), Ok(()));
    assert_eq!(
        check(r#"{"a":1,"n":{"b":1},"a":2}"#),
        Err(JsonIssue::DuplicateKey {
            path: "data.a".into()
        })
    );
    assert_eq!(
        check(r#"{"n":{"b":1,"b":2}}"#),
        Err(JsonIssue::DuplicateKey {
            path: "data.n.b".into()
        })
    );
    // Past the keys compared one by one, in an outer and an inner object.
    let keys = |prefix: &str| -> String {
        (0..40)
            .map(|i| format!(r#""{prefix}{i}":{i}"#))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (outer, inner) = (keys("k"), keys("i"));
    assert_eq!(check(&format!(r#"{{{outer},"n":{{{inner}}}}}"#)), Ok(()));
    assert_eq!(
        check(&format!(r#"{{{outer},"n":{{{inner}}},"k3":0}}"#)),
        Err(JsonIssue::DuplicateKey {
            path: "data.k3".into()
        })
    );
    assert_eq!(
        check(&format!(r#"{{"a":{{{inner},"i39":0}}}}"#)),
        Err(JsonIssue::DuplicateKey {
            path: "data.a.i39".into()
        })
    );
    assert_eq!(
        check(&format!(r#"{{"a":{{{inner}}},"b":{{{inner}}}}}"#)),
        Ok(())
    );
}

#[test]
fn depth_counts_from_the_given_level() {
    assert_eq!(check_storable(r#"{"a":{}}"#, "data", 2, 3), Ok(()));
    assert_eq!(
        check_storable(r#"{"a":{"b":[]}}"#, "data", 2, 3),
        Err(JsonIssue::TooDeep { depth: 4 })
    );
}

#[test]
fn numbers_within_numeric() {
    // Each verdict checked against PostgreSQL 15 (`'<n>'::jsonb`).
    for ok in [
        "0",
        "-0",
        "1e400",
        "1e1001",
        "1e-1000",
        "123.456e-1000",
        "18446744073709551616",
        "3.14159265358979323846",
        "1e131071",
        "0e131072",
        "1E+5",
    ] {
        assert!(numeric_storable(ok), "{ok}");
    }
    for bad in [
        "0.5e-16383",
        "1e131072",
        "1e-16384",
        "0e-16384",
        "1e99999999999999999999",
        "1e-1073741823",
    ] {
        assert!(!numeric_storable(bad), "{bad}");
    }
    let long_fraction = format!("0.{}1", "0".repeat(16382));
    assert!(numeric_storable(&long_fraction));
    let too_long = format!("0.{}1", "0".repeat(16383));
    assert!(!numeric_storable(&too_long));
    let wide = format!("1{}", "0".repeat(131071));
    assert!(numeric_storable(&wide));
    assert!(!numeric_storable(&format!("{wide}0")));
    assert_eq!(
        check(r#"{"x":[1e-16384]}"#),
        Err(JsonIssue::NumberOutOfRange {
            path: "data.x[0]".into(),
            number: "1e-16384".into()
        })
    );
}

#[test]
fn malformed_text_is_reported_not_panicked() {
    for bad in [
        "",
        "{",
        "{\"a\"",
        "{\"a\":",
        "[1,",
        "\"abc",
        "tru",
        "{\"a\":1 x",
        "\"\\u12",
    ] {
        assert!(
            matches!(check(bad), Err(JsonIssue::Malformed { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn edited_members_keep_every_other_byte() {
    let text =
        r#" { "a" : 1e400, "drop":"x","b\u0022":"\ud83d\ude00\n", "n":18446744073709551616.000 } "#;
    let out = edit_members(text, |k, _| {
        if k == "drop" {
            MemberEdit::Drop
        } else {
            MemberEdit::Keep
        }
    })
    .expect("object");
    assert_eq!(
        out,
        r#"{"a" : 1e400,"b\u0022":"\ud83d\ude00\n","n":18446744073709551616.000}"#
    );
    assert_eq!(check(&out), Ok(()));
    // A key is matched as decoded, as PostgreSQL reads it.
    let out = edit_members(r#"{"dr\u006fp":1,"k":2}"#, |k, _| {
        if k == "drop" {
            MemberEdit::Drop
        } else {
            MemberEdit::Keep
        }
    })
    .expect("object");
    assert_eq!(out, r#"{"k":2}"#);
    // Dropping every member leaves an empty object; dropping none returns the text itself.
    let all = edit_members(r#"{"a":1,"b":[2]}"#, |_, _| MemberEdit::Drop).expect("object");
    assert_eq!(all, "{}");
    let same = edit_members(text, |_, _| MemberEdit::Keep).expect("object");
    assert!(matches!(same, Cow::Borrowed(t) if t == text));
    assert!(matches!(
        edit_members("{}", |_, _| MemberEdit::Drop),
        Ok(Cow::Borrowed("{}"))
    ));
}

#[test]
fn replaced_values_keep_their_key_as_written() {
    let text = r#"{"p\u0072ops" : {"t":1,"u":2},"z":0}"#;
    let out = edit_members(text, |k, v| {
        if k == "props" {
            MemberEdit::Replace(
                edit_members(v, |k, _| {
                    if k == "t" {
                        MemberEdit::Drop
                    } else {
                        MemberEdit::Keep
                    }
                })
                .expect("object"),
            )
        } else {
            MemberEdit::Keep
        }
    })
    .expect("object");
    assert_eq!(out, r#"{"p\u0072ops" : {"u":2},"z":0}"#);
    // Replacing a value by its own text is no change.
    let same = edit_members(text, |_, v| MemberEdit::Replace(Cow::Borrowed(v))).expect("object");
    assert!(matches!(same, Cow::Borrowed(_)));
}

#[test]
fn edit_members_refuses_what_is_not_one_object() {
    for text in ["[1]", "\"s\"", "{", r#"{"a":1}x"#, r#"{"a" 1}"#, r#"{a:1}"#] {
        assert!(
            matches!(
                edit_members(text, |_, _| MemberEdit::Keep),
                Err(JsonIssue::Malformed { .. })
            ),
            "{text}"
        );
    }
}
