//! A small Lambda Runtime API emulator of our own, and a run of the `spillway-consumer` binary
//! against it: what the runtime uses of the API, `GET .../invocation/next` (one event, then it
//! holds the request open as Lambda does when there is no work), and
//! `POST .../invocation/{id}/response` or `.../error` (and `/init/error`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use spillway_consumer::keys::testing::TEST_KEYS;
use spillway_support::{free_port, run_dir, Service};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

/// What the runtime sent back.
pub enum Reply {
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
pub struct Run {
    /// One reply per event, in order.
    pub replies: Vec<Reply>,
    /// The function's stdout and stderr, parsed as JSON lines.
    pub lines: Vec<Value>,
    pub raw_log: String,
    /// Spawn to first `GET .../invocation/next`, and spawn to the first reply.
    pub init: Duration,
    pub first_answer: Duration,
}

/// Spawns the function binary with the Lambda environment plus `env` (the database settings),
/// feeds it `events` through the emulator, waits for every reply, checks it is still alive
/// (waiting for more work), stops it.
pub async fn run_function(env: &[(&str, String)], events: Vec<(String, String)>) -> Run {
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

pub fn response(reply: &Reply, log: &str) -> (String, Value) {
    match reply {
        Reply::Response { request_id, body } => (
            request_id.clone(),
            serde_json::from_str(body).expect("json response"),
        ),
        Reply::Error(e) => panic!("the function reported an error: {e}\n{log}"),
    }
}
