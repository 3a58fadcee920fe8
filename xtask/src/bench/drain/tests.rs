use super::*;
use spillway_shared::{open, Keyring, Unsigned};

fn key(kid: &str) -> SigningKey {
    SigningKey::new(kid, &[b's'; 32]).expect("a valid key")
}

fn sample(n: usize) -> Vec<Event> {
    let received =
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(1_795_852_800_000).expect("a time");
    (0..n)
        .map(|k| sample_event(k, "dev", received).expect("an event").0)
        .collect()
}

/// Every message of `calls`, opened as the consumer opens it (the seal verified under `key`).
fn opened(calls: &[Vec<String>], key: &SigningKey) -> Vec<Vec<Event>> {
    let keys = Keyring::new(vec![key.clone()], Unsigned::Refuse);
    calls
        .iter()
        .flatten()
        .map(|body| open(body, &keys).expect("a sealed body the consumer opens"))
        .collect()
}

#[test]
fn one_event_messages_are_sealed_one_per_event_and_sent_ten_per_call() {
    let (events, k) = (sample(25), key("local-1"));
    let calls = preload_calls(&events, 1, &k).expect("packed");
    let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 10, 5]);
    let messages = opened(&calls, &k);
    assert!(messages.iter().all(|m| m.len() == 1));
    // Every event once, in order, as the edge enriched it.
    let ids: Vec<_> = messages.iter().flatten().map(|e| e.id).collect();
    assert_eq!(ids, events.iter().map(|e| e.id).collect::<Vec<_>>());
    assert!(messages.iter().flatten().all(|e| e.key_id == "dev"));
}

#[test]
fn hundred_event_messages_fill_calls_up_to_the_byte_cap() {
    let (events, k) = (sample(1_000), key("local-1"));
    let calls = preload_calls(&events, 100, &k).expect("packed");
    let messages = opened(&calls, &k);
    assert_eq!(messages.len(), 10);
    assert!(messages.iter().all(|m| m.len() == 100));
    // Ten messages of about 150 KB exceed one call's 1 MiB: two calls, each within it.
    let limits = BufferLimits::default();
    assert_eq!(calls.len(), 2);
    for c in &calls {
        assert!(c.len() <= limits.entries_per_call);
        assert!(c.iter().map(String::len).sum::<usize>() <= limits.bytes_per_call);
    }
}

#[test]
fn the_preload_is_sealed_with_the_key_given() {
    let calls = preload_calls(&sample(3), 1, &key("local-1")).expect("packed");
    let other = Keyring::new(vec![key("other")], Unsigned::Refuse);
    assert!(calls.iter().flatten().all(|b| open(b, &other).is_err()));
}

#[test]
fn a_request_that_is_not_one_message_is_refused() {
    // 1,000 events of 0.5 to 2 KB cannot be one 256 KiB message.
    let err = preload_calls(&sample(1_000), 1_000, &key("local-1"));
    assert!(err.is_err());
    assert!(preload_calls(&sample(1), 0, &key("local-1")).is_err());
}

#[test]
fn the_tally_adds_the_emf_lines_only() {
    let emf = |stored: u64, ms: u64| {
        json!({
            "Service": "spillway-consumer",
            "RequestId": "poller-0-1",
            "EventsStored": stored,
            "DuplicatesSkipped": 0,
            "BatchSize": 10,
            "DbWriteMs": ms,
            "_aws": {"CloudWatchMetrics": [{"Metrics": [{"Name": "EventsStored", "Unit": "Count"}]}]}
        })
        .to_string()
    };
    let log = format!(
        "2026-12-06T20:00:00Z INFO batch handled events_stored=1000\n{}\n{}\nnot json \"EventsStored\"\n",
        emf(1_000, 40),
        emf(700, 31)
    );
    let mut t = Tally::default();
    t.add_lines(&log);
    assert_eq!(
        t,
        Tally {
            invocations: 2,
            events_stored: 1_700,
            db_write_ms: 71,
            invocation_ms: None,
        }
    );
    // The poller's last line, as its JSON log writes it, adds the invocations' time.
    let stop = json!({
        "timestamp": "2026-12-06T20:00:01Z",
        "level": "INFO",
        "fields": {"message": "poller stopped", "invocations": 2, "invocation_ms": 96}
    });
    t.add_stop_line(&format!(
        "{{\"fields\":{{\"message\":\"shutdown asked\"}}}}\n{stop}\n"
    ));
    assert_eq!(t.invocation_ms, Some(96));
}

#[test]
fn the_log_tail_gives_whole_lines_written_after_it_opened() {
    let path = std::env::temp_dir().join(format!("drain-tail-{}.log", std::process::id()));
    std::fs::write(&path, "before\n").expect("write");
    let append = |s: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(s.as_bytes()).expect("append");
    };
    let mut tail = LogTail::open(&path).expect("tail");
    append("a\nb");
    assert_eq!(tail.new_lines().expect("read"), "a\n");
    append("c\n");
    assert_eq!(tail.new_lines().expect("read"), "bc\n");
    assert_eq!(tail.new_lines().expect("read"), "");
    let _ = std::fs::remove_file(&path);
}

fn row(connections: usize, seconds: f64, db_write_ms: u64, copy: f64) -> DrainRow {
    DrainRow {
        per_message: 100,
        connections,
        events: 30_000,
        messages: 300,
        seconds,
        tally: Tally {
            invocations: 30,
            events_stored: 30_000,
            db_write_ms,
            invocation_ms: (db_write_ms > 0).then_some(db_write_ms + 400),
        },
        peak_connections: connections as u64,
        cpu: None,
        copy,
        unnest: 12_000.0,
    }
}

#[test]
fn the_table_gives_rates_per_connection_against_copy() {
    let t = table(&[row(2, 2.0, 3_000, 10_000.0), row(1, 3.0, 0, f64::NAN)]);
    assert_eq!(t.key, "figure-10-drain");
    // 30,000 events in 2 s on 2 connections: 15,000/s, 7,500/s each, 0.75 of COPY's 10,000.
    assert_eq!(t.number(0, "events/s"), Some(15_000.0));
    assert_eq!(t.number(0, "events/s per connection"), Some(7_500.0));
    assert_eq!(t.number(0, "binary COPY rows/s"), Some(10_000.0));
    assert_eq!(t.number(0, "per connection vs COPY"), Some(0.75));
    assert_eq!(
        t.number(0, "per connection vs the write alone"),
        Some(0.625)
    );
    // 3 s of writes over 2 workers x 2 s, 3.4 s in invocations.
    assert_eq!(t.number(0, "workers' time in the write"), Some(0.75));
    assert_eq!(
        t.number(0, "workers' time in invocations (verify, decode, write)"),
        Some(0.85)
    );
    assert_eq!(
        t.get(1, "workers' time in invocations (verify, decode, write)"),
        Some(&Value::Null)
    );
    assert_eq!(
        t.number(0, "rows per invocation (and per COPY batch)"),
        Some(1_000.0)
    );
    // Not measured is unknown, never 0.
    assert_eq!(t.get(1, "binary COPY rows/s"), Some(&Value::Null));
    assert_eq!(t.get(1, "per connection vs COPY"), Some(&Value::Null));
    assert_eq!(
        t.get(1, "local SQS CPU per 1,000 events (ms)"),
        Some(&Value::Null)
    );
    assert_eq!(t.number(1, "events/s per connection"), Some(10_000.0));
}
