//! Where the handler puts a Kinesis record it can never store: an SQS dead-letter queue
//! (`DEAD_LETTER_QUEUE_URL`), the record itself and where it came from.
//!
//! Kinesis has no dead-letter queue of its own: a record that fails on every delivery holds
//! its shard until `MaximumRetryAttempts`/`MaximumRecordAgeInSeconds` give up, and the event
//! source mapping's on-failure destination then gets only the batch's sequence range, not the
//! record. So the handler sends such a record here itself and counts it done; `spillway-dlq`
//! lists it beside SQS's dead letters and redrives it into its stream.
//!
//! The message: the body is the record's data exactly as received (an envelope is JSON, so it
//! is valid SQS text and tools can check its seal as they do an SQS dead letter's); data SQS
//! cannot carry as text (not UTF-8, a control character SQS refuses, or empty) is sent base64
//! with `spillway.data_encoding=base64`. The attributes ([`attr`]) name the source, stream,
//! shard, sequence number, partition key and reason. Limits: SQS refuses a message larger than
//! the queue's `MaximumMessageSize` (256 KiB on queues made before August 2025, up to 1 MiB
//! since); a Kinesis record of up to 1 MiB that does not fit cannot be dead-lettered, the send
//! fails and the record is reported failed, so it is retried until the mapping's retry budget
//! ends and then only its sequence range reaches the on-failure destination.
//!
//! [`DeadLetterSink`] is the port; [`SqsDeadLetters`] its SQS adapter; [`NoDeadLetters`] what a
//! consumer without `DEAD_LETTER_QUEUE_URL` has (every send fails, so nothing is lost);
//! `crate::testing::MemDeadLetters` the fake.

use std::future::Future;

use base64::Engine as _;
use thiserror::Error;

/// The message attributes of a Kinesis dead letter. SQS allows 10 per message; these are 7.
pub mod attr {
    /// `kinesis`: tells a handler-sent dead letter from one SQS moved after `maxReceiveCount`.
    pub const SOURCE: &str = "spillway.source";
    pub const STREAM_ARN: &str = "spillway.stream_arn";
    pub const SHARD_ID: &str = "spillway.shard_id";
    pub const SEQUENCE_NUMBER: &str = "spillway.sequence_number";
    /// Sent as `Binary` when SQS could not carry it as text.
    pub const PARTITION_KEY: &str = "spillway.partition_key";
    /// Why it can never be stored (the handler's failure, as logged).
    pub const REASON: &str = "spillway.reason";
    /// `base64` or `empty` when the body is not the data itself; absent when it is.
    pub const DATA_ENCODING: &str = "spillway.data_encoding";
    /// The value of [`SOURCE`] for a Kinesis record.
    pub const KINESIS: &str = "kinesis";
}

/// SQS caps each attribute value with the message; a reason is a log line, kept short.
const REASON_MAX_CHARS: usize = 1_000;

/// One Kinesis record the handler gives up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The record's data, as the stream delivered it.
    pub data: Vec<u8>,
    /// `eventSourceARN`.
    pub stream_arn: String,
    /// The prefix of `eventID`.
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub reason: String,
}

/// An attribute value of a dead letter as SQS carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    Text(String),
    Binary(Vec<u8>),
}

/// A dead letter's SQS message, or a message read back as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub body: String,
    pub attributes: Vec<(&'static str, AttrValue)>,
}

/// Why a received message is not a Kinesis dead letter this build can redrive.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NotADeadLetter {
    #[error("its attribute {0} is missing")]
    Missing(&'static str),
    #[error("its attribute {0} is not what this build writes: {1}")]
    Invalid(&'static str, String),
}

/// Whether SQS accepts `s` as a body or string attribute: `#x9 | #xA | #xD | #x20-#xD7FF |
/// #xE000-#xFFFD | #x10000-#x10FFFF` (SQS's documented set), and not empty.
pub fn sqs_text(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
                || c >= '\u{10000}'
        })
}

impl DeadLetter {
    /// The SQS message that carries this dead letter.
    pub fn to_message(&self) -> Message {
        let (body, encoding) = match std::str::from_utf8(&self.data) {
            Ok(text) if sqs_text(text) => (text.to_owned(), None),
            _ if self.data.is_empty() => ("(no data)".to_owned(), Some("empty")),
            _ => (
                base64::engine::general_purpose::STANDARD.encode(&self.data),
                Some("base64"),
            ),
        };
        let text = |s: &str| AttrValue::Text(s.to_owned());
        let mut attributes = vec![(attr::SOURCE, text(attr::KINESIS))];
        // Empty string attributes are refused by SQS: leave out what is unknown.
        for (name, value) in [
            (attr::STREAM_ARN, &self.stream_arn),
            (attr::SHARD_ID, &self.shard_id),
            (attr::SEQUENCE_NUMBER, &self.sequence_number),
        ] {
            if sqs_text(value) {
                attributes.push((name, text(value)));
            }
        }
        if !self.partition_key.is_empty() {
            let value = if sqs_text(&self.partition_key) {
                text(&self.partition_key)
            } else {
                AttrValue::Binary(self.partition_key.as_bytes().to_vec())
            };
            attributes.push((attr::PARTITION_KEY, value));
        }
        let reason: String = self
            .reason
            .chars()
            .map(|c| {
                if sqs_text(c.encode_utf8(&mut [0; 4])) {
                    c
                } else {
                    '\u{FFFD}'
                }
            })
            .take(REASON_MAX_CHARS)
            .collect();
        if !reason.is_empty() {
            attributes.push((attr::REASON, AttrValue::Text(reason)));
        }
        if let Some(encoding) = encoding {
            attributes.push((attr::DATA_ENCODING, text(encoding)));
        }
        Message { body, attributes }
    }

    /// Reads a received message back (`attribute` looks one up by name). `Ok(None)` when it is
    /// not a Kinesis dead letter at all (no `spillway.source=kinesis`): an SQS one.
    pub fn from_message(
        body: &str,
        attribute: &dyn Fn(&str) -> Option<AttrValue>,
    ) -> Result<Option<Self>, NotADeadLetter> {
        let text = |name: &'static str| match attribute(name) {
            Some(AttrValue::Text(s)) => Ok(Some(s)),
            Some(AttrValue::Binary(b)) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| NotADeadLetter::Invalid(name, "not UTF-8".to_owned())),
            None => Ok(None),
        };
        if text(attr::SOURCE)?.as_deref() != Some(attr::KINESIS) {
            return Ok(None);
        }
        let data = match text(attr::DATA_ENCODING)?.as_deref() {
            None => body.as_bytes().to_vec(),
            Some("empty") => Vec::new(),
            Some("base64") => base64::engine::general_purpose::STANDARD
                .decode(body.trim())
                .map_err(|e| NotADeadLetter::Invalid(attr::DATA_ENCODING, e.to_string()))?,
            Some(other) => {
                return Err(NotADeadLetter::Invalid(
                    attr::DATA_ENCODING,
                    format!("unknown encoding `{other}`"),
                ))
            }
        };
        let required = |name| text(name)?.ok_or(NotADeadLetter::Missing(name));
        Ok(Some(Self {
            data,
            stream_arn: required(attr::STREAM_ARN)?,
            partition_key: required(attr::PARTITION_KEY)?,
            shard_id: text(attr::SHARD_ID)?.unwrap_or_default(),
            sequence_number: text(attr::SEQUENCE_NUMBER)?.unwrap_or_default(),
            reason: text(attr::REASON)?.unwrap_or_default(),
        }))
    }
}

/// A dead letter that was not sent: the record must be reported failed (retried).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("dead letter not sent: {0}")]
pub struct DeadLetterError(pub String);

/// Where dead letters go.
pub trait DeadLetterSink {
    /// Sends one dead letter; `Ok` only once the queue holds it.
    fn send(&self, letter: &DeadLetter)
        -> impl Future<Output = Result<(), DeadLetterError>> + Send;
}

/// No dead-letter queue configured (`DEAD_LETTER_QUEUE_URL` unset): every send fails, so a
/// record that can never be stored is reported failed and retried rather than dropped. What an
/// SQS-only consumer has; a Kinesis consumer needs the real one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDeadLetters;

impl DeadLetterSink for NoDeadLetters {
    async fn send(&self, _letter: &DeadLetter) -> Result<(), DeadLetterError> {
        Err(DeadLetterError(
            "DEAD_LETTER_QUEUE_URL is not set: a Kinesis consumer needs a dead-letter queue"
                .to_owned(),
        ))
    }
}

/// A queue when one is configured, else [`NoDeadLetters`]' answer.
impl<T: DeadLetterSink + Sync> DeadLetterSink for Option<T> {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        match self {
            Some(sink) => sink.send(letter).await,
            None => NoDeadLetters.send(letter).await,
        }
    }
}

/// The SQS dead-letter queue: one `SendMessage` per dead letter (they are rare, and one call
/// each keeps a failure to its own record).
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeadLetters {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// A client for `queue_url` with the default credential chain and region; its endpoint is
    /// `endpoint` (`SQS_ENDPOINT`, for a local queue) or else the origin of the queue URL, as
    /// for `SQS_QUEUE_URL` in the contract.
    pub async fn connect(queue_url: &str, endpoint: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(origin) = endpoint
            .map(str::to_owned)
            .or_else(|| spillway_shared::origin_of(queue_url).ok())
        {
            loader = loader.endpoint_url(origin);
        }
        Self::new(aws_sdk_sqs::Client::new(&loader.load().await), queue_url)
    }
}

impl DeadLetterSink for SqsDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        use aws_sdk_sqs::primitives::Blob;
        use aws_sdk_sqs::types::MessageAttributeValue;
        let message = letter.to_message();
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message.body);
        for (name, value) in message.attributes {
            let value = match value {
                AttrValue::Text(s) => MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(s),
                AttrValue::Binary(b) => MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(b)),
            }
            .build()
            .map_err(|e| DeadLetterError(e.to_string()))?;
            request = request.message_attributes(name, value);
        }
        request.send().await.map(|_| ()).map_err(|e| {
            DeadLetterError(format!(
                "SendMessage to {}: {}",
                self.queue_url,
                aws_sdk_sqs::error::DisplayErrorContext(e)
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(data: &[u8]) -> DeadLetter {
        DeadLetter {
            data: data.to_vec(),
            stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/spillway".into(),
            shard_id: "shardId-000000000001".into(),
            sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
            partition_key: "web".into(),
            reason: "undecodable: invalid JSON\u{1b}[2J".into(),
        }
    }

    fn read_back(m: &Message) -> Result<Option<DeadLetter>, NotADeadLetter> {
        let attrs = m.attributes.clone();
        DeadLetter::from_message(&m.body, &move |name| {
            attrs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn an_envelope_is_the_body_itself_and_comes_back_whole() {
        let envelope = crate::testing::body(&[crate::testing::event(1)]);
        let l = letter(envelope.as_bytes());
        let m = l.to_message();
        assert_eq!(
            m.body, envelope,
            "tools check the seal of exactly these bytes"
        );
        let names: Vec<&str> = m.attributes.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                attr::SOURCE,
                attr::STREAM_ARN,
                attr::SHARD_ID,
                attr::SEQUENCE_NUMBER,
                attr::PARTITION_KEY,
                attr::REASON
            ]
        );
        let back = read_back(&m)
            .expect("valid")
            .expect("a kinesis dead letter");
        // The reason's control character was replaced: SQS refuses it.
        assert_eq!(back.reason, "undecodable: invalid JSON\u{FFFD}[2J");
        assert_eq!(
            DeadLetter {
                reason: back.reason.clone(),
                ..l
            },
            back
        );
    }

    #[test]
    fn data_sqs_cannot_carry_goes_base64_and_comes_back_byte_for_byte() {
        for data in [&[0xff, 0x00, b'{'][..], b"a\x01b", b""] {
            let l = letter(data);
            let m = l.to_message();
            assert!(sqs_text(&m.body), "{:?}", m.body);
            assert!(m.attributes.iter().any(|(n, _)| *n == attr::DATA_ENCODING));
            let back = read_back(&m).expect("valid").expect("kinesis");
            assert_eq!(back.data, data);
        }
        let mut l = letter(b"{}");
        l.partition_key = "a\u{0}b".into();
        let m = l.to_message();
        assert!(m
            .attributes
            .contains(&(attr::PARTITION_KEY, AttrValue::Binary(b"a\0b".to_vec()))));
        assert_eq!(
            read_back(&m).expect("ok").expect("k").partition_key,
            "a\u{0}b"
        );
    }

    #[test]
    fn an_sqs_dead_letter_or_a_broken_one_is_told_apart() {
        let plain = Message {
            body: "{}".into(),
            attributes: vec![],
        };
        assert_eq!(read_back(&plain), Ok(None));
        let mut m = letter(b"{}").to_message();
        m.attributes.retain(|(n, _)| *n != attr::STREAM_ARN);
        assert_eq!(
            read_back(&m),
            Err(NotADeadLetter::Missing(attr::STREAM_ARN))
        );
        let mut m = letter(b"{}").to_message();
        m.attributes
            .push((attr::DATA_ENCODING, AttrValue::Text("rot13".into())));
        assert!(matches!(
            read_back(&m),
            Err(NotADeadLetter::Invalid(attr::DATA_ENCODING, _))
        ));
    }

    #[test]
    fn sqs_text_is_sqs_s_character_set() {
        assert!(sqs_text("a\tb\n\r\u{D7FF}\u{E000}\u{FFFD}\u{10000}"));
        for bad in ["", "\u{0}", "\u{1b}", "\u{FFFE}", "\u{FFFF}", "\u{7}"] {
            assert!(!sqs_text(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn without_a_queue_every_send_fails() {
        let e = NoDeadLetters
            .send(&letter(b"x"))
            .await
            .expect_err("no queue");
        assert!(e.to_string().contains("DEAD_LETTER_QUEUE_URL"));
        let none: Option<NoDeadLetters> = None;
        assert_eq!(none.send(&letter(b"x")).await, Err(e));
    }
}
