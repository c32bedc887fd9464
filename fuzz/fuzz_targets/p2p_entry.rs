//! `p2p::entry::parse_message` on arbitrary bytes (as received from a peer).
//!
//! Invariants: never panics (also with `now_ns` at 0 and `u64::MAX`); an accepted message came in
//! under `P2P_MESSAGE_BYTES_MAX` with 1 to `P2P_ENTRIES_PER_MESSAGE_MAX` entries; every accepted
//! entry has its fields within their caps, non-nil UUIDs, a node id that is not ours, a timestamp
//! inside the accepted window, a count from 1 to `P2P_ENTRY_COUNT_MAX`, a token method and no
//! control characters in the called number or user agent; written back to the wire it validates
//! again to the same entry; and its event holds the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentrypeer::config::limits::{
    P2P_ENTRIES_PER_MESSAGE_MAX, P2P_ENTRY_COUNT_MAX, P2P_EVENT_AGE_MAX, P2P_FIELD_BYTES_MAX,
    P2P_FUTURE_SKEW, P2P_MESSAGE_BYTES_MAX, P2P_SIP_MESSAGE_BYTES_MAX,
};
use sentrypeer::event::NOT_FOUND;
use sentrypeer::event::timestamp::format_timestamp;
use sentrypeer::p2p::entry::{EntryError, ValidEntry, WireEntry, parse_message, validate_entry};
use uuid::Uuid;

/// 2025-11-28 10:40:00 UTC: the seeds' timestamps lie around it.
const NOW: u64 = 1_764_326_400_000_000_000;
/// Our node id: the seeds include entries that claim it.
const OWN: Uuid = Uuid::from_u128(0x0192_3e4a_7b1c_7d2e_8f3a_0000_0000_aaaa);

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&byte)
}

fn wire(entry: &ValidEntry) -> WireEntry {
    WireEntry {
        event_uuid: entry.uuid.to_string(),
        created_by_node_id: entry.node_id.to_string(),
        event_timestamp: format_timestamp(entry.timestamp_ns),
        collected_method: entry.collected_method.as_str().to_owned(),
        transport_type: entry.transport.as_str().to_owned(),
        source_ip: entry.source_ip.to_string(),
        destination_ip: entry.destination_ip.to_string(),
        called_number: entry
            .called_number
            .clone()
            .unwrap_or_else(|| NOT_FOUND.to_owned()),
        sip_method: entry.method.clone(),
        sip_user_agent: entry
            .user_agent
            .clone()
            .unwrap_or_else(|| NOT_FOUND.to_owned()),
        sip_message: entry.message.clone(),
        count: entry.count,
        source_verified: entry.source_verified,
    }
}

fn check_entry(entry: &ValidEntry) {
    assert!(!entry.uuid.is_nil() && !entry.node_id.is_nil());
    assert_ne!(entry.node_id, OWN, "accepted our own node id");
    let skew = P2P_FUTURE_SKEW.as_nanos() as u64;
    let age = P2P_EVENT_AGE_MAX.as_nanos() as u64;
    assert!(entry.timestamp_ns <= NOW + skew, "accepted a future event");
    assert!(entry.timestamp_ns >= NOW - age, "accepted a stale event");
    assert!((1..=P2P_ENTRY_COUNT_MAX).contains(&entry.count));
    assert!(!entry.method.is_empty() && entry.method.len() <= P2P_FIELD_BYTES_MAX);
    assert!(entry.method.bytes().all(is_token_byte));
    for text in [&entry.called_number, &entry.user_agent]
        .into_iter()
        .flatten()
    {
        assert!(text.len() <= P2P_FIELD_BYTES_MAX);
        assert!(!text.chars().any(char::is_control));
        assert_ne!(text, NOT_FOUND);
    }
    assert!(
        entry
            .message
            .as_ref()
            .is_none_or(|m| m.len() <= P2P_SIP_MESSAGE_BYTES_MAX)
    );

    let again = validate_entry(&wire(entry), OWN, NOW).expect("an accepted entry re-validates");
    assert_eq!(&again, entry, "re-validation changed the entry");

    let event = entry.to_event();
    assert_eq!(event.uuid, entry.uuid);
    assert_eq!(event.node_id, entry.node_id);
    assert_eq!(event.timestamp_ns, entry.timestamp_ns);
    assert_eq!(event.source.ip(), entry.source_ip);
    assert_eq!(event.destination.ip(), entry.destination_ip);
    assert_eq!(event.method(), entry.method.as_bytes());
    assert_eq!(
        event.called_number(),
        entry.called_number.as_deref().map(str::as_bytes)
    );
    assert_eq!(
        event.user_agent(),
        entry.user_agent.as_deref().map(str::as_bytes)
    );
    assert_eq!(
        event.message(),
        entry.message.as_deref().unwrap_or("").as_bytes()
    );
}

fuzz_target!(|data: &[u8]| {
    let result = parse_message(data, OWN, NOW);
    match &result {
        Ok(entries) => {
            assert!(data.len() <= P2P_MESSAGE_BYTES_MAX);
            assert!((1..=P2P_ENTRIES_PER_MESSAGE_MAX).contains(&entries.len()));
            entries.iter().for_each(check_entry);
        }
        Err(EntryError::MessageTooLarge) => assert!(data.len() > P2P_MESSAGE_BYTES_MAX),
        Err(_) => {}
    }
    if !matches!(result, Err(EntryError::Malformed)) {
        // The clock at its extremes: saturating window arithmetic.
        let _ = parse_message(data, OWN, 0);
        let _ = parse_message(data, OWN, u64::MAX);
    }
    assert_eq!(parse_message(data, OWN, NOW), result, "not deterministic");
});
