//! End to end through an SQS outage with the spill queue on (the project's wrangler.toml): SQS
//! stalls for a minute under steady traffic, every request is answered `202` within the
//! deadline (its events spilled to the Cloudflare Queue, under `wrangler dev` Miniflare's), and
//! once SQS is back the replay brings them to SQS and the consumer stores every accepted event
//! exactly once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use spillway_e2e::{mixed, reconcile, start, wait_until, Client, Ledger, StopOnDrop};
use spillway_support::stack::spill_counts;
use spillway_support::FaultMode;

const DEADLINE_MS: u64 = 2_000;
/// What a loaded machine may add to the deadline around a request (wrangler dev, the client).
const SLACK_MS: u64 = 3_000;
const STALL: Duration = Duration::from_secs(60);

/// How the requests went, from every client thread.
#[derive(Default)]
struct Seen {
    answered: AtomicU64,
    not_202: Mutex<Vec<String>>,
    slowest_ms: AtomicU64,
}

#[test]
fn sqs_stalled_for_a_minute_every_request_202_and_stored_once() {
    if !spillway_support::worker_built("sqs_stalled_for_a_minute_every_request_202_and_stored_once")
    {
        return;
    }
    let stack = start("spill-stall", |c| {
        c.edge_sqs_proxy = true;
        c.edge_vars = vec![("SQS_DEADLINE_MS".into(), DEADLINE_MS.to_string())];
    });
    let proxy = stack.proxy.as_ref().expect("proxy");
    let client = Client::new(&stack);
    let ledger = Ledger::default();
    let seen = Seen::default();
    let stop = AtomicBool::new(false);
    let log = stack.config.dir.join("logs/edge.log");

    std::thread::scope(|s| {
        // Two clients, a request every 200 ms each, that never retry: what they hear is final.
        for t in 0..2 {
            let (client, ledger, seen, stop) = (&client, &ledger, &seen, &stop);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let req = mixed(t * 10_000 + i, true);
                    let started = Instant::now();
                    let answer = client.send(&req);
                    let took = started.elapsed().as_millis() as u64;
                    seen.slowest_ms.fetch_max(took, Ordering::SeqCst);
                    seen.answered.fetch_add(1, Ordering::SeqCst);
                    match answer {
                        Ok(a) if a.status == 202 => ledger.record(&req, a.ids(), 0),
                        Ok(a) => seen
                            .not_202
                            .lock()
                            .expect("lock")
                            .push(format!("{} {}", a.status, a.body)),
                        Err(e) => seen.not_202.lock().expect("lock").push(e.to_string()),
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    i += 1;
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        let accepted = || ledger.requests.load(Ordering::SeqCst);
        wait_until(
            "requests accepted before the stall",
            Duration::from_secs(60),
            || accepted() >= 5,
        )
        .expect("traffic flows");

        proxy.set_mode(FaultMode::Stall);
        let stalled_at = Instant::now();
        let before = accepted();
        std::thread::sleep(STALL);
        let during = accepted() - before;
        let (spilled, _) = spill_counts(&log);
        proxy.set_mode(FaultMode::Pass);
        eprintln!(
            "[spill-stall] {during} requests accepted during the {:.0} s stall, {spilled} events spilled",
            stalled_at.elapsed().as_secs_f64()
        );
        assert!(during >= 20, "traffic went on during the stall: {during}");
        assert!(spilled > 0, "events were spilled");
        assert!(
            proxy.faulted_in(FaultMode::Stall) > 0,
            "the proxy stalled SQS"
        );

        // Traffic after the stall, then stop.
        let after = accepted();
        wait_until(
            "requests accepted after the stall",
            Duration::from_secs(60),
            || accepted() >= after + 10,
        )
        .expect("traffic goes on after the stall");
        stop.store(true, Ordering::SeqCst);
    });

    let not_202 = seen.not_202.lock().expect("lock").clone();
    assert!(
        not_202.is_empty(),
        "{} of {} requests not answered 202: {:?}",
        not_202.len(),
        seen.answered.load(Ordering::SeqCst),
        &not_202[..not_202.len().min(5)]
    );
    let slowest = seen.slowest_ms.load(Ordering::SeqCst);
    assert!(
        slowest <= DEADLINE_MS + SLACK_MS,
        "a request took {slowest} ms (deadline {DEADLINE_MS} ms)"
    );
    reconcile(&stack, &ledger, Duration::from_secs(240)).expect("every accepted event stored once");
    // The table can be complete before the replay is: an event whose SQS send outlived the
    // deadline (a loaded machine, a slow local SQS) but reached SQS was spilled too; it gets to
    // the table by SQS while its spilled copy still waits in the spill queue (its batch timeout,
    // a retry's delay, the breaker's probe). So wait for the replay itself, with a deadline.
    let replay_done = wait_until(
        "every spilled event replayed",
        Duration::from_secs(120),
        || {
            let (spilled, replayed) = spill_counts(&log);
            replayed >= spilled
        },
    );
    let (spilled, replayed) = spill_counts(&log);
    eprintln!("[spill-stall] spilled {spilled}, replayed {replayed}, slowest answer {slowest} ms");
    assert!(
        replay_done.is_ok(),
        "replayed {replayed} of {spilled} spilled"
    );
}
