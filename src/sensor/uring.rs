//! The io_uring engine: one glommio `LocalExecutor` per shard thread, pinned with core_affinity.
//!
//! UDP: glommio's `UdpSocket` has no recvmsg/cmsg, so it serves only as the readiness wait (an
//! io_uring `MSG_PEEK` of one byte), and the datagrams are taken with a non-blocking `recvmmsg`
//! on the raw fd (`udp_batch.rs`), which also gives IP_PKTINFO. Measured on this noisy 2-core
//! machine, draining 300,000 pre-queued 420-byte datagrams inside a glommio executor
//! (`cargo run --release --example sensor_ingest -- drain 300000`, 9 rounds, 2026-11-28): glommio
//! `recv_from` median 1.26M datagrams/s (1.12-1.43M), peek + recvmmsg median 1.55M/s
//! (0.99-1.76M), median ratio 1.20. recvmmsg is kept: faster, and `recv_from` cannot give the
//! destination address at all. A short batch (the queue drained) is followed by a pause of
//! `UDP_RECEIVE_GATHER` before the next recvmmsg, an empty one by the readiness wait: in a flood
//! that halves the wake-ups (docs/benchmarks.md, "Sustained: 60 s floods").
//! TCP/TLS: glommio listeners (converted from our socket2 sockets by raw fd), a task per
//! connection spawned only after its permit is taken; TLS via futures-rustls.
//!
//! Never: blocks the executor, spawns a connection task without a permit.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Instant;

use futures_lite::future::or;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, UdpSocket};
use glommio::{LocalExecutorBuilder, Placement};

use super::shard::{ConnectionTable, ShardCore, StreamSession, handle_datagrams};
use super::udp_batch::RecvBatch;
use super::{
    STOP_DRAIN_BATCHES_MAX, STOP_POLL_INTERVAL, STREAM_READ_BYTES, ShardStart, StreamSettings,
};
use crate::config::limits::{RECV_BATCH_DATAGRAMS, SHARD_BATCH_BEFORE_YIELD, UDP_RECEIVE_GATHER};
use crate::event::Transport;

type Core = Rc<RefCell<ShardCore>>;

pub(super) fn spawn(shard: ShardStart) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(format!("sensor-uring-{}", shard.index))
        .spawn(move || run_thread(shard))
        .map_err(|e| e.to_string())
}

fn run_thread(shard: ShardStart) {
    if let Some(core) = shard.core {
        core_affinity::set_for_current(core);
    }
    let executor = match LocalExecutorBuilder::new(Placement::Unbound).make() {
        Ok(executor) => executor,
        Err(error) => {
            let _ = shard.ready.send(Err(format!("glommio executor: {error}")));
            return;
        }
    };
    executor.run(run_shard(shard));
}

async fn run_shard(shard: ShardStart) {
    let ShardStart {
        index,
        sockets,
        settings,
        stream,
        stop,
        ready,
        ..
    } = shard;
    let metrics = Arc::clone(&settings.metrics);
    let core: Core = Rc::new(RefCell::new(ShardCore::new(settings, index)));
    let table = ConnectionTable::new(
        stream.connections_per_ip_max,
        stream.connections_per_shard_max,
        metrics,
        index,
    );
    let mut stop_senders: Vec<LocalSender<()>> = Vec::new();
    let stopping = Rc::new(Cell::new(false));
    let mut tasks = Vec::new();
    for socket in sockets.udp {
        let local = super::socket::local_address(&socket).ok();
        // SAFETY: the fd comes from a socket we own and give up here (into_raw_fd).
        let udp = unsafe { UdpSocket::from_raw_fd(socket.into_raw_fd()) };
        let (sender, receiver) = local_channel::new_bounded(1);
        stop_senders.push(sender);
        if let Some(local) = local {
            let stop = Stop {
                receiver,
                stopping: Rc::clone(&stopping),
            };
            tasks.push(glommio::spawn_local(run_udp(
                udp,
                local,
                Rc::clone(&core),
                stop,
            )));
        }
    }
    let listeners = sockets.tcp.into_iter().map(|s| (s, Transport::Tcp));
    for (socket, transport) in listeners.chain(sockets.tls.map(|s| (s, Transport::Tls))) {
        // SAFETY: as above, for a bound and listening TCP socket.
        let listener = unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) };
        let (sender, receiver) = local_channel::new_bounded(1);
        stop_senders.push(sender);
        let accept = Accept {
            core: Rc::clone(&core),
            table: Rc::clone(&table),
            stream: stream.clone(),
            transport,
        };
        let stop = Stop {
            receiver,
            stopping: Rc::clone(&stopping),
        };
        tasks.push(glommio::spawn_local(run_listener(listener, accept, stop)));
    }
    let _ = ready.send(Ok(()));
    while !stop.load(Ordering::Acquire) {
        glommio::timer::sleep(STOP_POLL_INTERVAL).await;
    }
    stopping.set(true);
    drop(stop_senders);
    for task in tasks {
        task.await;
    }
}

/// How a socket task learns that the shard stops: `stopping` is checked between batches (a
/// flood never lets the socket go idle), the closed channel wakes an idle wait.
struct Stop {
    receiver: LocalReceiver<()>,
    stopping: Rc<Cell<bool>>,
}

async fn run_udp(socket: UdpSocket, local: SocketAddr, core: Core, stop: Stop) {
    let fd = socket.as_raw_fd();
    let mut batch = RecvBatch::new();
    let mut peek = [0u8; 1];
    let mut handled_count = 0;
    let mut drain_batches: Option<usize> = None;
    // A short batch means the queue was drained: let the next datagrams gather for
    // UDP_RECEIVE_GATHER before the next recvmmsg; an empty one means idle: wait for readiness.
    let mut queue_drained = false;
    loop {
        if queue_drained && drain_batches.is_none() {
            glommio::timer::sleep(UDP_RECEIVE_GATHER).await;
        }
        queue_drained = false;
        match batch.recv(fd) {
            Ok(count) => {
                queue_drained = count < RECV_BATCH_DATAGRAMS;
                handle_datagrams(&mut core.borrow_mut(), &batch, count, fd, local);
                handled_count += count;
                if drain_batches.is_none() && stop.stopping.get() {
                    drain_batches = Some(STOP_DRAIN_BATCHES_MAX);
                }
                if let Some(left) = drain_batches.as_mut() {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        return;
                    }
                } else if handled_count >= SHARD_BATCH_BEFORE_YIELD {
                    handled_count = 0;
                    glommio::yield_if_needed().await;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                if drain_batches.is_some() {
                    return;
                }
                handled_count = 0;
                let readable = async {
                    // Any outcome (data or an error to report) means: try recvmmsg again.
                    let _ = socket.peek_from(&mut peek).await;
                    true
                };
                let stopped = async {
                    let _ = stop.receiver.recv().await;
                    false
                };
                if !or(readable, stopped).await {
                    drain_batches = Some(STOP_DRAIN_BATCHES_MAX);
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                core.borrow_mut().handle_io_error("UDP receive", &error);
                glommio::timer::sleep(STOP_POLL_INTERVAL).await;
            }
        }
    }
}

/// What the accept loop hands each connection.
#[derive(Clone)]
struct Accept {
    core: Core,
    table: Rc<ConnectionTable>,
    stream: StreamSettings,
    transport: Transport,
}

async fn run_listener(listener: TcpListener, accept: Accept, stop: Stop) {
    let tls = match accept.transport {
        Transport::Tls => accept.stream.tls.clone().map(TlsAcceptor::from),
        Transport::Tcp | Transport::Udp => None,
    };
    while !stop.stopping.get() {
        let accepted = async { Some(listener.accept().await) };
        let stopped = async {
            let _ = stop.receiver.recv().await;
            None
        };
        let stream = match or(accepted, stopped).await {
            None => return,
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                let error = std::io::Error::other(error.to_string());
                accept.core.borrow_mut().handle_io_error("accept", &error);
                glommio::timer::sleep(STOP_POLL_INTERVAL).await;
                continue;
            }
        };
        let (Ok(source), Ok(destination)) = (stream.peer_addr(), stream.local_addr()) else {
            continue;
        };
        let Some(permit) = accept.table.try_open(source.ip()) else {
            continue;
        };
        let task_accept = accept.clone();
        let tls = tls.clone();
        glommio::spawn_local(async move {
            let _permit = permit;
            let session = StreamSession::new(task_accept.transport, source, destination);
            match tls {
                None => serve_stream(stream, session, &task_accept).await,
                Some(tls) => {
                    let timeout = task_accept.stream.handshake_timeout;
                    let handshake = async { tls.accept(stream).await.ok() };
                    let expired = async {
                        glommio::timer::sleep(timeout).await;
                        None
                    };
                    match or(handshake, expired).await {
                        Some(tls_stream) => serve_stream(tls_stream, session, &task_accept).await,
                        None => task_accept
                            .core
                            .borrow()
                            .metrics()
                            .tls_handshake_failures
                            .inc(),
                    }
                }
            }
        })
        .detach();
    }
}

/// Reads, frames and answers one connection until it closes, idles out or sends an oversize
/// message. The idle deadline moves only when a whole message arrives, so a slow-loris sender
/// dribbling bytes is cut at the idle timeout.
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut session: StreamSession,
    accept: &Accept,
) {
    let idle_timeout = accept.stream.idle_timeout;
    let mut buffer = vec![0u8; STREAM_READ_BYTES];
    let mut deadline = Instant::now() + idle_timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let read = async { Some(stream.read(&mut buffer).await) };
        let expired = async {
            glommio::timer::sleep(remaining).await;
            None
        };
        let count = match or(read, expired).await {
            None => {
                accept
                    .core
                    .borrow()
                    .metrics()
                    .connections_idle_timeouts
                    .inc();
                return;
            }
            Some(Ok(0) | Err(_)) => return,
            Some(Ok(count)) => count,
        };
        let outcome = session.handle_bytes(&mut accept.core.borrow_mut(), &buffer[..count]);
        if matches!(outcome, Ok(messages) if messages > 0) {
            deadline = Instant::now() + idle_timeout;
        }
        if !session.replies().is_empty() {
            let write = async {
                stream.write_all(session.replies()).await.is_ok() && stream.flush().await.is_ok()
            };
            let expired = async {
                glommio::timer::sleep(idle_timeout).await;
                false
            };
            if !or(write, expired).await {
                return;
            }
            session.clear_replies();
        }
        if outcome.is_err() {
            return;
        }
        // A connection that always has bytes ready must not starve the shard's other tasks.
        glommio::yield_if_needed().await;
    }
}
