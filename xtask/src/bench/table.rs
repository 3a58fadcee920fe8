//! The bench's figures as data: a table is named columns (each with the decimals its numbers
//! are shown with) and rows of JSON values, and `results.json` is a run's tables. The Markdown
//! of a table is only the formatting of those values. This module neither measures nor says
//! anything about the numbers: the explanations are hand-written in BENCHMARKS.md.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A column: its name (with its unit) and the decimals of its numbers (`None`: as they are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) decimals: Option<usize>,
}

/// A column of a table of `T`s: its name, its decimals, and how a `T` gives its value.
pub(super) type Col<T> = (&'static str, Option<usize>, fn(&T) -> Value);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Table {
    pub(super) key: String,
    pub(super) columns: Vec<Column>,
    pub(super) rows: Vec<Vec<Value>>,
    /// Shown with one column per row (the first column's values head them): for tables of a
    /// few rows and many columns, such as figure 6's three designs.
    pub(super) transposed: bool,
}

/// The results file: a run's tables (its metadata is the table `run`).
#[derive(Serialize, Deserialize)]
struct Results {
    tables: Vec<Table>,
}

/// A measured number; a non-finite one (nothing measured) is `null`, never 0.
pub(super) fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// `a / b`; `null` when `b` is 0.
pub(super) fn ratio(a: f64, b: f64) -> Value {
    if b != 0.0 {
        num(a / b)
    } else {
        Value::Null
    }
}

pub(super) fn to_results_json(tables: &[Table]) -> String {
    let tables = tables.to_vec();
    serde_json::to_string_pretty(&Results { tables }).unwrap_or_default() + "\n"
}

pub(super) fn from_results_json(text: &str) -> Result<Vec<Table>> {
    let results: Results = serde_json::from_str(text).context("reading the results file")?;
    Ok(results.tables)
}

impl Table {
    /// The table of `rows`, one column per [`Col`].
    pub(super) fn of<T>(
        key: impl Into<String>,
        rows: impl IntoIterator<Item = T>,
        cols: &[Col<T>],
    ) -> Table {
        let column = |c: &Col<T>| Column {
            name: c.0.to_owned(),
            decimals: c.1,
        };
        let row = |r: T| cols.iter().map(|c| (c.2)(&r)).collect();
        let (key, transposed) = (key.into(), false);
        Table {
            key,
            columns: cols.iter().map(column).collect(),
            rows: rows.into_iter().map(row).collect(),
            transposed,
        }
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

    fn cell(&self, column: usize, v: &Value) -> String {
        match (v, self.columns[column].decimals) {
            (Value::Null, _) => "n/a".into(),
            (Value::String(s), _) => s.clone(),
            (Value::Bool(b), _) => (if *b { "yes" } else { "**no**" }).into(),
            (Value::Number(n), Some(d)) => grouped(&format!("{:.d$}", n.as_f64().unwrap_or(0.0))),
            // Counts by answer (`{"502": 46}`): `46 x 502`.
            (Value::Object(m), _) => {
                let counts: Vec<String> = m.iter().map(|(k, n)| format!("{n} x {k}")).collect();
                if counts.is_empty() {
                    "none".into()
                } else {
                    counts.join("; ")
                }
            }
            (other, _) => other.to_string(),
        }
    }

    /// The table in Markdown, one line per row, with its trailing newline.
    pub(super) fn markdown(&self) -> String {
        let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
        // Transposed, a column's name and its values make a line; otherwise a row does.
        let lines: Vec<Vec<String>> = if self.transposed {
            let line = |(i, c): (usize, &Column)| {
                let cells = self.rows.iter().map(|r| self.cell(i, &r[i]));
                std::iter::once(c.name.clone()).chain(cells).collect()
            };
            self.columns.iter().enumerate().map(line).collect()
        } else {
            let cells =
                |r: &Vec<Value>| r.iter().enumerate().map(|(i, v)| self.cell(i, v)).collect();
            let head = self.columns.iter().map(|c| c.name.clone()).collect();
            std::iter::once(head)
                .chain(self.rows.iter().map(cells))
                .collect()
        };
        let mut s = String::new();
        for (i, cells) in lines.into_iter().enumerate() {
            if i == 1 {
                s += &format!("|{}\n", "---|".repeat(cells.len()));
            }
            s += &line(cells);
        }
        s
    }
}

/// Thousands separators in the integer part of a formatted number: `-1234567.5` → `-1,234,567.5`.
pub(super) fn grouped(formatted: &str) -> String {
    let (sign, rest) = formatted.split_at(usize::from(formatted.starts_with('-')));
    let (int, frac) = rest.split_at(rest.find('.').unwrap_or(rest.len()));
    let mut out = String::from(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out + frac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(transposed: bool) -> Table {
        let cols: [Col<(&str, Value, Value)>; 3] = [
            ("design", None, |r| json!(r.0)),
            ("rows/s", Some(0), |r| r.1.clone()),
            ("ratio", Some(2), |r| r.2.clone()),
        ];
        let rows = [
            ("a", json!(72914.4), json!(0.857)),
            ("b", Value::Null, json!({"502": 3})),
        ];
        Table {
            transposed,
            ..Table::of("figure-9", rows, &cols)
        }
    }

    #[test]
    fn numbers_are_shown_with_their_decimals_and_an_unknown_as_n_a() {
        let md = "| design | rows/s | ratio |\n|---|---|---|\n| a | 72,914 | 0.86 |\n| b | n/a | 3 x 502 |\n";
        assert_eq!(sample(false).markdown(), md);
        let md = "| design | a | b |\n|---|---|---|\n| rows/s | 72,914 | n/a |\n| ratio | 0.86 | 3 x 502 |\n";
        assert_eq!(sample(true).markdown(), md);
        assert_eq!(
            (grouped("-1234567.25"), grouped("999")),
            ("-1,234,567.25".into(), "999".into())
        );
        assert_eq!((num(f64::NAN), ratio(1.0, 0.0)), (Value::Null, Value::Null));
    }

    #[test]
    fn the_results_file_reads_back_the_same_tables() {
        let t = sample(true);
        let back = from_results_json(&to_results_json(std::slice::from_ref(&t))).expect("read");
        assert_eq!(back, std::slice::from_ref(&t));
        assert_eq!(
            (t.number(0, "rows/s"), t.find("design", "b")),
            (Some(72914.4), Some(1))
        );
        assert!(from_results_json(r#"{"tables": [{"key": "x"}]}"#).is_err());
    }
}
