//! Time, in one place: the wall clock, and RFC 3339 parsing and formatting in epoch
//! milliseconds. The functional core never reads the clock itself; the shell passes it in
//! (see [`Clock`]), so tests can fix it.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A source of wall-clock time in epoch milliseconds. The engine core takes one so tests can
/// stamp outputs deterministically.
pub type Clock = fn() -> i64;

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    Rfc3339Ms(ms).to_string()
}

/// Epoch milliseconds that display (and serialise) as `YYYY-MM-DDTHH:MM:SS.mmmZ` without
/// allocating: years 0 to 9999 by arithmetic, others through chrono (the same text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339Ms(pub i64);

impl std::fmt::Display for Rfc3339Ms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (days, ms_of_day) = (self.0.div_euclid(86_400_000), self.0.rem_euclid(86_400_000));
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        if !(0..=9999).contains(&year) {
            let t = chrono::DateTime::from_timestamp_millis(self.0).unwrap_or_default();
            return write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
        }
        let (h, m, s, ms) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1_000 % 60, ms_of_day % 1_000);
        let mut b = *b"0000-00-00T00:00:00.000Z";
        for (at, value, width) in [(0, year, 4), (5, month, 2), (8, day, 2), (11, h, 2), (14, m, 2), (17, s, 2), (20, ms, 3)] {
            let mut v = value;
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        f.write_str(std::str::from_utf8(&b).map_err(|_| std::fmt::Error)?)
    }
}

impl Serialize for Rfc3339Ms {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Parses an RFC 3339 timestamp to epoch milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    fast_rfc3339_ms(s.as_bytes()).or_else(|| chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis()))
}

/// The common shape `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` without chrono's general parser
/// (it was ~4 % of decoding an event). `None` for anything else, which chrono then reads (or
/// refuses): lower-case or space separators, leap seconds, impossible dates.
fn fast_rfc3339_ms(b: &[u8]) -> Option<i64> {
    fn digits(b: &[u8]) -> Option<i64> {
        b.iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    }
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[month as usize - 1] || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        // Milliseconds, truncated (as chrono's `timestamp_millis`): the first three digits.
        millis = fraction[..n.min(3)].iter().fold(0, |m, &c| m * 10 + i64::from(c - b'0')) * [100, 10, 1][n.min(3) - 1];
        rest = &fraction[n..];
    }
    let offset_minutes = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'-' { -(h * 60 + m) } else { h * 60 + m }
        }
        _ => return None,
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

/// The unit of a numeric event time (`columns.timestamp_unit` in an artifact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampUnit {
    /// Decided by magnitude, see [`epoch_to_ms`].
    #[default]
    Auto,
    /// Unix seconds.
    Seconds,
    /// Unix milliseconds.
    Milliseconds,
    /// Unix microseconds.
    Microseconds,
    /// Unix nanoseconds.
    Nanoseconds,
}

impl TimestampUnit {
    /// Whether this is the default (`auto`), which serialisation leaves out.
    pub fn is_auto(&self) -> bool {
        *self == TimestampUnit::Auto
    }

    /// The unit `auto` reads a number of this magnitude in: below 10^11 seconds (10^11 s is the
    /// year 5138, 10^11 ms is 1973-03-03), below 10^14 milliseconds, below 10^17 microseconds,
    /// else nanoseconds.
    pub fn of_magnitude(v: f64) -> TimestampUnit {
        match v.abs() {
            a if a < 1e11 => TimestampUnit::Seconds,
            a if a < 1e14 => TimestampUnit::Milliseconds,
            a if a < 1e17 => TimestampUnit::Microseconds,
            _ => TimestampUnit::Nanoseconds,
        }
    }
}

/// Largest |epoch milliseconds| accepted: 9999-12-31T23:59:59.999Z. Anything beyond is not a
/// real event time, and keeping it out means no window arithmetic on event times can overflow.
pub const MAX_EPOCH_MS: i64 = 253_402_300_799_999;

/// Epoch milliseconds of a numeric event time in `unit` (fractions truncated towards −∞), or
/// `None` when it is not finite or beyond year 9999.
pub fn epoch_to_ms(v: f64, unit: TimestampUnit) -> Option<i64> {
    if !v.is_finite() {
        return None;
    }
    let unit = if unit == TimestampUnit::Auto { TimestampUnit::of_magnitude(v) } else { unit };
    let ms = match unit {
        TimestampUnit::Seconds => v * 1e3,
        TimestampUnit::Milliseconds => v,
        TimestampUnit::Microseconds => v / 1e3,
        TimestampUnit::Nanoseconds | TimestampUnit::Auto => v / 1e6,
    }
    .floor();
    (ms.abs() <= MAX_EPOCH_MS as f64).then_some(ms as i64)
}

/// Epoch milliseconds of an event time given as text: RFC 3339, or a number (as
/// [`epoch_to_ms`]).
pub fn parse_event_time(s: &str, unit: TimestampUnit) -> Option<i64> {
    parse_rfc3339_ms(s).filter(|ms| ms.abs() <= MAX_EPOCH_MS).or_else(|| s.trim().parse::<f64>().ok().and_then(|v| epoch_to_ms(v, unit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_in_every_common_unit() {
        let ms = 1_780_000_000_000; // 2026-05-28T20:26:40Z
        for (v, unit) in [
            (1_780_000_000.0, TimestampUnit::Seconds),
            (1_780_000_000_000.0, TimestampUnit::Milliseconds),
            (1_780_000_000_000_000.0, TimestampUnit::Microseconds),
            (1_780_000_000_000_000_000.0, TimestampUnit::Nanoseconds),
        ] {
            assert_eq!(epoch_to_ms(v, unit), Some(ms), "{v} in {unit:?}");
            assert_eq!(epoch_to_ms(v, TimestampUnit::Auto), Some(ms), "{v} by magnitude");
            assert_eq!(parse_event_time(&format!("{v:.0}"), TimestampUnit::Auto), Some(ms), "{v} as a string");
        }
        assert_eq!(epoch_to_ms(1_780_000_000.25, TimestampUnit::Auto), Some(ms + 250), "fractional seconds");
        assert_eq!(epoch_to_ms(1_780_000_000.0, TimestampUnit::Milliseconds), Some(1_780_000_000), "an explicit unit wins");
        assert_eq!(parse_event_time("2026-05-28T20:26:40Z", TimestampUnit::Seconds), Some(ms));
    }

    #[test]
    fn impossible_times_are_refused() {
        for v in [f64::NAN, f64::INFINITY, 1e19 * 1e6, -1e30] {
            assert_eq!(epoch_to_ms(v, TimestampUnit::Milliseconds), None, "{v}");
        }
        assert_eq!(epoch_to_ms(1e19, TimestampUnit::Milliseconds), None, "1e19 ms is past year 9999");
        assert_eq!(epoch_to_ms(MAX_EPOCH_MS as f64, TimestampUnit::Milliseconds), Some(MAX_EPOCH_MS));
        assert_eq!(parse_event_time("9999-12-31T23:59:59.999Z", TimestampUnit::Auto), Some(MAX_EPOCH_MS));
        assert_eq!(parse_event_time("yesterday", TimestampUnit::Auto), None);
        assert_eq!(parse_event_time("", TimestampUnit::Auto), None);
    }

    /// The formatter writes what chrono's `%Y-%m-%dT%H:%M:%S%.3fZ` writes, at every bound too.
    #[test]
    fn formatting_without_chrono_writes_what_chrono_writes() {
        use proptest::prelude::*;
        let chrono_text = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        for ms in [0, -1, 1, 951_782_400_000, 1_767_571_200_123, MAX_EPOCH_MS, -MAX_EPOCH_MS, -62_167_219_200_000, -62_167_219_200_001] {
            assert_eq!(Rfc3339Ms(ms).to_string(), chrono_text(ms), "{ms}");
        }
        assert_eq!(serde_json::to_string(&Rfc3339Ms(1_767_571_200_123)).unwrap(), "\"2026-01-05T00:00:00.123Z\"");
        proptest!(ProptestConfig::with_cases(20_000), |(ms in -MAX_EPOCH_MS..=MAX_EPOCH_MS)| {
            prop_assert_eq!(Rfc3339Ms(ms).to_string(), chrono_text(ms));
        });
    }

    /// The fast path gives chrono's answer on every input it takes, and leaves the rest to it.
    #[test]
    fn the_rfc3339_fast_path_agrees_with_chrono() {
        use proptest::prelude::*;
        let chrono_ms = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis());
        let mut fast = 0;
        let mut check = |s: &str| {
            assert_eq!(parse_rfc3339_ms(s), chrono_ms(s), "{s}");
            fast += usize::from(fast_rfc3339_ms(s.as_bytes()).is_some());
        };
        for s in [
            "2026-01-05T00:00:00.000Z", "2026-01-05T00:00:01.5Z", "2024-02-29T23:59:59.999999999Z", "2023-02-29T00:00:00Z",
            "1969-12-31T23:59:59.999Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2026-05-28T22:26:40+02:00",
            "2026-05-28T22:26:40-11:30", "2026-05-28t22:26:40z", "2026-05-28 22:26:40Z", "2026-06-30T23:59:60Z",
            "2026-13-01T00:00:00Z", "2026-04-31T00:00:00Z", "2026-01-05T24:00:00Z", "2026-01-05T00:00:00.Z", "2026-01-05T00:00:00",
            "2026-01-05T00:00:00+2:00", "2026-01-05T00:00:00+24:00", "2100-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "+2026-01-05T00:00:00Z",
        ] {
            check(s);
        }
        let shape = "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,10})?(Z|z|[+-][0-9]{2}:[0-9]{2})";
        proptest!(ProptestConfig::with_cases(20_000), |(s in shape)| {
            prop_assert_eq!(parse_rfc3339_ms(&s), chrono_ms(&s), "{}", s);
        });
        assert_eq!(fast, 9, "the fast path takes the 9 well-formed listed inputs");
    }

    #[test]
    fn formatting_and_parsing_round_trip() {
        let ms = 1_767_571_200_123; // 2026-01-05T00:00:00.123Z
        assert_eq!(format_rfc3339_ms(ms), "2026-01-05T00:00:00.123Z");
        assert_eq!(parse_rfc3339_ms("2026-01-05T00:00:00.123Z"), Some(ms));
        assert_eq!(parse_rfc3339_ms("2026-01-05T01:00:00.123+01:00"), Some(ms));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
