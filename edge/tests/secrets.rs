//! Secrets never leave the edge through what it says: the one log line per request (what the
//! Worker prints), the response (status line, headers and body) of every outcome, and nothing
//! of the AWS secret travels on the wire to SQS either (requests are signed, not carrying it).
//!
//! Runs the real request path natively: `handle` over the real `SqsSender`, whose HTTP client
//! here is the testkit's canned SQS, recording each request and, in this test, answering with
//! errors that echo the whole request back (the worst an endpoint or proxy could do), and `misconfigured` for the
//! `500` of a bad configuration. Every secret is distinctive, so no assertion passes by
//! accident, and each test has a positive control proving the checked text is the real thing.

use std::collections::HashMap;

use http::{Method, Request};
use serde_json::json;
use spillway_edge::buffer::connector::FetchParts;
use spillway_edge::buffer::sqs::SqsSender;
use spillway_edge::config::ConfigError;
use spillway_edge::ports::Unlimited;
use spillway_edge::testkit::{all_successful, Answer, CannedSqs, FakeRuntime};
use spillway_edge::{handle, misconfigured, Config, Deps, Handled};
use spillway_support::Secrets;

const KEY_WEB: &str = "sk_live_WEB_3b1f8e6a9c2d4f70";
const KEY_APP: &str = "sk_live_APP_90d7c2e4b6a8f135";
const AWS_ACCESS_KEY_ID: &str = "AKIASPILLWAYTEST0001";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/spillwaySECRET0042";
const ENVELOPE_SECRET: &str = "envelope-SEAL-secret-7c41d09be2a8f356";
/// A wrong key one character away from the real one, and one that is nothing like it.
const NEAR_MISS: &str = "sk_live_WEB_3b1f8e6a9c2d4f7X";
const WRONG_KEY: &str = "sk_test_WRONG_5e5e5e5e5e5e";

/// Everything that must never be echoed, each with a distinctive fragment so that a truncated
/// or re-encoded copy is caught too.
fn secrets() -> Secrets {
    Secrets::new([
        KEY_WEB,
        "3b1f8e6a9c2d4f70",
        KEY_APP,
        "90d7c2e4b6a8f135",
        AWS_SECRET,
        "spillwaySECRET0042",
        "wJalrXUtnFEMI",
        // The secret as a URL or JSON would encode its slashes.
        "wJalrXUtnFEMI%2FK7MDENG",
        "wJalrXUtnFEMI\\/K7MDENG",
        NEAR_MISS,
        WRONG_KEY,
        "5e5e5e5e5e5e",
        ENVELOPE_SECRET,
        "7c41d09be2a8f356",
    ])
}

/// Everything a client and the operator see of one answer: the log line, status, headers, body.
fn visible(h: &Handled) -> String {
    let mut out = format!("{}\n{}\n", h.log.to_json(), h.response.status());
    for (name, value) in h.response.headers() {
        out.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    out.push_str(h.response.body());
    out
}

fn env() -> HashMap<&'static str, String> {
    HashMap::from([
        (
            "SQS_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/events".to_owned(),
        ),
        ("AWS_REGION", "eu-west-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET.to_owned()),
        ("INGEST_KEYS", format!("web:{KEY_WEB},app:{KEY_APP}")),
        ("ENVELOPE_KEYS", format!("seal-1:{ENVELOPE_SECRET}")),
        ("ALLOWED_ORIGINS", "https://app.example.com".to_owned()),
        // Transient SQS trouble is retried until this (virtual) deadline.
        ("SQS_DEADLINE_MS", "1000".to_owned()),
    ])
}

fn config_with(overrides: &[(&'static str, &str)]) -> Result<Config, ConfigError> {
    let mut e = env();
    for (k, v) in overrides {
        e.insert(k, (*v).to_owned());
    }
    Config::from_env(|k| e.get(k).cloned())
}

// ------------------------------------------------------------------ a canned SQS endpoint

/// How the canned SQS answers every `SendMessageBatch`.
#[derive(Debug, Clone, Copy)]
enum Sqs {
    /// Takes every entry, like SQS does.
    Accept,
    /// Refuses the signature, echoing the whole request in its message.
    EchoSignatureError,
    /// A 500 that echoes the whole request (retried until the deadline).
    EchoInternalError,
    /// The connection fails.
    Unreachable,
}

impl Sqs {
    /// The answer to one request in this mode.
    fn answer(self, parts: &FetchParts) -> Answer {
        let echo = || {
            format!(
                "{} {} {:?} {}",
                parts.method,
                parts.url,
                parts.headers,
                String::from_utf8_lossy(&parts.body)
            )
        };
        match self {
            Sqs::Unreachable => {
                Answer::ConnectionFails(format!("connection refused while sending {}", echo()))
            }
            Sqs::Accept => Answer::Http(200, all_successful(parts)),
            Sqs::EchoSignatureError => Answer::Http(
                403,
                json!({
                    "__type": "com.amazon.coral.service#SignatureDoesNotMatch",
                    "message": format!("The request signature we calculated does not match. Request: {}", echo()),
                })
                .to_string(),
            ),
            Sqs::EchoInternalError => Answer::Http(
                500,
                json!({
                    "__type": "com.amazonaws.sqs#InternalError",
                    "message": format!("internal error while handling {}", echo()),
                })
                .to_string(),
            ),
        }
    }
}

/// Every request as it went on the wire: method, URL, headers, body.
fn wire(sqs: &CannedSqs) -> Vec<String> {
    sqs.sent()
        .iter()
        .map(|p| {
            let mut s = format!("{} {}\n", p.method, p.url);
            for (n, v) in &p.headers {
                s.push_str(&format!("{n}: {v}\n"));
            }
            s.push_str(&String::from_utf8_lossy(&p.body));
            s
        })
        .collect()
}

/// The bodies the endpoint answered with.
fn answers(sqs: &CannedSqs) -> Vec<String> {
    sqs.answered()
        .into_iter()
        .filter_map(|a| match a {
            Answer::Http(_, body) => Some(body),
            Answer::ConnectionFails(_) => None,
        })
        .collect()
}

struct Edge {
    config: Config,
    sqs: CannedSqs,
    queue: SqsSender,
    rt: FakeRuntime,
}

impl Edge {
    fn new(mode: Sqs) -> Self {
        let config = config_with(&[]).expect("valid config");
        let sqs = CannedSqs::new(move |parts| mode.answer(parts));
        let queue = sqs.sender(&config);
        Self {
            config,
            sqs,
            queue,
            rt: FakeRuntime::new(),
        }
    }

    async fn call(&self, req: Request<Vec<u8>>) -> Handled {
        let deps = Deps {
            config: &self.config,
            queue: &self.queue,
            limiter: None::<&Unlimited>,
            rt: &self.rt,
            batcher: None,
            spill: None,
        };
        handle(&deps, req).await
    }
}

const EVENTS: &str = r#"[{"type":"page_view","data":{"path":"/pricing"}},{"type":"signup"}]"#;

/// A request presenting `key` the way `how` says (`bearer`, `header`, `query`).
fn request(how: &str, key: &str, path: &str, body: &str) -> Request<Vec<u8>> {
    let uri = match how {
        "query" => format!("https://ingest.example.com{path}?key={key}&source=beacon"),
        _ => format!("https://ingest.example.com{path}"),
    };
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("content-type", "application/json")
        .header("content-length", body.len().to_string())
        .header("origin", "https://app.example.com");
    b = match how {
        "bearer" => b.header("authorization", format!("Bearer {key}")),
        "header" => b.header("x-api-key", key),
        _ => b,
    };
    b.body(body.as_bytes().to_vec()).expect("request")
}

const FORMS: [&str; 3] = ["bearer", "header", "query"];

#[test]
fn the_checker_sees_a_secret_when_there_is_one() {
    // Positive control for every assertion below.
    assert_eq!(
        secrets().found_in(&format!("x {KEY_WEB} y")),
        [KEY_WEB, "3b1f8e6a9c2d4f70"]
    );
    assert_eq!(
        secrets().found_in("wJalrXUtnFEMI%2FK7MDENG%2F")[..1],
        ["wJalrXUtnFEMI"]
    );
    assert!(secrets()
        .found_in("key_id web, AKIASPILLWAYTEST0001")
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn accepted_requests_log_the_key_id_never_the_key_nor_the_aws_secret() {
    let edge = Edge::new(Sqs::Accept);
    for how in FORMS {
        let h = edge.call(request(how, KEY_WEB, "/v1/events", EVENTS)).await;
        assert_eq!(
            h.response.status().as_u16(),
            202,
            "{how}: {}",
            h.response.body()
        );
        // Positive control: the line names the key's id and the request it is about.
        let line = h.log.to_json();
        assert!(line.contains(r#""key_id":"web""#), "{how}: {line}");
        assert!(line.contains(r#""status":202"#), "{how}: {line}");
        secrets().assert_absent(&format!("202 via {how}"), &visible(&h));
    }
    let h = edge
        .call(request("bearer", KEY_APP, "/v1/events", EVENTS))
        .await;
    assert!(h.log.to_json().contains(r#""key_id":"app""#));
    secrets().assert_absent("202 for app", &visible(&h));

    // On the wire to SQS: signed with the access key id, never carrying the secret key.
    let wire = wire(&edge.sqs);
    assert_eq!(wire.len(), 4);
    for request in &wire {
        assert!(
            request.contains(&format!("Credential={AWS_ACCESS_KEY_ID}/")),
            "{request}"
        );
        assert!(
            request.contains("page_view"),
            "the payload is there: {request}"
        );
        secrets().assert_absent("SendMessageBatch request", request);
    }
}

#[tokio::test(start_paused = true)]
async fn wrong_and_missing_keys_get_401_without_echoing_any_key() {
    let edge = Edge::new(Sqs::Accept);
    for how in FORMS {
        for key in [NEAR_MISS, WRONG_KEY] {
            let h = edge.call(request(how, key, "/v1/events", EVENTS)).await;
            assert_eq!(h.response.status().as_u16(), 401, "{how}");
            let body: serde_json::Value =
                serde_json::from_str(h.response.body()).expect("JSON body");
            assert_eq!(body["error"]["code"], "invalid_key", "{how}");
            assert_eq!(h.log.code, Some("invalid_key"));
            secrets().assert_absent(&format!("401 for {key} via {how}"), &visible(&h));
        }
    }
    // No key at all, but a real one misplaced in a header the edge does not read.
    let mut req = request("none", "", "/v1/events", EVENTS);
    req.headers_mut()
        .insert("x-ingest-key", http::HeaderValue::from_static(KEY_WEB));
    let h = edge.call(req).await;
    assert_eq!(h.response.status().as_u16(), 401);
    assert_eq!(h.log.code, Some("missing_key"));
    secrets().assert_absent("401 missing key", &visible(&h));
    assert!(wire(&edge.sqs).is_empty(), "nothing was sent");
}

#[tokio::test(start_paused = true)]
async fn other_refusals_with_a_valid_key_do_not_echo_it() {
    let edge = Edge::new(Sqs::Accept);
    let cases: Vec<(Request<Vec<u8>>, u16)> = vec![
        // The key in the query string of a request for a path that does not exist.
        (request("query", KEY_WEB, "/v1/event", EVENTS), 404),
        (request("query", KEY_WEB, "/v1/events", "{not json"), 400),
        (
            request("bearer", KEY_WEB, "/v1/events", r#"{"type":""}"#),
            400,
        ),
        (request("header", KEY_WEB, "/v1/events", "[]"), 400),
        {
            let mut r = request("bearer", KEY_WEB, "/v1/events", EVENTS);
            r.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/xml"),
            );
            (r, 415)
        },
        {
            let mut r = request("query", KEY_WEB, "/v1/events", EVENTS);
            r.headers_mut()
                .insert("content-encoding", http::HeaderValue::from_static("gzip"));
            (r, 400)
        },
    ];
    for (req, status) in cases {
        let uri = req.uri().to_string();
        let h = edge.call(req).await;
        assert_eq!(
            h.response.status().as_u16(),
            status,
            "{uri}: {}",
            h.response.body()
        );
        let line = h.log.to_json();
        assert!(line.contains(&format!(r#""status":{status}"#)), "{line}");
        secrets().assert_absent(&format!("{status} for {uri}"), &visible(&h));
    }
    assert!(wire(&edge.sqs).is_empty(), "nothing was sent");
}

#[tokio::test(start_paused = true)]
async fn queue_errors_that_echo_the_signed_request_stay_out_of_logs_and_503s() {
    for mode in [
        Sqs::EchoSignatureError,
        Sqs::EchoInternalError,
        Sqs::Unreachable,
    ] {
        let edge = Edge::new(mode);
        let h = edge
            .call(request("bearer", KEY_WEB, "/v1/events", EVENTS))
            .await;
        assert_eq!(h.response.status().as_u16(), 503, "{mode:?}");
        // Positive controls: the queue error is reported, and what SQS said really did carry
        // the signed request (the access key id), so the log had something to leak.
        let queue_error = h.log.queue_error.clone().unwrap_or_default();
        assert!(!queue_error.is_empty(), "{mode:?}: {:?}", h.log);
        assert!(h.log.to_json().contains(r#""key_id":"web""#));
        if let Sqs::EchoSignatureError | Sqs::EchoInternalError = mode {
            let answers = answers(&edge.sqs);
            assert!(!answers.is_empty(), "{mode:?}: SQS was asked and answered");
            assert!(
                answers.iter().all(|a| a.contains(AWS_ACCESS_KEY_ID)),
                "{mode:?}: the canned answer echoes the request"
            );
        }
        secrets().assert_absent(&format!("503 after {mode:?}"), &visible(&h));
        let wire = wire(&edge.sqs);
        assert!(!wire.is_empty(), "{mode:?}: a request went out to SQS");
        for request in wire {
            secrets().assert_absent("SendMessageBatch request", &request);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn bad_configuration_is_500_without_any_secret() {
    let cases: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        ("pair without id", vec![("INGEST_KEYS", KEY_WEB.to_owned())]),
        (
            "key with a space",
            vec![(
                "INGEST_KEYS",
                format!("web:{} {}", &KEY_WEB[..12], &KEY_WEB[12..]),
            )],
        ),
        (
            "key reused",
            vec![("INGEST_KEYS", format!("web:{KEY_WEB},app:{KEY_WEB}"))],
        ),
        (
            "credentials in the queue URL",
            vec![(
                "SQS_QUEUE_URL",
                format!(
                    "https://{AWS_ACCESS_KEY_ID}:{}@sqs.eu-west-1.amazonaws.com/1/q",
                    AWS_SECRET.replace('/', "%2F")
                ),
            )],
        ),
        (
            "credentials in the endpoint",
            vec![(
                "SQS_ENDPOINT",
                format!(
                    "http://user:{}@127.0.0.1:9324",
                    AWS_SECRET.replace('/', "%2F")
                ),
            )],
        ),
        (
            "secret pasted into another variable",
            vec![
                ("AWS_REGION", AWS_SECRET.to_owned()),
                ("MAX_BODY_BYTES", KEY_APP.to_owned()),
            ],
        ),
        (
            "envelope key id and secret swapped",
            vec![("ENVELOPE_KEYS", format!("{ENVELOPE_SECRET}:seal-1"))],
        ),
        (
            "envelope secret with a space",
            vec![(
                "ENVELOPE_KEYS",
                format!(
                    "seal-1:{} {}",
                    &ENVELOPE_SECRET[..10],
                    &ENVELOPE_SECRET[10..]
                ),
            )],
        ),
        (
            "region missing, secrets present",
            vec![("AWS_REGION", String::new())],
        ),
    ];
    check_misconfigured(cases);
}

/// The pair written the wrong way round puts the key where the key id belongs, and the
/// `INGEST_KEYS` error quotes the key id: the key lands in the log line of every request.
#[tokio::test(start_paused = true)]
async fn swapped_ingest_key_pair_is_500_without_the_key() {
    check_misconfigured(vec![(
        "swapped pair",
        vec![("INGEST_KEYS", format!("{KEY_WEB}:web"))],
    )]);
}

fn check_misconfigured(cases: Vec<(&str, Vec<(&'static str, String)>)>) {
    let rt = FakeRuntime::new();
    for (what, overrides) in cases {
        let overrides: Vec<(&'static str, &str)> =
            overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let error = config_with(&overrides).expect_err(what);
        // Positive control: the problem is reported, naming the variable.
        let text = error.to_string();
        assert!(
            overrides.iter().any(|(name, _)| text.contains(name)),
            "{what}: {text}"
        );
        secrets().assert_absent(&format!("{what}: error"), &text);
        secrets().assert_absent(&format!("{what}: error (Debug)"), &format!("{error:?}"));

        let req = request("bearer", KEY_WEB, "/v1/events", EVENTS);
        let h = misconfigured(&req, &error, &rt);
        assert_eq!(h.response.status().as_u16(), 500, "{what}");
        assert_eq!(h.log.code, Some("misconfigured"));
        assert!(h.log.to_json().contains("invalid configuration"), "{what}");
        secrets().assert_absent(&format!("{what}: 500"), &visible(&h));
    }
}
