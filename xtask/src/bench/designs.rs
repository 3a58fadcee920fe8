//! The three designs of the experiment, each started against the same PostgreSQL: Spillway (the
//! `Stack`), the synchronous handler modelling Lambda behind API Gateway connecting directly, and
//! the same handler through PgBouncer (transaction pooling), the local stand-in for RDS Proxy.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use spillway_support::{free_port, Postgres, Service};

use super::client::Endpoint;
use crate::bootstrap::apt_install;
use crate::step::{note, output, run};

/// The role the synchronous handlers connect as: not a superuser, so PostgreSQL's
/// `superuser_reserved_connections` (3) keep room for the monitor and the reconciliation, as
/// on a managed database where the application never connects as the administrator.
pub(super) const APP_ROLE: &str = "baseline";
/// PgBouncer's server connections to PostgreSQL (`default_pool_size` = `max_db_connections`).
pub(super) const PGBOUNCER_POOL: u32 = 20;
/// How long PgBouncer lets a client wait for a server connection (its default is 120 s; the
/// clients give up after [`super::burst::ATTEMPT_TIMEOUT`]).
pub(super) const PGBOUNCER_QUERY_WAIT_S: u32 = 15;
/// Lambda's default account concurrency limit, the handler's `--concurrency`.
pub(super) const LAMBDA_CONCURRENCY: usize = 1000;

/// Which design a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Spillway,
    Direct,
    Pooled,
}

impl Kind {
    pub(super) const ALL: [Kind; 3] = [Kind::Spillway, Kind::Direct, Kind::Pooled];

    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Spillway => "Spillway",
            Kind::Direct => "Synchronous, direct",
            Kind::Pooled => "Synchronous, PgBouncer",
        }
    }
}

/// The database role the synchronous handlers use; made once per cluster.
pub(super) fn create_app_role(pg: &Postgres) -> Result<()> {
    pg.psql(&format!(
        "do $$ begin if not exists (select from pg_roles where rolname = '{APP_ROLE}') then \
         create role {APP_ROLE} login; end if; end $$; \
         grant select, insert on events to {APP_ROLE}"
    ))?;
    Ok(())
}

/// A running synchronous design: the handler, and PgBouncer in front of PostgreSQL if pooled.
#[derive(Debug)]
pub(super) struct Synchronous {
    pub(super) endpoint: Endpoint,
    // Field order is drop order: the handler stops before the pooler it talks to.
    handler: Service,
    pooler: Option<Service>,
}

impl Synchronous {
    /// Starts the handler (and PgBouncer for [`Kind::Pooled`]) with no environment yet: every
    /// scenario starts cold.
    pub(super) fn start(kind: Kind, pg: &Postgres, dir: &Path) -> Result<Synchronous> {
        // The handler connects to PostgreSQL, or to PgBouncer in front of it.
        let (db_port, pooler) = match kind {
            Kind::Spillway => bail!("Spillway is the Stack, not a synchronous design"),
            Kind::Direct => (pg.port(), None),
            Kind::Pooled => {
                let port = free_port()?;
                (port, Some(start_pgbouncer(pg.port(), port, dir)?))
            }
        };
        let db = format!("postgres://{APP_ROLE}@127.0.0.1:{db_port}/postgres");
        let port = free_port()?;
        let bins = super::release_bin_dir();
        let mut cmd = Command::new(bins.join("spillway-baseline"));
        cmd.arg(format!("127.0.0.1:{port}"))
            .arg(&db)
            .args(["--concurrency", &LAMBDA_CONCURRENCY.to_string()]);
        let handler = Service::spawn("baseline", cmd, &dir.join("baseline.log"))?;
        spillway_support::wait_for_port(port, Duration::from_secs(10))?;
        Ok(Synchronous {
            endpoint: Endpoint::parse(&format!("http://127.0.0.1:{port}/v1/events"), None)?,
            handler,
            pooler,
        })
    }

    pub(super) fn stop(mut self) {
        self.handler.stop(Duration::from_secs(3));
        if let Some(p) = &mut self.pooler {
            p.stop(Duration::from_secs(3));
        }
    }
}

pub(super) fn pgbouncer_version() -> Option<String> {
    output(Command::new("pgbouncer").arg("--version"))
        .and_then(|v| v.lines().next().map(str::to_owned))
        .map(|v| v.trim_start_matches("PgBouncer ").to_owned())
}

/// Debian's `pgbouncer`, installed with apt-get when missing (as root), skipped when present.
pub(super) fn ensure_pgbouncer() -> Result<()> {
    if let Some(v) = pgbouncer_version() {
        note(&format!("present ({v})"));
        return Ok(());
    }
    apt_install(&["pgbouncer"])
}

/// PgBouncer on `port` in front of PostgreSQL on `pg_port`, in transaction pooling mode, trust
/// auth for [`APP_ROLE`]. It refuses to run as root, so as root it runs as `postgres`, with its
/// files in a folder that user owns.
fn start_pgbouncer(pg_port: u16, port: u16, dir: &Path) -> Result<Service> {
    let root_user = output(Command::new("id").arg("-u")).as_deref() == Some("0");
    let conf_dir: PathBuf = std::env::temp_dir().join(format!("spillway-pgbouncer-{port}"));
    let _ = fs::remove_dir_all(&conf_dir);
    fs::create_dir_all(&conf_dir)?;
    let conf = conf_dir.join("pgbouncer.ini");
    fs::write(
        conf_dir.join("userlist.txt"),
        format!("\"{APP_ROLE}\" \"\"\n"),
    )?;
    fs::write(
        &conf,
        format!(
            "; Written by `cargo xtask bench`.\n\
             [databases]\n\
             postgres = host=127.0.0.1 port={pg_port} dbname=postgres\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = transaction\n\
             default_pool_size = {PGBOUNCER_POOL}\n\
             max_db_connections = {PGBOUNCER_POOL}\n\
             max_client_conn = 5000\n\
             query_wait_timeout = {PGBOUNCER_QUERY_WAIT_S}\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {log}\n",
            users = conf_dir.join("userlist.txt").display(),
            log = conf_dir.join("pgbouncer.log").display(),
        ),
    )?;
    let mut cmd = if root_user {
        run(Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&conf_dir))?;
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "pgbouncer"]);
        c
    } else {
        Command::new("pgbouncer")
    };
    cmd.arg(&conf).current_dir("/");
    let service = Service::spawn("pgbouncer", cmd, &dir.join("pgbouncer.out"))?;
    spillway_support::wait_for_port(port, Duration::from_secs(10)).with_context(|| {
        format!(
            "pgbouncer did not listen: {}",
            fs::read_to_string(conf_dir.join("pgbouncer.log")).unwrap_or_default()
        )
    })?;
    Ok(service)
}
