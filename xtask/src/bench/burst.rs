//! Figure 6: the burst experiment, Spillway against the synchronous baseline.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use spillway_support::{free_port, psql, Postgres, Service, Stack};

use super::events::{now_rfc3339, request_body};
use super::sqs::purge;
use super::{Opts, BURST_EVENTS_PER_REQUEST, BURST_MAX_CONNECTIONS};
use crate::step::{note, output, run};

// ---------------------------------------------------------------------------------------------
// Figure 6: the burst

#[derive(Debug, Clone, Default)]
pub(super) struct Sample {
    pub(super) t: f64,
    pub(super) connections: u64,
    pub(super) rows: u64,
}

#[derive(Debug, Clone, Default)]
pub(super) struct BurstResult {
    pub(super) name: String,
    pub(super) clients: usize,
    pub(super) requests: usize,
    pub(super) events_sent: usize,
    pub(super) accepted_events: usize,
    pub(super) errors: usize,
    pub(super) error_kinds: BTreeMap<String, usize>,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) all_answered_s: f64,
    pub(super) db_complete_s: Option<f64>,
    pub(super) peak_connections: u64,
    pub(super) max_connections: String,
    pub(super) lost: usize,
    pub(super) stored: usize,
    pub(super) samples: Vec<Sample>,
    /// (t, visible + in flight) of the pipeline's queue.
    pub(super) queue: Vec<(f64, u64)>,
    pub(super) setup: String,
}

/// A psql session held open for the whole burst, so watching never needs a new connection
/// (which a full server would refuse).
pub(super) struct Monitor {
    pub(super) child: Child,
    pub(super) stdin: ChildStdin,
    pub(super) stdout: BufReader<ChildStdout>,
}

impl Monitor {
    pub(super) fn start(port: u16) -> Result<Monitor> {
        let bin = spillway_support::pg_bin_dir()?.join("psql");
        let mut child = Command::new(bin)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-XAtq"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting psql")?;
        let stdin = child.stdin.take().context("psql stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("psql stdout")?);
        let mut m = Monitor {
            child,
            stdin,
            stdout,
        };
        m.query("select 1")?;
        Ok(m)
    }

    pub(super) fn query(&mut self, sql: &str) -> Result<String> {
        writeln!(self.stdin, "{sql};")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("psql monitor ended");
        }
        Ok(line.trim().to_owned())
    }

    /// (client connections other than this one, rows in `events`)
    pub(super) fn look(&mut self) -> Result<(u64, u64)> {
        let line = self.query(
            "select (select count(*) from pg_stat_activity where backend_type = 'client backend' \
             and pid <> pg_backend_pid()) || '|' || (select count(*) from events)",
        )?;
        let mut p = line.split('|').map(|v| v.parse::<u64>().unwrap_or(0));
        Ok((p.next().unwrap_or(0), p.next().unwrap_or(0)))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Restarts a cluster with PostgreSQL's default `max_connections` (the support crate starts its
/// clusters with 300 for the test suite).
pub(super) fn restart_with_max_connections(pg: &Postgres, data: &Path, max: u32) -> Result<()> {
    pg.stop()?;
    let bin = spillway_support::pg_bin_dir()?;
    let dir = data.parent().unwrap_or(data);
    let opts = format!(
        "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections={max} -c fsync=off",
        pg.port(),
        dir.display()
    );
    let root_user = output(Command::new("id").arg("-u")).as_deref() == Some("0");
    let mut c = if root_user {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join("pg_ctl"));
        c
    } else {
        Command::new(bin.join("pg_ctl"))
    };
    c.arg("-D")
        .arg(data)
        .arg("-l")
        .arg(dir.join("postgres.log"))
        .args(["-o", &opts, "-w", "-t", "30", "start"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    run(&mut c)?;
    let got = psql(pg.port(), "show max_connections")?;
    if got != max.to_string() {
        bail!("max_connections is {got}, wanted {max}");
    }
    Ok(())
}

pub(super) fn burst_spillway(stack: &mut Stack, opts: &Opts) -> Result<Vec<BurstResult>> {
    stack.stop_poller();
    let data = stack.config.dir.join("pg").canonicalize()?.join("data");
    restart_with_max_connections(&stack.pg, &data, BURST_MAX_CONNECTIONS)?;
    let mut out = Vec::new();
    for &clients in &opts.burst_clients {
        stack.stop_poller();
        purge(stack)?;
        stack.pg.psql("truncate events")?;
        stack.start_poller()?;
        let sqs = stack.sqs.clone();
        let queue = stack.env.sqs_queue_url.clone();
        let mut r = burst(
            "Spillway",
            &stack.env.ingest_url,
            Some(&stack.env.ingest_key),
            stack.pg.port(),
            Some(&move || sqs.depth(&queue).map(|(v, f)| v + f).ok()),
            clients,
            opts,
        )?;
        r.setup = "the `Stack` of `cargo xtask dev`: `wrangler dev` (release wasm, default \
                   `SQS_DEADLINE_MS` 8000), moto, the poller (debug build, defaults: \
                   `MAXIMUM_CONCURRENCY` 2, `BATCH_SIZE` 10)"
            .into();
        out.push(r);
    }
    Ok(out)
}

pub(super) fn burst_baseline(opts: &Opts) -> Result<Vec<BurstResult>> {
    let dir = spillway_support::run_dir().join(format!("baseline-{}", std::process::id()));
    let pg = Postgres::start_in(&dir, free_port()?, false)?;
    let data = dir.canonicalize()?.join("data");
    restart_with_max_connections(&pg, &data, BURST_MAX_CONNECTIONS)?;
    let bins = spillway_support::stack::debug_bin_dir();
    run(Command::new(bins.join("spillway-consumer"))
        .arg("migrate")
        .env("DATABASE_URL", pg.url())
        .stdout(Stdio::null()))?;
    let port = free_port()?;
    let mut cmd = Command::new(bins.join("spillway-baseline"));
    cmd.arg(format!("127.0.0.1:{port}")).arg(pg.url());
    let mut server = Service::spawn("baseline", cmd, &dir.join("baseline.log"))?;
    spillway_support::wait_for_port(port, Duration::from_secs(10))?;
    let mut out = Vec::new();
    let mut result = Ok(());
    for &clients in &opts.burst_clients {
        let r = pg.psql("truncate events").and_then(|_| {
            burst(
                "synchronous baseline",
                &format!("http://127.0.0.1:{port}/v1/events"),
                None,
                pg.port(),
                None,
                clients,
                opts,
            )
        });
        match r {
            Ok(mut r) => {
                r.setup = "`benches/baseline` (debug build): a thread per request, a new \
                           PostgreSQL connection per request, no pool"
                    .into();
                out.push(r);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    server.stop(Duration::from_secs(3));
    result.map(|()| out)
}

#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) latency_ms: f64,
    pub(super) status: String,
    pub(super) ids: Vec<String>,
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One client: waits at the start line, then sends its requests one after the other.
pub(super) fn client(
    url: &str,
    key: Option<&str>,
    mine: &[Vec<u8>],
    barrier: &Barrier,
) -> Vec<Outcome> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    barrier.wait();
    let mut out = Vec::new();
    for body in mine {
        let start = Instant::now();
        let mut req = agent.post(url).set("Content-Type", "application/json");
        if let Some(k) = key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        let (status, ids) = match req.send_bytes(body) {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => {
                let status = resp.status();
                let v: Value = resp.into_json().unwrap_or(Value::Null);
                let ids = match (status, v["ids"].as_array()) {
                    (202, Some(a)) => a
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                };
                (status.to_string(), ids)
            }
            Err(e) => (format!("transport: {}", e.kind()), Vec::new()),
        };
        out.push(Outcome {
            latency_ms: start.elapsed().as_secs_f64() * 1000.0,
            status,
            ids,
        });
    }
    out
}

pub(super) fn burst(
    name: &str,
    url: &str,
    key: Option<&str>,
    pg_port: u16,
    queue_depth: Option<&(dyn Fn() -> Option<u64> + Sync)>,
    clients: usize,
    opts: &Opts,
) -> Result<BurstResult> {
    let per_client = opts.burst_requests;
    let ts = now_rfc3339();
    let nonce = u128::from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    // Bodies are made before the start line, so clients only send.
    let counter = AtomicU64::new(0);
    let mut next_id = || {
        let n = u128::from(counter.fetch_add(1, Ordering::Relaxed));
        Some(uuid::Uuid::from_u128((nonce << 64) | n).to_string())
    };
    let bodies: Vec<Vec<Vec<u8>>> = (0..clients)
        .map(|c| {
            (0..per_client)
                .map(|r| {
                    request_body(
                        BURST_EVENTS_PER_REQUEST,
                        (c * per_client + r) * BURST_EVENTS_PER_REQUEST,
                        &ts,
                        &mut next_id,
                    )
                })
                .collect()
        })
        .collect();
    note(&format!(
        "{name}: {clients} clients x {per_client} request(s) x {BURST_EVENTS_PER_REQUEST} events, all released at once"
    ));
    let mut monitor = Monitor::start(pg_port)?;
    let max_connections = monitor.query("show max_connections")?;
    let samples: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
    let queue: Mutex<Vec<(f64, u64)>> = Mutex::new(Vec::new());
    let target = AtomicU64::new(u64::MAX);
    let clients_done = AtomicBool::new(false);
    let finished = AtomicBool::new(false);
    let barrier = Barrier::new(clients + 1);
    let give_up = Duration::from_secs(240);
    let mut done_at = None;
    let mut answered_at = 0.0;
    let mut outcomes = Vec::new();
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = bodies
            .iter()
            .map(|mine| {
                let barrier = &barrier;
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || client(url, key, mine, barrier))
            })
            .collect::<std::io::Result<_>>()?;
        // The queue is watched on its own thread: a busy moto answers slowly, and the database
        // samples must keep their pace.
        let queue_sampler = s.spawn(|| {
            let Some(depth) = queue_depth else { return };
            while !finished.load(Ordering::SeqCst) {
                if let Some(d) = depth() {
                    if let Ok(mut q) = queue.lock() {
                        q.push((start.elapsed().as_secs_f64(), d));
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        let sampler = s.spawn(|| {
            let mut done = None;
            loop {
                let t = start.elapsed().as_secs_f64();
                let (connections, rows) = monitor.look().unwrap_or((0, 0));
                if let Ok(mut v) = samples.lock() {
                    v.push(Sample {
                        t,
                        connections,
                        rows,
                    });
                }
                let queue_empty = queue_depth.is_none()
                    || queue
                        .lock()
                        .ok()
                        .and_then(|q| q.last().map(|(_, d)| *d == 0))
                        .unwrap_or(false);
                let all_done = clients_done.load(Ordering::SeqCst);
                if all_done && rows >= target.load(Ordering::SeqCst) && queue_empty {
                    done = Some(start.elapsed().as_secs_f64());
                    break;
                }
                if start.elapsed() > give_up {
                    break;
                }
                // Fine-grained while clients hold connections, coarser while the queue drains.
                let pause = if all_done { 200 } else { 50 };
                std::thread::sleep(Duration::from_millis(pause));
            }
            finished.store(true, Ordering::SeqCst);
            done
        });
        barrier.wait();
        for h in handles {
            outcomes.extend(h.join().map_err(|_| anyhow!("a client thread panicked"))?);
        }
        answered_at = start.elapsed().as_secs_f64();
        let accepted: usize = outcomes.iter().map(|o| o.ids.len()).sum();
        target.store(accepted as u64, Ordering::SeqCst);
        clients_done.store(true, Ordering::SeqCst);
        done_at = sampler
            .join()
            .map_err(|_| anyhow!("the sampler panicked"))?;
        queue_sampler
            .join()
            .map_err(|_| anyhow!("the queue sampler panicked"))?;
        Ok(())
    })?;
    let samples = samples.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let queue = queue.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let mut error_kinds = BTreeMap::new();
    let mut accepted_ids = Vec::new();
    let mut latencies = Vec::new();
    for o in &outcomes {
        if o.status == "202" {
            latencies.push(o.latency_ms);
            accepted_ids.extend(o.ids.iter().cloned());
        } else {
            *error_kinds.entry(o.status.clone()).or_insert(0) += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    // Reconcile: every accepted id must be in the table.
    let stored = psql(pg_port, "select id from events")?;
    let stored: HashSet<&str> = stored.lines().collect();
    let lost = accepted_ids
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .count();
    let r = BurstResult {
        name: name.into(),
        clients,
        requests: outcomes.len(),
        events_sent: clients * per_client * BURST_EVENTS_PER_REQUEST,
        accepted_events: accepted_ids.len(),
        errors: outcomes.len() - latencies.len(),
        error_kinds,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        all_answered_s: answered_at,
        db_complete_s: done_at,
        peak_connections: samples.iter().map(|s| s.connections).max().unwrap_or(0),
        max_connections,
        lost,
        stored: stored.len(),
        samples,
        queue,
        setup: String::new(),
    };
    note(&format!(
        "{} requests: {} accepted events, {} errors {:?}, p50 {:.0} ms, p99 {:.0} ms, peak {} connections, {} lost, database complete at {}",
        r.requests,
        r.accepted_events,
        r.errors,
        r.error_kinds,
        r.p50_ms,
        r.p99_ms,
        r.peak_connections,
        r.lost,
        r.db_complete_s
            .map(|s| format!("{s:.1} s"))
            .unwrap_or_else(|| "never (gave up)".into())
    ));
    Ok(r)
}
