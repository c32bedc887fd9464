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
    let when = PrimitiveDateTime::parse(text, FORMAT)
        .map(PrimitiveDateTime::assume_utc)
        .or_else(|_| OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339))
        .ok()?;
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
}
