//! The seam between the handler and the database: what a write is, what it reports, and how a
//! failed write is classified.
//!
//! The handler only sees [`EventStore`]; production uses [`crate::pg::PgStore`], tests may use
//! an in-memory store. Every [`StoreError`] carries its [`FailureKind`], decided once where the
//! error is created, so the handler never inspects driver errors.

use std::future::Future;

use spillway_shared::Event;
use thiserror::Error;

/// One row to insert: an event and the id of the buffered record that carried it.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub event: &'a Event,
    /// [`crate::source::BufferedRecord::record_id`]; stored in the column `sqs_message_id`
    /// (the contract fixes the table; for SQS it is exactly the message id).
    pub record_id: &'a str,
}

/// What one successful write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// Rows that were new and are now stored.
    pub inserted: u64,
    /// Rows skipped because an event with the same id was already stored.
    pub duplicates: u64,
}

impl WriteCounts {
    pub fn add(&mut self, other: WriteCounts) {
        self.inserted += other.inserted;
        self.duplicates += other.duplicates;
    }
}

/// How a failed write should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The database cannot be reached or the connection broke: retry later on a new
    /// connection. The current connection must be dropped.
    Unavailable,
    /// A transient problem on a healthy connection (timeout, deadlock, missing table before
    /// migrations ran, ...): retry later, the connection may be kept.
    Transient,
    /// The rows themselves were refused (data exception, constraint): retrying the same rows
    /// cannot succeed. The handler isolates the culprit message.
    Data,
}

impl FailureKind {
    /// Whether SQS should simply deliver the records again.
    pub fn is_retryable(self) -> bool {
        !matches!(self, FailureKind::Data)
    }
}

/// A failed write, classified where it was created.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind:?} database failure{}: {message}", code.as_deref().map(|c| format!(" (SQLSTATE {c})")).unwrap_or_default())]
pub struct StoreError {
    pub kind: FailureKind,
    /// SQLSTATE, when the server sent one.
    pub code: Option<String>,
    pub message: String,
}

impl StoreError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Unavailable,
            code: None,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

/// Classifies a server error by its SQLSTATE.
///
/// Only what is certainly about the rows is [`FailureKind::Data`]: the handler then retries
/// message by message, and a message still refused goes towards the DLQ. Everything else is
/// retried, because sending good events to the DLQ over an operational problem loses them from
/// the normal path; `maxReceiveCount` still bounds the retries.
pub fn classify_sqlstate(code: &str) -> FailureKind {
    match code {
        // Class 08: connection exception. 57P01-57P03: admin/crash shutdown, cannot connect
        // now (the server is restarting). 53300: too many connections.
        c if c.starts_with("08") => FailureKind::Unavailable,
        "57P01" | "57P02" | "57P03" | "53300" => FailureKind::Unavailable,
        // Class 22: data exception (NUL in text/jsonb, value out of range, bad encoding).
        // Class 23: integrity constraint violation other than our ON CONFLICT target.
        // 54000/54001: a value too large or too complex for the server.
        c if c.starts_with("22") || c.starts_with("23") => FailureKind::Data,
        "54000" | "54001" => FailureKind::Data,
        // Timeouts (57014), serialization failures and deadlocks (class 40), lack of resources
        // (class 53), undefined table before migrations ran (42P01), and anything unknown.
        // Also a consumer and a table of different releases: `ON CONFLICT (key_id, id)` on a
        // table not yet migrated, or an older consumer's `ON CONFLICT (id)` on a migrated one,
        // is 42P10 (no unique constraint matches), and a writer role not yet granted a column
        // the conflict target reads is 42501. The rows are fine; the deploy is half done
        // (docs/deploy.md, section 9), so they wait in the queue instead of going to the DLQ.
        _ => FailureKind::Transient,
    }
}

/// Where events are written. One instance holds at most one database connection.
pub trait EventStore {
    /// Inserts `rows` in one transaction, skipping ids that are already stored. Either every
    /// row is written (or found to be a duplicate), or none is.
    fn write(
        &self,
        rows: &[Row<'_>],
    ) -> impl Future<Output = Result<WriteCounts, StoreError>> + Send;

    /// Checks that the database answers, writing nothing: what the circuit breaker's probes
    /// call ([`crate::breaker`]). An error of kind [`FailureKind::Unavailable`] means the
    /// database is still away; any other answer means it is reachable.
    fn probe(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        assert_eq!(classify_sqlstate("08006"), FailureKind::Unavailable);
        assert_eq!(classify_sqlstate("57P01"), FailureKind::Unavailable);
        assert_eq!(classify_sqlstate("57P03"), FailureKind::Unavailable);
        // NUL in a jsonb string / in text.
        assert_eq!(classify_sqlstate("22P05"), FailureKind::Data);
        assert_eq!(classify_sqlstate("22021"), FailureKind::Data);
        assert_eq!(classify_sqlstate("23502"), FailureKind::Data);
        assert_eq!(classify_sqlstate("57014"), FailureKind::Transient);
        assert_eq!(classify_sqlstate("40P01"), FailureKind::Transient);
        assert_eq!(classify_sqlstate("42P01"), FailureKind::Transient);
        // A consumer and a table of different releases (see classify_sqlstate).
        assert_eq!(classify_sqlstate("42P10"), FailureKind::Transient);
        assert_eq!(classify_sqlstate("42501"), FailureKind::Transient);
    }

    #[test]
    fn only_data_errors_are_permanent() {
        assert!(FailureKind::Unavailable.is_retryable());
        assert!(FailureKind::Transient.is_retryable());
        assert!(!FailureKind::Data.is_retryable());
    }

    #[test]
    fn error_message_names_the_sqlstate() {
        let e = StoreError {
            kind: FailureKind::Data,
            code: Some("22P05".into()),
            message: "unsupported Unicode escape sequence".into(),
        };
        assert_eq!(
            e.to_string(),
            "Data database failure (SQLSTATE 22P05): unsupported Unicode escape sequence"
        );
    }
}
