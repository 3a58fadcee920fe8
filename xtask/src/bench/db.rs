//! Figure 5: the consumer's bulk write against `COPY`.

use std::process::Stdio;

use anyhow::{anyhow, bail, Context, Result};

use super::cargo;
use crate::step::{note, show};

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
    let (rows, batch) = (100_000usize, 1_000usize);
    let run = "run --quiet --release -p spillway-consumer --example bench_write --";
    let (rows_s, batch_s) = (rows.to_string(), batch.to_string());
    let args: Vec<&str> = run.split(' ').chain([&*rows_s, &*batch_s]).collect();
    let command = format!("cargo {}", args.join(" ").replace("--quiet ", ""));
    note(&format!("$ {command}"));
    let mut c = cargo(&args);
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
