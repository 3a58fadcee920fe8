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

/// `doc` with the content of every marker replaced by its table. A table without a marker is
/// an error naming the marker to add; a marker without a table says it was not measured.
pub(super) fn fill(doc: &str, tables: &[Table]) -> Result<String> {
    for key in tables.iter().map(|t| &t.key) {
        if !doc.contains(&start(key)) {
            bail!(
                "BENCHMARKS.md has no marker `{}` ... `{END}` for table {key}: add one where its table goes",
                start(key)
            );
        }
    }
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    while let Some(at) = rest.find("<!-- bench:") {
        let open_end = match rest[at..].find("-->") {
            Some(e) => at + e + 3,
            None => bail!("an unclosed `<!-- bench:` in BENCHMARKS.md"),
        };
        let key = rest[at + "<!-- bench:".len()..open_end - 3].trim();
        let Some(close) = rest[open_end..].find(END) else {
            bail!("marker `{}` has no `{END}` after it", start(key));
        };
        out.push_str(&rest[..open_end]);
        out.push('\n');
        match tables.iter().find(|t| t.key == key) {
            Some(t) => out.push_str(&t.markdown()),
            None => out.push_str(NOT_MEASURED),
        }
        rest = &rest[open_end + close..];
        out.push_str(END);
        rest = &rest[END.len()..];
    }
    out.push_str(rest);
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
        let err = fill(DOC, &tables(&["a", "figure-3-cpu"])).unwrap_err();
        assert!(
            err.to_string().contains("<!-- bench:figure-3-cpu -->"),
            "{err}"
        );
        let err = fill("<!-- bench:a -->\n| x |\n", &tables(&["a"])).unwrap_err();
        assert!(err.to_string().contains("<!-- bench:a -->"), "{err}");
    }
}
