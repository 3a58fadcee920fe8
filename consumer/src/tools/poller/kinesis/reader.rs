//! One shard's reader: the I/O around [`super::shard::ShardState`]. It takes an iterator
//! (after the checkpoint, else the starting position), reads with `GetRecords`, hands each
//! lane's batches to the function, sends what is given up on to the on-failure destination,
//! and writes the shard's checkpoint after every change.
//!
//! Reads: at most one `GetRecords` per 200 ms while records come (Kinesis allows 5 per second
//! per shard, shared by every consumer of the stream), one per second when the shard is idle,
//! and an exponential pause (up to 5 s) after `ProvisionedThroughputExceededException`. It
//! stops reading while `UNFINISHED_CAP` records wait, so a slow function bounds memory, not
//! the stream.
//!
//! On shutdown it reads nothing more and starts no batch; the batches in flight finish, their
//! checkpoint is written, and the shard stops. Records read and not delivered are read again
//! after a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::checkpoint::Checkpoints;
use super::config::{KinesisPollerConfig, StartingPosition};
use super::event::{failure_record, kinesis_event, Discarded, Rec, StreamInfo};
use super::seams::{Destination, Function};
use super::shard::{Answer, Batch, Limits, ShardState};
use crate::kinesis::SeqNum;

const BUSY_POLL: Duration = Duration::from_millis(200);
const IDLE_POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Records held per shard before reading pauses: enough for 10 lanes of full batches.
pub const UNFINISHED_CAP: usize = 20_000;

/// What the shard readers share.
pub(crate) struct Mapping<F, D> {
    pub(crate) config: KinesisPollerConfig,
    pub(crate) stream_name: String,
    pub(crate) stream: StreamInfo,
    /// `requestContext.functionArn` of on-failure records.
    pub(crate) function_arn: String,
    pub(crate) limits: Limits,
    pub(crate) client: aws_sdk_kinesis::Client,
    pub(crate) function: F,
    pub(crate) destination: Option<D>,
    pub(crate) checkpoints: Checkpoints,
}

/// Where a shard's reading begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    After(SeqNum),
    At(StartingPosition),
}

/// How a shard's reader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardEnd {
    /// The shard is closed (resharded) and every record of it is done: its children may go.
    Finished,
    /// Shutdown was asked.
    Stopped,
}

/// What one shard's reader did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub invocations: u64,
    pub records_read: u64,
    pub records_discarded: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn to_chrono(t: Option<&aws_sdk_kinesis::primitives::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_else(Utc::now)
}

async fn iterator<F: Function, D: Destination>(
    m: &Mapping<F, D>,
    shard_id: &str,
    start: &Start,
) -> Result<Option<String>, String> {
    let mut req = m
        .client
        .get_shard_iterator()
        .stream_name(&m.stream_name)
        .shard_id(shard_id);
    req = match start {
        Start::After(s) => req
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(s.as_str()),
        Start::At(StartingPosition::TrimHorizon) => {
            req.shard_iterator_type(ShardIteratorType::TrimHorizon)
        }
        Start::At(StartingPosition::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
    };
    req.send()
        .await
        .map(|o| o.shard_iterator)
        .map_err(|e| DisplayErrorContext(e).to_string())
}

/// Sends each discarded batch's on-failure record; without a destination, or when sending
/// keeps failing, logs it at error level (the records are skipped either way, as on Lambda).
async fn give_up<F: Function, D: Destination>(
    m: &Mapping<F, D>,
    shard_id: &str,
    all: Vec<Discarded>,
) {
    for d in all {
        let body = failure_record(
            &d,
            shard_id,
            &m.config.stream_arn,
            &m.function_arn,
            Utc::now(),
        );
        let Some(dest) = &m.destination else {
            error!(shard_id, record = %body, "records given up on and dropped: no ON_FAILURE_DESTINATION");
            continue;
        };
        let mut pause = Duration::from_millis(200);
        let mut sent = false;
        for _ in 0..5 {
            match dest.send(body.to_string()).await {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(e) => warn!(shard_id, error = %e, "on-failure destination refused; retrying"),
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        if sent {
            warn!(
                shard_id,
                condition = d.condition.as_str(),
                records = d.records.len(),
                "records given up on, sent to the on-failure destination"
            );
        } else {
            error!(shard_id, record = %body, "records given up on and the on-failure destination is unreachable: dropped");
        }
    }
}

/// Reads and delivers one shard until it is finished or shutdown is asked.
pub(crate) async fn run_shard<F: Function, D: Destination>(
    m: Arc<Mapping<F, D>>,
    shard_id: String,
    start: Start,
    mut shutdown: watch::Receiver<bool>,
) -> (ShardEnd, ShardStats) {
    let mut stats = ShardStats::default();
    let resumed = match &start {
        Start::After(s) => Some(s.clone()),
        Start::At(_) => None,
    };
    let mut state = ShardState::new(m.limits.clone(), resumed.clone());
    let mut last_read = resumed;
    let mut iter: Option<String> = None;
    let mut closed = false;
    let mut next_read = Instant::now();
    let mut backoff = BUSY_POLL;
    let mut millis_behind: Option<u64> = None;
    let mut written: Option<SeqNum> = None;
    let mut first_write = true;
    let mut inflight: JoinSet<(Answer, String)> = JoinSet::new();
    let mut batches: HashMap<tokio::task::Id, Batch> = HashMap::new();
    let mut seq_no = 0u64;
    // A dropped sender means nobody can ask for shutdown any more: treat it as asked.
    let mut orphaned = false;
    info!(shard_id, ?start, "shard reader started");
    let end = loop {
        let stopping = orphaned || *shutdown.borrow();
        let now = Instant::now();
        if !stopping && !closed && now >= next_read && state.unfinished() < UNFINISHED_CAP {
            if iter.is_none() {
                let from = match &last_read {
                    Some(s) => Start::After(s.clone()),
                    None => start.clone(),
                };
                match iterator(&m, &shard_id, &from).await {
                    Ok(Some(i)) => iter = Some(i),
                    // No iterator: the shard is closed and read to its end.
                    Ok(None) => closed = true,
                    Err(e) => {
                        warn!(shard_id, error = %e, "GetShardIterator failed; retrying");
                        next_read = now + backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            if let Some(it) = iter.clone() {
                let limit = (m.limits.batch_size * m.limits.lanes).clamp(100, 10_000) as i32;
                match m
                    .client
                    .get_records()
                    .shard_iterator(it)
                    .limit(limit)
                    .send()
                    .await
                {
                    Ok(out) => {
                        backoff = BUSY_POLL;
                        millis_behind = out.millis_behind_latest.map(|v| v.max(0) as u64);
                        let records: Vec<Rec> = out
                            .records
                            .iter()
                            .filter_map(|r| {
                                Some(Rec {
                                    seq: SeqNum::parse(&r.sequence_number)?,
                                    partition_key: r.partition_key.clone().unwrap_or_default(),
                                    data: r.data.as_ref().to_vec(),
                                    arrival: to_chrono(r.approximate_arrival_timestamp.as_ref()),
                                })
                            })
                            .collect();
                        if records.len() != out.records.len() {
                            error!(shard_id, "Kinesis returned a record without a valid sequence number; skipped");
                        }
                        next_read = now
                            + if records.is_empty() {
                                IDLE_POLL
                            } else {
                                BUSY_POLL
                            };
                        stats.records_read += records.len() as u64;
                        if let Some(r) = records.last() {
                            last_read = Some(r.seq.clone());
                        }
                        state.push(records, now);
                        iter = out.next_shard_iterator;
                        closed = iter.is_none();
                    }
                    Err(e) => {
                        let service = e.as_service_error();
                        if service.is_some_and(|s| s.is_expired_iterator_exception()) {
                            iter = None;
                        } else if service
                            .is_some_and(|s| s.is_provisioned_throughput_exceeded_exception())
                        {
                            next_read = now + backoff;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        } else {
                            warn!(shard_id, error = %DisplayErrorContext(&e), "GetRecords failed; retrying");
                            next_read = now + backoff;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            }
        }

        if !stopping {
            for lane in 0..state.lanes() {
                let (batch, discarded) = state.take(lane, now, Utc::now(), closed);
                stats.records_discarded += discarded
                    .iter()
                    .map(|d| d.records.len() as u64)
                    .sum::<u64>();
                give_up(&m, &shard_id, discarded).await;
                if let Some(batch) = batch {
                    seq_no += 1;
                    stats.invocations += 1;
                    let request_id = format!("{shard_id}-{}-{seq_no}", std::process::id());
                    let event = kinesis_event(&shard_id, &batch.records, &m.stream);
                    let f = Arc::clone(&m);
                    let rid = request_id.clone();
                    let handle = inflight.spawn(async move {
                        let answer = match f.function.invoke(event, rid.clone()).await {
                            Ok(r) => Answer::Returned(r),
                            Err(e) => {
                                warn!(request_id = rid, error = %e, "function error");
                                Answer::FunctionError
                            }
                        };
                        (answer, rid)
                    });
                    batches.insert(handle.id(), batch);
                }
            }
        }

        let cp = state.checkpoint().cloned();
        if first_write || cp != written || millis_behind.is_some() {
            if let Err(e) =
                m.checkpoints
                    .update(&shard_id, cp.as_ref(), millis_behind.take(), now_ms())
            {
                warn!(shard_id, error = %e, "cannot write the checkpoint file; a restart would redeliver more");
            }
            written = cp;
            first_write = false;
        }

        if stopping && inflight.is_empty() {
            break ShardEnd::Stopped;
        }
        if closed && state.unfinished() == 0 && inflight.is_empty() {
            break ShardEnd::Finished;
        }

        let mut wake = now + IDLE_POLL;
        if !closed && state.unfinished() < UNFINISHED_CAP {
            wake = wake.min(next_read);
        }
        if let Some(r) = state.ready_at() {
            wake = wake.min(r.max(now));
        }
        tokio::select! {
            Some(joined) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                let (id, answer, rid) = match joined {
                    Ok((id, (answer, rid))) => (id, answer, rid),
                    // The function panicked: a function error, as a crash is on Lambda.
                    Err(e) => {
                        error!(shard_id, error = %e, "function crashed");
                        (e.id(), Answer::FunctionError, String::new())
                    }
                };
                if let Some(batch) = batches.remove(&id) {
                    let discarded = state.complete(batch, answer, rid, Instant::now());
                    stats.records_discarded += discarded.iter().map(|d| d.records.len() as u64).sum::<u64>();
                    give_up(&m, &shard_id, discarded).await;
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
            r = shutdown.changed(), if !stopping => orphaned = r.is_err(),
        }
    };
    info!(
        shard_id,
        ?end,
        invocations = stats.invocations,
        records = stats.records_read,
        "shard reader stopped"
    );
    (end, stats)
}
