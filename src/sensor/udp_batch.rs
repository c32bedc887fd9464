//! Batched UDP receive with per-datagram destination addresses (quinn-udp style): `recvmmsg`
//! into preallocated buffers of `RECV_BATCH_DATAGRAMS` x `UDP_DATAGRAM_BYTES_MAX` bytes, source and
//! destination decoded from the name and the IP_PKTINFO / IPV6_PKTINFO control message; and
//! `sendmsg` of a reply from the address the request was sent to.
//!
//! Every datagram up to 65,535 bytes arrives intact: each slot is that large. The buffers are
//! allocated once per socket per shard (about 2 MiB with 32 slots) and reused; the raw pointers
//! in the headers are refreshed before each call, so the struct may move between calls.
//!
//! Never: blocks (always `MSG_DONTWAIT`), truncates a datagram, allocates per datagram.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr;

use crate::config::limits::{RECV_BATCH_DATAGRAMS, UDP_DATAGRAM_BYTES_MAX};

/// Room for one IP_PKTINFO or IPV6_PKTINFO message (and a spare), 8-byte aligned.
const CONTROL_BYTES: usize = 128;

#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; CONTROL_BYTES]);

const _: () = assert!(CONTROL_BYTES >= 2 * 64);

/// One received datagram.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    pub bytes: &'a [u8],
    pub source: Option<SocketAddr>,
    /// The IP the datagram was addressed to (`None` if the control message was missing).
    pub destination_ip: Option<IpAddr>,
    /// The kernel cut the datagram (cannot happen with 65,535-byte slots; counted if it does).
    pub truncated: bool,
}

/// Reusable `recvmmsg` state for one socket.
pub struct RecvBatch {
    buffers: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    controls: Box<[Control]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
    received_count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        let n = RECV_BATCH_DATAGRAMS;
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero bytes
        // are a valid value (null pointers, zero lengths).
        let (name, iovec, header) = unsafe {
            (
                zeroed::<libc::sockaddr_storage>(),
                zeroed::<libc::iovec>(),
                zeroed::<libc::mmsghdr>(),
            )
        };
        Self {
            buffers: vec![0u8; n * UDP_DATAGRAM_BYTES_MAX].into_boxed_slice(),
            names: vec![name; n].into_boxed_slice(),
            controls: vec![Control([0; CONTROL_BYTES]); n].into_boxed_slice(),
            iovecs: vec![iovec; n].into_boxed_slice(),
            headers: vec![header; n].into_boxed_slice(),
            received_count: 0,
        }
    }

    /// Receives up to `RECV_BATCH_DATAGRAMS` datagrams without blocking; `WouldBlock` when none
    /// is waiting.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.received_count = 0;
        let slots = self.buffers.chunks_exact_mut(UDP_DATAGRAM_BYTES_MAX);
        for (i, slot) in slots.enumerate() {
            self.iovecs[i] = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
            let header = &mut self.headers[i];
            header.msg_hdr.msg_name = (&raw mut self.names[i]).cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = &raw mut self.iovecs[i];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = self.controls[i].0.as_mut_ptr().cast();
            header.msg_hdr.msg_controllen = CONTROL_BYTES as _;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
        // SAFETY: every header points at live buffers owned by `self` (names, iovecs, controls,
        // data slots) with the lengths set above; the kernel writes at most those lengths. The
        // vector length passed is the number of headers.
        let result = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received_count = result as usize;
        Ok(self.received_count)
    }

    /// Datagram `index` of the last [`recv`](Self::recv).
    pub fn datagram(&self, index: usize) -> Option<Datagram<'_>> {
        if index >= self.received_count {
            return None;
        }
        let header = self.headers.get(index)?;
        let start = index * UDP_DATAGRAM_BYTES_MAX;
        let len = (header.msg_len as usize).min(UDP_DATAGRAM_BYTES_MAX);
        let bytes = self.buffers.get(start..start + len)?;
        let source = decode_name(self.names.get(index)?, header.msg_hdr.msg_namelen);
        Some(Datagram {
            bytes,
            source,
            destination_ip: decode_destination(&header.msg_hdr),
            truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        })
    }
}

fn decode_name(name: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(name.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let v4 = unsafe { &*(ptr::from_ref(name).cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { &*(ptr::from_ref(name).cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            let port = u16::from_be(v6.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn decode_destination(header: &libc::msghdr) -> Option<IpAddr> {
    // SAFETY: `header` was filled by recvmmsg; its control pointer and length describe our own
    // control buffer, and the CMSG_* macros stay inside msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(header) };
    while !cmsg.is_null() {
        // SAFETY: non-null cmsg pointers from CMSG_FIRSTHDR/NXTHDR point at a whole cmsghdr.
        let (level, kind) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
        if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
            // SAFETY: an IP_PKTINFO message carries an in_pktinfo; read unaligned to be safe.
            let info: libc::in_pktinfo =
                unsafe { ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            return Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                info.ipi_addr.s_addr,
            ))));
        }
        if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
            // SAFETY: an IPV6_PKTINFO message carries an in6_pktinfo.
            let info: libc::in6_pktinfo =
                unsafe { ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
        }
        // SAFETY: as for CMSG_FIRSTHDR; returns null past the end.
        cmsg = unsafe { libc::CMSG_NXTHDR(header, cmsg) };
    }
    None
}

fn encode_name(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match address {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let out = unsafe { &mut *(ptr::from_mut(&mut storage).cast::<libc::sockaddr_in>()) };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = v4.port().to_be();
            out.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let out = unsafe { &mut *(ptr::from_mut(&mut storage).cast::<libc::sockaddr_in6>()) };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = v6.port().to_be();
            out.sin6_flowinfo = v6.flowinfo();
            out.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            out.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Sends one datagram to `destination` without blocking, from `source_ip` when given (so a reply
/// leaves from the address the request was sent to, even on a wildcard socket).
pub fn send_from(
    fd: RawFd,
    bytes: &[u8],
    destination: SocketAddr,
    source_ip: Option<IpAddr>,
) -> io::Result<usize> {
    let (mut name, name_len) = encode_name(destination);
    let mut iovec = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    let mut control = Control([0; CONTROL_BYTES]);
    // SAFETY: all-zero bytes are a valid msghdr.
    let mut header: libc::msghdr = unsafe { zeroed() };
    header.msg_name = (&raw mut name).cast();
    header.msg_namelen = name_len;
    header.msg_iov = &raw mut iovec;
    header.msg_iovlen = 1;
    let source = match (source_ip, destination) {
        (Some(IpAddr::V4(ip)), SocketAddr::V4(_)) if !ip.is_unspecified() => Some(IpAddr::V4(ip)),
        (Some(IpAddr::V6(ip)), SocketAddr::V6(_)) if !ip.is_unspecified() => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(source) = source {
        header.msg_control = control.0.as_mut_ptr().cast();
        header.msg_controllen = CONTROL_BYTES as _;
        // SAFETY: msg_control points at our CONTROL_BYTES-long, 8-aligned buffer, which holds one
        // cmsg of either pktinfo size; msg_controllen is then trimmed to the space used.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            match source {
                IpAddr::V4(ip) => {
                    let mut info: libc::in_pktinfo = zeroed();
                    info.ipi_spec_dst = libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    };
                    (*cmsg).cmsg_level = libc::IPPROTO_IP;
                    (*cmsg).cmsg_type = libc::IP_PKTINFO;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
                    ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
                    header.msg_controllen =
                        libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as _;
                }
                IpAddr::V6(ip) => {
                    let mut info: libc::in6_pktinfo = zeroed();
                    info.ipi6_addr = libc::in6_addr {
                        s6_addr: ip.octets(),
                    };
                    (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                    (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as _;
                    ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
                    header.msg_controllen =
                        libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as _;
                }
            }
        }
    }
    // SAFETY: the header points at `name`, `iovec` (over `bytes`) and `control`, all alive for
    // the call; the kernel only reads them.
    let sent = unsafe { libc::sendmsg(fd, &header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::sensor::socket::{bind_udp, local_address};

    #[test]
    fn udp_batch_receives_largest_datagram_with_destination() {
        let receiver = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let address = local_address(&receiver).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = vec![b'x'; 65_507]; // the largest IPv4 UDP payload
        sender.send_to(&big, address).unwrap();
        sender.send_to(b"small", address).unwrap();
        let mut batch = RecvBatch::new();
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while seen.len() < 2 && std::time::Instant::now() < deadline {
            match batch.recv(receiver.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let d = batch.datagram(i).unwrap();
                        assert!(!d.truncated);
                        assert_eq!(d.source, Some(sender.local_addr().unwrap()));
                        assert_eq!(d.destination_ip, Some(IpAddr::from([127, 0, 0, 1])));
                        seen.push(d.bytes.len());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(seen, vec![65_507, 5]);
        assert!(batch.datagram(2).is_none());
        // A reply from the destination address reaches the sender.
        send_from(
            receiver.as_raw_fd(),
            b"pong",
            sender.local_addr().unwrap(),
            Some(address.ip()),
        )
        .unwrap();
        let mut buf = [0u8; 16];
        sender
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let (n, from) = sender.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"pong"[..], address));
    }
}
