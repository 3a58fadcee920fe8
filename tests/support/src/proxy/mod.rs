//! A TCP proxy in front of a local HTTP service (the local SQS or the local Kinesis) that can be
//! told to fail.
//!
//! In `Pass` mode it copies bytes both ways. In the whole-call fault modes it answers each new
//! HTTP request itself, the way a troubled endpoint would, in the shape of the service the request
//! is for (told by its `X-Amz-Target`: `Kinesis_20131202.*` gets Kinesis's awsJson1_1 errors,
//! anything else SQS's awsJson1_0 ones). In `RefuseRecords` mode it forwards each request, but
//! refuses records of Kinesis `PutRecords` calls one by one, as a [`RecordPlan`] says: the
//! refused records are taken out of the request before it reaches the upstream (so they are
//! really not stored) and error entries are spliced back into the answer at their positions
//! ([`records`] does the rewriting). Changing the mode cuts connections that were opened under
//! the previous one, so kept-alive connections see the new mode at once.
//!
//! Not a general HTTP proxy: one request at a time per connection, bodies framed by
//! `Content-Length` (what the AWS SDKs send), no TLS.

pub mod records;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

pub use records::{Count, Pick, RecordError, RecordPlan};

/// What the proxy does with new requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FaultMode {
    /// Forward to the upstream.
    Pass = 0,
    /// Accept the connection and close it at once, without an answer.
    Refuse = 1,
    /// Answer `500` with an `InternalError` body (SQS) or an `InternalFailure` one (Kinesis).
    Http500 = 2,
    /// Answer `400` with a `ThrottlingException` body (SQS) or a
    /// `ProvisionedThroughputExceededException` one (Kinesis).
    Throttle = 3,
    /// Read the request and never answer (until the mode changes).
    Stall = 4,
    /// Forward, refusing records of Kinesis `PutRecords` calls one by one as the plan set with
    /// [`FaultProxy::refuse_records`] says (other calls pass untouched). A fault is counted per
    /// call that had a record refused.
    RefuseRecords = 5,
}

impl FaultMode {
    fn from_u8(v: u8) -> FaultMode {
        match v {
            1 => FaultMode::Refuse,
            2 => FaultMode::Http500,
            3 => FaultMode::Throttle,
            4 => FaultMode::Stall,
            5 => FaultMode::RefuseRecords,
            _ => FaultMode::Pass,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    mode: AtomicU8,
    generation: AtomicU64,
    faulted: AtomicU64,
    /// Faults by mode, indexed by `FaultMode as usize` (the `Pass` slot stays 0).
    faulted_by_mode: [AtomicU64; 6],
    passed: AtomicU64,
    stop: AtomicBool,
    plan: Mutex<PlanState>,
    records_refused: AtomicU64,
    /// The upstream's port, read for each new connection.
    upstream: AtomicU16,
}

/// The record plan in force and how far it has got: its calls and records are numbered from 0
/// when it is set.
#[derive(Debug, Default)]
struct PlanState {
    plan: RecordPlan,
    calls: u64,
    records: u64,
}

impl Shared {
    fn count_fault(&self, mode: FaultMode) {
        self.faulted_by_mode[mode as usize].fetch_add(1, Ordering::SeqCst);
        self.faulted.fetch_add(1, Ordering::SeqCst);
    }
}

/// The proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and forwards to 127.0.0.1:`upstream_port`.
    pub fn start(upstream_port: u16) -> Result<FaultProxy> {
        Self::start_on(0, upstream_port)
    }

    /// Listens on 127.0.0.1:`port` (0: any free port).
    pub fn start_on(port: u16, upstream_port: u16) -> Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            upstream: AtomicU16::new(upstream_port),
            ..Shared::default()
        });
        let s = shared.clone();
        thread::spawn(move || accept_loop(listener, s));
        Ok(FaultProxy { port, shared })
    }

    /// Forwards new connections to 127.0.0.1:`upstream_port` from now on (an upstream started
    /// again on another port), cutting those open to the previous one.
    pub fn forward_to(&self, upstream_port: u16) {
        self.shared.upstream.store(upstream_port, Ordering::SeqCst);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn mode(&self) -> FaultMode {
        FaultMode::from_u8(self.shared.mode.load(Ordering::SeqCst))
    }

    /// Switches mode and cuts connections opened under the previous one.
    pub fn set_mode(&self, mode: FaultMode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Requests answered with a fault (or refused) so far.
    pub fn faulted(&self) -> u64 {
        self.shared.faulted.load(Ordering::SeqCst)
    }

    /// Requests answered with a fault (or refused) in `mode` so far: a test can switch modes
    /// once each has really been hit, instead of after a fixed time.
    pub fn faulted_in(&self, mode: FaultMode) -> u64 {
        self.shared.faulted_by_mode[mode as usize].load(Ordering::SeqCst)
    }

    /// Switches to [`FaultMode::RefuseRecords`] with `plan`, its call and record numbers
    /// starting from 0.
    pub fn refuse_records(&self, plan: RecordPlan) {
        *self
            .shared
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = PlanState {
            plan,
            calls: 0,
            records: 0,
        };
        self.set_mode(FaultMode::RefuseRecords);
    }

    /// Records of `PutRecords` calls refused one by one so far (each refusal of a resent
    /// record counts again).
    pub fn records_refused(&self) -> u64 {
        self.shared.records_refused.load(Ordering::SeqCst)
    }

    /// Connections passed through to the upstream so far.
    pub fn passed(&self) -> u64 {
        self.shared.passed.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let s = shared.clone();
                let upstream = shared.upstream.load(Ordering::SeqCst);
                thread::spawn(move || handle(client, upstream, s));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn handle(client: TcpStream, upstream: u16, shared: Arc<Shared>) {
    let _ = client.set_nonblocking(false);
    let generation = shared.generation.load(Ordering::SeqCst);
    match FaultMode::from_u8(shared.mode.load(Ordering::SeqCst)) {
        FaultMode::Pass => pass(client, upstream, shared, generation),
        FaultMode::RefuseRecords => rewrite(client, upstream, shared, generation),
        FaultMode::Refuse => {
            shared.count_fault(FaultMode::Refuse);
            let _ = client.shutdown(Shutdown::Both);
        }
        mode => answer_faults(client, mode, shared, generation),
    }
}

fn pass(client: TcpStream, upstream: u16, shared: Arc<Shared>, generation: u64) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    shared.passed.fetch_add(1, Ordering::SeqCst);
    let pairs = [
        (client.try_clone(), server.try_clone()),
        (server.try_clone(), client.try_clone()),
    ];
    let mut threads = Vec::new();
    for (from, to) in pairs {
        let (Ok(from), Ok(to)) = (from, to) else {
            return;
        };
        let s = shared.clone();
        threads.push(thread::spawn(move || copy(from, to, s, generation)));
    }
    for t in threads {
        let _ = t.join();
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>, generation: u64) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        if shared.generation.load(Ordering::SeqCst) != generation {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// One HTTP message: its head (start line and headers, without the blank line) and body.
#[derive(Debug)]
struct Message {
    head: String,
    body: Vec<u8>,
}

impl Message {
    /// The value of header `name` (lower case), if present.
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Is it a call of the Kinesis API (`X-Amz-Target: Kinesis_20131202.*`)?
    fn is_kinesis(&self) -> bool {
        self.header("x-amz-target")
            .is_some_and(|t| t.starts_with("Kinesis_20131202."))
    }

    /// The head with `Content-Length` set to `len` and `Connection`/`Transfer-Encoding` dropped
    /// (plus `extra` header lines), ready to be written with a body of `len` bytes.
    fn head_with_length(&self, len: usize, extra: &str) -> String {
        let mut out = String::new();
        for (i, line) in self.head.lines().enumerate() {
            let name = line
                .split_once(':')
                .map(|(k, _)| k.trim().to_ascii_lowercase());
            if i > 0
                && matches!(
                    name.as_deref(),
                    Some("content-length" | "connection" | "transfer-encoding")
                )
            {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str(&format!("Content-Length: {len}\r\n{extra}\r\n"));
        out
    }
}

/// Reads one HTTP message (head + body framed by `Content-Length`, or read to the end of the
/// stream when `to_eof` and there is none); `None` at end of stream or on error. While it waits
/// for the first byte, it gives up once `give_up()` says so.
fn read_message(
    stream: &mut TcpStream,
    to_eof: bool,
    give_up: &dyn Fn() -> bool,
) -> Option<Message> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => head.push(byte[0]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if head.is_empty() && give_up() {
                    return None;
                }
                continue;
            }
            Err(_) => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    let head = String::from_utf8_lossy(&head[..head.len() - 4]).into_owned();
    let mut message = Message {
        head,
        body: Vec::new(),
    };
    match message
        .header("content-length")
        .and_then(|v| v.parse().ok())
    {
        Some(len) => {
            let mut body = vec![0u8; len];
            read_fully(stream, &mut body)?;
            message.body = body;
        }
        None if to_eof => {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => message.body.extend_from_slice(&buf[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => return None,
                }
            }
        }
        None => {}
    }
    Some(message)
}

/// `read_exact` that rides over read timeouts (the sockets here have short ones).
fn read_fully(stream: &mut TcpStream, mut buf: &mut [u8]) -> Option<()> {
    while !buf.is_empty() {
        match stream.read(buf) {
            Ok(0) => return None,
            Ok(n) => buf = &mut buf[n..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
    Some(())
}

/// Reads one request; `None` at end of stream.
fn read_request(stream: &mut TcpStream) -> Option<Message> {
    read_message(stream, false, &|| false)
}

/// `RefuseRecords` mode: request by request on the client's connection, each forwarded on a
/// fresh upstream connection, `PutRecords` calls rewritten as the plan says. Stops when the
/// client closes or the mode changes.
fn rewrite(mut client: TcpStream, upstream: u16, shared: Arc<Shared>, generation: u64) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(100)));
    let changed = || {
        shared.generation.load(Ordering::SeqCst) != generation || shared.stop.load(Ordering::SeqCst)
    };
    while let Some(request) = read_message(&mut client, false, &changed) {
        let answer = if request
            .header("x-amz-target")
            .is_some_and(|t| t == "Kinesis_20131202.PutRecords")
        {
            put_records(&request, upstream, &shared)
        } else {
            forward(&request, &request.body, upstream)
        };
        let Some((head, body)) = answer else { break };
        if client.write_all(head.as_bytes()).is_err() || client.write_all(&body).is_err() {
            break;
        }
        let close = request
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if close || changed() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Sends `request` with `body` upstream (closing the connection after it) and returns the
/// answer's head (with its length set) and body.
fn forward(request: &Message, body: &[u8], upstream: u16) -> Option<(String, Vec<u8>)> {
    let mut server = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    server
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let head = request.head_with_length(body.len(), "Connection: close\r\n");
    server.write_all(head.as_bytes()).ok()?;
    server.write_all(body).ok()?;
    let answer = read_message(&mut server, true, &|| false)?;
    let head = answer.head_with_length(answer.body.len(), "");
    Some((head, answer.body))
}

/// One `PutRecords` call under the plan: the refused records taken out, the rest forwarded, the
/// answer spliced. A body that cannot be rewritten, or an upstream answer other than `200`
/// (the forwarded records were then not stored either), goes through untouched.
fn put_records(request: &Message, upstream: u16, shared: &Shared) -> Option<(String, Vec<u8>)> {
    let Ok(json) = serde_json::from_slice::<Value>(&request.body) else {
        return forward(request, &request.body, upstream);
    };
    let Ok(total) = records::record_count(&json) else {
        return forward(request, &request.body, upstream);
    };
    let (plan, refused) = {
        let mut state = shared.plan.lock().unwrap_or_else(PoisonError::into_inner);
        let refused =
            records::refused_positions(state.plan.pick, state.calls, state.records, total);
        state.calls += 1;
        state.records += total as u64;
        (state.plan, refused)
    };
    if refused.is_empty() {
        return forward(request, &request.body, upstream);
    }
    let answer = if refused.len() == total {
        // Nothing left to store: Kinesis refuses an empty `Records`, so nothing is forwarded.
        None
    } else {
        let forwarded = records::without_refused(&json, &refused).ok()?;
        let body = serde_json::to_vec(&forwarded).ok()?;
        let (head, body) = forward(request, &body, upstream)?;
        if !head.starts_with("HTTP/1.1 200") {
            return Some((head, body));
        }
        Some((head, serde_json::from_slice::<Value>(&body).ok()?))
    };
    let spliced = match &answer {
        Some((_, json)) => records::spliced_answer(Some(json), total, &refused, &plan),
        None => records::spliced_answer(None, total, &refused, &plan),
    };
    // An answer that does not match the forwarded records goes back as kinesis-local gave it.
    let body = match spliced {
        Ok(v) => serde_json::to_vec(&v).ok()?,
        Err(_) => return answer.and_then(|(h, v)| Some((h, serde_json::to_vec(&v).ok()?))),
    };
    shared.count_fault(FaultMode::RefuseRecords);
    shared
        .records_refused
        .fetch_add(refused.len() as u64, Ordering::SeqCst);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    Some((head, body))
}

fn answer_faults(mut client: TcpStream, mode: FaultMode, shared: Arc<Shared>, generation: u64) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    if let Some(request) = read_request(&mut client) {
        shared.count_fault(mode);
        match fault_answer(mode, request.is_kinesis()) {
            Some((status, content_type, body)) => {
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = client.write_all(response.as_bytes());
            }
            None => {
                // Stall: hold the connection until the mode changes or the proxy stops.
                while shared.generation.load(Ordering::SeqCst) == generation {
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// The status, content type and body a whole-call fault is answered with, in the shape of the
/// service the request is for: SQS speaks awsJson1_0 with namespaced `__type`s, Kinesis
/// awsJson1_1 with bare ones (`InternalFailure` is a `500`, a throughput refusal a `400`).
/// `None` for the modes that do not answer.
fn fault_answer(
    mode: FaultMode,
    kinesis: bool,
) -> Option<(&'static str, &'static str, &'static str)> {
    match (mode, kinesis) {
        (FaultMode::Http500, false) => Some((
            "500 Internal Server Error",
            "application/x-amz-json-1.0",
            r#"{"__type":"com.amazonaws.sqs#InternalError","message":"injected by the spillway fault proxy"}"#,
        )),
        (FaultMode::Throttle, false) => Some((
            "400 Bad Request",
            "application/x-amz-json-1.0",
            r#"{"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded (injected by the spillway fault proxy)"}"#,
        )),
        (FaultMode::Http500, true) => Some((
            "500 Internal Server Error",
            "application/x-amz-json-1.1",
            r#"{"__type":"InternalFailure","message":"Internal service failure. (injected by the spillway fault proxy)"}"#,
        )),
        (FaultMode::Throttle, true) => Some((
            "400 Bad Request",
            "application/x-amz-json-1.1",
            r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for stream spillway under account 000000000000. (injected by the spillway fault proxy)"}"#,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
