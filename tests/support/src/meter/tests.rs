use std::io::Read;

use serde_json::{json, Value};

use super::*;

#[test]
fn billing_is_per_started_64_kib_and_at_least_one() {
    assert_eq!(billed_requests(0), 1);
    assert_eq!(billed_requests(1), 1);
    assert_eq!(billed_requests(65_536), 1);
    assert_eq!(billed_requests(65_537), 2);
    assert_eq!(billed_requests(10 * 1_280), 1);
    assert_eq!(billed_requests(1_048_576), 16);
}

fn batch(bodies: &[&str]) -> Vec<u8> {
    let entries: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| json!({"Id": i.to_string(), "MessageBody": b}))
        .collect();
    json!({"QueueUrl": "http://q", "Entries": entries})
        .to_string()
        .into_bytes()
}

#[test]
fn a_batch_is_counted_by_its_message_bodies_only() {
    let big = "x".repeat(40_000);
    let c = count_call(
        Some("AmazonSQS.SendMessageBatch"),
        &batch(&[&big, &big, "é"]),
    );
    assert_eq!(c.action, Action::SendMessageBatch);
    assert_eq!(c.entries, 3);
    // UTF-8 bytes of the decoded string, not JSON-escaped text.
    assert_eq!(c.body_bytes, 80_002);
    assert_eq!(c.billed, 2);
    assert!(c.parsed);
    // Not envelopes: one event each.
    assert_eq!(c.events, 3);
}

#[test]
fn events_are_counted_inside_the_envelopes() {
    let shared = r#"{"v":1,"events":[{"id":"a"},{"id":"b"},{"id":"c"}]}"#;
    let single = r#"{"v":1,"events":[{"id":"d"}]}"#;
    let c = count_call(
        Some("AmazonSQS.SendMessageBatch"),
        &batch(&[shared, single]),
    );
    assert_eq!((c.entries, c.events), (2, 4));
}

#[test]
fn single_sends_other_actions_and_garbage() {
    let one = json!({"QueueUrl": "q", "MessageBody": "hello"}).to_string();
    let c = count_call(Some("AmazonSQS.SendMessage"), one.as_bytes());
    assert_eq!((c.entries, c.body_bytes, c.billed), (1, 5, 1));
    let other = count_call(Some("AmazonSQS.GetQueueUrl"), b"{}");
    assert_eq!((other.action, other.billed), (Action::Other, 0));
    let junk = count_call(Some("AmazonSQS.SendMessageBatch"), b"not json");
    assert_eq!((junk.entries, junk.billed, junk.parsed), (0, 1, false));
}

#[test]
fn snapshots_subtract() {
    let a = MeterSnapshot {
        calls: 3,
        billed: 4,
        ..MeterSnapshot::default()
    };
    let b = MeterSnapshot {
        calls: 10,
        billed: 12,
        entries: 7,
        ..MeterSnapshot::default()
    };
    let d = b.since(&a);
    assert_eq!((d.calls, d.billed, d.entries), (7, 8, 7));
    assert_eq!(a.since(&b).calls, 0);
}

/// A fake SQS: answers each request on a kept-alive connection, alternately with a
/// `Content-Length` and a chunked body that names one failed entry; `Connection: close`
/// requests get their answer and the end of the connection.
fn fake_sqs() -> (u16, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            let seen = seen2.clone();
            thread::spawn(move || {
                let mut w = c.try_clone().expect("clone");
                let mut r = BufReader::new(c);
                while let Ok(Some(m)) = read_message(&mut r, Kind::Request) {
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    let answer = if n.is_multiple_of(2) {
                        let body = r#"{"Successful":[],"Failed":[]}"#;
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                         a\r\n{\"Failed\":\r\n9\r\n[{\"Id\":1}\r\n2\r\n]}\r\n0\r\n\r\n"
                            .to_owned()
                    };
                    if w.write_all(answer.as_bytes()).is_err() || m.closes() {
                        break;
                    }
                }
            });
        }
    });
    (port, seen)
}

fn request(body: &[u8], target: &str, close: bool) -> Vec<u8> {
    let mut r = format!(
        "POST / HTTP/1.1\r\nHost: sqs\r\nX-Amz-Target: {target}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[test]
fn relays_answers_on_a_kept_alive_connection_and_counts_what_passed() {
    let (port, seen) = fake_sqs();
    let meter = BufferMeter::start(port).expect("meter");
    let c = TcpStream::connect(("127.0.0.1", meter.port())).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut w = c.try_clone().expect("clone");
    let mut r = BufReader::new(c);
    let big = "y".repeat(70_000);
    let target = "AmazonSQS.SendMessageBatch";
    w.write_all(&request(&batch(&["a", "bb"]), target, false))
        .expect("write");
    let one = read_message(&mut r, Kind::Response)
        .expect("io")
        .expect("1");
    assert_eq!(one.body, br#"{"Successful":[],"Failed":[]}"#);
    w.write_all(&request(&batch(&[&big]), target, false))
        .expect("write");
    let two = read_message(&mut r, Kind::Response)
        .expect("io")
        .expect("2");
    assert_eq!(
        two.body, br#"{"Failed":[{"Id":1}]}"#,
        "chunked, relayed as is"
    );
    w.write_all(&request(b"{}", "AmazonSQS.GetQueueUrl", true))
        .expect("write");
    assert!(read_message(&mut r, Kind::Response).expect("io").is_some());
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "closed after a Connection: close request");
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    let s = meter.snapshot();
    assert_eq!(
        s,
        MeterSnapshot {
            calls: 2,
            batch_calls: 2,
            entries: 3,
            events: 3,
            body_bytes: 70_003,
            billed: 3,
            other_calls: 1,
            failed_entries: 1,
            ..MeterSnapshot::default()
        }
    );
}

#[test]
fn an_unreachable_upstream_closes_the_client_and_counts_unanswered() {
    let dead = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let meter = BufferMeter::start(port).expect("meter");
    let mut c = TcpStream::connect(("127.0.0.1", meter.port())).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    c.write_all(&request(
        &batch(&["a"]),
        "AmazonSQS.SendMessageBatch",
        false,
    ))
    .expect("write");
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    assert!(out.is_empty());
    let s = meter.snapshot();
    assert_eq!((s.calls, s.unanswered, s.billed), (1, 1, 1));
}

fn put_records(records: &[(&[u8], &str)]) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let records: Vec<Value> = records
        .iter()
        .map(|(d, k)| json!({"Data": b64(d), "PartitionKey": k}))
        .collect();
    json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s", "Records": records})
        .to_string()
        .into_bytes()
}

#[test]
fn kinesis_puts_are_billed_per_record_in_kib_and_25_kib_units() {
    let envelope = br#"{"v":1,"events":[{"id":"a"},{"id":"b"}]}"#;
    // Sizes around both rounding steps; the partition key counts with the data.
    let exact_kib = vec![b'x'; 1024 - 4];
    let over_kib = vec![b'x'; 1024 - 3];
    let exact_unit = vec![b'x'; 25 * 1024 - 4];
    let over_unit = vec![b'x'; 25 * 1024 - 3];
    let c = count_call(
        Some("Kinesis_20131202.PutRecords"),
        &put_records(&[
            (envelope, "k1"),
            (&exact_kib, "abcd"),
            (&over_kib, "abcd"),
            (&exact_unit, "abcd"),
            (&over_unit, "abcd"),
        ]),
    );
    assert_eq!(c.action, Action::PutRecords);
    assert!(c.parsed);
    assert_eq!(c.entries, 5);
    // Two events in the envelope, one for each payload that is not an envelope.
    assert_eq!(c.events, 2 + 4);
    let sizes = [envelope.len() + 2, 1024, 1025, 25 * 1024, 25 * 1024 + 1];
    assert_eq!(c.body_bytes, sizes.iter().sum::<usize>() as u64);
    assert_eq!(c.kinesis_kb, 1 + 1 + 2 + 25 + 26);
    assert_eq!(c.put_units, 1 + 1 + 1 + 1 + 2);
    // SQS requests are not billed for Kinesis calls.
    assert_eq!(c.billed, 0);
}

#[test]
fn a_single_put_and_unreadable_records() {
    use base64::Engine as _;
    let one = json!({
        "StreamARN": "s",
        "PartitionKey": "p",
        "Data": base64::engine::general_purpose::STANDARD.encode(b"hello"),
    })
    .to_string();
    let c = count_call(Some("Kinesis_20131202.PutRecord"), one.as_bytes());
    assert_eq!(c.action, Action::PutRecord);
    assert_eq!(
        (c.entries, c.body_bytes, c.kinesis_kb, c.put_units),
        (1, 6, 1, 1)
    );
    // A record whose data is not base64 is not counted, and the call says so.
    let bad = json!({"Records": [{"Data": "%%%", "PartitionKey": "p"}]}).to_string();
    let c = count_call(Some("Kinesis_20131202.PutRecords"), bad.as_bytes());
    assert!(!c.parsed);
    assert_eq!((c.entries, c.kinesis_kb), (0, 0));
    let junk = count_call(Some("Kinesis_20131202.PutRecords"), b"not json");
    assert!(!junk.parsed);
    assert_eq!((junk.billed, junk.kinesis_kb), (0, 0));
}

#[test]
fn refused_records_are_read_entry_by_entry() {
    let answer = json!({
        "FailedRecordCount": 0,
        "Records": [
            {"SequenceNumber": "1", "ShardId": "shardId-000000000000"},
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"},
            {"ErrorCode": "InternalFailure"},
        ]
    })
    .to_string();
    // FailedRecordCount says 0; the entries say 2.
    assert_eq!(
        super::count::failed_entries(Action::PutRecords, answer.as_bytes()),
        2
    );
    let sqs = json!({"Successful": [], "Failed": [{"Id": "0"}]}).to_string();
    assert_eq!(
        super::count::failed_entries(Action::SendMessageBatch, sqs.as_bytes()),
        1
    );
    assert_eq!(
        super::count::failed_entries(Action::PutRecord, answer.as_bytes()),
        0
    );
}
