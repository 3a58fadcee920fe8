//! The mapping's seams: the function it invokes (the consumer's handler in the binary, a fake
//! in tests) and where on-failure records go (an SQS queue). Only the SQS adapter does I/O.

use std::future::Future;
use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use thiserror::Error;

/// The function failed as a whole (on Lambda: an error, a timeout, a crash); the batch is
/// retried or bisected.
#[derive(Debug, Clone, Error)]
#[error("{0}")]
pub struct FunctionError(pub String);

/// What the mapping invokes: the consumer's handler in the binary, a fake in tests.
pub trait Function: Send + Sync + 'static {
    fn invoke(
        &self,
        event: KinesisEvent,
        request_id: String,
    ) -> impl Future<Output = Result<KinesisEventResponse, FunctionError>> + Send;
}

/// A shared function is still the function (lets a caller keep a handle to it).
impl<T: Function> Function for Arc<T> {
    fn invoke(
        &self,
        event: KinesisEvent,
        request_id: String,
    ) -> impl Future<Output = Result<KinesisEventResponse, FunctionError>> + Send {
        T::invoke(self, event, request_id)
    }
}

/// Where on-failure records go (an SQS queue in the binary).
pub trait Destination: Send + Sync + 'static {
    fn send(&self, body: String) -> impl Future<Output = Result<(), String>> + Send;
}

/// `ON_FAILURE_DESTINATION` as an SQS queue.
#[derive(Debug, Clone)]
pub struct SqsDestination {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl Destination for SqsDestination {
    async fn send(&self, body: String) -> Result<(), String> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
    }
}
