//! The write policy, pure: which rows go to the database in which order, and what each answer
//! from the store means for the records of the batch.
//!
//! First every accepted record's events in one bulk write. If the database refuses the data
//! itself (SQLSTATE class 22/23), one write per record finds the culprit, so only its record
//! fails. If the database is unreachable, every record not yet written fails (retryable). The
//! handler only runs the loop: `while let Some(rows) = policy.next_write() { policy.record(write) }`.
//!
//! Both kinds of write build their rows with [`rows_of`], so an event repeated within what is
//! written together (the same id from the same key) is sent once and counted as a duplicate
//! either way.

use std::collections::HashSet;

use crate::plan::{Accepted, Plan};
use crate::store::{FailureKind, Row, StoreError, WriteCounts};

/// The rows of `records`, each `(key_id, id)` once (the first occurrence wins), and how many
/// occurrences were dropped as repeats. The same id from two keys is two events, as in the
/// table's primary key.
pub fn rows_of<'a>(records: impl IntoIterator<Item = &'a Accepted>) -> (Vec<Row<'a>>, u64) {
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    let mut duplicates = 0;
    for accepted in records {
        for event in &accepted.events {
            if seen.insert((event.key_id.as_str(), event.id)) {
                rows.push(Row {
                    event,
                    record_id: &accepted.record_id,
                });
            } else {
                duplicates += 1;
            }
        }
    }
    (rows, duplicates)
}

/// A record whose write failed.
#[derive(Debug, Clone)]
pub struct WriteFailure<'p> {
    pub record: &'p Accepted,
    pub error: StoreError,
}

/// What the policy learnt from one answer, for the handler to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Nothing worth a log line of its own.
    Noted,
    /// The bulk write was refused for its data: records are now written one by one.
    Isolating(StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The bulk write is next.
    Bulk,
    /// The bulk write is out; the number is its in-batch duplicates.
    AwaitingBulk(u64),
    /// Record `next` is the next to write alone.
    Isolating {
        next: usize,
    },
    /// Record `at` is being written alone; the number is its own repeats.
    AwaitingOne {
        at: usize,
        duplicates: u64,
    },
    Done,
}

/// Walks one batch through the writes it needs. See the module documentation.
#[derive(Debug)]
pub struct WritePolicy<'p> {
    plan: &'p Plan,
    stage: Stage,
    counts: WriteCounts,
    failures: Vec<WriteFailure<'p>>,
}

impl<'p> WritePolicy<'p> {
    pub fn new(plan: &'p Plan) -> Self {
        Self {
            plan,
            stage: Stage::Bulk,
            counts: WriteCounts::default(),
            failures: Vec::new(),
        }
    }

    /// The rows of the next write, or `None` once the batch needs no more.
    ///
    /// Each `Some` must be answered with [`WritePolicy::record`] before the next call.
    pub fn next_write(&mut self) -> Option<Vec<Row<'p>>> {
        loop {
            match self.stage {
                Stage::Bulk => {
                    let (rows, duplicates) = rows_of(&self.plan.accepted);
                    if rows.is_empty() {
                        self.counts.duplicates += duplicates;
                        self.stage = Stage::Done;
                        continue;
                    }
                    self.stage = Stage::AwaitingBulk(duplicates);
                    return Some(rows);
                }
                Stage::Isolating { next } => {
                    let Some(record) = self.plan.accepted.get(next) else {
                        self.stage = Stage::Done;
                        continue;
                    };
                    let (rows, duplicates) = rows_of([record]);
                    if rows.is_empty() {
                        self.stage = Stage::Isolating { next: next + 1 };
                        continue;
                    }
                    self.stage = Stage::AwaitingOne {
                        at: next,
                        duplicates,
                    };
                    return Some(rows);
                }
                Stage::AwaitingBulk(_) | Stage::AwaitingOne { .. } | Stage::Done => return None,
            }
        }
    }

    /// Takes the store's answer to the write [`WritePolicy::next_write`] returned last.
    pub fn record(&mut self, result: Result<WriteCounts, StoreError>) -> Recorded {
        match (self.stage, result) {
            (Stage::AwaitingBulk(duplicates), Ok(counts)) => {
                self.counts.add(counts);
                self.counts.duplicates += duplicates;
                self.stage = Stage::Done;
                Recorded::Noted
            }
            (Stage::AwaitingBulk(_), Err(e)) if e.kind == FailureKind::Data => {
                self.stage = Stage::Isolating { next: 0 };
                Recorded::Isolating(e)
            }
            (Stage::AwaitingBulk(_), Err(e)) => {
                self.fail_from(0, &e);
                self.stage = Stage::Done;
                Recorded::Noted
            }
            (Stage::AwaitingOne { at, duplicates }, Ok(counts)) => {
                self.counts.add(counts);
                self.counts.duplicates += duplicates;
                self.stage = Stage::Isolating { next: at + 1 };
                Recorded::Noted
            }
            (Stage::AwaitingOne { at, .. }, Err(e)) if e.kind == FailureKind::Unavailable => {
                // The database went away meanwhile: this record and all after it fail.
                self.fail_from(at, &e);
                self.stage = Stage::Done;
                Recorded::Noted
            }
            (Stage::AwaitingOne { at, .. }, Err(e)) => {
                if let Some(record) = self.plan.accepted.get(at) {
                    self.failures.push(WriteFailure { record, error: e });
                }
                self.stage = Stage::Isolating { next: at + 1 };
                Recorded::Noted
            }
            // An answer nobody asked for changes nothing.
            (Stage::Bulk | Stage::Isolating { .. } | Stage::Done, _) => Recorded::Noted,
        }
    }

    fn fail_from(&mut self, first: usize, error: &StoreError) {
        for record in self.plan.accepted.iter().skip(first) {
            self.failures.push(WriteFailure {
                record,
                error: error.clone(),
            });
        }
    }

    /// What was written, and the records that failed, in batch order.
    pub fn finish(self) -> (WriteCounts, Vec<WriteFailure<'p>>) {
        (self.counts, self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::event;

    fn plan(records: &[(&str, &[u128])]) -> Plan {
        Plan {
            batch_size: records.len(),
            accepted: records
                .iter()
                .enumerate()
                .map(|(index, (id, events))| Accepted {
                    index,
                    record_id: (*id).into(),
                    events: events.iter().map(|n| event(*n)).collect(),
                })
                .collect(),
            failed: Vec::new(),
        }
    }

    fn ids(rows: &[Row<'_>]) -> Vec<(u128, String)> {
        rows.iter()
            .map(|r| (r.event.id.as_u128(), r.record_id.to_owned()))
            .collect()
    }

    fn ok(inserted: u64) -> Result<WriteCounts, StoreError> {
        Ok(WriteCounts {
            inserted,
            duplicates: 0,
        })
    }

    fn refused() -> StoreError {
        StoreError {
            kind: FailureKind::Data,
            code: Some("22P05".into()),
            message: "refused".into(),
        }
    }

    fn failed<'a>(failures: &'a [WriteFailure<'_>]) -> Vec<(&'a str, FailureKind)> {
        failures
            .iter()
            .map(|f| (f.record.record_id.as_str(), f.error.kind))
            .collect()
    }

    #[test]
    fn one_bulk_write_when_the_database_takes_it() {
        let p = plan(&[("a", &[1, 2]), ("b", &[2, 3])]);
        let mut policy = WritePolicy::new(&p);
        let rows = policy.next_write().expect("bulk");
        assert_eq!(
            ids(&rows),
            [(1, "a".into()), (2, "a".into()), (3, "b".into())]
        );
        assert_eq!(policy.record(ok(3)), Recorded::Noted);
        assert!(policy.next_write().is_none());
        let (counts, failures) = policy.finish();
        assert_eq!((counts.inserted, counts.duplicates), (3, 1));
        assert!(failures.is_empty());
    }

    #[test]
    fn the_same_id_from_two_keys_is_two_rows() {
        // Two tenants chose the same client id: neither event is a repeat of the other. The
        // same id from the same key again (a retry) still is.
        let mut p = plan(&[("a", &[1, 2]), ("b", &[1, 2])]);
        for e in &mut p.accepted[1].events {
            e.key_id = "other".into();
        }
        p.accepted[1].events.push(event(1));
        let (rows, duplicates) = rows_of(&p.accepted);
        let keyed: Vec<(&str, u128, &str)> = rows
            .iter()
            .map(|r| (r.event.key_id.as_str(), r.event.id.as_u128(), r.record_id))
            .collect();
        assert_eq!(
            keyed,
            [
                ("web", 1, "a"),
                ("web", 2, "a"),
                ("other", 1, "b"),
                ("other", 2, "b")
            ]
        );
        assert_eq!(duplicates, 1);
    }

    #[test]
    fn refused_data_is_written_record_by_record_with_the_same_row_builder() {
        // A record repeated in the same message: sent once when alone too.
        let p = plan(&[("a", &[1, 1]), ("b", &[2]), ("c", &[3])]);
        let mut policy = WritePolicy::new(&p);
        policy.next_write().expect("bulk");
        assert_eq!(
            policy.record(Err(refused())),
            Recorded::Isolating(refused())
        );
        let a = policy.next_write().expect("a alone");
        assert_eq!(ids(&a), [(1, "a".into())]);
        policy.record(ok(1));
        let b = policy.next_write().expect("b alone");
        assert_eq!(ids(&b), [(2, "b".into())]);
        policy.record(Err(refused()));
        let c = policy.next_write().expect("c alone");
        assert_eq!(ids(&c), [(3, "c".into())]);
        policy.record(ok(1));
        assert!(policy.next_write().is_none());
        let (counts, failures) = policy.finish();
        assert_eq!((counts.inserted, counts.duplicates), (2, 1));
        assert_eq!(failed(&failures), [("b", FailureKind::Data)]);
    }

    #[test]
    fn an_event_repeated_across_records_is_still_written_with_each_alone() {
        // If `a` is the culprit, `c` must still store event 2 itself: its own write may not
        // rely on `a`'s.
        let p = plan(&[("a", &[1, 2]), ("c", &[2])]);
        let mut policy = WritePolicy::new(&p);
        policy.next_write().expect("bulk");
        policy.record(Err(refused()));
        policy.next_write().expect("a alone");
        policy.record(Err(refused()));
        let c = policy.next_write().expect("c alone");
        assert_eq!(ids(&c), [(2, "c".into())]);
    }

    #[test]
    fn a_database_down_fails_every_record() {
        let p = plan(&[("a", &[1]), ("b", &[2])]);
        let mut policy = WritePolicy::new(&p);
        policy.next_write().expect("bulk");
        policy.record(Err(StoreError::unavailable("refused")));
        assert!(policy.next_write().is_none());
        let (counts, failures) = policy.finish();
        assert_eq!(counts, WriteCounts::default());
        assert_eq!(
            failed(&failures),
            [
                ("a", FailureKind::Unavailable),
                ("b", FailureKind::Unavailable)
            ]
        );
    }

    #[test]
    fn a_database_lost_while_isolating_fails_the_rest_without_writing() {
        let p = plan(&[("a", &[1]), ("b", &[2]), ("c", &[3])]);
        let mut policy = WritePolicy::new(&p);
        policy.next_write().expect("bulk");
        policy.record(Err(refused()));
        policy.next_write().expect("a alone");
        policy.record(ok(1));
        policy.next_write().expect("b alone");
        policy.record(Err(StoreError::unavailable("gone")));
        assert!(policy.next_write().is_none(), "c is not tried");
        let (counts, failures) = policy.finish();
        assert_eq!(counts.inserted, 1);
        assert_eq!(
            failed(&failures),
            [
                ("b", FailureKind::Unavailable),
                ("c", FailureKind::Unavailable)
            ]
        );
    }

    #[test]
    fn nothing_to_write_asks_for_no_write() {
        let p = plan(&[]);
        let mut policy = WritePolicy::new(&p);
        assert!(policy.next_write().is_none());
        assert_eq!(policy.finish().0, WriteCounts::default());
    }
}
