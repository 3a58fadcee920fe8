//! The local and operator tools, beside the Lambda's logic and not part of it: the Lambda
//! binary never calls into here.
//!
//! - [`poller`] plays Lambda's SQS or Kinesis event source mapping (`spillway-poller`), so the
//!   same handler runs outside AWS.
//! - [`dlq`] lists, peeks at and redrives the dead-letter queue (`spillway-dlq`): an SQS
//!   message back to the main queue, a Kinesis record's dead letter back into its stream.
//!
//! Each keeps its pure decisions (what Lambda would deliver, what to delete, what to redrive)
//! apart from its SDK calls.

pub mod dlq;
pub mod poller;
