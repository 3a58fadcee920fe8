//! Poison: records the consumer can never store, put into the buffer beside good traffic. With
//! either buffer they end in the dead-letter queue, `spillway-dlq list` names them, and every
//! other record is stored once.
//!
//! The two buffers get there differently, and the scenario checks each way. SQS moves a
//! message to the DLQ itself after `maxReceiveCount` receives. Kinesis has no DLQ: the handler
//! sends the record (its data unchanged, with stream, shard, sequence number, partition key
//! and reason as attributes) to the dead-letter queue and counts it done, so the shard moves on
//! at once and nothing reaches the mapping's on-failure destination. With Kinesis the poison
//! also includes an event the edge sealed whose row PostgreSQL refuses (a check constraint the
//! test adds); once the constraint is dropped (the fix), `spillway-dlq redrive` puts the record
//! back into the stream and it is stored, while the unfixable ones come back to the DLQ.

use std::time::Duration;

use serde_json::json;
use spillway_e2e::{mixed, reconcile, traffic, wait_until, Client, Ledger, Request, Shape};
use spillway_support::kinesis::PutResult;
use spillway_support::{BufferKind, Stack};

use super::{dlq_tool, on_failure_messages, start};

/// An event id no client sends: the forged event.
const FORGED_ID: &str = "0192f0c1-7a44-7cc3-9e2b-000000f0a9ed";

/// Bodies no edge sealed: not JSON, an unknown envelope version, an unsigned envelope, and an
/// envelope sealed under the stack's key id with another secret (an altered message verifies
/// no better). Returns them and the key id.
fn forgeries(stack: &Stack) -> (Vec<String>, String) {
    let unsigned = format!(
        r#"{{"v":1,"events":[{{"id":"{FORGED_ID}","type":"forged","received_at":"2020-01-01T00:00:00Z","key_id":"{}","data":{{}}}}]}}"#,
        spillway_support::stack::KEY_ID
    );
    let kid = stack
        .env
        .envelope_keys
        .split_once(':')
        .map(|(kid, _)| kid.to_owned())
        .expect("kid:secret");
    let wrong_secret = spillway_shared::SigningKey::new(&kid, &[b'w'; 32]).expect("key");
    let resealed = seal(&unsigned, &wrong_secret);
    (
        vec![
            "{not json".to_owned(),
            r#"{"v":99,"events":[]}"#.to_owned(),
            unsigned,
            resealed,
        ],
        kid,
    )
}

/// The envelope `unsigned` (one event) sealed with `key`, as the edge would seal it.
fn seal(unsigned: &str, key: &spillway_shared::SigningKey) -> String {
    let event: spillway_shared::Event =
        serde_json::from_str(&unsigned[r#"{"v":1,"events":["#.len()..unsigned.len() - 2])
            .expect("the event");
    spillway_shared::pack(
        std::slice::from_ref(&event),
        &spillway_shared::BufferLimits::default(),
        key,
    )
    .expect("pack")[0]
        .entries[0]
        .body
        .clone()
}

fn count_of(stack: &Stack, id: &str) -> String {
    stack
        .pg
        .psql(&format!("SELECT count(*) FROM events WHERE id = '{id}'"))
        .expect("psql")
}

pub fn poison_records_are_dead_lettered_and_do_not_stop_the_rest(buffer: BufferKind) {
    match buffer {
        BufferKind::Sqs => poison_sqs(),
        BufferKind::Kinesis => poison_kinesis(),
    }
}

fn poison_sqs() {
    let stack = start("poison", BufferKind::Sqs, |c| {
        c.visibility_timeout_secs = 1;
        c.max_receive_count = 2;
    });
    let (forged, kid) = forgeries(&stack);
    for body in &forged {
        stack
            .sqs
            .send(&stack.env.sqs_queue_url, body)
            .expect("poison sent");
    }
    let ledger = Ledger::default();
    traffic(
        &Client::new(&stack),
        2,
        5,
        Duration::from_millis(20),
        |seq| mixed(seq, true),
        &ledger,
    )
    .expect("accepted");
    reconcile(&stack, &ledger, Duration::from_secs(90)).expect("good events stored");
    wait_until(
        "the four poison messages in the DLQ",
        Duration::from_secs(90),
        || stack.status().map(|s| s.dlq == 4).unwrap_or(false),
    )
    .expect("poison in the DLQ");
    // The DLQ tool, run as a user would with `.spillway/dev.env`, names each forgery.
    let listed = dlq_tool(&stack, &["list"]);
    assert!(
        listed.contains("unverified, never stored: unsigned envelope (version 1)"),
        "{listed}"
    );
    assert!(
        listed.contains(&format!(
            "unverified, never stored: signature does not verify under key id {kid:?}"
        )),
        "{listed}"
    );
    assert!(listed.contains("4 messages in"), "{listed}");
    assert_eq!(
        count_of(&stack, FORGED_ID),
        "0",
        "a forged event was stored"
    );
    let mut bodies = stack
        .sqs
        .receive(&stack.env.sqs_dlq_url, 30)
        .expect("read DLQ");
    bodies.sort();
    let mut expected = forged;
    expected.sort();
    assert_eq!(bodies, expected);
    wait_until("the main queue to drain", Duration::from_secs(30), || {
        stack
            .status()
            .map(|s| s.visible == 0 && s.in_flight == 0)
            .unwrap_or(false)
    })
    .expect("nothing left in the main queue");
}

/// The rows of events of type `e2e_poison` are refused by PostgreSQL until the constraint goes.
const REFUSE_POISON: &str =
    "alter table events add constraint e2e_no_poison check (type <> 'e2e_poison')";
const FIX_POISON: &str = "alter table events drop constraint e2e_no_poison";

fn poison_kinesis() {
    let stack = start("poison", BufferKind::Kinesis, |_| {});
    let kinesis = stack.kinesis.as_ref().expect("the local Kinesis");
    let stream_arn = kinesis.stream_arn();
    let client = kinesis.client();
    stack.pg.psql(REFUSE_POISON).expect("constraint added");
    let (forged, kid) = forgeries(&stack);

    // Each forgery into the stream with the test's own client, and right behind it, on the
    // same shard (same partition key), a good record sealed with the stack's key: the poison
    // must not hold it back.
    let good_key = spillway_shared::parse_keys(&stack.env.envelope_keys).expect("keys")[0].clone();
    let mut poisoned = Vec::new();
    let mut followers = Vec::new();
    for (n, body) in forged.iter().enumerate() {
        let follower = uuid::Uuid::new_v4().to_string();
        let sealed = seal(
            &format!(
                r#"{{"v":1,"events":[{{"id":"{follower}","type":"e2e_follower","received_at":"2020-01-01T00:00:00Z","key_id":"{}","data":{{"n":{n}}}}}]}}"#,
                spillway_support::stack::KEY_ID
            ),
            &good_key,
        );
        let key = format!("poison-{n}");
        let put = client
            .put_records(
                kinesis.stream(),
                &[
                    (key.clone(), body.as_bytes().to_vec()),
                    (key, sealed.into_bytes()),
                ],
            )
            .expect("PutRecords");
        match &put[..] {
            [PutResult::Stored {
                shard_id,
                sequence_number,
            }, PutResult::Stored { .. }] => {
                poisoned.push((shard_id.clone(), sequence_number.clone()))
            }
            other => panic!("the local Kinesis refused a record: {other:?}"),
        }
        followers.push(follower);
    }

    // A sealed event through the edge whose row PostgreSQL refuses.
    let edge = Client::new(&stack);
    let mut refused = Request::new(Shape::Single, spillway_e2e::Ids::Client, 0);
    refused.sent[0]["type"] = json!("e2e_poison");
    refused.body = refused.sent[0].to_string().into_bytes();
    let (refused_ids, _) = edge
        .send_until_accepted(&refused, Duration::from_secs(30))
        .expect("the edge accepts it");
    let refused_id = refused_ids[0].clone();

    let ledger = Ledger::default();
    traffic(
        &edge,
        2,
        5,
        Duration::from_millis(20),
        |seq| mixed(seq, true),
        &ledger,
    )
    .expect("accepted");
    // Drained: every shard's checkpoint is past its last record, the poison's included.
    let mut good = ledger.accepted();
    good.extend(followers.iter().enumerate().map(|(n, id)| {
        (
            id.clone(),
            json!({"id": id, "type": "e2e_follower", "data": {"n": n}}),
        )
    }));
    let all_good = Ledger::default();
    all_good.extend(good);
    reconcile(&stack, &all_good, Duration::from_secs(90))
        .expect("every other record stored, on the poison's shards too");
    wait_until(
        "the five poison records in the DLQ",
        Duration::from_secs(60),
        || stack.status().map(|s| s.dlq == 5).unwrap_or(false),
    )
    .expect("poison in the DLQ");
    assert_eq!(
        on_failure_messages(&stack),
        0,
        "the poison was dead-lettered at once, not retried until the mapping gave up"
    );
    assert_eq!(
        count_of(&stack, FORGED_ID),
        "0",
        "a forged event was stored"
    );
    assert_eq!(
        count_of(&stack, &refused_id),
        "0",
        "a refused row was stored"
    );

    // The DLQ tool names each record's origin and why.
    let listed = dlq_tool(&stack, &["list"]);
    assert!(listed.contains("5 messages in"), "{listed}");
    let origins = format!("kinesis stream {stream_arn} shard ");
    assert_eq!(listed.matches(&origins).count(), 5, "{listed}");
    for (shard, seq) in &poisoned {
        assert!(
            listed.contains(&format!("{origins}{shard} sequence {seq} ")),
            "{shard}/{seq} not listed: {listed}"
        );
    }
    assert!(listed.contains("unsigned envelope (version 1)"), "{listed}");
    assert!(
        listed.contains(&format!("signature does not verify under key id {kid:?}")),
        "{listed}"
    );
    // The bodies are the records' data, unchanged.
    let peeked = dlq_tool(&stack, &["peek"]);
    assert!(peeked.contains(&refused_id), "{peeked}");

    // The fix, then the redrive: the refused event is stored once; the forgeries, which no fix
    // makes storable, are dead-lettered again.
    stack.pg.psql(FIX_POISON).expect("constraint dropped");
    // No `--max`: the forgeries come back to the DLQ as new messages within milliseconds; a
    // redrive of "all" moves the five the queue held as it started and ends (it once went
    // round the returning ones for ever).
    let moved = dlq_tool(&stack, &["redrive"]);
    assert!(moved.contains("moved 5 message(s)"), "{moved}");
    wait_until("the redriven event stored", Duration::from_secs(60), || {
        count_of(&stack, &refused_id) == "1"
    })
    .expect("the fixed record is stored after the redrive");
    wait_until(
        "the forgeries back in the DLQ",
        Duration::from_secs(60),
        || stack.status().map(|s| s.dlq == 4).unwrap_or(false) && stack.drained(),
    )
    .expect("the unfixable records are dead-lettered again");
    assert_eq!(count_of(&stack, &refused_id), "1", "stored once");
    assert_eq!(
        count_of(&stack, FORGED_ID),
        "0",
        "a forged event was stored"
    );
    assert_eq!(on_failure_messages(&stack), 0);
}
