//! PostgreSQL for tests and the local pipeline: a private cluster on 127.0.0.1, trust auth,
//! user `postgres`, started with the server binaries of the system.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use crate::{free_port, is_root, port_open, run_dir, unique, Record};

/// The newest `/usr/lib/postgresql/*/bin` (or `$SPILLWAY_PG_BIN`).
pub fn pg_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SPILLWAY_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            anyhow!("PostgreSQL is not installed: run `apt-get install -y postgresql` (as root)")
        })?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| anyhow!("no initdb under /usr/lib/postgresql/*/bin"))
}

/// A command from PostgreSQL's bin dir, run as the `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
pub(crate) fn pg_command(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

/// A throwaway PostgreSQL cluster on 127.0.0.1 and a private port, trust auth, user `postgres`.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    dir: PathBuf,
    keep: bool,
    _record: Option<PathBuf>,
}

impl Postgres {
    /// `initdb` + `pg_ctl start` on a free port.
    pub fn start() -> Result<Postgres> {
        Self::start_in(&run_dir().join(unique("pg")), free_port()?, false)
    }

    /// Starts a cluster in `dir` on `port`, creating it when `dir` has none yet. With `keep`,
    /// the data directory survives drop (the cluster is still stopped).
    pub fn start_in(dir: &Path, port: u16, keep: bool) -> Result<Postgres> {
        let bin = pg_bin_dir()?;
        if port_open(port) {
            bail!("port {port} is already in use; choose another");
        }
        fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()?
                .success();
            if !ok {
                bail!("could not chown {} to the postgres user", dir.display());
            }
        }
        let data = dir.join("data");
        if !data.join("PG_VERSION").exists() {
            let out = pg_command(&bin, "initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
                .output()
                .context("running initdb")?;
            if !out.status.success() {
                bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let pg = Postgres {
            port,
            bin,
            dir: dir.clone(),
            keep,
            _record: {
                let r = Record::write(&unique("pg"), &format!("postgres {}", data.display()));
                let p = r.0.clone();
                std::mem::forget(r);
                Some(p)
            },
        };
        pg.start_again()?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts the (stopped) cluster again on the same port and waits until it accepts.
    pub fn start_again(&self) -> Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let out = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-o", &opts, "-w", "-t", "30", "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "pg_ctl start failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Leaves the cluster running after this handle is gone; [`sweep`] stops it later.
    pub fn detach(mut self) {
        self.keep = true;
        self._record = None;
    }

    /// Stops the cluster (fast shutdown: open connections are cut), keeping its data.
    pub fn stop(&self) -> Result<()> {
        let ok = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status()?
            .success();
        if !ok {
            bail!("pg_ctl stop failed");
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` with psql and returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> Result<String> {
        psql(self.port, sql)
    }
}

/// Runs `sql` with psql against the cluster on 127.0.0.1:`port` (user and database `postgres`).
pub fn psql(port: u16, sql: &str) -> Result<String> {
    let out = Command::new(pg_bin_dir()?.join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-c", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(record) = self._record.take() else {
            return; // detached
        };
        let _ = fs::remove_file(record);
        let _ = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !self.keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
