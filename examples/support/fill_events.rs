//! The synthetic scanner events of `examples/fill_store.rs` (and so of `perf/api.sh`'s store)
//! and of `benches/api_list.rs`: one generator, included by both with `#[path]`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
use uuid::Uuid;

/// Source IP number `index`: IPv4 10.x.y.z, every tenth one IPv6.
pub(crate) fn source_ip(index: u64) -> IpAddr {
    if index % 10 == 9 {
        IpAddr::V6(std::net::Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            (index >> 16) as u16,
            index as u16,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from(
            0x0a00_0000_u32 | (index as u32 & 0x00ff_ffff),
        ))
    }
}

/// Called number `index`: `00` and eight digits.
pub(crate) fn number(index: u64) -> String {
    format!("00{index:08}")
}

/// Event `index`: an INVITE from source IP `index % ips` to number `index x 7919 % numbers`
/// (numbers last seen in a scrambled order, IPs in key order).
pub(crate) fn event(index: u64, ips: u64, numbers: u64, timestamp_ns: u64) -> Event {
    let called = number(index.wrapping_mul(7919) % numbers);
    let source = SocketAddr::new(source_ip(index % ips), 5060);
    let message = format!(
        "INVITE sip:{called}@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP {source};branch=z9hG4bK{index}\r\n\
         From: <sip:100@{source}>;tag={index:x}\r\nTo: <sip:{called}@192.0.2.1>\r\n\
         Call-ID: {index}@scanner\r\nCSeq: 1 INVITE\r\nUser-Agent: friendly-scanner\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Event::new(&EventParts {
        timestamp_ns,
        uuid: Uuid::new_v4(),
        node_id: Uuid::from_u128(1),
        transport: Transport::Udp,
        collected_method: CollectedMethod::Passive,
        source,
        destination: "192.0.2.1:5060".parse().unwrap_or(source),
        method: b"INVITE",
        called_number: Some(called.as_bytes()),
        user_agent: Some(b"friendly-scanner"),
        message: message.as_bytes(),
        source_verified: false,
        auth_username: None,
    })
}
