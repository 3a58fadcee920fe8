//! The mapping as a whole: the seams to the function and the on-failure destination, and the
//! shard readers' lifecycle (one reader per open shard; a child shard starts only once its
//! parents are read to their end and finished, so one partition key's records stay in order
//! across a reshard).
//!
//! Shards are listed at start and again whenever a shard finishes (a reshard closes the parent
//! and creates its children). A reshard is therefore noticed when the parent's reader reaches
//! the parent's end, not before; that is when the children matter.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aws_sdk_kinesis::error::DisplayErrorContext;
use spillway_shared::StreamArn;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::checkpoint::{load, CheckpointError, CheckpointFile, Checkpoints};
use super::config::KinesisPollerConfig;
use super::event::StreamInfo;
use super::reader::{run_shard, Mapping, ShardEnd, ShardStats, Start};
use super::seams::{Destination, Function};
use super::shard::{Limits, MAX_PAYLOAD_BYTES};

#[derive(Debug, Error)]
pub enum KinesisPollerError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("cannot list the shards of {stream}: {reason}")]
    ListShards { stream: String, reason: String },
}

/// What the mapping did, for the final log line and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MappingStats {
    pub shards: u64,
    pub invocations: u64,
    pub records_read: u64,
    pub records_discarded: u64,
}

#[derive(Debug, Clone)]
struct ShardInfo {
    id: String,
    parents: Vec<String>,
}

async fn list_shards(
    client: &aws_sdk_kinesis::Client,
    stream_name: &str,
) -> Result<Vec<ShardInfo>, String> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = match &token {
            // With a token, the stream must not be named (the API's rule).
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream_name),
        };
        let out = req
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?;
        for s in out.shards() {
            shards.push(ShardInfo {
                id: s.shard_id().to_owned(),
                parents: s
                    .parent_shard_id()
                    .into_iter()
                    .chain(s.adjacent_parent_shard_id())
                    .map(str::to_owned)
                    .collect(),
            });
        }
        token = out.next_token;
        if token.is_none() {
            return Ok(shards);
        }
    }
}

/// Runs the mapping until shutdown (or until every shard is closed and finished), then waits
/// for the batches in flight.
pub async fn run<F: Function, D: Destination>(
    client: aws_sdk_kinesis::Client,
    config: KinesisPollerConfig,
    function: F,
    destination: Option<D>,
    shutdown: watch::Receiver<bool>,
) -> Result<MappingStats, KinesisPollerError> {
    // Checked when the settings were read; a config built by hand with another ARN is refused
    // here rather than listing a stream named "".
    let arn = StreamArn::parse(&config.stream_arn).map_err(|e| KinesisPollerError::ListShards {
        stream: config.stream_arn.clone(),
        reason: format!("the stream ARN {e}"),
    })?;
    let stream_name = arn.name().to_owned();
    let initial = match &config.checkpoint_file {
        Some(p) => load(p, &config.stream_arn)?,
        None => CheckpointFile {
            stream_arn: config.stream_arn.clone(),
            ..CheckpointFile::default()
        },
    };
    let listed = list_shards(&client, &stream_name).await.map_err(|reason| {
        KinesisPollerError::ListShards {
            stream: config.stream_arn.clone(),
            reason,
        }
    })?;
    let partition = arn.partition();
    let m = Arc::new(Mapping {
        stream: StreamInfo {
            arn: config.stream_arn.clone(),
            region: config.region.clone(),
            invoke_identity_arn: format!(
                "arn:{partition}:iam::{}:role/spillway-poller",
                config.account
            ),
        },
        function_arn: format!(
            "arn:{partition}:lambda:{}:{}:function:spillway-poller",
            config.region, config.account
        ),
        limits: Limits {
            batch_size: config.batch_size,
            max_payload_bytes: MAX_PAYLOAD_BYTES,
            lanes: config.parallelization_factor,
            window: config.batching_window,
            bisect: config.bisect_on_error,
            max_retries: config.maximum_retry_attempts,
            max_age: config.maximum_record_age,
        },
        checkpoints: Checkpoints::new(config.checkpoint_file.clone(), initial),
        stream_name,
        client,
        function,
        destination,
        config,
    });
    info!(
        stream = %m.config.stream_arn,
        shards = listed.len(),
        batch_size = m.limits.batch_size,
        parallelization_factor = m.limits.lanes,
        "kinesis poller started"
    );

    let mut known: HashMap<String, ShardInfo> = HashMap::new();
    let mut started: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<(String, ShardEnd, ShardStats)> = JoinSet::new();
    let mut stats = MappingStats::default();
    let add = |list: Vec<ShardInfo>, known: &mut HashMap<String, ShardInfo>| {
        for s in list {
            known.entry(s.id.clone()).or_insert(s);
        }
    };
    add(listed, &mut known);
    loop {
        if !*shutdown.borrow() {
            // A shard is ready once every parent we know of is finished (a parent the
            // stream no longer lists has been trimmed: nothing of it is left to read).
            let ready: Vec<ShardInfo> = known
                .values()
                .filter(|s| !started.contains(&s.id))
                .filter(|s| {
                    s.parents
                        .iter()
                        .all(|p| !known.contains_key(p) || finished.contains(p))
                })
                .cloned()
                .collect();
            for s in ready {
                let start = match m.checkpoints.of(&s.id) {
                    Some(seq) => Start::After(seq),
                    // A child of a shard we read starts at its beginning: nothing is skipped.
                    None if s.parents.iter().any(|p| known.contains_key(p)) => {
                        Start::At(super::config::StartingPosition::TrimHorizon)
                    }
                    None => Start::At(m.config.starting_position),
                };
                started.insert(s.id.clone());
                stats.shards += 1;
                let (m, rx, id) = (Arc::clone(&m), shutdown.clone(), s.id.clone());
                tasks.spawn(async move {
                    let (end, st) = run_shard(m, id.clone(), start, rx).await;
                    (id, end, st)
                });
            }
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined {
            Ok((id, end, st)) => {
                stats.invocations += st.invocations;
                stats.records_read += st.records_read;
                stats.records_discarded += st.records_discarded;
                if end == ShardEnd::Finished {
                    info!(
                        shard_id = id,
                        "shard closed and finished; looking for its children"
                    );
                    finished.insert(id);
                    match list_shards(&m.client, &m.stream_name).await {
                        Ok(list) => add(list, &mut known),
                        Err(e) => {
                            warn!(error = %e, "ListShards failed; children wait for the next shard to finish")
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "a shard reader stopped abnormally"),
        }
    }
    info!(
        invocations = stats.invocations,
        records = stats.records_read,
        discarded = stats.records_discarded,
        "kinesis poller stopped"
    );
    Ok(stats)
}
