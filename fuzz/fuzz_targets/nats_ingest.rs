//! `nats::ingest_decode::decode_event` on arbitrary bytes (a JetStream message payload as the hub
//! receives it).
//!
//! Invariants: never panics (also with `now_ns` at 0 and `u64::MAX`); deterministic; an accepted
//! payload came in under `NATS_INGEST_PAYLOAD_BYTES_MAX`; its event has non-nil UUIDs, a node id
//! that is not ours, a timestamp inside the window, a token method; rendered as the JSON log
//! renders it, it decodes again with the same identity (UUIDs, timestamp, transport, addresses as
//! shown, ports), and a second render and decode changes nothing (the first may: a field cut
//! inside a UTF-8 character, an IPv4-mapped address shown as IPv4).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentrypeer::config::limits::{NATS_INGEST_FUTURE_SKEW, NATS_INGEST_PAYLOAD_BYTES_MAX};
use sentrypeer::event::display_ip;
use sentrypeer::event::json::to_json;
use sentrypeer::nats::ingest_decode::{DecodeContext, Reject, decode_event};
use uuid::Uuid;

/// 2025-11-28 10:40:00 UTC: the seeds' timestamps lie around it.
const NOW: u64 = 1_764_326_400_000_000_000;
const CONTEXT: DecodeContext = DecodeContext {
    own_node_id: Uuid::from_u128(0x0192_3e4a_7b1c_7d2e_8f3a_0000_0000_aaaa),
    now_ns: NOW,
    oldest_ns: NOW - 30 * 86_400 * 1_000_000_000,
};

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&byte)
}

fuzz_target!(|data: &[u8]| {
    let result = decode_event(data, &CONTEXT);
    match &result {
        Ok(event) => {
            assert!(data.len() <= NATS_INGEST_PAYLOAD_BYTES_MAX);
            assert!(!event.uuid.is_nil() && !event.node_id.is_nil());
            assert_ne!(event.node_id, CONTEXT.own_node_id, "accepted our own node id");
            let skew = NATS_INGEST_FUTURE_SKEW.as_nanos() as u64;
            assert!(event.timestamp_ns <= NOW + skew, "accepted a future event");
            assert!(event.timestamp_ns >= CONTEXT.oldest_ns, "accepted a stale event");
            assert!(!event.method().is_empty());
            assert!(event.method().iter().copied().all(is_token_byte));
            let again = decode_event(to_json(event).as_bytes(), &CONTEXT)
                .expect("a rendered accepted event decodes");
            assert_eq!(
                (again.uuid, again.node_id, again.timestamp_ns, again.transport),
                (event.uuid, event.node_id, event.timestamp_ns, event.transport)
            );
            assert_eq!(display_ip(again.source), display_ip(event.source));
            assert_eq!(display_ip(again.destination), display_ip(event.destination));
            assert_eq!(again.source.port(), event.source.port());
            let third = decode_event(to_json(&again).as_bytes(), &CONTEXT)
                .expect("a rendered decoded event decodes");
            assert_eq!(third, again, "a second render and decode changed the event");
        }
        Err(Reject::Oversize) => assert!(data.len() > NATS_INGEST_PAYLOAD_BYTES_MAX),
        Err(_) => {}
    }
    for now_ns in [0, u64::MAX] {
        let _ = decode_event(data, &DecodeContext { now_ns, ..CONTEXT });
    }
    assert_eq!(decode_event(data, &CONTEXT), result, "not deterministic");
});
