//! A TCP proxy in front of a local HTTP service (the local SQS) that can be told to fail.
//!
//! In `Pass` mode it copies bytes both ways. In the other modes it answers each new HTTP request
//! itself, the way a troubled SQS endpoint would. Changing the mode cuts connections that were
//! being passed through, so kept-alive connections see the new mode at once.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Result;

/// What the proxy does with new requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FaultMode {
    /// Forward to the upstream.
    Pass = 0,
    /// Accept the connection and close it at once, without an answer.
    Refuse = 1,
    /// Answer `500` with an `InternalError` body (awsJson shape).
    Http500 = 2,
    /// Answer `400` with a `ThrottlingException` body (awsJson shape).
    Throttle = 3,
    /// Read the request and never answer (until the mode changes).
    Stall = 4,
}

impl FaultMode {
    fn from_u8(v: u8) -> FaultMode {
        match v {
            1 => FaultMode::Refuse,
            2 => FaultMode::Http500,
            3 => FaultMode::Throttle,
            4 => FaultMode::Stall,
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
    faulted_by_mode: [AtomicU64; 5],
    passed: AtomicU64,
    stop: AtomicBool,
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
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        thread::spawn(move || accept_loop(listener, upstream_port, s));
        Ok(FaultProxy { port, shared })
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

fn accept_loop(listener: TcpListener, upstream: u16, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let s = shared.clone();
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

/// Reads one HTTP request (head + Content-Length body); `None` at end of stream.
fn read_request(stream: &mut TcpStream) -> Option<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => head.push(byte[0]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    Some(())
}

fn answer_faults(mut client: TcpStream, mode: FaultMode, shared: Arc<Shared>, generation: u64) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    if read_request(&mut client).is_some() {
        shared.count_fault(mode);
        let answer = match mode {
            FaultMode::Http500 => Some((
                "500 Internal Server Error",
                r#"{"__type":"com.amazonaws.sqs#InternalError","message":"injected by the spillway fault proxy"}"#,
            )),
            FaultMode::Throttle => Some((
                "400 Bad Request",
                r#"{"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded (injected by the spillway fault proxy)"}"#,
            )),
            _ => None,
        };
        match answer {
            Some((status, body)) => {
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                thread::spawn(move || {
                    if read_request(&mut c).is_some() {
                        let _ = c.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                    }
                });
            }
        });
        port
    }

    fn get(port: u16) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn modes_change_the_answers() {
        let proxy = FaultProxy::start(echo_server()).expect("proxy");
        assert!(get(proxy.port()).ends_with("ok"));
        proxy.set_mode(FaultMode::Http500);
        assert!(get(proxy.port()).starts_with("HTTP/1.1 500"));
        proxy.set_mode(FaultMode::Throttle);
        assert!(get(proxy.port()).contains("ThrottlingException"));
        proxy.set_mode(FaultMode::Refuse);
        assert_eq!(get(proxy.port()), "");
        proxy.set_mode(FaultMode::Pass);
        assert!(get(proxy.port()).ends_with("ok"));
        assert_eq!(proxy.faulted(), 3);
        for mode in [FaultMode::Http500, FaultMode::Throttle, FaultMode::Refuse] {
            assert_eq!(proxy.faulted_in(mode), 1, "{mode:?}");
        }
        assert_eq!(proxy.faulted_in(FaultMode::Stall), 0);
        assert_eq!(proxy.passed(), 2);
    }
}
