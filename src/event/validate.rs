//! Field rules for events that arrive from elsewhere (another node over NATS or P2P; used by
//! `nats::ingest_decode` and `p2p::entry`): a UUID that is not nil,
//! a SIP method that is an RFC 3261 token, a timestamp inside a window around now; and
//! [`check_fields`], the checks both decoders make of an event's fields, in one order.
//!
//! Never: does I/O, reads a clock (`now_ns` is passed in), panics on any input.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::IpAddr;

use uuid::Uuid;

use super::timestamp::parse_timestamp;
use super::{CollectedMethod, Transport};

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

/// An event's fields as text, as a sender wrote them.
#[derive(Debug, Clone, Copy)]
pub struct FieldTexts<'a> {
    pub uuid: &'a str,
    pub node_id: &'a str,
    pub timestamp: &'a str,
    pub collected_method: &'a str,
    pub transport: &'a str,
    pub source_ip: &'a str,
    pub destination_ip: &'a str,
    pub method: &'a str,
}

/// What the fields are checked against.
#[derive(Debug, Clone, Copy)]
pub struct FieldRules {
    /// The receiver's node id: its own events are refused.
    pub own_node_id: Uuid,
    pub now_ns: u64,
    /// How far after `now_ns` a timestamp may be.
    pub skew_ns: u64,
    /// Timestamps before this are stale.
    pub oldest_ns: u64,
}

/// The fields, parsed and valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedFields {
    pub uuid: Uuid,
    pub node_id: Uuid,
    pub timestamp_ns: u64,
    pub collected_method: CollectedMethod,
    pub transport: Transport,
    pub source_ip: IpAddr,
    pub destination_ip: IpAddr,
}

/// Why [`check_fields`] refused (the first problem found, in the order below).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// `event_uuid` or `created_by_node_id` is not a UUID, or is nil.
    Uuid,
    /// `created_by_node_id` is the receiver's own node id.
    OwnNodeId,
    Timestamp(TimestampError),
    /// `collected_method` or `transport_type` is not a known value.
    Enum,
    /// `source_ip` or `destination_ip` is not an IP literal.
    Ip,
    /// `sip_method` is empty or not a SIP token.
    Method,
}

/// Checks UUIDs, node id, timestamp window, enums, IP literals and method, in that order.
pub fn check_fields(
    texts: &FieldTexts<'_>,
    rules: &FieldRules,
) -> Result<CheckedFields, FieldError> {
    let uuid = parse_event_uuid(texts.uuid).ok_or(FieldError::Uuid)?;
    let node_id = parse_event_uuid(texts.node_id).ok_or(FieldError::Uuid)?;
    if node_id == rules.own_node_id {
        return Err(FieldError::OwnNodeId);
    }
    let timestamp_ns = parse_timestamp_within(
        texts.timestamp,
        rules.now_ns,
        rules.skew_ns,
        rules.oldest_ns,
    )
    .map_err(FieldError::Timestamp)?;
    let collected_method =
        CollectedMethod::parse(texts.collected_method).ok_or(FieldError::Enum)?;
    let transport = Transport::parse(texts.transport).ok_or(FieldError::Enum)?;
    let source_ip = texts.source_ip.parse().map_err(|_| FieldError::Ip)?;
    let destination_ip = texts.destination_ip.parse().map_err(|_| FieldError::Ip)?;
    if !is_sip_token(texts.method) {
        return Err(FieldError::Method);
    }
    Ok(CheckedFields {
        uuid,
        node_id,
        timestamp_ns,
        collected_method,
        transport,
        source_ip,
        destination_ip,
    })
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
