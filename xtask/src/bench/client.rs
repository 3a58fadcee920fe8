//! The load generator's client: plain HTTP/1.1 over tokio, one connection per request
//! (`Connection: close`), so thousands of clients cost tasks, not threads. The response parser is
//! pure and tested here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use spillway_support::Stack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the requests go.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    pub(super) addr: SocketAddr,
    pub(super) path: String,
    pub(super) key: Option<String>,
}

impl Endpoint {
    /// The ingest endpoint of a running stack, with its key.
    pub(super) fn spillway(stack: &Stack) -> Result<Endpoint> {
        Endpoint::parse(&stack.env.ingest_url, Some(&stack.env.ingest_key))
    }

    /// From `http://127.0.0.1:PORT/PATH`; only loopback is accepted (all load stays local).
    pub(super) fn parse(url: &str, key: Option<&str>) -> Result<Endpoint> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url} is not http://"))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let addr: SocketAddr = host
            .parse()
            .with_context(|| format!("{host} is not IP:PORT"))?;
        if !addr.ip().is_loopback() {
            bail!("{url}: the benchmark sends load to 127.0.0.1 only");
        }
        Ok(Endpoint {
            addr,
            path: format!("/{path}"),
            key: key.map(str::to_owned),
        })
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Answer {
    Status(u16),
    TimedOut,
    /// Connect, write or read failed, or the answer was not HTTP.
    Transport(String),
}

impl Answer {
    pub(super) fn accepted(&self) -> bool {
        matches!(self, Answer::Status(s) if (200..300).contains(s))
    }

    pub(super) fn label(&self) -> String {
        match self {
            Answer::Status(s) => s.to_string(),
            Answer::TimedOut => "timed out".into(),
            Answer::Transport(k) => format!("transport ({k})"),
        }
    }
}

/// One attempt: its answer, the ids a `2xx` answer names, and the start of any other answer's
/// body (which says who refused: the design, or something in front of it).
#[derive(Debug, Clone)]
pub(super) struct Attempt {
    pub(super) answer: Answer,
    pub(super) ids: Vec<String>,
    pub(super) detail: Option<String>,
}

impl Attempt {
    pub(super) fn failed(answer: Answer) -> Attempt {
        Attempt {
            answer,
            ids: Vec::new(),
            detail: None,
        }
    }
}

/// Longest refusal text kept per answer.
const DETAIL_CHARS: usize = 90;

/// The start of a refusal's body on one line, at most [`DETAIL_CHARS`] characters; `None` for
/// an empty body.
pub(super) fn detail_of(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return None;
    }
    let mut out: String = line.chars().take(DETAIL_CHARS).collect();
    if line.chars().count() > DETAIL_CHARS {
        out.push_str("...");
    }
    Some(out)
}

/// The load generator's runtime: 2 workers, the machine's cores.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the load generator's runtime")
}

/// How a run's requests are sent: `rate` a second, open loop (each at its scheduled time whatever
/// became of the earlier ones), or all at once (`None`: a burst); each client waits `timeout`
/// for an answer and, until `retry_until` if given, retries with backoff.
#[derive(Debug, Clone, Copy)]
pub(super) struct Load {
    pub(super) rate: Option<u32>,
    pub(super) timeout: Duration,
    pub(super) retry_until: Option<Instant>,
    /// Latency counted from each request's scheduled start, not from its first send.
    pub(super) from_schedule: bool,
}

/// Retrying clients back off 0.5 s, 1 s, 2 s, ... up to this.
const BACKOFF_CAP: Duration = Duration::from_secs(8);

/// How one request ended: its final attempt, when it was first sent and answered (seconds from
/// the start), its latency and how many attempts it took.
#[derive(Debug, Clone)]
pub(super) struct End {
    pub(super) attempt: Attempt,
    pub(super) sent_s: f64,
    pub(super) done_s: f64,
    pub(super) latency_ms: f64,
    pub(super) attempts: usize,
}

/// Sends one request per body as `load` says, from `start`, and returns how each ended.
pub(super) fn drive(
    ep: &Endpoint,
    bodies: &[Arc<Vec<u8>>],
    load: Load,
    start: Instant,
) -> Result<Vec<End>> {
    runtime()?.block_on(async {
        // A burst's clients each open their connection, then all send at once: every request
        // is on the wire together, however long this machine took to open 3,000 connections.
        let burst = load.rate.is_none();
        let clients = if burst { bodies.len() + 1 } else { 1 };
        let start_line = Arc::new(tokio::sync::Barrier::new(clients));
        let mut tasks = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.iter().enumerate() {
            let at = start + load.rate.map_or(Duration::ZERO, |r| scheduled(r, i));
            if !burst {
                tokio::time::sleep_until(at.into()).await;
            }
            let (ep, body, start_line) = (ep.clone(), body.clone(), start_line.clone());
            tasks.push(tokio::spawn(async move {
                let mut opened = None;
                if burst {
                    opened = Some(connect(&ep, load.timeout).await);
                    start_line.wait().await;
                }
                let sent = if load.from_schedule {
                    at
                } else {
                    Instant::now()
                };
                let mut attempts = 0;
                let mut backoff = Duration::from_millis(500);
                loop {
                    attempts += 1;
                    let attempt = match opened.take() {
                        Some(Ok(stream)) => post_on(stream, &ep, &body, load.timeout).await,
                        Some(Err(answer)) => Attempt::failed(answer),
                        None => post(&ep, &body, load.timeout).await,
                    };
                    let retry = load
                        .retry_until
                        .is_some_and(|until| Instant::now() + backoff <= until);
                    if attempt.answer.accepted() || !retry {
                        return End {
                            attempt,
                            sent_s: sent.saturating_duration_since(start).as_secs_f64(),
                            done_s: start.elapsed().as_secs_f64(),
                            latency_ms: sent.elapsed().as_secs_f64() * 1000.0,
                            attempts,
                        };
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }));
        }
        if burst {
            start_line.wait().await;
        }
        let mut ends = Vec::with_capacity(tasks.len());
        for t in tasks {
            ends.push(t.await.map_err(|e| anyhow!("a client task failed: {e}"))?);
        }
        Ok(ends)
    })
}

/// Request `i` of an open-loop run starts this long after the start.
fn scheduled(rate: u32, i: usize) -> Duration {
    Duration::from_secs_f64(i as f64 / f64::from(rate))
}

/// Sends `body` once on a new connection and waits at most `timeout` for the whole answer.
pub(super) async fn post(ep: &Endpoint, body: &[u8], timeout: Duration) -> Attempt {
    let started = tokio::time::Instant::now();
    match connect(ep, timeout).await {
        Ok(stream) => post_on(stream, ep, body, timeout.saturating_sub(started.elapsed())).await,
        Err(answer) => Attempt::failed(answer),
    }
}

/// Opens the connection of one request, waiting at most `timeout`. A burst opens every client's
/// connection first, then sends on all of them at once ([`post_on`]), so that the requests reach
/// the server together rather than as fast as this machine can set up connections.
pub(super) async fn connect(ep: &Endpoint, timeout: Duration) -> Result<TcpStream, Answer> {
    match tokio::time::timeout(timeout, TcpStream::connect(ep.addr)).await {
        Err(_) => Err(Answer::TimedOut),
        Ok(Err(e)) => Err(Answer::Transport(format!("connect: {}", e.kind()))),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Sends `body` on an open connection and waits at most `timeout` for the whole answer.
pub(super) async fn post_on(
    stream: TcpStream,
    ep: &Endpoint,
    body: &[u8],
    timeout: Duration,
) -> Attempt {
    let answer = match tokio::time::timeout(timeout, exchange(stream, ep, body)).await {
        Err(_) => Err(Answer::TimedOut),
        Ok(result) => result.map_err(Answer::Transport),
    };
    match answer {
        Ok((status, body)) if (200..300).contains(&status) => Attempt {
            answer: Answer::Status(status),
            ids: ids_of(&body),
            detail: None,
        },
        Ok((status, body)) => Attempt {
            answer: Answer::Status(status),
            ids: Vec::new(),
            detail: detail_of(&body),
        },
        Err(answer) => Attempt::failed(answer),
    }
}

/// A `2xx` body: the ids it names.
#[derive(Deserialize)]
struct Accepted {
    ids: Vec<String>,
}

/// The ids a `2xx` body names (`{"ids":[...]}`), none when it names none.
fn ids_of(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Accepted>(body).map_or_else(|_| Vec::new(), |a| a.ids)
}

async fn exchange(
    mut s: TcpStream,
    ep: &Endpoint,
    body: &[u8],
) -> std::result::Result<(u16, Vec<u8>), String> {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        ep.path,
        ep.addr,
        body.len()
    );
    if let Some(k) = &ep.key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    head.push_str("\r\n");
    // One write, so a small request is one segment, as an HTTP client library sends it (two
    // writes wait on Nagle's algorithm for the first one's acknowledgement).
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    s.write_all(&request)
        .await
        .map_err(|e| format!("write: {}", e.kind()))?;
    // Read until the answer is complete: a server may keep the connection open after it.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {}", e.kind()))?;
        raw.extend_from_slice(&buf[..n]);
        if let Some(answer) = parse_response(&raw, n == 0).map_err(|e| e.to_string())? {
            return Ok(answer);
        }
    }
}

/// The status and body of `raw` once it holds a whole HTTP/1.1 response: its headers and the
/// body they announce (by `Content-Length`, or a chunked body up to its last chunk, undone).
/// `None` while more is to come; once the connection is `closed`, a response announcing
/// neither ends there, and one cut short is an error.
pub(super) fn parse_response(raw: &[u8], closed: bool) -> Result<Option<(u16, Vec<u8>)>> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if closed {
            Err(anyhow!("no end of headers"))
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&raw[..end]).context("headers are not UTF-8")?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        bail!("not an HTTP/1 status line: {status_line:.60}");
    }
    let status: u16 = parts
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no status in {status_line:.60}"))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse::<usize>().context("Content-Length")?);
            }
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        (body.len() >= n).then(|| body[..n].to_vec())
    } else {
        closed.then(|| body.to_vec())
    };
    match body {
        Some(body) => Ok(Some((status, body))),
        None if closed => bail!(
            "the body ends after {} bytes, cut short",
            raw.len() - end - 4
        ),
        None => Ok(None),
    }
}

/// A chunked body undone; `None` until its last chunk is there.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[..eol]).context("chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).context("chunk size")?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_response_with_content_length() {
        let raw = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"ids\":[\"a\"]}";
        let (status, body) = parse_response(raw, false).expect("parses").expect("whole");
        assert_eq!(status, 202);
        assert_eq!(body, b"{\"ids\":[\"a\"]}");
    }

    #[test]
    fn undoes_chunked_encoding() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n";
        let (status, body) = parse_response(raw, false).expect("parses").expect("whole");
        assert_eq!(status, 503);
        assert_eq!(body, b"hello world");
    }

    #[test]
    fn a_cut_or_foreign_answer_is_an_error() {
        let cut = b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nshort";
        assert!(parse_response(cut, true).is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n", true).is_err());
    }

    #[test]
    fn only_loopback_endpoints() {
        let ep = Endpoint::parse("http://127.0.0.1:8787/v1/events", Some("k")).expect("parses");
        assert_eq!(ep.path, "/v1/events");
        assert!(Endpoint::parse("http://10.0.0.1:80/v1/events", None).is_err());
        assert!(Endpoint::parse("https://127.0.0.1:80/", None).is_err());
    }

    #[test]
    fn a_response_is_complete_once_its_body_is_there() {
        let whole = |raw: &[u8]| parse_response(raw, false).expect("parses").is_some();
        assert!(!whole(b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n"));
        assert!(!whole(
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nabc"
        ));
        assert!(whole(
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nabcde"
        ));
        assert!(!whole(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        ));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert!(whole(chunked));
        // Without a length, only the end of the connection ends the answer.
        let unannounced = b"HTTP/1.1 200 OK\r\n\r\nno length";
        assert!(!whole(unannounced));
        let at_end = parse_response(unannounced, true).expect("parses");
        assert_eq!(at_end, Some((200, b"no length".to_vec())));
    }

    #[test]
    fn a_refusal_keeps_the_start_of_its_body_on_one_line() {
        assert_eq!(
            detail_of(b"Your worker restarted\n mid-request.").as_deref(),
            Some("Your worker restarted mid-request.")
        );
        assert_eq!(detail_of(b" \r\n"), None);
        let long = detail_of("é".repeat(200).as_bytes()).expect("text");
        assert_eq!(long.chars().count(), DETAIL_CHARS + 3);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn the_schedule_is_open_loop() {
        assert_eq!(scheduled(100, 0), Duration::ZERO);
        assert_eq!(scheduled(100, 250), Duration::from_millis(2_500));
        assert_eq!(scheduled(1_000, 4_999), Duration::from_millis(4_999));
    }

    #[test]
    fn only_2xx_is_accepted() {
        assert!(Answer::Status(202).accepted());
        assert!(!Answer::Status(503).accepted());
        assert!(!Answer::TimedOut.accepted());
    }
}
