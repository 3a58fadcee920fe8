//! Inputs `cargo xtask fuzz` found, kept as tests of the property they broke.

use spillway_shared::envelope::encode_event;
use spillway_shared::{decode, encode_message, open, Keyring, SigningKey, Unsigned};

/// Decodes `body`, encodes (and seals) the events again and opens that: the events must not
/// change.
#[track_caller]
fn assert_round_trip(body: &str) {
    let key = SigningKey::new("fuzz", &[b'k'; 32]).expect("key");
    let events = decode(body).expect("decodes");
    let encoded: Vec<Vec<u8>> = events
        .iter()
        .map(|e| encode_event(e).expect("encodes"))
        .collect();
    let sealed = encode_message(encoded.iter().map(Vec::as_slice), &key);
    let again = open(&sealed, &Keyring::new(vec![key], Unsigned::Refuse)).expect("opens again");
    assert_eq!(again, events);
}

/// envelope_decode, crash-e20b76eb: a number that is not an exact f64 (here an integer beyond
/// i64) was parsed without correct rounding, so writing it out and reading it back gave another
/// number: an event changed on every hop (client -> edge -> queue -> consumer -> jsonb).
#[test]
fn numbers_survive_being_written_and_read_again() {
    assert_round_trip(
        r#"{"v":1,"events":[{"id":"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10","type":"t",
            "received_at":"2026-11-28T07:00:00Z","key_id":"app",
            "data":{"neg":-92267424073709551616}}]}"#,
    );
    for n in [
        "-92267424073709551616",
        "0.0000000000000002",
        "-1e-300",
        "2.2250738585072011e-308",
        "1.7976931348623157e308",
        "9007199254740993",
        "0.1",
        "123456789012345678901234567890",
    ] {
        assert_round_trip(&format!(
            r#"{{"v":1,"events":[{{"id":"0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10","type":"t","received_at":"2026-11-28T07:00:00Z","key_id":"app","data":{{"n":{n},"in":[{n}]}}}}]}}"#
        ));
    }
}
