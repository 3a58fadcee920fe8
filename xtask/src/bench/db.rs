//! Figure 5: the consumer's bulk write against `COPY` (and figure 10's `COPY` reference, on the
//! rows its drain stored).

use std::process::Stdio;

use anyhow::{anyhow, bail, Context, Result};

use super::cargo;
use crate::step::{note, show};

/// `bench_write`'s setting naming the database whose stored rows it writes back.
const STORED_IN: &str = "BENCH_WRITE_ROWS_FROM";

#[derive(Debug, Clone)]
pub(super) struct DbWrite {
    pub(super) rows: usize,
    pub(super) batch: usize,
    pub(super) unnest: f64,
    pub(super) copy: f64,
    pub(super) staging: f64,
    pub(super) command: String,
}

pub(super) fn db_write() -> Result<DbWrite> {
    bench_write(100_000, 1_000, None)
}

/// Runs `bench_write` on `rows` rows in batches of `batch`: its own sample in a throwaway
/// PostgreSQL, or, with `stored_in` (a database URL), the `rows` rows that database's `events`
/// table holds, written back into it (figure 10: the rows its drain stored).
pub(super) fn bench_write(rows: usize, batch: usize, stored_in: Option<&str>) -> Result<DbWrite> {
    let run = "run --quiet --release -p spillway-consumer --example bench_write --";
    let (rows_s, batch_s) = (rows.to_string(), batch.to_string());
    let args: Vec<&str> = run.split(' ').chain([&*rows_s, &*batch_s]).collect();
    let mut command = format!("cargo {}", args.join(" ").replace("--quiet ", ""));
    let mut c = cargo(&args);
    if let Some(url) = stored_in {
        c.env(STORED_IN, url);
        command = format!("{STORED_IN}=<the stack's DATABASE_URL> {command}");
    }
    note(&format!("$ {command}"));
    let out = c
        .stderr(Stdio::inherit())
        .output()
        .context("running bench_write")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for l in text.lines() {
        note(l);
    }
    if !out.status.success() {
        bail!("`{}` failed", show(&c));
    }
    // A build of the example that ignores the setting would time its own sample instead.
    if stored_in.is_some() && !text.contains("rows: the ") {
        bail!("bench_write did not write the stored rows: is its build older than {STORED_IN}?");
    }
    let rate = |name: &str| -> Result<f64> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.iter()
                    .position(|x| *x == "rows/s")
                    .and_then(|p| w.get(p.wrapping_sub(1)))
                    .and_then(|v| v.parse().ok())
            })
            .ok_or_else(|| anyhow!("bench_write printed no `{name}` line"))
    };
    Ok(DbWrite {
        rows,
        batch,
        unnest: rate("unnest")?,
        copy: rate("copy")?,
        staging: rate("copy+staging")?,
        command,
    })
}
