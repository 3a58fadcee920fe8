//! The mapping's decisions for one shard, pure: which records form the next batch of each
//! lane, what an answer of the function means for them, and where the shard's checkpoint is.
//!
//! - **Lanes** (ParallelizationFactor): a record goes to lane `hash(partition key) mod N`, so
//!   one key's records are always handled by one lane, in shard order, one batch at a time.
//! - **Checkpoint**: the last sequence number before which every record read is finished,
//!   whatever lane it went to (the lowest unfinished record bounds it). A restart resumes
//!   after it; records finished beyond it by other lanes are delivered again (the consumer
//!   skips duplicates), as with Lambda.
//! - **Answers**: an empty `batchItemFailures` is success; otherwise the lowest reported
//!   sequence number is where the batch is delivered again from (records before it are done).
//!   An identifier that is empty, not a sequence number or not in the batch fails the whole
//!   batch, as on Lambda. A function error retries the batch, or, with bisect, its two halves
//!   (splitting does not use up a retry, as Lambda documents). A retry counts against
//!   `MAXIMUM_RETRY_ATTEMPTS`; past it, or past `MAXIMUM_RECORD_AGE_IN_SECONDS`, the records
//!   are given up on ([`Discarded`], for the on-failure destination) and the shard moves on.
//!
//! It does no I/O and reads no clock: callers pass the time.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use aws_lambda_events::event::streams::KinesisEventResponse;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::event::{Condition, Discarded, Rec};
use crate::kinesis::SeqNum;

/// Lambda's invocation payload limit (synchronous invocations): 6 MB.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// First pause before a failed batch is invoked again; doubles per retry up to
/// [`MAX_RETRY_PAUSE`]. Lambda retries without a documented pause; a short one keeps a poison
/// record with infinite retries from spinning a core locally.
pub const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// The mapping's settings that shape decisions.
#[derive(Debug, Clone)]
pub struct Limits {
    pub batch_size: usize,
    pub max_payload_bytes: usize,
    pub lanes: usize,
    pub window: Duration,
    pub bisect: bool,
    pub max_retries: Option<u32>,
    pub max_age: Option<Duration>,
}

/// A batch handed to the function, with its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub lane: usize,
    /// In shard order; never empty.
    pub records: Vec<Rec>,
    /// Retries used (bisecting does not use one).
    pub retries: u32,
    /// Invocations these records have been part of.
    pub invocations: u32,
    pub last_request: Option<String>,
    /// A retried batch waits until then.
    pub not_before: Option<Instant>,
}

/// The function's answer to one batch.
#[derive(Debug, Clone)]
pub enum Answer {
    /// It returned: `batchItemFailures` decides.
    Returned(KinesisEventResponse),
    /// It failed as a whole (an error, a timeout, a crash).
    FunctionError,
}

#[derive(Debug, Default)]
struct Lane {
    /// Batches to invoke again, first first; they go before any fresh record.
    redo: VecDeque<Batch>,
    fresh: VecDeque<Rec>,
    /// When `fresh` last became non-empty (start of the batching window).
    fresh_since: Option<Instant>,
    busy: bool,
}

/// One shard's records between read and done.
#[derive(Debug)]
pub struct ShardState {
    limits: Limits,
    lanes: Vec<Lane>,
    /// Every record read and not yet behind the checkpoint, in shard order.
    order: VecDeque<SeqNum>,
    done: HashSet<SeqNum>,
    checkpoint: Option<SeqNum>,
}

/// The lane of a partition key: FNV-1a, stable across runs and platforms.
pub fn lane_of(partition_key: &str, lanes: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in partition_key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % lanes.max(1) as u64) as usize
}

fn retry_pause(retries: u32) -> Duration {
    let factor = 1u32 << retries.saturating_sub(1).min(16);
    FIRST_RETRY_PAUSE
        .saturating_mul(factor)
        .min(MAX_RETRY_PAUSE)
}

impl ShardState {
    /// `checkpoint` is where reading resumed (records up to it are done).
    pub fn new(limits: Limits, checkpoint: Option<SeqNum>) -> Self {
        let lanes = (0..limits.lanes.max(1)).map(|_| Lane::default()).collect();
        Self {
            limits,
            lanes,
            order: VecDeque::new(),
            done: HashSet::new(),
            checkpoint,
        }
    }

    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The shard's checkpoint: every record up to it is done.
    pub fn checkpoint(&self) -> Option<&SeqNum> {
        self.checkpoint.as_ref()
    }

    /// Records read and not finished (in lanes, in flight or waiting for a retry).
    pub fn unfinished(&self) -> usize {
        self.order.len()
    }

    pub fn in_flight(&self) -> usize {
        self.lanes.iter().filter(|l| l.busy).count()
    }

    /// Adds records just read, in shard order.
    pub fn push(&mut self, records: Vec<Rec>, now: Instant) {
        let n = self.lanes.len();
        for r in records {
            let lane = &mut self.lanes[lane_of(&r.partition_key, n)];
            if lane.fresh.is_empty() {
                lane.fresh_since = Some(now);
            }
            self.order.push_back(r.seq.clone());
            lane.fresh.push_back(r);
        }
    }

    /// When some waiting lane becomes ready (its window ends or its retry pause is over).
    pub fn ready_at(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .filter(|l| !l.busy)
            .filter_map(|l| match l.redo.front() {
                Some(b) => b.not_before,
                None => l.fresh_since.map(|s| s + self.limits.window),
            })
            .min()
    }

    /// The next batch of `lane`, if the lane is idle and has one ready; `flush` ignores the
    /// batching window (the shard is closed: no more records will come). Records past their
    /// maximum age are given up on instead of delivered.
    pub fn take(
        &mut self,
        lane: usize,
        now: Instant,
        wall: DateTime<Utc>,
        flush: bool,
    ) -> (Option<Batch>, Vec<Discarded>) {
        let mut discarded = Vec::new();
        loop {
            let limits = &self.limits;
            let l = &mut self.lanes[lane];
            if l.busy {
                return (None, discarded);
            }
            let mut batch = if let Some(b) = l.redo.front() {
                if b.not_before.is_some_and(|t| t > now) {
                    return (None, discarded);
                }
                l.redo.pop_front().expect("front exists")
            } else {
                let bytes: usize = l.fresh.iter().map(Rec::payload_bytes).sum();
                let ready = !l.fresh.is_empty()
                    && (flush
                        || l.fresh.len() >= limits.batch_size
                        || bytes >= limits.max_payload_bytes
                        || l.fresh_since.is_some_and(|s| now >= s + limits.window));
                if !ready {
                    return (None, discarded);
                }
                let mut records = Vec::new();
                let mut size = 0;
                while let Some(r) = l.fresh.front() {
                    let b = r.payload_bytes();
                    if records.len() == limits.batch_size
                        || (!records.is_empty() && size + b > limits.max_payload_bytes)
                    {
                        break;
                    }
                    size += b;
                    records.push(l.fresh.pop_front().expect("front exists"));
                }
                l.fresh_since = (!l.fresh.is_empty()).then_some(now);
                Batch {
                    lane,
                    records,
                    retries: 0,
                    invocations: 0,
                    last_request: None,
                    not_before: None,
                }
            };
            if let Some(max_age) = limits.max_age {
                let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
                let (old, young): (Vec<Rec>, Vec<Rec>) = std::mem::take(&mut batch.records)
                    .into_iter()
                    .partition(|r| wall - r.arrival > max_age);
                batch.records = young;
                if !old.is_empty() {
                    self.finish(old.iter().map(|r| &r.seq));
                    discarded.push(Discarded {
                        condition: Condition::RecordAgeExceeded,
                        records: old,
                        invocations: batch.invocations,
                        request_id: batch.last_request.clone(),
                        function_error: false,
                    });
                }
            }
            if batch.records.is_empty() {
                continue;
            }
            self.lanes[lane].busy = true;
            return (Some(batch), discarded);
        }
    }

    /// Applies the function's answer to `batch` (invoked as `request_id`); returns what is
    /// given up on.
    pub fn complete(
        &mut self,
        mut batch: Batch,
        answer: Answer,
        request_id: String,
        now: Instant,
    ) -> Vec<Discarded> {
        self.lanes[batch.lane].busy = false;
        batch.invocations += 1;
        batch.last_request = Some(request_id);
        let lowest_failure = match &answer {
            Answer::FunctionError => Err(()),
            Answer::Returned(r) => {
                let mut lowest: Result<Option<SeqNum>, ()> = Ok(None);
                for f in &r.batch_item_failures {
                    let seq = f
                        .item_identifier
                        .as_deref()
                        .and_then(SeqNum::parse)
                        .filter(|s| batch.records.iter().any(|r| &r.seq == s));
                    lowest = match (seq, lowest) {
                        (None, _) | (_, Err(())) => Err(()),
                        (Some(s), Ok(None)) => Ok(Some(s)),
                        (Some(s), Ok(Some(l))) => Ok(Some(s.min(l))),
                    };
                }
                lowest
            }
        };
        match lowest_failure {
            Ok(None) => {
                self.finish(batch.records.iter().map(|r| &r.seq));
                Vec::new()
            }
            Ok(Some(lowest)) => {
                let at = batch
                    .records
                    .iter()
                    .position(|r| r.seq == lowest)
                    .expect("checked in the batch");
                let rest = batch.records.split_off(at);
                self.finish(batch.records.iter().map(|r| &r.seq));
                batch.records = rest;
                self.retry(batch, false, now)
            }
            Err(()) if self.limits.bisect && batch.records.len() > 1 => {
                let second = batch.records.split_off(batch.records.len() / 2);
                let mut later = batch.clone();
                later.records = second;
                let lane = &mut self.lanes[batch.lane];
                lane.redo.push_front(later);
                lane.redo.push_front(batch);
                Vec::new()
            }
            Err(()) => {
                let function_error = matches!(answer, Answer::FunctionError);
                self.retry(batch, function_error, now)
            }
        }
    }

    fn retry(&mut self, mut batch: Batch, function_error: bool, now: Instant) -> Vec<Discarded> {
        batch.retries += 1;
        if self.limits.max_retries.is_some_and(|m| batch.retries > m) {
            self.finish(batch.records.iter().map(|r| &r.seq));
            return vec![Discarded {
                condition: Condition::RetryAttemptsExhausted,
                records: batch.records,
                invocations: batch.invocations,
                request_id: batch.last_request,
                function_error,
            }];
        }
        batch.not_before = Some(now + retry_pause(batch.retries));
        self.lanes[batch.lane].redo.push_front(batch);
        Vec::new()
    }

    fn finish<'a>(&mut self, seqs: impl Iterator<Item = &'a SeqNum>) {
        self.done.extend(seqs.cloned());
        while let Some(front) = self.order.front() {
            if !self.done.remove(front) {
                break;
            }
            self.checkpoint = self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;
