//! A buffered record as the plan reads it, whatever buffer delivered it: an id to report its
//! failure by, the body the edge wrote, and when the buffer took it.
//!
//! Two implementations: SQS's record (`SqsMessage`) and Kinesis's (`KinesisEventRecord`), each
//! as Lambda and the local poller deliver it, so that [`crate::plan::Plan`] and everything after
//! it are the same for both. The edge puts the same sealed envelope bytes in an SQS body and in
//! a Kinesis record's data, so both decode through the same `Plan::from_records`. This module
//! does not decode bodies (that is the plan, with `spillway_shared::open`), nor answer the
//! buffer (SQS: `Plan::response`; Kinesis: `handler::handle_kinesis`).

use aws_lambda_events::event::kinesis::KinesisEventRecord;
use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};

/// One record of a delivered batch.
pub trait BufferedRecord {
    /// What the buffer names this record by when it is reported as failed: SQS's message id
    /// (an entry of `batchItemFailures`); Kinesis's sequence number. `None`
    /// when the buffer sent none (SQS never does in practice): such a record cannot be failed
    /// on its own.
    ///
    /// It is also what each row keeps of its record, in the column the contract names
    /// `sqs_message_id` (for a Kinesis record: its sequence number, a decimal string of up to
    /// 129 digits; the column is `text`).
    fn record_id(&self) -> Option<&str>;

    /// The body, as the edge wrote it (a sealed envelope). `None` when the record has none.
    fn body(&self) -> Option<&[u8]>;

    /// When the buffer took the record (SQS: the `SentTimestamp` attribute; Kinesis: the
    /// approximate arrival timestamp), for the queue-lag metric; `None` when it did not say.
    fn sent_at(&self) -> Option<DateTime<Utc>>;
}

impl BufferedRecord for SqsMessage {
    fn record_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    fn body(&self) -> Option<&[u8]> {
        self.body.as_deref().map(str::as_bytes)
    }

    /// `SentTimestamp` is milliseconds since the epoch, as a string; anything else is `None`.
    fn sent_at(&self) -> Option<DateTime<Utc>> {
        self.attributes
            .get("SentTimestamp")?
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
    }
}

/// A Kinesis record as Lambda's Kinesis event source delivers it: `data` arrives base64 in the
/// event JSON and the event type has already decoded it, so [`BufferedRecord::body`] is the
/// record's bytes exactly as the edge put them.
impl BufferedRecord for KinesisEventRecord {
    /// The sequence number; `None` when empty (Lambda always sends one).
    fn record_id(&self) -> Option<&str> {
        Some(self.kinesis.sequence_number.as_str()).filter(|s| !s.is_empty())
    }

    /// Always `Some`: a Kinesis record always has data (possibly empty, which then fails to
    /// decode like any other non-envelope).
    fn body(&self) -> Option<&[u8]> {
        Some(&self.kinesis.data.0)
    }

    /// `approximateArrivalTimestamp` (seconds with a fraction), which Kinesis sets when it
    /// accepts the record: the moment the edge's `PutRecords` was acknowledged for it.
    fn sent_at(&self) -> Option<DateTime<Utc>> {
        Some(self.kinesis.approximate_arrival_timestamp.0)
    }
}

/// Which buffer delivered a Lambda event, by its records' `eventSource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// `aws:sqs`
    Sqs,
    /// `aws:kinesis`
    Kinesis,
}

/// An event the consumer does not handle: the whole invocation fails (Lambda retries it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownEvent {
    #[error("the event has no records")]
    NoRecords,
    #[error("records of eventSource `{0}`: only aws:sqs and aws:kinesis are handled")]
    Source(String),
    #[error("records of two sources in one event (`{0}` and `{1}`)")]
    Mixed(String, String),
}

impl EventSource {
    /// The source of a raw Lambda event (`{"Records": [{"eventSource": ...}, ...]}`). Every
    /// record must say the same; an event without records cannot be told, and has nothing to
    /// do anyway, but a mapping never sends one, so it is refused loudly.
    pub fn of(event: &serde_json::Value) -> Result<Self, UnknownEvent> {
        let records = event
            .get("Records")
            .and_then(serde_json::Value::as_array)
            .filter(|r| !r.is_empty())
            .ok_or(UnknownEvent::NoRecords)?;
        let source_of = |r: &serde_json::Value| {
            r.get("eventSource")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let first = source_of(&records[0]);
        if let Some(other) = records.iter().map(source_of).find(|s| *s != first) {
            return Err(UnknownEvent::Mixed(first, other));
        }
        match first.as_str() {
            "aws:sqs" => Ok(Self::Sqs),
            "aws:kinesis" => Ok(Self::Kinesis),
            _ => Err(UnknownEvent::Source(first)),
        }
    }
}

/// The earliest [`BufferedRecord::sent_at`] among `records`.
pub fn oldest_sent_at<R: BufferedRecord>(records: &[R]) -> Option<DateTime<Utc>> {
    records.iter().filter_map(BufferedRecord::sent_at).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqs(id: Option<&str>, body: Option<&str>, sent: Option<&str>) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = id.map(str::to_owned);
        m.body = body.map(str::to_owned);
        if let Some(sent) = sent {
            m.attributes.insert("SentTimestamp".into(), sent.into());
        }
        m
    }

    #[test]
    fn an_sqs_record_is_read_as_lambda_delivers_it() {
        let m = sqs(Some("m-1"), Some(r#"{"v":2}"#), Some("1700000000500"));
        assert_eq!(m.record_id(), Some("m-1"));
        assert_eq!(m.body(), Some(&br#"{"v":2}"#[..]));
        assert_eq!(
            m.sent_at(),
            DateTime::from_timestamp_millis(1_700_000_000_500)
        );
        let bare = sqs(None, None, Some("yesterday"));
        assert_eq!(
            (bare.record_id(), bare.body(), bare.sent_at()),
            (None, None, None)
        );
    }

    /// What AWS documents for a Kinesis record, with `data` set to `data`.
    fn kinesis(seq: &str, data: &[u8]) -> KinesisEventRecord {
        use base64::Engine as _;
        serde_json::from_value(serde_json::json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "1",
                "sequenceNumber": seq,
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "approximateArrivalTimestamp": 1545084650.987
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("shardId-000000000006:{seq}"),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
            "awsRegion": "us-east-2",
            "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"
        }))
        .expect("the documented shape")
    }

    #[test]
    fn a_kinesis_record_carries_the_same_bytes_as_an_sqs_body() {
        // The edge writes the same sealed envelope to either buffer: the body the plan reads
        // must be byte-identical, whichever delivered it.
        let envelope = crate::testing::body(&[crate::testing::event(1), crate::testing::event(2)]);
        let seq = "49590338271490256608559692538361571095921575989136588898";
        let k = kinesis(seq, envelope.as_bytes());
        let s = sqs(Some("m"), Some(&envelope), None);
        assert_eq!(k.body(), s.body());
        assert_eq!(k.record_id(), Some(seq));
        assert_eq!(
            k.sent_at(),
            DateTime::from_timestamp_millis(1_545_084_650_987)
        );
        // And so they decode to the same events.
        let keys = crate::keys::testing::test_keyring();
        let from_kinesis = crate::plan::Plan::from_records(&[k], &keys);
        let from_sqs = crate::plan::Plan::from_records(&[s], &keys);
        assert_eq!(from_kinesis.accepted[0].events, from_sqs.accepted[0].events);
        assert_eq!(from_kinesis.accepted[0].record_id, seq);
        // A record whose data is not UTF-8 is undecodable, on its own.
        let bad = kinesis("2", &[0xff, 0xfe, b'{']);
        let plan = crate::plan::Plan::from_records(&[bad], &keys);
        assert_eq!(plan.failed[0].reason.label(), "undecodable");
    }

    #[test]
    fn a_kinesis_record_without_a_sequence_number_has_no_id() {
        let k = kinesis("", b"x");
        assert_eq!(k.record_id(), None);
        assert_eq!(k.body(), Some(&b"x"[..]));
    }

    #[test]
    fn the_event_source_is_told_by_the_records() {
        use serde_json::json;
        let of = |v| EventSource::of(&v);
        assert_eq!(
            of(json!({"Records": [{"eventSource": "aws:sqs"}, {"eventSource": "aws:sqs"}]})),
            Ok(EventSource::Sqs)
        );
        assert_eq!(
            of(json!({"Records": [{"eventSource": "aws:kinesis"}]})),
            Ok(EventSource::Kinesis)
        );
        assert_eq!(of(json!({"Records": []})), Err(UnknownEvent::NoRecords));
        assert_eq!(of(json!({"detail": {}})), Err(UnknownEvent::NoRecords));
        assert_eq!(
            of(json!({"Records": [{"eventSource": "aws:dynamodb"}]})),
            Err(UnknownEvent::Source("aws:dynamodb".into()))
        );
        assert_eq!(
            of(json!({"Records": [{"eventSource": "aws:sqs"}, {"eventSource": "aws:kinesis"}]})),
            Err(UnknownEvent::Mixed("aws:sqs".into(), "aws:kinesis".into()))
        );
    }

    #[test]
    fn the_oldest_sent_at_skips_records_that_do_not_say() {
        let records = [
            sqs(Some("a"), None, Some("1700000000500")),
            sqs(Some("b"), None, Some("1700000000100")),
            sqs(Some("c"), None, None),
            sqs(Some("d"), None, Some("not a number")),
        ];
        assert_eq!(
            oldest_sent_at(&records),
            DateTime::from_timestamp_millis(1_700_000_000_100)
        );
        assert_eq!(oldest_sent_at::<SqsMessage>(&[]), None);
    }
}
