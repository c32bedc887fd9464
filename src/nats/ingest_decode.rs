//! The hub's decoder: one JetStream message payload (the JSON-log object of compat.md §3, as a
//! sensor's publisher sends it) in, an [`Event`] to store or one [`Reject`] reason out.
//!
//! The event keeps the sender's `event_uuid`, `created_by_node_id`, timestamp, collected method,
//! ports and `source_verified` flag. The field rules are those of the P2P validator
//! (`p2p::entry`, shared pieces in [`crate::event::validate`]): non-nil UUIDs, not our own node
//! id, a timestamp between `oldest_ns` and now plus [`NATS_INGEST_FUTURE_SKEW`], known
//! `collected_method`/`transport_type`, IP literals, a SIP token as method. Two differences, both
//! because the senders are this operator's own sensors: text fields may hold control characters
//! (the sensor stored them so; every output escapes them), and long fields are truncated as for a
//! local event (a rendered field can be three times its stored bytes after invalid UTF-8 was
//! replaced) rather than rejected; only the whole payload has a cap. Unknown keys (`app_name`,
//! the enrichment keys: the hub enriches with its own databases) are ignored.
//!
//! Never: does I/O, reads a clock (`now_ns` is passed in), panics on any input.
//!
//! Limits: [`NATS_INGEST_PAYLOAD_BYTES_MAX`], [`NATS_INGEST_FUTURE_SKEW`]; the event's own
//! caps (`EVENT_MESSAGE_BYTES_MAX`, `EVENT_FIELD_BYTES_MAX`) truncate.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;

use serde::Deserialize;
use uuid::Uuid;

use crate::config::limits::{NATS_INGEST_FUTURE_SKEW, NATS_INGEST_PAYLOAD_BYTES_MAX};
use crate::event::validate::{FieldError, FieldRules, FieldTexts, TimestampError, check_fields};
use crate::event::{Event, EventParts, NOT_FOUND};

/// Why a message is not stored (the first problem found).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// The payload is larger than [`NATS_INGEST_PAYLOAD_BYTES_MAX`].
    Oversize,
    /// Not a JSON object, or a field has the wrong type (or appears twice).
    Malformed,
    /// A required key is absent.
    Missing,
    /// `event_uuid` or `created_by_node_id` is not a UUID, or is nil.
    Uuid,
    /// `created_by_node_id` is this hub's own node id (its events are stored already).
    OwnNodeId,
    /// `event_timestamp` does not parse.
    Timestamp,
    /// `event_timestamp` is further in the future than the allowed clock skew.
    Future,
    /// `event_timestamp` is older than the hub accepts (its retention, at most a year).
    Stale,
    /// `collected_method` or `transport_type` is not a known value.
    Enum,
    /// `source_ip` or `destination_ip` is not an IP literal.
    Ip,
    /// `sip_method` is empty or not a SIP token.
    Method,
}

impl Reject {
    /// Every reason, for metrics (in [`Self::index`] order).
    pub const ALL: [Self; 11] = [
        Self::Oversize,
        Self::Malformed,
        Self::Missing,
        Self::Uuid,
        Self::OwnNodeId,
        Self::Timestamp,
        Self::Future,
        Self::Stale,
        Self::Enum,
        Self::Ip,
        Self::Method,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversize => "oversize",
            Self::Malformed => "malformed",
            Self::Missing => "missing",
            Self::Uuid => "uuid",
            Self::OwnNodeId => "own_node_id",
            Self::Timestamp => "timestamp",
            Self::Future => "future",
            Self::Stale => "stale",
            Self::Enum => "enum",
            Self::Ip => "ip",
            Self::Method => "method",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<FieldError> for Reject {
    fn from(error: FieldError) -> Self {
        match error {
            FieldError::Uuid => Self::Uuid,
            FieldError::OwnNodeId => Self::OwnNodeId,
            FieldError::Timestamp(TimestampError::Unparsable) => Self::Timestamp,
            FieldError::Timestamp(TimestampError::Future) => Self::Future,
            FieldError::Timestamp(TimestampError::Stale) => Self::Stale,
            FieldError::Enum => Self::Enum,
            FieldError::Ip => Self::Ip,
            FieldError::Method => Self::Method,
        }
    }
}

/// What the decoder compares against.
#[derive(Debug, Clone, Copy)]
pub struct DecodeContext {
    /// This hub's node id: its own events are refused.
    pub own_node_id: Uuid,
    /// Now, UTC nanoseconds since the epoch.
    pub now_ns: u64,
    /// Events before this instant are stale.
    pub oldest_ns: u64,
}

/// The keys read; every one but the ports, `source_verified` and `auth_username` is required.
/// `Option` so that an absent key is told apart from a mistyped one.
#[derive(Deserialize)]
struct WireEvent {
    event_timestamp: Option<String>,
    event_uuid: Option<String>,
    created_by_node_id: Option<String>,
    collected_method: Option<String>,
    transport_type: Option<String>,
    source_ip: Option<String>,
    destination_ip: Option<String>,
    called_number: Option<String>,
    sip_method: Option<String>,
    sip_user_agent: Option<String>,
    sip_message: Option<String>,
    #[serde(default)]
    source_port: u16,
    #[serde(default)]
    destination_port: u16,
    #[serde(default)]
    source_verified: bool,
    auth_username: Option<String>,
}

/// The required text keys, present.
struct Required<'a> {
    timestamp: &'a str,
    uuid: &'a str,
    node_id: &'a str,
    collected_method: &'a str,
    transport: &'a str,
    source_ip: &'a str,
    destination_ip: &'a str,
    called_number: &'a str,
    method: &'a str,
    user_agent: &'a str,
    message: &'a str,
}

impl WireEvent {
    fn required(&self) -> Option<Required<'_>> {
        Some(Required {
            timestamp: self.event_timestamp.as_deref()?,
            uuid: self.event_uuid.as_deref()?,
            node_id: self.created_by_node_id.as_deref()?,
            collected_method: self.collected_method.as_deref()?,
            transport: self.transport_type.as_deref()?,
            source_ip: self.source_ip.as_deref()?,
            destination_ip: self.destination_ip.as_deref()?,
            called_number: self.called_number.as_deref()?,
            method: self.sip_method.as_deref()?,
            user_agent: self.sip_user_agent.as_deref()?,
            message: self.sip_message.as_deref()?,
        })
    }
}

/// `None` for [`NOT_FOUND`], else the text's bytes.
fn optional(text: &str) -> Option<&[u8]> {
    (text != NOT_FOUND).then_some(text.as_bytes())
}

/// Decodes and validates one message payload.
pub fn decode_event(payload: &[u8], context: &DecodeContext) -> Result<Event, Reject> {
    if payload.len() > NATS_INGEST_PAYLOAD_BYTES_MAX {
        return Err(Reject::Oversize);
    }
    // serde would also read a struct from a JSON array: only an object is an event.
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return Err(Reject::Malformed);
    }
    let wire: WireEvent = serde_json::from_slice(payload).map_err(|_| Reject::Malformed)?;
    let fields = wire.required().ok_or(Reject::Missing)?;
    let skew_ns = u64::try_from(NATS_INGEST_FUTURE_SKEW.as_nanos()).unwrap_or(u64::MAX);
    let texts = FieldTexts {
        uuid: fields.uuid,
        node_id: fields.node_id,
        timestamp: fields.timestamp,
        collected_method: fields.collected_method,
        transport: fields.transport,
        source_ip: fields.source_ip,
        destination_ip: fields.destination_ip,
        method: fields.method,
    };
    let rules = FieldRules {
        own_node_id: context.own_node_id,
        now_ns: context.now_ns,
        skew_ns,
        oldest_ns: context.oldest_ns,
    };
    let checked = check_fields(&texts, &rules).map_err(Reject::from)?;
    Ok(Event::new(&EventParts {
        timestamp_ns: checked.timestamp_ns,
        uuid: checked.uuid,
        node_id: checked.node_id,
        transport: checked.transport,
        collected_method: checked.collected_method,
        source: SocketAddr::new(checked.source_ip, wire.source_port),
        destination: SocketAddr::new(checked.destination_ip, wire.destination_port),
        method: fields.method.as_bytes(),
        called_number: optional(fields.called_number),
        user_agent: optional(fields.user_agent),
        message: fields.message.as_bytes(),
        source_verified: wire.source_verified,
        auth_username: wire.auth_username.as_deref().and_then(optional),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::event::json::to_json;
    use crate::event::timestamp::format_timestamp;
    use crate::event::{CollectedMethod, Transport};

    const NOW: u64 = 1_764_326_400_000_000_000;
    const OWN: Uuid = Uuid::from_u128(0xAAAA);
    const CONTEXT: DecodeContext = DecodeContext {
        own_node_id: OWN,
        now_ns: NOW,
        oldest_ns: NOW - 86_400 * 1_000_000_000,
    };

    fn sample() -> Event {
        Event::new(&EventParts {
            timestamp_ns: NOW - 1_234,
            uuid: Uuid::from_u128(1),
            node_id: Uuid::from_u128(2),
            transport: Transport::Tcp,
            collected_method: CollectedMethod::Responsive,
            source: "203.0.113.5:5070".parse().unwrap(),
            destination: "[2001:db8::1]:5060".parse().unwrap(),
            method: b"INVITE",
            called_number: Some(b"0044\x01"),
            user_agent: None,
            message: b"INVITE sip:0044@x SIP/2.0\r\n\r\n",
            source_verified: true,
            auth_username: Some(b"100"),
        })
    }

    fn object(event: &Event) -> serde_json::Map<String, serde_json::Value> {
        let value: serde_json::Value = serde_json::from_str(&to_json(event)).unwrap();
        value.as_object().unwrap().clone()
    }

    fn decode_object(object: &serde_json::Map<String, serde_json::Value>) -> Result<Event, Reject> {
        decode_event(&serde_json::to_vec(object).unwrap(), &CONTEXT)
    }

    #[test]
    fn decode_round_trip_keeps_identity() {
        let event = sample();
        let decoded = decode_event(to_json(&event).as_bytes(), &CONTEXT).unwrap();
        assert_eq!(decoded, event);
        assert_eq!(decoded.uuid, Uuid::from_u128(1));
        assert_eq!(decoded.node_id, Uuid::from_u128(2));
        assert_eq!(decoded.timestamp_ns, NOW - 1_234);
    }

    #[test]
    fn decode_optional_keys_default() {
        let mut object = object(&sample());
        for key in [
            "source_port",
            "destination_port",
            "source_verified",
            "auth_username",
        ] {
            object.remove(key);
        }
        let decoded = decode_object(&object).unwrap();
        assert_eq!(decoded.source.port(), 0);
        assert!(!decoded.source_verified);
        assert_eq!(decoded.auth_username(), None);
    }

    #[test]
    fn decode_rejects_each_reason() {
        use serde_json::json;
        let cases: Vec<(&str, serde_json::Value, Reject)> = vec![
            ("event_uuid", json!("nope"), Reject::Uuid),
            ("created_by_node_id", json!(Uuid::nil()), Reject::Uuid),
            ("created_by_node_id", json!(OWN), Reject::OwnNodeId),
            ("event_timestamp", json!("yesterday"), Reject::Timestamp),
            (
                "event_timestamp",
                json!(format_timestamp(NOW + 3_600_000_000_000)),
                Reject::Future,
            ),
            (
                "event_timestamp",
                json!(format_timestamp(CONTEXT.oldest_ns - 1)),
                Reject::Stale,
            ),
            ("collected_method", json!("active"), Reject::Enum),
            ("transport_type", json!("SCTP"), Reject::Enum),
            ("source_ip", json!("1.2.3"), Reject::Ip),
            ("destination_ip", json!("host.example"), Reject::Ip),
            ("sip_method", json!(""), Reject::Method),
            ("sip_method", json!("IN VITE"), Reject::Method),
            ("source_port", json!(70_000), Reject::Malformed),
            ("sip_message", json!(5), Reject::Malformed),
            ("source_verified", json!("yes"), Reject::Malformed),
        ];
        for (key, value, expected) in cases {
            let mut object = object(&sample());
            object.insert(key.into(), value);
            assert_eq!(decode_object(&object), Err(expected), "{key}");
        }
        for key in [
            "event_uuid",
            "event_timestamp",
            "source_ip",
            "sip_message",
            "called_number",
        ] {
            let mut object = object(&sample());
            object.remove(key);
            assert_eq!(decode_object(&object), Err(Reject::Missing), "{key}");
        }
    }

    #[test]
    fn decode_rejects_garbage_and_oversize() {
        for garbage in [
            &b""[..],
            b"null",
            b"[1,2]",
            b"{",
            b"\xff\xfe",
            b"{}x",
            b"\"text\"",
        ] {
            assert!(decode_event(garbage, &CONTEXT).is_err(), "{garbage:?}");
        }
        assert_eq!(decode_event(b"{}", &CONTEXT), Err(Reject::Missing));
        let mut huge = to_json(&sample()).into_bytes();
        huge.resize(NATS_INGEST_PAYLOAD_BYTES_MAX + 1, b' ');
        assert_eq!(decode_event(&huge, &CONTEXT), Err(Reject::Oversize));
        // A duplicated key is not silently resolved.
        let twice = to_json(&sample()).replacen('{', "{\"source_ip\":\"192.0.2.9\",", 1);
        assert_eq!(
            decode_event(twice.as_bytes(), &CONTEXT),
            Err(Reject::Malformed)
        );
    }

    #[test]
    fn decode_long_fields_truncated_like_local_events() {
        let mut object = object(&sample());
        let agent = "\u{fffd}".repeat(1_000);
        object.insert("sip_user_agent".into(), agent.into());
        let decoded = decode_object(&object).unwrap();
        assert_eq!(
            decoded.user_agent().unwrap().len(),
            crate::config::limits::EVENT_FIELD_BYTES_MAX
        );
    }

    #[test]
    fn decode_reason_index_matches_all() {
        for (i, reason) in Reject::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }

    proptest::proptest! {
        /// Any event the sensor can render decodes back to itself (text fields as their lossy
        /// UTF-8, which is what the JSON log carries; fields within the event's caps).
        #[test]
        fn decode_round_trip_any_rendered_event(
            message in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            agent in proptest::option::of("[ -~\t\u{1b}\u{e9}]{1,60}"),
            number in proptest::option::of("[0-9a-z*#+\u{0}]{1,20}"),
            method in "[A-Z]{1,10}",
            source_port in proptest::prelude::any::<u16>(),
            verified in proptest::prelude::any::<bool>(),
            age_ns in 0..86_400_000_000_000_u64,
            uuid in 1..u128::MAX,
        ) {
            let message = String::from_utf8_lossy(&message).into_owned();
            let base = sample();
            let mut parts = base.parts();
            parts.message = message.as_bytes();
            parts.user_agent = agent.as_deref().filter(|a| *a != NOT_FOUND).map(str::as_bytes);
            parts.called_number = number.as_deref().map(str::as_bytes);
            parts.method = method.as_bytes();
            parts.source = SocketAddr::new(parts.source.ip(), source_port);
            parts.source_verified = verified;
            parts.timestamp_ns = NOW - age_ns;
            parts.uuid = Uuid::from_u128(uuid);
            let event = Event::new(&parts);
            let decoded = decode_event(to_json(&event).as_bytes(), &CONTEXT);
            proptest::prop_assert_eq!(decoded, Ok(event));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = decode_event(&bytes, &CONTEXT);
        }

        #[test]
        fn decode_fields_never_panic(
            key in "[a-z_]{1,20}", value in ".{0,60}", now in proptest::prelude::any::<u64>(),
        ) {
            let mut object = object(&sample());
            object.insert(key, value.into());
            let context = DecodeContext { now_ns: now, oldest_ns: now / 2, ..CONTEXT };
            let _ = decode_event(&serde_json::to_vec(&object).unwrap(), &context);
        }
    }
}
