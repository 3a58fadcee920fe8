//! The real Lambda runtime loop (`lambda_runtime::run` in the `spillway-consumer` binary) runs
//! the handler once, against a small Lambda Runtime API emulator of our own and a real
//! PostgreSQL.
//!
//! The emulator implements what the runtime uses of the API: `GET .../invocation/next` (one
//! event, then it holds the request open as Lambda does when there is no work), and
//! `POST .../invocation/{id}/response` or `.../error` (and `/init/error`).

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use spillway_consumer::keys::testing::TEST_KEYS;
use spillway_support::{free_port, run_dir, Moto, Service};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

/// What the runtime sent back.
enum Reply {
    Response {
        request_id: String,
        body: String,
    },
    /// The path (`.../error` or `/init/error`) and the error body.
    Error(String),
}

struct Emulator {
    events: Mutex<VecDeque<(String, String)>>,
    replies: mpsc::UnboundedSender<Reply>,
    first_next: Mutex<Option<Instant>>,
    /// Set when the function asked for an invocation after the last one was handed out.
    asked_past_the_last: std::sync::atomic::AtomicBool,
}

struct Request {
    method: String,
    path: String,
    body: String,
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).await.ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await.ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).await.ok()?;
    }
    Some(Request {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

async fn respond(
    stream: &mut BufReader<TcpStream>,
    status: &str,
    headers: &[(&str, String)],
    body: &str,
) {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    let _ = stream.get_mut().write_all(out.as_bytes()).await;
}

async fn serve(emu: Arc<Emulator>, stream: TcpStream) {
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader).await {
        let path = req.path.as_str();
        if req.method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
            emu.first_next.lock().await.get_or_insert_with(Instant::now);
            let next = emu.events.lock().await.pop_front();
            let Some((request_id, event)) = next else {
                emu.asked_past_the_last
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                // No more work: hold the request, as Lambda freezes an idle environment.
                std::future::pending::<()>().await;
                return;
            };
            let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
            respond(
                &mut reader,
                "200 OK",
                &[
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
                    (
                        "Lambda-Runtime-Invoked-Function-Arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:spillway-consumer".into(),
                    ),
                    (
                        "Lambda-Runtime-Trace-Id",
                        "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".into(),
                    ),
                ],
                &event,
            )
            .await;
        } else if req.method == "POST" && path.ends_with("/response") {
            let request_id = path
                .trim_start_matches("/2018-06-01/runtime/invocation/")
                .trim_end_matches("/response")
                .to_owned();
            let _ = emu.replies.send(Reply::Response {
                request_id,
                body: req.body,
            });
            respond(&mut reader, "202 Accepted", &[], r#"{"status":"OK"}"#).await;
        } else if req.method == "POST" && path.ends_with("/error") {
            let _ = emu
                .replies
                .send(Reply::Error(format!("{}: {}", req.path, req.body)));
            respond(&mut reader, "202 Accepted", &[], r#"{"status":"OK"}"#).await;
        } else {
            respond(&mut reader, "404 Not Found", &[], "{}").await;
        }
    }
}

/// What one run of the function binary against the emulator produced.
struct Run {
    /// One reply per event, in order.
    replies: Vec<Reply>,
    /// The function's stdout and stderr, parsed as JSON lines.
    lines: Vec<Value>,
    raw_log: String,
    /// Spawn to first `GET .../invocation/next`, and spawn to the first reply.
    init: Duration,
    first_answer: Duration,
}

/// Spawns the function binary with the Lambda environment plus `env` (the database settings),
/// feeds it `events` through the emulator, waits for every reply, checks it is still alive
/// (waiting for more work), stops it.
async fn run_function(env: &[(&str, String)], events: Vec<(String, String)>) -> Run {
    let expected = events.len();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let emu = Arc::new(Emulator {
        events: Mutex::new(VecDeque::from(events)),
        replies: tx,
        first_next: Mutex::new(None),
        asked_past_the_last: std::sync::atomic::AtomicBool::new(false),
    });
    let port = free_port().expect("port");
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let server = {
        let emu = emu.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(emu.clone(), stream));
            }
        })
    };

    // SPILLWAY_CONSUMER_BIN points the test at another build (a release binary, to measure
    // its cold start with the same emulator).
    let bin = std::env::var_os("SPILLWAY_CONSUMER_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_spillway-consumer").into());
    let mut cmd = std::process::Command::new(bin);
    cmd.env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "spillway-consumer")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/28/[$LATEST]0123456789abcdef",
        )
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/spillway-consumer")
        .env("DB_CONNECT_TIMEOUT_MS", "2000")
        .env("METRICS_NAMESPACE", "SpillwayRuntimeTest")
        .env("RUST_LOG", "info");
    if !env.iter().any(|(k, _)| k.starts_with("ENVELOPE_KEYS")) {
        cmd.env("ENVELOPE_KEYS", TEST_KEYS);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Service::spawn appends: a fresh file per run, so an old run's lines never count.
    let log = run_dir().join(format!("lambda-runtime-{}-{port}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let started = Instant::now();
    let mut lambda = Service::spawn("lambda", cmd, &log).expect("spawn the function");

    let mut replies = Vec::new();
    let mut first_answer = Duration::ZERO;
    while replies.len() < expected {
        let reply = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no reply within 60 s: {}", lambda.log_tail(30)))
            .expect("reply");
        if replies.is_empty() {
            first_answer = started.elapsed();
        }
        replies.push(reply);
    }
    let init = emu
        .first_next
        .lock()
        .await
        .map(|t| t.duration_since(started))
        .unwrap_or_default();
    // Still alive, waiting for the next invocation: the loop did not crash. Waits until the
    // function has asked for more work (not for a fixed time), then checks it is still there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !emu
        .asked_past_the_last
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        assert!(
            Instant::now() < deadline && lambda.exited().is_none(),
            "the function did not ask for the next invocation: {}",
            lambda.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(lambda.exited().is_none(), "{}", lambda.log_tail(30));
    lambda.stop(Duration::from_secs(2));
    server.abort();

    let raw_log = std::fs::read_to_string(&log).expect("log");
    let lines = raw_log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Run {
        replies,
        lines,
        raw_log,
        init,
        first_answer,
    }
}

fn response(reply: &Reply, log: &str) -> (String, Value) {
    match reply {
        Reply::Response { request_id, body } => (
            request_id.clone(),
            serde_json::from_str(body).expect("json response"),
        ),
        Reply::Error(e) => panic!("the function reported an error: {e}\n{log}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_runtime_loop_runs_the_handler_once() {
    let pg = migrated_pg().await;
    let event = std::fs::read_to_string(fixture("spillway_mixed.json")).expect("fixture");
    let request_id = "8476a536-e9f4-11e8-9739-2dfe598c3fcd".to_owned();
    let run = run_function(
        &[("DATABASE_URL", pg.url())],
        vec![(request_id.clone(), event)],
    )
    .await;
    eprintln!(
        "cold start (spawn -> first /next): {:?}; spawn -> response: {:?}",
        run.init, run.first_answer
    );
    let out = &run.raw_log;
    let (got_id, body) = response(&run.replies[0], out);
    assert_eq!(got_id, request_id);
    assert_eq!(
        body,
        json!({"batchItemFailures": [{"itemIdentifier": "c0ffee00-1111-4222-8333-944455556666"}]})
    );
    assert_eq!(stored(&pg), 2);

    let lines = &run.lines;
    // One EMF record for the invocation, in the configured namespace.
    let emf: Vec<&Value> = lines.iter().filter(|v| v.get("_aws").is_some()).collect();
    assert_eq!(emf.len(), 1, "{out}");
    assert_eq!(
        emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "SpillwayRuntimeTest"
    );
    assert_eq!(emf[0]["RequestId"], request_id.as_str());
    assert_eq!(emf[0]["EventsStored"], 2);
    assert_eq!(emf[0]["DuplicatesSkipped"], 1);
    assert_eq!(emf[0]["RecordsFailed"], 1);
    assert_eq!(emf[0]["BatchSize"], 3);
    assert!(emf[0]["QueueLagMs"].is_u64());
    assert!(emf[0]["EndToEndLagMs"].is_u64());
    // The rejected record is logged as JSON with the request id, message id and reason.
    let rejected = lines
        .iter()
        .find(|v| v["fields"]["message"] == "record rejected")
        .unwrap_or_else(|| panic!("no rejection logged: {out}"));
    assert_eq!(rejected["span"]["request_id"], request_id.as_str());
    assert_eq!(
        rejected["fields"]["message_id"],
        "c0ffee00-1111-4222-8333-944455556666"
    );
    assert!(rejected["fields"]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("version 3"));
    assert_eq!(rejected["level"], "WARN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_every_invocation_answers_with_all_records_failed() {
    let pg = migrated_pg().await;
    pg.stop().expect("stop PostgreSQL");
    let event = std::fs::read_to_string(fixture("spillway_mixed.json")).expect("fixture");
    let run = run_function(
        &[("DATABASE_URL", pg.url())],
        vec![
            ("req-1".to_owned(), event.clone()),
            ("req-2".to_owned(), event),
        ],
    )
    .await;
    for (reply, id) in run.replies.iter().zip(["req-1", "req-2"]) {
        let (got_id, body) = response(reply, &run.raw_log);
        assert_eq!(got_id, id);
        let mut failed: Vec<&str> = body["batchItemFailures"]
            .as_array()
            .expect("failures")
            .iter()
            .filter_map(|f| f["itemIdentifier"].as_str())
            .collect();
        failed.sort();
        assert_eq!(
            failed,
            [
                "5a1e0b7c-8d9e-4f00-a1b2-c3d4e5f60718",
                "7b8d7d2e-2f39-4c57-9d53-6f4b3b0a1c01",
                "c0ffee00-1111-4222-8333-944455556666"
            ]
        );
    }
    let message = |v: &&Value| v["fields"]["message"].as_str().unwrap_or("").to_owned();
    // One summary line per invocation, not one line per record.
    let summaries: Vec<&Value> = run
        .lines
        .iter()
        .filter(|v| message(v) == "batch not stored, every record will be retried")
        .collect();
    assert_eq!(summaries.len(), 2, "{}", run.raw_log);
    assert_eq!(summaries[0]["fields"]["records"], 2);
    assert_eq!(summaries[1]["span"]["request_id"], "req-2");
    assert!(!run
        .lines
        .iter()
        .any(|v| message(&v) == "record not stored, will be retried"));
    let emf: Vec<&Value> = run
        .lines
        .iter()
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 2);
    assert!(emf
        .iter()
        .all(|v| v["RecordsFailed"] == 3 && v["EventsStored"] == 0));
    // Only the undecodable record is permanent.
    assert!(emf.iter().all(|v| v["RecordsRejected"] == 1));
}

#[test]
fn outside_lambda_the_function_says_what_to_run_instead() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spillway-consumer"))
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AWS_LAMBDA_RUNTIME_API"), "{err}");
    assert!(err.contains("spillway-poller"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spillway-consumer"))
        .arg("migrat")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command `migrat`"));
}

const REGION: &str = "us-east-1";

/// What Lambda puts in the environment for the SDK (the execution role's keys, the region),
/// with the SDK pointed at moto.
fn aws_env(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "ASIATESTKEY".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_SESSION_TOKEN", "test".to_owned()),
    ]
}

/// Creates a secret in moto holding `value` as its SecretString; returns its ARN.
async fn create_secret(moto: &Moto, name: &str, value: &str) -> String {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(config);
    let out = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create the secret");
    out.arn().expect("the secret's ARN").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_url_is_read_from_its_secret_at_cold_start() {
    let pg = migrated_pg().await;
    let moto = Moto::start().expect("moto");
    // The test server trusts every local connection, so the password only marks the URL: it
    // must not appear anywhere in the function's output, even at the most verbose log level.
    let marker = "pw-never-logged-7f3a";
    let url = pg
        .url()
        .replace("postgres@", &format!("postgres:{marker}@"));
    assert!(url.contains(marker));
    let arn = create_secret(&moto, "spillway/database-url", &url).await;
    // The envelope keys come from a secret of their own, the same way.
    let keys_arn = create_secret(&moto, "spillway/envelope-keys", TEST_KEYS).await;

    let mut env = aws_env(&moto);
    env.push(("DATABASE_URL_SECRET_ARN", arn.clone()));
    env.push(("ENVELOPE_KEYS_SECRET_ARN", keys_arn.clone()));
    env.push(("RUST_LOG", "trace".to_owned()));
    let event = std::fs::read_to_string(fixture("spillway_mixed.json")).expect("fixture");
    let run = run_function(&env, vec![("req-secret".to_owned(), event)]).await;

    // It served the invocation with the database the secret names.
    let (got_id, body) = response(&run.replies[0], &run.raw_log);
    assert_eq!(got_id, "req-secret");
    assert_eq!(
        body,
        json!({"batchItemFailures": [{"itemIdentifier": "c0ffee00-1111-4222-8333-944455556666"}]})
    );
    assert_eq!(stored(&pg), 2);
    let read = run
        .lines
        .iter()
        .find(|v| v["fields"]["message"] == "database URL read from Secrets Manager")
        .unwrap_or_else(|| panic!("no log line about the secret: {}", run.raw_log));
    assert_eq!(read["fields"]["secret"], arn.as_str());
    let keys_read = run
        .lines
        .iter()
        .find(|v| v["fields"]["message"] == "envelope keys read from Secrets Manager")
        .unwrap_or_else(|| panic!("no log line about the keys' secret: {}", run.raw_log));
    assert_eq!(keys_read["fields"]["secret"], keys_arn.as_str());
    let secret_part = TEST_KEYS.split_once(':').map_or(TEST_KEYS, |(_, s)| s);
    assert!(
        !run.raw_log.contains(secret_part),
        "an envelope secret was logged:\n{}",
        run.raw_log
    );
    assert!(
        !run.raw_log.contains(marker),
        "the database URL was logged:\n{}",
        run.raw_log
    );

    // `spillway-consumer migrate` reads the same secret (the schema is already there).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spillway-consumer"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info")
        .output()
        .expect("run migrate");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "migrations done")
        .unwrap_or_else(|| panic!("no `migrations done`: {log}"));
    assert_eq!(done["fields"]["applied"], "[]");
    assert!(!log.contains(marker));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_conflicting_or_unreadable_database_url_stops_the_function_at_start() {
    let moto = Moto::start().expect("moto");
    let start = |env: &[(&str, String)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_spillway-consumer"));
        cmd.env_remove("DATABASE_URL")
            .env_remove("DATABASE_URL_SECRET_ARN")
            // Nothing listens there: each case must stop before asking for work.
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:1")
            .envs(aws_env(&moto))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let started = Instant::now();
        let out = cmd.output().expect("run the function");
        assert!(!out.status.success());
        (
            String::from_utf8_lossy(&out.stderr).into_owned(),
            started.elapsed(),
        )
    };
    let arn =
        format!("arn:aws:secretsmanager:{REGION}:123456789012:secret:spillway/nothing-AbCdEf");

    let (err, _) = start(&[
        (
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/postgres".to_owned(),
        ),
        ("DATABASE_URL_SECRET_ARN", arn.clone()),
    ]);
    assert!(
        err.contains("DATABASE_URL and DATABASE_URL_SECRET_ARN are both set: set only one"),
        "{err}"
    );

    let (err, _) = start(&[]);
    assert!(
        err.contains("DATABASE_URL or DATABASE_URL_SECRET_ARN is required"),
        "{err}"
    );

    let (err, _) = start(&[(
        "DATABASE_URL_SECRET_ARN",
        "spillway/database-url".to_owned(),
    )]);
    assert!(err.contains("is not a Secrets Manager secret ARN"), "{err}");

    // A secret that does not exist: the error names it and what Secrets Manager said.
    let (err, took) = start(&[("DATABASE_URL_SECRET_ARN", arn.clone())]);
    assert!(
        err.contains(&format!("cannot read the secret {arn}")),
        "{err}"
    );
    assert!(err.contains("ResourceNotFoundException"), "{err}");
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}: over Lambda's init limit"
    );
}
