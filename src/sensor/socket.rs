//! Creating the shards' sockets with socket2: SO_REUSEPORT (every shard binds the same address),
//! non-blocking, IPv6-only for IPv6 addresses, the UDP receive buffer and IP_PKTINFO /
//! IPV6_RECVPKTINFO.
//!
//! Never: binds without SO_REUSEPORT; hides a bind failure.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::limits::LISTEN_BACKLOG;

fn new_socket(address: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(address), kind, Some(protocol))?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    Ok(socket)
}

fn set_int_option(socket: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` outlives the call and the length passed is its size; the fd is open.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reports once per process that the kernel gave a smaller receive buffer than asked.
static RCVBUF_CLAMP_REPORTED: AtomicBool = AtomicBool::new(false);

fn set_receive_buffer(socket: &Socket, bytes: usize) {
    let wanted = i32::try_from(bytes).unwrap_or(i32::MAX);
    // SO_RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN; fall back quietly.
    if set_int_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, wanted).is_err() {
        let _ = socket.set_recv_buffer_size(bytes);
    }
    // Linux reports double the usable size it granted.
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    if granted < bytes && !RCVBUF_CLAMP_REPORTED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "sentrypeer: UDP receive buffer clamped to {granted} bytes (asked {bytes}); raise \
             net.core.rmem_max or run with CAP_NET_ADMIN"
        );
    }
}

/// A bound UDP socket receiving destination addresses with each datagram.
pub fn bind_udp(address: SocketAddr, receive_buffer_bytes: usize) -> io::Result<Socket> {
    let socket = new_socket(address, Type::DGRAM, Protocol::UDP)?;
    set_receive_buffer(&socket, receive_buffer_bytes);
    if address.is_ipv6() {
        set_int_option(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
    } else {
        set_int_option(&socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
    }
    socket.bind(&address.into())?;
    Ok(socket)
}

/// A bound, listening TCP socket.
pub(crate) fn bind_tcp(address: SocketAddr) -> io::Result<Socket> {
    let socket = new_socket(address, Type::STREAM, Protocol::TCP)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
}

/// The address the socket is bound to (with the port the kernel picked for port 0).
pub(crate) fn local_address(socket: &Socket) -> io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
}
