//! Unit tests of the pure parts of the DLQ tool.

use super::*;
use crate::config::tests::env;
use crate::keys::testing::test_keyring;
use crate::testing::{body, event};
use std::collections::{HashMap, HashSet};

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use spillway_shared::DecodeError;
use uuid::Uuid;

use super::plan::sendable;

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

const DLQ: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/spillway-dlq";
const QUEUE: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/spillway";

fn run(a: &str, pairs: &[(&str, &str)]) -> Result<DlqArgs, UsageError> {
    match parse_args(&args(a), &env(pairs))? {
        Parsed::Run(r) => Ok(r),
        Parsed::Help => panic!("help for `{a}`"),
    }
}

#[test]
fn flags_win_over_the_environment() {
    let r = run(
        &format!("list --dlq-url {DLQ}"),
        &[("SQS_DLQ_URL", "http://127.0.0.1:5000/1/other")],
    )
    .expect("valid");
    assert_eq!(r.command, Command::List);
    assert_eq!(r.dlq_url, DLQ);
    assert_eq!(r.endpoint, "https://sqs.eu-west-1.amazonaws.com");
    assert_eq!(r.max, 100);
    assert_eq!(r.queue_url, None);

    let r = run(
        "redrive --dry-run --max=5",
        &[
            ("SQS_DLQ_URL", "http://127.0.0.1:5000/1/q-dlq"),
            ("SQS_QUEUE_URL", "http://127.0.0.1:5000/1/q"),
            ("SQS_ENDPOINT", "http://localhost:4566/"),
        ],
    )
    .expect("valid");
    assert_eq!(r.command, Command::Redrive { dry_run: true });
    assert_eq!(r.queue_url.as_deref(), Some("http://127.0.0.1:5000/1/q"));
    assert_eq!(r.endpoint, "http://localhost:4566");
    assert_eq!(r.max, 5);

    let r = run(&format!("peek --dlq-url={DLQ}"), &[]).expect("valid");
    assert_eq!((r.command, r.max), (Command::Peek, 10));
    let r = run(&format!("redrive --dlq-url {DLQ} --queue-url {QUEUE}"), &[]).expect("valid");
    assert_eq!(r.max, usize::MAX);
}

#[test]
fn bad_command_lines_say_what_is_wrong() {
    let dlq = [("SQS_DLQ_URL", DLQ)];
    // A command line, its environment, the error.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], UsageError);
    let cases: &[Case] = &[
        ("", &dlq, UsageError::NoCommand),
        ("show", &dlq, UsageError::UnknownCommand("show".into())),
        ("list list", &dlq, UsageError::UnknownCommand("list".into())),
        (
            "list --all",
            &dlq,
            UsageError::UnknownOption("--all".into()),
        ),
        ("list --max", &dlq, UsageError::MissingValue("--max")),
        ("list --max 0", &dlq, UsageError::BadMax("0".into())),
        ("list --max ten", &dlq, UsageError::BadMax("ten".into())),
        ("list --dry-run", &dlq, UsageError::DryRunWithoutRedrive),
        ("list", &[], UsageError::Missing("--dlq-url", "SQS_DLQ_URL")),
        (
            "redrive",
            &dlq,
            UsageError::Missing("--queue-url", "SQS_QUEUE_URL"),
        ),
        (
            "list --dlq-url spillway-dlq",
            &[],
            UsageError::NotAUrl {
                name: "the DLQ URL",
                value: "spillway-dlq".into(),
            },
        ),
        (
            "redrive",
            &[("SQS_DLQ_URL", DLQ), ("SQS_QUEUE_URL", DLQ)],
            UsageError::SameQueue,
        ),
        (
            "list --dlq-url http://127.0.0.1:5000/1/q-dlq.fifo",
            &[],
            UsageError::Fifo("http://127.0.0.1:5000/1/q-dlq.fifo".into()),
        ),
    ];
    for (line, pairs, expected) in cases {
        assert_eq!(run(line, pairs).as_ref(), Err(expected), "`{line}`");
    }
    assert_eq!(
        parse_args(&args("redrive --help"), &env(&[])),
        Ok(Parsed::Help)
    );
}

fn message(id: &str, body: &str) -> Message {
    Message::builder()
        .message_id(id)
        .receipt_handle(format!("rh-{id}"))
        .body(body)
        .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "11")
        .attributes(MessageSystemAttributeName::SentTimestamp, "1795852799123")
        .attributes(
            MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
            "1795852800000",
        )
        .build()
}

/// One sealed body carrying the fixture's events `ids`.
fn envelope(ids: &[u128]) -> String {
    let events: Vec<_> = ids.iter().copied().map(event).collect();
    body(&events)
}

#[test]
fn the_report_line_names_the_reason() {
    let poison = MessageInfo::of(&message("m-1", "this is not JSON"), Some(&test_keyring()));
    assert!(matches!(
        poison.reason,
        Reason::Undecodable(DecodeError::InvalidJson(_))
    ));
    let line = poison.line();
    assert!(
        line.starts_with(
            "m-1  receives 11  sent 2026-11-28T07:59:59.123Z  \
             first received 2026-11-28T08:00:00.000Z  16 bytes  undecodable: body is not JSON: "
        ),
        "{line}"
    );

    let version = MessageInfo::of(&message("m-2", r#"{"v":3,"events":[]}"#), None);
    assert!(version.line().ends_with(
        "undecodable: envelope version 3 is not supported (this build reads versions 1 and 2)"
    ));

    let body = envelope(&[1, 2, 3, 4, 5]);
    let good = MessageInfo::of(&message("m-3", &body), Some(&test_keyring()));
    assert_eq!(good.body_bytes, body.len());
    assert!(
        good.line().ends_with(
            "decodes fine, seal verified (failed in the database or was retried out): 5 events: \
             00000000-0000-0000-0000-000000000001, 00000000-0000-0000-0000-000000000002, \
             00000000-0000-0000-0000-000000000003 and 2 more"
        ),
        "{}",
        good.line()
    );
    let one = MessageInfo::of(&message("m-4", &envelope(&[7])), None);
    assert!(one.line().ends_with(
        "decodes fine, seal not checked (set ENVELOPE_KEYS to check it) \
         (failed in the database or was retried out): 1 event: \
         00000000-0000-0000-0000-000000000007"
    ));

    let bare = MessageInfo::of(
        &Message::builder().message_id("m-5").body("{}").build(),
        Some(&test_keyring()),
    );
    assert!(
        bare.line()
            .starts_with("m-5  receives ?  sent ?  first received ?  2 bytes  undecodable: "),
        "{}",
        bare.line()
    );
}

#[test]
fn peek_shows_every_event_id_and_the_body() {
    let body = envelope(&[1, 2, 3, 4]);
    let text = peek_text(&message("m-1", &body), Some(&test_keyring()));
    for n in 1..=4u128 {
        assert!(
            text.contains(&format!("\n    {}", Uuid::from_u128(n))),
            "{text}"
        );
    }
    assert!(text.ends_with(&format!("\n  body: {body}")));
}

#[test]
fn only_what_sqs_confirmed_is_deleted() {
    let batch = [
        message("a", "x"),
        message("b", "y"),
        message("c", "z"),
        Message::builder().message_id("d").body("w").build(),
    ];
    let ok = [
        ("m0".to_owned(), "new-a".to_owned()),
        ("m3".to_owned(), "new-d".to_owned()),
    ];
    let failed = [("m1".to_owned(), "InvalidMessageContents: bad".to_owned())];
    let plan = plan_redrive(&batch, &ok, &failed);
    assert_eq!(
        plan,
        [
            Sent::Yes {
                message_id: "a".into(),
                new_id: "new-a".into(),
                receipt_handle: "rh-a".into()
            },
            Sent::No {
                message_id: "b".into(),
                reason: "InvalidMessageContents: bad".into()
            },
            Sent::No {
                message_id: "c".into(),
                reason: "SQS did not answer for it".into()
            },
            Sent::No {
                message_id: "d".into(),
                reason: "sent, but it has no receipt handle to delete it with".into()
            },
        ]
    );
}

#[test]
fn a_message_seen_again_is_not_new_and_keeps_its_newest_receipt_handle() {
    let mut ids = HashSet::new();
    let mut known = split_new(
        vec![message("a", "x"), message("b", "y")],
        &mut ids,
        &mut [],
    );
    assert_eq!(known.len(), 2);
    let mut again = message("a", "x");
    again.receipt_handle = Some("rh-a-2".into());
    let new = split_new(vec![again, message("c", "z")], &mut ids, &mut known);
    let new_ids: Vec<_> = new.iter().filter_map(Message::message_id).collect();
    assert_eq!(new_ids, ["c"]);
    let handles: Vec<_> = known.iter().filter_map(Message::receipt_handle).collect();
    assert_eq!(handles, ["rh-a-2", "rh-b"]);
    // Seen before but not kept (moved already): dropped, not new again.
    assert!(split_new(vec![message("b", "y")], &mut ids, &mut []).is_empty());
}

#[test]
fn only_plain_attributes_are_sent_again() {
    let attrs: HashMap<String, MessageAttributeValue> = [(
        "trace".to_owned(),
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value("abc")
            .set_string_list_values(Some(vec![]))
            .build()
            .expect("attr"),
    )]
    .into();
    let kept = sendable(Some(&attrs)).expect("kept");
    assert_eq!(kept["trace"].string_value(), Some("abc"));
    assert_eq!(kept["trace"].string_list_values(), &[] as &[String]);
    assert!(kept["trace"].string_list_values.is_none());
    assert_eq!(sendable(Some(&HashMap::new())), None);
    assert_eq!(sendable(None), None);
}

/// A message on the queue that the edge did not seal, or that was changed after sealing, is
/// named as such, with the reason.
#[test]
fn forged_and_altered_envelopes_are_named_unverified() {
    let keys = test_keyring();
    let sealed = envelope(&[1]);
    let altered = sealed.replacen(r#""key_id":"web""#, r#""key_id":"other-tenant""#, 1);
    assert_ne!(altered, sealed);
    let line = MessageInfo::of(&message("m-1", &altered), Some(&keys)).line();
    assert!(
        line.ends_with(
            "unverified, never stored: signature does not verify under key id \"test-1\": \
             altered, or not sent by the edge"
        ),
        "{line}"
    );
    let forged = r#"{"v":1,"events":[{"id":"00000000-0000-0000-0000-000000000001","type":"t","received_at":"2020-01-01T00:00:00Z","key_id":"web","data":{}}]}"#;
    let line = MessageInfo::of(&message("m-2", forged), Some(&keys)).line();
    assert!(
        line.contains("unverified, never stored: unsigned envelope (version 1)"),
        "{line}"
    );
}

/// An escape sequence in a body once cleared the screen of whoever peeked at it.
#[test]
fn peek_never_prints_control_characters() {
    let body = "{\"v\":1,\u{1b}[2J\u{1b}]0;owned\u{7}\r\u{9b}31m\u{202e}txt.exe\u{2028}";
    let text = peek_text(&message("m-1", body), Some(&test_keyring()));
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "a raw control character: {text:?}"
    );
    assert!(
        !text.contains('\u{202e}') && !text.contains('\u{2028}'),
        "{text:?}"
    );
    assert!(
        text.ends_with(
            "body: {\"v\":1,\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\u{d}\\u{9b}31m\\u{202e}txt.exe\\u{2028}"
        ),
        "{text}"
    );
    // The line is escaped too: the reason can quote the body.
    let info = MessageInfo::of(&message("m-\u{1b}c", body), None);
    assert!(!info.line().contains('\u{1b}'), "{}", info.line());
    // Ordinary text, non-ASCII included, is left as it is.
    assert_eq!(printable("héllo 🦀 \"x\""), "héllo 🦀 \"x\"");
}

/// A Kinesis dead letter as the handler sends it, received from the DLQ.
fn kinesis_message(id: &str, letter: &crate::dead_letter::DeadLetter) -> Message {
    use crate::dead_letter::AttrValue;
    let m = letter.to_message();
    let mut attrs = HashMap::new();
    for (name, value) in m.attributes {
        let v = match value {
            AttrValue::Text(s) => MessageAttributeValue::builder()
                .data_type("String")
                .string_value(s),
            AttrValue::Binary(b) => MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(aws_sdk_sqs::primitives::Blob::new(b)),
        }
        .build()
        .expect("attribute");
        attrs.insert(name.to_owned(), v);
    }
    Message::builder()
        .message_id(id)
        .receipt_handle(format!("rh-{id}"))
        .body(m.body)
        .set_message_attributes(Some(attrs))
        .build()
}

fn letter(data: &[u8]) -> crate::dead_letter::DeadLetter {
    crate::dead_letter::DeadLetter {
        data: data.to_vec(),
        stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/spillway".into(),
        shard_id: "shardId-000000000003".into(),
        sequence_number: "49658312345678901234567890123456789012345678901234567906".into(),
        partition_key: "pk-1".into(),
        reason: "store_data: write failed: refused".into(),
    }
}

#[test]
fn a_kinesis_dead_letter_is_listed_with_its_origin() {
    let good = body(&[event(1), event(2)]);
    let info = MessageInfo::of(
        &kinesis_message("k-1", &letter(good.as_bytes())),
        Some(&test_keyring()),
    );
    let line = info.line();
    assert!(
        line.contains(
            "kinesis stream arn:aws:kinesis:us-east-1:000000000000:stream/spillway \
             shard shardId-000000000003 \
             sequence 49658312345678901234567890123456789012345678901234567906 \
             partition key pk-1: store_data: write failed: refused"
        ),
        "{line}"
    );
    assert!(line.contains("decodes fine, seal verified"), "{line}");
    // Data sent base64 is judged as the data, not as its base64 text.
    let info = MessageInfo::of(&kinesis_message("k-2", &letter(b"\xff\xfe")), None);
    assert_eq!(info.body_bytes, 2);
    assert!(
        matches!(info.reason, Reason::Undecodable(_)),
        "{:?}",
        info.reason
    );
    // An SQS dead letter says nothing of Kinesis.
    let plain = MessageInfo::of(&message("m-1", &good), None);
    assert!(plain.kinesis.is_none());
    assert!(!plain.line().contains("kinesis"));
}

#[test]
fn with_the_kinesis_buffer_redrive_needs_no_main_queue() {
    let r = run(
        "redrive",
        &[
            ("DEAD_LETTER_QUEUE_URL", DLQ),
            ("BUFFER", "kinesis"),
            ("KINESIS_ENDPOINT", "http://127.0.0.1:4567/"),
        ],
    )
    .expect("valid");
    assert_eq!(r.dlq_url, DLQ);
    assert_eq!(r.queue_url, None);
    assert_eq!(r.kinesis_endpoint.as_deref(), Some("http://127.0.0.1:4567"));
    assert_eq!(
        run("redrive", &[("SQS_DLQ_URL", DLQ), ("BUFFER", "sqs")]).err(),
        Some(UsageError::Missing("--queue-url", "SQS_QUEUE_URL"))
    );
    assert!(matches!(
        run(
            "list",
            &[("SQS_DLQ_URL", DLQ), ("KINESIS_ENDPOINT", "nope")]
        ),
        Err(UsageError::NotAUrl {
            name: "KINESIS_ENDPOINT",
            ..
        })
    ));
}

#[test]
fn put_records_calls_keep_to_one_stream_and_the_limits() {
    let mb = 1024 * 1024;
    let calls = put_calls(&[("a", mb), ("b", 10), ("a", mb), ("a", 3 * mb), ("a", 1)]);
    // Stream a: 1 + 1 + 3 MiB = 5 MiB fits exactly; the next byte opens a new call.
    assert_eq!(calls, [vec![0, 2, 3], vec![1], vec![4]]);
    let many: Vec<(&str, usize)> = (0..501).map(|_| ("s", 1)).collect();
    let calls = put_calls(&many);
    assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [500, 1]);
    // A record larger than a call goes alone.
    assert_eq!(put_calls(&[("s", 6 * mb), ("s", 1)]), [vec![0], vec![1]]);
}

#[test]
fn every_put_records_entry_is_read() {
    let ok = |shard: &str, seq: &str| PutResult {
        shard_id: Some(shard.into()),
        sequence_number: Some(seq.into()),
        ..PutResult::default()
    };
    let refused = PutResult {
        error_code: Some("ProvisionedThroughputExceededException".into()),
        error_message: Some("Rate exceeded for shard".into()),
        ..PutResult::default()
    };
    // The call succeeded as a whole; entry 1 failed, entry 3 is missing from the answer.
    let answers = read_put_records(4, &[ok("shardId-1", "11"), refused, ok("shardId-0", "12")]);
    assert_eq!(
        answers,
        [
            Ok("shardId-1/11".to_owned()),
            Err("ProvisionedThroughputExceededException: Rate exceeded for shard".to_owned()),
            Ok("shardId-0/12".to_owned()),
            Err("Kinesis did not answer for it".to_owned()),
        ]
    );
    assert!(read_put_records(1, &[PutResult::default()])[0].is_err());
    // An empty sequence number acknowledges nothing: the dead letter stays.
    assert!(read_put_records(1, &[ok("shardId-0", "")])[0].is_err());
}
