//! The client's `timestamp`: RFC 3339, read into the value PostgreSQL's `timestamptz` would
//! store for the same text.
//!
//! PostgreSQL keeps microseconds and rounds the fraction as `rint(strtod(fraction) * 1e6)`
//! (ties to even, `datetime.c`), so `.0000015` is stored as `.000002` and `.9999995` carries
//! into the next second; chrono alone would truncate to nanoseconds and the driver to
//! microseconds. PostgreSQL also reads second `60` in any minute as the next minute; RFC 3339
//! allows it only for a leap second, which happens at 23:59:60 UTC at the end of a month, so
//! anywhere else it is refused, and so is a fraction of a leap second (PostgreSQL refuses
//! `23:59:60.5`).

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};

/// Second `60` outside a possible leap second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeapSecond;

/// `None` when `text` is not RFC 3339; `Some(Err)` for a second 60 that cannot be a leap
/// second; otherwise the instant, in whole microseconds.
pub fn parse(text: &str) -> Option<Result<DateTime<Utc>, LeapSecond>> {
    let t = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    let leap = t.nanosecond() >= 1_000_000_000;
    if leap && !(t.hour() == 23 && t.minute() == 59 && is_last_day_of_month(t.date_naive())) {
        return Some(Err(LeapSecond));
    }
    let micros = fraction_micros(text);
    // PostgreSQL refuses a fraction of a leap second written as 23:59:60 (past 24:00:00); a
    // leap second is accepted whole, and stored as PostgreSQL stores it: the next second.
    if leap && micros > 0 {
        return Some(Err(LeapSecond));
    }
    let whole = t.timestamp() + i64::from(leap);
    let rounded = DateTime::<Utc>::from_timestamp(whole, 0)
        .and_then(|t| t.checked_add_signed(Duration::microseconds(micros)));
    Some(Ok(rounded.unwrap_or(t)))
}

/// The fraction of a second as PostgreSQL rounds it, in microseconds (0 to 1,000,000).
fn fraction_micros(text: &str) -> i64 {
    // RFC 3339's fixed layout: `YYYY-MM-DDTHH:MM:SS` is 19 bytes, then an optional fraction.
    let Some(rest) = text.get(19..).and_then(|r| r.strip_prefix('.')) else {
        return 0;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let fraction: f64 = format!("0.{}", &rest[..digits]).parse().unwrap_or(0.0);
    (fraction * 1_000_000.0).round_ties_even() as i64
}

fn is_last_day_of_month(date: NaiveDate) -> bool {
    date.succ_opt()
        .is_none_or(|next| next.month() != date.month())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> String {
        parse(text)
            .expect("rfc 3339")
            .expect("no bad leap second")
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string()
    }

    #[test]
    fn fractions_round_as_postgresql_does() {
        // Each expectation is PostgreSQL 15's `'<text>'::timestamptz`.
        assert_eq!(
            micros("2026-01-01T00:00:00.0000005Z"),
            "2026-01-01 00:00:00.000000"
        );
        assert_eq!(
            micros("2026-01-01T00:00:00.0000015Z"),
            "2026-01-01 00:00:00.000002"
        );
        assert_eq!(
            micros("2026-01-01T00:00:00.0000025Z"),
            "2026-01-01 00:00:00.000002"
        );
        assert_eq!(
            micros("2026-01-01T00:00:00.9999995Z"),
            "2026-01-01 00:00:01.000000"
        );
        assert_eq!(
            micros("2026-01-01T00:00:00.123456789123Z"),
            "2026-01-01 00:00:00.123457"
        );
        assert_eq!(
            micros("2026-01-01T05:30:00.5+05:30"),
            "2026-01-01 00:00:00.500000"
        );
    }

    #[test]
    fn second_sixty_only_as_a_leap_second() {
        assert_eq!(parse("2026-01-01T12:34:60Z"), Some(Err(LeapSecond)));
        assert_eq!(parse("2026-06-15T23:59:60Z"), Some(Err(LeapSecond)));
        assert_eq!(micros("2016-12-31T23:59:60Z"), "2017-01-01 00:00:00.000000");
        assert_eq!(
            micros("2016-12-31T18:59:60-05:00"),
            "2017-01-01 00:00:00.000000"
        );
        // PostgreSQL: "date/time field value out of range" for 23:59:60.1.
        assert_eq!(parse("2026-06-30T23:59:60.1Z"), Some(Err(LeapSecond)));
        assert_eq!(
            parse("2026-06-30T23:59:60.0Z").map(|r| r.is_ok()),
            Some(true)
        );
        assert_eq!(micros("2026-06-30T23:59:60Z"), "2026-07-01 00:00:00.000000");
    }

    #[test]
    fn not_rfc_3339() {
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse("2026-01-01"), None);
        assert_eq!(parse("2026-01-01T00:00:61Z"), None);
    }
}
