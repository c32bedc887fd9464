//! The portable engine (`-N`, or when io_uring is unavailable): a current-thread tokio runtime
//! (epoll) with a `LocalSet` per shard thread, running the shared shell (`shell.rs`). This file
//! only says how tokio does each wait and syscall.
//!
//! UDP: readiness from `AsyncFd`, datagrams by non-blocking `recvmmsg` (`udp_batch.rs`).
//! TCP/TLS: tokio listeners and streams, seen through `tokio-util`'s futures-io adapter so that
//! the shell serves both engines' streams (and TLS via futures-rustls) with one code path.
//!
//! Never: blocks the runtime, decides loop policy (the drivers do).

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use super::ShardStart;
use super::shell::{self, Accepted, Engine};

/// A current-thread tokio runtime on epoll.
pub(super) struct Portable;

/// A shard thread's body: build the runtime, run the shard on it.
pub(super) fn run_thread(shard: ShardStart) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => {
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, shell::run_shard::<Portable>(shard));
        }
        Err(error) => shell::start_failed(&shard, "tokio runtime", &error),
    }
}

impl Engine for Portable {
    type Udp = AsyncFd<socket2::Socket>;
    type Listener = TcpListener;
    type Stream = Compat<TcpStream>;

    fn udp(socket: socket2::Socket) -> io::Result<Self::Udp> {
        // SAFETY: the socket owns its fd and keeps it open and unchanged for as long as the
        // AsyncFd owns the socket.
        unsafe { AsyncFd::register(socket) }.map_err(|error| error.into_parts().1)
    }

    fn udp_fd(udp: &Self::Udp) -> RawFd {
        udp.get_ref().as_raw_fd()
    }

    async fn readable(udp: &Self::Udp) -> io::Result<()> {
        // Cleared before the receive that follows: a datagram arriving after this point sets
        // readiness again, so none is missed.
        udp.readable().await?.clear_ready();
        Ok(())
    }

    fn listener(socket: socket2::Socket) -> io::Result<TcpListener> {
        TcpListener::from_std(socket.into())
    }

    async fn accept(listener: &TcpListener) -> io::Result<Accepted<Self::Stream>> {
        let (stream, source) = listener.accept().await?;
        let destination = stream.local_addr()?;
        Ok(Accepted {
            stream: stream.compat(),
            source,
            destination,
        })
    }

    fn sleep(duration: Duration) -> impl Future<Output = ()> {
        tokio::time::sleep(duration)
    }

    fn spawn(task: impl Future<Output = ()> + 'static) {
        drop(tokio::task::spawn_local(task));
    }
}
