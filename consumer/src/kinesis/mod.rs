//! What is Kinesis's own in handling a delivered batch, pure: the order of sequence numbers
//! ([`SeqNum`], which the local poller uses too), where a record came from (its shard, in
//! `eventID`), and which failed records must be reported so that Lambda delivers them again.
//!
//! Lambda's Kinesis event source reads `batchItemFailures` as a checkpoint, not as a list: the
//! lowest reported sequence number becomes the shard's checkpoint and every record from it on
//! is delivered again, whether reported or not. So a record after the lowest reported one
//! comes back anyway ([`Redelivery::covers`]); the handler leaves such a record's dead letter
//! to that next delivery instead of sending a duplicate now.
//!
//! It does not decode records (that is [`crate::plan`]) and does not send anything (the
//! handler does, through [`crate::dead_letter::DeadLetterSink`]).

use aws_lambda_events::event::kinesis::KinesisEventRecord;

use crate::dead_letter::DeadLetter;

mod seq;

pub use seq::SeqNum;

/// The shard of a record, from its `eventID` (`shardId-000000000006:4959...`); `None` when the
/// id has no `:`.
pub fn shard_of(event_id: &str) -> Option<&str> {
    event_id
        .split_once(':')
        .map(|(shard, _)| shard)
        .filter(|s| !s.is_empty())
}

/// The dead letter of `record`, which can never be stored because of `reason`: its data
/// unchanged, and where it came from.
pub fn dead_letter(record: &KinesisEventRecord, reason: String) -> DeadLetter {
    DeadLetter {
        data: record.kinesis.data.0.clone(),
        stream_arn: record.event_source_arn.clone().unwrap_or_default(),
        shard_id: record
            .event_id
            .as_deref()
            .and_then(shard_of)
            .unwrap_or_default()
            .to_owned(),
        sequence_number: record.kinesis.sequence_number.clone(),
        partition_key: record.kinesis.partition_key.clone(),
        reason,
    }
}

/// The records Lambda will deliver again after this invocation: every record from the lowest
/// reported sequence number on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redelivery {
    lowest: Option<Lowest>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Lowest {
    /// A record without a valid sequence number was reported: its empty or malformed
    /// identifier fails the whole batch (as Lambda documents for an empty `itemIdentifier`, and
    /// as the local poller treats one it cannot place).
    All,
    Sequence(SeqNum),
}

impl Redelivery {
    /// Notes that the record with sequence number `sequence` is reported as failed (`None`:
    /// it has none).
    pub fn report(&mut self, sequence: Option<&str>) {
        let lowest = match (self.lowest.take(), sequence.and_then(SeqNum::parse)) {
            (Some(Lowest::All), _) | (_, None) => Lowest::All,
            (None, Some(s)) => Lowest::Sequence(s),
            (Some(Lowest::Sequence(old)), Some(s)) => Lowest::Sequence(old.min(s)),
        };
        self.lowest = Some(lowest);
    }

    /// Whether the record with `sequence` is delivered again anyway: it comes after the lowest
    /// reported record (or the whole batch is retried). The reported record itself is not
    /// "covered": it is what the report is about.
    pub fn covers(&self, sequence: Option<&str>) -> bool {
        match (&self.lowest, sequence.and_then(SeqNum::parse)) {
            (None, _) => false,
            (Some(Lowest::All), _) => true,
            (Some(Lowest::Sequence(_)), None) => false,
            (Some(Lowest::Sequence(lowest)), Some(s)) => s > *lowest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_is_the_event_ids_prefix() {
        assert_eq!(
            shard_of(
                "shardId-000000000006:49590338271490256608559692538361571095921575989136588898"
            ),
            Some("shardId-000000000006")
        );
        assert_eq!(shard_of("no-colon"), None);
        assert_eq!(shard_of(":123"), None);
    }

    #[test]
    fn records_after_the_lowest_report_come_back() {
        let mut r = Redelivery::default();
        assert!(!r.covers(Some("5")), "nothing reported: nothing comes back");
        r.report(Some("100"));
        r.report(Some("20"));
        r.report(Some("300"));
        assert!(!r.covers(Some("19")));
        assert!(!r.covers(Some("20")), "the reported record is not covered");
        assert!(r.covers(Some("21")));
        assert!(r.covers(Some("100")));
        assert!(!r.covers(None));
        // A malformed identifier cannot be placed: like an empty one, the whole batch comes back.
        let mut bad = r.clone();
        bad.report(Some("12a"));
        assert!(bad.covers(Some("1")) && bad.covers(None));
        // An empty identifier retries the whole batch.
        r.report(None);
        assert!(r.covers(Some("1")) && r.covers(None));
        r.report(Some("1"));
        assert!(r.covers(Some("1")), "the whole batch stays retried");
    }
}
