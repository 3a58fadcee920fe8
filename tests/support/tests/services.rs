//! The services really start, answer, and stop.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spillway_support::{
    free_port, live_services, port_open, run_dir, sweep, KinesisOptions, KinesisServer, Moto,
    Postgres, Service,
};

#[test]
fn postgres_starts_stops_and_restarts() {
    let pg = Postgres::start().expect("postgres starts");
    assert_eq!(pg.psql("select 1 + 1").expect("query"), "2");
    pg.psql("create table t (x int); insert into t values (7)")
        .expect("write");
    pg.stop().expect("stop");
    assert!(!port_open(pg.port()));
    pg.start_again().expect("start again");
    assert_eq!(pg.psql("select x from t").expect("data kept"), "7");
    let port = pg.port();
    drop(pg);
    assert!(!port_open(port), "dropped cluster is down");
}

#[test]
fn moto_starts_and_stops() {
    let moto = Moto::start().expect("moto starts");
    let port = moto.port();
    let (status, _) = spillway_support::http_get(port, "/moto-api/").expect("answers");
    assert_eq!(status, 200);
    drop(moto);
    assert!(!port_open(port), "dropped moto is down");
}

/// A process tree shaped like `wrangler dev`'s: a leader that exits at once on SIGTERM (node),
/// a child in its group that ignores SIGTERM, and a grandchild that left the group (setsid)
/// and holds `port` (workerd). Each child writes its pid to `<dir>/<n>.pid` once it runs.
fn tree(dir: &Path, port: u16) -> Command {
    const CHILD: &str = r#"
import os, signal, socket, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
port = int(sys.argv[2])
if port:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"#;
    fs::create_dir_all(dir).expect("dir");
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(r#"python3 -c "$1" "$2/1.pid" 0 & setsid python3 -c "$1" "$2/2.pid" "$3" & exec sleep 600"#)
        .arg("sh")
        .arg(CHILD)
        .arg(dir)
        .arg(port.to_string());
    c
}

/// Waits until both children of [`tree`] run and the port is open; returns their pids.
fn tree_ready(dir: &Path, port: u16) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pids: Vec<u32> = ["1.pid", "2.pid"]
            .iter()
            .filter_map(|f| fs::read_to_string(dir.join(f)).ok()?.parse().ok())
            .collect();
        if pids.len() == 2 && port_open(port) {
            return pids;
        }
        assert!(Instant::now() < deadline, "the process tree did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Is `pid` a process that still runs (not gone, not a zombie)?
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

#[test]
fn stopping_a_service_waits_for_its_whole_tree() {
    let dir = run_dir().join(format!("tree-stop-{}", std::process::id()));
    let port = free_port().expect("port");
    let mut svc = Service::spawn("tree", tree(&dir, port), &dir.join("tree.log")).expect("spawn");
    let pids = tree_ready(&dir, port);
    svc.stop(Duration::from_millis(300));
    // Checked at once: when `stop` returns, nothing of the service may be left.
    for pid in &pids {
        assert!(
            !running(*pid),
            "pid {pid} of the stopped service still runs"
        );
    }
    assert!(
        !port_open(port),
        "port {port} of the stopped service is open"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// What `cargo xtask down` does: the owner is gone, only the record is left.
#[test]
fn sweep_waits_for_the_whole_tree_of_a_detached_service() {
    use std::os::unix::process::CommandExt;
    let dir = run_dir().join(format!("tree-sweep-{}", std::process::id()));
    let records = dir.join("records");
    fs::create_dir_all(&records).expect("records dir");
    let port = free_port().expect("port");
    let mut child = tree(&dir, port)
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
    fs::write(
        records.join("tree.service"),
        format!("group {}", child.id()),
    )
    .expect("record");
    let pids = tree_ready(&dir, port);
    assert_eq!(live_services(&records), 1);
    assert_eq!(sweep(&records, Duration::from_millis(300)), 1);
    for pid in &pids {
        assert!(!running(*pid), "pid {pid} of the swept service still runs");
    }
    assert!(!port_open(port), "port {port} of the swept service is open");
    assert_eq!(live_services(&records), 0);
    let _ = child.wait();
    let _ = fs::remove_dir_all(&dir);
}

/// As root the server runs as the `postgres` user, which cannot enter a directory of mode 0700
/// such as `/root`; a cluster asked for inside one must start all the same, be found there
/// again with its data, and leave that directory's mode alone.
#[test]
fn postgres_starts_inside_a_private_directory() {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let private = run_dir().join(format!("private-{}", std::process::id()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .expect("private dir");
    let dir = private.join("pg");
    let pg = Postgres::start_in(&dir, free_port().expect("port"), true)
        .expect("starts inside a 0700 directory");
    pg.psql("create table t (x int); insert into t values (7)")
        .expect("write");
    let port = pg.port();
    drop(pg);
    assert!(!port_open(port));
    // Kept (`keep`): a second start finds the cluster where it was asked for.
    let pg = Postgres::start_in(&dir, free_port().expect("port"), false).expect("starts again");
    assert_eq!(pg.psql("select x from t").expect("data kept"), "7");
    drop(pg);
    let mode = fs::metadata(&private)
        .expect("private dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the private directory's mode changed");
    assert!(
        fs::symlink_metadata(&dir).is_err(),
        "dropped cluster left {}",
        dir.display()
    );
    let _ = fs::remove_dir_all(&private);
}

/// The reason the local Kinesis is kinesis-local and not moto (moto 5.2.5 lost 2 of 1,200
/// acknowledged records this way): 16 threads put 10 `PutRecords` calls of 10 records each at
/// once on a 4-shard stream. Every record must be acknowledged (a throttled entry is put again,
/// as the edge does), and reading the stream back must give every record once, each under a
/// sequence number of its own.
#[test]
fn kinesis_local_keeps_every_acknowledged_record() {
    use spillway_support::kinesis::PutResult;
    use std::collections::{BTreeMap, BTreeSet};

    const THREADS: usize = 16;
    const CALLS: usize = 10;
    const PER_CALL: usize = 10;
    let server = KinesisServer::start(&KinesisOptions {
        stream: "concurrent".into(),
        shards: 4,
        persist_dir: None,
    })
    .expect("kinesis-local starts");
    assert_eq!(server.shards(), 4);
    let acked: Vec<(String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let client = server.client();
                s.spawn(move || {
                    let mut acked = Vec::new();
                    for c in 0..CALLS {
                        let mut pending: Vec<(String, Vec<u8>)> = (0..PER_CALL)
                            .map(|i| {
                                let id = format!("t{t}-c{c}-r{i}");
                                (id.clone(), id.into_bytes())
                            })
                            .collect();
                        let deadline = Instant::now() + Duration::from_secs(60);
                        while !pending.is_empty() {
                            assert!(Instant::now() < deadline, "puts still throttled after 60 s");
                            let results = client
                                .put_records("concurrent", &pending)
                                .expect("PutRecords answers");
                            let mut again = Vec::new();
                            for (record, result) in pending.into_iter().zip(results) {
                                match result {
                                    PutResult::Stored {
                                        sequence_number, ..
                                    } => acked.push((record.0, sequence_number)),
                                    PutResult::Refused { .. } => again.push(record),
                                }
                            }
                            pending = again;
                        }
                    }
                    acked
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("put thread"))
            .collect()
    });
    let total = THREADS * CALLS * PER_CALL;
    assert_eq!(acked.len(), total, "every record acknowledged");
    let acked_seqs: BTreeSet<&str> = acked.iter().map(|(_, seq)| seq.as_str()).collect();
    assert_eq!(
        acked_seqs.len(),
        total,
        "acknowledged sequence numbers unique"
    );

    let read = server.client().read_all("concurrent").expect("read back");
    let by_seq: BTreeMap<&str, &str> = read
        .iter()
        .map(|r| (r.sequence_number.as_str(), r.partition_key.as_str()))
        .collect();
    assert_eq!(read.len(), total, "every record read back once");
    assert_eq!(by_seq.len(), total, "read sequence numbers unique");
    for (key, seq) in &acked {
        assert_eq!(
            by_seq.get(seq.as_str()),
            Some(&key.as_str()),
            "record {key} under its acknowledged sequence number"
        );
    }
    for r in &read {
        assert_eq!(r.data, r.partition_key.as_bytes(), "data unchanged");
    }
    let port = server.port();
    server.stop();
    assert!(!port_open(port), "stopped kinesis-local is down");
}

/// With a data directory, a stream and its records survive a stop (SIGTERM) and a start, as
/// `cargo xtask down` and `up` need; without one, they do not.
#[test]
fn kinesis_local_persists_its_stream_across_a_restart() {
    let dir = run_dir().join(format!("kinesis-persist-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let options = KinesisOptions {
        stream: "kept".into(),
        shards: 2,
        persist_dir: Some(dir.clone()),
    };
    let server = KinesisServer::start(&options).expect("kinesis-local starts");
    let records: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("k{i}"), format!("record {i}").into_bytes()))
        .collect();
    let put = server
        .client()
        .put_records("kept", &records)
        .expect("PutRecords");
    assert_eq!(put.len(), 20);
    let before = server.client().read_all("kept").expect("read");
    assert_eq!(before.len(), 20);
    // What `Stack::drained` asks of each shard: anything after this sequence number?
    let client = server.client();
    for shard in client.shard_ids("kept").expect("shards") {
        let records = client.read_shard("kept", &shard).expect("shard");
        let last = records.last().map(|r| r.sequence_number.as_str());
        assert_eq!(
            client
                .has_records_after("kept", &shard, None)
                .expect("from the start"),
            last.is_some()
        );
        if let (Some(first), Some(last)) = (records.first(), last) {
            assert_eq!(
                client
                    .has_records_after("kept", &shard, Some(&first.sequence_number))
                    .expect("after the first"),
                records.len() > 1
            );
            assert!(!client
                .has_records_after("kept", &shard, Some(last))
                .expect("after the last"));
        }
    }
    // Stopped right after the put, within the 5 s persist interval: what is kept is what the
    // shutdown wrote.
    server.stop();
    assert!(
        dir.join("kinesis-data.json").is_file(),
        "state written on SIGTERM"
    );

    // Asked for 4 shards this time: the reloaded stream keeps its 2.
    let again = KinesisServer::start(&KinesisOptions {
        shards: 4,
        ..options.clone()
    })
    .expect("kinesis-local starts again");
    assert_eq!(again.shards(), 2, "the stream was reloaded, not created");
    let after = again.client().read_all("kept").expect("read after restart");
    assert_eq!(after, before, "same records, same sequence numbers");
    again.stop();

    let fresh = KinesisServer::start(&KinesisOptions {
        persist_dir: None,
        ..options
    })
    .expect("kinesis-local starts in memory");
    assert!(
        fresh.client().read_all("kept").expect("read").is_empty(),
        "without a data directory nothing is reloaded"
    );
    drop(fresh);
    let _ = fs::remove_dir_all(&dir);
}
