//! A canned AWS JSON endpoint under the real senders (`SqsSender`, and `KinesisSender` through
//! `testkit::kinesis`): the SDK serialises, signs and parses for real, and this HTTP client
//! records each request as it would go on the wire and answers it, without a network.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_async::rt::sleep::{AsyncSleep, Sleep};
#[cfg(feature = "sqs")]
use aws_smithy_async::{
    rt::sleep::SharedAsyncSleep,
    time::{SharedTimeSource, StaticTimeSource},
};
#[cfg(feature = "sqs")]
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
#[cfg(feature = "sqs")]
use serde_json::json;

use crate::buffer::connector::{request_parts, response_from_parts, FetchParts};
#[cfg(feature = "sqs")]
use crate::buffer::sqs::SqsSender;
#[cfg(feature = "sqs")]
use crate::config::{Config, Target};

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
    #[cfg(feature = "sqs")]
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
    /// edge's own retry loop sleeps through its `Runtime`). `config` must name SQS.
    #[cfg(feature = "sqs")]
    pub fn sender(&self, config: &Config) -> SqsSender {
        #[allow(irrefutable_let_patterns)]
        let Target::Sqs(target) = &config.target
        else {
            panic!("CannedSqs::sender needs a configuration with BUFFER=sqs");
        };
        SqsSender::new(
            config,
            target,
            SharedHttpClient::new(self.clone()),
            SharedTimeSource::new(StaticTimeSource::from_secs(1_795_852_800)),
            SharedAsyncSleep::new(NoSleep),
        )
    }
}

/// A `SendMessageBatch` answer acknowledging every entry of the request `parts` carries.
#[cfg(feature = "sqs")]
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
        // The content type of the protocol the request spoke (SQS awsJson1_0, Kinesis 1_1).
        let content_type = parts
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map_or("application/x-amz-json-1.0".to_owned(), |(_, v)| v.clone());
        let answer = (self.answer)(&parts);
        self.sent.lock().expect("lock").push(parts);
        self.answered.lock().expect("lock").push(answer.clone());
        HttpConnectorFuture::ready(match answer {
            Answer::Http(status, body) => response_from_parts(
                status,
                vec![("content-type".to_owned(), content_type)],
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
pub(crate) struct NoSleep;

impl AsyncSleep for NoSleep {
    fn sleep(&self, _: Duration) -> Sleep {
        Sleep::new(async {})
    }
}
