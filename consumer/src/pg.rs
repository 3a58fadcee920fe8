//! The PostgreSQL adapter: one lazily opened connection, reused across invocations.
//!
//! # Connections
//! A Lambda execution environment handles one invocation at a time and keeps this store (and
//! its connection) between invocations, so the number of database connections equals the
//! number of concurrent environments, which the SQS event source mapping caps with
//! `ScalingConfig.MaximumConcurrency`. **Database connections = `MaximumConcurrency`**: size
//! `max_connections` (or the RDS Proxy pool) for it, plus room for migrations and people. The
//! local poller keeps the same rule: one store per concurrent worker.
//!
//! The connection is opened on the first write, not at start-up, so an environment that starts
//! while the database is down still answers (with every record failed). When a write finds the
//! connection closed or broken, the connection is dropped and the next write opens a new one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{pem::PemObject, CertificateDer};
use spillway_shared::{EdgeInfo, RawJson};
use thiserror::Error;
use tokio::sync::Mutex;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::Json;
use tokio_postgres::{Client, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::DbConfig;
use crate::store::{classify_sqlstate, EventStore, FailureKind, Row, StoreError, WriteCounts};

/// The one bulk statement: every row of the invocation as parallel arrays, unnested
/// server-side. One round trip and one plan whatever the batch size; duplicates are skipped by
/// the primary key, `(key_id, id)`: an id is unique within its ingest key, so two keys sending
/// the same client id are two events (migration 0003). `event_time` (migration 0005) is filled
/// for every row: the envelope's, else `occurred_at`, else `received_at`
/// ([`spillway_shared::event_time::derived`]).
pub const INSERT_SQL: &str = "\
INSERT INTO events (id, type, occurred_at, received_at, key_id, data, edge_colo, edge_country, sqs_message_id, source, context, event_time)
SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[],
                     $6::jsonb[], $7::text[], $8::text[], $9::text[], $10::text[], $11::jsonb[],
                     $12::timestamptz[])
ON CONFLICT (key_id, id) DO NOTHING";

/// Why the store could not be set up (at start-up, before any invocation).
#[derive(Debug, Error)]
pub enum SetupError {
    #[error("cannot read the CA bundle {path}: {reason}")]
    CaBundle { path: String, reason: String },
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// An open connection and its prepared insert.
struct Conn {
    client: Client,
    insert: Statement,
}

/// [`EventStore`] over one PostgreSQL connection.
pub struct PgStore {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    statement_timeout: Duration,
    conn: Mutex<Option<Conn>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("tls", &self.tls.is_some())
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Prepares the store; connects nothing yet.
    pub fn new(db: &DbConfig) -> Result<Self, SetupError> {
        let mut config = db.url.clone();
        config.connect_timeout(db.connect_timeout);
        // A peer that vanished (failover, network partition) is noticed within seconds instead
        // of the kernel's default of many minutes.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        config.tcp_user_timeout(db.statement_timeout + Duration::from_secs(5));
        if config.get_application_name().is_none() {
            config.application_name("spillway-consumer");
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Some(tls_connector(db.ca_cert_path.as_deref())?),
            _ => None,
        };
        Ok(Self {
            config,
            tls,
            statement_timeout: db.statement_timeout,
            conn: Mutex::new(None),
        })
    }

    /// Whether a connection is currently held (for tests and logs).
    pub async fn is_connected(&self) -> bool {
        self.conn
            .lock()
            .await
            .as_ref()
            .is_some_and(|c| !c.client.is_closed())
    }

    /// Opens a new connection with the session settings applied (statement timeout).
    pub async fn open(&self) -> Result<Client, StoreError> {
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(|e| connect_error(&e))?;
                tokio::spawn(drive(connection));
                client
            }
            None => {
                let (client, connection) = self
                    .config
                    .connect(NoTls)
                    .await
                    .map_err(|e| connect_error(&e))?;
                tokio::spawn(drive(connection));
                client
            }
        };
        client
            .batch_execute(&format!(
                "SET statement_timeout = {}",
                self.statement_timeout.as_millis()
            ))
            .await
            .map_err(|e| classify(&e))?;
        info!(tls = self.tls.is_some(), "connected to PostgreSQL");
        Ok(client)
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let client = self.open().await?;
        let insert = client.prepare(INSERT_SQL).await.map_err(|e| classify(&e))?;
        Ok(Conn { client, insert })
    }
}

async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio_postgres::tls::TlsStream + Unpin,
{
    if let Err(e) = connection.await {
        warn!(error = %e, "PostgreSQL connection ended");
    }
}

impl EventStore for PgStore {
    async fn probe(&self) -> Result<(), StoreError> {
        let mut guard = self.conn.lock().await;
        if guard.as_ref().is_some_and(|c| c.client.is_closed()) {
            *guard = None;
        }
        // As in `write`: a connection kept from before the outage may be broken without
        // anyone having noticed; it gets one retry on a fresh connection, so the probe that
        // follows the database's return says so at once.
        let mut reused = guard.is_some();
        loop {
            let conn = match guard.as_mut() {
                Some(conn) => conn,
                None => guard.insert(self.connect().await?),
            };
            match conn.client.simple_query("SELECT 1").await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let error = classify(&e);
                    if error.kind != FailureKind::Unavailable {
                        return Err(error);
                    }
                    *guard = None;
                    if !reused {
                        return Err(error);
                    }
                    reused = false;
                }
            }
        }
    }

    async fn write(&self, rows: &[Row<'_>]) -> Result<WriteCounts, StoreError> {
        if rows.is_empty() {
            return Ok(WriteCounts::default());
        }
        let mut guard = self.conn.lock().await;
        if guard.as_ref().is_some_and(|c| c.client.is_closed()) {
            *guard = None;
        }
        // A connection kept from an earlier invocation may have died while the environment
        // was frozen (idle timeout, failover) without anyone noticing yet. Such a connection
        // gets one retry on a fresh one: repeating the insert is harmless (ON CONFLICT), even
        // if the first attempt did commit before the connection broke.
        let mut reused = guard.is_some();
        loop {
            let conn = match guard.as_mut() {
                Some(conn) => conn,
                None => guard.insert(self.connect().await?),
            };
            match insert(conn, rows).await {
                Ok(inserted) => {
                    return Ok(WriteCounts {
                        inserted,
                        duplicates: (rows.len() as u64).saturating_sub(inserted),
                    })
                }
                Err(e) => {
                    let error = classify(&e);
                    if error.kind != FailureKind::Unavailable {
                        return Err(error);
                    }
                    // Never reuse a connection that broke.
                    *guard = None;
                    if !reused {
                        return Err(error);
                    }
                    warn!(error = %error, "kept connection was broken; retrying on a new one");
                    reused = false;
                }
            }
        }
    }
}

async fn insert(conn: &mut Conn, rows: &[Row<'_>]) -> Result<u64, tokio_postgres::Error> {
    let n = rows.len();
    let mut ids: Vec<Uuid> = Vec::with_capacity(n);
    let mut types: Vec<&str> = Vec::with_capacity(n);
    let mut occurred = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut key_ids: Vec<&str> = Vec::with_capacity(n);
    // `data` is the client's text: PostgreSQL parses it itself, so it is stored exactly as
    // `'<text>'::jsonb` reads it.
    let mut data: Vec<Json<&RawJson>> = Vec::with_capacity(n);
    let mut colos: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut countries: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut message_ids: Vec<&str> = Vec::with_capacity(n);
    let mut sources: Vec<&str> = Vec::with_capacity(n);
    // The edge's context (migration 0004), NULL when the event carries none.
    let mut contexts: Vec<Option<Json<&EdgeInfo>>> = Vec::with_capacity(n);
    let mut event_times = Vec::with_capacity(n);
    for row in rows {
        let e = row.event;
        ids.push(e.id);
        types.push(&e.event_type);
        occurred.push(e.occurred_at);
        received.push(e.received_at);
        key_ids.push(&e.key_id);
        data.push(Json(&e.data));
        colos.push(e.edge.as_ref().and_then(|x| x.colo.as_deref()));
        countries.push(e.edge.as_ref().and_then(|x| x.country.as_deref()));
        message_ids.push(row.record_id);
        sources.push(e.source.as_str());
        contexts.push(e.edge.as_ref().filter(|x| !x.is_empty()).map(Json));
        event_times.push(event_time(e));
    }
    let tx = conn.client.transaction().await?;
    let inserted = tx
        .execute(
            &conn.insert,
            &[
                &ids,
                &types,
                &occurred,
                &received,
                &key_ids,
                &data,
                &colos,
                &countries,
                &message_ids,
                &sources,
                &contexts,
                &event_times,
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(inserted)
}

/// The `event_time` column of an event: the envelope's corrected time, else `occurred_at`,
/// else `received_at` ([`spillway_shared::event_time::derived`]): an envelope carries one only
/// when it differs from these, and an edge older than event times carries none.
fn event_time(e: &spillway_shared::Event) -> chrono::DateTime<chrono::Utc> {
    e.event_time
        .unwrap_or_else(|| spillway_shared::event_time::derived(e.received_at, e.occurred_at))
}

/// Classifies a driver error where it is created.
pub fn classify(e: &tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError {
            kind: classify_sqlstate(db.code().code()),
            code: Some(db.code().code().to_owned()),
            message: match db.detail() {
                Some(detail) => format!("{}: {detail}", db.message()),
                None => db.message().to_owned(),
            },
        },
        // No server error: I/O, a closed connection, a protocol or TLS failure.
        None => StoreError::unavailable(error_chain(e)),
    }
}

/// Any failure to open a connection means the database is unavailable to us, whatever the
/// server said (authentication, unknown database, starting up).
fn connect_error(e: &tokio_postgres::Error) -> StoreError {
    let mut error = classify(e);
    error.kind = FailureKind::Unavailable;
    error.message = format!("cannot connect: {}", error.message);
    error
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// A verifying rustls connector: Mozilla's roots plus an optional PEM bundle, with `ring` as
/// the crypto provider (chosen here, not process-wide).
fn tls_connector(ca_bundle: Option<&Path>) -> Result<MakeRustlsConnect, SetupError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_bundle {
        let bundle_error = |reason: String| SetupError::CaBundle {
            path: path.display().to_string(),
            reason,
        };
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bundle_error(e.to_string()))? {
            let cert = cert.map_err(|e| bundle_error(e.to_string()))?;
            roots.add(cert).map_err(|e| bundle_error(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bundle_error("holds no certificate".to_owned()));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn db(url: &str) -> DbConfig {
        DbConfig {
            url: tokio_postgres::Config::from_str(url).expect("url"),
            statement_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            ca_cert_path: None,
        }
    }

    #[test]
    fn every_row_gets_an_event_time() {
        let e = crate::testing::event(1);
        // An envelope without one (an older edge, or nothing to correct): occurred_at.
        assert_eq!(event_time(&e), e.occurred_at.expect("fixture has one"));
        let no_timestamp = spillway_shared::Event {
            occurred_at: None,
            ..e.clone()
        };
        assert_eq!(event_time(&no_timestamp), e.received_at);
        let corrected = e.received_at - chrono::Duration::seconds(3);
        let carried = spillway_shared::Event {
            event_time: Some(corrected),
            ..e
        };
        assert_eq!(event_time(&carried), corrected);
    }

    #[test]
    fn tls_only_when_required() {
        let plain = PgStore::new(&db("postgres://u@127.0.0.1/db")).expect("store");
        assert!(plain.tls.is_none());
        let plain = PgStore::new(&db("postgres://u@127.0.0.1/db?sslmode=disable")).expect("store");
        assert!(plain.tls.is_none());
        let tls =
            PgStore::new(&db("postgres://u@db.example.com/db?sslmode=require")).expect("store");
        assert!(tls.tls.is_some());
        assert_eq!(tls.config.get_application_name(), Some("spillway-consumer"));
    }

    #[test]
    fn ca_bundle_must_hold_certificates() {
        let dir = std::env::temp_dir().join(format!("spillway-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").expect("write");
        let mut cfg = db("postgres://u@db.example.com/db?sslmode=require");
        cfg.ca_cert_path = Some(empty);
        assert!(matches!(
            PgStore::new(&cfg),
            Err(SetupError::CaBundle { .. })
        ));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn unreachable_database_is_unavailable_and_holds_no_connection() {
        // Port 1 on loopback: nothing listens there.
        let store = PgStore::new(&db("postgres://u@127.0.0.1:1/db")).expect("store");
        let event = crate::testing::event(1);
        let rows = [Row {
            event: &event,
            record_id: "m",
        }];
        let err = store.write(&rows).await.expect_err("must fail");
        assert_eq!(err.kind, FailureKind::Unavailable);
        assert!(err.message.starts_with("cannot connect"), "{err}");
        assert!(!store.is_connected().await);
    }
}
