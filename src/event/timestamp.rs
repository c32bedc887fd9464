//! The `event_timestamp` text: UTC `YYYY-MM-DD HH:MM:SS.nnnnnnnnn` (compat.md §3).

use std::cell::Cell;

use time::{OffsetDateTime, PrimitiveDateTime, format_description::BorrowedFormatItem, macros};

const FORMAT: &[BorrowedFormatItem<'static>] = macros::format_description!(
    "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:9]"
);

/// Formats UTC nanoseconds since the epoch.
pub fn format_timestamp(timestamp_ns: u64) -> String {
    timestamp_text(timestamp_ns).as_str().to_owned()
}

/// Bytes of every `event_timestamp` text (the years of u64 nanoseconds all have four digits).
const TEXT_BYTES: usize = 29;

const NANOS_PER_SECOND: u64 = 1_000_000_000;
const SECONDS_PER_DAY: u64 = 86_400;

/// One `event_timestamp` text, on the stack.
#[derive(Clone, Copy)]
pub struct TimestampText([u8; TEXT_BYTES]);

impl TimestampText {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl serde::Serialize for TimestampText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The `event_timestamp` text of UTC nanoseconds, fast: the date comes from `time` once per UTC
/// day and thread (events and lists mostly share a day), the time of day from arithmetic.
pub fn timestamp_text(timestamp_ns: u64) -> TimestampText {
    std::thread_local! {
        static DATE: Cell<Option<(u64, [u8; 10])>> = const { Cell::new(None) };
    }
    let seconds = timestamp_ns / NANOS_PER_SECOND;
    let day = seconds / SECONDS_PER_DAY;
    let date = DATE.with(|cached| match cached.get() {
        Some((cached_day, date)) if cached_day == day => date,
        _ => {
            let date = date_of(day);
            cached.set(Some((day, date)));
            date
        }
    });
    let of_day = seconds % SECONDS_PER_DAY;
    let mut text = [0u8; TEXT_BYTES];
    let (head, tail) = text.split_at_mut(10);
    head.copy_from_slice(&date);
    let fields = [
        (b' ', of_day / 3_600, 2),
        (b':', of_day / 60 % 60, 2),
        (b':', of_day % 60, 2),
        (b'.', timestamp_ns % NANOS_PER_SECOND, 9),
    ];
    let mut rest = tail;
    for (separator, mut value, digits) in fields {
        let (field, after) = rest.split_at_mut(1 + digits);
        rest = after;
        let Some((first, digits)) = field.split_first_mut() else {
            break;
        };
        *first = separator;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    TimestampText(text)
}

/// `YYYY-MM-DD` of a UTC day since the epoch.
fn date_of(day: u64) -> [u8; 10] {
    let midnight_ns = i128::from(day) * i128::from(SECONDS_PER_DAY * NANOS_PER_SECOND);
    let text = OffsetDateTime::from_unix_timestamp_nanos(midnight_ns)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(FORMAT)
        .unwrap_or_default();
    let mut date = *b"1970-01-01";
    if let Some(bytes) = text.as_bytes().get(..10) {
        date.copy_from_slice(bytes);
    }
    date
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

    /// The oracle: `time` formatting the whole text.
    fn format_with_time(timestamp_ns: u64) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp_ns))
            .unwrap()
            .format(FORMAT)
            .unwrap()
    }

    #[test]
    fn timestamp_text_matches_time() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut samples = vec![
            0,
            1,
            999_999_999,
            1_000_000_000,
            86_399_999_999_999,
            86_400_000_000_000,
            u64::MAX,
        ];
        for _ in 0..10_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            samples.push(state);
            samples.push(1_764_326_400_000_000_000 + state % 200_000_000_000_000);
        }
        for ns in samples {
            assert_eq!(timestamp_text(ns).as_str(), format_with_time(ns), "{ns}");
        }
    }

    proptest::proptest! {
        #[test]
        fn timestamp_text_matches_time_for_any_nanoseconds(ns in proptest::num::u64::ANY) {
            let text = timestamp_text(ns);
            proptest::prop_assert_eq!(text.as_str(), format_with_time(ns));
        }
    }

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
