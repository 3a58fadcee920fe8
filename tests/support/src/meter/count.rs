//! What one buffer call carries and what AWS bills for it, read from the call's JSON body:
//! SQS sends (each started 64 KiB of a call's message bodies is one request) and Kinesis puts
//! (each record's data plus partition key, rounded up to 1 KiB for on-demand's data-in and to
//! 25 KiB PUT payload units for provisioned mode). Pure: tested in `super::tests`.

use base64::Engine as _;
use serde_json::Value;

/// AWS bills each started 64 KiB of an SQS request's payload as one request.
pub const BILLING_CHUNK: u64 = 64 * 1024;
/// Kinesis on-demand bills data in per record, its size rounded up to the next 1 KiB.
pub const KINESIS_KB: u64 = 1024;
/// Kinesis provisioned mode bills PUT payload units: each started 25 KiB of a record.
pub const PUT_PAYLOAD_UNIT: u64 = 25 * 1024;

/// Requests billed for one call whose message bodies hold `body_bytes` bytes: one per started
/// 64 KiB, and at least one (a call is a request even when its payload is tiny).
pub fn billed_requests(body_bytes: u64) -> u64 {
    body_bytes.div_ceil(BILLING_CHUNK).max(1)
}

/// The buffer action a request names in `X-Amz-Target` (SQS's awsJson 1.0, Kinesis's 1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    SendMessageBatch,
    SendMessage,
    PutRecords,
    PutRecord,
    /// Any other action, or none: forwarded, counted apart, not billed here.
    #[default]
    Other,
}

impl Action {
    pub fn from_target(target: Option<&str>) -> Action {
        match target.map(str::trim) {
            Some("AmazonSQS.SendMessageBatch") => Action::SendMessageBatch,
            Some("AmazonSQS.SendMessage") => Action::SendMessage,
            Some("Kinesis_20131202.PutRecords") => Action::PutRecords,
            Some("Kinesis_20131202.PutRecord") => Action::PutRecord,
            _ => Action::Other,
        }
    }

    /// A call that carries several entries (`SendMessageBatch`, `PutRecords`).
    pub fn is_batch(self) -> bool {
        matches!(self, Action::SendMessageBatch | Action::PutRecords)
    }
}

/// What one send or put call carried, read from its JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallCount {
    pub action: Action,
    /// Messages (SQS) or records (Kinesis).
    pub entries: u64,
    /// Events inside them (the envelope's `events`; a payload that is not an envelope counts
    /// as one): with group commit, one message holds the events of many requests.
    pub events: u64,
    /// SQS: the UTF-8 lengths of the `MessageBody` strings. Kinesis: each record's decoded
    /// data plus its partition key (what the 1 MiB record limit counts).
    pub body_bytes: u64,
    /// SQS requests billed: `ceil(body bytes / 64 KiB)`, at least 1. 0 for Kinesis calls.
    pub billed: u64,
    /// Kinesis on-demand data in, in KiB: per record, its size rounded up to 1 KiB.
    pub kinesis_kb: u64,
    /// Kinesis provisioned PUT payload units: per record, each started 25 KiB.
    pub put_units: u64,
    /// False when the body was not the JSON expected (an SQS call is still billed as one
    /// request; a Kinesis call, whose records cannot be read, as nothing).
    pub parsed: bool,
}

/// Counts one call: `target` is its `X-Amz-Target`, `body` its (de-chunked) JSON body.
pub fn count_call(target: Option<&str>, body: &[u8]) -> CallCount {
    let action = Action::from_target(target);
    let json = serde_json::from_slice::<Value>(body).ok();
    let mut c = CallCount {
        action,
        parsed: json.is_some(),
        ..CallCount::default()
    };
    let Some(v) = json else {
        if matches!(action, Action::SendMessageBatch | Action::SendMessage) {
            c.billed = 1;
        }
        return c;
    };
    match action {
        Action::SendMessageBatch | Action::SendMessage => {
            let bodies: Option<Vec<&str>> = if action == Action::SendMessage {
                v["MessageBody"].as_str().map(|b| vec![b])
            } else {
                v["Entries"].as_array().map(|a| {
                    a.iter()
                        .map(|e| e["MessageBody"].as_str().unwrap_or(""))
                        .collect()
                })
            };
            let Some(bodies) = bodies else {
                c.parsed = false;
                c.billed = 1;
                return c;
            };
            c.entries = bodies.len() as u64;
            c.events = bodies.iter().map(|b| events_in(b.as_bytes())).sum();
            c.body_bytes = bodies.iter().map(|b| b.len() as u64).sum();
            c.billed = billed_requests(c.body_bytes);
        }
        Action::PutRecords | Action::PutRecord => {
            let records: Vec<&Value> = if action == Action::PutRecord {
                vec![&v]
            } else {
                match v["Records"].as_array() {
                    Some(a) => a.iter().collect(),
                    None => {
                        c.parsed = false;
                        return c;
                    }
                }
            };
            for r in records {
                let data = r["Data"]
                    .as_str()
                    .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
                let (Some(data), Some(key)) = (data, r["PartitionKey"].as_str()) else {
                    c.parsed = false;
                    continue;
                };
                let size = (data.len() + key.len()) as u64;
                c.entries += 1;
                c.events += events_in(&data);
                c.body_bytes += size;
                c.kinesis_kb += size.div_ceil(KINESIS_KB).max(1);
                c.put_units += size.div_ceil(PUT_PAYLOAD_UNIT).max(1);
            }
        }
        Action::Other => {}
    }
    c
}

/// Events in one payload: the length of a Spillway envelope's `events`, else 1.
fn events_in(payload: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| v["events"].as_array().map(|a| a.len() as u64))
        .unwrap_or(1)
}

/// Entries an answer lists as failed: `Failed` of a `SendMessageBatch` answer, the entries with
/// an `ErrorCode` in a `PutRecords` answer (read one by one, never from `FailedRecordCount`).
pub(super) fn failed_entries(action: Action, answer_body: &[u8]) -> u64 {
    let Ok(v) = serde_json::from_slice::<Value>(answer_body) else {
        return 0;
    };
    match action {
        Action::SendMessageBatch => v["Failed"].as_array().map_or(0, |a| a.len() as u64),
        Action::PutRecords => v["Records"].as_array().map_or(0, |a| {
            a.iter().filter(|r| r.get("ErrorCode").is_some()).count() as u64
        }),
        _ => 0,
    }
}
