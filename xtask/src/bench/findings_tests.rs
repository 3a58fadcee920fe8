use super::*;

fn run(design: &str) -> RunResult {
    RunResult {
        design: design.into(),
        requests: 1000,
        accepted_requests: 1000,
        peak_connections: Some(2),
        ..RunResult::default()
    }
}

#[test]
fn a_sentence_says_only_what_the_numbers_say() {
    let mut r = run("Synchronous, direct");
    r.accepted_requests = 980;
    r.refused.insert("502".into(), 20);
    r.peak_connections = Some(96);
    let s = design_sentence(&r);
    assert!(s.contains("980 of 1,000"), "{s}");
    assert!(s.contains("refused 20 (20 x 502)"), "{s}");
    assert!(s.contains("at most 96"), "{s}");
    assert!(!s.contains("may be higher"), "{s}");
    r.failed_samples = 3;
    assert!(design_sentence(&r).contains("3 samples failed"));
}

#[test]
fn the_refusals_are_quoted_commonest_first_and_the_rest_counted() {
    let mut r = run("Synchronous, direct");
    for (text, n) in [
        ("502 `too many clients`", 30),
        ("500 `connection closed`", 5),
        ("500 `terminating connection`", 4),
        ("timed out", 2),
        ("transport (read: ConnectionReset)", 1),
    ] {
        r.refusal_texts.insert(text.into(), n);
    }
    assert_eq!(
        refusal_texts(&r),
        "30 x 502 `too many clients`; 5 x 500 `connection closed`; \
         4 x 500 `terminating connection`; 3 more in 2 other texts"
    );
    r.refused.insert("502".into(), 42);
    assert!(design_sentence(&r).contains("(what the answers said: 30 x 502"));
}

#[test]
fn an_unknown_peak_is_not_written_as_zero() {
    let mut r = run("Spillway");
    r.peak_connections = None;
    assert!(design_sentence(&r).contains("an unknown number of"));
    assert_eq!(peak(&r), "no sample");
}

fn batch_row(mode: Mode, rate: u32, billed: u64, p50_ms: f64) -> BatchRow {
    BatchRow {
        mode,
        offered_rps: rate,
        secs: 10,
        requests: 1_000,
        client_bytes: 1_280_000,
        accepted: 1_000,
        other: Default::default(),
        timed_out: 0,
        achieved_rps: f64::from(rate),
        p50_ms,
        p99_ms: 2.0 * p50_ms,
        meter: spillway_support::MeterSnapshot {
            entries: 1_000,
            events: 1_000,
            billed,
            ..Default::default()
        },
    }
}

#[test]
fn the_batching_finding_says_whether_on_differed_from_off() {
    let alike = [
        batch_row(Mode::Off, 100, 1_000, 40.0),
        batch_row(Mode::On, 100, 1_000, 41.0),
    ];
    let s = batching_finding(&alike);
    assert!(s.contains("did not batch"), "{s}");
    assert!(
        s.contains("1,000,000 -> 1,000,000 (51.20x of the floor)"),
        "{s}"
    );
    assert!(s.contains("p50 +1.0 ms and p99 +2.0 ms"), "{s}");
    let mut batched = alike.clone();
    batched[1].meter.billed = 100;
    batched[1].accepted = 600;
    let s = batching_finding(&batched);
    assert!(!s.contains("did not batch"), "{s}");
    assert!(
        s.contains("1,000,000 -> 100,000 (5.12x of the floor)"),
        "{s}"
    );
    assert!(
        s.contains("100 req/s with batching on (600 of 1,000 answered 202 within 10 s"),
        "{s}"
    );
    assert!(
        !s.contains("p50 +1.0 ms"),
        "not compared once a side fell behind: {s}"
    );
    assert!(s.contains("while 1,000 events reached SQS"), "{s}");
    let mut none = alike.clone();
    none[1].meter.entries = 0;
    none[1].meter.events = 0;
    assert!(batching_finding(&none).contains("-> n/a"));
}

#[test]
fn the_checks_follow_the_numbers() {
    let mut direct = run("Synchronous, direct");
    direct.refused.insert("502".into(), 5);
    let mut spillway = run("Spillway");
    spillway.peak_connections = Some(3);
    let sc = ScenarioResult {
        scenario: Scenario::Burst { clients: 1000 },
        runs: vec![(Kind::Spillway, spillway), (Kind::Direct, direct)],
    };
    let mut s = String::new();
    checks(&mut s, &[sc]);
    assert!(s.contains("connections: **no**"), "{s}");
    assert!(
        s.contains(
            "ran out of connections (a request refused by PostgreSQL, answered 502): yes (5 x 502"
        ),
        "{s}"
    );
}
