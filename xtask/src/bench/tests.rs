//! The committed BENCHMARKS.md shows exactly the committed results file: its tables are the
//! file's, filled between the markers, and its checks are the ones the file's tables give. And
//! the bench's `--buffer` option picks the pipeline of the live figures.

use std::fs;

use spillway_support::BufferKind;

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
fn the_buffer_picks_the_pipeline_and_kinesis_skips_the_sqs_only_figures() {
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let sqs = Opts::parse(&args(&["--buffer", "sqs"])).expect("sqs");
    assert_eq!(sqs.buffer, BufferKind::Sqs);
    assert!(["workerd", "burst", "batching", "spill", "buffers"]
        .iter()
        .all(|f| sqs.wants(f)));
    let kinesis = Opts::parse(&args(&["--buffer", "kinesis"])).expect("kinesis");
    assert_eq!(kinesis.buffer, BufferKind::Kinesis);
    assert!(kinesis.wants("workerd") && kinesis.wants("burst"));
    assert!(!kinesis.wants("batching") && !kinesis.wants("spill") && !kinesis.wants("buffers"));
    // The default is SQS, with figure 9 measuring Kinesis beside it.
    assert_eq!(
        Opts::parse(&[]).expect("no options").buffer,
        BufferKind::Sqs
    );
    let err = Opts::parse(&args(&["--buffer", "kafka"])).expect_err("unknown");
    assert!(
        format!("{err:#}").contains("unknown buffer `kafka`"),
        "{err:#}"
    );
}
