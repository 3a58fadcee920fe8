//! The proxy over real sockets: each mode's answers, in SQS's and Kinesis's shapes, and the
//! `PutRecords` rewriting end to end against a fake upstream.

use super::*;
use serde_json::Value;
use std::sync::Mutex;

fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            thread::spawn(move || {
                if read_request(&mut c).is_some() {
                    let _ = c.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                }
            });
        }
    });
    port
}

fn get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn modes_change_the_answers() {
    let proxy = FaultProxy::start(echo_server()).expect("proxy");
    assert!(get(proxy.port()).ends_with("ok"));
    proxy.set_mode(FaultMode::Http500);
    assert!(get(proxy.port()).starts_with("HTTP/1.1 500"));
    proxy.set_mode(FaultMode::Throttle);
    assert!(get(proxy.port()).contains("ThrottlingException"));
    proxy.set_mode(FaultMode::Refuse);
    assert_eq!(get(proxy.port()), "");
    proxy.set_mode(FaultMode::Pass);
    assert!(get(proxy.port()).ends_with("ok"));
    assert_eq!(proxy.faulted(), 3);
    for mode in [FaultMode::Http500, FaultMode::Throttle, FaultMode::Refuse] {
        assert_eq!(proxy.faulted_in(mode), 1, "{mode:?}");
    }
    assert_eq!(proxy.faulted_in(FaultMode::Stall), 0);
    assert_eq!(proxy.passed(), 2);
}

/// Sends one request with `X-Amz-Target: target` and `body` on a connection of its own.
fn call(port: u16, target: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {target}\r\nContent-Type: application/x-amz-json-1.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(request.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn json_body(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

#[test]
fn whole_call_faults_take_the_shape_of_the_service_called() {
    let proxy = FaultProxy::start(echo_server()).expect("proxy");
    proxy.set_mode(FaultMode::Throttle);
    let sqs = call(proxy.port(), "AmazonSQS.SendMessageBatch", "{}");
    assert!(sqs.starts_with("HTTP/1.1 400"), "{sqs}");
    assert_eq!(
        json_body(&sqs)["__type"],
        "com.amazonaws.sqs#ThrottlingException"
    );
    let kinesis = call(proxy.port(), "Kinesis_20131202.PutRecords", "{}");
    assert!(kinesis.starts_with("HTTP/1.1 400"), "{kinesis}");
    assert!(kinesis.contains("application/x-amz-json-1.1"), "{kinesis}");
    assert_eq!(
        json_body(&kinesis)["__type"],
        "ProvisionedThroughputExceededException"
    );
    proxy.set_mode(FaultMode::Http500);
    let sqs = call(proxy.port(), "AmazonSQS.SendMessageBatch", "{}");
    assert!(sqs.starts_with("HTTP/1.1 500"), "{sqs}");
    assert_eq!(json_body(&sqs)["__type"], "com.amazonaws.sqs#InternalError");
    let kinesis = call(proxy.port(), "Kinesis_20131202.PutRecords", "{}");
    assert!(kinesis.starts_with("HTTP/1.1 500"), "{kinesis}");
    assert_eq!(json_body(&kinesis)["__type"], "InternalFailure");
    assert_eq!(proxy.faulted_in(FaultMode::Throttle), 2);
    assert_eq!(proxy.faulted_in(FaultMode::Http500), 2);
}

/// A fake Kinesis: answers `PutRecords` with a sequence number per record it got (numbered
/// over all calls) and keeps the partition keys it stored; answers anything else `{}`.
fn fake_kinesis() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let stored = Arc::new(Mutex::new(Vec::<String>::new()));
    let keep = stored.clone();
    thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let keep = keep.clone();
            thread::spawn(move || {
                let Some(request) = read_request(&mut c) else {
                    return;
                };
                let json: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                let mut results = Vec::new();
                if let Some(records) = json["Records"].as_array() {
                    let mut stored = keep.lock().expect("lock");
                    for r in records {
                        stored.push(r["PartitionKey"].as_str().unwrap_or("").to_owned());
                        results.push(serde_json::json!({
                            "SequenceNumber": format!("{}", 1000 + stored.len()),
                            "ShardId": "shardId-000000000000",
                        }));
                    }
                }
                let body =
                    serde_json::json!({"FailedRecordCount": 0, "Records": results}).to_string();
                let _ = c.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            });
        }
    });
    (port, stored)
}

fn put_records(port: u16, keys: &[&str]) -> Value {
    let records: Vec<Value> = keys
        .iter()
        .map(|k| serde_json::json!({"Data": "eA==", "PartitionKey": k}))
        .collect();
    let body = serde_json::json!({"StreamARN": "arn", "Records": records}).to_string();
    json_body(&call(port, "Kinesis_20131202.PutRecords", &body))
}

#[test]
fn refused_records_never_reach_the_upstream_and_fail_in_place() {
    let (upstream, stored) = fake_kinesis();
    let proxy = FaultProxy::start(upstream).expect("proxy");
    proxy.refuse_records(RecordPlan::default());
    let answer = put_records(proxy.port(), &["a", "b", "c", "d", "e"]);
    // Records 1 and 3 refused: the upstream stored a, c, e only.
    assert_eq!(*stored.lock().expect("lock"), ["a", "c", "e"]);
    let results = answer["Records"].as_array().expect("records");
    assert_eq!(results.len(), 5);
    assert_eq!(answer["FailedRecordCount"], 2);
    for (p, seq) in [(0, "1001"), (2, "1002"), (4, "1003")] {
        assert_eq!(results[p]["SequenceNumber"], seq);
    }
    for p in [1, 3] {
        assert_eq!(
            results[p]["ErrorCode"],
            "ProvisionedThroughputExceededException"
        );
    }
    // Other calls pass untouched; the record numbering carries over (record 5 refused, 6 not).
    assert_eq!(
        json_body(&call(proxy.port(), "Kinesis_20131202.ListShards", "{}")),
        serde_json::json!({"FailedRecordCount": 0, "Records": []})
    );
    let again = put_records(proxy.port(), &["b", "d"]);
    assert_eq!(
        again["Records"][0]["ErrorCode"],
        "ProvisionedThroughputExceededException"
    );
    assert_eq!(again["Records"][1]["SequenceNumber"], "1004");
    assert_eq!(proxy.records_refused(), 3);
    assert_eq!(proxy.faulted_in(FaultMode::RefuseRecords), 2);

    // The lying count, and a call refused whole without reaching the upstream.
    proxy.refuse_records(RecordPlan {
        pick: Pick::EveryNth(1),
        count: Count::Zero,
        error: RecordError::Internal,
    });
    let lying = put_records(proxy.port(), &["x", "y"]);
    assert_eq!(lying["FailedRecordCount"], 0);
    assert_eq!(lying["Records"][0]["ErrorCode"], "InternalFailure");
    assert_eq!(lying["Records"][1]["ErrorCode"], "InternalFailure");
    assert_eq!(stored.lock().expect("lock").len(), 4);
    assert_eq!(proxy.records_refused(), 5);

    proxy.set_mode(FaultMode::Pass);
    let passed = put_records(proxy.port(), &["d"]);
    assert_eq!(passed["Records"][0]["SequenceNumber"], "1005");
}

#[test]
fn the_upstream_can_move() {
    let proxy = FaultProxy::start(echo_server()).expect("proxy");
    assert!(get(proxy.port()).ends_with("ok"));
    let (moved, _) = fake_kinesis();
    proxy.forward_to(moved);
    assert!(call(proxy.port(), "Kinesis_20131202.ListShards", "{}").ends_with(r#""Records":[]}"#));
    assert_eq!(proxy.passed(), 2);
}
