use std::path::Path;

use super::*;

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn the_command_prints_settings_bill_burst_and_limits() {
    let o = parse(&args("--rps 10000")).expect("as set up");
    let p = plan(&o, None);
    let text = report::render(&p, None);
    for part in [
        "Spillway plan: 10,000 requests/s",
        "no results file",
        "BATCH_WINDOW_MS",
        "BATCH_SHARDS                     1        a floor: the edge adds batchers",
        "BATCH_MAX_SHARDS                 32",
        "at 1,000 req/s per location the edge runs 2 batcher(s) there, 500 req/s each",
        "MaximumConcurrency",
        "BatchSize",
        "Monthly bill",
        "per million events: $",
        "Burst of 600,000 events",
        "at 1x (10,000 req/s)",
        "at 100x (1,000,000 req/s): binds first:",
    ] {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
    assert_eq!(p.limits.len(), 3);
    assert!(p.bill.total() > 0.0 && p.bill.total().is_finite());
    let kinesis = plan(
        &parse(&args("--rps 100 --buffer kinesis-provisioned")).expect("as set up"),
        None,
    );
    let text = report::render(&kinesis, None);
    assert!(
        text.contains("ShardCount") && text.contains("ParallelizationFactor"),
        "{text}"
    );
}

#[test]
fn measured_inputs_are_read_and_named() {
    let results = serde_json::json!({"tables": [
        {"key": "run", "columns": [{"name": "date"}, {"name": "commit"}],
         "rows": [["2026-12-06 00:57 UTC", "a5e2442"]]},
        {"key": "figure-5", "columns": [{"name": "write"}, {"name": "rows/s"}],
         "rows": [["consumer: INSERT", 72914.0]]},
        {"key": "figure-3", "columns": [{"name": "request"}, {"name": "requests/s"}],
         "rows": [["POST 1 event (512 B)", 199.0], ["POST 100 events (128101 B)", 108.0]]}
    ]})
    .to_string();
    let p = plan(
        &parse(&args("--rps 100 --here")).expect("as set up"),
        Some(&results),
    );
    assert_eq!(p.input.capacities.drain_per_connection, 72_914.0);
    assert_eq!(p.input.deployment.edge_rps, Some(199.0));
    let text = report::render(&p, Some(Path::new("results.json")));
    assert!(
        text.contains("run 2026-12-06 00:57 UTC, commit a5e2442"),
        "{text}"
    );
    assert!(text.contains("figure 5's bulk write alone"), "{text}");
    assert!(text.contains("the edge, as measured here"), "{text}");
    // An explicit write rate wins over the file.
    let p = plan(
        &parse(&args("--rps 100 --write-rate 900")).expect("as set up"),
        Some(&results),
    );
    assert_eq!(p.input.capacities.drain_per_connection, 900.0);
}

#[test]
fn main_checks_options_and_the_results_file() {
    assert!(main(&args("--help")).is_ok());
    let err = main(&args("--rps 100 --results /nonexistent/results.json")).expect_err("an error");
    assert!(format!("{err:#}").contains("/nonexistent/results.json"));
    let err = main(&args("--rps -3")).expect_err("an error");
    assert!(format!("{err:#}").contains("--rps -3"));
}

#[test]
fn sources_name_every_limit_and_price() {
    let text = report::sources();
    for l in crate::limits::LIMITS {
        assert!(text.contains(l.source), "{}", l.id);
    }
    for p in crate::prices::PRICES {
        assert!(text.contains(p.source), "{}", p.id);
    }
    assert!(main(&args("--sources")).is_ok());
}

#[test]
fn the_brief_report_has_one_line_per_part() {
    let p = plan(
        &parse(&args("--rps 10000 --brief")).expect("as set up"),
        None,
    );
    let text = report::brief(&p);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert!(lines[1].contains("BATCH_WINDOW_MS=20") && lines[1].contains("MaximumConcurrency=5"));
    // 1,000 req/s per location: a floor of 1, room for 10x, 2 batchers run now.
    assert!(
        lines[1].contains("BATCH_SHARDS=1 BATCH_MAX_SHARDS=32 (the edge runs 2 per location)"),
        "{text}"
    );
    assert!(lines[2].contains("a month") && lines[2].contains("Durable Objects $"));
    assert!(lines[3].starts_with("  burst of 600,000 events"));
    assert!(lines[4].starts_with("  1x: nothing binds"), "{text}");
    assert!(lines[6].starts_with("  100x: binds: "), "{text}");
    assert!(
        lines[6].contains("through an SQS outage the spill queue"),
        "{text}"
    );
}

#[test]
fn a_deployment_reads_figure_10_at_one_connection_and_here_at_its_own() {
    let columns: Vec<serde_json::Value> = [
        "events per message",
        "connections",
        "events/s per connection",
    ]
    .iter()
    .map(|c| serde_json::json!({"name": c, "decimals": null}))
    .collect();
    // Per connection, 4 connections on this machine's two cores drain a quarter of one.
    let text = serde_json::json!({"tables": [{
        "key": "figure-10-drain",
        "columns": columns,
        "rows": [[1.0, 1.0, 2000.0], [1.0, 2.0, 1000.0], [1.0, 4.0, 500.0]],
        "transposed": false
    }]})
    .to_string();
    // A deployment's connection is a Lambda invocation with its own CPU: the 1-connection row,
    // whatever the budget.
    let deployed = plan(
        &parse(&args("--rps 10 --window-ms 0 --connections 5")).expect("as set up"),
        Some(&text),
    );
    assert_eq!(deployed.input.capacities.drain_per_connection, 2000.0);
    // This machine shares its cores: the row of its own workers.
    let here = plan(
        &parse(&args("--rps 10 --here")).expect("as set up"),
        Some(&text),
    );
    assert_eq!(here.input.capacities.drain_per_connection, 1000.0);
}
