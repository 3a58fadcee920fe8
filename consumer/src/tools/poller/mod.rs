//! The local poller: plays Lambda's SQS event source mapping (here) or its Kinesis one
//! ([`kinesis`]), so the consumer runs (and is tested) outside AWS with the same handler.
//!
//! Like the SQS mapping, each of `MAXIMUM_CONCURRENCY` workers long-polls the queue, gathers up to
//! `BATCH_SIZE` records (waiting at most `MAXIMUM_BATCHING_WINDOW_IN_SECONDS` once the first
//! arrived), builds the `SqsEvent` Lambda would deliver, calls [`crate::handler::handle`], deletes the
//! records that succeeded and leaves the failed ones to reappear after the visibility timeout
//! (and to reach the DLQ after the queue's `maxReceiveCount`). Each worker owns its own store,
//! hence its own database connection: connections = `MAXIMUM_CONCURRENCY`, as on Lambda.
//!
//! As Lambda's pollers receive outside the function, a worker receives its next batch while
//! the current invocation runs, and deletes in the background, so its connection is not idle
//! through the SQS calls. A batch received ahead waits at most half of what the visibility
//! timeout leaves after the batching window, and is given back to the queue (visibility 0,
//! unhandled) if it waited that long, if the breaker opened, or on shutdown; after an
//! invocation slower than half that bound the worker stops receiving ahead until one is fast
//! again ([`prefetch`]). Nothing is deleted before its invocation answered.
//!
//! While the database is unavailable the workers receive nothing ([`crate::breaker`], the
//! policy the deployed function plays by disabling its own mapping): a batch that finds the
//! database unavailable opens the breaker, one worker probes the database with a backoff, and
//! the first probe that connects resumes receiving. Messages are thus received at most about
//! twice per outage (the batches in flight when it opened), so an outage of any length sends
//! none to the DLQ; only records that can never be stored get there. A batch a worker was
//! gathering while another worker opened the breaker is still handled (and fails, spending one
//! receive): a long poll cannot be taken back without its messages staying invisible anyway. A
//! batch received ahead is given back to the queue instead (its receive is spent either way).
//!
//! On shutdown a worker finishes the batch it is handling, deletes what succeeded, gives a batch
//! received ahead back to the queue, and stops. A receive that is still waiting is abandoned;
//! if SQS had already handed it messages they stay invisible for one visibility timeout and
//! then come back, none is lost.
//!
//! With `BUFFER=kinesis` the binary runs [`kinesis`] instead: the Kinesis event source
//! mapping, with its own settings and checkpoint file. [`buffer`] tells which.
//!
//! [`record`] is pure and unit-tested (what Lambda would deliver, what to delete), as is
//! [`prefetch`] (when to receive ahead, how long a batch may wait); [`worker`] moves bytes
//! between SQS and the handler; [`config`] holds the settings of both mappings. The Kinesis
//! mapping already reads ahead of its function (its readers hold up to
//! [`kinesis::reader::UNFINISHED_CAP`] records per shard).

pub mod config;
pub mod kinesis;
pub mod prefetch;
pub mod record;
mod sqs;
pub mod worker;

pub use config::{buffer, Buffer, PollerConfig};
pub use prefetch::Prefetch;
pub use record::{lambda_record, merge_received, sqs_event, to_delete, QueueInfo};
pub use worker::{queue_info, run, run_worker, PollerError, SharedBreaker, WorkerStats};
