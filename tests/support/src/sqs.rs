//! A few SQS calls over the JSON protocol, for setting up and watching the *local* queue.
//!
//! Deliberately tiny (std TCP + serde_json): the stack and the tests need to create queues,
//! read their depth and drop a raw message on them, and pulling the whole SDK and an async
//! runtime into every tool for that would cost minutes of build time. The product's own code
//! (edge, poller) uses `aws-sdk-sqs`. Requests carry a dummy SigV4 header, which the local
//! server reads the region from and does not verify.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// A client for an SQS endpoint on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct LocalSqs {
    port: u16,
    region: String,
    /// Bound on connecting and on each read: 30 s by default (a busy moto under a burst);
    /// a status probe uses a short one, so a stalled server is reported, not waited on.
    timeout: Duration,
}

impl LocalSqs {
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

    /// Calls `AmazonSQS.<action>` with a JSON body; returns the JSON answer or the SQS error.
    pub fn call(&self, action: &str, body: &Value) -> Result<Value> {
        let payload = body.to_string();
        let mut s =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), self.timeout)
                .with_context(|| format!("connecting to the local SQS on port {}", self.port))?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=test/20260101/{}/sqs/aws4_request, SignedHeaders=host, Signature=0",
            self.region
        );
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/x-amz-json-1.0\r\n\
             X-Amz-Target: AmazonSQS.{action}\r\nAuthorization: {auth}\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{payload}",
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

    /// Creates (or finds) a queue and returns its URL.
    pub fn create_queue(&self, name: &str, attributes: &[(&str, String)]) -> Result<String> {
        let attrs: serde_json::Map<String, Value> = attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect();
        let out = self.call(
            "CreateQueue",
            &json!({"QueueName": name, "Attributes": attrs}),
        )?;
        out["QueueUrl"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("CreateQueue returned no QueueUrl: {out}"))
    }

    /// All attributes of a queue, as strings.
    pub fn attributes(&self, url: &str) -> Result<HashMap<String, String>> {
        let out = self.call(
            "GetQueueAttributes",
            &json!({"QueueUrl": url, "AttributeNames": ["All"]}),
        )?;
        Ok(out["Attributes"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Messages visible and in flight.
    pub fn depth(&self, url: &str) -> Result<(u64, u64)> {
        let a = self.attributes(url)?;
        let n = |k: &str| a.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok((
            n("ApproximateNumberOfMessages"),
            n("ApproximateNumberOfMessagesNotVisible"),
        ))
    }

    /// Sends one raw message body (used to put poison on the queue).
    pub fn send(&self, url: &str, body: &str) -> Result<String> {
        let out = self.call(
            "SendMessage",
            &json!({"QueueUrl": url, "MessageBody": body}),
        )?;
        out["MessageId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("SendMessage returned no MessageId: {out}"))
    }

    /// Receives up to 10 messages (bodies), making them invisible for `visibility` seconds.
    pub fn receive(&self, url: &str, visibility: u32) -> Result<Vec<String>> {
        let out = self.call(
            "ReceiveMessage",
            &json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": visibility,
                    "WaitTimeSeconds": 0}),
        )?;
        Ok(out["Messages"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m["Body"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}
