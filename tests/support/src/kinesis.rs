//! A few Kinesis calls over the JSON protocol (awsJson1_1), for setting up and watching the
//! *local* stream: create it and wait until it is active, list its shards, put and read records.
//!
//! Deliberately tiny (std TCP + serde_json), for the reason [`crate::sqs`] is: the stack and the
//! tests need a handful of calls, and the SDK with an async runtime in every tool would cost
//! minutes of build time. The product's own code (edge, poller) uses `aws-sdk-kinesis`.
//! Requests carry a dummy SigV4 header and `X-Amz-Date`, which kinesis-local requires to be
//! present and does not verify. Not a general client: no retries, no throttling back-off (the
//! emulator's `ProvisionedThroughputExceededException` comes back as an error entry or error).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};

/// The account kinesis-local files streams under for our (non-numeric) access key id.
pub const LOCAL_ACCOUNT: &str = "000000000000";

/// `arn:aws:kinesis:REGION:000000000000:stream/NAME`, the ARN kinesis-local gives `name`.
pub fn stream_arn(region: &str, name: &str) -> String {
    format!("arn:aws:kinesis:{region}:{LOCAL_ACCOUNT}:stream/{name}")
}

/// One record put: where it went, or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutResult {
    Stored {
        shard_id: String,
        sequence_number: String,
    },
    Refused {
        code: String,
    },
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// A client for a Kinesis endpoint on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct LocalKinesis {
    port: u16,
    region: String,
    /// Bound on connecting and on each read: 30 s by default; a status probe uses a short one.
    timeout: Duration,
}

impl LocalKinesis {
    pub fn new(port: u16, region: &str) -> Self {
        Self {
            port,
            region: region.to_owned(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The same client, giving up on a connect or a read after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Calls `Kinesis_20131202.<action>` with a JSON body; returns the JSON answer or the error.
    pub fn call(&self, action: &str, body: &Value) -> Result<Value> {
        let payload = body.to_string();
        let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), self.timeout)
            .with_context(|| {
            format!("connecting to the local Kinesis on port {}", self.port)
        })?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=spillway-local/20260101/{}/kinesis/aws4_request, SignedHeaders=host, Signature=0",
            self.region
        );
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/x-amz-json-1.1\r\n\
             X-Amz-Target: Kinesis_20131202.{action}\r\nX-Amz-Date: 20260101T000000Z\r\n\
             Authorization: {auth}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{payload}",
            self.port,
            payload.len()
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("{action}: not an HTTP response"))?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let value: Value = if body.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(body).with_context(|| format!("{action}: answer is not JSON"))?
        };
        if status != 200 {
            bail!("{action} failed with {status}: {value}");
        }
        Ok(value)
    }

    /// `StreamStatus` and `OpenShardCount` of `name`.
    pub fn summary(&self, name: &str) -> Result<(String, u32)> {
        let out = self.call("DescribeStreamSummary", &json!({"StreamName": name}))?;
        let s = &out["StreamDescriptionSummary"];
        let status = s["StreamStatus"]
            .as_str()
            .with_context(|| format!("DescribeStreamSummary without a status: {out}"))?;
        let shards = s["OpenShardCount"].as_u64().unwrap_or(0);
        Ok((status.to_owned(), u32::try_from(shards)?))
    }

    /// Creates stream `name` with `shards` shards unless it exists (a stream reloaded from the
    /// persisted data keeps its shards and records), then waits until it is `ACTIVE`, at most
    /// `timeout`. Returns its open shard count.
    pub fn ensure_stream(&self, name: &str, shards: u32, timeout: Duration) -> Result<u32> {
        match self.call(
            "CreateStream",
            &json!({"StreamName": name, "ShardCount": shards}),
        ) {
            Ok(_) => {}
            Err(e) if format!("{e:#}").contains("ResourceInUseException") => {}
            Err(e) => return Err(e),
        }
        let deadline = Instant::now() + timeout;
        loop {
            let (status, open) = self.summary(name)?;
            if status == "ACTIVE" {
                return Ok(open);
            }
            if Instant::now() > deadline {
                bail!("stream {name} is still {status} after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The ids of the stream's shards, in order.
    pub fn shard_ids(&self, name: &str) -> Result<Vec<String>> {
        let out = self.call("ListShards", &json!({"StreamName": name}))?;
        Ok(out["Shards"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["ShardId"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `PutRecords` of `(partition key, data)` pairs; one result per record, in request order
    /// (every entry is read: `FailedRecordCount` is not trusted).
    pub fn put_records(&self, name: &str, records: &[(String, Vec<u8>)]) -> Result<Vec<PutResult>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let entries: Vec<Value> = records
            .iter()
            .map(|(key, data)| json!({"PartitionKey": key, "Data": b64.encode(data)}))
            .collect();
        let out = self.call(
            "PutRecords",
            &json!({"StreamName": name, "Records": entries}),
        )?;
        let results = out["Records"]
            .as_array()
            .with_context(|| format!("PutRecords answered without Records: {out}"))?;
        if results.len() != records.len() {
            bail!(
                "PutRecords answered {} entries for {} records",
                results.len(),
                records.len()
            );
        }
        results
            .iter()
            .map(
                |r| match (r["SequenceNumber"].as_str(), r["ShardId"].as_str()) {
                    (Some(seq), Some(shard)) => Ok(PutResult::Stored {
                        shard_id: shard.to_owned(),
                        sequence_number: seq.to_owned(),
                    }),
                    _ => r["ErrorCode"]
                        .as_str()
                        .map(|code| PutResult::Refused {
                            code: code.to_owned(),
                        })
                        .with_context(|| format!("an entry with neither sequence nor error: {r}")),
                },
            )
            .collect()
    }

    /// Every record of `shard` from its start (TRIM_HORIZON) to the latest, page by page.
    pub fn read_shard(&self, name: &str, shard: &str) -> Result<Vec<Record>> {
        let out = self.call(
            "GetShardIterator",
            &json!({"StreamName": name, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}),
        )?;
        let mut iterator = out["ShardIterator"].as_str().map(str::to_owned);
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut records = Vec::new();
        while let Some(it) = iterator {
            let page = self.call("GetRecords", &json!({"ShardIterator": it, "Limit": 10000}))?;
            let got = page["Records"].as_array().cloned().unwrap_or_default();
            for r in &got {
                records.push(Record {
                    sequence_number: r["SequenceNumber"]
                        .as_str()
                        .with_context(|| format!("a record without a sequence number: {r}"))?
                        .to_owned(),
                    partition_key: r["PartitionKey"].as_str().unwrap_or_default().to_owned(),
                    data: b64
                        .decode(r["Data"].as_str().unwrap_or_default())
                        .context("record data is not base64")?,
                });
            }
            // An open shard always answers a next iterator: stop at the tip, where a page is
            // empty and nothing is behind.
            let caught_up = page["MillisBehindLatest"].as_u64() == Some(0);
            if got.is_empty() && caught_up {
                break;
            }
            iterator = page["NextShardIterator"].as_str().map(str::to_owned);
        }
        Ok(records)
    }

    /// Does `shard` hold a record after sequence number `after` (after its start, when
    /// `None`)? One `GetRecords` of one record.
    pub fn has_records_after(&self, name: &str, shard: &str, after: Option<&str>) -> Result<bool> {
        let request = match after {
            Some(seq) => json!({"StreamName": name, "ShardId": shard,
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": seq}),
            None => {
                json!({"StreamName": name, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"})
            }
        };
        let out = self.call("GetShardIterator", &request)?;
        let it = out["ShardIterator"]
            .as_str()
            .with_context(|| format!("GetShardIterator without an iterator: {out}"))?;
        let page = self.call("GetRecords", &json!({"ShardIterator": it, "Limit": 1}))?;
        Ok(page["Records"].as_array().is_some_and(|r| !r.is_empty()))
    }

    /// Every record of the stream, shard by shard.
    pub fn read_all(&self, name: &str) -> Result<Vec<Record>> {
        let mut all = Vec::new();
        for shard in self.shard_ids(name)? {
            all.extend(self.read_shard(name, &shard)?);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_are_the_ones_kinesis_local_gives() {
        assert_eq!(
            stream_arn("us-east-1", "spillway-events"),
            "arn:aws:kinesis:us-east-1:000000000000:stream/spillway-events"
        );
    }
}
