//! Thin wrappers over Linux `sendmmsg` and `recvmmsg`: one system call per batch.
//!
//! Never: keeps a pointer into a buffer past the call that uses it (iovecs are rebuilt on every
//! call), or retries a failing datagram (it is counted and skipped).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

/// Result of sending one batch.
#[must_use]
#[derive(Debug, Default)]
pub struct SendOutcome {
    pub sent: u64,
    pub sent_bytes: u64,
    pub errors: u64,
    pub last_error: Option<io::Error>,
}

/// Control bytes per datagram: one `IP_PKTINFO` message (`CMSG_SPACE(12)` is 32 on 64-bit).
const CONTROL_WORDS: usize = 4;

/// Reusable `sendmmsg` state.
#[derive(Default)]
pub struct SendBatch {
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// One `IP_PKTINFO` control message per datagram (u64 words keep `cmsghdr` aligned).
    controls: Vec<[u64; CONTROL_WORDS]>,
}

impl SendBatch {
    /// Points one iovec at each `buffer[start..end]` of `bounds` and resets the headers.
    fn prepare(&mut self, buffer: &[u8], bounds: &[(usize, usize)]) {
        self.iovecs.clear();
        self.headers.clear();
        for &(start, end) in bounds {
            let datagram = &buffer[start..end];
            self.iovecs.push(libc::iovec {
                iov_base: datagram.as_ptr().cast_mut().cast(),
                iov_len: datagram.len(),
            });
        }
    }

    /// Sends `buffer[start..end]` for each `(start, end)` of `bounds` as one datagram each, on
    /// a connected socket.
    pub fn send(&mut self, fd: RawFd, buffer: &[u8], bounds: &[(usize, usize)]) -> SendOutcome {
        self.prepare(buffer, bounds);
        for iovec in &mut self.iovecs {
            // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            self.headers.push(header);
        }
        self.send_prepared(fd)
    }

    /// Like [`send`](Self::send) on an unconnected IPv4 socket: datagram `i` goes to `target`
    /// from the local address `sources[i]` (an `IP_PKTINFO` control message each).
    pub fn send_from(
        &mut self,
        fd: RawFd,
        buffer: &[u8],
        bounds: &[(usize, usize)],
        target: SocketAddrV4,
        sources: &[Ipv4Addr],
    ) -> SendOutcome {
        assert_eq!(bounds.len(), sources.len(), "one source per datagram");
        let info_bytes = size_of::<libc::in_pktinfo>() as u32;
        // SAFETY: CMSG_SPACE and CMSG_LEN only compute sizes.
        let (space, len) = unsafe { (libc::CMSG_SPACE(info_bytes), libc::CMSG_LEN(info_bytes)) };
        assert!(
            space as usize <= CONTROL_WORDS * 8,
            "IP_PKTINFO fits the control buffer"
        );
        let name = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: target.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*target.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        self.prepare(buffer, bounds);
        self.controls.clear();
        self.controls.resize(bounds.len(), [0; CONTROL_WORDS]);
        for ((iovec, control), source) in
            self.iovecs.iter_mut().zip(&mut self.controls).zip(sources)
        {
            // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_name = (&raw const name).cast_mut().cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = control.as_mut_ptr().cast();
            header.msg_hdr.msg_controllen = space as usize;
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(*source).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            // SAFETY: msg_control points at `space` zeroed, 8-aligned bytes owned by
            // `self.controls`, so CMSG_FIRSTHDR is non-null and its data has room for one
            // in_pktinfo (asserted above); the write is unaligned-safe.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&header.msg_hdr);
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                (*cmsg).cmsg_len = len as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::in_pktinfo>(), info);
            }
            self.headers.push(header);
        }
        // `name` must live until the call below returns.
        let outcome = self.send_prepared(fd);
        let _ = &name;
        outcome
    }

    /// Runs `sendmmsg` over the prepared headers; a failing datagram is counted and skipped.
    fn send_prepared(&mut self, fd: RawFd) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        let mut index = 0;
        while index < self.headers.len() {
            let remaining = u32::try_from(self.headers.len() - index).unwrap_or(u32::MAX);
            // SAFETY: headers[index..] are initialised and point at iovecs (into the caller's
            // buffer), names and control buffers that all outlive this call; the kernel only
            // reads them.
            let result =
                unsafe { libc::sendmmsg(fd, self.headers.as_mut_ptr().add(index), remaining, 0) };
            if result > 0 {
                let count = result as usize;
                for header in &self.headers[index..index + count] {
                    outcome.sent_bytes += u64::from(header.msg_len);
                }
                outcome.sent += count as u64;
                index += count;
                continue;
            }
            let error = io::Error::last_os_error();
            if result < 0 && error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            outcome.errors += 1;
            outcome.last_error = Some(error);
            index += 1;
        }
        outcome
    }
}

/// Reusable `recvmmsg` state: `count` slots of `datagram_bytes` each.
pub struct RecvBatch {
    buffer: Vec<u8>,
    datagram_bytes: usize,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    pub fn new(count: usize, datagram_bytes: usize) -> Self {
        assert!(count > 0 && datagram_bytes > 0, "empty receive batch");
        Self {
            buffer: vec![0; count * datagram_bytes],
            datagram_bytes,
            iovecs: Vec::with_capacity(count),
            headers: Vec::with_capacity(count),
        }
    }

    /// One `recvmmsg` call with `flags` (e.g. `MSG_WAITFORONE`, `MSG_DONTWAIT`, `MSG_TRUNC`);
    /// returns how many datagrams arrived.
    pub fn recv(&mut self, fd: RawFd, flags: i32) -> io::Result<usize> {
        self.iovecs.clear();
        self.headers.clear();
        for slot in self.buffer.chunks_exact_mut(self.datagram_bytes) {
            self.iovecs.push(libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            });
        }
        for iovec in &mut self.iovecs {
            // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            self.headers.push(header);
        }
        let count = u32::try_from(self.headers.len()).unwrap_or(u32::MAX);
        loop {
            // SAFETY: every header points at one iovec that points at its own slot of
            // `self.buffer`; all outlive the call and nothing else aliases them meanwhile.
            let result = unsafe {
                libc::recvmmsg(
                    fd,
                    self.headers.as_mut_ptr(),
                    count,
                    flags,
                    std::ptr::null_mut(),
                )
            };
            if result >= 0 {
                return Ok(result as usize);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    /// The length the datagram at `index` had on the wire (with `MSG_TRUNC`, even if cut).
    pub fn wire_len(&self, index: usize) -> usize {
        self.headers
            .get(index)
            .map_or(0, |header| header.msg_len as usize)
    }

    /// The received bytes of the datagram at `index` (at most `datagram_bytes`).
    pub fn datagram(&self, index: usize) -> &[u8] {
        let len = self.wire_len(index).min(self.datagram_bytes);
        let start = index * self.datagram_bytes;
        self.buffer.get(start..start + len).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn mmsg_batch_roundtrip_on_loopback() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.connect(receiver.local_addr().unwrap()).unwrap();
        let buffer = b"firstsecond-datagramthird".to_vec();
        let bounds = [(0, 5), (5, 20), (20, 25)];
        let outcome = SendBatch::default().send(sender.as_raw_fd(), &buffer, &bounds);
        assert_eq!(
            (outcome.sent, outcome.sent_bytes, outcome.errors),
            (3, 25, 0)
        );
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut batch = RecvBatch::new(8, 8);
        let mut got = Vec::new();
        while got.len() < 3 {
            let count = batch.recv(receiver.as_raw_fd(), libc::MSG_WAITFORONE | libc::MSG_TRUNC);
            for index in 0..count.unwrap() {
                got.push((batch.wire_len(index), batch.datagram(index).to_vec()));
            }
        }
        assert_eq!(got[0], (5, b"first".to_vec()));
        assert_eq!(got[1], (15, b"second-d".to_vec()));
        assert_eq!(got[2], (5, b"third".to_vec()));
    }

    #[test]
    fn mmsg_send_from_sets_each_source() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let SocketAddr::V4(target) = receiver.local_addr().unwrap() else {
            unreachable!()
        };
        let sender = UdpSocket::bind("0.0.0.0:0").unwrap();
        let sources: Vec<Ipv4Addr> = ["127.0.9.1", "127.0.9.2", "127.0.9.3"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect();
        let outcome = SendBatch::default().send_from(
            sender.as_raw_fd(),
            b"abc",
            &[(0, 1), (1, 2), (2, 3)],
            target,
            &sources,
        );
        assert_eq!(
            (outcome.sent, outcome.errors),
            (3, 0),
            "{:?}",
            outcome.last_error
        );
        let mut seen = Vec::new();
        let mut buffer = [0_u8; 8];
        for _ in 0..3 {
            let (len, peer) = receiver.recv_from(&mut buffer).unwrap();
            seen.push((buffer[..len].to_vec(), peer.ip()));
        }
        seen.sort();
        let expected: Vec<(Vec<u8>, IpAddr)> = [(b"a", 0), (b"b", 1), (b"c", 2)]
            .iter()
            .map(|(payload, index)| (payload.to_vec(), IpAddr::V4(sources[*index])))
            .collect();
        assert_eq!(seen, expected);
    }
}
