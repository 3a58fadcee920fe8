//! The committed BENCHMARKS.md shows exactly the committed results file: its tables are the
//! file's, filled between the markers, and its checks are the ones the file's tables give. And
//! the bench's `--buffer` option: it measures the SQS buffer only, so far.

use std::fs;

use super::{checks, fill, table, Opts};
use crate::step::root;

#[test]
fn the_committed_tables_are_those_of_the_committed_results_file() {
    let json = fs::read_to_string(root().join("benches/results/results.json")).expect("results");
    let mut tables = table::from_results_json(&json).expect("the results file reads");
    let at = tables
        .iter()
        .position(|t| t.key == "checks")
        .expect("a checks table");
    let committed = tables.remove(at);
    assert_eq!(
        checks::checks(&tables),
        committed,
        "the checks follow from the tables"
    );
    tables.insert(at, committed);
    let doc = fs::read_to_string(root().join("BENCHMARKS.md")).expect("BENCHMARKS.md");
    assert_eq!(
        fill::fill(&doc, &tables).expect("every table has its marker"),
        doc
    );
}

#[test]
fn the_bench_takes_buffer_sqs_and_refuses_kinesis_by_name() {
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Opts::parse(&args(&["--buffer", "sqs"])).expect("the SQS buffer is what it measures");
    let err = Opts::parse(&args(&["--buffer", "kinesis"])).expect_err("not yet");
    assert!(
        format!("{err:#}").contains("--buffer kinesis: not yet"),
        "{err:#}"
    );
    let err = Opts::parse(&args(&["--buffer", "kafka"])).expect_err("unknown");
    assert!(
        format!("{err:#}").contains("unknown buffer `kafka`"),
        "{err:#}"
    );
}
