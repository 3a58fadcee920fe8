//! What one result entry of a Kinesis `PutRecords` answer says about its record: the one rule
//! for the edge's sender and the dead-letter tool's redrive, so both count the same records as
//! in the stream.
//!
//! A record is in the stream only when its entry has no error code and a non-empty sequence
//! number. `FailedRecordCount` is not part of the rule (a sink that trusted it dropped partial
//! failures: vectordotdev/vector#16954). It does not decide retries (the edge classifies the
//! codes; the tool leaves the dead letter where it is) nor what an answer with another number
//! of entries than records sent means: each caller says.

/// One record's fate, read from its result entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutRecordResult<'a> {
    /// Kinesis holds it, under this sequence number.
    Stored(&'a str),
    /// Kinesis refused it with this error code (`ProvisionedThroughputExceededException`,
    /// `InternalFailure`, ...).
    Refused(&'a str),
    /// Neither an error code nor a sequence number: not known to be stored, so not stored.
    Unacknowledged,
}

/// Reads one entry from its `ErrorCode` and `SequenceNumber`. An error code wins over a
/// sequence number (the API sends one or the other; an answer with both is not trusted).
pub fn read_put_result<'a>(
    error_code: Option<&'a str>,
    sequence_number: Option<&'a str>,
) -> PutRecordResult<'a> {
    match (error_code, sequence_number) {
        (Some(code), _) => PutRecordResult::Refused(code),
        (None, Some(seq)) if !seq.is_empty() => PutRecordResult::Stored(seq),
        (None, _) => PutRecordResult::Unacknowledged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sequence_number_without_an_error_is_stored() {
        let seq = "49590338271490256608559692538361571095921575989136588898";
        assert_eq!(
            read_put_result(None, Some(seq)),
            PutRecordResult::Stored(seq)
        );
        assert_eq!(
            read_put_result(Some("ProvisionedThroughputExceededException"), None),
            PutRecordResult::Refused("ProvisionedThroughputExceededException")
        );
        assert_eq!(
            read_put_result(Some("InternalFailure"), Some(seq)),
            PutRecordResult::Refused("InternalFailure"),
            "an error code wins"
        );
        assert_eq!(read_put_result(None, None), PutRecordResult::Unacknowledged);
        assert_eq!(
            read_put_result(None, Some("")),
            PutRecordResult::Unacknowledged,
            "an empty sequence number acknowledges nothing"
        );
    }
}
