//! The io_uring engine: a glommio `LocalExecutor` per shard thread, running the shared shell
//! (`shell.rs`). This file only says how glommio does each wait and syscall.
//!
//! UDP: glommio's `UdpSocket` has no recvmsg/cmsg, so it serves only as the readiness wait (an
//! io_uring `MSG_PEEK` of one byte), and the datagrams are taken with a non-blocking `recvmmsg`
//! on the raw fd (`udp_batch.rs`), which also gives IP_PKTINFO. Draining 300,000 pre-queued
//! 420-byte datagrams inside a glommio executor (`cargo run --release --example sensor_ingest --
//! drain 300000`, 9 rounds, `perf/results/2026-12-07-sensor-ingest-example.txt`): glommio
//! `recv_from` 519k-682k datagrams/s, peek + recvmmsg 808k-1,090k/s, 1.27-1.92 x per round
//! (median 1.52). recvmmsg is kept: faster, and `recv_from` cannot give the destination address
//! at all. TCP/TLS: glommio listeners and streams (futures-io traits).
//!
//! Never: blocks the executor, decides loop policy (the drivers do).

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream, UdpSocket};
use glommio::{LocalExecutorBuilder, Placement};

use super::ShardStart;
use super::shell::{self, Accepted, Engine};
use crate::config::limits::SHARD_IO_MEMORY_BYTES;

/// glommio on io_uring.
pub(super) struct Uring;

/// A shard thread's body: build the executor, run the shard on it.
pub(super) fn run_thread(shard: ShardStart) {
    let builder = LocalExecutorBuilder::new(Placement::Unbound).io_memory(SHARD_IO_MEMORY_BYTES);
    match builder.make() {
        Ok(executor) => executor.run(shell::run_shard::<Uring>(shard)),
        Err(error) => shell::start_failed(&shard, "glommio executor", &error),
    }
}

impl Engine for Uring {
    type Udp = UdpSocket;
    type Listener = TcpListener;
    type Stream = TcpStream;

    fn udp(socket: socket2::Socket) -> io::Result<UdpSocket> {
        // SAFETY: the fd comes from a bound socket we own and give up here (into_raw_fd).
        Ok(unsafe { UdpSocket::from_raw_fd(socket.into_raw_fd()) })
    }

    fn udp_fd(udp: &UdpSocket) -> RawFd {
        udp.as_raw_fd()
    }

    async fn readable(udp: &UdpSocket) -> io::Result<()> {
        let mut peek = [0u8; 1];
        // Any outcome (data, or an error for recvmmsg to report) means: receive now.
        let _ = udp.peek_from(&mut peek).await;
        Ok(())
    }

    fn listener(socket: socket2::Socket) -> io::Result<TcpListener> {
        // SAFETY: as above, for a bound and listening TCP socket.
        Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
    }

    async fn accept(listener: &TcpListener) -> io::Result<Accepted<TcpStream>> {
        let stream = listener.accept().await?;
        let source = stream.peer_addr()?;
        let destination = stream.local_addr()?;
        Ok(Accepted {
            stream,
            source,
            destination,
        })
    }

    async fn sleep(duration: Duration) {
        glommio::timer::sleep(duration).await;
    }

    fn spawn(task: impl Future<Output = ()> + 'static) {
        glommio::spawn_local(task).detach();
    }
}
