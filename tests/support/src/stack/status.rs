//! One look at a running stack, for the status line of `cargo xtask dev` and `status`: what the
//! edge accepted (from its request log), what the queues hold, what the table holds.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use super::{DevEnv, REGION};
use crate::sqs::LocalSqs;
use crate::SqsKind;

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
}

/// One look at the pipeline described by `env`, whose state (logs) is in `dir`.
pub fn read_status(env: &DevEnv, dir: &Path) -> Result<Status> {
    let port = |url: &str| -> Result<u16> {
        url.rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("no port in {url}"))
    };
    let sqs = LocalSqs::new(port(&env.sqs_endpoint)?, REGION);
    let (visible, in_flight) = sqs.depth(&env.sqs_queue_url)?;
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
}
