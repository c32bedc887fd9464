//! Forged UDP: an IPv4 datagram whose source address is whatever the test says, written whole
//! (`IP_HDRINCL`) through a raw socket, as a spoofing scanner would. Needs root
//! (`CAP_NET_RAW`); [`forger`] applies the missing-privilege policy.
//!
//! Never: sends anywhere but 127.0.0.0/8 (asserted), or builds a packet over 1,400 bytes.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

use super::require::missing;

/// Largest forged datagram: one loopback packet, never fragmented.
const FORGED_BYTES_MAX: usize = 1_400;

/// A raw IPv4 socket that writes whole packets.
pub(crate) struct Forger {
    socket: Socket,
}

/// The forger, or `None` after applying the policy when raw sockets are not allowed here.
pub(crate) fn forger() -> Option<Forger> {
    let opened = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )
    .and_then(|socket| socket.set_header_included_v4(true).map(|()| socket));
    match opened {
        Ok(socket) => Some(Forger { socket }),
        Err(error) => {
            missing(&format!(
                "a raw IPv4 socket (IP_HDRINCL) to forge UDP sources needs root or CAP_NET_RAW: \
                 {error}"
            ));
            None
        }
    }
}

impl Forger {
    /// Sends `payload` as a UDP datagram from `source` to `target` (both in 127.0.0.0/8).
    pub(crate) fn send(&self, source: SocketAddrV4, target: SocketAddr, payload: &[u8]) {
        let SocketAddr::V4(target) = target else {
            panic!("forging is IPv4 only: {target}");
        };
        assert!(
            source.ip().is_loopback() && target.ip().is_loopback(),
            "forged traffic stays on loopback: {source} -> {target}"
        );
        let packet = udp_packet(source, target, payload);
        let sent = self
            .socket
            .send_to(&packet, &SocketAddr::V4(target).into())
            .expect("send a forged datagram");
        assert_eq!(sent, packet.len());
    }
}

/// IPv4 header (20 bytes, checksum filled) + UDP header (checksum filled) + payload.
fn udp_packet(source: SocketAddrV4, target: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    assert!(total <= FORGED_BYTES_MAX, "forged datagram too large");
    let mut packet = Vec::with_capacity(total);
    packet.extend_from_slice(&[0x45, 0]);
    packet.extend_from_slice(&(total as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x40, 0, 64, libc::IPPROTO_UDP as u8, 0, 0]);
    packet.extend_from_slice(&source.ip().octets());
    packet.extend_from_slice(&target.ip().octets());
    let header_sum = checksum(&[&packet[..20]]);
    packet[10..12].copy_from_slice(&header_sum.to_be_bytes());
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&source.port().to_be_bytes());
    udp.extend_from_slice(&target.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let pseudo = pseudo_header(*source.ip(), *target.ip(), udp_len);
    let udp_sum = match checksum(&[&pseudo, &udp]) {
        0 => 0xffff,
        sum => sum,
    };
    udp[6..8].copy_from_slice(&udp_sum.to_be_bytes());
    packet.extend_from_slice(&udp);
    packet
}

fn pseudo_header(source: Ipv4Addr, target: Ipv4Addr, udp_len: usize) -> [u8; 12] {
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&source.octets());
    pseudo[4..8].copy_from_slice(&target.octets());
    pseudo[9] = libc::IPPROTO_UDP as u8;
    pseudo[10..].copy_from_slice(&(udp_len as u16).to_be_bytes());
    pseudo
}

/// The Internet checksum (RFC 1071) over the concatenated parts.
fn checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.iter().flat_map(|part| part.iter().copied()).collect();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn forge_reaches_a_socket_with_the_forged_source() {
    let Some(forger) = forger() else {
        return;
    };
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let source = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 99), 5099);
    forger.send(source, receiver.local_addr().unwrap(), b"forged");
    let mut buffer = [0u8; 64];
    let (len, from) = receiver.recv_from(&mut buffer).unwrap();
    assert_eq!(&buffer[..len], b"forged");
    assert_eq!(from, SocketAddr::V4(source));
}
