//! The database password never leaves the consumer through what it says: the JSON log lines
//! (recorded here with the production format, at TRACE level, including what the PostgreSQL
//! driver logs through `log`), the EMF metric line, configuration errors (what `main` prints
//! before exiting) and `Debug` output.
//!
//! Runs the real handler over the real `PgStore` against a real PostgreSQL whose application
//! role needs a SCRAM password: once with the right password (events stored), once with a
//! wrong one (the database refuses the login), once with the database unreachable. The
//! passwords are distinctive, and each case has a positive control showing that the recorded
//! text is the real thing (the failure is reported, the rejected record is named).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use spillway_consumer::config::{ConsumerConfig, DatabaseUrl, DatabaseUrlSource, DbConfig};
use spillway_consumer::handler::{handle, Deps, Outcome, SystemClock};
use spillway_consumer::pg::PgStore;
use spillway_support::{free_port, Postgres, Secrets};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::EnvFilter;

const ROLE: &str = "spillway_app";
const PASSWORD: &str = "pg-Pa55w0rd-7c4e91d2b8a6f3e5";
const WRONG_PASSWORD: &str = "pg-Wr0ng-0a9b8c7d6e5f4a3b";

/// The tests record logs through thread-local subscribers; run in parallel, tracing's
/// per-call-site interest cache let one test miss a line of its own now and then (seen in CI:
/// no "connected to PostgreSQL"). They run one at a time, each on its own runtime.
fn one_at_a_time<F: std::future::Future>(test: F) -> F::Output {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(test)
}

fn secrets() -> Secrets {
    Secrets::new([
        PASSWORD,
        "7c4e91d2b8a6f3e5",
        WRONG_PASSWORD,
        "0a9b8c7d6e5f4a3b",
    ])
}

/// A log sink: the production JSON format (see `telemetry::init`), every level, into memory.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<u8>>>);

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Recorder {
    /// Installs itself for this thread (the tests run on a current-thread runtime, so the
    /// connection task spawned by the store logs here too). Also captures `log` records.
    fn install(&self) -> DefaultGuard {
        use tracing_subscriber::util::SubscriberInitExt;
        let sink = self.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(EnvFilter::new("trace"))
            .with_current_span(true)
            .with_span_list(false)
            .with_target(false)
            .with_writer(move || sink.clone())
            .finish()
            .set_default()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

/// Everything the consumer said about one invocation: log lines and the EMF line.
fn said(recorder: &Recorder, outcome: &Outcome) -> String {
    format!("{}\n{}", recorder.text(), outcome.emf)
}

fn url(port: u16, password: &str) -> String {
    format!("postgres://{ROLE}:{password}@127.0.0.1:{port}/postgres?sslmode=disable")
}

fn deps_for(url: &str) -> Deps<PgStore> {
    let lookup = |k: &str| match k {
        "DATABASE_URL" => Some(url.to_owned()),
        "DB_CONNECT_TIMEOUT_MS" => Some("2000".to_owned()),
        _ => None,
    };
    let config = ConsumerConfig::from_lookup(&lookup).expect("config");
    secrets().assert_absent("ConsumerConfig (Debug)", &format!("{config:?}"));
    let deps = Deps {
        store: PgStore::new(&config.db).expect("store"),
        clock: SystemClock,
        metrics_namespace: config.metrics_namespace,
        metrics_service: config.metrics_service,
        keys: spillway_consumer::keys::testing::test_keyring(),
        dead_letters: spillway_consumer::dead_letter::NoDeadLetters,
    };
    secrets().assert_absent("Deps (Debug)", &format!("{deps:?}"));
    deps
}

/// A PostgreSQL where `spillway_app` must log in with its SCRAM password (the superuser used
/// by the helpers keeps trust).
async fn pg_with_password() -> Postgres {
    let pg = migrated_pg().await;
    pg.psql(&format!(
        "SET password_encryption = 'scram-sha-256';
         CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}';
         GRANT SELECT, INSERT ON events TO {ROLE};"
    ))
    .expect("create role");
    let hba = std::path::PathBuf::from(pg.psql("SHOW hba_file").expect("hba_file"));
    let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(
        &hba,
        format!("host all {ROLE} 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .expect("write pg_hba.conf");
    pg.psql("SELECT pg_reload_conf()").expect("reload");
    pg
}

fn batch() -> aws_lambda_events::event::sqs::SqsEvent {
    sqs_event(vec![
        record("msg-good", &body(&[event(1), event(2)])),
        record("msg-poison", "not an envelope"),
        record("msg-refused", &body(&[nul_event(3)])),
    ])
}

#[test]
fn the_checker_sees_a_password_when_there_is_one() {
    assert_eq!(
        secrets().found_in(&url(5432, PASSWORD)),
        [PASSWORD, "7c4e91d2b8a6f3e5"]
    );
    assert!(secrets()
        .found_in("postgres://spillway_app@127.0.0.1/postgres")
        .is_empty());
}

#[test]
fn a_batch_stored_with_a_password_logs_no_password() {
    one_at_a_time(a_batch_stored_with_a_password_logs_no_password_body())
}

async fn a_batch_stored_with_a_password_logs_no_password_body() {
    let pg = pg_with_password().await;
    let recorder = Recorder::default();
    let _guard = recorder.install();
    let deps = deps_for(&url(pg.port(), PASSWORD));
    let outcome = handle(&deps, &batch(), "req-secrets-ok").await;

    // Positive controls: the password worked (rows are stored as the role), and the
    // recorder holds the invocation's lines, naming the rejected records.
    assert_eq!(failed_ids(&outcome), ["msg-poison", "msg-refused"]);
    assert_eq!(outcome.metrics.events_stored, 2);
    assert_eq!(
        pg.psql("SELECT count(*) FROM events WHERE id = '00000000-0000-0000-0000-000000000001'")
            .expect("psql"),
        "1"
    );
    let text = said(&recorder, &outcome);
    for expected in [
        "req-secrets-ok",
        "msg-poison",
        "msg-refused",
        "batch handled",
        "connected to PostgreSQL",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    assert!(outcome.emf.contains("\"RequestId\":\"req-secrets-ok\""));
    secrets().assert_absent("log and EMF lines", &text);
}

#[test]
fn a_wrong_password_is_reported_without_either_password() {
    one_at_a_time(a_wrong_password_is_reported_without_either_password_body())
}

async fn a_wrong_password_is_reported_without_either_password_body() {
    let pg = pg_with_password().await;
    let recorder = Recorder::default();
    let _guard = recorder.install();
    let deps = deps_for(&url(pg.port(), WRONG_PASSWORD));
    let outcome = handle(&deps, &batch(), "req-secrets-wrong").await;

    // Positive control: the login really failed, and that is what the log says.
    assert_eq!(
        failed_ids(&outcome),
        ["msg-good", "msg-poison", "msg-refused"]
    );
    assert_eq!(outcome.metrics.events_stored, 0);
    let text = said(&recorder, &outcome);
    assert!(
        text.contains("password authentication failed"),
        "the failure is logged:\n{text}"
    );
    assert!(text.contains(ROLE), "it names the role:\n{text}");
    secrets().assert_absent("log and EMF lines", &text);
}

#[test]
fn an_unreachable_database_is_reported_without_the_password() {
    one_at_a_time(an_unreachable_database_is_reported_without_the_password_body())
}

async fn an_unreachable_database_is_reported_without_the_password_body() {
    let port = free_port().expect("port");
    let recorder = Recorder::default();
    let _guard = recorder.install();
    let deps = deps_for(&url(port, PASSWORD));
    let outcome = handle(&deps, &batch(), "req-secrets-down").await;
    assert_eq!(outcome.metrics.records_failed, 3);
    let text = said(&recorder, &outcome);
    assert!(
        text.contains("batch not stored"),
        "the outage is logged:\n{text}"
    );
    secrets().assert_absent("log and EMF lines", &text);
}

#[test]
fn configuration_errors_never_quote_the_password() {
    // What `main` prints when the settings are unusable: the error's Display (and its Debug,
    // which `anyhow` shows with `{:?}`).
    let cases = [
        format!("postgres://{ROLE}:{PASSWORD}@127.0.0.1:notaport/postgres"),
        format!("postgres://{ROLE}:{PASSWORD}@/postgres"),
        format!("postgres://{ROLE}:{PASSWORD}@127.0.0.1/postgres?sslmode=sometimes"),
        format!("postgres://{ROLE}:{PASSWORD}@127.0.0.1/postgres?passwrd={PASSWORD}"),
        format!("postgres://{ROLE}:{PASSWORD}%zz@127.0.0.1/postgres"),
        format!("host=127.0.0.1 user={ROLE} password={PASSWORD} sslmode=sometimes"),
        format!("host=127.0.0.1 user={ROLE} password='{PASSWORD}"),
        format!("user={ROLE} password={PASSWORD}"),
        format!("{ROLE}:{PASSWORD}@127.0.0.1:5432/postgres"),
    ];
    let no_settings = |_: &str| None;
    for raw in &cases {
        // From the environment, and as the SecretString of DATABASE_URL_SECRET_ARN's secret.
        for url in [
            DatabaseUrl::Env(raw.clone()),
            DatabaseUrl::Secret(raw.clone()),
        ] {
            secrets().assert_absent(&format!("{url:?}"), &format!("{url:?}"));
            match DbConfig::from_url(&no_settings, &url) {
                Err(e) => {
                    // Positive control: the error names where the URL came from.
                    assert!(e.to_string().contains(url.origin()), "{raw}: {e}");
                    secrets().assert_absent(&format!("error for {raw}"), &e.to_string());
                    secrets().assert_absent(&format!("error for {raw} (Debug)"), &format!("{e:?}"));
                }
                Ok(config) => secrets().assert_absent(
                    &format!("config from {raw} (Debug)"),
                    &format!("{config:?}"),
                ),
            }
        }
        let env = |k: &str| (k == "DATABASE_URL").then(|| raw.clone());
        if let Ok(source) = DatabaseUrlSource::from_lookup(&env) {
            secrets().assert_absent("DatabaseUrlSource (Debug)", &format!("{source:?}"));
        }
    }
    // A setting next to DATABASE_URL that is wrong must not drag the URL into its error.
    let url = url(5432, PASSWORD);
    let lookup = |k: &str| match k {
        "DATABASE_URL" => Some(url.clone()),
        "DB_STATEMENT_TIMEOUT_MS" => Some("soon".to_owned()),
        _ => None,
    };
    let e = ConsumerConfig::from_lookup(&lookup).expect_err("bad timeout");
    assert!(e.to_string().contains("DB_STATEMENT_TIMEOUT_MS"), "{e}");
    secrets().assert_absent("timeout error", &e.to_string());
}
