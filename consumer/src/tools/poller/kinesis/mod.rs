//! The local poller for a Kinesis stream (`BUFFER=kinesis`): plays Lambda's Kinesis event
//! source mapping, so the consumer runs (and is tested) outside AWS with the same handler.
//!
//! As the mapping does: one reader per shard (children after their parents), batches of up to
//! `BATCH_SIZE` records and 6 MB, `PARALLELIZATION_FACTOR` lanes per shard chosen by partition
//! key, `ReportBatchItemFailures` (the lowest reported sequence number is where delivery
//! resumes), bisect on function error, `MAXIMUM_RETRY_ATTEMPTS` and
//! `MAXIMUM_RECORD_AGE_IN_SECONDS`, and the on-failure destination (Lambda's record: the
//! shard and sequence range, not the data). Concurrent invocations, hence database
//! connections, are at most shards x `PARALLELIZATION_FACTOR`.
//!
//! Checkpoints are kept in `CHECKPOINT_FILE` so a killed poller resumes after its last one
//! (delivering again at most what was in flight or finished past it, which the consumer
//! skips). What it does not do: enhanced fan-out, tumbling windows, `AT_TIMESTAMP`, filters,
//! and retry pauses as Lambda's (it waits 100 ms doubling to 5 s between retries of a batch).
//!
//! [`event`], [`shard`] and [`checkpoint`]'s file shape are pure and unit-tested (sequence
//! order is [`crate::kinesis::SeqNum`], the handler's too); [`reader`] (one shard) and
//! [`mapping`] (the shards' lifecycle) move bytes between Kinesis, the function and the
//! destination through [`seams`].

pub mod checkpoint;
pub mod config;
pub mod event;
pub mod mapping;
pub mod reader;
pub mod seams;
pub mod shard;

pub use crate::kinesis::SeqNum;
pub use config::{KinesisPollerConfig, StartingPosition};
pub use mapping::{run, KinesisPollerError, MappingStats};
pub use seams::{Destination, Function, FunctionError, SqsDestination};
