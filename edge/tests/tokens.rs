//! Browser tokens and per-key origins under `wrangler dev` (workerd), against the local SQS:
//! a token minted for a site works from that site on `/v1/events` (`202`) and on a collector
//! route (`200`), and is refused with its own `401` code when it has expired, comes from
//! another origin, was tampered with, or comes with no `Origin` at all; a `TOKEN_REQUIRED`
//! key is refused from browsers and still works from servers; a key limited by `KEY_ORIGINS` is
//! refused (`403`) from any other origin. Whatever is refused puts nothing on the queue.
//!
//! The branches of the check are tested natively (`spillway_shared::token`, `http::auth`);
//! this proves the Worker as built reads the settings, the `Origin` header and the clock as
//! those tests assume.

mod harness;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use harness::*;
use serde_json::json;
use spillway_shared::token::mint;
use spillway_support::{run_dir, worker_built};
use uuid::Uuid;

/// The token secret of key `web` (a test secret).
const SECRET: &str = "it-token-secret-web-0123456789abcdef";
const OTHER_ORIGIN: &str = "https://evil.example";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn token_for(origin: &str, expires: u64) -> String {
    mint("web", origin, expires, SECRET.as_bytes()).expect("mint")
}

fn events(s: &Stack, credential: &str, origin: Option<&str>, kind: &str) -> Result<Answer> {
    let bearer = format!("Bearer {credential}");
    let mut headers = vec![
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
    ];
    if let Some(o) = origin {
        headers.push(("origin", o));
    }
    s.post(
        "/v1/events",
        &headers,
        json!({"type": kind}).to_string().as_bytes(),
    )
}

/// Segment's `/v1/batch` as `@segment/analytics-next` sends it: the write key (here the token)
/// as the Basic user, the body `text/plain`.
fn segment(s: &Stack, credential: &str, origin: &str, kind: &str) -> Result<Answer> {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{credential}:"))
    );
    let body = json!({"batch": [{"type": "track", "event": kind, "anonymousId": "a-1",
        "messageId": format!("it-token-{kind}-{}", std::process::id())}]});
    s.post(
        "/v1/batch",
        &[
            ("content-type", "text/plain"),
            ("authorization", &basic),
            ("origin", origin),
        ],
        body.to_string().as_bytes(),
    )
}

fn expect(a: &Answer, status: u16, code: &str, what: &str) -> Result<()> {
    ensure!(
        a.status == status && a.code() == code,
        "{what}: want {status} {code}, got {} {}",
        a.status,
        a.text()
    );
    Ok(())
}

#[test]
fn tokens_under_wrangler_dev() -> Result<()> {
    if !worker_built("tokens_under_wrangler_dev") {
        return Ok(());
    }
    let dir = run_dir().join(format!("edge-tokens-{}", std::process::id()));
    let stack = Stack::start_with(
        &dir,
        Spill::Off,
        &[
            ("TOKEN_SECRETS", format!("web:{SECRET}")),
            ("TOKEN_MAX_TTL_SECS", "3600".to_owned()),
            ("TOKEN_REQUIRED", "web".to_owned()),
            ("KEY_ORIGINS", format!("burst={ORIGIN}")),
        ],
    )?;
    let result = scenarios(&stack);
    if result.is_ok() {
        drop(stack);
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.with_context(|| format!("wrangler log under {}", dir.display()))
}

fn scenarios(s: &Stack) -> Result<()> {
    let good = token_for(ORIGIN, now() + 600);
    let mut accepted: Vec<Uuid> = Vec::new();

    // From its origin: 202 with CORS for that origin, and a collector route's 200.
    let a = events(s, &good, Some(ORIGIN), "token_event")?;
    ensure!(
        a.status == 202,
        "token from its origin: {} {}",
        a.status,
        a.text()
    );
    ensure!(
        a.header("access-control-allow-origin") == Some(ORIGIN),
        "CORS: {:?}",
        a.headers
    );
    accepted.extend(a.ids());
    let a = segment(s, &good, ORIGIN, "token_segment")?;
    ensure!(
        a.status == 200,
        "token on /v1/batch: {} {}",
        a.status,
        a.text()
    );
    // As `?key=` (a beacon): the same token.
    let a = s.post(
        &format!("/v1/events?key={good}"),
        &[("content-type", "text/plain"), ("origin", ORIGIN)],
        br#"{"type":"token_beacon"}"#,
    )?;
    ensure!(a.status == 202, "token in ?key=: {} {}", a.status, a.text());
    accepted.extend(a.ids());

    // Refused, each with its code, on /v1/events and on the collector route.
    let expired = token_for(ORIGIN, now() - 600);
    expect(
        &events(s, &expired, Some(ORIGIN), "x")?,
        401,
        "token_expired",
        "expired",
    )?;
    expect(
        &segment(s, &expired, ORIGIN, "x")?,
        401,
        "token_expired",
        "expired, Segment",
    )?;
    expect(
        &events(s, &good, Some(OTHER_ORIGIN), "x")?,
        401,
        "token_origin",
        "another origin",
    )?;
    expect(
        &segment(s, &good, OTHER_ORIGIN, "x")?,
        401,
        "token_origin",
        "another origin, Segment",
    )?;
    expect(
        &events(s, &good, None, "x")?,
        401,
        "token_origin",
        "no Origin",
    )?;
    let expires = good.split('.').nth(3).context("expiry field")?;
    let later = (expires.parse::<u64>()? + 300).to_string();
    let tampered = good.replacen(&format!(".{expires}."), &format!(".{later}."), 1);
    expect(
        &events(s, &tampered, Some(ORIGIN), "x")?,
        401,
        "token_invalid",
        "tampered",
    )?;
    let long = token_for(ORIGIN, now() + 2 * 86_400);
    expect(
        &events(s, &long, Some(ORIGIN), "x")?,
        401,
        "token_lifetime",
        "too long",
    )?;

    // TOKEN_REQUIRED: web's raw key from a browser is refused; from a server it works.
    expect(
        &events(s, KEY_WEB, Some(ORIGIN), "x")?,
        401,
        "token_required",
        "raw key with Origin",
    )?;
    let a = events(s, KEY_WEB, None, "server_event")?;
    ensure!(
        a.status == 202,
        "raw key from a server: {} {}",
        a.status,
        a.text()
    );
    accepted.extend(a.ids());

    // KEY_ORIGINS: burst only from ORIGIN.
    expect(
        &events(s, KEY_BURST, Some(OTHER_ORIGIN), "x")?,
        403,
        "origin_not_allowed",
        "a limited key from another origin",
    )?;
    let a = events(s, KEY_BURST, Some(ORIGIN), "burst_event")?;
    ensure!(
        a.status == 202,
        "a limited key from its origin: {} {}",
        a.status,
        a.text()
    );
    accepted.extend(a.ids());

    // On the queue: exactly what was accepted (the Segment message too), under the right key
    // ids, and nothing of the refused requests.
    let seen = s.drain(&accepted, Duration::from_secs(30))?;
    let ids: HashSet<Uuid> = seen.iter().map(|e| e.id).collect();
    ensure!(
        accepted.iter().all(|id| ids.contains(id)),
        "missing from the queue: {accepted:?} vs {ids:?}"
    );
    let mut types: Vec<(String, String)> = seen
        .iter()
        .map(|e| (e.event_type.clone(), e.key_id.clone()))
        .collect();
    types.sort();
    // A late Segment message: drain once more for it if it has not come yet.
    if !types.iter().any(|(t, _)| t == "token_segment") {
        let more = s.drain(&[], Duration::from_secs(5))?;
        types.extend(
            more.iter()
                .map(|e| (e.event_type.clone(), e.key_id.clone())),
        );
        types.sort();
    }
    let want: Vec<(String, String)> = [
        ("burst_event", "burst"),
        ("server_event", "web"),
        ("token_beacon", "web"),
        ("token_event", "web"),
        ("token_segment", "web"),
    ]
    .iter()
    .map(|(t, k)| ((*t).to_owned(), (*k).to_owned()))
    .collect();
    ensure!(types == want, "on the queue: {types:?}");
    Ok(())
}
