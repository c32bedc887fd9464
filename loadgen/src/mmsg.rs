//! Thin wrappers over Linux `sendmmsg` and `recvmmsg`: one system call per batch.
//!
//! Never: keeps a pointer into a buffer past the call that uses it (iovecs are rebuilt on every
//! call), or retries a failing datagram (it is counted and skipped).

use std::io;
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

/// Reusable `sendmmsg` state for a connected datagram socket.
#[derive(Default)]
pub struct SendBatch {
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl SendBatch {
    /// Sends `buffer[start..end]` for each `(start, end)` of `bounds` as one datagram each.
    pub fn send(&mut self, fd: RawFd, buffer: &[u8], bounds: &[(usize, usize)]) -> SendOutcome {
        self.iovecs.clear();
        self.headers.clear();
        for &(start, end) in bounds {
            let datagram = &buffer[start..end];
            self.iovecs.push(libc::iovec {
                iov_base: datagram.as_ptr().cast_mut().cast(),
                iov_len: datagram.len(),
            });
        }
        for iovec in &mut self.iovecs {
            // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            self.headers.push(header);
        }
        let mut outcome = SendOutcome::default();
        let mut index = 0;
        while index < self.headers.len() {
            let remaining = u32::try_from(self.headers.len() - index).unwrap_or(u32::MAX);
            // SAFETY: headers[index..] are initialised and point at iovecs that point into
            // `buffer`, all of which outlive this call; the kernel only reads them.
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
    use std::net::UdpSocket;
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
}
