//! The SQS client's transport on Workers: an HTTP connector over `fetch`, a clock over
//! `Date.now()` (`SystemTime::now()` panics on wasm32) and a sleep over `setTimeout`.
//!
//! The conversions between the SDK's request/response types and plain parts are pure and tested
//! natively; only the small `wasm` module below touches the Workers runtime.

use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// A request as `fetch` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchParts {
    pub method: String,
    pub url: String,
    /// Without the headers `fetch` sets itself (`host`, `content-length`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn user_error(message: &str) -> ConnectorError {
    ConnectorError::user(message.to_owned().into())
}

/// The parts of an SDK request. The SQS client only sends in-memory bodies; a streaming body is
/// refused rather than silently sent empty.
pub fn request_parts(request: &HttpRequest) -> Result<FetchParts, ConnectorError> {
    let body = match request.body().bytes() {
        Some(b) => b.to_vec(),
        None if request.body().content_length() == Some(0) => Vec::new(),
        None => {
            return Err(user_error(
                "streaming request bodies are not supported by the fetch connector",
            ))
        }
    };
    let headers = request
        .headers()
        .iter()
        .filter(|(name, _)| {
            !name.eq_ignore_ascii_case("host") && !name.eq_ignore_ascii_case("content-length")
        })
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    Ok(FetchParts {
        method: request.method().to_owned(),
        url: request.uri().to_owned(),
        headers,
        body,
    })
}

/// An SDK response from what `fetch` returned.
pub fn response_from_parts(
    status: u16,
    headers: impl IntoIterator<Item = (String, String)>,
    body: Vec<u8>,
) -> Result<HttpResponse, ConnectorError> {
    let status = StatusCode::try_from(status)
        .map_err(|_| ConnectorError::other(format!("invalid HTTP status {status}").into(), None))?;
    let mut response = HttpResponse::new(status, SdkBody::from(body));
    for (name, value) in headers {
        // A header the SDK cannot represent is dropped, not fatal: SQS's answer is in the body.
        let _ = response.headers_mut().try_append(name, value);
    }
    Ok(response)
}

#[cfg(target_arch = "wasm32")]
pub use wasm::{DateTimeSource, DelaySleep, FetchHttpClient};

#[cfg(target_arch = "wasm32")]
mod wasm {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use aws_smithy_async::rt::sleep::{AsyncSleep, Sleep};
    use aws_smithy_async::time::TimeSource;
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use worker::send::SendFuture;

    use super::{request_parts, response_from_parts, FetchParts};

    /// Hands every SDK request to `fetch`.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct FetchHttpClient;

    impl HttpClient for FetchHttpClient {
        fn http_connector(
            &self,
            _settings: &HttpConnectorSettings,
            _components: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(FetchConnector)
        }
    }

    #[derive(Debug, Clone, Copy)]
    struct FetchConnector;

    impl HttpConnector for FetchConnector {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let parts = request_parts(&request);
            // Workers are single-threaded: the JS-backed future never crosses a thread.
            HttpConnectorFuture::new(SendFuture::new(async move { fetch(parts?).await }))
        }
    }

    fn io_error(e: worker::Error) -> ConnectorError {
        ConnectorError::io(e.to_string().into())
    }

    async fn fetch(parts: FetchParts) -> Result<HttpResponse, ConnectorError> {
        let headers = worker::Headers::new();
        for (name, value) in &parts.headers {
            headers
                .append(name, value)
                .map_err(|e| ConnectorError::user(e.to_string().into()))?;
        }
        let mut init = worker::RequestInit::new();
        init.with_method(worker::Method::from(parts.method))
            .with_headers(headers);
        if !parts.body.is_empty() {
            init.with_body(Some(
                worker::js_sys::Uint8Array::from(parts.body.as_slice()).into(),
            ));
        }
        let request = worker::Request::new_with_init(&parts.url, &init)
            .map_err(|e| ConnectorError::user(e.to_string().into()))?;
        let mut response = worker::Fetch::Request(request)
            .send()
            .await
            .map_err(io_error)?;
        let status = response.status_code();
        let headers: Vec<(String, String)> = response.headers().entries().collect();
        let body = response.bytes().await.map_err(io_error)?;
        response_from_parts(status, headers, body)
    }

    /// `Date.now()`: advances on Workers only across I/O, which is all request signing needs.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct DateTimeSource;

    impl TimeSource for DateTimeSource {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_millis(worker::js_sys::Date::now() as u64)
        }
    }

    /// `setTimeout`, through `worker::Delay`.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct DelaySleep;

    impl AsyncSleep for DelaySleep {
        fn sleep(&self, duration: Duration) -> Sleep {
            Sleep::new(SendFuture::new(worker::Delay::from(duration)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_parts_keep_method_url_headers_and_body() {
        let mut req = HttpRequest::new(SdkBody::from(r#"{"QueueUrl":"q"}"#));
        req.set_method("POST").expect("valid method");
        req.set_uri("http://127.0.0.1:5000/").expect("valid uri");
        req.headers_mut()
            .insert("content-type", "application/x-amz-json-1.0");
        req.headers_mut()
            .insert("x-amz-target", "AmazonSQS.SendMessageBatch");
        req.headers_mut().insert("host", "127.0.0.1:5000");
        req.headers_mut().insert("content-length", "16");
        req.headers_mut()
            .insert("authorization", "AWS4-HMAC-SHA256 Credential=...");
        let p = request_parts(&req).expect("in-memory body");
        assert_eq!(p.method, "POST");
        assert_eq!(p.url, "http://127.0.0.1:5000/");
        assert_eq!(p.body, br#"{"QueueUrl":"q"}"#);
        let names: Vec<&str> = p.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["content-type", "x-amz-target", "authorization"]);
    }

    #[test]
    fn empty_bodies_are_sent_empty() {
        let mut req = HttpRequest::new(SdkBody::empty());
        req.set_uri("http://127.0.0.1:5000/").expect("valid uri");
        assert_eq!(request_parts(&req).expect("empty").body, Vec::<u8>::new());
    }

    #[test]
    fn responses_keep_status_headers_and_body() {
        let r = response_from_parts(
            500,
            vec![
                ("x-amzn-requestid".to_owned(), "abc".to_owned()),
                ("bad header".to_owned(), "x".to_owned()),
            ],
            b"{}".to_vec(),
        )
        .expect("valid");
        assert_eq!(r.status().as_u16(), 500);
        assert_eq!(r.headers().get("x-amzn-requestid"), Some("abc"));
        assert_eq!(r.body().bytes(), Some(&b"{}"[..]));
        assert!(response_from_parts(42, Vec::new(), Vec::new()).is_err());
    }
}
