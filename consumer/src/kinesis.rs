//! What is Kinesis's own in handling a delivered batch, pure: the order of sequence numbers,
//! where a record came from (its shard, in `eventID`), and which failed records must be
//! reported so that Lambda delivers them again.
//!
//! Lambda's Kinesis event source reads `batchItemFailures` as a checkpoint, not as a list: the
//! lowest reported sequence number becomes the shard's checkpoint and every record from it on
//! is delivered again, whether reported or not. So a record after the lowest reported one
//! comes back anyway ([`Redelivery::covers`]); the handler leaves such a record's dead letter
//! to that next delivery instead of sending a duplicate now.
//!
//! It does not decode records (that is [`crate::plan`]) and does not send anything (the
//! handler does, through [`crate::dead_letter::DeadLetterSink`]).

use std::cmp::Ordering;

use aws_lambda_events::event::kinesis::KinesisEventRecord;

use crate::dead_letter::DeadLetter;

/// Orders two Kinesis sequence numbers: decimal strings of up to 129 digits, too long for any
/// machine integer. Without leading zeros a longer number is larger, and numbers of the same
/// length compare digit by digit, which is how strings compare. Leading zeros (Kinesis sends
/// none) are ignored, so `"007"` equals `"7"`.
pub fn cmp_sequence(a: &str, b: &str) -> Ordering {
    let trim = |s: &'_ str| -> String {
        let t = s.trim_start_matches('0');
        if t.is_empty() && !s.is_empty() {
            "0".to_owned()
        } else {
            t.to_owned()
        }
    };
    let (a, b) = (trim(a), trim(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(&b))
}

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
    /// A record without a sequence number was reported: its empty identifier fails the whole
    /// batch (as Lambda documents for an empty `itemIdentifier`).
    All,
    Sequence(String),
}

impl Redelivery {
    /// Notes that the record with sequence number `sequence` is reported as failed (`None`:
    /// it has none).
    pub fn report(&mut self, sequence: Option<&str>) {
        let lowest = match (self.lowest.take(), sequence) {
            (Some(Lowest::All), _) | (_, None) => Lowest::All,
            (None, Some(s)) => Lowest::Sequence(s.to_owned()),
            (Some(Lowest::Sequence(old)), Some(s)) => {
                if cmp_sequence(s, &old) == Ordering::Less {
                    Lowest::Sequence(s.to_owned())
                } else {
                    Lowest::Sequence(old)
                }
            }
        };
        self.lowest = Some(lowest);
    }

    /// Whether the record with `sequence` is delivered again anyway: it comes after the lowest
    /// reported record (or the whole batch is retried). The reported record itself is not
    /// "covered": it is what the report is about.
    pub fn covers(&self, sequence: Option<&str>) -> bool {
        match (&self.lowest, sequence) {
            (None, _) => false,
            (Some(Lowest::All), _) => true,
            (Some(Lowest::Sequence(_)), None) => false,
            (Some(Lowest::Sequence(lowest)), Some(s)) => {
                cmp_sequence(s, lowest) == Ordering::Greater
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_by_length_then_digits() {
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692540925702759324208523137515618";
        assert_eq!(cmp_sequence(a, b), Ordering::Less);
        assert_eq!(cmp_sequence(b, a), Ordering::Greater);
        assert_eq!(cmp_sequence(a, a), Ordering::Equal);
        // A shorter number is smaller even when its first digit is larger: "9" < "10".
        assert_eq!(cmp_sequence("9", "10"), Ordering::Less);
        assert_eq!(cmp_sequence("007", "7"), Ordering::Equal);
        assert_eq!(cmp_sequence("0", "000"), Ordering::Equal);
        // 129 digits, beyond u128 (39 digits): the last digit decides.
        let big = |last: char| format!("{}{last}", "9".repeat(128));
        assert_eq!(cmp_sequence(&big('1'), &big('2')), Ordering::Less);
        assert_eq!(cmp_sequence(&big('9'), &"1".repeat(129)), Ordering::Greater);
        assert_eq!(
            cmp_sequence(&"9".repeat(128), &"1".repeat(129)),
            Ordering::Less
        );
        // Sorting with it matches sorting by numeric value.
        let mut seqs = vec!["100", "99", "1000", "2", "1", b, a];
        seqs.sort_by(|x, y| cmp_sequence(x, y));
        assert_eq!(seqs, ["1", "2", "99", "100", "1000", a, b]);
    }

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
        // An empty identifier retries the whole batch.
        r.report(None);
        assert!(r.covers(Some("1")) && r.covers(None));
        r.report(Some("1"));
        assert!(r.covers(Some("1")), "the whole batch stays retried");
    }
}
