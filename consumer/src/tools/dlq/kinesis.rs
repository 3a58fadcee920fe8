//! The Kinesis calls of a redrive: a Kinesis dead letter goes back into the stream its
//! attributes name, with `PutRecords` and its own partition key (so it lands on the shard it
//! came from, as long as the stream was not resharded). Which record an answer lets us delete
//! is decided in [`super::plan`] ([`read_put_records`]: every result entry is read).
//!
//! The stream's region is its ARN's; the endpoint is `KINESIS_ENDPOINT` (a local stream) or
//! the region's own. No retry here: a record Kinesis refuses (throttled, internal failure)
//! stays in the DLQ and is reported; run the redrive again.

use std::collections::HashMap;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use spillway_shared::StreamArn;

use super::plan::{put_calls, read_put_records, PutResult};
use crate::dead_letter::DeadLetter;

/// Kinesis clients, one per region, made on first use.
#[derive(Debug, Default)]
pub struct Streams {
    endpoint: Option<String>,
    clients: HashMap<String, aws_sdk_kinesis::Client>,
}

impl Streams {
    /// `endpoint`: `KINESIS_ENDPOINT`, or `None` for each region's endpoint.
    pub fn new(endpoint: Option<String>) -> Self {
        Self {
            endpoint,
            clients: HashMap::new(),
        }
    }

    async fn client(&mut self, region: &str) -> aws_sdk_kinesis::Client {
        if let Some(c) = self.clients.get(region) {
            return c.clone();
        }
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_owned()));
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let client = aws_sdk_kinesis::Client::new(&loader.load().await);
        self.clients.insert(region.to_owned(), client.clone());
        client
    }

    /// Puts each letter's data into its stream. One answer per letter, in order: `Ok` with
    /// `shard/sequence` once Kinesis holds it, else why not.
    pub async fn put(&mut self, letters: &[&DeadLetter]) -> Vec<Result<String, String>> {
        let mut answers: Vec<Result<String, String>> =
            vec![Err("not sent".to_owned()); letters.len()];
        let sized: Vec<(&str, usize)> = letters
            .iter()
            .map(|l| (l.stream_arn.as_str(), l.data.len() + l.partition_key.len()))
            .collect();
        for call in put_calls(&sized) {
            let stream = letters[call[0]].stream_arn.as_str();
            let arn = match StreamArn::parse(stream) {
                Ok(arn) => arn,
                Err(e) => {
                    for &i in &call {
                        answers[i] = Err(format!("stream ARN `{stream}` {e}"));
                    }
                    continue;
                }
            };
            let client = self.client(arn.region()).await;
            let entries: Vec<PutRecordsRequestEntry> = call
                .iter()
                .filter_map(|&i| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(letters[i].data.clone()))
                        .partition_key(&letters[i].partition_key)
                        .build()
                        .ok()
                })
                .collect();
            let results: Vec<PutResult> = match client
                .put_records()
                .stream_arn(stream)
                .set_records(Some(entries))
                .send()
                .await
            {
                Ok(out) => out
                    .records()
                    .iter()
                    .map(|r| PutResult {
                        shard_id: r.shard_id().map(str::to_owned),
                        sequence_number: r.sequence_number().map(str::to_owned),
                        error_code: r.error_code().map(str::to_owned),
                        error_message: r.error_message().map(str::to_owned),
                    })
                    .collect(),
                Err(e) => {
                    let why = format!(
                        "PutRecords to {stream} failed: {}",
                        aws_sdk_kinesis::error::DisplayErrorContext(e)
                    );
                    for &i in &call {
                        answers[i] = Err(why.clone());
                    }
                    continue;
                }
            };
            for (&i, answer) in call.iter().zip(read_put_records(call.len(), &results)) {
                answers[i] = answer;
            }
        }
        answers
    }
}
