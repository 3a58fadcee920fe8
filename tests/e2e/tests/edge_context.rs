//! What only the edge knows, under `wrangler dev`: each event carries the configured
//! `request.cf` fields in the `context` column (Miniflare gives a fixed `request.cf` offline:
//! Austin, Texas, data centre DFW, AS 395747, no AS organisation), and the client's address
//! reaches no column and no log line unless `IP_POLICY` asks for it.
//!
//! The client sends from a distinctive address, 127.45.67.89 (Linux routes all of 127/8 to the
//! loopback interface), so that finding it anywhere means it leaked: `wrangler dev` sets
//! `CF-Connecting-IP` from the socket as Cloudflare does. One stack, the edge restarted per
//! policy: `none` (the default; every column of every row and every file under the stack's
//! `logs/` scanned for the address), then `truncated` (127.45.67.0 stored), then `full`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use socket2::{Domain, Socket, Type};
use spillway_e2e::{start, wait_until};
use spillway_support::Stack;

/// The client's address: distinctive, so that finding it anywhere means it leaked.
const CLIENT_IP: [u8; 4] = [127, 45, 67, 89];
const CLIENT_IP_TEXT: &str = "127.45.67.89";

/// POSTs `body` to `/v1/events` of the stack's edge from [`CLIENT_IP`], with the stack's key.
fn post_from_client_ip(stack: &Stack, body: &Value) -> Result<(u16, String)> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket
        .bind(&SocketAddr::from((CLIENT_IP, 0)).into())
        .context("binding the client address (127/8 is all loopback on Linux)")?;
    let edge = SocketAddr::from(([127, 0, 0, 1], stack.config.edge_port));
    socket.connect_timeout(&edge.into(), Duration::from_secs(10))?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.to_string();
    write!(
        stream,
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        stack.config.edge_port,
        stack.env.ingest_key,
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("no HTTP status in {answer:?}"))?;
    Ok((status, answer))
}

/// Sends one event of type `kind` from the client address and waits until it is stored;
/// returns its `context` column.
fn send_and_store(stack: &Stack, kind: &str) -> Value {
    let (status, answer) =
        post_from_client_ip(stack, &json!({"type": kind, "data": {"page": "/pricing"}}))
            .expect("request");
    assert_eq!(status, 202, "{answer}");
    let query = format!("select coalesce(context::text, 'null') from events where type = '{kind}'");
    wait_until("the event stored", Duration::from_secs(120), || {
        stack
            .pg
            .psql(&query)
            .is_ok_and(|row| !row.trim().is_empty())
    })
    .expect("stored");
    let row = stack.pg.psql(&query).expect("psql");
    serde_json::from_str(&row).expect("context is JSON")
}

/// Every file under `dir`, read as text (lossily), with its path.
fn files_under(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
}

/// The stack's log files that mention `needle`.
fn logs_holding(stack: &Stack, needle: &str) -> Vec<String> {
    let mut files = Vec::new();
    files_under(&stack.config.dir.join("logs"), &mut files);
    assert!(
        files.iter().any(|(p, _)| p.ends_with("edge.log")),
        "the edge's log is among {:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    files
        .into_iter()
        .filter(|(_, text)| text.contains(needle))
        .map(|(p, _)| p)
        .collect()
}

/// Rows any of whose columns holds `needle`.
fn rows_holding(stack: &Stack, needle: &str) -> String {
    stack
        .pg
        .psql(&format!(
            "select count(*) from events e where row_to_json(e)::text like '%{needle}%'"
        ))
        .expect("psql")
}

#[test]
fn events_carry_the_edge_context_and_no_address_unless_asked() {
    if !spillway_support::worker_built("events_carry_the_edge_context_and_no_address_unless_asked")
    {
        return;
    }
    let mut stack = start("edge_context", |_| {});

    // The default: EDGE_CONTEXT's default fields, no address.
    let context = send_and_store(&stack, "ctx_default");
    assert_eq!(
        context,
        json!({"colo": "DFW", "country": "US", "region": "Texas", "city": "Austin",
               "continent": "NA", "timezone": "America/Chicago", "asn": 395747}),
        "Miniflare's request.cf, the default fields (its AS organisation is empty: left out)"
    );
    assert_eq!(
        stack
            .pg
            .psql("select edge_colo || '|' || edge_country from events")
            .expect("psql"),
        "DFW|US",
        "the old columns stay filled"
    );
    // The request did come from the address (the edge's request log saw it arrive), and it is
    // nowhere: no column of any row, no line of any log.
    assert_eq!(rows_holding(&stack, CLIENT_IP_TEXT), "0");
    assert_eq!(rows_holding(&stack, "127.45.67"), "0");
    assert_eq!(
        logs_holding(&stack, CLIENT_IP_TEXT),
        Vec::<String>::new(),
        "log files holding the client's address"
    );
    // Positive control: the same scans find what the row and the logs do hold.
    assert_eq!(rows_holding(&stack, "Austin"), "1");
    assert!(!logs_holding(&stack, "/v1/events").is_empty());

    // Asked for: the fields named, the address cut to its /24.
    stack.config.edge_vars = vec![
        ("EDGE_CONTEXT".into(), "country,latitude,longitude".into()),
        ("IP_POLICY".into(), "truncated".into()),
    ];
    stack.restart_edge().expect("edge restarts");
    let context = send_and_store(&stack, "ctx_truncated");
    assert_eq!(
        context,
        json!({"country": "US", "latitude": 30.2713, "longitude": -97.7426, "ip": "127.45.67.0"})
    );
    assert_eq!(rows_holding(&stack, CLIENT_IP_TEXT), "0");

    // The whole address, where the deployment keeps it; still in no log line.
    stack.config.edge_vars = vec![("IP_POLICY".into(), "full".into())];
    stack.restart_edge().expect("edge restarts");
    let context = send_and_store(&stack, "ctx_full");
    assert_eq!(context["ip"], CLIENT_IP_TEXT, "{context}");
    assert_eq!(context["city"], "Austin", "{context}");
    assert_eq!(rows_holding(&stack, CLIENT_IP_TEXT), "1");
    assert_eq!(
        logs_holding(&stack, CLIENT_IP_TEXT),
        Vec::<String>::new(),
        "log files holding the client's address under IP_POLICY=full"
    );
}
