//! The canned endpoint ([`CannedSqs`], which speaks any AWS JSON protocol) as a Kinesis
//! stream under the real [`KinesisSender`]: a stream configuration, `PutRecords` answers built
//! from the request, and the records a request carried.

use aws_smithy_async::rt::sleep::SharedAsyncSleep;
use aws_smithy_async::time::{SharedTimeSource, StaticTimeSource};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use base64::Engine;
use serde_json::json;

use super::sqs::{CannedSqs, NoSleep};
use crate::buffer::connector::FetchParts;
use crate::buffer::kinesis::KinesisSender;
use crate::config::{Config, Target};

/// The stream of the tests' Kinesis configuration.
pub const STREAM_ARN: &str = "arn:aws:kinesis:eu-west-1:123456789012:stream/spillway-events";

/// What turns the tests' base environment (SQS) into a Kinesis one, over a local endpoint.
pub const KINESIS_ENV: &[(&str, &str)] = &[
    ("BUFFER", "kinesis"),
    ("KINESIS_STREAM_ARN", STREAM_ARN),
    ("KINESIS_ENDPOINT", "http://127.0.0.1:4567"),
];

impl CannedSqs {
    /// The real Kinesis sender over this endpoint, with a fixed signing clock, no SDK sleeps,
    /// and `random` for the partition keys. `config` must name Kinesis.
    pub fn kinesis_sender(&self, config: &Config, random: fn() -> [u8; 16]) -> KinesisSender {
        #[allow(irrefutable_let_patterns)]
        let Target::Kinesis(target) = &config.target
        else {
            panic!("CannedSqs::kinesis_sender needs a configuration with BUFFER=kinesis");
        };
        KinesisSender::new(
            config,
            target,
            SharedHttpClient::new(self.clone()),
            SharedTimeSource::new(StaticTimeSource::from_secs(1_795_852_800)),
            SharedAsyncSleep::new(NoSleep),
            random,
        )
    }
}

/// The records of the `PutRecords` request `parts` carries: (data, partition key).
pub fn recorded_data(parts: &FetchParts) -> Vec<(Vec<u8>, String)> {
    let request: serde_json::Value = serde_json::from_slice(&parts.body).unwrap_or_default();
    request["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let data = base64::engine::general_purpose::STANDARD
                .decode(r["Data"].as_str().unwrap_or_default())
                .unwrap_or_default();
            (
                data,
                r["PartitionKey"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A `PutRecords` answer storing every record of the request `parts` carries, except those at
/// `refused` (answered `ProvisionedThroughputExceededException`). `FailedRecordCount` is set
/// to 0 whatever is refused: the sender must not trust it.
pub fn all_recorded(parts: &FetchParts, refused: &[usize]) -> String {
    let n = recorded_data(parts).len();
    let records: Vec<_> = (0..n)
        .map(|i| {
            if refused.contains(&i) {
                json!({
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": "Rate exceeded for shard shardId-000000000001"
                })
            } else {
                json!({
                    "SequenceNumber": format!("4963{i:052}"),
                    "ShardId": "shardId-000000000000"
                })
            }
        })
        .collect();
    json!({ "FailedRecordCount": 0, "Records": records }).to_string()
}
