//! The buffer over `aws-sdk-sqs`: one `SendMessageBatch` per call, and the mapping of SQS's
//! answers (per-entry failures named by entry id, service errors, transport errors) onto
//! positions in the call and retry decisions.
//!
//! The SDK's own retries and timeouts are off: the edge's retry loop resends only the failed
//! entries, within the request's deadline. The HTTP client, clock and sleep are passed in, so the
//! same code runs on Workers (over `fetch`) and in native tests (over a canned connector).

use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{
    BehaviorVersion, Credentials, IdentityCache, Region, SharedAsyncSleep, SharedHttpClient,
    StalledStreamProtectionConfig,
};
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_smithy_async::time::SharedTimeSource;
use spillway_shared::BufferEntry;

use super::classify::{self, transient_code};
use super::{Buffer, CallOutcome, FailedEntry, SendError};
use crate::config::{Config, SqsTarget};

/// Sends batches to the configured queue.
#[derive(Debug, Clone)]
pub struct SqsSender {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    fifo: bool,
}

impl SqsSender {
    /// A client for `target`'s queue and endpoint, with `config`'s region and static
    /// credentials.
    pub fn new(
        config: &Config,
        target: &SqsTarget,
        http: SharedHttpClient,
        time: SharedTimeSource,
        sleep: SharedAsyncSleep,
    ) -> Self {
        let credentials = Credentials::new(
            config.access_key_id.clone(),
            config.secret_access_key.expose().to_owned(),
            None,
            None,
            "spillway-edge-env",
        );
        let sdk = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .endpoint_url(target.endpoint.clone())
            .http_client(http)
            .time_source(time)
            .sleep_impl(sleep)
            // Retries, timeouts and stalled-stream checks are the edge's job (see `send`): the
            // SDK's would resend whole batches and ignore the request's deadline.
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            // Static credentials need no cache (and no background refresh timers).
            .identity_cache(IdentityCache::no_cache())
            .build();
        Self {
            client: aws_sdk_sqs::Client::from_conf(sdk),
            queue_url: target.queue.as_str().to_owned(),
            fifo: target.queue.is_fifo(),
        }
    }
}

impl Buffer for SqsSender {
    async fn send(&self, entries: &[BufferEntry], group: &str) -> Result<CallOutcome, SendError> {
        let mut request = Vec::with_capacity(entries.len());
        for e in entries {
            let mut b = SendMessageBatchRequestEntry::builder()
                .id(&e.id)
                .message_body(&e.body);
            if self.fifo {
                b = b
                    .message_group_id(group)
                    .message_deduplication_id(e.dedup_id());
            }
            request.push(
                b.build()
                    .map_err(|e| SendError::Permanent(format!("building the request: {e}")))?,
            );
        }
        let result = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(request))
            .send()
            .await;
        match result {
            Ok(out) => Ok(outcome(
                entries,
                out.successful().iter().map(|s| s.id()),
                out.failed()
                    .iter()
                    .map(|f| (f.id(), f.sender_fault(), f.code())),
            )),
            Err(e) => Err(classify(&e)),
        }
    }
}

/// Whether an entry SQS refused may succeed if sent again: SQS says whether the sender is at
/// fault; throttling is retried even when blamed on the sender.
pub fn entry_retryable(sender_fault: bool, code: &str) -> bool {
    !sender_fault || transient_code(code)
}

/// Turns SQS's answer (by entry id) into the positions of the entries that were not
/// acknowledged. An entry SQS lists neither as successful nor as failed counts as failed (and
/// retryable): only an explicit success is an acknowledgement.
pub fn outcome<'a>(
    sent: &[BufferEntry],
    successful: impl IntoIterator<Item = &'a str>,
    failed: impl IntoIterator<Item = (&'a str, bool, &'a str)>,
) -> CallOutcome {
    let successful: Vec<&str> = successful.into_iter().collect();
    let failed: Vec<(&str, bool, &str)> = failed.into_iter().collect();
    let failed = sent
        .iter()
        .enumerate()
        .filter_map(|(position, e)| {
            if let Some((_, fault, code)) = failed.iter().find(|(id, _, _)| *id == e.id) {
                Some(FailedEntry {
                    position,
                    retryable: entry_retryable(*fault, code),
                    code: (*code).to_owned(),
                })
            } else if successful.contains(&e.id.as_str()) {
                None
            } else {
                Some(FailedEntry {
                    position,
                    retryable: true,
                    code: "NotInResponse".to_owned(),
                })
            }
        })
        .collect();
    CallOutcome { failed }
}

/// Whether a service error (SQS answered, but with an error) is worth retrying.
pub fn classify_service(status: u16, code: Option<&str>) -> SendError {
    classify::classify_service(status, code, transient_code)
}

/// Maps an SDK failure of `SendMessageBatch`.
pub fn classify<E: ProvideErrorMetadata>(
    error: &SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> SendError {
    classify::classify(error, transient_code)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::config::tests::config_with;
    use crate::testkit::CannedSqs;

    fn sender(canned: &CannedSqs, queue_url: &str) -> SqsSender {
        let config = config_with(&[("SQS_QUEUE_URL", queue_url)]).expect("valid config");
        canned.sender(&config)
    }

    fn entries(n: usize) -> Vec<BufferEntry> {
        (0..n)
            .map(|i| BufferEntry {
                id: format!("m{i}"),
                body: format!(r#"{{"v":1,"events":[{i}]}}"#),
                event_ids: vec![Uuid::from_u128(i as u128 + 1)],
            })
            .collect()
    }

    // Recorded from moto 5.2.5 (fixtures/sqs/*.json).
    const ALL_OK: &str = include_str!("../../tests/fixtures/sqs/send_message_batch_ok.json");
    const PARTIAL: &str = include_str!("../../tests/fixtures/sqs/send_message_batch_partial.json");
    const NO_QUEUE: &str = include_str!("../../tests/fixtures/sqs/queue_does_not_exist.json");
    // What the fault proxy (and SQS under load) answers.
    const INTERNAL: &str = r#"{"__type":"com.amazonaws.sqs#InternalError","message":"injected"}"#;
    const THROTTLED: &str =
        r#"{"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded"}"#;

    const URL: &str = "http://127.0.0.1:5000/123456789012/events";

    #[tokio::test]
    async fn request_is_a_signed_send_message_batch() {
        let canned = CannedSqs::script(vec![Ok((200, ALL_OK))]);
        let out = sender(&canned, URL)
            .send(&entries(2), "web")
            .await
            .expect("answered");
        assert_eq!(out, CallOutcome::default());
        let sent = canned.sent()[0].clone();
        assert_eq!(sent.method, "POST");
        assert_eq!(sent.url, "http://127.0.0.1:5000/");
        let header = |n: &str| {
            sent.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            header("x-amz-target").as_deref(),
            Some("AmazonSQS.SendMessageBatch")
        );
        let auth = header("authorization").expect("signed");
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/eu-west-1/sqs/aws4_request"
            ),
            "{auth}"
        );
        assert!(!auth.contains("aws-secret-do-not-print"));
        let json = &canned.sent_json()[0];
        assert_eq!(json["QueueUrl"], URL);
        assert_eq!(json["Entries"][1]["Id"], "m1");
        assert_eq!(json["Entries"][1]["MessageBody"], r#"{"v":1,"events":[1]}"#);
        assert!(json["Entries"][0].get("MessageGroupId").is_none());
        assert!(json["Entries"][0].get("MessageDeduplicationId").is_none());
    }

    #[tokio::test]
    async fn fifo_queues_get_group_and_dedup_ids() {
        let canned = CannedSqs::script(vec![Ok((200, ALL_OK))]);
        sender(&canned, "http://127.0.0.1:5000/123456789012/events.fifo")
            .send(&entries(2), "web")
            .await
            .expect("answered");
        let json = &canned.sent_json()[0];
        let sent = entries(2);
        assert_eq!(json["Entries"][0]["MessageGroupId"], "web");
        assert_eq!(
            json["Entries"][0]["MessageDeduplicationId"],
            sent[0].dedup_id()
        );
        assert_eq!(
            json["Entries"][1]["MessageDeduplicationId"],
            sent[1].dedup_id()
        );
        assert_ne!(sent[0].dedup_id(), sent[1].dedup_id());
    }

    #[tokio::test]
    async fn partial_failures_are_reported_per_entry() {
        let canned = CannedSqs::script(vec![Ok((200, PARTIAL))]);
        let out = sender(&canned, URL)
            .send(&entries(3), "web")
            .await
            .expect("answered");
        // m1: server fault, retry. m2: sender fault, do not.
        assert_eq!(out.failed.len(), 2, "{out:?}");
        assert_eq!((out.failed[0].position, out.failed[0].retryable), (1, true));
        assert_eq!(
            (out.failed[1].position, out.failed[1].retryable),
            (2, false)
        );
    }

    #[tokio::test]
    async fn service_and_transport_errors_are_classified() {
        let canned = CannedSqs::script(vec![
            Ok((500, INTERNAL)),
            Ok((400, THROTTLED)),
            Ok((400, NO_QUEUE)),
            Err(()),
            Ok((502, "<html>bad gateway</html>")),
        ]);
        let s = sender(&canned, URL);
        let e = entries(1);
        let r1 = s.send(&e, "web").await.expect_err("500");
        assert!(r1.is_retryable(), "{r1}");
        let r2 = s.send(&e, "web").await.expect_err("throttled");
        assert!(r2.is_retryable(), "{r2}");
        assert!(r2.to_string().contains("ThrottlingException"), "{r2}");
        let r3 = s.send(&e, "web").await.expect_err("no queue");
        assert!(!r3.is_retryable(), "{r3}");
        let r4 = s.send(&e, "web").await.expect_err("refused");
        assert!(r4.is_retryable(), "{r4}");
        let r5 = s.send(&e, "web").await.expect_err("bad gateway");
        assert!(r5.is_retryable(), "{r5}");
        assert_eq!(canned.sent().len(), 5, "the SDK itself never retries");
    }

    #[test]
    fn outcome_needs_an_explicit_success() {
        let e = entries(3);
        let out = outcome(&e, ["m0"], [("m1", true, "InvalidParameterValue")]);
        assert_eq!(out.failed.len(), 2);
        assert!(!out.failed[0].retryable);
        assert_eq!(out.failed[1].position, 2, "m2 is the third entry");
        assert!(out.failed[1].retryable);
        // Failures for ids we did not send are ignored.
        let out = outcome(&e, ["m0", "m1", "m2"], [("m9", false, "x")]);
        assert!(out.failed.is_empty());
    }

    #[test]
    fn throttling_is_retryable_even_when_blamed_on_the_sender() {
        assert!(entry_retryable(false, "InternalError"));
        assert!(entry_retryable(true, "RequestThrottled"));
        assert!(entry_retryable(true, "KMS.ThrottlingException"));
        assert!(!entry_retryable(true, "InvalidMessageContents"));
        assert!(classify_service(503, None).is_retryable());
        assert!(classify_service(429, None).is_retryable());
        assert!(!classify_service(403, Some("AccessDenied")).is_retryable());
        assert!(
            classify_service(400, Some("AWS.SimpleQueueService.RequestThrottled")).is_retryable()
        );
    }
}
