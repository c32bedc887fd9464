//! The P2P message schema and its validation: untrusted bytes in, [`ValidEntry`]s or one
//! [`EntryError`] out.
//!
//! A message is `{"v":1,"entries":[...]}` (see `docs/p2p.md`). A message is valid only when every
//! entry is: one bad entry rejects the whole message, so nothing from a misbehaving sender is
//! stored. Unknown object fields are ignored (forward compatibility); `v` other than 1 is rejected.
//!
//! Never: does I/O, reads a clock (`now_ns` is passed in), panics on any input.
//!
//! Limits: `P2P_MESSAGE_BYTES_MAX`, `P2P_ENTRIES_PER_MESSAGE_MAX`, `P2P_ENTRY_BYTES_MAX`,
//! `P2P_FIELD_BYTES_MAX`, `P2P_SIP_MESSAGE_BYTES_MAX`, `P2P_ENTRY_COUNT_MAX`, `P2P_FUTURE_SKEW`,
//! `P2P_EVENT_AGE_MAX` in [`crate::config::limits`].

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::limits::{
    P2P_ENTRIES_PER_MESSAGE_MAX, P2P_ENTRY_BYTES_MAX, P2P_ENTRY_COUNT_MAX, P2P_EVENT_AGE_MAX,
    P2P_FIELD_BYTES_MAX, P2P_FUTURE_SKEW, P2P_MESSAGE_BYTES_MAX, P2P_SIP_MESSAGE_BYTES_MAX,
};
use crate::event::validate::{FieldError, FieldRules, FieldTexts, TimestampError, check_fields};
use crate::event::{CollectedMethod, Event, EventParts, NOT_FOUND, Transport};

/// The schema version this build speaks.
pub const MESSAGE_VERSION: u64 = 1;

/// One message on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireMessage {
    pub v: u64,
    pub entries: Vec<WireEntry>,
}

/// One entry on the wire: the JSON-log fields of the first event of a coalesced group, plus
/// `count`. Every field but `sip_message` is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    pub event_uuid: String,
    pub created_by_node_id: String,
    pub event_timestamp: String,
    pub collected_method: String,
    pub transport_type: String,
    pub source_ip: String,
    pub destination_ip: String,
    pub called_number: String,
    pub sip_method: String,
    pub sip_user_agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_message: Option<String>,
    pub count: u64,
    /// The originating node verified the source (absent from older nodes: false).
    #[serde(default)]
    pub source_verified: bool,
}

/// Why a message was rejected (the first problem found).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryError {
    /// The message is larger than `P2P_MESSAGE_BYTES_MAX`.
    MessageTooLarge,
    /// Not JSON, or a field is missing or has the wrong type.
    Malformed,
    /// `v` is not [`MESSAGE_VERSION`].
    Version,
    /// No entries, or more than `P2P_ENTRIES_PER_MESSAGE_MAX`.
    EntryCount,
    /// An entry's text is larger than `P2P_ENTRY_BYTES_MAX`, or a field above its cap.
    EntryTooLarge,
    /// `event_uuid` or `created_by_node_id` is not a UUID (or is nil).
    Uuid,
    /// `created_by_node_id` is the receiving node's own id.
    OwnNodeId,
    /// `event_timestamp` does not parse.
    Timestamp,
    /// `event_timestamp` is too far in the future.
    Future,
    /// `event_timestamp` is older than `P2P_EVENT_AGE_MAX`.
    Stale,
    /// `collected_method` or `transport_type` is not a known value.
    Enum,
    /// `source_ip` or `destination_ip` is not an IP literal.
    Ip,
    /// `sip_method` is empty or not a SIP token.
    Method,
    /// A text field holds control characters.
    Control,
    /// `count` is 0 or above `P2P_ENTRY_COUNT_MAX`.
    Count,
}

impl From<FieldError> for EntryError {
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

impl EntryError {
    /// Every reason, for metrics.
    pub const ALL: [Self; 15] = [
        Self::MessageTooLarge,
        Self::Malformed,
        Self::Version,
        Self::EntryCount,
        Self::EntryTooLarge,
        Self::Uuid,
        Self::OwnNodeId,
        Self::Timestamp,
        Self::Future,
        Self::Stale,
        Self::Enum,
        Self::Ip,
        Self::Method,
        Self::Control,
        Self::Count,
    ];

    /// A stable label (metrics, debug output).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageTooLarge => "message_too_large",
            Self::Malformed => "malformed",
            Self::Version => "version",
            Self::EntryCount => "entry_count",
            Self::EntryTooLarge => "entry_too_large",
            Self::Uuid => "uuid",
            Self::OwnNodeId => "own_node_id",
            Self::Timestamp => "timestamp",
            Self::Future => "future",
            Self::Stale => "stale",
            Self::Enum => "enum",
            Self::Ip => "ip",
            Self::Method => "method",
            Self::Control => "control",
            Self::Count => "count",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A validated entry, ready to become an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEntry {
    pub uuid: Uuid,
    pub node_id: Uuid,
    pub timestamp_ns: u64,
    pub collected_method: CollectedMethod,
    pub transport: Transport,
    pub source_ip: IpAddr,
    pub destination_ip: IpAddr,
    /// `None` for `NOT_FOUND`.
    pub called_number: Option<String>,
    pub method: String,
    /// `None` for `NOT_FOUND`.
    pub user_agent: Option<String>,
    pub message: Option<String>,
    pub count: u64,
    /// As the originating node claims; see `docs/p2p.md` for what that is worth.
    pub source_verified: bool,
}

impl ValidEntry {
    /// The event to store (ports are not shared: 0).
    pub fn to_event(&self) -> Event {
        Event::new(&EventParts {
            timestamp_ns: self.timestamp_ns,
            uuid: self.uuid,
            node_id: self.node_id,
            transport: self.transport,
            collected_method: self.collected_method,
            source: SocketAddr::new(self.source_ip, 0),
            destination: SocketAddr::new(self.destination_ip, 0),
            method: self.method.as_bytes(),
            called_number: self.called_number.as_deref().map(str::as_bytes),
            user_agent: self.user_agent.as_deref().map(str::as_bytes),
            message: self.message.as_deref().map_or(&[][..], str::as_bytes),
            source_verified: self.source_verified,
            auth_username: None,
        })
    }
}

/// Parses and validates one message from a peer.
pub fn parse_message(
    bytes: &[u8],
    own_node_id: Uuid,
    now_ns: u64,
) -> Result<Vec<ValidEntry>, EntryError> {
    if bytes.len() > P2P_MESSAGE_BYTES_MAX {
        return Err(EntryError::MessageTooLarge);
    }
    let message: WireMessage = serde_json::from_slice(bytes).map_err(|_| EntryError::Malformed)?;
    if message.v != MESSAGE_VERSION {
        return Err(EntryError::Version);
    }
    if message.entries.is_empty() || message.entries.len() > P2P_ENTRIES_PER_MESSAGE_MAX {
        return Err(EntryError::EntryCount);
    }
    message
        .entries
        .iter()
        .map(|entry| validate_entry(entry, own_node_id, now_ns))
        .collect()
}

/// Validates one entry.
pub fn validate_entry(
    entry: &WireEntry,
    own_node_id: Uuid,
    now_ns: u64,
) -> Result<ValidEntry, EntryError> {
    check_sizes(entry)?;
    let skew_ns = u64::try_from(P2P_FUTURE_SKEW.as_nanos()).unwrap_or(u64::MAX);
    let age_max_ns = u64::try_from(P2P_EVENT_AGE_MAX.as_nanos()).unwrap_or(u64::MAX);
    let texts = FieldTexts {
        uuid: &entry.event_uuid,
        node_id: &entry.created_by_node_id,
        timestamp: &entry.event_timestamp,
        collected_method: &entry.collected_method,
        transport: &entry.transport_type,
        source_ip: &entry.source_ip,
        destination_ip: &entry.destination_ip,
        method: &entry.sip_method,
    };
    let rules = FieldRules {
        own_node_id,
        now_ns,
        skew_ns,
        oldest_ns: now_ns.saturating_sub(age_max_ns),
    };
    let checked = check_fields(&texts, &rules).map_err(EntryError::from)?;
    if has_control(&entry.called_number) || has_control(&entry.sip_user_agent) {
        return Err(EntryError::Control);
    }
    if entry.count == 0 || entry.count > P2P_ENTRY_COUNT_MAX {
        return Err(EntryError::Count);
    }
    let optional = |text: &str| (text != NOT_FOUND).then(|| text.to_owned());
    Ok(ValidEntry {
        uuid: checked.uuid,
        node_id: checked.node_id,
        timestamp_ns: checked.timestamp_ns,
        collected_method: checked.collected_method,
        transport: checked.transport,
        source_ip: checked.source_ip,
        destination_ip: checked.destination_ip,
        called_number: optional(&entry.called_number),
        method: entry.sip_method.clone(),
        user_agent: optional(&entry.sip_user_agent),
        message: entry.sip_message.clone(),
        count: entry.count,
        source_verified: entry.source_verified,
    })
}

/// The entry's whole text, its SIP message and each free-text field are within their caps.
fn check_sizes(entry: &WireEntry) -> Result<(), EntryError> {
    let texts = [
        &entry.event_uuid,
        &entry.created_by_node_id,
        &entry.event_timestamp,
        &entry.collected_method,
        &entry.transport_type,
        &entry.source_ip,
        &entry.destination_ip,
        &entry.called_number,
        &entry.sip_method,
        &entry.sip_user_agent,
    ];
    let message_len = entry.sip_message.as_ref().map_or(0, String::len);
    let total = texts
        .iter()
        .map(|t| t.len())
        .fold(message_len, usize::saturating_add);
    let field_over = [
        &entry.called_number,
        &entry.sip_method,
        &entry.sip_user_agent,
    ]
    .iter()
    .any(|t| t.len() > P2P_FIELD_BYTES_MAX);
    if total > P2P_ENTRY_BYTES_MAX || message_len > P2P_SIP_MESSAGE_BYTES_MAX || field_over {
        return Err(EntryError::EntryTooLarge);
    }
    Ok(())
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate_to(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while end > 0 && !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::event::timestamp::format_timestamp;

    const NOW: u64 = 1_764_326_400_000_000_000;
    const OWN: Uuid = Uuid::from_u128(0xAAAA);

    fn entry() -> WireEntry {
        WireEntry {
            event_uuid: Uuid::from_u128(1).to_string(),
            created_by_node_id: Uuid::from_u128(2).to_string(),
            event_timestamp: format_timestamp(NOW - 1_000),
            collected_method: "responsive".into(),
            transport_type: "UDP".into(),
            source_ip: "192.0.2.1".into(),
            destination_ip: "2001:db8::1".into(),
            called_number: "100".into(),
            sip_method: "OPTIONS".into(),
            sip_user_agent: NOT_FOUND.into(),
            sip_message: Some("OPTIONS sip:100@x SIP/2.0\r\n\r\n".into()),
            count: 3,
            source_verified: true,
        }
    }

    fn message(entries: Vec<WireEntry>) -> Vec<u8> {
        serde_json::to_vec(&WireMessage { v: 1, entries }).unwrap()
    }

    fn check(entry: WireEntry) -> Result<Vec<ValidEntry>, EntryError> {
        parse_message(&message(vec![entry]), OWN, NOW)
    }

    #[test]
    fn entry_valid_round_trip() {
        let valid = check(entry()).unwrap();
        assert_eq!(valid.len(), 1);
        let v = &valid[0];
        assert_eq!(v.uuid, Uuid::from_u128(1));
        assert_eq!(v.node_id, Uuid::from_u128(2));
        assert_eq!(v.timestamp_ns, NOW - 1_000);
        assert_eq!(v.called_number.as_deref(), Some("100"));
        assert_eq!(v.user_agent, None);
        assert_eq!(v.count, 3);
        let event = v.to_event();
        assert_eq!(event.node_id, Uuid::from_u128(2));
        assert_eq!(event.method(), b"OPTIONS");
        assert_eq!(event.user_agent(), None);
    }

    #[test]
    fn entry_message_optional() {
        let mut e = entry();
        e.sip_message = None;
        assert_eq!(check(e).unwrap()[0].message, None);
    }

    #[test]
    fn entry_rejects_each_reason() {
        type Mutation = Box<dyn Fn(&mut WireEntry)>;
        let cases: Vec<(Mutation, EntryError)> = vec![
            (Box::new(|e| e.event_uuid = "nope".into()), EntryError::Uuid),
            (
                Box::new(|e| e.created_by_node_id = Uuid::nil().to_string()),
                EntryError::Uuid,
            ),
            (
                Box::new(|e| e.created_by_node_id = OWN.to_string()),
                EntryError::OwnNodeId,
            ),
            (
                Box::new(|e| e.event_timestamp = "yesterday".into()),
                EntryError::Timestamp,
            ),
            (
                Box::new(|e| e.event_timestamp = format_timestamp(NOW + 3_600_000_000_000)),
                EntryError::Future,
            ),
            (
                Box::new(|e| {
                    e.event_timestamp = format_timestamp(NOW - 30 * 86_400 * 1_000_000_000)
                }),
                EntryError::Stale,
            ),
            (
                Box::new(|e| e.collected_method = "active".into()),
                EntryError::Enum,
            ),
            (
                Box::new(|e| e.transport_type = "SCTP".into()),
                EntryError::Enum,
            ),
            (Box::new(|e| e.source_ip = "1.2.3".into()), EntryError::Ip),
            (
                Box::new(|e| e.destination_ip = "host.example".into()),
                EntryError::Ip,
            ),
            (
                Box::new(|e| e.sip_method = String::new()),
                EntryError::Method,
            ),
            (
                Box::new(|e| e.sip_method = "IN VITE".into()),
                EntryError::Method,
            ),
            (
                Box::new(|e| e.sip_user_agent = "a\r\nb".into()),
                EntryError::Control,
            ),
            (Box::new(|e| e.count = 0), EntryError::Count),
            (
                Box::new(|e| e.count = P2P_ENTRY_COUNT_MAX + 1),
                EntryError::Count,
            ),
            (
                Box::new(|e| e.sip_message = Some("x".repeat(P2P_SIP_MESSAGE_BYTES_MAX + 1))),
                EntryError::EntryTooLarge,
            ),
            (
                Box::new(|e| e.called_number = "1".repeat(P2P_FIELD_BYTES_MAX + 1)),
                EntryError::EntryTooLarge,
            ),
        ];
        for (mutate, expected) in cases {
            let mut e = entry();
            mutate(&mut e);
            assert_eq!(check(e), Err(expected), "{expected:?}");
        }
    }

    #[test]
    fn entry_message_level_errors() {
        assert_eq!(parse_message(b"", OWN, NOW), Err(EntryError::Malformed));
        assert_eq!(
            parse_message(b"{\"v\":1}", OWN, NOW),
            Err(EntryError::Malformed)
        );
        assert_eq!(
            parse_message(b"{\"v\":2,\"entries\":[]}", OWN, NOW),
            Err(EntryError::Version)
        );
        assert_eq!(
            parse_message(b"{\"v\":1,\"entries\":[]}", OWN, NOW),
            Err(EntryError::EntryCount)
        );
        let many = message(vec![entry(); P2P_ENTRIES_PER_MESSAGE_MAX + 1]);
        let result = parse_message(&many, OWN, NOW);
        assert!(
            result == Err(EntryError::EntryCount) || result == Err(EntryError::MessageTooLarge)
        );
        let huge = vec![b' '; P2P_MESSAGE_BYTES_MAX + 1];
        assert_eq!(
            parse_message(&huge, OWN, NOW),
            Err(EntryError::MessageTooLarge)
        );
        let mut missing = serde_json::to_value(WireMessage {
            v: 1,
            entries: vec![entry()],
        })
        .unwrap();
        missing["entries"][0]
            .as_object_mut()
            .unwrap()
            .remove("source_ip");
        let bytes = serde_json::to_vec(&missing).unwrap();
        assert_eq!(parse_message(&bytes, OWN, NOW), Err(EntryError::Malformed));
        let mut typed = serde_json::to_value(WireMessage {
            v: 1,
            entries: vec![entry()],
        })
        .unwrap();
        typed["entries"][0]["count"] = serde_json::json!("3");
        let bytes = serde_json::to_vec(&typed).unwrap();
        assert_eq!(parse_message(&bytes, OWN, NOW), Err(EntryError::Malformed));
    }

    #[test]
    fn entry_one_bad_rejects_message() {
        let mut bad = entry();
        bad.source_ip = "x".into();
        let bytes = message(vec![entry(), bad]);
        assert_eq!(parse_message(&bytes, OWN, NOW), Err(EntryError::Ip));
    }

    #[test]
    fn entry_truncate_char_boundary() {
        let mut text = "aé".to_string();
        truncate_to(&mut text, 2);
        assert_eq!(text, "a");
    }

    #[test]
    fn entry_error_index_matches_all() {
        for (i, reason) in EntryError::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }

    proptest::proptest! {
        #[test]
        fn entry_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = parse_message(&bytes, OWN, NOW);
        }

        #[test]
        fn entry_fields_never_panic(
            uuid in ".{0,40}", ts in ".{0,40}", ip in ".{0,50}", method in ".{0,40}",
            number in ".{0,300}", count in proptest::prelude::any::<u64>(), now in proptest::prelude::any::<u64>(),
        ) {
            let mut e = entry();
            e.event_uuid = uuid;
            e.event_timestamp = ts;
            e.source_ip = ip;
            e.sip_method = method;
            e.called_number = number;
            e.count = count;
            let _ = parse_message(&message(vec![e]), OWN, now);
        }
    }
}
