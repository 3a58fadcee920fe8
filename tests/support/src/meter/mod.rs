//! A metering HTTP proxy in front of the local buffer: it counts the SQS sends
//! (`SendMessageBatch`, `SendMessage`) or Kinesis puts (`PutRecords`, `PutRecord`) that reach
//! the server, their entries, events and bytes, and the units AWS bills for them ([`count_call`]).
//!
//! Unlike [`crate::FaultProxy`], which copies bytes, it reads each HTTP/1.1 request whole
//! (`Content-Length` or chunked body), counts it, forwards it byte for byte on a kept-alive
//! upstream connection, reads the answer whole (`Content-Length`, chunked, or to the end of the
//! connection) and relays it byte for byte. It never answers in the server's place and never
//! changes a byte; an upstream it cannot reach closes the client's connection.
//!
//! The counting itself ([`count_call`]) and the HTTP framing are pure and
//! tested here against an in-process fake upstream.

use std::collections::HashMap;
use std::io::{self, BufReader, ErrorKind, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::Result;

mod count;
mod http;

use count::failed_entries;
pub use count::{
    billed_requests, count_call, Action, CallCount, BILLING_CHUNK, KINESIS_KB, PUT_PAYLOAD_UNIT,
};
use http::{bad, read_message, Kind, Message};

/// How long the meter waits on the upstream for an answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// The meter's counters at one moment. Subtract two with [`MeterSnapshot::since`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeterSnapshot {
    /// Send or put calls forwarded to the upstream (`SendMessageBatch` + `SendMessage`, or
    /// `PutRecords` + `PutRecord`).
    pub calls: u64,
    pub batch_calls: u64,
    pub single_calls: u64,
    /// Messages (SQS) or records (Kinesis) in those calls.
    pub entries: u64,
    /// Events in them.
    pub events: u64,
    /// Their message-body bytes (SQS), or data plus partition key bytes (Kinesis).
    pub body_bytes: u64,
    /// Billed SQS requests: per call, `ceil(body bytes / 64 KiB)` (at least 1).
    pub billed: u64,
    /// Kinesis on-demand data in (KiB): per record, its size rounded up to 1 KiB.
    pub kinesis_kb: u64,
    /// Kinesis provisioned PUT payload units: per record, each started 25 KiB.
    pub put_units: u64,
    /// Calls whose body was not the JSON expected (an SQS send is billed as 1 request).
    pub unparsed: u64,
    /// Requests with any other action (not billed here).
    pub other_calls: u64,
    /// Send calls the upstream answered with a status other than 2xx.
    pub answered_non_2xx: u64,
    /// Entries an answer refused: `Failed` of `SendMessageBatch`, entries with an `ErrorCode`
    /// in `PutRecords`.
    pub failed_entries: u64,
    /// Send calls forwarded that got no answer (upstream closed or timed out).
    pub unanswered: u64,
}

impl MeterSnapshot {
    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &MeterSnapshot) -> MeterSnapshot {
        MeterSnapshot {
            calls: self.calls.saturating_sub(earlier.calls),
            batch_calls: self.batch_calls.saturating_sub(earlier.batch_calls),
            single_calls: self.single_calls.saturating_sub(earlier.single_calls),
            entries: self.entries.saturating_sub(earlier.entries),
            events: self.events.saturating_sub(earlier.events),
            body_bytes: self.body_bytes.saturating_sub(earlier.body_bytes),
            billed: self.billed.saturating_sub(earlier.billed),
            kinesis_kb: self.kinesis_kb.saturating_sub(earlier.kinesis_kb),
            put_units: self.put_units.saturating_sub(earlier.put_units),
            unparsed: self.unparsed.saturating_sub(earlier.unparsed),
            other_calls: self.other_calls.saturating_sub(earlier.other_calls),
            answered_non_2xx: self
                .answered_non_2xx
                .saturating_sub(earlier.answered_non_2xx),
            failed_entries: self.failed_entries.saturating_sub(earlier.failed_entries),
            unanswered: self.unanswered.saturating_sub(earlier.unanswered),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    batch_calls: AtomicU64,
    single_calls: AtomicU64,
    entries: AtomicU64,
    events: AtomicU64,
    body_bytes: AtomicU64,
    billed: AtomicU64,
    kinesis_kb: AtomicU64,
    put_units: AtomicU64,
    unparsed: AtomicU64,
    other_calls: AtomicU64,
    answered_non_2xx: AtomicU64,
    failed_entries: AtomicU64,
    unanswered: AtomicU64,
}

impl Counters {
    fn add(&self, c: &CallCount) {
        let add = |a: &AtomicU64, v: u64| {
            a.fetch_add(v, Ordering::SeqCst);
        };
        match c.action {
            Action::Other => return add(&self.other_calls, 1),
            a if a.is_batch() => add(&self.batch_calls, 1),
            _ => add(&self.single_calls, 1),
        }
        add(&self.calls, 1);
        add(&self.entries, c.entries);
        add(&self.events, c.events);
        add(&self.body_bytes, c.body_bytes);
        add(&self.billed, c.billed);
        add(&self.kinesis_kb, c.kinesis_kb);
        add(&self.put_units, c.put_units);
        if !c.parsed {
            add(&self.unparsed, 1);
        }
    }

    fn snapshot(&self) -> MeterSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        MeterSnapshot {
            calls: get(&self.calls),
            batch_calls: get(&self.batch_calls),
            single_calls: get(&self.single_calls),
            entries: get(&self.entries),
            events: get(&self.events),
            body_bytes: get(&self.body_bytes),
            billed: get(&self.billed),
            kinesis_kb: get(&self.kinesis_kb),
            put_units: get(&self.put_units),
            unparsed: get(&self.unparsed),
            other_calls: get(&self.other_calls),
            answered_non_2xx: get(&self.answered_non_2xx),
            failed_entries: get(&self.failed_entries),
            unanswered: get(&self.unanswered),
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    counters: Counters,
    stop: AtomicBool,
    /// Client connections being served, so that dropping the meter can end them.
    open: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
}

/// The meter; stops accepting and closes its connections when dropped.
#[derive(Debug)]
pub struct BufferMeter {
    port: u16,
    shared: Arc<Shared>,
}

impl BufferMeter {
    /// Listens on a free 127.0.0.1 port and forwards to 127.0.0.1:`upstream_port`.
    pub fn start(upstream_port: u16) -> Result<BufferMeter> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        thread::spawn(move || accept_loop(listener, upstream_port, s));
        Ok(BufferMeter { port, shared })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The counters now.
    pub fn snapshot(&self) -> MeterSnapshot {
        self.shared.counters.snapshot()
    }
}

impl Drop for BufferMeter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Ok(open) = self.shared.open.lock() {
            for s in open.values() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: u16, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
                if let (Ok(clone), Ok(mut open)) = (client.try_clone(), shared.open.lock()) {
                    open.insert(id, clone);
                }
                let s = shared.clone();
                thread::spawn(move || {
                    serve(client, upstream, &s);
                    if let Ok(mut open) = s.open.lock() {
                        open.remove(&id);
                    }
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serving one client connection

/// The kept-alive upstream connection of one client connection. One descriptor each (the
/// answer is read through the buffer, the request written to the same socket beneath it): an
/// overloaded edge opens thousands of connections at once, all held in this process.
struct Upstream {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl Upstream {
    fn connect(&mut self) -> io::Result<()> {
        let s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
        s.set_nodelay(true)?;
        self.conn = Some(BufReader::new(s));
        Ok(())
    }

    /// Sends `request` and reads the answer. A kept-alive connection the upstream closed while
    /// idle (write fails, or the answer ends before its first byte) is opened again once.
    fn exchange(&mut self, request: &[u8]) -> io::Result<Option<Message>> {
        let reused = self.conn.is_some();
        if !reused {
            self.connect()?;
        }
        let stale = |r: &io::Result<Option<Message>>| match r {
            Ok(None) => true,
            Err(e) => matches!(
                e.kind(),
                ErrorKind::BrokenPipe
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::UnexpectedEof
            ),
            Ok(Some(_)) => false,
        };
        let first = self.try_exchange(request);
        if reused && stale(&first) {
            self.connect()?;
            return self.try_exchange(request);
        }
        first
    }

    fn try_exchange(&mut self, request: &[u8]) -> io::Result<Option<Message>> {
        let r = self.conn.as_mut().ok_or_else(|| bad("not connected"))?;
        // Nothing is buffered for writing: the request goes straight to the socket.
        r.get_mut().write_all(request)?;
        read_message(r, Kind::Response)
    }
}

fn serve(client: TcpStream, upstream_port: u16, shared: &Shared) {
    let _ = client.set_nodelay(true);
    // Read and written through shared references: no second descriptor per connection.
    let mut reader = BufReader::new(&client);
    let mut writer = &client;
    let mut upstream = Upstream {
        port: upstream_port,
        conn: None,
    };
    while !shared.stop.load(Ordering::SeqCst) {
        let request = match read_message(&mut reader, Kind::Request) {
            Ok(Some(m)) => m,
            _ => break,
        };
        let count = count_call(request.header("x-amz-target"), &request.body);
        shared.counters.add(&count);
        let answer = upstream.exchange(&request.raw);
        let answer = match answer {
            Ok(Some(a)) => a,
            _ => {
                if count.action != Action::Other {
                    shared.counters.unanswered.fetch_add(1, Ordering::SeqCst);
                }
                break;
            }
        };
        if count.action != Action::Other {
            if !answer.status().is_some_and(|s| (200..300).contains(&s)) {
                shared
                    .counters
                    .answered_non_2xx
                    .fetch_add(1, Ordering::SeqCst);
            } else {
                shared
                    .counters
                    .failed_entries
                    .fetch_add(failed_entries(count.action, &answer.body), Ordering::SeqCst);
            }
        }
        if writer.write_all(&answer.raw).is_err() || writer.flush().is_err() {
            break;
        }
        if answer.closes() {
            upstream.conn = None;
        }
        if answer.until_close || request.closes() {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests;
