//! A buffered record as the plan reads it, whatever buffer delivered it: an id to report its
//! failure by, the body the edge wrote, and when the buffer took it.
//!
//! SQS's record (`SqsMessage`, as Lambda and the local poller deliver it) is the first
//! implementation; a Kinesis record (issue 27) is meant to be a second one, so that
//! [`crate::plan::Plan`] and everything after it stay as they are. This module does not decode
//! bodies (that is the plan, with `spillway_shared::open`), nor answer the buffer (the plan's
//! `response` is SQS's `batchItemFailures`).

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};

/// One record of a delivered batch.
pub trait BufferedRecord {
    /// What the buffer names this record by when it is reported as failed: SQS's message id
    /// (an entry of `batchItemFailures`); for Kinesis it will be the sequence number. `None`
    /// when the buffer sent none (SQS never does in practice): such a record cannot be failed
    /// on its own.
    ///
    /// It is also what each row keeps of its record, in the column the contract names
    /// `sqs_message_id`.
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
