//! Fills the tables of the hand-written BENCHMARKS.md: each table lives between
//! `<!-- bench:KEY -->` and `<!-- /bench -->`, and only what is between them is replaced;
//! everything outside the markers (the prose, the explanations) is left byte for byte.
//! Does not know what any table means.

use anyhow::{bail, Result};

use super::table::Table;

const END: &str = "<!-- /bench -->";
/// What a marker whose table this run did not produce (a `--only` run) holds.
const NOT_MEASURED: &str = "_Not measured in this run._\n";

fn start(key: &str) -> String {
    format!("<!-- bench:{key} -->")
}

/// The key of a line that is a start marker (the whole line: a marker quoted in prose is not one).
fn marker(line: &str) -> Option<&str> {
    line.strip_prefix("<!-- bench:")?.strip_suffix(" -->")
}

/// `doc` with an empty place at its end for each table it has none for: a partial run's copy
/// shows what it measured beyond the committed layout (another burst size, say).
pub(super) fn with_places_for(doc: &str, tables: &[Table]) -> String {
    let mut out = doc.to_owned();
    for t in tables {
        if !doc.lines().any(|l| marker(l) == Some(&t.key)) {
            out += &format!("\n{}\n{END}\n", start(&t.key));
        }
    }
    out
}

/// `doc` with what lies between each marker line and the next `<!-- /bench -->` line replaced
/// by its table. A table without a marker is an error naming the marker to add; a marker
/// without a table says it was not measured.
pub(super) fn fill(doc: &str, tables: &[Table]) -> Result<String> {
    for t in tables {
        if !doc.lines().any(|l| marker(l) == Some(&t.key)) {
            let key = &t.key;
            bail!("BENCHMARKS.md has no line `{}` (closed by `{END}`) for table {key}: add one where it goes", start(key));
        }
    }
    let mut out = String::with_capacity(doc.len());
    let mut lines = doc.split_inclusive('\n');
    while let Some(line) = lines.next() {
        out.push_str(line);
        let Some(key) = marker(line.trim_end_matches('\n')) else {
            continue;
        };
        match tables.iter().find(|t| t.key == key) {
            Some(t) => out.push_str(&t.markdown()),
            None => out.push_str(NOT_MEASURED),
        }
        match lines.find(|l| l.trim_end_matches('\n') == END) {
            Some(end) => out.push_str(end),
            None => bail!("marker `{}` has no `{END}` line after it", start(key)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::table::Col;
    use serde_json::json;

    fn tables(keys: &[&str]) -> Vec<Table> {
        let cols: [Col<u32>; 1] = [("n", Some(0), |n| json!(n))];
        keys.iter().map(|k| Table::of(*k, [1234], &cols)).collect()
    }

    const DOC: &str = "# Title\n\nProse about *a* (bounded by X).\n\n<!-- bench:a -->\n| old |\n|---|\n| 9 |\n<!-- /bench -->\n\nMore prose.\n<!-- bench:b -->\nstale\n<!-- /bench -->\nEnd.\n";

    #[test]
    fn only_what_is_between_markers_is_replaced() {
        let out = fill(DOC, &tables(&["a", "b"])).expect("filled");
        assert_eq!(
            out,
            "# Title\n\nProse about *a* (bounded by X).\n\n<!-- bench:a -->\n| n |\n|---|\n| 1,234 |\n<!-- /bench -->\n\nMore prose.\n<!-- bench:b -->\n| n |\n|---|\n| 1,234 |\n<!-- /bench -->\nEnd.\n"
        );
        // Filling again changes nothing: the markers stay, with the same tables between them.
        assert_eq!(fill(&out, &tables(&["a", "b"])).expect("again"), out);
    }

    #[test]
    fn a_marker_without_a_table_says_not_measured() {
        let out = fill(DOC, &tables(&["a"])).expect("filled");
        assert!(out.contains("<!-- bench:b -->\n_Not measured in this run._\n<!-- /bench -->"));
        assert!(out.contains("Prose about *a* (bounded by X).") && out.ends_with("End.\n"));
    }

    #[test]
    fn a_missing_or_unclosed_marker_is_an_error_naming_it() {
        let err = fill(DOC, &tables(&["a", "figure-3-cpu"])).expect_err("an error");
        assert!(
            err.to_string().contains("<!-- bench:figure-3-cpu -->"),
            "{err}"
        );
        let placed = with_places_for(DOC, &tables(&["a", "figure-3-cpu"]));
        let filled = fill(&placed, &tables(&["a", "figure-3-cpu"])).expect("a place for each");
        assert!(filled
            .ends_with("<!-- bench:figure-3-cpu -->\n| n |\n|---|\n| 1,234 |\n<!-- /bench -->\n"));
        let err = fill("<!-- bench:a -->\n| x |\n", &tables(&["a"])).expect_err("an error");
        assert!(err.to_string().contains("<!-- bench:a -->"), "{err}");
        // A marker quoted in prose is neither a marker nor a table's place.
        let quoted = "Tables live between `<!-- bench:a -->` and `<!-- /bench -->`.\n";
        assert_eq!(fill(quoted, &[]).expect("nothing to fill"), quoted);
        assert!(fill(quoted, &tables(&["a"])).is_err());
    }
}
