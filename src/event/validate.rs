//! Field rules for events that arrive from elsewhere (another node over NATS or P2P; used by
//! `nats::ingest_decode` and `p2p::entry`): a UUID that is not nil,
//! a SIP method that is an RFC 3261 token, a timestamp inside a window around now.
//!
//! Never: does I/O, reads a clock (`now_ns` is passed in), panics on any input.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use uuid::Uuid;

use super::timestamp::parse_timestamp;

/// Why a timestamp is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampError {
    /// Not the `event_timestamp` format (nor RFC 3339).
    Unparsable,
    /// Later than now plus the allowed clock skew.
    Future,
    /// Older than the oldest accepted instant.
    Stale,
}

/// The UUID in `text` (any of the `uuid` crate's spellings), unless it is nil.
pub fn parse_event_uuid(text: &str) -> Option<Uuid> {
    Uuid::try_parse(text).ok().filter(|uuid| !uuid.is_nil())
}

/// A SIP method: a non-empty RFC 3261 token.
pub fn is_sip_token(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
        })
}

/// The timestamp in `text` as UTC nanoseconds, if it is at most `skew_ns` after `now_ns` and not
/// before `oldest_ns`.
pub fn parse_timestamp_within(
    text: &str,
    now_ns: u64,
    skew_ns: u64,
    oldest_ns: u64,
) -> Result<u64, TimestampError> {
    let timestamp_ns = parse_timestamp(text).ok_or(TimestampError::Unparsable)?;
    if timestamp_ns > now_ns.saturating_add(skew_ns) {
        return Err(TimestampError::Future);
    }
    if timestamp_ns < oldest_ns {
        return Err(TimestampError::Stale);
    }
    Ok(timestamp_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::timestamp::format_timestamp;

    #[test]
    fn validate_uuid_token_window() {
        assert_eq!(parse_event_uuid(&Uuid::nil().to_string()), None);
        assert_eq!(parse_event_uuid("x"), None);
        let uuid = Uuid::from_u128(7);
        assert_eq!(parse_event_uuid(&uuid.to_string()), Some(uuid));
        assert!(is_sip_token("OPTIONS") && !is_sip_token("") && !is_sip_token("IN VITE"));
        let now = 1_764_326_400_000_000_000;
        let ok = format_timestamp(now);
        assert_eq!(parse_timestamp_within(&ok, now, 0, now), Ok(now));
        assert_eq!(
            parse_timestamp_within(&ok, now - 1, 0, 0),
            Err(TimestampError::Future)
        );
        assert_eq!(
            parse_timestamp_within(&ok, now, 0, now + 1),
            Err(TimestampError::Stale)
        );
        assert_eq!(
            parse_timestamp_within("then", now, 0, 0),
            Err(TimestampError::Unparsable)
        );
    }
}
