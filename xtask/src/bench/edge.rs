//! Figure 1: the edge's cost per event, from criterion's estimates.

use std::fs;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::{cargo, target_dir};
use crate::step::{note, run};
use spillway_support::events::{request_body, FIXED_TIMESTAMP};

#[derive(Debug, Clone)]
pub(super) struct EdgeCost {
    /// (events per request, request path ns/event, floor ns/event, request body bytes)
    pub(super) rows: Vec<(usize, f64, f64, usize)>,
    pub(super) command: String,
}

pub(super) fn edge_cost() -> Result<EdgeCost> {
    let bench = "bench -p spillway-edge --bench floor -- --warm-up-time 1 --measurement-time 4";
    let args: Vec<&str> = bench.split(' ').collect();
    let mut c = cargo(&args);
    let command = format!("cargo {}", args.join(" "));
    note(&format!("$ {command}"));
    run(&mut c)?;
    let base = target_dir().join("criterion/edge_cost");
    let mean_ns = |name: &str, n: usize| -> Result<f64> {
        let path = base
            .join(name)
            .join(n.to_string())
            .join("new/estimates.json");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        criterion_mean_ns(&text).with_context(|| format!("reading {}", path.display()))
    };
    let mut rows = Vec::new();
    for n in [1usize, 100] {
        let path = mean_ns("request_path", n)? / n as f64;
        let floor = mean_ns("serde_json_floor", n)? / n as f64;
        // The same body edge/benches/floor.rs builds (same generator, same timestamp).
        let bytes = request_body(n, 0, FIXED_TIMESTAMP, &mut || None).len();
        rows.push((n, path, floor, bytes));
    }
    Ok(EdgeCost { rows, command })
}

/// The mean point estimate (ns) in a criterion `estimates.json`.
pub(super) fn criterion_mean_ns(estimates_json: &str) -> Result<f64> {
    let v: Value = serde_json::from_str(estimates_json).context("not JSON")?;
    let mean = v["mean"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| anyhow!("no mean.point_estimate"))?;
    if !mean.is_finite() || mean <= 0.0 {
        bail!("mean.point_estimate is {mean}");
    }
    Ok(mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_mean_of_criterion_estimates() {
        // The shape criterion 0.5 writes (abridged: the other estimates have the same fields).
        let text = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":4480.1,"upper_bound":4532.9},"point_estimate":4505.25,"standard_error":13.4},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":4470.0,"upper_bound":4490.0},"point_estimate":4481.0,"standard_error":5.1}}"#;
        assert_eq!(criterion_mean_ns(text).expect("parses"), 4505.25);
    }

    #[test]
    fn a_missing_or_bad_mean_is_an_error() {
        assert!(criterion_mean_ns(r#"{"median":{"point_estimate":1.0}}"#).is_err());
        assert!(criterion_mean_ns(r#"{"mean":{"point_estimate":"fast"}}"#).is_err());
        assert!(criterion_mean_ns(r#"{"mean":{"point_estimate":0.0}}"#).is_err());
        assert!(criterion_mean_ns("not json").is_err());
    }
}
