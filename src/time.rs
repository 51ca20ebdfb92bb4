//! Time, in one place: the wall clock, and RFC 3339 parsing and formatting in epoch
//! milliseconds. The functional core never reads the clock itself; the shell passes it in
//! (see [`Clock`]), so tests can fix it.

use std::time::{SystemTime, UNIX_EPOCH};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_and_parsing_round_trip() {
        let ms = 1_767_571_200_123; // 2026-01-05T00:00:00.123Z
        assert_eq!(format_rfc3339_ms(ms), "2026-01-05T00:00:00.123Z");
        assert_eq!(parse_rfc3339_ms("2026-01-05T00:00:00.123Z"), Some(ms));
        assert_eq!(parse_rfc3339_ms("2026-01-05T01:00:00.123+01:00"), Some(ms));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
