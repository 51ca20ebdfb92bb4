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
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses an RFC 3339 timestamp to epoch milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
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

    #[test]
    fn formatting_and_parsing_round_trip() {
        let ms = 1_767_571_200_123; // 2026-01-05T00:00:00.123Z
        assert_eq!(format_rfc3339_ms(ms), "2026-01-05T00:00:00.123Z");
        assert_eq!(parse_rfc3339_ms("2026-01-05T00:00:00.123Z"), Some(ms));
        assert_eq!(parse_rfc3339_ms("2026-01-05T01:00:00.123+01:00"), Some(ms));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
