//! The dead-letter queue tool behind `spillway-dlq`: list and peek at dead letters with the
//! reason they failed where it can tell, and redrive them to the main queue (a Kinesis
//! record's dead letter: into its stream).
//!
//! Pure and unit-tested: [`args`] (flags and environment), [`report`] ([`MessageInfo`] and its
//! report line, [`Reason`]: a body run through [`spillway_shared::decode`]) and [`plan`]
//! ([`split_new`]: which received messages a pass has not seen yet; [`plan_redrive`]: which
//! messages a `SendMessageBatch` answer lets us delete; [`put_calls`] and [`read_put_records`]:
//! the same for `PutRecords`). [`sqs`] and [`kinesis`] only move messages between AWS and
//! those.
//!
//! Looking never deletes: [`scan`] receives with a short visibility timeout, so that one pass
//! sees each message once, and [`restore`] makes what it saw visible again right away.
//! Receiving does count as a receive of the DLQ's copy (its `ApproximateReceiveCount` grows);
//! the DLQ has no redrive policy of its own, so that moves nothing.
//!
//! A redrive sends each message to the main queue first and deletes it from the DLQ only once
//! SQS confirmed the send; a Kinesis record's dead letter (`spillway.source=kinesis`, sent by
//! the Kinesis handler) goes back into its stream instead ([`kinesis`]), deleted only once
//! `PutRecords` answered with a sequence number for it. A failure in between leaves the
//! message in both places, which is harmless: events are stored once by id. It does not handle
//! FIFO queues (the template's queues are standard ones).

pub mod args;
pub mod kinesis;
pub mod plan;
pub mod report;
pub mod sqs;

pub use args::{parse_args, Command, DlqArgs, Parsed, UsageError, USAGE};
pub use kinesis::Streams;
pub use plan::{
    plan_redrive, put_calls, read_put_records, split_new, PutResult, RedriveReport, Sent,
};
pub use report::{kinesis_dead_letter, peek_text, printable, MessageInfo, Reason};
pub use sqs::{depth, redrive, restore, scan, SqsError, SCAN_VISIBILITY};

#[cfg(test)]
mod tests;
