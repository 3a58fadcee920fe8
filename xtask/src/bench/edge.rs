//! Figure 1: the edge's cost per event, from criterion's estimates.

use std::fs;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use super::events::{request_body, FIXED_TIMESTAMP};
use super::{cargo, target_dir};
use crate::bootstrap::Tools;
use crate::step::{note, run};

// ---------------------------------------------------------------------------------------------
// Figure 1: edge cost per event

#[derive(Debug, Clone)]
pub(super) struct EdgeCost {
    /// (events per request, request path ns/event, floor ns/event, request body bytes)
    pub(super) rows: Vec<(usize, f64, f64, usize)>,
    pub(super) command: String,
}

pub(super) fn edge_cost(tools: &Tools) -> Result<EdgeCost> {
    let args = [
        "bench",
        "-p",
        "spillway-edge",
        "--bench",
        "floor",
        "--",
        "--warm-up-time",
        "1",
        "--measurement-time",
        "4",
    ];
    let mut c = cargo(tools, &args);
    let command = format!("cargo {}", args.join(" "));
    note(&format!("$ {command}"));
    run(&mut c)?;
    let base = target_dir().join("criterion/edge_cost");
    let mean_ns = |name: &str, n: usize| -> Result<f64> {
        let path = base
            .join(name)
            .join(n.to_string())
            .join("new/estimates.json");
        let v: Value = serde_json::from_str(
            &fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
        )?;
        v["mean"]["point_estimate"]
            .as_f64()
            .ok_or_else(|| anyhow!("{} has no mean", path.display()))
    };
    let mut rows = Vec::new();
    for n in [1usize, 100] {
        let path = mean_ns("request_path", n)? / n as f64;
        let floor = mean_ns("serde_json_floor", n)? / n as f64;
        note(&format!(
            "{n:>3} event(s)/request: request path {path:.0} ns/event, serde_json floor {floor:.0} ns/event, x{:.2}",
            path / floor
        ));
        // The same body edge/benches/floor.rs builds (same generator, same timestamp).
        let bytes = request_body(n, 0, FIXED_TIMESTAMP, &mut || None).len();
        rows.push((n, path, floor, bytes));
    }
    Ok(EdgeCost { rows, command })
}
