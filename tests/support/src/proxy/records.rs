//! The Kinesis `PutRecords` rewriting of the fault proxy, as pure functions over the request's
//! and the answer's JSON: which records of a call a [`RecordPlan`] refuses, the request without
//! them (what is forwarded to kinesis-local, so refused records are really not stored), and the
//! answer with an error entry spliced back at each refused position.
//!
//! Kinesis answers a `PutRecords` that succeeds as a whole with one result per record, in
//! request order: a `SequenceNumber` and `ShardId`, or an `ErrorCode` and `ErrorMessage`
//! (`ProvisionedThroughputExceededException` or `InternalFailure`), and `FailedRecordCount`.
//! A sender that trusts `FailedRecordCount` loses records when it is wrong
//! (vectordotdev/vector#16954): [`Count::Zero`] answers `0` while entries still fail.
//!
//! This module does no I/O and knows nothing of HTTP; the transport is in the parent module.

use serde_json::{json, Value};

/// Which records of the `PutRecords` calls to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Every `n`th record the plan sees, counted over all its calls from 0 (the records numbered
    /// `n-1`, `2n-1`, ...): a resent record is counted again, so every record goes through
    /// after a few tries. `n` = 1 refuses every record.
    EveryNth(u64),
    /// In the first `calls` calls the records at odd positions (1, 3, ...), in every later call
    /// all of them: a request is half accepted, then nothing more goes through.
    OddThenAll { calls: u64 },
}

/// What the answer's `FailedRecordCount` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// The number of failed entries, as Kinesis answers.
    Honest,
    /// `0` whatever failed: a sender must read every entry (vectordotdev/vector#16954).
    Zero,
}

/// The per-record error code spliced in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// `ProvisionedThroughputExceededException`: the shard is over 1 MiB/s or 1,000 records/s.
    Throughput,
    /// `InternalFailure`.
    Internal,
}

impl RecordError {
    pub fn code(self) -> &'static str {
        match self {
            RecordError::Throughput => "ProvisionedThroughputExceededException",
            RecordError::Internal => "InternalFailure",
        }
    }

    /// The message Kinesis sends with the code (its documented wording), marked as injected.
    fn message(self) -> &'static str {
        match self {
            RecordError::Throughput => {
                "Rate exceeded for shard shardId-000000000000 in stream spillway under account \
                 000000000000. (injected by the spillway fault proxy)"
            }
            RecordError::Internal => {
                "Internal service failure. (injected by the spillway fault proxy)"
            }
        }
    }
}

/// What the proxy does to each `PutRecords` call in [`super::FaultMode::RefuseRecords`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPlan {
    pub pick: Pick,
    pub count: Count,
    pub error: RecordError,
}

impl Default for RecordPlan {
    /// Every other record refused for throughput, the count honest.
    fn default() -> Self {
        RecordPlan {
            pick: Pick::EveryNth(2),
            count: Count::Honest,
            error: RecordError::Throughput,
        }
    }
}

/// Why a body could not be rewritten (then the proxy forwards it untouched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRewritable(pub String);

/// The positions (ascending) of the `len` records of a call that `pick` refuses; `call` is the
/// call's number under the plan (from 0), `first` the plan's running number of its first record.
pub fn refused_positions(pick: Pick, call: u64, first: u64, len: usize) -> Vec<usize> {
    (0..len)
        .filter(|&p| match pick {
            Pick::EveryNth(n) => {
                let n = n.max(1);
                (first + p as u64) % n == n - 1
            }
            Pick::OddThenAll { calls } => call >= calls || p % 2 == 1,
        })
        .collect()
}

/// The number of records in a `PutRecords` request body.
pub fn record_count(request: &Value) -> Result<usize, NotRewritable> {
    request["Records"]
        .as_array()
        .map(Vec::len)
        .ok_or_else(|| NotRewritable("a PutRecords request without `Records`".to_owned()))
}

/// `request` without the records at `refused` (ascending positions): what reaches the stream.
pub fn without_refused(request: &Value, refused: &[usize]) -> Result<Value, NotRewritable> {
    let records = request["Records"]
        .as_array()
        .ok_or_else(|| NotRewritable("a PutRecords request without `Records`".to_owned()))?;
    let mut out = request.clone();
    out["Records"] = Value::Array(
        records
            .iter()
            .enumerate()
            .filter(|(p, _)| refused.binary_search(p).is_err())
            .map(|(_, r)| r.clone())
            .collect(),
    );
    Ok(out)
}

/// The answer to the whole call of `total` records, from `answer` (kinesis-local's answer to
/// the forwarded records, `None` when every record was refused and nothing was forwarded): an
/// error entry at each position in `refused`, the forwarded records' entries in order at the
/// others, and `FailedRecordCount` as `plan.count` says (the entries kinesis-local failed
/// itself count as failed too).
pub fn spliced_answer(
    answer: Option<&Value>,
    total: usize,
    refused: &[usize],
    plan: &RecordPlan,
) -> Result<Value, NotRewritable> {
    let forwarded: &[Value] = match answer {
        Some(a) => a["Records"]
            .as_array()
            .ok_or_else(|| NotRewritable(format!("a PutRecords answer without `Records`: {a}")))?,
        None => &[],
    };
    if forwarded.len() + refused.len() != total {
        return Err(NotRewritable(format!(
            "{} results for {} forwarded records",
            forwarded.len(),
            total - refused.len()
        )));
    }
    let mut upstream = forwarded.iter();
    let mut records = Vec::with_capacity(total);
    for p in 0..total {
        if refused.binary_search(&p).is_ok() {
            records.push(json!({
                "ErrorCode": plan.error.code(),
                "ErrorMessage": plan.error.message(),
            }));
        } else if let Some(entry) = upstream.next() {
            records.push(entry.clone());
        }
    }
    let failed = records
        .iter()
        .filter(|r| r.get("ErrorCode").is_some_and(|c| !c.is_null()))
        .count();
    let mut out = answer.cloned().unwrap_or_else(|| json!({}));
    out["Records"] = Value::Array(records);
    out["FailedRecordCount"] = json!(match plan.count {
        Count::Honest => failed,
        Count::Zero => 0,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(n: usize) -> Value {
        let records: Vec<Value> = (0..n)
            .map(|i| json!({"Data": format!("ZGF0YS0{i}"), "PartitionKey": format!("k{i}")}))
            .collect();
        json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s", "Records": records})
    }

    fn stored(n: usize) -> Value {
        let records: Vec<Value> = (0..n)
            .map(|i| json!({"SequenceNumber": format!("4959{i}"), "ShardId": "shardId-000000000001"}))
            .collect();
        json!({"FailedRecordCount": 0, "Records": records, "EncryptionType": "NONE"})
    }

    #[test]
    fn every_nth_counts_records_over_calls() {
        // Records 1, 3, 5, ... of the plan refused, whatever call they come in.
        assert_eq!(refused_positions(Pick::EveryNth(2), 0, 0, 5), vec![1, 3]);
        assert_eq!(refused_positions(Pick::EveryNth(2), 1, 5, 2), vec![0]);
        assert_eq!(refused_positions(Pick::EveryNth(3), 0, 0, 7), vec![2, 5]);
        // A single resent record goes through every other time.
        assert_eq!(
            refused_positions(Pick::EveryNth(2), 2, 6, 1),
            Vec::<usize>::new()
        );
        assert_eq!(refused_positions(Pick::EveryNth(1), 0, 9, 3), vec![0, 1, 2]);
        // 0 is taken as 1, not a division by zero.
        assert_eq!(refused_positions(Pick::EveryNth(0), 0, 0, 2), vec![0, 1]);
    }

    #[test]
    fn odd_then_all_half_accepts_then_refuses_everything() {
        let pick = Pick::OddThenAll { calls: 1 };
        assert_eq!(refused_positions(pick, 0, 0, 4), vec![1, 3]);
        assert_eq!(refused_positions(pick, 1, 4, 3), vec![0, 1, 2]);
        assert_eq!(refused_positions(pick, 0, 0, 1), Vec::<usize>::new());
    }

    #[test]
    fn refused_records_are_taken_out_of_the_request() {
        let req = request(5);
        let out = without_refused(&req, &[1, 3]).expect("rewritable");
        let keys: Vec<&str> = out["Records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["PartitionKey"].as_str().expect("key"))
            .collect();
        assert_eq!(keys, ["k0", "k2", "k4"]);
        assert_eq!(out["StreamARN"], req["StreamARN"]);
        assert_eq!(record_count(&req), Ok(5));
        assert!(without_refused(&json!({"StreamARN": "x"}), &[0]).is_err());
        assert!(record_count(&json!({})).is_err());
    }

    #[test]
    fn errors_are_spliced_back_at_their_positions() {
        let plan = RecordPlan::default();
        let out = spliced_answer(Some(&stored(3)), 5, &[1, 3], &plan).expect("spliced");
        let records = out["Records"].as_array().expect("records");
        assert_eq!(records.len(), 5);
        for (p, seq) in [(0, "49590"), (2, "49591"), (4, "49592")] {
            assert_eq!(records[p]["SequenceNumber"], seq, "{p}");
            assert!(records[p].get("ErrorCode").is_none());
        }
        for p in [1, 3] {
            assert_eq!(
                records[p]["ErrorCode"],
                "ProvisionedThroughputExceededException"
            );
            assert!(records[p]["ErrorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("Rate exceeded")));
            assert!(records[p].get("SequenceNumber").is_none());
        }
        assert_eq!(out["FailedRecordCount"], 2);
        // The rest of kinesis-local's answer is kept.
        assert_eq!(out["EncryptionType"], "NONE");
    }

    #[test]
    fn the_count_can_lie() {
        let plan = RecordPlan {
            count: Count::Zero,
            error: RecordError::Internal,
            ..RecordPlan::default()
        };
        let out = spliced_answer(Some(&stored(1)), 2, &[0], &plan).expect("spliced");
        assert_eq!(out["FailedRecordCount"], 0);
        assert_eq!(out["Records"][0]["ErrorCode"], "InternalFailure");
        assert_eq!(out["Records"][1]["SequenceNumber"], "49590");
    }

    #[test]
    fn everything_refused_needs_no_upstream_answer() {
        let out = spliced_answer(None, 3, &[0, 1, 2], &RecordPlan::default()).expect("spliced");
        assert_eq!(out["FailedRecordCount"], 3);
        assert_eq!(out["Records"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn upstream_failures_still_count_as_failed() {
        let mut answer = stored(2);
        answer["Records"][1] = json!({"ErrorCode": "InternalFailure", "ErrorMessage": "x"});
        answer["FailedRecordCount"] = json!(1);
        let out = spliced_answer(Some(&answer), 3, &[0], &RecordPlan::default()).expect("spliced");
        assert_eq!(out["FailedRecordCount"], 2);
        assert_eq!(out["Records"][2]["ErrorCode"], "InternalFailure");
    }

    #[test]
    fn a_short_answer_is_not_rewritten() {
        let err = spliced_answer(Some(&stored(1)), 4, &[1], &RecordPlan::default());
        assert!(err.is_err(), "{err:?}");
    }
}
