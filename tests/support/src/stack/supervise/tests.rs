//! The supervision record's decisions: backoff, due restarts, the status line's words, the
//! record's file, and the run directory's service records.

use super::*;

#[test]
fn record_names_keep_their_dashes() {
    assert_eq!(
        record_name("kinesis-local-4242-3-123456789"),
        "kinesis-local"
    );
    assert_eq!(record_name("poller-4242-0-17"), "poller");
    assert_eq!(record_name("odd"), "odd");
}

#[test]
fn backoff_is_none_first_then_doubles_up_to_its_cap() {
    let waits: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(waits, [0, 1, 2, 4, 8, 16, 30, 30]);
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
}

#[test]
fn a_death_is_repaired_at_once_and_a_crash_loop_waits_longer() {
    let mut s = Supervision::default();
    s.found_dead(Part::Poller, "exited: signal: 9 (SIGKILL)", 1_000);
    assert!(s.due(Part::Poller, 1_000), "the first restart is immediate");
    assert_eq!(
        s.notes(4_000),
        ["poller down 3 s (exited: signal: 9 (SIGKILL)), restarting"]
    );
    s.restarted(Part::Poller, 5_000);
    assert!(!s.due(Part::Poller, 5_000));
    assert_eq!(s.parts[&Part::Poller].last_outage_ms, Some(4_000));
    assert_eq!(s.notes(17_000), ["poller restarted 1x, last 12 s ago"]);
    // Dies again 5 s after its restart: waits 1 s, then 2 s after a failed restart.
    s.found_dead(Part::Poller, "exited: exit status: 1", 10_000);
    assert!(!s.due(Part::Poller, 10_500));
    assert!(s.due(Part::Poller, 11_000));
    s.restart_failed(Part::Poller, "the poller exited at once", 11_000);
    assert!(!s.due(Part::Poller, 12_999));
    assert!(s.due(Part::Poller, 13_000));
    assert_eq!(
        s.notes(12_000),
        [
            "poller down 2 s (restart failed: the poller exited at once), next restart in 1 s, \
          restarted 1x before"
        ]
    );
    // Seen dead again while down: the outage keeps its start.
    s.found_dead(Part::Poller, "other", 12_500);
    assert_eq!(s.parts[&Part::Poller].down_since_ms, Some(10_000));
    s.restarted(Part::Poller, 13_000);
    // A death long after the last restart starts the backoff afresh.
    s.found_dead(Part::Poller, "exited", 13_000 + 60_000);
    assert!(s.due(Part::Poller, 73_000));
}

#[test]
fn the_record_round_trips_and_names_parts_in_order() {
    let mut s = Supervision {
        pid: 42,
        start: 7,
        ..Supervision::default()
    };
    s.found_dead(Part::Edge, "workerd gone", 1_000);
    s.found_dead(Part::Sqs, "exited: signal: 9 (SIGKILL)", 1_000);
    s.restarted(Part::Sqs, 2_000);
    let back = Supervision::from_json(&s.to_json()).expect("parses");
    assert_eq!(back, s);
    assert_eq!(
        back.notes(3_000),
        [
            "local SQS restarted 1x, last 1 s ago",
            "edge down 2 s (workerd gone), restarting"
        ]
    );
    assert_eq!(Supervision::from_json("{\"pid\": 1"), None);
}

#[test]
fn a_record_of_a_dead_process_is_not_alive() {
    let me = std::process::id();
    let s = Supervision {
        pid: me,
        start: process_start(me).expect("this process runs"),
        ..Supervision::default()
    };
    assert!(s.supervisor_alive());
    let reused = Supervision {
        start: s.start + 1,
        ..s.clone()
    };
    assert!(!reused.supervisor_alive(), "same pid, another process");
}
