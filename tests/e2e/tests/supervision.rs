//! End to end through the faults issue 30 found, on the local pipeline as `cargo xtask up`
//! supervises it ([`Stack::heal`] about once a second, as the supervisor does):
//!
//! - steady traffic through a SIGKILL of the poller and then of the edge's `workerd`, each sent
//!   from outside as a crash would come: each is replaced within 10 s, the status names the
//!   fault while it lasts and the restart afterwards, and every accepted id is stored once;
//! - the check `cargo xtask down` makes: with events queued and nothing to drain them it
//!   refuses, naming the count; with the poller back it waits for them to drain.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use spillway_e2e::{mixed, reconcile, start, wait_until, Client, Ledger, Request, StopOnDrop};
use spillway_support::stack::{read_status, wait_drained, Part, Supervision};
use spillway_support::Stack;

/// The bar: a SIGKILLed poller or workerd is replaced within this long.
const REPLACED_WITHIN: Duration = Duration::from_secs(10);

fn sigkill(pid: u32) {
    let ok = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "SIGKILL to {pid}");
}

/// Sends `req` until it is answered `202`, whatever comes back meanwhile (a refused connection
/// or a plain-text `503` while the edge is being replaced): its ids are stable, so a retry
/// stores nothing twice. Returns the ids and how many attempts failed.
fn send_until_202(client: &Client, req: &Request, give_up: Duration) -> (Vec<String>, u64) {
    let deadline = Instant::now() + give_up;
    let mut failed = 0;
    loop {
        match client.send(req) {
            Ok(a) if a.status == 202 => return (a.ids(), failed),
            other => {
                failed += 1;
                assert!(
                    Instant::now() < deadline,
                    "not accepted in {give_up:?}: last answer {:?}",
                    other.map(|a| (a.status, a.body))
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

/// The supervisor's notes as the status line shows them.
fn notes(stack_dir: &std::path::Path) -> Vec<String> {
    Supervision::read(stack_dir)
        .map(|s| s.notes(spillway_support::stack::now_ms()))
        .unwrap_or_default()
}

/// Kills with `kill`, then waits (polling every 50 ms) until the supervisor has restarted
/// `part` (`restarts` reaches one more than before). Returns whether the status named `part` as
/// down meanwhile (the supervisor's notes, which the status line ends with; and the status
/// line's own figures, each probe bounded, taken once while it is down), how long the
/// replacement took from the kill, and that status's notes and problems.
fn kill_and_watch(
    dir: &std::path::Path,
    part: Part,
    kill: impl FnOnce(),
    env: &spillway_support::stack::DevEnv,
) -> (bool, Duration, Vec<String>) {
    let before = Supervision::read(dir)
        .and_then(|s| s.parts.get(&part).map(|l| l.restarts))
        .unwrap_or(0);
    let killed = Instant::now();
    kill();
    let mut seen_down = false;
    let mut lines = Vec::new();
    let down = format!("{} down", part.name());
    loop {
        if !seen_down && notes(dir).iter().any(|n| n.starts_with(&down)) {
            seen_down = true;
            let s = read_status(env, dir).expect("status while a part is down");
            lines = s.supervision.clone();
            lines.extend(s.problems.clone());
        }
        let (restarts, down_since) = Supervision::read(dir)
            .and_then(|s| s.parts.get(&part).map(|l| (l.restarts, l.down_since_ms)))
            .unwrap_or((0, None));
        if restarts > before && down_since.is_none() {
            return (seen_down, killed.elapsed(), lines);
        }
        assert!(
            killed.elapsed() < Duration::from_secs(120),
            "{} not restarted in 120 s: {:?}",
            part.name(),
            notes(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_poller_and_workerd_are_replaced_within_10_s_and_nothing_is_lost() {
    if !spillway_support::worker_built(
        "a_killed_poller_and_workerd_are_replaced_within_10_s_and_nothing_is_lost",
    ) {
        return;
    }
    let stack = start("supervision", |_| {});
    let client = Client::new(&stack);
    let env = stack.env.clone();
    let dir = stack.config.dir.clone();
    let edge_port = stack.config.edge_port;
    let stack = Mutex::new(stack);
    let ledger = Ledger::default();
    let failed_attempts = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let stop_healing = AtomicBool::new(false);

    std::thread::scope(|s| {
        // The supervisor, as `xtask supervise` runs it.
        s.spawn(|| {
            while !stop_healing.load(Ordering::SeqCst) {
                for line in stack.lock().expect("stack").heal() {
                    eprintln!("[supervision] {line}");
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        for t in 0..2 {
            let (client, ledger, stop, failed_attempts) =
                (&client, &ledger, &stop, &failed_attempts);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let req = mixed(t * 10_000 + i, false);
                    let (ids, failed) = send_until_202(client, &req, Duration::from_secs(120));
                    failed_attempts.fetch_add(failed, Ordering::SeqCst);
                    ledger.record(&req, ids, 0);
                    std::thread::sleep(Duration::from_millis(200));
                    i += 1;
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        let _stop_healing = StopOnDrop(&stop_healing);
        let accepted = || ledger.requests.load(Ordering::SeqCst);
        wait_until("traffic flows", Duration::from_secs(60), || accepted() >= 5)
            .expect("requests accepted");

        // The poller, SIGKILLed mid-traffic.
        let poller = stack.lock().expect("stack").poller_pid().expect("poller");
        let (seen, took, lines) = kill_and_watch(&dir, Part::Poller, || sigkill(poller), &env);
        eprintln!("[supervision] poller replaced in {took:?}; status while down: {lines:?}");
        assert!(took <= REPLACED_WITHIN, "poller replaced in {took:?}");
        let record = Supervision::read(&dir).expect("record");
        let log = &record.parts[&Part::Poller];
        // Seen down on the status line, unless the whole outage was shorter than a look at it.
        let lasted = log.last_outage_ms.expect("an outage was recorded");
        assert!(
            seen || lasted < 500,
            "the status never named the dead poller (down {lasted} ms): {lines:?}"
        );
        let new = stack.lock().expect("stack").poller_pid().expect("poller");
        assert_ne!(new, poller, "a new poller runs");
        let line = read_status(&env, &dir).expect("status").supervision;
        assert!(
            line.iter()
                .any(|n| n.starts_with("poller restarted 1x, last ")),
            "{line:?}"
        );

        let after = accepted();
        wait_until("traffic after the poller", Duration::from_secs(60), || {
            accepted() >= after + 5
        })
        .expect("traffic goes on");

        // The edge's workerd, SIGKILLed: wrangler stays, serving nothing.
        let workerd = stack.lock().expect("stack").workerd_pids();
        assert!(!workerd.is_empty(), "wrangler dev runs a workerd");
        let (seen, took, lines) = kill_and_watch(
            &dir,
            Part::Edge,
            || workerd.iter().copied().for_each(sigkill),
            &env,
        );
        eprintln!("[supervision] edge replaced in {took:?}; status while down: {lines:?}");
        assert!(took <= REPLACED_WITHIN, "edge replaced in {took:?}");
        assert!(seen, "the status named the dead edge while it lasted");
        assert!(
            lines.iter().any(|l| l.starts_with("edge down ")),
            "the status line named it: {lines:?}"
        );
        assert!(
            spillway_support::stack::edge_healthy(edge_port, Duration::from_secs(5)),
            "the new edge answers /healthz"
        );
        let status = read_status(&env, &dir).expect("status");
        assert!(
            status
                .supervision
                .iter()
                .any(|n| n.starts_with("edge restarted 1x, last ")),
            "{:?}",
            status.supervision
        );
        // Every part answers again (a loaded machine may take a moment to answer /healthz in
        // the status's 2 s).
        wait_until("a status without problems", Duration::from_secs(60), || {
            read_status(&env, &dir).is_ok_and(|s| s.problems.is_empty())
        })
        .expect("the status line is clean again");

        let after = accepted();
        wait_until("traffic after the edge", Duration::from_secs(90), || {
            accepted() >= after + 10
        })
        .expect("traffic goes on");
        stop.store(true, Ordering::SeqCst);
    });

    let stack: Stack = stack.into_inner().expect("stack");
    let record = Supervision::read(&stack.config.dir).expect("record");
    let restarts: Vec<(Part, u32)> = record.parts.iter().map(|(p, l)| (*p, l.restarts)).collect();
    assert_eq!(
        restarts,
        [(Part::Poller, 1), (Part::Edge, 1)],
        "exactly the two kills were repaired, nothing else"
    );
    eprintln!(
        "[supervision] {} requests accepted, {} attempts failed on the way",
        ledger.requests.load(Ordering::SeqCst),
        failed_attempts.load(Ordering::SeqCst)
    );
    reconcile(&stack, &ledger, Duration::from_secs(240)).expect("every accepted event stored once");
}

#[test]
fn down_refuses_naming_the_count_then_waits_for_the_queue_to_drain() {
    if !spillway_support::worker_built(
        "down_refuses_naming_the_count_then_waits_for_the_queue_to_drain",
    ) {
        return;
    }
    let mut stack = start("down-drain", |_| {});
    let client = Client::new(&stack);
    let ledger = Ledger::default();
    // Nothing consumes: what is accepted stays on the queue.
    stack.stop_poller();
    for i in 0..6 {
        let req = mixed(i, false);
        let (ids, _) = send_until_202(&client, &req, Duration::from_secs(60));
        ledger.record(&req, ids, 0);
    }
    let dir = stack.config.dir.clone();
    let env = stack.env.clone();
    let queued = || {
        let s = read_status(&env, &dir).expect("status");
        s.visible + s.in_flight
    };
    wait_until(
        "the queue holds the events",
        Duration::from_secs(30),
        || queued() >= 1,
    )
    .expect("queued");
    let n = queued();

    let err = wait_drained(&env, &dir, Duration::from_secs(5), false, &mut |_| {})
        .expect_err("refuses with nothing to drain the queue");
    let err = err.to_string();
    eprintln!("[down-drain] {err}");
    assert!(
        err.starts_with(&format!("refusing to stop: {n} queued message(s)")),
        "{err}"
    );
    assert!(err.contains("cargo xtask down --force"), "{err}");
    assert_eq!(queued(), n, "refusing touched nothing");

    // A poller again: `down` waits for the queue to drain, showing its progress.
    stack.start_poller().expect("poller");
    let mut lines = Vec::new();
    wait_drained(&env, &dir, Duration::from_secs(120), true, &mut |l| {
        lines.push(l.to_owned())
    })
    .expect("drains");
    assert_eq!(queued(), 0);
    reconcile(&stack, &ledger, Duration::from_secs(60)).expect("every accepted event stored once");
    eprintln!("[down-drain] {n} messages drained; progress: {lines:?}");
}
