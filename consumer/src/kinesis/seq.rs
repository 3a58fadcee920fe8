//! Kinesis sequence numbers: decimal strings of up to 129 digits, ordered as numbers.
//!
//! They are compared by length, then digit by digit, never converted to `u64`/`u128` (real
//! ones are 56 digits today and the API allows 129). The handler (which records Lambda delivers
//! again) and the local poller (where a shard's delivery resumes) both order by this one type.
//! It does not know which shard a number belongs to: numbers of different shards are not
//! comparable in any useful sense.

use std::cmp::Ordering;
use std::fmt;

/// One record's sequence number, validated and without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeqNum(String);

impl SeqNum {
    /// The Kinesis API's bound on a sequence number's length.
    pub const MAX_DIGITS: usize = 129;

    /// `None` unless `raw` is 1..=129 ASCII digits.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.is_empty()
            || raw.len() > Self::MAX_DIGITS
            || !raw.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // Leading zeros would make the length comparison lie; Kinesis never sends them, but a
        // hand-edited checkpoint file might.
        let trimmed = raw.trim_start_matches('0');
        Some(Self(
            if trimmed.is_empty() { "0" } else { trimmed }.to_owned(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for SeqNum {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.as_bytes().cmp(other.0.as_bytes()))
    }
}

impl PartialOrd for SeqNum {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> SeqNum {
        SeqNum::parse(v).expect("valid")
    }

    #[test]
    fn compares_by_value_up_to_129_digits() {
        let max = "9".repeat(129);
        let below = format!("{}8", "9".repeat(128));
        let long = format!("1{}", "0".repeat(128));
        assert!(s(&below) < s(&max));
        assert!(s(&"9".repeat(128)) < s(&long), "shorter is smaller");
        assert!(s(&long) < s(&max));
        // Beyond u128 (39 digits) the order still holds.
        let a = format!("{}1", "5".repeat(60));
        let b = format!("{}2", "5".repeat(60));
        assert!(s(&a) < s(&b));
        assert_eq!(s("0049"), s("49"));
        assert!(s("9") < s("10"));
        let mut v = [s("10"), s("9"), s(&max), s("100"), s("0")];
        v.sort();
        let got: Vec<&str> = v.iter().map(SeqNum::as_str).collect();
        assert_eq!(got, ["0", "9", "10", "100", max.as_str()]);
    }

    #[test]
    fn real_sequence_numbers_and_leading_zeros() {
        let a = s("49590338271490256608559692538361571095921575989136588898");
        let b = s("49590338271490256608559692540925702759324208523137515618");
        assert!(a < b);
        assert_eq!(b.cmp(&a), Ordering::Greater);
        assert_eq!(a.cmp(&a), Ordering::Equal);
        assert_eq!(s("007"), s("7"));
        assert_eq!(s("0"), s("000"));
        assert_eq!(s("000").as_str(), "0");
        // 129 digits: the last digit decides, and a longer number is larger.
        let big = |last: char| s(&format!("{}{last}", "9".repeat(128)));
        assert!(big('1') < big('2'));
        assert!(big('9') > s(&"1".repeat(129)));
        let mut v = [
            s("100"),
            s("99"),
            s("1000"),
            s("2"),
            s("1"),
            b.clone(),
            a.clone(),
        ];
        v.sort();
        let got: Vec<&str> = v.iter().map(SeqNum::as_str).collect();
        assert_eq!(got, ["1", "2", "99", "100", "1000", a.as_str(), b.as_str()]);
    }

    #[test]
    fn refuses_what_is_not_a_sequence_number() {
        for bad in ["", "12a", "-1", " 1", "1.0"] {
            assert_eq!(SeqNum::parse(bad), None, "{bad:?}");
        }
        assert_eq!(SeqNum::parse(&"1".repeat(130)), None);
        assert!(SeqNum::parse(&"1".repeat(129)).is_some());
    }
}
