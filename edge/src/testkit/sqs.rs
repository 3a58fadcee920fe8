//! A canned SQS endpoint under the real [`crate::buffer::sqs::SqsSender`]: the SDK serialises, signs
//! and parses for real, and this HTTP client records each request as it would go on the wire
//! and answers it, without a network.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::config::{SharedAsyncSleep, SharedHttpClient};
use aws_smithy_async::rt::sleep::{AsyncSleep, Sleep};
use aws_smithy_async::time::{SharedTimeSource, StaticTimeSource};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use serde_json::json;

use crate::buffer::connector::{request_parts, response_from_parts, FetchParts};
use crate::buffer::sqs::SqsSender;
use crate::config::Config;

/// How the endpoint answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP answer with this status and JSON body.
    Http(u16, String),
    /// The connection fails with this message.
    ConnectionFails(String),
}

type Answerer = dyn Fn(&FetchParts) -> Answer + Send + Sync;

/// The canned endpoint. Clones share what was sent and answered.
#[derive(Clone)]
pub struct CannedSqs {
    answer: Arc<Answerer>,
    sent: Arc<Mutex<Vec<FetchParts>>>,
    answered: Arc<Mutex<Vec<Answer>>>,
}

impl std::fmt::Debug for CannedSqs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CannedSqs").finish_non_exhaustive()
    }
}

impl CannedSqs {
    /// Answers each request with what `answer` returns for it.
    pub fn new(answer: impl Fn(&FetchParts) -> Answer + Send + Sync + 'static) -> Self {
        Self {
            answer: Arc::new(answer),
            sent: Arc::default(),
            answered: Arc::default(),
        }
    }

    /// Answers from a script, one entry per request in order: `Ok((status, body))`, or `Err`
    /// for a connection that fails. Past the end of the script, connections fail.
    pub fn script(answers: Vec<Result<(u16, &str), ()>>) -> Self {
        let script: Mutex<VecDeque<Answer>> = Mutex::new(
            answers
                .into_iter()
                .map(|a| match a {
                    Ok((status, body)) => Answer::Http(status, body.to_owned()),
                    Err(()) => Answer::ConnectionFails("connection refused".into()),
                })
                .collect(),
        );
        Self::new(move |_| {
            script
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or_else(|| Answer::ConnectionFails("connection refused".into()))
        })
    }

    /// Acknowledges every entry of every `SendMessageBatch`, as SQS does when all goes well.
    pub fn accepting() -> Self {
        Self::new(|parts| Answer::Http(200, all_successful(parts)))
    }

    /// Every request as it was sent.
    pub fn sent(&self) -> Vec<FetchParts> {
        self.sent.lock().expect("lock").clone()
    }

    /// The JSON body of every request sent.
    pub fn sent_json(&self) -> Vec<serde_json::Value> {
        self.sent()
            .iter()
            .map(|p| serde_json::from_slice(&p.body).expect("JSON request"))
            .collect()
    }

    /// Every answer given, in order.
    pub fn answered(&self) -> Vec<Answer> {
        self.answered.lock().expect("lock").clone()
    }

    /// The real sender over this endpoint, with a fixed signing clock and no SDK sleeps (the
    /// edge's own retry loop sleeps through its `Runtime`).
    pub fn sender(&self, config: &Config) -> SqsSender {
        SqsSender::new(
            config,
            SharedHttpClient::new(self.clone()),
            SharedTimeSource::new(StaticTimeSource::from_secs(1_795_852_800)),
            SharedAsyncSleep::new(NoSleep),
        )
    }
}

/// A `SendMessageBatch` answer acknowledging every entry of the request `parts` carries.
pub fn all_successful(parts: &FetchParts) -> String {
    let request: serde_json::Value = serde_json::from_slice(&parts.body).unwrap_or_default();
    let successful: Vec<_> = request["Entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            json!({
                "Id": e["Id"],
                "MessageId": "0f0e0d0c-0b0a-4908-8706-050403020100",
                "MD5OfMessageBody": "00000000000000000000000000000000"
            })
        })
        .collect();
    json!({ "Successful": successful, "Failed": [] }).to_string()
}

impl HttpConnector for CannedSqs {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let parts = match request_parts(&request) {
            Ok(p) => p,
            Err(e) => return HttpConnectorFuture::ready(Err(e)),
        };
        let answer = (self.answer)(&parts);
        self.sent.lock().expect("lock").push(parts);
        self.answered.lock().expect("lock").push(answer.clone());
        HttpConnectorFuture::ready(match answer {
            Answer::Http(status, body) => response_from_parts(
                status,
                vec![(
                    "content-type".to_owned(),
                    "application/x-amz-json-1.0".to_owned(),
                )],
                body.into_bytes(),
            ),
            Answer::ConnectionFails(message) => Err(ConnectorError::io(message.into())),
        })
    }
}

impl HttpClient for CannedSqs {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

#[derive(Debug)]
struct NoSleep;

impl AsyncSleep for NoSleep {
    fn sleep(&self, _: Duration) -> Sleep {
        Sleep::new(async {})
    }
}
