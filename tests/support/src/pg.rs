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
///
/// It runs in `/`: the tools look up their own working directory, and ours (the clone) may be
/// one the `postgres` user cannot enter.
pub(crate) fn pg_command(bin: &Path, tool: &str) -> Command {
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    };
    c.current_dir("/");
    c
}

/// Can the `postgres` user search `dir` (and so reach what is inside it)?
fn postgres_can_enter(dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(dir)
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `postgres` user's home directory (`/var/lib/postgresql` on Debian).
fn postgres_home() -> PathBuf {
    Command::new("getent")
        .args(["passwd", "postgres"])
        .output()
        .ok()
        .and_then(|o| {
            let line = String::from_utf8_lossy(&o.stdout).into_owned();
            line.trim().split(':').nth(5).map(PathBuf::from)
        })
        .filter(|home| home.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/var/lib/postgresql"))
}

/// The name of the relocated cluster for `dir`: readable (the end of its path) and unique (a
/// hash of the whole path), short enough for the server's socket path.
fn relocated_name(dir: &Path) -> String {
    let path = dir.to_string_lossy();
    // FNV-1a: stable across runs and Rust versions, unlike `DefaultHasher`.
    let hash = path.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let readable: String = path
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let tail = &readable[readable.len().saturating_sub(40)..];
    format!("{tail}-{hash:016x}")
}

/// Where the cluster asked for at `dir` lives, created and owned by whoever runs the server.
///
/// That is `dir` itself, unless we are root and the `postgres` user, which the server then runs
/// as, cannot reach it: in a clone inside a home directory of mode 0700 (`/root`), say. Then
/// the cluster lives in a directory of its own in the `postgres` user's home and `dir` becomes
/// a symlink to it, so the cluster is still found, and kept, at `dir`. No permission of the
/// user's directories is changed. Returns the real directory and, when relocated, the link.
fn cluster_dir(dir: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    if !is_root() {
        fs::create_dir_all(dir)?;
        return Ok((dir.canonicalize()?, None));
    }
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        bail!("{} cannot hold a PostgreSQL cluster", dir.display());
    };
    fs::create_dir_all(parent)?;
    let dir = parent.canonicalize()?.join(name);
    let (real, link) = if let Ok(target) = fs::read_link(&dir) {
        (dir.parent().unwrap_or(&dir).join(target), Some(dir))
    } else if postgres_can_enter(dir.parent().unwrap_or(&dir)) {
        (dir, None)
    } else {
        (relocate(&dir)?, Some(dir))
    };
    fs::create_dir_all(&real)?;
    let ok = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&real)
        .status()?
        .success();
    if !ok {
        bail!("could not chown {} to the postgres user", real.display());
    }
    Ok((real, link))
}

/// Makes `dir` a symlink to a fresh directory in the `postgres` user's home; returns that.
fn relocate(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.join("data/PG_VERSION").exists() {
        bail!(
            "{} holds a PostgreSQL cluster that the postgres user cannot reach (a directory on \
             its path is private); move the clone somewhere it can, or remove that cluster",
            dir.display()
        );
    }
    let base = postgres_home().join("spillway");
    // Private from the start: the clusters' logs are nobody else's business.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&base)
        .with_context(|| format!("creating {}", base.display()))?;
    let ok = Command::new("chown")
        .arg("postgres:postgres")
        .arg(&base)
        .status()?
        .success();
    if !ok || !postgres_can_enter(&base) {
        bail!(
            "{} cannot be reached by the postgres user, and neither can {}",
            dir.display(),
            base.display()
        );
    }
    // What an earlier failed start may have left (an empty directory, a log): nothing to keep.
    if dir.exists() {
        let _ = fs::remove_dir(dir.join("data"));
        let _ = fs::remove_file(dir.join("postgres.log"));
        fs::remove_dir(dir)
            .with_context(|| format!("{} is in the way of the cluster's symlink", dir.display()))?;
    }
    let real = base.join(relocated_name(dir));
    std::os::unix::fs::symlink(&real, dir)
        .with_context(|| format!("linking {} to {}", dir.display(), real.display()))?;
    Ok(real)
}

/// A throwaway PostgreSQL cluster on 127.0.0.1 and a private port, trust auth, user `postgres`.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    /// Where the cluster really is (see [`cluster_dir`]).
    dir: PathBuf,
    /// The symlink to `dir` where the cluster was asked for, when it had to live elsewhere.
    link: Option<PathBuf>,
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
        let (dir, link) = cluster_dir(dir)?;
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
            link,
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
        self.start_with_max_connections(300)
    }

    /// Starts the stopped cluster again with `max_connections` set to `max` (the test clusters
    /// use 300; the benchmarks use PostgreSQL's default, 100, stated).
    pub fn start_with_max_connections(&self, max: u32) -> Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections={max} -c fsync=off",
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

    /// Leaves the cluster running after this handle is gone; [`sweep`](crate::sweep) stops it later.
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

    /// The directory holding the cluster (data, log, socket). The server can read what is put
    /// here, unlike a path inside a private clone: the place for files it must load.
    pub fn dir(&self) -> &Path {
        &self.dir
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
            if let Some(link) = &self.link {
                let _ = fs::remove_file(link);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocated_names_are_readable_unique_and_short() {
        let a = relocated_name(Path::new("/root/spillway/.spillway/pg"));
        assert!(a.starts_with("root-spillway-.spillway-pg-"), "{a}");
        let b = relocated_name(Path::new("/root/spillway2/.spillway/pg"));
        assert_ne!(a, b);
        assert_eq!(a, relocated_name(Path::new("/root/spillway/.spillway/pg")));
        let long = relocated_name(Path::new(&format!("/home/ü{}/pg", "x".repeat(200))));
        assert!(long.len() <= 40 + 17, "{long}");
    }
}
