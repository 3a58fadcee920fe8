//! Figure 2: the gzipped size of the release workers (the SQS and the Kinesis build) against a
//! hello world.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::step::root;

#[derive(Debug, Clone)]
pub(super) struct WasmSize {
    pub(super) edge_raw: u64,
    pub(super) edge_gz: u64,
    /// The Kinesis Worker build (`--no-default-features --features kinesis`).
    pub(super) kinesis_raw: u64,
    pub(super) kinesis_gz: u64,
    pub(super) hello_raw: u64,
    pub(super) hello_gz: u64,
}

pub(super) fn gzip9(path: &Path) -> Result<u64> {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .context("running gzip")?;
    if !out.status.success() {
        bail!("gzip -9 {} failed", path.display());
    }
    Ok(out.stdout.len() as u64)
}

pub(super) fn wasm_sizes() -> Result<WasmSize> {
    let edge = root().join("edge/build/index_bg.wasm");
    let kinesis =
        spillway_support::stack::built_wasm(&root(), spillway_support::BufferKind::Kinesis);
    let hello = root().join("benches/hello-worker/build/index_bg.wasm");
    Ok(WasmSize {
        edge_raw: fs::metadata(&edge)?.len(),
        edge_gz: gzip9(&edge)?,
        kinesis_raw: fs::metadata(&kinesis)
            .with_context(|| format!("{}", kinesis.display()))?
            .len(),
        kinesis_gz: gzip9(&kinesis)?,
        hello_raw: fs::metadata(&hello)?.len(),
        hello_gz: gzip9(&hello)?,
    })
}
