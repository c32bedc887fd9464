//! The `event_timestamp` text: UTC `YYYY-MM-DD HH:MM:SS.nnnnnnnnn` (compat.md §3).

use time::{OffsetDateTime, PrimitiveDateTime, format_description::BorrowedFormatItem, macros};

const FORMAT: &[BorrowedFormatItem<'static>] = macros::format_description!(
    "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:9]"
);

/// Formats UTC nanoseconds since the epoch.
pub fn format_timestamp(timestamp_ns: u64) -> String {
    let when = OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp_ns))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    when.format(FORMAT).unwrap_or_default()
}

/// Parses the `event_timestamp` format (UTC) or RFC 3339 into nanoseconds since the epoch.
pub fn parse_timestamp(text: &str) -> Option<u64> {
    // time 0.3.55 parses `[subsecond digits:9]` with an unchecked `byte - b'0'`: a byte below
    // `0` in those nine panics when overflow checks are on (debug builds, fuzzing). Such a text
    // cannot match the format anyway, so only call the parser when the nine bytes after the
    // first `.` (the only `.` the format has) are digits or too few.
    let subsecond_ok = text
        .split_once('.')
        .is_none_or(|(_, fraction)| fraction.bytes().take(9).all(|b| b.is_ascii_digit()));
    let primitive = if subsecond_ok {
        PrimitiveDateTime::parse(text, FORMAT).ok()
    } else {
        None
    };
    let when = match primitive {
        Some(when) => when.assume_utc(),
        None => OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?,
    };
    u64::try_from(when.unix_timestamp_nanos()).ok()
}

/// Now, as UTC nanoseconds since the epoch.
pub fn now_ns() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_format_and_parse() {
        let ns = 1_764_326_400_000_000_123;
        let text = format_timestamp(ns);
        assert_eq!(text, "2025-11-28 10:40:00.000000123");
        assert_eq!(parse_timestamp(&text), Some(ns));
        assert_eq!(parse_timestamp("2025-11-28T10:40:00.000000123Z"), Some(ns));
        assert_eq!(
            parse_timestamp("2025-11-28T11:40:00.000000123+01:00"),
            Some(ns)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    /// Found by the `api_route` fuzz target: a non-digit below `0` among the nine subsecond
    /// bytes made time's parser subtract with overflow (a panic in debug builds).
    #[test]
    fn r_fuzz_api_route_1() {
        assert_eq!(parse_timestamp("2025-11-28 10:00:00.000000)00"), None);
        assert_eq!(parse_timestamp("2025-11-28 10:00:00./////////"), None);
        assert_eq!(parse_timestamp("2025-11-28 10:00:00. 00000000"), None);
        assert_eq!(parse_timestamp("2025-11-28T10:00:00.0000)0000Z"), None);
        assert_eq!(
            parse_timestamp("2025-11-28 10:00:00.000000001"),
            Some(1_764_324_000_000_000_001)
        );
    }
}
