//! The end-to-end harness: HTTP clients that send the kinds of requests real clients send,
//! retry the way the contract allows, and a ledger that reconciles what was answered `202`
//! with what PostgreSQL holds.
//!
//! The pipeline itself is `spillway_support::Stack`, the same one `cargo xtask dev` runs.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use spillway_support::{Stack, StackConfig};

/// How a request's events are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// Every event carries its own `id`.
    Client,
    /// The request carries `Idempotency-Key`; the edge derives ids from it.
    IdempotencyKey,
    /// Neither: the edge assigns UUIDv7s (a retry would store new events).
    Assigned,
}

/// How a request's body is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Single,
    Array(usize),
    Ndjson(usize),
    GzipArray(usize),
}

/// One request, ready to be sent (and sent again, byte for byte, on retry).
#[derive(Debug, Clone)]
pub struct Request {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub gzip: bool,
    pub idempotency_key: Option<String>,
    pub events: usize,
    pub ids: Ids,
    /// The events as sent, in order (the answer's ids come in the same order).
    pub sent: Vec<Value>,
}

fn event(seq: usize, i: usize, ids: Ids) -> Value {
    let mut e = json!({
        "type": "e2e_event",
        "data": {"seq": seq, "i": i, "path": format!("/page/{seq}/{i}"), "pad": "x".repeat(200)},
    });
    if ids == Ids::Client {
        e["id"] = json!(uuid::Uuid::new_v4().to_string());
    }
    e
}

impl Request {
    pub fn new(shape: Shape, ids: Ids, seq: usize) -> Request {
        let n = match shape {
            Shape::Single => 1,
            Shape::Array(n) | Shape::Ndjson(n) | Shape::GzipArray(n) => n,
        };
        let events: Vec<Value> = (0..n).map(|i| event(seq, i, ids)).collect();
        let sent = events.clone();
        let (body, content_type, gzip) = match shape {
            Shape::Single => (
                events[0].to_string().into_bytes(),
                "application/json",
                false,
            ),
            Shape::Array(_) => (
                Value::Array(events).to_string().into_bytes(),
                "application/json",
                false,
            ),
            Shape::Ndjson(_) => {
                let lines: Vec<String> = events.iter().map(Value::to_string).collect();
                (
                    (lines.join("\n") + "\n").into_bytes(),
                    "application/x-ndjson",
                    false,
                )
            }
            Shape::GzipArray(_) => {
                let raw = Value::Array(events).to_string();
                (
                    spillway_support::gzip(raw.as_bytes()),
                    "application/json",
                    true,
                )
            }
        };
        Request {
            body,
            content_type,
            gzip,
            idempotency_key: (ids == Ids::IdempotencyKey)
                .then(|| format!("e2e-{seq}-{}", uuid::Uuid::new_v4())),
            events: n,
            ids,
            sent,
        }
    }
}

/// An answer of the edge.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
}

impl Answer {
    /// The ids of a `202`.
    pub fn ids(&self) -> Vec<String> {
        self.body["ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A client of the ingest API.
#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    key: String,
    agent: ureq::Agent,
    /// `503`s answered so far, to this client and its clones, as they happen.
    unavailable_seen: std::sync::Arc<AtomicU64>,
}

impl Client {
    pub fn new(stack: &Stack) -> Client {
        Client {
            url: stack.env.ingest_url.clone(),
            key: stack.env.ingest_key.clone(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
            unavailable_seen: std::sync::Arc::default(),
        }
    }

    /// How many `503`s this client (and its clones) got so far, retried or not yet.
    pub fn unavailable_seen(&self) -> u64 {
        self.unavailable_seen.load(Ordering::SeqCst)
    }

    /// POSTs an empty JSON body to another path of the edge (with the key).
    pub fn post_path(&self, path: &str) -> Result<Answer> {
        let base = self.url.trim_end_matches("/v1/events");
        let resp = match self
            .agent
            .post(&format!("{base}{path}"))
            .set("Authorization", &format!("Bearer {}", self.key))
            .set("Content-Type", "application/json")
            .send_string("{}")
        {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => return Err(anyhow!("request failed: {e}")),
        };
        let status = resp.status();
        let content_type = resp.content_type().to_owned();
        let text = resp.into_string()?;
        let body = serde_json::from_str(&text).with_context(|| {
            format!("answer {status} ({content_type}) is not JSON: {text:.200}")
        })?;
        Ok(Answer {
            status,
            body,
            retry_after: None,
        })
    }

    pub fn send(&self, req: &Request) -> Result<Answer> {
        let mut r = self
            .agent
            .post(&self.url)
            .set("Authorization", &format!("Bearer {}", self.key))
            .set("Content-Type", req.content_type);
        if req.gzip {
            r = r.set("Content-Encoding", "gzip");
        }
        if let Some(k) = &req.idempotency_key {
            r = r.set("Idempotency-Key", k);
        }
        let resp = match r.send_bytes(&req.body) {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => return Err(anyhow!("request failed: {e}")),
        };
        let status = resp.status();
        let retry_after = resp.header("Retry-After").and_then(|v| v.parse().ok());
        let mut text = String::new();
        resp.into_reader()
            .take(10 * 1024 * 1024)
            .read_to_string(&mut text)?;
        let body = serde_json::from_str(&text)
            .with_context(|| format!("answer {status} is not JSON: {text:.200}"))?;
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    /// Sends `req` until it is accepted, retrying the same bytes on `503` and `429` as the
    /// contract allows (only for requests whose ids are stable). Returns the accepted ids and
    /// how many `503`s were seen on the way.
    pub fn send_until_accepted(
        &self,
        req: &Request,
        give_up: Duration,
    ) -> Result<(Vec<String>, u32)> {
        let deadline = Instant::now() + give_up;
        let mut unavailable = 0;
        loop {
            let a = self.send(req)?;
            match a.status {
                202 => {
                    let ids = a.ids();
                    if ids.len() != req.events
                        || a.body["accepted"].as_u64() != Some(req.events as u64)
                    {
                        bail!(
                            "202 with {} ids for {} events: {}",
                            ids.len(),
                            req.events,
                            a.body
                        );
                    }
                    return Ok((ids, unavailable));
                }
                503 | 429 if req.ids != Ids::Assigned => {
                    unavailable += u32::from(a.status == 503);
                    if a.status == 503 {
                        self.unavailable_seen.fetch_add(1, Ordering::SeqCst);
                    }
                    if a.retry_after.is_none() {
                        bail!("{} without Retry-After: {}", a.status, a.body);
                    }
                    if Instant::now() > deadline {
                        bail!("still {} after {give_up:?}: {}", a.status, a.body);
                    }
                    // Honour Retry-After, capped so the test stays short.
                    let wait = a.retry_after.unwrap_or(1).min(1);
                    std::thread::sleep(Duration::from_secs(wait));
                }
                other => bail!("unexpected {other}: {}", a.body),
            }
        }
    }
}

/// What the edge accepted: each id answered `202`, with the event it was answered for,
/// collected from every client thread.
#[derive(Debug, Default)]
pub struct Ledger {
    accepted: Mutex<Vec<(String, Value)>>,
    pub requests: AtomicU64,
    pub unavailable: AtomicU64,
}

impl Ledger {
    /// Records the `202` for `req`: `ids` in the order of its events.
    pub fn record(&self, req: &Request, ids: Vec<String>, unavailable: u32) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.unavailable
            .fetch_add(u64::from(unavailable), Ordering::SeqCst);
        if let Ok(mut all) = self.accepted.lock() {
            all.extend(ids.into_iter().zip(req.sent.iter().cloned()));
        }
    }

    /// Records events accepted some other way than a `202` this ledger saw (a test's own
    /// records put straight into the buffer), so that reconciling expects them too.
    pub fn extend(&self, accepted: impl IntoIterator<Item = (String, Value)>) {
        if let Ok(mut all) = self.accepted.lock() {
            all.extend(accepted);
        }
    }

    pub fn ids(&self) -> Vec<String> {
        self.accepted().into_iter().map(|(id, _)| id).collect()
    }

    /// Every accepted id with the event sent for it.
    pub fn accepted(&self) -> Vec<(String, Value)> {
        self.accepted.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// The request mix of steady traffic: every shape, every id mode.
pub fn mixed(seq: usize, allow_assigned: bool) -> Request {
    let shapes = [
        Shape::Single,
        Shape::Array(5),
        Shape::Ndjson(4),
        Shape::GzipArray(8),
    ];
    let ids = match seq % 3 {
        0 => Ids::Client,
        1 => Ids::IdempotencyKey,
        _ if allow_assigned => Ids::Assigned,
        _ => Ids::Client,
    };
    Request::new(shapes[seq % shapes.len()], ids, seq)
}

/// Runs `threads` clients, each sending `per_thread` requests made by `make`, `pause` apart.
pub fn traffic(
    client: &Client,
    threads: usize,
    per_thread: usize,
    pause: Duration,
    make: fn(usize) -> Request,
    ledger: &Ledger,
) -> Result<()> {
    clients(client, threads, pause, make, ledger, &|i| i < per_thread)
}

/// Runs `threads` clients, each sending requests made by `make`, `pause` apart, until `stop` is
/// set (each finishes the request it is sending). For tests whose phases must all see traffic,
/// however long each takes to reach.
pub fn traffic_until(
    client: &Client,
    threads: usize,
    pause: Duration,
    make: fn(usize) -> Request,
    ledger: &Ledger,
    stop: &AtomicBool,
) -> Result<()> {
    clients(client, threads, pause, make, ledger, &|_| {
        !stop.load(Ordering::SeqCst)
    })
}

fn clients(
    client: &Client,
    threads: usize,
    pause: Duration,
    make: fn(usize) -> Request,
    ledger: &Ledger,
    more: &(dyn Fn(usize) -> bool + Sync),
) -> Result<()> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> Result<()> {
                    let mut i = 0;
                    while more(i) {
                        let req = make(t * 10_000 + i);
                        let (ids, unavailable) =
                            client.send_until_accepted(&req, Duration::from_secs(90))?;
                        ledger.record(&req, ids, unavailable);
                        std::thread::sleep(pause);
                        i += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow!("client thread panicked"))??;
        }
        Ok(())
    })
}

/// Sets the flag when dropped: client threads stopped by it end even if the test panics.
#[derive(Debug)]
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Every row of the `events` table: id, type and data, as PostgreSQL holds them.
pub fn stored_rows(stack: &Stack) -> Result<Vec<(String, String, Value)>> {
    let out = stack.pg.psql(
        "select coalesce(json_agg(json_build_array(id, type, data) order by id), '[]') from events",
    )?;
    let rows: Vec<(String, String, Value)> =
        serde_json::from_str(&out).with_context(|| format!("rows: {out:.200}"))?;
    Ok(rows)
}

/// Waits until the table holds at least as many rows as were accepted and the buffer is
/// drained (nothing more can arrive: [`Stack::drained`]), or `timeout`; then compares the table with what the edge
/// accepted: every accepted id is stored, no other id is, the table has exactly one row per
/// accepted event, and each row holds the type and data that were sent for its id (and the
/// client's own id where it sent one).
pub fn reconcile(stack: &Stack, ledger: &Ledger, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let accepted = ledger.accepted();
    if accepted.is_empty() {
        bail!("nothing was accepted: nothing to reconcile");
    }
    let expected: HashMap<&str, &Value> = accepted.iter().map(|(id, e)| (id.as_str(), e)).collect();
    if expected.len() != accepted.len() {
        bail!("the edge answered the same id twice across requests");
    }
    loop {
        let n: usize = stack
            .pg
            .psql("select count(*) from events")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let drained = stack.drained();
        if (n >= expected.len() && drained) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let rows = stored_rows(stack)?;
    let stored: HashSet<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
    let missing: Vec<_> = expected
        .keys()
        .filter(|id| !stored.contains(*id))
        .take(5)
        .collect();
    let extra: Vec<_> = stored
        .iter()
        .filter(|id| !expected.contains_key(*id))
        .take(5)
        .collect();
    if !missing.is_empty() || !extra.is_empty() || rows.len() != expected.len() {
        let status = stack.status().ok();
        bail!(
            "accepted {} ids, stored {} rows; missing e.g. {missing:?}; never accepted e.g. {extra:?}; status {status:?}",
            expected.len(),
            rows.len()
        );
    }
    for (id, event_type, data) in &rows {
        let sent = expected[id.as_str()];
        let sent_data = sent.get("data").cloned().unwrap_or_else(|| json!({}));
        if sent["type"] != event_type.as_str() || *data != sent_data {
            bail!("row {id} holds type {event_type:?} data {data}; sent {sent}");
        }
        if let Some(client_id) = sent.get("id") {
            if client_id != id.as_str() {
                bail!("the client sent id {client_id}, the edge answered and stored {id}");
            }
        }
    }
    Ok(())
}

/// Waits until `f` holds, polling every 200 ms.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// Starts a stack on free ports for the test `name`, after `tweak` adjusted its configuration,
/// printing its progress lines with the test's name.
pub fn start(name: &str, tweak: impl FnOnce(&mut StackConfig)) -> Stack {
    let mut cfg = StackConfig::ephemeral(name).expect("ports");
    tweak(&mut cfg);
    let t = Instant::now();
    let stack = Stack::start(cfg, &mut |line| eprintln!("[{name}] {line}")).expect("stack starts");
    eprintln!("[{name}] ready in {:.1} s", t.elapsed().as_secs_f64());
    stack
}
