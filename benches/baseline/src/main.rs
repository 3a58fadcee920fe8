//! The synchronous baselines of the experiment in `BENCHMARKS.md`, and nothing more.
//!
//! It models a handler on AWS Lambda behind API Gateway, the design Spillway replaces: a pool of
//! execution environments ([`pool`]). A request takes a free environment or, when none is free,
//! creates one (up to `--concurrency`, 1,000 by default like Lambda's account limit; beyond it
//! the request is throttled with `429`). Creating an environment opens **one** PostgreSQL
//! connection, which the environment keeps for the whole run, as AWS advises; if the database
//! refuses it (`too many clients already`) the environment never comes up and that request fails
//! with `502`, as API Gateway answers for a function that failed to start. A warm environment
//! writes the request's events in one `INSERT ... ON CONFLICT (key_id, id) DO NOTHING`, then answers
//! `202 {"accepted":n,"ids":[...]}`; if the write fails it answers `500` and the environment is
//! discarded (its next request creates a new one).
//!
//! The same binary is the "pooled" design when `DATABASE_URL` points at PgBouncer (transaction
//! pooling): the statement is sent with the simple query protocol, so no prepared statement
//! needs to survive between transactions.
//!
//! It deliberately does less than the edge (no auth, no limits beyond a 4 MiB body, no
//! enrichment), which can only make it faster. Never deploy it.
//!
//! ```text
//! spillway-baseline 127.0.0.1:PORT postgres://postgres@127.0.0.1:PGPORT/postgres [--concurrency N]
//! ```

mod pool;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use pool::{Pool, Take};

const MAX_BODY: usize = 4 * 1024 * 1024;
/// Lambda's default account concurrency limit.
const DEFAULT_CONCURRENCY: usize = 1000;

/// The database URL and the execution environments, shared by every connection's thread.
struct App {
    db: String,
    pool: Mutex<Pool<postgres::Client>>,
}

impl App {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pool<postgres::Client>> {
        // A thread that panicked holding the lock left the pool consistent (every method is a
        // few assignments), so carry on with it.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, db, limit) = match args.as_slice() {
        [addr, db] => (addr, db, DEFAULT_CONCURRENCY),
        [addr, db, flag, n] if flag == "--concurrency" => {
            (addr, db, n.parse().context("--concurrency takes a number")?)
        }
        _ => bail!("usage: spillway-baseline ADDR DATABASE_URL [--concurrency N]"),
    };
    let listener = listen(addr).with_context(|| format!("binding {addr}"))?;
    eprintln!("spillway-baseline listening on {addr}, concurrency limit {limit}");
    let app: &'static App = Box::leak(Box::new(App {
        db: db.clone(),
        pool: Mutex::new(Pool::new(limit)),
    }));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let spawned = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                if let Err(e) = serve(stream, app) {
                    eprintln!("connection: {e:#}");
                }
            });
        if let Err(e) = spawned {
            eprintln!("no thread for a connection: {e}");
        }
    }
    Ok(())
}

/// A listener with a deep accept queue (std's is 128), so that in a burst the clients wait for
/// the server instead of being reset by the kernel: the errors the baseline shows should be the
/// database's, not its HTTP front's.
fn listen(addr: &str) -> Result<TcpListener> {
    let addr: std::net::SocketAddr = addr.parse()?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// One request on one connection, then close.
fn serve(stream: TcpStream, app: &App) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let (status, body) = match (method, path) {
        ("GET", "/healthz") => (200, json!({"ok": true, "environments": app.lock().alive()})),
        ("POST", "/v1/events") if len > MAX_BODY => (413, json!({"error": "body too large"})),
        ("POST", "/v1/events") => {
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body)?;
            ingest(&body, app)
        }
        _ => (404, json!({"error": "not found"})),
    };
    let text = body.to_string();
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Service Unavailable",
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    out.flush()?;
    Ok(())
}

/// Parses the body (one event or an array) into the statement that writes it, and the ids.
fn statement(body: &[u8]) -> Result<(String, Vec<String>), (u16, Value)> {
    let mut events = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(a)) => a,
        Ok(v @ Value::Object(_)) => vec![v],
        _ => return Err((400, json!({"error": "body must be a JSON object or array"}))),
    };
    let mut ids = Vec::with_capacity(events.len());
    for e in &mut events {
        if !e["type"].is_string() {
            return Err((400, json!({"error": "every event needs a string `type`"})));
        }
        let id = match e["id"].as_str() {
            Some(id) => id.to_owned(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        e["id"] = json!(id);
        ids.push(id);
    }
    // A literal, not a parameter: the simple query protocol works through PgBouncer's
    // transaction pooling, where a prepared statement may land on another server connection.
    let literal = Value::Array(events).to_string().replace('\'', "''");
    let sql = format!(
        "INSERT INTO events (id, type, received_at, data, key_id) \
         SELECT (e->>'id')::uuid, e->>'type', now(), coalesce(e->'data', '{{}}'::jsonb), 'baseline' \
         FROM jsonb_array_elements('{literal}'::jsonb) AS e \
         ON CONFLICT (key_id, id) DO NOTHING"
    );
    Ok((sql, ids))
}

/// What PostgreSQL said (`sorry, too many clients already`), or the client's error when it said
/// nothing (a connection refused or cut): `postgres::Error`'s own text is only "db error".
fn reason(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

/// One request through the environment pool. The environment is taken first, as Lambda assigns
/// one when the invocation arrives: parsing the body is the function's work inside it. (Taken
/// after the parse, the requests of a burst would reach the pool only as fast as this machine's
/// two cores parse them, and environments would be free again before the later ones arrive.)
fn ingest(body: &[u8], app: &App) -> (u16, Value) {
    // Taken in its own statement: the lock must not be held while the connection is opened.
    let taken = app.lock().take();
    let mut env = match taken {
        Take::Warm(env) => env,
        Take::Throttled => return (429, json!({"error": "concurrency limit reached"})),
        Take::Create => match postgres::Client::connect(&app.db, postgres::NoTls) {
            Ok(client) => client,
            Err(e) => {
                app.lock().discard();
                return (
                    502,
                    json!({"error": format!("init: database: {}", reason(&e))}),
                );
            }
        },
    };
    let (sql, ids) = match statement(body) {
        Ok(v) => v,
        Err(answer) => {
            app.lock().put(env);
            return answer;
        }
    };
    match env.simple_query(&sql) {
        Ok(_) => {
            app.lock().put(env);
            (202, json!({"accepted": ids.len(), "ids": ids}))
        }
        Err(e) => {
            drop(env);
            app.lock().discard();
            (500, json!({"error": format!("database: {}", reason(&e))}))
        }
    }
}
