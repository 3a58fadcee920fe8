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
    if digits <= 6 {
        // Whole microseconds: `rint(strtod)` gives exactly these (the double is within far
        // less than half a microsecond of them, and never half-way).
        let value = rest
            .bytes()
            .take(digits)
            .fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
        return value * 10i64.pow(6 - digits as u32);
    }
    let fraction: f64 = format!("0.{}", &rest[..digits]).parse().unwrap_or(0.0);
    (fraction * 1_000_000.0).round_ties_even() as i64
}

fn is_last_day_of_month(date: NaiveDate) -> bool {
    date.succ_opt()
        .is_none_or(|next| next.month() != date.month())
}

/// Serialises a timestamp as chrono's serde does (RFC 3339, UTC as `Z`, the fraction in 0, 3,
/// 6 or 9 digits, whichever is exact), without going through `fmt` one character at a time:
/// every event carries one or two timestamps, and this was a measurable part of the request
/// path. What this fast path does not cover (years outside 0-9999, leap-second nanos) goes
/// through chrono itself, so the output is chrono's in every case.
pub fn serialize_rfc3339<S: serde::Serializer>(
    t: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 32];
    match write_rfc3339(t, &mut buf) {
        Some(len) => {
            // Only ASCII digits and punctuation were written.
            let text = std::str::from_utf8(&buf[..len]).map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(text)
        }
        None => serde::Serialize::serialize(t, serializer),
    }
}

/// [`serialize_rfc3339`] for an optional timestamp (serialised only when present).
pub fn serialize_rfc3339_opt<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize_rfc3339(t, serializer),
        None => serializer.serialize_none(),
    }
}

/// Writes `t` into `buf`; `None` when it needs chrono's general formatting.
pub(crate) fn write_rfc3339(t: &DateTime<Utc>, buf: &mut [u8; 32]) -> Option<usize> {
    // The UTC fields once, not re-derived through the (zero) offset for each accessor.
    let t = t.naive_utc();
    let year = t.year();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    fn put(buf: &mut [u8], at: usize, value: u32, digits: usize) {
        let mut v = value;
        for k in (0..digits).rev() {
            buf[at + k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    put(buf, 0, year as u32, 4);
    buf[4] = b'-';
    put(buf, 5, t.month(), 2);
    buf[7] = b'-';
    put(buf, 8, t.day(), 2);
    buf[10] = b'T';
    put(buf, 11, t.hour(), 2);
    buf[13] = b':';
    put(buf, 14, t.minute(), 2);
    buf[16] = b':';
    put(buf, 17, t.second(), 2);
    let mut len = 19;
    let (value, digits) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (nanos / 1_000_000, 3)
    } else if nanos.is_multiple_of(1_000) {
        (nanos / 1_000, 6)
    } else {
        (nanos, 9)
    };
    if digits > 0 {
        buf[len] = b'.';
        put(buf, len + 1, value, digits);
        len += 1 + digits;
    }
    buf[len] = b'Z';
    Some(len + 1)
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

    /// Up to six digits the fraction is read as an integer; it must be what `rint(strtod)`
    /// gives, for every such fraction.
    #[test]
    fn short_fractions_are_exactly_what_strtod_rounds_to() {
        for digits in 1..=6usize {
            for value in 0..10u32.pow(digits as u32) {
                let fraction = format!("{value:0digits$}");
                let text = format!("2026-01-01T00:00:00.{fraction}Z");
                let strtod: f64 = format!("0.{fraction}").parse().expect("number");
                assert_eq!(
                    fraction_micros(&text),
                    (strtod * 1_000_000.0).round_ties_even() as i64,
                    "{text}"
                );
            }
        }
        assert_eq!(fraction_micros("2026-01-01T00:00:00Z"), 0);
        assert_eq!(fraction_micros("2026-01-01T00:00:00.Z"), 0);
        assert_eq!(fraction_micros("2026-01-01T00:00:00.12+01:00"), 120_000);
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

    #[test]
    fn fast_serialisation_is_chronos() {
        let chrono_text = |t: &DateTime<Utc>| serde_json::to_string(t).expect("json");
        let ours = |t: &DateTime<Utc>| {
            let mut out = Vec::new();
            serialize_rfc3339(t, &mut serde_json::Serializer::new(&mut out)).expect("json");
            String::from_utf8(out).expect("utf8")
        };
        let mut cases: Vec<DateTime<Utc>> = Vec::new();
        for ms in [
            0i64,
            1,
            999,
            1_795_852_800_000,
            1_795_852_800_123,
            253_402_300_799_999,
        ] {
            cases.push(DateTime::from_timestamp_millis(ms).expect("time"));
        }
        // Every fraction width, the edges of the fast path and both sides of it.
        for (secs, nanos) in [
            (1_795_852_800, 120_000_000),
            (1_795_852_800, 123_456_000),
            (1_795_852_800, 123_456_789),
            (1_795_852_800, 1),
            (-62_167_219_200, 0),           // 0000-01-01
            (-62_167_219_201, 500_000_000), // -0001-12-31: chrono's own path
            (253_402_300_800, 0),           // 10000-01-01: chrono's own path
            (1_795_852_799, 1_500_000_000), // a leap second: chrono's own path
        ] {
            cases.push(DateTime::from_timestamp(secs, nanos).expect("time"));
        }
        // A spread of instants across the fast path's range.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % 253_402_300_799) as i64 - 62_167_219_200 / 2;
            let nanos = match x % 4 {
                0 => 0,
                1 => ((x >> 8) % 1_000) as u32 * 1_000_000,
                2 => ((x >> 8) % 1_000_000) as u32 * 1_000,
                _ => ((x >> 8) % 1_000_000_000) as u32,
            };
            if let Some(t) = DateTime::from_timestamp(secs, nanos) {
                cases.push(t);
            }
        }
        for t in &cases {
            assert_eq!(ours(t), chrono_text(t), "{t:?}");
        }
    }
}
