//! What the function and the on-failure destination receive, built from records read off a
//! shard: the `KinesisEvent` exactly as Lambda shapes it, and Lambda's on-failure record (the
//! batch's shard and sequence range, not its data, as SQS and SNS destinations get it). Pure.

use aws_lambda_events::encodings::{Base64Data, SecondTimestamp};
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord, KinesisRecord};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::kinesis::SeqNum;

/// One record read from a shard, as the mapping keeps it until it is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub seq: SeqNum,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub arrival: DateTime<Utc>,
}

impl Rec {
    /// Bytes this record adds to the invocation payload: base64 data, key, sequence number
    /// and the fixed JSON around them (~400 bytes with the ARNs), rounded up.
    pub fn payload_bytes(&self) -> usize {
        self.data.len().div_ceil(3) * 4
            + self.partition_key.len()
            + self.seq.as_str().len() * 2
            + 400
    }
}

/// Who the events say they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub arn: String,
    pub region: String,
    /// `invokeIdentityArn`: on Lambda the function's execution role; locally a role named
    /// after the poller in the stream's account (nothing checks it).
    pub invoke_identity_arn: String,
}

/// The event Lambda would deliver for `records` of `shard_id`.
pub fn kinesis_event(shard_id: &str, records: &[Rec], stream: &StreamInfo) -> KinesisEvent {
    let mut event = KinesisEvent::default();
    event.records = records
        .iter()
        .map(|r| {
            let mut data = Base64Data::default();
            data.extend_from_slice(&r.data);
            let mut k = KinesisRecord::default();
            k.approximate_arrival_timestamp = SecondTimestamp(r.arrival);
            k.data = data;
            k.partition_key = r.partition_key.clone();
            k.sequence_number = r.seq.as_str().to_owned();
            k.kinesis_schema_version = Some("1.0".to_owned());
            let mut e = KinesisEventRecord::default();
            e.aws_region = Some(stream.region.clone());
            e.event_id = Some(format!("{shard_id}:{}", r.seq));
            e.event_name = Some("aws:kinesis:record".to_owned());
            e.event_source = Some("aws:kinesis".to_owned());
            e.event_source_arn = Some(stream.arn.clone());
            e.event_version = Some("1.0".to_owned());
            e.invoke_identity_arn = Some(stream.invoke_identity_arn.clone());
            e.kinesis = k;
            e
        })
        .collect();
    event
}

/// Why a batch was given up on (`requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    RetryAttemptsExhausted,
    RecordAgeExceeded,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetryAttemptsExhausted => "RetryAttemptsExhausted",
            Self::RecordAgeExceeded => "RecordAgeExceeded",
        }
    }
}

/// Records given up on: what the on-failure destination is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discarded {
    pub condition: Condition,
    /// In shard order; never empty.
    pub records: Vec<Rec>,
    /// Times the function was invoked with (part of) these records.
    pub invocations: u32,
    /// Request id of the last invocation, if there was one.
    pub request_id: Option<String>,
    /// Whether the last invocation failed as a whole (`functionError`), not per record.
    pub function_error: bool,
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Lambda's on-failure record for a Kinesis source, field for field.
pub fn failure_record(
    d: &Discarded,
    shard_id: &str,
    stream_arn: &str,
    function_arn: &str,
    now: DateTime<Utc>,
) -> Value {
    let first = d.records.first();
    let last = d.records.last();
    let mut response = json!({"statusCode": 200, "executedVersion": "$LATEST"});
    if d.function_error {
        response["functionError"] = json!("Unhandled");
    }
    json!({
        "requestContext": {
            "requestId": d.request_id.clone().unwrap_or_default(),
            "functionArn": function_arn,
            "condition": d.condition.as_str(),
            "approximateInvokeCount": d.invocations,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": iso(now),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first.map(|r| r.seq.to_string()),
            "endSequenceNumber": last.map(|r| r.seq.to_string()),
            "approximateArrivalOfFirstRecord": first.map(|r| iso(r.arrival)),
            "approximateArrivalOfLastRecord": last.map(|r| iso(r.arrival)),
            "batchSize": d.records.len(),
            "streamArn": stream_arn,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rec(seq: &str, key: &str, data: &[u8], secs: i64) -> Rec {
        Rec {
            seq: SeqNum::parse(seq).expect("seq"),
            partition_key: key.to_owned(),
            data: data.to_vec(),
            arrival: Utc.timestamp_opt(secs, 428_000_000).single().expect("time"),
        }
    }

    #[test]
    fn event_has_the_shape_lambda_delivers() {
        let stream = StreamInfo {
            arn: "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream".into(),
            region: "us-east-1".into(),
            invoke_identity_arn: "arn:aws:iam::123456789012:role/lambda-role".into(),
        };
        let seq = "49590338271490256608559692538361571095921575989136588898";
        let got = kinesis_event(
            "shardId-000000000006",
            &[rec(seq, "1", b"Hello, this is a test.", 1_607_497_475)],
            &stream,
        );
        // AWS's documented example event, read the way the handler reads it (the crate writes
        // the timestamp back as a string, so JSON-to-JSON would compare the crate, not us).
        let expected: KinesisEvent = serde_json::from_value(json!({"Records": [{
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "1",
                "sequenceNumber": seq,
                "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
                "approximateArrivalTimestamp": 1_607_497_475.428,
                "encryptionType": "NONE"
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("shardId-000000000006:{seq}"),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream"
        }]}))
        .expect("AWS's example");
        assert_eq!(got, expected);
    }

    #[test]
    fn failure_record_carries_the_range_not_the_data() {
        let d = Discarded {
            condition: Condition::RetryAttemptsExhausted,
            records: vec![rec("11", "a", b"secret", 100), rec("250", "b", b"x", 101)],
            invocations: 3,
            request_id: Some("req-1".into()),
            function_error: true,
        };
        let now = Utc.timestamp_opt(200, 0).single().expect("time");
        let v = failure_record(&d, "shardId-000000000001", "arn:s", "arn:f", now);
        assert_eq!(
            v,
            json!({
                "requestContext": {"requestId": "req-1", "functionArn": "arn:f",
                    "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 3},
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                    "functionError": "Unhandled"},
                "version": "1.0",
                "timestamp": "1970-01-01T00:03:20.000Z",
                "KinesisBatchInfo": {
                    "shardId": "shardId-000000000001",
                    "startSequenceNumber": "11", "endSequenceNumber": "250",
                    "approximateArrivalOfFirstRecord": "1970-01-01T00:01:40.428Z",
                    "approximateArrivalOfLastRecord": "1970-01-01T00:01:41.428Z",
                    "batchSize": 2, "streamArn": "arn:s"
                }
            })
        );
        assert!(
            !v.to_string().contains("c2VjcmV0"),
            "the data must not be sent"
        );
    }
}
