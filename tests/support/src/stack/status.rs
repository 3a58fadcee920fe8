//! One look at a running stack, for the status line of `cargo xtask dev` and `status`: what the
//! edge accepted (from its request log), what the queue holds (SQS) or how far the poller is
//! behind the stream (Kinesis), what the dead-letter queue and the table hold.

use std::fs;
use std::path::Path;

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
}

impl Status {
    /// Events accepted and not (yet) stored: with Kinesis, the records in the stream the
    /// consumer has not got through, counted in events. A duplicate stored once, or a dead
    /// letter, makes it differ from what is in flight, so it is a hint, not an invariant.
    pub fn unstored(&self) -> u64 {
        self.accepted.saturating_sub(self.rows)
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

/// One look at the pipeline described by `env`, whose state (logs) is in `dir`.
pub fn read_status(env: &DevEnv, dir: &Path) -> Result<Status> {
    let sqs = LocalSqs::new(port_of(&env.sqs_endpoint)?, REGION);
    let (visible, in_flight, stream) = match (env.buffer, &env.kinesis) {
        (BufferKind::Sqs, _) => {
            let (v, f) = sqs.depth(&env.sqs_queue_url)?;
            (v, f, None)
        }
        (BufferKind::Kinesis, None) => {
            anyhow::bail!("BUFFER=kinesis without the stream's settings")
        }
        (BufferKind::Kinesis, Some(k)) => {
            let name = stream_name(&k.stream_arn)
                .with_context(|| format!("no stream name in {}", k.stream_arn))?;
            let (_, shards) = LocalKinesis::new(port_of(&k.endpoint)?, REGION).summary(name)?;
            let (failed_visible, failed_in_flight) = sqs.depth(&k.on_failure_url)?;
            let millis_behind = fs::read_to_string(checkpoint_file(dir))
                .ok()
                .and_then(|t| max_millis_behind(&t));
            (
                0,
                0,
                Some(StreamStatus {
                    name: name.to_owned(),
                    shards,
                    millis_behind,
                    failed_batches: failed_visible + failed_in_flight,
                }),
            )
        }
    };
    let (dlq_visible, dlq_in_flight) = sqs.depth(&env.sqs_dlq_url)?;
    let db_port = env
        .database_url
        .split('@')
        .nth(1)
        .and_then(|hp| hp.split('/').next())
        .and_then(|hp| hp.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {}", env.database_url))?;
    let (rows, lag_ms) = match crate::psql(
        db_port,
        // Never wait on a lock: a status view must not hang behind a long transaction.
        "set lock_timeout = '1s'; set statement_timeout = '5s'; \
         select count(*), (select (extract(epoch from max(stored_at - received_at)) * 1000)::bigint \
         from events where stored_at > now() - interval '10 seconds') from events",
    ) {
        Ok(line) => {
            let mut parts = line.split('|');
            let rows = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let lag = parts.next().and_then(|v| v.parse().ok());
            (rows, lag)
        }
        Err(_) => (0, None),
    };
    let log = dir.join("logs/edge.log");
    let (spilled, replayed) = spill_counts(&log);
    Ok(Status {
        accepted: accepted_events(&log),
        spilled,
        replayed,
        visible,
        in_flight,
        dlq: dlq_visible + dlq_in_flight,
        rows,
        sqs: env.sqs_server,
        lag_ms,
        stream,
    })
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
