//! The bench's figures as data: a table is named columns (each with the decimals its numbers
//! are shown with) and rows of JSON values, and `results.json` is a run's tables. The Markdown
//! of a table is only the formatting of those values. This module neither measures nor says
//! anything about the numbers: the explanations are hand-written in BENCHMARKS.md.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Map, Value};

/// A column: its name (with its unit) and the decimals of its numbers (`None`: text).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) decimals: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Table {
    pub(super) key: String,
    pub(super) columns: Vec<Column>,
    pub(super) rows: Vec<Vec<Value>>,
    /// Shown with one column per row (the first column's values head them): for tables of a
    /// few rows and many columns, such as figure 6's three designs.
    pub(super) transposed: bool,
}

/// A measured number; a non-finite one (nothing to measure) is `null`, never 0.
pub(super) fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// `a / b`, `null` when either is unknown or `b` is 0.
pub(super) fn ratio(a: f64, b: f64) -> Value {
    if b != 0.0 {
        num(a / b)
    } else {
        Value::Null
    }
}

impl Table {
    /// An empty table of `columns`: (name, decimals).
    pub(super) fn new(key: impl Into<String>, columns: &[(&str, Option<usize>)]) -> Table {
        Table {
            key: key.into(),
            columns: columns
                .iter()
                .map(|(name, decimals)| Column {
                    name: (*name).to_owned(),
                    decimals: *decimals,
                })
                .collect(),
            rows: Vec::new(),
            transposed: false,
        }
    }

    pub(super) fn push(&mut self, row: Vec<Value>) {
        assert_eq!(row.len(), self.columns.len(), "a row of table {}", self.key);
        self.rows.push(row);
    }

    /// The value of `column` in row `row`, if both exist.
    pub(super) fn get(&self, row: usize, column: &str) -> Option<&Value> {
        let i = self.columns.iter().position(|c| c.name == column)?;
        self.rows.get(row)?.get(i)
    }

    /// A number of row `row`, `None` when absent or `null`.
    pub(super) fn number(&self, row: usize, column: &str) -> Option<f64> {
        self.get(row, column).and_then(Value::as_f64)
    }

    /// The first row whose `column` is the text `value`.
    pub(super) fn find(&self, column: &str, value: &str) -> Option<usize> {
        (0..self.rows.len()).find(|&r| self.get(r, column).and_then(Value::as_str) == Some(value))
    }

    fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let mut m = Map::new();
                for (c, v) in self.columns.iter().zip(row) {
                    m.insert(c.name.clone(), v.clone());
                }
                Value::Object(m)
            })
            .collect();
        json!({
            "columns": self.columns.iter().map(|c| json!({"name": c.name, "decimals": c.decimals})).collect::<Vec<_>>(),
            "transposed": self.transposed,
            "rows": rows,
        })
    }

    fn from_json(key: &str, v: &Value) -> Result<Table> {
        let bad = || anyhow!("table {key} in the results file is malformed");
        let columns: Vec<Column> = v["columns"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|c| {
                Ok(Column {
                    name: c["name"].as_str().ok_or_else(bad)?.to_owned(),
                    decimals: c["decimals"].as_u64().map(|d| d as usize),
                })
            })
            .collect::<Result<_>>()?;
        let rows = v["rows"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|r| {
                columns
                    .iter()
                    .map(|c| r.get(&c.name).cloned().ok_or_else(bad))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        Ok(Table {
            key: key.to_owned(),
            columns,
            rows,
            transposed: v["transposed"].as_bool().unwrap_or(false),
        })
    }

    fn cell(&self, column: usize, v: &Value) -> String {
        match (v, self.columns[column].decimals) {
            (Value::Null, _) => "n/a".into(),
            (Value::String(s), _) => s.clone(),
            (Value::Bool(b), _) => (if *b { "yes" } else { "**no**" }).into(),
            (Value::Number(n), Some(d)) => grouped(&format!("{:.d$}", n.as_f64().unwrap_or(0.0))),
            (other, _) => other.to_string(),
        }
    }

    /// The table in Markdown, one line per row, with its trailing newline.
    pub(super) fn markdown(&self) -> String {
        let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
        let rule = |n: usize| format!("|{}\n", "---|".repeat(n));
        let mut s = String::new();
        if self.transposed {
            let mut head = vec![self.columns[0].name.clone()];
            head.extend(self.rows.iter().map(|r| self.cell(0, &r[0])));
            s += &line(head);
            s += &rule(self.rows.len() + 1);
            for (i, c) in self.columns.iter().enumerate().skip(1) {
                let mut cells = vec![c.name.clone()];
                cells.extend(self.rows.iter().map(|r| self.cell(i, &r[i])));
                s += &line(cells);
            }
        } else {
            s += &line(self.columns.iter().map(|c| c.name.clone()).collect());
            s += &rule(self.columns.len());
            for r in &self.rows {
                s += &line(r.iter().enumerate().map(|(i, v)| self.cell(i, v)).collect());
            }
        }
        s
    }
}

/// Thousands separators in the integer part of a formatted number: `-1234567.5` → `-1,234,567.5`.
pub(super) fn grouped(formatted: &str) -> String {
    let (sign, rest) = match formatted.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", formatted),
    };
    let (int, frac) = rest.split_at(rest.find('.').unwrap_or(rest.len()));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}{frac}")
}

/// The results file: every table of a run, by key (the run's metadata is the table `run`).
pub(super) fn to_results_json(tables: &[Table]) -> String {
    let map: Map<String, Value> = tables
        .iter()
        .map(|t| (t.key.clone(), t.to_json()))
        .collect();
    let mut s = serde_json::to_string_pretty(&json!({ "tables": map })).unwrap_or_default();
    s.push('\n');
    s
}

/// The tables of a results file, by key.
pub(super) fn from_results_json(text: &str) -> Result<BTreeMap<String, Table>> {
    let v: Value = serde_json::from_str(text).context("the results file is not JSON")?;
    v["tables"]
        .as_object()
        .context("the results file has no `tables`")?
        .iter()
        .map(|(k, t)| Ok((k.clone(), Table::from_json(k, t)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(
            "figure-9",
            &[("design", None), ("rows/s", Some(0)), ("ratio", Some(2))],
        );
        t.push(vec![json!("a"), json!(72914.4), json!(0.857)]);
        t.push(vec![json!("b"), Value::Null, json!(true)]);
        t
    }

    #[test]
    fn numbers_are_shown_with_their_decimals_and_thousands() {
        assert_eq!(
            sample().markdown(),
            "| design | rows/s | ratio |\n|---|---|---|\n| a | 72,914 | 0.86 |\n| b | n/a | yes |\n"
        );
        assert_eq!(grouped("-1234567.25"), "-1,234,567.25");
        assert_eq!(grouped("999"), "999");
        assert_eq!(num(f64::NAN), Value::Null);
        assert_eq!(ratio(1.0, 0.0), Value::Null);
    }

    #[test]
    fn a_transposed_table_has_a_column_per_row() {
        let mut t = sample();
        t.transposed = true;
        assert_eq!(
            t.markdown(),
            "| design | a | b |\n|---|---|---|\n| rows/s | 72,914 | n/a |\n| ratio | 0.86 | yes |\n"
        );
    }

    #[test]
    fn the_results_file_reads_back_the_same_tables() {
        let mut t = sample();
        t.transposed = true;
        let back = from_results_json(&to_results_json(std::slice::from_ref(&t))).expect("read");
        assert_eq!(back.get("figure-9"), Some(&t));
        assert_eq!(t.number(0, "rows/s"), Some(72914.4));
        assert_eq!(t.find("design", "b"), Some(1));
        assert!(from_results_json(r#"{"tables": {"x": {"rows": []}}}"#).is_err());
    }
}
