//! The pure decisions of a scan and a redrive: which received messages are new, which
//! attributes can be sent again, and which messages SQS's answer lets us delete.

use std::collections::{HashMap, HashSet};

use aws_sdk_sqs::types::{Message, MessageAttributeValue};
use spillway_shared::limits::{KINESIS_MAX_CALL_BYTES, KINESIS_MAX_RECORDS};
use spillway_shared::{read_put_result, PutRecordResult};

/// How one message of a redrive batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// In the main queue under `new_id`; delete it from the DLQ with `receipt_handle`.
    Yes {
        message_id: String,
        new_id: String,
        receipt_handle: String,
    },
    /// Not sent: it stays in the DLQ.
    No { message_id: String, reason: String },
}

/// Matches a `SendMessageBatch` answer to the batch (entry `i` is `batch[i]`, id `m{i}`).
/// Only entries SQS lists as successful may be deleted from the DLQ; one it does not mention
/// at all counts as not sent.
pub fn plan_redrive(
    batch: &[Message],
    successful: &[(String, String)],
    failed: &[(String, String)],
) -> Vec<Sent> {
    batch
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let entry = entry_id(i);
            let message_id = m.message_id().unwrap_or_default().to_owned();
            let ok = successful.iter().find(|(id, _)| *id == entry);
            match (ok, m.receipt_handle()) {
                (Some((_, new_id)), Some(receipt)) => Sent::Yes {
                    message_id,
                    new_id: new_id.clone(),
                    receipt_handle: receipt.to_owned(),
                },
                (Some(_), None) => Sent::No {
                    message_id,
                    reason: "sent, but it has no receipt handle to delete it with".to_owned(),
                },
                (None, _) => Sent::No {
                    message_id,
                    reason: failed.iter().find(|(id, _)| *id == entry).map_or_else(
                        || "SQS did not answer for it".to_owned(),
                        |(_, why)| why.clone(),
                    ),
                },
            }
        })
        .collect()
}

pub(super) fn entry_id(i: usize) -> String {
    format!("m{i}")
}

/// Splits a receive into the messages not seen before (returned, their ids recorded in `ids`)
/// and those seen again, whose newer copy replaces the one in `known` (only the newest receipt
/// handle can still change its visibility or delete it).
pub fn split_new(
    received: Vec<Message>,
    ids: &mut HashSet<String>,
    known: &mut [Message],
) -> Vec<Message> {
    let mut new = Vec::new();
    for m in received {
        let id = m.message_id().unwrap_or_default().to_owned();
        if ids.insert(id) {
            new.push(m);
        } else if let Some(old) = known.iter_mut().find(|o| o.message_id() == m.message_id()) {
            *old = m;
        }
    }
    new
}

/// What a redrive did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// Dry run: the messages that would be moved.
    pub would_move: Vec<String>,
    /// `(DLQ message id, id in the main queue)`.
    pub moved: Vec<(String, String)>,
    /// `(DLQ message id, why)`: still in the DLQ only.
    pub not_moved: Vec<(String, String)>,
    /// `(DLQ message id, why)`: sent to the main queue but still in the DLQ too.
    pub not_deleted: Vec<(String, String)>,
}

/// Keeps the attributes a sender may set: SQS refuses the reserved list fields.
pub(super) fn sendable(
    attrs: Option<&HashMap<String, MessageAttributeValue>>,
) -> Option<HashMap<String, MessageAttributeValue>> {
    let attrs = attrs?;
    let kept: HashMap<_, _> = attrs
        .iter()
        .filter_map(|(k, v)| {
            MessageAttributeValue::builder()
                .data_type(v.data_type())
                .set_string_value(v.string_value().map(str::to_owned))
                .set_binary_value(v.binary_value().cloned())
                .build()
                .ok()
                .map(|v| (k.clone(), v))
        })
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// Splits records of `(stream, size)` into `PutRecords` calls: one stream per call, at most
/// [`KINESIS_MAX_RECORDS`] (500) and [`KINESIS_MAX_CALL_BYTES`] (5 MiB of data plus partition
/// keys) each, the ceilings the edge packs within too (a record larger than that
/// goes alone; Kinesis then answers for it). Returns the records' positions per call, in
/// order.
pub fn put_calls(records: &[(&str, usize)]) -> Vec<Vec<usize>> {
    let mut calls: Vec<(String, usize, Vec<usize>)> = Vec::new();
    for (i, (stream, size)) in records.iter().enumerate() {
        let open = calls.iter_mut().rev().find(|(s, bytes, ids)| {
            s == stream && ids.len() < KINESIS_MAX_RECORDS && bytes + size <= KINESIS_MAX_CALL_BYTES
        });
        match open {
            Some((_, bytes, ids)) => {
                *bytes += size;
                ids.push(i);
            }
            None => calls.push(((*stream).to_owned(), *size, vec![i])),
        }
    }
    calls.into_iter().map(|(_, _, ids)| ids).collect()
}

/// One result entry of a `PutRecords` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutResult {
    pub shard_id: Option<String>,
    pub sequence_number: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// Reads a `PutRecords` answer for `sent` records: entry `i` answers record `i`, read by the rule
/// the edge shares ([`read_put_result`]: in the stream only with a non-empty sequence number and
/// no error code; `FailedRecordCount` is not trusted); an entry missing from the answer counts
/// as not put. `Ok` holds
/// `shard/sequence`.
pub fn read_put_records(sent: usize, results: &[PutResult]) -> Vec<Result<String, String>> {
    (0..sent)
        .map(|i| {
            let Some(r) = results.get(i) else {
                return Err("Kinesis did not answer for it".to_owned());
            };
            match read_put_result(r.error_code.as_deref(), r.sequence_number.as_deref()) {
                PutRecordResult::Refused(code) => Err(format!(
                    "{code}: {}",
                    r.error_message.as_deref().unwrap_or_default()
                )),
                PutRecordResult::Stored(seq) => {
                    Ok(format!("{}/{seq}", r.shard_id.as_deref().unwrap_or("?")))
                }
                PutRecordResult::Unacknowledged => {
                    Err("Kinesis answered with neither a sequence number nor an error".to_owned())
                }
            }
        })
        .collect()
}
