//! The synchronous baseline of the burst experiment in `BENCHMARKS.md`, and nothing more.
//!
//! A small, honest version of the design Spillway exists to replace: an HTTP server with one
//! thread per connection that, for every `POST /v1/events`, opens its own PostgreSQL
//! connection, writes the request's events in one `INSERT ... SELECT FROM UNNEST(...) ON
//! CONFLICT (id) DO NOTHING` (the same statement shape as the consumer), closes the connection
//! and only then answers `202 {"accepted":n,"ids":[...]}`. When PostgreSQL refuses the
//! connection (for example `too many clients already`) it answers `503`, as such a server would.
//!
//! It deliberately does less than the edge (no auth, no limits beyond a 4 MiB body, no
//! enrichment), which can only make it faster; it has no pool, because a fleet of independent
//! serverless functions or processes cannot share one. Never deploy it.
//!
//! ```text
//! spillway-baseline 127.0.0.1:PORT postgres://postgres@127.0.0.1:PGPORT/postgres
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

const MAX_BODY: usize = 4 * 1024 * 1024;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(db)) = (args.next(), args.next()) else {
        bail!("usage: spillway-baseline ADDR DATABASE_URL");
    };
    let listener = listen(&addr).with_context(|| format!("binding {addr}"))?;
    eprintln!("spillway-baseline listening on {addr}");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let db = db.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &db) {
                eprintln!("connection: {e:#}");
            }
        });
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
fn serve(stream: TcpStream, db: &str) -> Result<()> {
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
        ("GET", "/healthz") => (200, json!({"ok": true})),
        ("POST", "/v1/events") if len > MAX_BODY => (413, json!({"error": "body too large"})),
        ("POST", "/v1/events") => {
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body)?;
            ingest(&body, db)
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

/// Parses the body (one event or an array), then connects, inserts and disconnects.
fn ingest(body: &[u8], db: &str) -> (u16, Value) {
    let events = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(a)) => a,
        Ok(v @ Value::Object(_)) => vec![v],
        _ => return (400, json!({"error": "body must be a JSON object or array"})),
    };
    let mut ids = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut data = Vec::with_capacity(events.len());
    for e in &events {
        let Some(t) = e["type"].as_str() else {
            return (400, json!({"error": "every event needs a string `type`"}));
        };
        ids.push(
            e["id"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        );
        types.push(t.to_owned());
        data.push(e.get("data").cloned().unwrap_or(json!({})).to_string());
    }
    // A connection of its own, as every independent request handler has.
    let mut client = match postgres::Client::connect(db, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => return (503, json!({"error": format!("database: {e}")})),
    };
    let written = client.execute(
        "INSERT INTO events (id, type, received_at, data, key_id) \
         SELECT u.id::uuid, u.type, now(), u.data::jsonb, 'baseline' \
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(id, type, data) \
         ON CONFLICT (id) DO NOTHING",
        &[&ids, &types, &data],
    );
    let _ = client.close();
    match written {
        Ok(_) => (202, json!({"accepted": ids.len(), "ids": ids})),
        Err(e) => (503, json!({"error": format!("database: {e}")})),
    }
}
