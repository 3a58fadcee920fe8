//! The real analytics server SDKs against the local pipeline: `@segment/analytics-node`,
//! `posthog-node` and RudderStack's `@rudderstack/rudder-sdk-node` (Segment's protocol, the write
//! key as the Basic user), pinned in package.json, driven by the node scripts in
//! `tests/e2e/sdk/` and pointed at `wrangler dev` by their host option alone, through the
//! buffer (the local SQS queue, or the local Kinesis stream) and the poller into PostgreSQL. A
//! posthog-node historical migration (events two years old) is stored too. The browser SDKs are
//! in tests/e2e/tests/browser_sdks.rs.
//!
//! Each run's messages carry a token of their own, so a test counts exactly the rows of a run:
//! every message stored once, a resend adds nothing, a wrong key stores nothing (and the SDK
//! says so), and a stalled buffer makes the SDK retry until every message is stored once. Each
//! test runs once per buffer (`sqs::<test>`, `kinesis::<test>`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use spillway_e2e::{start, wait_until};
use spillway_shared::collector::message_id;
use spillway_shared::Source;
use spillway_support::{repo_root, BufferKind, FaultMode, Stack, StackConfig};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One `#[test]` per test body and buffer: `sqs::<name>` and `kinesis::<name>`, run one at a
/// time.
macro_rules! per_buffer {
    ($($body:ident),* $(,)?) => {
        mod sqs {
            $(
                #[test]
                fn $body() {
                    super::run(stringify!($body), spillway_support::BufferKind::Sqs, super::$body);
                }
            )*
        }
        mod kinesis {
            $(
                #[test]
                fn $body() {
                    super::run(stringify!($body), spillway_support::BufferKind::Kinesis, super::$body);
                }
            )*
        }
    };
}

per_buffer!(
    segment_sdk_delivers_every_message_once,
    posthog_sdk_delivers_every_event_once,
    stalled_buffer_sdks_retry_and_every_event_is_stored_once,
    rudderstack_sdk_delivers_every_message_once,
    posthog_historical_migration_is_stored,
);

fn run(test: &str, buffer: BufferKind, body: fn(BufferKind)) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !ready(&format!("{buffer}::{test}"), buffer) {
        return;
    }
    body(buffer);
}

/// A stack with `buffer` (`name` short: it names the stack's directory, which holds
/// PostgreSQL's socket).
fn start_with(name: &str, buffer: BufferKind, tweak: impl FnOnce(&mut StackConfig)) -> Stack {
    let stack = start(&format!("{name}-{buffer}"), |c| {
        c.buffer = buffer;
        tweak(c);
    });
    assert_eq!(stack.env.buffer, buffer);
    stack
}

/// The worker must be built and node with the SDKs installed. `cargo xtask test` builds the
/// worker, runs `npm ci` and sets `SPILLWAY_REQUIRE_WASM`: there, anything missing fails.
fn ready(test: &str, buffer: BufferKind) -> bool {
    if !spillway_support::worker_built_for(test, buffer) {
        return false;
    }
    let required = std::env::var_os("SPILLWAY_REQUIRE_WASM").is_some();
    let mut missing = Vec::new();
    if Command::new("node")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        missing.push("node".to_owned());
    }
    for sdk in [
        "@segment/analytics-node",
        "posthog-node",
        "@rudderstack/rudder-sdk-node",
    ] {
        if !repo_root().join("node_modules").join(sdk).exists() {
            missing.push(format!("node_modules/{sdk} (run `npm ci`)"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(!required, "missing: {}", missing.join(", "));
    eprintln!("SKIPPED {test}: missing {}", missing.join(", "));
    false
}

/// The edge's origin: what each SDK's `host` option is set to.
fn host(stack: &Stack) -> String {
    stack
        .env
        .ingest_url
        .trim_end_matches("/v1/events")
        .to_owned()
}

fn script(sdk: &str) -> PathBuf {
    repo_root().join(format!("tests/e2e/sdk/{sdk}.mjs"))
}

/// A token naming one run; every message of the run carries it.
fn run_token(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

/// What a driver printed when it finished.
#[derive(Debug)]
struct Report {
    /// Every HTTP status the SDK got, in order (or `network: ...`).
    statuses: Vec<Value>,
    /// What the SDK reported through its `error` event.
    errors: Vec<String>,
    raw: Value,
}

impl Report {
    fn saw(&self, status: u64) -> bool {
        self.statuses.iter().any(|s| s.as_u64() == Some(status))
    }

    /// Whether every request body went out with this `Content-Encoding`.
    fn all_sent(&self, encoding: &str) -> bool {
        let sent = self.raw["encodings"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        !sent.is_empty() && sent.iter().all(|e| e == encoding)
    }
}

fn spawn(sdk: &str, cfg: &Value) -> Result<Child> {
    Command::new("node")
        .arg(script(sdk))
        .arg(cfg.to_string())
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting node {}", script(sdk).display()))
}

/// Waits for a driver to finish (killing it at the deadline) and reads its report.
fn finish(sdk: &str, mut child: Child, timeout: Duration) -> Result<Report> {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!(
                "{sdk} driver did not finish within {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{sdk} driver failed ({}): {stderr}{stdout}", out.status);
    }
    let raw: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("{sdk} driver printed no report: {stdout}{stderr}"))?;
    Ok(Report {
        statuses: raw["statuses"].as_array().cloned().unwrap_or_default(),
        errors: raw["errors"]
            .as_array()
            .map(|a| a.iter().map(|e| e.to_string()).collect())
            .unwrap_or_default(),
        raw,
    })
}

fn drive(sdk: &str, cfg: Value) -> Report {
    let started = Instant::now();
    let child = spawn(sdk, &cfg).expect("driver starts");
    let report = finish(sdk, child, Duration::from_secs(180)).expect("driver report");
    eprintln!(
        "[{sdk}] {} messages of {} sent in {:.1} s, {} requests",
        cfg["count"],
        cfg["run"],
        started.elapsed().as_secs_f64(),
        report.statuses.len()
    );
    report
}

/// Waits until the buffer is drained (whatever the SDK was answered `200` for is then
/// stored: [`Stack::drained`]), and counts the rows of `run`.
fn rows_after_drain(stack: &Stack, run: &str) -> u64 {
    wait_until("the buffer drained", Duration::from_secs(90), || {
        stack.drained()
    })
    .expect("the consumer drains the buffer");
    count(stack, run)
}

fn count(stack: &Stack, run: &str) -> u64 {
    stack
        .pg
        .psql(&format!(
            "select count(*) from events where position('{run}' in data::text) > 0"
        ))
        .expect("psql")
        .parse()
        .expect("a count")
}

/// Waits until the rows of `run` reach `n`, then checks that no more arrive once the queue
/// is drained.
fn assert_stored_once(stack: &Stack, run: &str, n: u64) {
    let _ = wait_until("every message stored", Duration::from_secs(90), || {
        count(stack, run) >= n
    });
    assert_eq!(rows_after_drain(stack, run), n, "rows of {run}");
    let distinct: u64 = stack
        .pg
        .psql(&format!(
            "select count(distinct coalesce(data->'properties'->>'i', data->'traits'->>'i',
                                             data->'context'->'traits'->>'i'))
             from events where position('{run}' in data::text) > 0"
        ))
        .expect("psql")
        .parse()
        .expect("a count");
    assert_eq!(distinct, n, "each message of {run} is its own row");
    // The SDKs put the key in their bodies (`writeKey`, `api_key`, `properties.token`): no
    // row holds it, in any column.
    let holding = stack
        .pg
        .psql(&format!(
            "select count(*) from events e where e::text like '%{}%'",
            stack.env.ingest_key
        ))
        .expect("psql");
    assert_eq!(holding, "0", "rows of {run} holding the ingest key");
}

fn base(stack: &Stack, run: &str, count: usize) -> Value {
    json!({
        "host": host(stack),
        "key": stack.env.ingest_key,
        "run": run,
        "count": count,
    })
}

fn segment_sdk_delivers_every_message_once(buffer: BufferKind) {
    let stack = start_with("sdk-segment", buffer, |_| {});
    const N: usize = 240;

    // Fixed messageIds (not UUIDs: the row id derives from key id and messageId), plain JSON.
    let run = run_token("seg-fixed");
    let mut cfg = base(&stack, &run, N);
    cfg["messageIds"] = json!(true);
    let first = drive("segment", cfg.clone());
    assert!(first.errors.is_empty(), "SDK errors: {:?}", first.errors);
    assert_eq!(first.raw["ok"], N, "{:?}", first.raw);
    // A slow moment of the local buffer may cost a 503 and a retry; the outcome is what counts.
    assert!(first.saw(200), "{:?}", first.statuses);
    assert!(first.all_sent("identity"), "{:?}", first.raw["encodings"]);
    assert_stored_once(&stack, &run, N as u64);

    // The mapping, on one track and one identify.
    let row = stack
        .pg
        .psql(&format!(
            "select id, type, source, key_id, occurred_at = (data->>'timestamp')::timestamptz,
                    data->'properties'->>'i'
             from events where data->>'messageId' = '{run}-msg-0'"
        ))
        .expect("psql");
    let expected_id = message_id(Source::Segment, "dev", &format!("{run}-msg-0"));
    assert_eq!(
        row,
        format!("{expected_id}|E2E Order Completed|segment|dev|t|0")
    );
    let row = stack
        .pg
        .psql(&format!(
            "select type, data->'traits'->>'i' from events where data->>'messageId' = '{run}-msg-2'"
        ))
        .expect("psql");
    assert_eq!(row, "identify|2");

    // The same messages again (new sentAt, same messageIds): accepted, and no new row.
    let resend = drive("segment", cfg);
    assert!(resend.errors.is_empty(), "SDK errors: {:?}", resend.errors);
    assert_eq!(resend.raw["ok"], N);
    assert_eq!(
        rows_after_drain(&stack, &run),
        N as u64,
        "a resend adds no row"
    );

    // The SDK's own messageIds, gzip-compressed bodies.
    let run = run_token("seg-gzip");
    let mut cfg = base(&stack, &run, N);
    cfg["gzipBody"] = json!(true);
    let zipped = drive("segment", cfg);
    assert!(zipped.errors.is_empty(), "SDK errors: {:?}", zipped.errors);
    assert_eq!(zipped.raw["ok"], N);
    assert!(zipped.all_sent("gzip"), "{:?}", zipped.raw["encodings"]);
    assert_stored_once(&stack, &run, N as u64);

    // A wrong key: the SDK reports every message failed, and nothing is stored.
    let run = run_token("seg-wrong");
    let mut cfg = base(&stack, &run, 20);
    cfg["key"] = json!("not-the-key-of-this-stack");
    let wrong = drive("segment", cfg);
    assert!(wrong.saw(401), "{:?}", wrong.statuses);
    assert_eq!(wrong.raw["ok"], 0);
    assert_eq!(wrong.raw["failed"], 20);
    assert!(!wrong.errors.is_empty(), "the SDK reports the refusal");
    assert_eq!(rows_after_drain(&stack, &run), 0);
}

fn posthog_sdk_delivers_every_event_once(buffer: BufferKind) {
    let stack = start_with("sdk-posthog", buffer, |_| {});
    const N: usize = 240;

    // Fixed uuids, gzip (posthog-node compresses by default).
    let run = run_token("ph-fixed");
    let mut cfg = base(&stack, &run, N);
    cfg["uuids"] = json!(true);
    cfg["gzip"] = json!(true);
    let first = drive("posthog", cfg.clone());
    assert!(first.errors.is_empty(), "SDK errors: {:?}", first.errors);
    assert!(first.saw(200), "{:?}", first.statuses);
    assert!(first.all_sent("gzip"), "{:?}", first.raw["encodings"]);
    assert_stored_once(&stack, &run, N as u64);
    let row = stack
        .pg
        .psql(&format!(
            "select id = (data->>'uuid')::uuid, type, source, key_id,
                    occurred_at = (data->>'timestamp')::timestamptz
             from events where position('{run}' in data::text) > 0
               and data->'properties'->>'i' = '3'"
        ))
        .expect("psql");
    assert_eq!(row, "t|$identify|posthog|dev|t");

    // The same events again: no new row.
    let resend = drive("posthog", cfg);
    assert!(resend.errors.is_empty(), "SDK errors: {:?}", resend.errors);
    assert!(resend.saw(200));
    assert_eq!(
        rows_after_drain(&stack, &run),
        N as u64,
        "a resend adds no row"
    );

    // The SDK's own uuids, uncompressed.
    let run = run_token("ph-plain");
    let cfg = base(&stack, &run, N);
    let plain = drive("posthog", cfg);
    assert!(plain.errors.is_empty(), "SDK errors: {:?}", plain.errors);
    assert!(plain.all_sent("identity"), "{:?}", plain.raw["encodings"]);
    assert_stored_once(&stack, &run, N as u64);

    // A wrong key: the SDK reports it, nothing is stored.
    let run = run_token("ph-wrong");
    let mut cfg = base(&stack, &run, 20);
    cfg["key"] = json!("phc_not_the_key_of_this_stack");
    let wrong = drive("posthog", cfg);
    assert!(wrong.saw(401), "{:?}", wrong.statuses);
    assert!(!wrong.errors.is_empty(), "the SDK reports the refusal");
    assert_eq!(rows_after_drain(&stack, &run), 0);
}

fn stalled_buffer_sdks_retry_and_every_event_is_stored_once(buffer: BufferKind) {
    let stack = start_with("sdk-stall", buffer, |c| {
        // The fault proxy sits between the edge and its buffer, SQS or Kinesis.
        c.edge_sqs_proxy = true;
        // Without the spill queue: this is the 503 path (tests/e2e/tests/spill.rs has the other).
        c.spill = false;
        c.edge_vars = vec![
            ("SQS_DEADLINE_MS".into(), "1500".into()),
            ("RETRY_AFTER_SECS".into(), "1".into()),
        ];
    });
    let proxy = stack.proxy.as_ref().expect("proxy");
    const N: usize = 60;
    for sdk in ["segment", "posthog"] {
        let run = run_token(&format!("{sdk}-stall"));
        let status_file = stack.config.dir.join(format!("{run}.statuses"));
        let mut cfg = base(&stack, &run, N);
        cfg["statusFile"] = json!(status_file.display().to_string());
        // Enough retries to outlast the stall on a loaded machine; the SDKs' documented options.
        cfg["maxRetries"] = json!(20);
        cfg["retries"] = json!(20);
        cfg["retryDelayMs"] = json!(500);
        cfg["gzip"] = json!(true);

        proxy.set_mode(FaultMode::Stall);
        let child = spawn(sdk, &cfg).expect("driver starts");
        // The stall lasts until the SDK has been answered a retryable 503 at least twice.
        wait_until(
            &format!("{sdk} answered 503 while the buffer stalls"),
            Duration::from_secs(90),
            || {
                std::fs::read_to_string(&status_file)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| *l == "503")
                    .count()
                    >= 2
            },
        )
        .expect("the edge answers 503 while the buffer does not");
        assert!(
            proxy.faulted_in(FaultMode::Stall) > 0,
            "the proxy stalled the buffer"
        );
        proxy.set_mode(FaultMode::Pass);

        let report = finish(sdk, child, Duration::from_secs(180)).expect("driver report");
        eprintln!(
            "[{sdk}] statuses while and after the stall: {:?}",
            report.statuses
        );
        assert!(
            report.errors.is_empty(),
            "{sdk} errors: {:?}",
            report.errors
        );
        assert!(report.saw(503), "{:?}", report.statuses);
        assert_eq!(
            report.statuses.last(),
            Some(&json!(200)),
            "{:?}",
            report.statuses
        );
        if sdk == "segment" {
            assert_eq!(report.raw["ok"], N);
        }
        assert_stored_once(&stack, &run, N as u64);
    }
}

fn rudderstack_sdk_delivers_every_message_once(buffer: BufferKind) {
    let stack = start_with("sdk-rudder", buffer, |_| {});
    const N: usize = 70;
    let run = run_token("rudder");
    let report = drive("rudderstack", base(&stack, &run, N));
    assert!(report.errors.is_empty(), "SDK errors: {:?}", report.errors);
    assert_eq!(report.raw["ok"], N, "{:?}", report.raw);
    assert_eq!(report.raw["failed"], 0, "{:?}", report.raw);
    assert_stored_once(&stack, &run, N as u64);
    // Every message type, each under the row id its messageId names.
    let rows = stack
        .pg
        .psql(&format!(
            "select string_agg(distinct type collate \"C\", ',' order by type collate \"C\"),
                    count(distinct id),
                    bool_and(source = 'segment' and key_id = 'dev')
             from events where position('{run}' in data::text) > 0"
        ))
        .expect("psql");
    assert_eq!(
        rows,
        format!("E2E Rudder Order,alias,group,identify,page,screen|{N}|t")
    );
    let one = stack
        .pg
        .psql(&format!(
            "select id, data->>'messageId' from events
             where position('{run}' in data::text) > 0 limit 1"
        ))
        .expect("psql");
    let (id, message) = one.split_once('|').expect("two columns");
    // RudderStack's messageIds are UUIDs: kept as the row ids.
    assert_eq!(id, message, "the row id is the SDK's messageId");
}

fn posthog_historical_migration_is_stored(buffer: BufferKind) {
    let stack = start_with("sdk-ph-hist", buffer, |_| {});
    const N: usize = 40;
    // Two years back: past the live window (365 days), which refuses such events.
    let run = run_token("ph-hist");
    let mut cfg = base(&stack, &run, N);
    cfg["historical"] = json!(true);
    cfg["ageDays"] = json!(730);
    cfg["gzip"] = json!(true);
    let report = drive("posthog", cfg);
    assert!(report.errors.is_empty(), "SDK errors: {:?}", report.errors);
    assert!(report.saw(200), "{:?}", report.statuses);
    assert_stored_once(&stack, &run, N as u64);
    let old = stack
        .pg
        .psql(&format!(
            "select count(*) from events where position('{run}' in data::text) > 0
               and occurred_at < now() - interval '729 days'
               and occurred_at = (data->>'timestamp')::timestamptz"
        ))
        .expect("psql");
    assert_eq!(old, N.to_string(), "every event keeps its old time");

    // The same events without the mark are refused, and the SDK says so.
    let run = run_token("ph-live");
    let mut cfg = base(&stack, &run, 10);
    cfg["ageDays"] = json!(730);
    cfg["retries"] = json!(0);
    let live = drive("posthog", cfg);
    assert!(live.saw(400), "{:?}", live.statuses);
    assert!(!live.errors.is_empty(), "the SDK reports the refusal");
    assert_eq!(rows_after_drain(&stack, &run), 0);
}
