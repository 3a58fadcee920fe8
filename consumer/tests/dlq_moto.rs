//! The `spillway-dlq` binary against the local SQS (moto): it lists dead letters with the
//! reason they failed and leaves them where they are, a dry-run redrive moves nothing, and a
//! redrive moves every message to the main queue and empties the DLQ.

mod common;

use std::process::{Command, Output};

use common::*;
use spillway_support::{LocalSqs, Moto};

const REGION: &str = "us-east-1";

struct Setup {
    moto: Moto,
    sqs: LocalSqs,
    main: String,
    dlq: String,
}

fn setup(name: &str) -> Setup {
    let moto = Moto::start().expect("moto");
    let sqs = LocalSqs::new(moto.port(), REGION);
    let dlq = sqs
        .create_queue(&format!("{name}-dlq"), &[])
        .expect("create the DLQ");
    let main = sqs.create_queue(name, &[]).expect("create the queue");
    Setup {
        moto,
        sqs,
        main,
        dlq,
    }
}

/// Runs `spillway-dlq` with the local pipeline's environment (as in `.spillway/dev.env`,
/// `ENVELOPE_KEYS` included); without `with_urls`, the URLs and keys are left to the flags.
fn dlq_tool(s: &Setup, args: &[&str], with_urls: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spillway-dlq"));
    cmd.args(args)
        .env_remove("SQS_DLQ_URL")
        .env_remove("SQS_QUEUE_URL")
        .env("SQS_ENDPOINT", s.moto.endpoint())
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("ENVELOPE_KEYS");
    if with_urls {
        cmd.env("SQS_DLQ_URL", &s.dlq)
            .env("SQS_QUEUE_URL", &s.main)
            .env("ENVELOPE_KEYS", spillway_consumer::keys::testing::TEST_KEYS);
    }
    cmd.output().expect("run spillway-dlq")
}

fn stdout(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "spillway-dlq failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn list_names_the_reason_and_redrive_moves_everything_back() {
    let s = setup("spillway-dlq-tool");
    let poison = "this is not JSON";
    let good = body(&[event(1), event(2)]);
    let poison_id = s.sqs.send(&s.dlq, poison).expect("send poison");
    let good_id = s.sqs.send(&s.dlq, &good).expect("send a good envelope");

    // list: one line per message, with the reason; nothing is deleted or left hidden.
    let out = stdout(&dlq_tool(&s, &["list"], true));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let poison_line = lines
        .iter()
        .find(|l| l.starts_with(&poison_id))
        .unwrap_or_else(|| panic!("no line for the poison message: {out}"));
    assert!(
        poison_line.contains("undecodable: body is not JSON"),
        "{poison_line}"
    );
    assert!(poison_line.contains(&format!("  {} bytes  ", poison.len())));
    assert!(
        poison_line.contains("  receives 1  sent 20"),
        "{poison_line}"
    );
    let good_line = lines
        .iter()
        .find(|l| l.starts_with(&good_id))
        .unwrap_or_else(|| panic!("no line for the good message: {out}"));
    assert!(
        good_line.ends_with(
            "decodes fine, seal verified (failed in the database or was retried out): 2 events: \
             00000000-0000-0000-0000-000000000001, 00000000-0000-0000-0000-000000000002"
        ),
        "{good_line}"
    );
    assert_eq!(lines[2], format!("2 messages in {}", s.dlq));
    assert_eq!(s.sqs.depth(&s.dlq).expect("depth"), (2, 0));

    // peek, with flags instead of the environment: the body itself, one message.
    let out = stdout(&dlq_tool(
        &s,
        &["peek", "--max", "1", "--dlq-url", &s.dlq],
        false,
    ));
    assert!(out.contains("\n  body: "), "{out}");
    assert!(
        out.contains(poison) || out.contains("00000000-0000-0000-0000-000000000002"),
        "{out}"
    );
    assert!(out.ends_with(&format!(
        "1 message in {} (--max reached; there may be more)\n",
        s.dlq
    )));
    assert_eq!(s.sqs.depth(&s.dlq).expect("depth"), (2, 0));

    // A dry run names both and moves nothing.
    let out = stdout(&dlq_tool(&s, &["redrive", "--dry-run"], true));
    assert!(out.contains(&format!("would move {poison_id}\n")), "{out}");
    assert!(out.contains(&format!("would move {good_id}\n")), "{out}");
    assert!(out.contains("dry run: would move 2 message(s)"), "{out}");
    assert_eq!(s.sqs.depth(&s.dlq).expect("depth"), (2, 0));
    assert_eq!(s.sqs.depth(&s.main).expect("depth"), (0, 0));

    // --max 1 moves one, the next run the other; the DLQ ends empty.
    let out = stdout(&dlq_tool(
        &s,
        &[
            "redrive",
            "--max",
            "1",
            "--dlq-url",
            &s.dlq,
            "--queue-url",
            &s.main,
        ],
        false,
    ));
    assert!(out.contains("moved 1 message(s)"), "{out}");
    assert_eq!(s.sqs.depth(&s.dlq).expect("depth"), (1, 0));
    assert_eq!(s.sqs.depth(&s.main).expect("depth"), (1, 0));
    let out = stdout(&dlq_tool(&s, &["redrive"], true));
    assert!(
        out.contains("moved 1 message(s)") && out.contains("0 not moved, 0 not deleted"),
        "{out}"
    );
    assert_eq!(s.sqs.depth(&s.dlq).expect("depth"), (0, 0));

    // The main queue holds both bodies, unchanged, for the consumer to try again.
    let mut moved = s.sqs.receive(&s.main, 30).expect("receive");
    moved.sort();
    let mut expected = vec![poison.to_owned(), good];
    expected.sort();
    assert_eq!(moved, expected);

    // An empty DLQ: nothing to list, nothing to move.
    let out = stdout(&dlq_tool(&s, &["list"], true));
    assert_eq!(out, format!("0 messages in {}\n", s.dlq));
}

#[test]
fn a_bad_command_line_says_what_is_missing() {
    let s = setup("spillway-dlq-usage");
    let out = dlq_tool(&s, &["list"], false);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spillway-dlq: --dlq-url is required (or SQS_DLQ_URL)"),
        "{err}"
    );
    assert!(
        err.contains("usage: spillway-dlq <list|peek|redrive>"),
        "{err}"
    );

    // A queue that does not exist is an SQS error naming it, not an empty list.
    let missing = s.dlq.replace("-dlq", "-nothing");
    let out = dlq_tool(&s, &["list", "--dlq-url", &missing], false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("ReceiveMessage on {missing} failed")),
        "{err}"
    );
}
