//! Events for the store's tests.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use uuid::Uuid;

use crate::event::{CollectedMethod, Event, EventParts, Transport};

/// An OPTIONS event number `index` (its timestamp's last digits) from `source` to `number`.
pub(crate) fn event_from(index: u64, source: SocketAddr, number: &str) -> Event {
    let message = format!(
        "OPTIONS sip:{index}@10.1.2.3 SIP/2.0\r\nVia: SIP/2.0/UDP {source};branch=z9hG4bK{index}\r\n\
         From: <sip:100@{source}>;tag={index:x}\r\nTo: <sip:{index}@10.1.2.3>\r\n\
         Call-ID: {index:016x}@{source}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Event::new(&EventParts {
        timestamp_ns: 1_700_000_000_000_000_000 + index,
        uuid: Uuid::new_v4(),
        node_id: Uuid::from_u128(7),
        transport: Transport::Udp,
        collected_method: CollectedMethod::Passive,
        source,
        destination: "10.1.2.3:5060".parse().unwrap(),
        method: b"OPTIONS",
        called_number: Some(number.as_bytes()),
        user_agent: Some(b"friendly-scanner"),
        message: message.as_bytes(),
        source_verified: false,
        auth_username: None,
    })
}
