//! Datagrams the kernel dropped before a shard read them (a full receive buffer): the `drops`
//! column of `/proc/net/udp` and `/proc/net/udp6` for this process's own UDP sockets, read when
//! `/metrics` is rendered. [`sum_drops`] is the pure parser; [`process_udp_drops`] the thin
//! reader.
//!
//! Never: runs on a shard or per datagram, panics on odd `/proc` text, reads another process's
//! sockets.

use std::collections::HashSet;

/// Sum of the `drops` column over the lines of a `/proc/net/udp{,6}` table whose `inode` is in
/// `inodes`. Malformed lines are skipped.
pub(crate) fn sum_drops(table: &str, inodes: &HashSet<u64>) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            let inode: u64 = fields.get(9)?.parse().ok()?;
            let drops: u64 = fields.get(12)?.parse().ok()?;
            inodes.contains(&inode).then_some(drops)
        })
        .fold(0u64, u64::saturating_add)
}

/// The socket inodes among this process's open file descriptors.
fn own_socket_inodes() -> HashSet<u64> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let text = target.to_str()?;
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Datagrams dropped by the kernel on this process's UDP sockets; `None` when `/proc` cannot be
/// read (then the metric is not rendered rather than shown as 0).
pub(crate) fn process_udp_drops() -> Option<u64> {
    let inodes = own_socket_inodes();
    let mut total = 0u64;
    let mut read_any = false;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            read_any = true;
            total = total.saturating_add(sum_drops(&text, &inodes));
        }
    }
    read_any.then_some(total)
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
  2: 0100007F:13C5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 9999 2 0000000000000000 5\n\
 garbage line\n\
  3: 0100007F:13C6 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 x\n";

    #[test]
    fn kernel_drops_sums_own_inodes_only() {
        let own: HashSet<u64> = [4242, 4243].into_iter().collect();
        assert_eq!(sum_drops(TABLE, &own), 17);
        assert_eq!(sum_drops(TABLE, &HashSet::new()), 0);
        assert_eq!(sum_drops("", &own), 0);
    }

    /// A real socket with a small receive buffer that nobody reads: the kernel drops, and the
    /// reader finds those drops on this process's socket.
    #[test]
    fn kernel_drops_seen_on_a_real_unread_socket() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let socket = socket2::SockRef::from(&receiver);
        socket.set_recv_buffer_size(4096).unwrap();
        assert!(receiver.as_raw_fd() >= 0);
        let before = process_udp_drops().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let payload = [0u8; 1024];
        for _ in 0..200 {
            sender
                .send_to(&payload, receiver.local_addr().unwrap())
                .unwrap();
        }
        let after = process_udp_drops().unwrap();
        assert!(after >= before + 100, "before {before}, after {after}");
    }
}
