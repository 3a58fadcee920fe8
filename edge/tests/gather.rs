//! Gathering under `wrangler dev` (workerd): one-event requests that reach one isolate together
//! share one Durable Object request to the batcher (its flush log says `calls` below
//! `requests`), and every one of them still gets its own `202` only once SQS holds its event,
//! each queued once; and when the client of one of them goes away mid-window (perhaps the
//! leader, the request that makes the Durable Object request for the others), the others are
//! answered all the same.
//!
//! Skips like `worker.rs` when the worker is not built.

mod harness;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{ensure, Result};
use harness::*;
use serde_json::{json, Value};
use spillway_support::{run_dir, worker_built};
use uuid::Uuid;

/// The batchers' flush lines in the edge log so far.
fn flushes(s: &Stack) -> Result<Vec<Value>> {
    let log = std::fs::read_to_string(s.edge.log_path())?;
    Ok(log
        .lines()
        .filter_map(|l| l.find('{').map(|at| &l[at..]))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "batch")
        .collect())
}

/// Every answer is a batched `202`, and SQS holds each accepted id exactly once.
fn all_accepted_and_queued_once(s: &Stack, answers: &[Answer]) -> Result<()> {
    let mut accepted: Vec<Uuid> = Vec::new();
    for a in answers {
        ensure!(a.status == 202, "{} {}", a.status, a.text());
        accepted.extend(a.ids());
        let line = s.log_line(a.header("x-request-id").unwrap_or("-"))?;
        ensure!(line["send"] == "batched", "{line}");
    }
    let mut queued = ids_of(&s.drain(&accepted, Duration::from_secs(20))?);
    queued.sort();
    accepted.sort();
    ensure!(queued == accepted, "every 202'd id queued exactly once");
    Ok(())
}

fn concurrent_requests_share_one_durable_object_request(s: &Stack) -> Result<()> {
    const CLIENTS: usize = 24;
    let before = flushes(s)?.len();
    let answers = together(s, "gathered", CLIENTS, None)?;
    all_accepted_and_queued_once(s, &answers)?;
    let new: Vec<Value> = flushes(s)?.split_off(before);
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let requests: u64 = new.iter().map(|v| n(v, "requests")).sum();
    let calls: u64 = new.iter().map(|v| n(v, "calls")).sum();
    ensure!(requests == CLIENTS as u64, "flushes {new:?}");
    ensure!(
        calls < requests,
        "{CLIENTS} requests released together came in {calls} Durable Object requests: {new:?}"
    );
    eprintln!("  {requests} requests in {calls} Durable Object requests");
    Ok(())
}

/// One client sends its request and hangs up at once; the others of the same moment are
/// answered as if it had not been there.
fn a_client_gone_mid_window_leaves_the_others_answered(s: &Stack) -> Result<()> {
    fn hang_up(port: u16) {
        let body = json!({"type": "gone"}).to_string();
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {KEY_WEB}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = c.write_all(head.as_bytes());
            let _ = c.write_all(body.as_bytes());
            let _ = c.flush();
            // Gone before the batcher's window is over.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let answers = together(s, "stayed", 12, Some(hang_up))?;
    all_accepted_and_queued_once_but_gone(s, &answers)
}

/// As [`all_accepted_and_queued_once`], with the gone client's event allowed on the queue (its
/// request may have been carried before it went).
fn all_accepted_and_queued_once_but_gone(s: &Stack, answers: &[Answer]) -> Result<()> {
    let mut accepted: Vec<Uuid> = Vec::new();
    for a in answers {
        ensure!(a.status == 202, "{} {}", a.status, a.text());
        accepted.extend(a.ids());
    }
    let events = s.drain(&accepted, Duration::from_secs(20))?;
    let mut queued: Vec<Uuid> = events
        .iter()
        .filter(|e| e.event_type != "gone")
        .map(|e| e.id)
        .collect();
    queued.sort();
    accepted.sort();
    ensure!(queued == accepted, "every 202'd id queued exactly once");
    Ok(())
}

#[test]
fn gathering_under_wrangler_dev() -> Result<()> {
    if !worker_built("gathering_under_wrangler_dev") {
        return Ok(());
    }
    let dir = run_dir().join(format!("edge-gather-{}", std::process::id()));
    let stack = Stack::start(&dir, Spill::Off)?;
    let steps: [(&str, Step); 2] = [
        (
            "concurrent requests share one Durable Object request",
            concurrent_requests_share_one_durable_object_request,
        ),
        (
            "a client gone mid-window leaves the others answered",
            a_client_gone_mid_window_leaves_the_others_answered,
        ),
    ];
    run_steps(&stack, &steps)?;
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
