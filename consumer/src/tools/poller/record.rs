//! The pure half of the poller: SDK messages in, the `SqsEvent` Lambda would deliver out, and
//! which messages to delete once the handler answered. No I/O.

use std::collections::HashSet;

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::Message;
use tracing::warn;

/// Identity of the queue, as it appears in every record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub url: String,
    pub arn: String,
    pub region: String,
    /// The queue's own visibility timeout in seconds, when SQS said.
    pub visibility_timeout: Option<u64>,
}

/// One SDK message as the record Lambda delivers (field names and shapes as AWS documents
/// them: string attributes, `stringListValues`/`binaryListValues` always present, binary values
/// base64 on the wire), built directly, with no JSON in between.
pub fn lambda_record(msg: &Message, queue: &QueueInfo) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = msg.message_id().map(str::to_owned);
    record.receipt_handle = msg.receipt_handle().map(str::to_owned);
    record.body = msg.body().map(str::to_owned);
    record.md5_of_body = msg.md5_of_body().map(str::to_owned);
    record.md5_of_message_attributes = msg.md5_of_message_attributes().map(str::to_owned);
    if let Some(attrs) = msg.attributes() {
        record.attributes = attrs
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
            .collect();
    }
    let bytes = |b: &[u8]| {
        let mut data = Base64Data::default();
        data.extend_from_slice(b);
        data
    };
    if let Some(attrs) = msg.message_attributes() {
        for (name, v) in attrs {
            let mut a = SqsMessageAttribute::default();
            a.string_value = v.string_value().map(str::to_owned);
            a.binary_value = v.binary_value().map(|b| bytes(b.as_ref()));
            a.string_list_values = v.string_list_values().to_vec();
            a.binary_list_values = v
                .binary_list_values()
                .iter()
                .map(|b| bytes(b.as_ref()))
                .collect();
            a.data_type = Some(v.data_type().to_owned());
            record.message_attributes.insert(name.clone(), a);
        }
    }
    record.event_source = Some("aws:sqs".to_owned());
    record.event_source_arn = Some(queue.arn.clone());
    record.aws_region = Some(queue.region.clone());
    record
}

/// The `SqsEvent` the handler takes for a batch.
pub fn sqs_event(messages: &[Message], queue: &QueueInfo) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages.iter().map(|m| lambda_record(m, queue)).collect();
    event
}

/// `(message id, receipt handle)` of the messages to delete after the handler answered.
///
/// As Lambda does, a response naming an empty, unknown or missing message id fails the whole
/// batch: nothing is deleted.
pub fn to_delete<'a>(
    messages: &'a [Message],
    response: &SqsBatchResponse,
) -> Vec<(&'a str, &'a str)> {
    let ids: HashSet<&str> = messages.iter().filter_map(Message::message_id).collect();
    let failed: HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    if failed.iter().any(|f| !ids.contains(f)) {
        return Vec::new();
    }
    messages
        .iter()
        .filter_map(|m| Some((m.message_id()?, m.receipt_handle()?)))
        .filter(|(id, _)| !failed.contains(id))
        .collect()
}

/// Adds freshly received messages to a batch being gathered. A message received again
/// (its visibility timeout ran out while the window was open) replaces its older copy: only
/// the newest receipt handle can still delete it.
pub fn merge_received(batch: &mut Vec<Message>, received: Vec<Message>) {
    for m in received {
        let again = batch
            .iter()
            .position(|b| b.message_id().is_some() && b.message_id() == m.message_id());
        match again {
            Some(i) => {
                warn!(
                    message_id = m.message_id().unwrap_or(""),
                    "message received twice while gathering: its visibility timeout is shorter than the batching window"
                );
                batch[i] = m;
            }
            None => batch.push(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
    use serde_json::{json, Value};

    fn queue() -> QueueInfo {
        QueueInfo {
            url: "http://127.0.0.1:5000/123456789012/q".into(),
            arn: "arn:aws:sqs:us-east-1:123456789012:q".into(),
            region: "us-east-1".into(),
            visibility_timeout: Some(30),
        }
    }

    fn message(id: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("rh-{id}"))
            .body("Test message.")
            .md5_of_body("e4e68fb7bd0e697a0ae8f1bb342846b3")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "1")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1545082649183")
            .attributes(
                MessageSystemAttributeName::SenderId,
                "AIDAIENQZJOLO23YVJ4VO",
            )
            .attributes(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                "1545082649185",
            )
            .build()
    }

    #[test]
    fn record_has_the_shape_lambda_delivers() {
        let mut m = message("059f36b4-87a3-44ab-83d2-661975830a7d");
        m.message_attributes = Some(
            [(
                "myAttribute".to_owned(),
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("myValue")
                    .build()
                    .expect("attr"),
            )]
            .into(),
        );
        m.md5_of_message_attributes = Some("abc".into());
        let got = lambda_record(&m, &queue());
        let expected: SqsMessage = serde_json::from_value(json!({
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "receiptHandle": "rh-059f36b4-87a3-44ab-83d2-661975830a7d",
            "body": "Test message.",
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1545082649183",
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "ApproximateFirstReceiveTimestamp": "1545082649185"
            },
            "messageAttributes": {
                "myAttribute": {
                    "stringValue": "myValue",
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": "String"
                }
            },
            "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "md5OfMessageAttributes": "abc",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
            "awsRegion": "us-east-1"
        }))
        .expect("documented shape");
        assert_eq!(got, expected);
    }

    #[test]
    fn the_fixture_and_the_poller_agree_on_the_shape() {
        // The AWS-documented event (tests/fixtures/sqs/) has the same keys at every level
        // as what the poller builds.
        // At run time: a build from another clone may be reused (shared target directory).
        let path = format!(
            "{}/../tests/fixtures/sqs/aws_documented.json",
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
        );
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
        let documented = &fixture["Records"][0];
        let event = sqs_event(&[message("a")], &queue());
        let built = serde_json::to_value(&event).expect("serialise");
        let ours = &built["Records"][0];
        // What Lambda's runtime would read: the members that carry a value.
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            k.sort();
            k
        };
        let mut documented_keys = keys(documented);
        documented_keys.retain(|k| k != "md5OfMessageAttributes");
        assert_eq!(keys(ours), documented_keys);
        assert_eq!(keys(&ours["attributes"]), keys(&documented["attributes"]));
        assert_eq!(event.records.len(), 1);
        assert_eq!(event.records[0].event_source.as_deref(), Some("aws:sqs"));
        assert_eq!(
            event.records[0]
                .attributes
                .get("SentTimestamp")
                .map(String::as_str),
            Some("1545082649183")
        );
    }

    #[test]
    fn binary_attributes_are_base64() {
        let mut m = message("a");
        m.message_attributes = Some(
            [(
                "bin".to_owned(),
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(b"hi".to_vec()))
                    .build()
                    .expect("attr"),
            )]
            .into(),
        );
        let r = serde_json::to_value(lambda_record(&m, &queue())).expect("serialise");
        assert_eq!(r["messageAttributes"]["bin"]["binaryValue"], "aGk=");
        let e = sqs_event(&[m], &queue());
        let attr = &e.records[0].message_attributes["bin"];
        assert_eq!(
            attr.binary_value.as_ref().map(|b| b.0.as_slice()),
            Some(&b"hi"[..])
        );
    }

    fn response(ids: &[&str]) -> SqsBatchResponse {
        let mut r = SqsBatchResponse::default();
        for id in ids {
            r.add_failure(*id);
        }
        r
    }

    #[test]
    fn a_message_received_twice_keeps_its_newest_receipt_handle() {
        let mut batch = vec![message("a"), message("b")];
        let mut again = message("a");
        again.receipt_handle = Some("rh-a-2".into());
        merge_received(&mut batch, vec![again, message("c")]);
        let handles: Vec<_> = batch.iter().filter_map(Message::receipt_handle).collect();
        assert_eq!(handles, ["rh-a-2", "rh-b", "rh-c"]);
    }

    #[test]
    fn failures_stay_and_the_rest_is_deleted() {
        let msgs = [message("a"), message("b"), message("c")];
        let del = to_delete(&msgs, &response(&["b"]));
        assert_eq!(del, [("a", "rh-a"), ("c", "rh-c")]);
        assert_eq!(to_delete(&msgs, &response(&[])).len(), 3);
    }

    #[test]
    fn an_unknown_or_empty_failure_id_fails_the_whole_batch() {
        let msgs = [message("a"), message("b")];
        assert!(to_delete(&msgs, &response(&[""])).is_empty());
        assert!(to_delete(&msgs, &response(&["zzz"])).is_empty());
    }
}
