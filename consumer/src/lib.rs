//! Spillway's consumer: an AWS Lambda function that writes SQS or Kinesis batches of Spillway
//! events into PostgreSQL exactly once, and a local poller that plays Lambda's event source
//! mapping.
//!
//! - [`source`], [`plan`] and [`mod@write`] are the pure core: a delivered batch of buffered
//!   records ([`source::BufferedRecord`]: an SQS message or a Kinesis record) in, rows and
//!   per-record failures out, and which writes those rows need.
//! - [`handler`] is the plain async handler over a [`handler::Deps`] struct, one function per
//!   buffer ([`handler::handle`] for SQS, [`handler::handle_kinesis`] for Kinesis); the Lambda
//!   `main` (which tells them apart by the records' `eventSource`) and the poller only wire it
//!   up.
//! - [`kinesis`] is what is Kinesis's own, pure: sequence order, shards, what Lambda delivers
//!   again; [`dead_letter`] is where the Kinesis handler puts a record it can never store (an
//!   SQS queue: Kinesis has none).
//! - [`store`] is the [`store::EventStore`] seam; [`pg`] its PostgreSQL adapter (one lazily
//!   opened connection per execution environment; database connections =
//!   `MaximumConcurrency`).
//! - [`migrate`] applies `consumer/migrations/*.sql` (`spillway-consumer migrate`).
//! - [`metrics`] builds the per-invocation CloudWatch EMF record.
//! - [`secret`] reads the database URL from Secrets Manager at cold start
//!   (`DATABASE_URL_SECRET_ARN`, what the deployed function is given).
//! - [`breaker`] is the circuit breaker, pure: while the database is unavailable the consumer
//!   stops taking deliveries instead of spending their SQS receive counts (the local poller
//!   holds its workers; the deployed function, invoked by a schedule, disables its own event
//!   source mapping), so an outage sends nothing to the dead-letter queue.
//! - [`probe`] is the deployed breaker's adapter: the scheduled invocation that probes the
//!   database and disables or enables the function's event source mapping.
//! - [`tools`] holds what runs beside the Lambda, not in it: the local poller that drives the
//!   handler from a real (or emulated) SQS queue or Kinesis stream, and the dead-letter queue
//!   tool.
//!
//! It deliberately does not describe the wire format (that is `spillway-shared`), does not
//! create queues or tables implicitly, and never fails a whole batch for one record.

pub mod breaker;
pub mod config;
pub mod dead_letter;
pub mod handler;
pub mod keys;
pub mod kinesis;
pub mod metrics;
pub mod migrate;
pub mod pg;
pub mod plan;
pub mod probe;
pub mod secret;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod testing;
pub mod tools;
pub mod write;
