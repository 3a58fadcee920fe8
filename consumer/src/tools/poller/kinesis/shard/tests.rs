//! The shard's decisions, with hand-made records and times.

use super::*;
use aws_lambda_events::event::streams::KinesisEventResponse;
use chrono::TimeZone;

fn limits() -> Limits {
    Limits {
        batch_size: 10,
        max_payload_bytes: MAX_PAYLOAD_BYTES,
        lanes: 1,
        window: Duration::ZERO,
        bisect: false,
        max_retries: None,
        max_age: None,
    }
}

fn wall(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().expect("time")
}

/// Records with sequence numbers `base + i` (long, like real ones) and keys `k{i % keys}`.
fn recs(from: u32, to: u32, keys: u32) -> Vec<Rec> {
    (from..to)
        .map(|i| Rec {
            seq: seq(i),
            partition_key: format!("k{}", i % keys),
            data: vec![b'x'; 10],
            arrival: wall(1_000),
        })
        .collect()
}

fn seq(i: u32) -> SeqNum {
    SeqNum::parse(&format!("4959{:052}", i)).expect("seq")
}

fn failing(ids: &[&SeqNum]) -> Answer {
    let mut r = KinesisEventResponse::default();
    r.set_failures(ids.iter().map(|s| s.to_string()));
    Answer::Returned(r)
}

fn ok() -> Answer {
    Answer::Returned(KinesisEventResponse::default())
}

fn seqs(b: &Batch) -> Vec<SeqNum> {
    b.records.iter().map(|r| r.seq.clone()).collect()
}

/// Takes lane 0's next batch, ignoring retry pauses.
fn next(s: &mut ShardState, t: Instant) -> Option<Batch> {
    s.take(0, t + Duration::from_secs(3600), wall(1_000), false)
        .0
}

#[test]
fn lowest_reported_failure_becomes_the_checkpoint_and_is_delivered_again() {
    let t = Instant::now();
    let mut s = ShardState::new(limits(), None);
    s.push(recs(0, 10, 3), t);
    let b = next(&mut s, t).expect("batch");
    assert_eq!(b.records.len(), 10);
    // Reported out of order: the lowest (4) wins, whatever comes first in the list.
    let d = s.complete(b, failing(&[&seq(7), &seq(4)]), "r1".into(), t);
    assert!(d.is_empty());
    assert_eq!(s.checkpoint(), Some(&seq(3)));
    assert_eq!(s.unfinished(), 6);
    let again = next(&mut s, t).expect("redelivery");
    assert_eq!(seqs(&again), (4..10).map(seq).collect::<Vec<_>>());
    assert_eq!(again.retries, 1);
    assert_eq!(again.invocations, 1);
    assert!(again.not_before.is_some_and(|n| n > t), "a retry pauses");
    s.complete(again, ok(), "r2".into(), t);
    assert_eq!(s.checkpoint(), Some(&seq(9)));
    assert_eq!(s.unfinished(), 0);
}

#[test]
fn unknown_or_empty_identifiers_fail_the_whole_batch() {
    let t = Instant::now();
    for bad in ["", "not-a-number", "4959000"] {
        let mut s = ShardState::new(limits(), None);
        s.push(recs(0, 4, 1), t);
        let b = next(&mut s, t).expect("batch");
        let mut r = KinesisEventResponse::default();
        r.set_failures([seq(2).to_string(), bad.to_owned()]);
        s.complete(b, Answer::Returned(r), "r".into(), t);
        assert_eq!(s.checkpoint(), None, "{bad:?}: nothing is done");
        let again = next(&mut s, t).expect("redelivery");
        assert_eq!(seqs(&again), (0..4).map(seq).collect::<Vec<_>>(), "{bad:?}");
    }
    // A null identifier too.
    let mut s = ShardState::new(limits(), None);
    s.push(recs(0, 2, 1), t);
    let b = next(&mut s, t).expect("batch");
    let r: KinesisEventResponse = serde_json::from_value(
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": null}]}),
    )
    .expect("json");
    s.complete(b, Answer::Returned(r), "r".into(), t);
    assert_eq!(next(&mut s, t).map(|b| b.records.len()), Some(2));
}

#[test]
fn bisect_splits_a_failed_batch_into_halves_retried_separately() {
    let t = Instant::now();
    let mut s = ShardState::new(
        Limits {
            bisect: true,
            max_retries: Some(1),
            ..limits()
        },
        None,
    );
    s.push(recs(0, 8, 1), t);
    let b = next(&mut s, t).expect("batch");
    // A poison record at 5: every batch holding it fails as a whole.
    let answer = |b: &Batch| {
        if b.records.iter().any(|r| r.seq == seq(5)) {
            Answer::FunctionError
        } else {
            ok()
        }
    };
    let mut delivered = Vec::new();
    let mut discarded = Vec::new();
    let mut current = Some(b);
    let mut n = 0;
    while let Some(b) = current {
        n += 1;
        assert!(n < 20, "bisect does not converge");
        delivered.push(seqs(&b));
        let a = answer(&b);
        discarded.extend(s.complete(b, a, format!("r{n}"), t));
        current = next(&mut s, t);
    }
    let sizes: Vec<usize> = delivered.iter().map(Vec::len).collect();
    // 8 -> [0..4) ok, [4..8) fails -> [4,5) fails -> [4] ok, [5] fails, retried once, given up.
    assert_eq!(sizes, [8, 4, 4, 2, 1, 1, 1, 2]);
    assert_eq!(delivered[1], (0..4).map(seq).collect::<Vec<_>>());
    assert_eq!(delivered[2], (4..8).map(seq).collect::<Vec<_>>());
    assert_eq!(discarded.len(), 1);
    let d = &discarded[0];
    assert_eq!(d.condition, Condition::RetryAttemptsExhausted);
    assert_eq!(
        d.records.iter().map(|r| r.seq.clone()).collect::<Vec<_>>(),
        [seq(5)]
    );
    assert!(d.function_error);
    // Invoked with 5: the whole batch, its half, its quarter, alone, and once more alone.
    assert_eq!(d.invocations, 5);
    assert_eq!(
        s.checkpoint(),
        Some(&seq(7)),
        "the shard moved past the poison"
    );
    assert_eq!(s.unfinished(), 0);
}

#[test]
fn retries_exhausted_give_the_batch_up_and_advance() {
    let t = Instant::now();
    let mut s = ShardState::new(
        Limits {
            max_retries: Some(2),
            ..limits()
        },
        None,
    );
    s.push(recs(0, 3, 1), t);
    let mut invocations = 0;
    let d = loop {
        let b = next(&mut s, t).expect("batch until given up");
        invocations += 1;
        let d = s.complete(b, Answer::FunctionError, format!("r{invocations}"), t);
        if !d.is_empty() {
            break d;
        }
    };
    assert_eq!(invocations, 3, "the first try and 2 retries");
    assert_eq!(d[0].invocations, 3);
    assert_eq!(d[0].request_id.as_deref(), Some("r3"));
    assert_eq!(d[0].records.len(), 3);
    assert_eq!(s.checkpoint(), Some(&seq(2)));
    assert!(next(&mut s, t).is_none());

    // Zero retries: the first failure gives up; partial failures count as retries too.
    let mut s = ShardState::new(
        Limits {
            max_retries: Some(0),
            ..limits()
        },
        None,
    );
    s.push(recs(0, 5, 1), t);
    let b = next(&mut s, t).expect("batch");
    let d = s.complete(b, failing(&[&seq(3)]), "r".into(), t);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].records
            .iter()
            .map(|r| r.seq.clone())
            .collect::<Vec<_>>(),
        [seq(3), seq(4)]
    );
    assert!(!d[0].function_error);
    assert_eq!(s.checkpoint(), Some(&seq(4)));
}

#[test]
fn infinite_retries_never_give_up() {
    let t = Instant::now();
    let mut s = ShardState::new(limits(), None);
    s.push(recs(0, 1, 1), t);
    for i in 0..200 {
        let b = next(&mut s, t).expect("still retried");
        assert!(s
            .complete(b, Answer::FunctionError, format!("r{i}"), t)
            .is_empty());
    }
    assert_eq!(s.checkpoint(), None);
}

#[test]
fn records_past_their_age_are_given_up_without_an_invocation() {
    let t = Instant::now();
    let mut s = ShardState::new(
        Limits {
            max_age: Some(Duration::from_secs(60)),
            ..limits()
        },
        None,
    );
    let mut r = recs(0, 4, 1);
    r[0].arrival = wall(100);
    r[1].arrival = wall(100);
    s.push(r, t);
    let (b, d) = s.take(0, t, wall(1_000), false);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].condition, Condition::RecordAgeExceeded);
    assert_eq!(d[0].records.len(), 2);
    assert_eq!(d[0].invocations, 0);
    let b = b.expect("the young records");
    assert_eq!(seqs(&b), [seq(2), seq(3)]);
    assert_eq!(s.checkpoint(), Some(&seq(1)));
    // While retried, the rest grows old too.
    s.complete(b, Answer::FunctionError, "r1".into(), t);
    let (b, d) = s.take(0, t + Duration::from_secs(10), wall(1_061), false);
    assert!(b.is_none());
    assert_eq!(d[0].records.len(), 2);
    assert_eq!(d[0].invocations, 1);
    assert_eq!(s.checkpoint(), Some(&seq(3)));
}

#[test]
fn lanes_keep_each_partition_key_in_order_and_the_checkpoint_at_the_lowest_unfinished() {
    let t = Instant::now();
    let mut s = ShardState::new(
        Limits {
            lanes: 4,
            batch_size: 5,
            ..limits()
        },
        None,
    );
    s.push(recs(0, 200, 16), t);
    let mut seen: std::collections::HashMap<String, (usize, Vec<SeqNum>)> = Default::default();
    let mut lanes_used = HashSet::new();
    // Lane 0 is stuck (its batch never answered); the others run to the end.
    let (stuck, _) = s.take(0, t, wall(1_000), false);
    let stuck = stuck.expect("lane 0 batch");
    assert!(
        s.take(0, t, wall(1_000), false).0.is_none(),
        "one batch per lane at a time"
    );
    let mut progress = true;
    while progress {
        progress = false;
        for lane in 1..4 {
            if let (Some(b), _) = s.take(lane, t, wall(1_000), false) {
                progress = true;
                lanes_used.insert(lane);
                for r in &b.records {
                    let e = seen
                        .entry(r.partition_key.clone())
                        .or_insert((lane, Vec::new()));
                    assert_eq!(e.0, lane, "key {} moved lanes", r.partition_key);
                    e.1.push(r.seq.clone());
                }
                s.complete(b, ok(), "r".into(), t);
            }
        }
    }
    assert!(lanes_used.len() >= 2, "16 keys spread over the lanes");
    for (key, (_, v)) in &seen {
        assert!(v.windows(2).all(|w| w[0] < w[1]), "key {key} out of order");
    }
    // The checkpoint stays before lane 0's first unfinished record.
    let first_stuck = stuck.records[0].seq.clone();
    match s.checkpoint() {
        None => assert_eq!(first_stuck, seq(0)),
        Some(c) => assert!(c < &first_stuck),
    }
    assert!(s.unfinished() > 0);
}

#[test]
fn batches_respect_size_window_and_payload() {
    let t = Instant::now();
    let mut s = ShardState::new(
        Limits {
            batch_size: 4,
            window: Duration::from_secs(2),
            ..limits()
        },
        None,
    );
    s.push(recs(0, 3, 1), t);
    assert!(
        s.take(0, t, wall(1_000), false).0.is_none(),
        "window still open"
    );
    assert_eq!(s.ready_at(), Some(t + Duration::from_secs(2)));
    let b = s.take(0, t + Duration::from_secs(2), wall(1_000), false).0;
    assert_eq!(b.map(|b| b.records.len()), Some(3));

    let mut s = ShardState::new(
        Limits {
            batch_size: 4,
            window: Duration::from_secs(2),
            ..limits()
        },
        None,
    );
    s.push(recs(0, 9, 1), t);
    let b = s
        .take(0, t, wall(1_000), false)
        .0
        .expect("full batch goes at once");
    assert_eq!(b.records.len(), 4);
    s.complete(b, ok(), "r".into(), t);
    let b = s.take(0, t, wall(1_000), false).0.expect("full");
    s.complete(b, ok(), "r".into(), t);
    assert!(
        s.take(0, t, wall(1_000), false).0.is_none(),
        "1 left, window open"
    );
    assert_eq!(
        s.take(0, t, wall(1_000), true).0.map(|b| b.records.len()),
        Some(1),
        "flush"
    );

    // 6 MB: records of ~1.3 MB on the wire, at most 4 per invocation.
    let mut s = ShardState::new(
        Limits {
            batch_size: 100,
            ..limits()
        },
        None,
    );
    let mut big = recs(0, 10, 1);
    for r in &mut big {
        r.data = vec![0; 1_000_000];
    }
    s.push(big, t);
    let b = s.take(0, t, wall(1_000), false).0.expect("batch");
    let bytes: usize = b.records.iter().map(Rec::payload_bytes).sum();
    assert_eq!(b.records.len(), 4);
    assert!(bytes <= MAX_PAYLOAD_BYTES);
}

#[test]
fn lane_of_is_stable_and_in_range() {
    assert_eq!(lane_of("anything", 1), 0);
    for n in 1..=10 {
        for k in ["a", "b", "user-42", ""] {
            assert!(lane_of(k, n) < n);
            assert_eq!(lane_of(k, n), lane_of(k, n));
        }
    }
    // FNV-1a of "a" is 0xaf63dc4c8601ec8c.
    assert_eq!(lane_of("a", 1 << 16), 0xec8c);
}
