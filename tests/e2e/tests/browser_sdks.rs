//! The browser SDKs, unchanged, in a real browser against the local pipeline: `posthog-js` and
//! `@segment/analytics-next` (pinned in package.json) loaded from their npm packages into a
//! page served on 127.0.0.1, run by headless Debian `chromium` through puppeteer-core
//! (`tests/e2e/sdk/browser.mjs`), pointed at `wrangler dev` by their host settings alone, through
//! the local SQS queue and the poller into PostgreSQL.
//!
//! Each load of a page sends a page view, an identify and custom events while the page stays,
//! then more events go out as the page unloads (posthog-js: `sendBeacon` with its `$pageleave`;
//! analytics-next: a keepalive fetch, or its batch flushed on `pagehide`). The page records
//! every id the SDK sends; every one is stored exactly once, and every request the browser saw
//! answered was answered `200`, as the SDK's own collector answers. posthog-js runs once per
//! body encoding it has (plain JSON, base64 forms, gzip-js); analytics-next once per delivery
//! strategy (standard: `/v1/p`, `/v1/i`, `/v1/t`; batching: `/v1/b`).
//!
//! Only the SQS buffer: how a body is read does not depend on the buffer (tests/e2e/tests/sdks.rs
//! runs the server SDKs on both). `cargo xtask test` installs `chromium` when missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spillway_e2e::{start, wait_until};
use spillway_shared::collector::message_id;
use spillway_shared::Source;
use spillway_support::{repo_root, BufferKind, Stack};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The browser: `$SPILLWAY_CHROMIUM`, else `chromium` or `chromium-browser` on the `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SPILLWAY_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// The worker, node, the npm packages and chromium must be there. `cargo xtask test` installs
/// them and sets `SPILLWAY_REQUIRE_WASM`: there, anything missing fails.
fn ready(test: &str) -> Option<PathBuf> {
    if !spillway_support::worker_built_for(test, BufferKind::Sqs) {
        return None;
    }
    let required = std::env::var_os("SPILLWAY_REQUIRE_WASM").is_some();
    let mut missing = Vec::new();
    for package in [
        "posthog-js",
        "@segment/analytics-next",
        "puppeteer-core",
        "esbuild",
    ] {
        if !repo_root().join("node_modules").join(package).exists() {
            missing.push(format!("node_modules/{package} (run `npm ci`)"));
        }
    }
    let browser = chromium();
    if browser.is_none() {
        missing.push("chromium (apt-get install chromium)".to_owned());
    }
    if missing.is_empty() {
        return browser;
    }
    assert!(!required, "{test}: missing {}", missing.join(", "));
    eprintln!("SKIPPED {test}: missing {}", missing.join(", "));
    None
}

/// One page load's outcome, as the driver saw it.
#[derive(Debug)]
struct Load {
    variant: String,
    /// Every id the SDK sent, and the event's name or message type.
    sent: Vec<(String, String)>,
    /// Every request to Spillway the browser reported: method, path and query, status, type.
    requests: Vec<Value>,
}

fn drive(chromium: &Path, cfg: Value) -> Vec<Load> {
    let mut cfg = cfg;
    cfg["chromium"] = json!(chromium.display().to_string());
    let started = Instant::now();
    let out = Command::new("node")
        .arg(repo_root().join("tests/e2e/sdk/browser.mjs"))
        .arg(cfg.to_string())
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("node runs the browser driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "driver failed: {stderr}{stdout}");
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("the driver printed no report: {stdout}{stderr}"));
    eprintln!(
        "[{}] {:.1} s: {}",
        cfg["sdk"],
        started.elapsed().as_secs_f64(),
        report["loads"]
    );
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    assert!(errors.is_empty(), "errors in the browser: {errors:?}");
    report["loads"]
        .as_array()
        .expect("loads")
        .iter()
        .map(|l| Load {
            variant: l["variant"].as_str().unwrap_or_default().to_owned(),
            sent: l["sent"]
                .as_array()
                .expect("sent")
                .iter()
                .map(|s| {
                    (
                        s["id"].as_str().expect("an id").to_owned(),
                        s["name"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            requests: l["requests"].as_array().cloned().unwrap_or_default(),
        })
        .collect()
}

/// Every POST to an event route was answered `200`, and at least one was made (a preflight is
/// answered `204`, as on every route).
fn answered_ok(load: &Load, route: impl Fn(&str) -> bool) {
    let to_routes: Vec<&Value> = load
        .requests
        .iter()
        .filter(|r| r["method"] == "POST" && route(r["path"].as_str().unwrap_or_default()))
        .collect();
    assert!(
        !to_routes.is_empty(),
        "{}: {:?}",
        load.variant,
        load.requests
    );
    for r in &to_routes {
        assert_eq!(r["status"], 200, "{}: {r}", load.variant);
    }
}

/// Every row id is stored exactly once, and the run has no other row.
fn stored_exactly_once(stack: &Stack, run: &str, ids: &BTreeSet<String>) {
    let list = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let stored = || -> u64 {
        stack
            .pg
            .psql(&format!(
                "select count(*) from events where id::text in ({list})"
            ))
            .expect("psql")
            .parse()
            .expect("a count")
    };
    let _ = wait_until("every event stored", Duration::from_secs(90), || {
        stored() >= ids.len() as u64
    });
    wait_until("the buffer drained", Duration::from_secs(90), || {
        stack.drained()
    })
    .expect("the consumer drains the buffer");
    assert_eq!(stored(), ids.len() as u64, "rows of the sent ids");
    let of_run: u64 = stack
        .pg
        .psql(&format!(
            "select count(*) from events where position('{run}' in data::text) > 0"
        ))
        .expect("psql")
        .parse()
        .expect("a count");
    assert_eq!(of_run, ids.len() as u64, "rows of {run}: each event once");
}

fn run_token(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

fn host(stack: &Stack) -> String {
    stack
        .env
        .ingest_url
        .trim_end_matches("/v1/events")
        .to_owned()
}

#[test]
fn posthog_js_in_chromium_every_event_is_stored_once() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(chromium) = ready("posthog_js_in_chromium") else {
        return;
    };
    let stack = start("br-posthog", |c| c.buffer = BufferKind::Sqs);
    let run = run_token("phjs");
    let loads = drive(
        &chromium,
        json!({
            "sdk": "posthog",
            "host": host(&stack),
            "key": stack.env.ingest_key,
            "run": run,
            "count": 5,
            "more": 3,
            "loads": [
                {"variant": "json", "compression": null},
                {"variant": "base64", "compression": "base64"},
                {"variant": "gzip-js", "compression": "gzip-js"},
            ],
        }),
    );
    assert_eq!(loads.len(), 3);
    let mut ids = BTreeSet::new();
    for load in &loads {
        let names: BTreeSet<&str> = load.sent.iter().map(|(_, n)| n.as_str()).collect();
        for name in [
            "$pageview",
            "$identify",
            "e2e browser order",
            "e2e browser before unload",
            "$pageleave",
        ] {
            assert!(
                names.contains(name),
                "{}: {name} in {names:?}",
                load.variant
            );
        }
        // The SDK's own request: its route and the encoding of this load.
        answered_ok(load, |p| p.starts_with("/e/"));
        // How this load's bodies went out: posthog-js 1.449 sends gzip as `text/plain` with no
        // query hint (read by its magic bytes), base64 as a form with `?compression=base64`.
        let content_type = match load.variant.as_str() {
            "json" => "application/json",
            "base64" => "application/x-www-form-urlencoded",
            _ => "text/plain",
        };
        let posts: Vec<&Value> = load
            .requests
            .iter()
            .filter(|r| r["method"] == "POST")
            .collect();
        assert!(
            posts.iter().all(|r| r["contentType"] == content_type),
            "{}: {posts:?}",
            load.variant
        );
        if load.variant == "base64" {
            assert!(
                posts.iter().all(|r| r["path"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("compression=base64")),
                "{posts:?}"
            );
        }
        for (id, _) in &load.sent {
            // posthog-js gives every event a UUID, kept as the row id.
            assert!(ids.insert(id.to_lowercase()), "{id} sent twice");
        }
    }
    stored_exactly_once(&stack, &run, &ids);
    // The unload's events are stored: what the beacon carried.
    let unload: u64 = stack
        .pg
        .psql(&format!(
            "select count(*) from events where position('{run}' in data::text) > 0
               and type in ('$pageleave', 'e2e browser before unload')"
        ))
        .expect("psql")
        .parse()
        .expect("a count");
    assert_eq!(unload, 3 * (1 + 3), "each load's $pageleave and 3 events");
}

#[test]
fn segment_analytics_next_in_chromium_every_message_is_stored_once() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(chromium) = ready("segment_analytics_next_in_chromium") else {
        return;
    };
    let stack = start("br-segment", |c| c.buffer = BufferKind::Sqs);
    let run = run_token("ajs");
    let loads = drive(
        &chromium,
        json!({
            "sdk": "segment",
            "host": host(&stack),
            "key": stack.env.ingest_key,
            "run": run,
            "count": 5,
            "more": 3,
            "loads": [
                {"variant": "standard", "strategy": "standard"},
                // Held until the page is hidden: the whole batch goes out as it unloads.
                {"variant": "batching", "strategy": "batching", "unloadOnly": true},
            ],
        }),
    );
    assert_eq!(loads.len(), 2);
    let mut ids = BTreeSet::new();
    for load in &loads {
        let types: BTreeSet<&str> = load.sent.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            types,
            BTreeSet::from(["page", "identify", "track"]),
            "{}",
            load.variant
        );
        assert_eq!(load.sent.len(), 2 + 5 + 3, "{}", load.variant);
        for (message_id_text, _) in &load.sent {
            // analytics-next's messageIds are no UUIDs: the row id derives from key and id.
            let id = message_id(Source::Segment, "dev", message_id_text).to_string();
            assert!(ids.insert(id), "{message_id_text} sent twice");
        }
    }
    // Standard delivery: one request per call, to the call's short path.
    answered_ok(&loads[0], |p| {
        ["/v1/p", "/v1/i", "/v1/t"].iter().any(|r| p.starts_with(r))
    });
    stored_exactly_once(&stack, &run, &ids);
    // The batch flushed on `pagehide` carried every message of the batching load.
    let batched: u64 = stack
        .pg
        .psql(&format!(
            "select count(*) from events where position('{run}' in data::text) > 0
               and coalesce(data->'properties'->>'strategy', data->'traits'->>'strategy')
                   = 'batching'"
        ))
        .expect("psql")
        .parse()
        .expect("a count");
    assert_eq!(batched, 2 + 5 + 3, "the batching load's messages");
}
