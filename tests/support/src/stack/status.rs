//! One look at a running stack, for the status line of `cargo xtask dev` and `status`: what the
//! edge accepted (from its request log), what the queue holds (SQS) or how far the poller is
//! behind the stream (Kinesis), what the dead-letter queue and the table hold.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{BufferKind, DevEnv, REGION};
use crate::kinesis::LocalKinesis;
use crate::sqs::LocalSqs;
use crate::SqsKind;

/// Where the poller keeps its Kinesis checkpoints (`CHECKPOINT_FILE`), under the stack's
/// directory: beside the stream's persisted data (`kinesis/`), so that the two are kept, or
/// removed, together.
pub fn checkpoint_file(dir: &Path) -> std::path::PathBuf {
    dir.join("kinesis/checkpoint.json")
}

/// The stream's part of a status, with the Kinesis buffer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStatus {
    pub name: String,
    /// Open shards, as the local Kinesis reports them.
    pub shards: u32,
    /// The largest `millis_behind_latest` of any shard in the poller's checkpoint file: how far
    /// the consumer is behind the newest record. `None` before the poller's first checkpoint.
    pub millis_behind: Option<u64>,
    /// Batches given up on (retries or record age exhausted): messages on the on-failure
    /// destination.
    pub failed_batches: u64,
}

/// One look at the pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// Events accepted by the edge (`202`, or `200` on a collector route), from its request log.
    pub accepted: u64,
    pub visible: u64,
    pub in_flight: u64,
    pub dlq: u64,
    pub rows: u64,
    /// Which local SQS server the queue figures come from.
    pub sqs: SqsKind,
    /// Largest `stored_at - received_at` among rows stored in the last 10 s, in ms.
    pub lag_ms: Option<u64>,
    /// Events the edge wrote to its spill queue because SQS did not take them in time.
    pub spilled: u64,
    /// Spilled events the replay has since put on SQS.
    pub replayed: u64,
    /// With the Kinesis buffer, the stream (`visible` and `in_flight` are then 0: there is no
    /// queue).
    pub stream: Option<StreamStatus>,
    /// `visible` and `in_flight` could not be read (the local SQS did not answer): they are
    /// then 0, and not to be believed.
    pub queue_unread: bool,
    /// `rows` could not be read (the database did not answer).
    pub rows_unread: bool,
    /// What could not be read, one phrase per part: `SQS unreachable`, `SQS not answering in
    /// 2 s`, `database unreachable`, `edge not answering /healthz in 2 s`.
    pub problems: Vec<String>,
    /// The supervisor's record ([`super::Supervision::notes`]): what is down, what was
    /// restarted and how often, and whether a supervisor runs at all. Empty when no supervisor
    /// ever ran for this stack.
    pub supervision: Vec<String>,
}

impl Status {
    /// Events accepted and not (yet) stored: with Kinesis, the records in the stream the
    /// consumer has not got through, counted in events. A duplicate stored once, or a dead
    /// letter, makes it differ from what is in flight, so it is a hint, not an invariant.
    pub fn unstored(&self) -> u64 {
        self.accepted.saturating_sub(self.rows)
    }

    /// Events that `cargo xtask down` would lose, by where they are, as far as this status
    /// could read (see [`Status::problems`]): `(queue messages, spilled and not yet replayed)`.
    /// The queue's count is of messages, which hold one event or more; with Kinesis it is 0
    /// (kinesis-local writes the stream to disk when stopped, and the poller's checkpoints are
    /// kept beside it).
    pub fn at_risk(&self) -> (u64, u64) {
        (
            self.visible + self.in_flight,
            self.spilled.saturating_sub(self.replayed),
        )
    }
}

/// The largest `millis_behind_latest` among the shards of a poller checkpoint file
/// (`{"stream_arn": ..., "shards": {"shardId-...": {"millis_behind_latest": N, ...}}}`);
/// `None` when the text is not such a file or names no shard.
pub fn max_millis_behind(checkpoint_json: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(checkpoint_json).ok()?;
    v["shards"]
        .as_object()?
        .values()
        .filter_map(|s| s["millis_behind_latest"].as_u64())
        .max()
}

/// The stream name of a Kinesis stream ARN (`...:stream/NAME`).
pub fn stream_name(arn: &str) -> Option<&str> {
    arn.rsplit_once(":stream/")
        .map(|(_, name)| name)
        .filter(|n| !n.is_empty())
}

fn port_of(url: &str) -> Result<u16> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {url}"))
}

/// How long one probe of a status may take: a stalled server is reported as not answering
/// instead of holding the status line (a status asks the local SQS at most once after a
/// timeout, the edge once, the database once, the local Kinesis at most twice).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a failed probe is called on the status line: `unreachable` (nothing listens: the server
/// is gone), `not answering in 2 s` (it is there but stalled or overloaded), or the error.
pub fn probe_error(what: &str, e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    if text.contains("Connection refused") {
        format!("{what} unreachable")
    } else if text.contains("timed out")
        || text.contains("Resource temporarily unavailable")
        || text.contains("would block")
    {
        format!("{what} not answering in {} s", PROBE_TIMEOUT.as_secs())
    } else {
        let first = text.lines().next().unwrap_or_default();
        format!("{what}: {first}")
    }
}

/// One look at the pipeline described by `env`, whose state (logs) is in `dir`. Fails only on a
/// `dev.env` it cannot read ports from: a part that does not answer (a stopped or stalled local
/// SQS, the database, the edge) is named in the status ([`Status::problems`]) and its figures are
/// left at zero, and each probe gives up after [`PROBE_TIMEOUT`].
pub fn read_status(env: &DevEnv, dir: &Path) -> Result<Status> {
    let sqs = LocalSqs::new(port_of(&env.sqs_endpoint)?, REGION).with_timeout(PROBE_TIMEOUT);
    let mut problems = Vec::new();
    // After one failed call the server is not asked again: a stalled one would cost a timeout
    // per queue.
    let mut sqs_down = false;
    let mut depth = |url: &str, problems: &mut Vec<String>| -> Option<(u64, u64)> {
        if sqs_down {
            return None;
        }
        match sqs.depth(url) {
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(probe_error("SQS", &e));
                sqs_down = true;
                None
            }
        }
    };
    let (queue, stream) = match (env.buffer, &env.kinesis) {
        (BufferKind::Sqs, _) => (depth(&env.sqs_queue_url, &mut problems), None),
        (BufferKind::Kinesis, None) => {
            anyhow::bail!("BUFFER=kinesis without the stream's settings")
        }
        (BufferKind::Kinesis, Some(k)) => {
            let name = stream_name(&k.stream_arn)
                .with_context(|| format!("no stream name in {}", k.stream_arn))?;
            let kinesis =
                LocalKinesis::new(port_of(&k.endpoint)?, REGION).with_timeout(PROBE_TIMEOUT);
            let shards = match kinesis.summary(name) {
                Ok((_, shards)) => shards,
                Err(e) => {
                    problems.push(probe_error("Kinesis", &e));
                    0
                }
            };
            let failed = depth(&k.on_failure_url, &mut problems).map_or(0, |(v, f)| v + f);
            let millis_behind = fs::read_to_string(checkpoint_file(dir))
                .ok()
                .and_then(|t| max_millis_behind(&t));
            (
                Some((0, 0)),
                Some(StreamStatus {
                    name: name.to_owned(),
                    shards,
                    millis_behind,
                    failed_batches: failed,
                }),
            )
        }
    };
    let dlq = depth(&env.sqs_dlq_url, &mut problems);
    let db_port = env
        .database_url
        .split('@')
        .nth(1)
        .and_then(|hp| hp.split('/').next())
        .and_then(|hp| hp.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {}", env.database_url))?;
    let (rows, lag_ms) = match bounded_psql(
        db_port,
        // Never wait on a lock: a status view must not hang behind a long transaction.
        "set lock_timeout = '1s'; set statement_timeout = '2s'; \
         select count(*), (select (extract(epoch from max(stored_at - received_at)) * 1000)::bigint \
         from events where stored_at > now() - interval '10 seconds') from events",
    ) {
        Ok(line) => {
            let mut parts = line.split('|');
            let rows = parts.next().and_then(|v| v.parse().ok());
            let lag = parts.next().and_then(|v| v.parse().ok());
            (rows, lag)
        }
        Err(e) => {
            problems.push(probe_error("database", &e));
            (None, None)
        }
    };
    let edge_port = env
        .ingest_url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok());
    if let Some(port) = edge_port {
        if !super::edge_healthy(port, PROBE_TIMEOUT) {
            problems.push(format!(
                "edge not answering /healthz in {} s",
                PROBE_TIMEOUT.as_secs()
            ));
        }
    }
    let supervision = super::Supervision::read(dir).map(|s| {
        let mut notes = s.notes(super::now_ms());
        if !s.supervisor_alive() {
            notes.push("supervisor not running: nothing restarts a dead part".to_owned());
        }
        notes
    });
    let log = dir.join("logs/edge.log");
    let (spilled, replayed) = spill_counts(&log);
    let (visible, in_flight) = queue.unwrap_or_default();
    Ok(Status {
        accepted: accepted_events(&log),
        spilled,
        replayed,
        visible,
        in_flight,
        queue_unread: queue.is_none(),
        dlq: dlq.map_or(0, |(v, f)| v + f),
        rows: rows.unwrap_or(0),
        rows_unread: rows.is_none(),
        sqs: env.sqs_server,
        lag_ms,
        stream,
        problems,
        supervision: supervision.unwrap_or_default(),
    })
}

/// psql with a bound on connecting (`PGCONNECT_TIMEOUT`) and, through coreutils `timeout`, on
/// the whole call: a stopped (SIGSTOP) server accepts the connection and then answers nothing.
fn bounded_psql(port: u16, sql: &str) -> Result<String> {
    let secs = PROBE_TIMEOUT.as_secs().to_string();
    let out = std::process::Command::new("timeout")
        .args(["-s", "KILL", &secs])
        .arg(crate::pg_bin_dir()?.join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-c", sql])
        .env("PGCONNECT_TIMEOUT", &secs)
        .output()
        .context("running psql")?;
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        // Killed by `timeout`: no exit code.
        None => anyhow::bail!("timed out"),
        Some(_) => {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("Connection refused") || err.contains("No such file") {
                anyhow::bail!("Connection refused")
            }
            anyhow::bail!("psql: {}", err.trim())
        }
    }
}

/// The edge log's JSON lines.
fn log_lines(log: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = fs::read_to_string(log) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect()
}

/// (spilled, replayed) events in the edge's log: `spilled` of accepted requests, `replayed` of
/// the replay consumer's lines (`"kind":"replay"`).
pub fn spill_counts(log: &Path) -> (u64, u64) {
    let lines = log_lines(log);
    let spilled = lines
        .iter()
        .filter(|v| matches!(v["status"].as_u64(), Some(200 | 202)))
        .filter_map(|v| v["spilled"].as_u64())
        .sum();
    let replayed = lines
        .iter()
        .filter(|v| v["kind"] == "replay")
        .filter_map(|v| v["replayed"].as_u64())
        .sum();
    (spilled, replayed)
}

/// Sums the events of accepted requests in the edge's request log (one JSON line per request):
/// `202` from `/v1/events`, `200` from the collector routes (`/healthz` counts no events).
pub fn accepted_events(log: &Path) -> u64 {
    log_lines(log)
        .into_iter()
        .filter(|v| matches!(v["status"].as_u64(), Some(200 | 202)))
        .filter_map(|v| v["events"].as_u64())
        .sum()
}

#[cfg(test)]
mod accepted_tests {
    use super::*;

    #[test]
    fn accepted_counts_202_and_collector_200_answers() {
        let dir = std::env::temp_dir().join(format!("spillway-accepted-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("edge.log");
        fs::write(
            &log,
            concat!(
                "[wrangler:info] {\"path\":\"/v1/events\",\"status\":202,\"events\":3}\n",
                "{\"path\":\"/v1/batch\",\"status\":200,\"events\":15}\n",
                "{\"path\":\"/healthz\",\"status\":200,\"events\":0}\n",
                "{\"path\":\"/batch/\",\"status\":503,\"events\":20}\n",
                "not json\n",
            ),
        )
        .expect("write");
        assert_eq!(accepted_events(&log), 18);
        fs::write(
            &log,
            concat!(
                "{\"path\":\"/v1/events\",\"status\":202,\"events\":3,\"spilled\":3}\n",
                "{\"path\":\"/v1/events\",\"status\":503,\"events\":2,\"spilled\":2}\n",
                "{\"kind\":\"replay\",\"messages\":1,\"replayed\":2}\n",
                "{\"kind\":\"replay\",\"messages\":1,\"replayed\":0}\n",
            ),
        )
        .expect("write");
        assert_eq!(spill_counts(&log), (3, 2));
        assert_eq!(accepted_events(&log), 3);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn behind_is_the_largest_of_any_shard() {
        let file = r#"{"stream_arn": "arn:aws:kinesis:us-east-1:000000000000:stream/s",
            "shards": {
                "shardId-000000000000": {"checkpoint": "4968", "millis_behind_latest": 120, "updated_at_ms": 1},
                "shardId-000000000001": {"checkpoint": null, "millis_behind_latest": 3400, "updated_at_ms": 2},
                "shardId-000000000002": {"checkpoint": "4969", "millis_behind_latest": 0, "updated_at_ms": 3}
            }}"#;
        assert_eq!(max_millis_behind(file), Some(3400));
        assert_eq!(
            max_millis_behind(r#"{"stream_arn": "a", "shards": {}}"#),
            None
        );
        assert_eq!(
            max_millis_behind("{\"stream_arn\": \"a\", \"sh"),
            None,
            "torn"
        );
        assert_eq!(max_millis_behind("[]"), None);
    }

    #[test]
    fn stream_names_come_from_the_arn() {
        assert_eq!(
            stream_name("arn:aws:kinesis:us-east-1:000000000000:stream/spillway-events"),
            Some("spillway-events")
        );
        assert_eq!(
            stream_name("arn:aws:kinesis:us-east-1:000000000000:stream/"),
            None
        );
        assert_eq!(stream_name("spillway-events"), None);
    }

    fn env_on(sqs_port: u16, free: u16) -> DevEnv {
        DevEnv {
            ingest_url: format!("http://127.0.0.1:{free}/v1/events"),
            ingest_key: "k".into(),
            database_url: format!("postgres://postgres@127.0.0.1:{free}/postgres"),
            sqs_endpoint: format!("http://127.0.0.1:{sqs_port}"),
            sqs_queue_url: format!("http://127.0.0.1:{sqs_port}/123456789012/q"),
            sqs_dlq_url: format!("http://127.0.0.1:{sqs_port}/123456789012/q-dlq"),
            sqs_server: SqsKind::Moto,
            aws_secret_access_key: "s".into(),
            envelope_keys: String::new(),
            token_secrets: String::new(),
            buffer: BufferKind::Sqs,
            kinesis: None,
        }
    }

    #[test]
    fn a_stalled_or_absent_sqs_is_named_and_the_status_still_comes() {
        let dir = crate::run_dir().join(crate::unique("status-down"));
        fs::create_dir_all(&dir).expect("dir");
        let free = crate::free_port().expect("port");
        // Bound but never accepted: the connection completes (the kernel's backlog), and no
        // answer ever comes, as with a SIGSTOPped server.
        let stalled = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = stalled.local_addr().expect("addr").port();
        let s = read_status(&env_on(port, free), &dir).expect("a status");
        assert!(s.queue_unread, "{s:?}");
        assert_eq!(s.problems[0], "SQS not answering in 2 s", "{s:?}");
        // Asked once, not once per queue.
        assert_eq!(
            s.problems.iter().filter(|p| p.starts_with("SQS")).count(),
            1,
            "{s:?}"
        );
        assert!(s.rows_unread, "{s:?}");
        assert!(s.problems[1].starts_with("database"), "{s:?}");
        assert_eq!(s.problems[2], "edge not answering /healthz in 2 s", "{s:?}");
        drop(stalled);
        let s = read_status(&env_on(port, free), &dir).expect("a status");
        assert_eq!(s.problems[0], "SQS unreachable", "{s:?}");
        assert!(s.supervision.is_empty(), "no supervisor ever ran here");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn probe_errors_say_gone_or_stalled() {
        let refused = anyhow::anyhow!("Connection refused (os error 111)").context("connecting");
        assert_eq!(probe_error("SQS", &refused), "SQS unreachable");
        let stalled = anyhow::anyhow!("Resource temporarily unavailable (os error 11)");
        assert_eq!(probe_error("SQS", &stalled), "SQS not answering in 2 s");
        let other = anyhow::anyhow!("GetQueueAttributes failed with 400: {{}}\nmore");
        assert_eq!(
            probe_error("SQS", &other),
            "SQS: GetQueueAttributes failed with 400: {}"
        );
    }

    #[test]
    fn unstored_never_goes_below_zero() {
        let s = Status {
            accepted: 10,
            rows: 7,
            ..Status::default()
        };
        assert_eq!(s.unstored(), 3);
        let s = Status {
            accepted: 2,
            rows: 7,
            ..Status::default()
        };
        assert_eq!(s.unstored(), 0);
    }
}
