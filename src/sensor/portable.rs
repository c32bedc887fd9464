//! The portable engine (`-N`, or when io_uring is unavailable): the same per-core shape on plain
//! threads, each pinned and running a current-thread tokio runtime (epoll) with a `LocalSet`.
//!
//! UDP: wait for readiness with `AsyncFd`, then drain with non-blocking `recvmmsg`
//! (`udp_batch.rs`). TCP/TLS: tokio listeners, a task per connection spawned only after its
//! permit is taken; TLS (when a TLS listener was bound) via tokio-rustls.
//!
//! Never: blocks the runtime, spawns a connection task without a permit.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{sleep, timeout};
use tokio_rustls::TlsAcceptor;

use super::shard::{ConnectionTable, ShardCore, StreamSession, handle_datagrams};
use super::udp_batch::RecvBatch;
use super::{
    STOP_DRAIN_BATCHES_MAX, STOP_POLL_INTERVAL, STREAM_READ_BYTES, ShardStart, StreamSettings,
};
use crate::config::limits::SHARD_BATCH_BEFORE_YIELD;
use crate::event::Transport;

type Core = Rc<RefCell<ShardCore>>;

pub(super) fn spawn(shard: ShardStart) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(format!("sensor-portable-{}", shard.index))
        .spawn(move || run_thread(shard))
        .map_err(|e| e.to_string())
}

fn run_thread(shard: ShardStart) {
    if let Some(core) = shard.core {
        core_affinity::set_for_current(core);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = shard.ready.send(Err(format!("tokio runtime: {error}")));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run_shard(shard));
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
    let (stop_sender, stop_receiver) = watch::channel(false);
    let mut tasks = Vec::new();
    for socket in sockets.udp {
        let Ok(local) = super::socket::local_address(&socket) else {
            continue;
        };
        // SAFETY: the socket owns its fd and keeps it open and unchanged for as long as the
        // AsyncFd owns the socket.
        let udp = match unsafe { AsyncFd::register(socket) } {
            Ok(udp) => udp,
            Err(error) => {
                let error = error.into_parts().1;
                let _ = ready.send(Err(format!("UDP socket: {error}")));
                return;
            }
        };
        let task = run_udp(udp, local, Rc::clone(&core), stop_receiver.clone());
        tasks.push(tokio::task::spawn_local(task));
    }
    let listeners = sockets.tcp.into_iter().map(|s| (s, Transport::Tcp));
    for (socket, transport) in listeners.chain(sockets.tls.map(|s| (s, Transport::Tls))) {
        let listener = match TcpListener::from_std(socket.into()) {
            Ok(listener) => listener,
            Err(error) => {
                let _ = ready.send(Err(format!("TCP listener: {error}")));
                return;
            }
        };
        let accept = Accept {
            core: Rc::clone(&core),
            table: Rc::clone(&table),
            stream: stream.clone(),
            transport,
        };
        let task = run_listener(listener, accept, stop_receiver.clone());
        tasks.push(tokio::task::spawn_local(task));
    }
    let _ = ready.send(Ok(()));
    while !stop.load(Ordering::Acquire) {
        sleep(STOP_POLL_INTERVAL).await;
    }
    let _ = stop_sender.send(true);
    for task in tasks {
        let _ = task.await;
    }
}

async fn wait_stop(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn run_udp(
    socket: AsyncFd<socket2::Socket>,
    local: SocketAddr,
    core: Core,
    stop: watch::Receiver<bool>,
) {
    let fd = socket.get_ref().as_raw_fd();
    let mut batch = RecvBatch::new();
    loop {
        let mut guard = tokio::select! {
            ready = socket.readable() => match ready {
                Ok(guard) => guard,
                Err(error) => {
                    core.borrow_mut().handle_io_error("UDP readiness", &error);
                    return;
                }
            },
            () = wait_stop(stop.clone()) => break,
        };
        let mut handled_count = 0;
        loop {
            match guard.try_io(|_| batch.recv(fd)) {
                Ok(Ok(count)) => {
                    handle_datagrams(&mut core.borrow_mut(), &batch, count, fd, local);
                    handled_count += count;
                    // A flood never lets the socket go idle: look at the stop flag per batch.
                    if *stop.borrow() {
                        break;
                    }
                    if handled_count >= SHARD_BATCH_BEFORE_YIELD {
                        handled_count = 0;
                        tokio::task::yield_now().await;
                    }
                }
                Ok(Err(error)) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(error)) => {
                    core.borrow_mut().handle_io_error("UDP receive", &error);
                    break;
                }
                // Would block: wait for readiness again.
                Err(_) => break,
            }
        }
        if *stop.borrow() {
            break;
        }
    }
    // Stopping: take what the socket still holds, without waiting for more.
    for _ in 0..STOP_DRAIN_BATCHES_MAX {
        match batch.recv(fd) {
            Ok(count) => handle_datagrams(&mut core.borrow_mut(), &batch, count, fd, local),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
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

async fn run_listener(listener: TcpListener, accept: Accept, stop: watch::Receiver<bool>) {
    let tls = match accept.transport {
        Transport::Tls => accept.stream.tls.clone().map(TlsAcceptor::from),
        Transport::Tcp | Transport::Udp => None,
    };
    while !*stop.borrow() {
        let (stream, source) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    accept.core.borrow_mut().handle_io_error("accept", &error);
                    sleep(STOP_POLL_INTERVAL).await;
                    continue;
                }
            },
            () = wait_stop(stop.clone()) => return,
        };
        let Ok(destination) = stream.local_addr() else {
            continue;
        };
        let Some(permit) = accept.table.try_open(source.ip()) else {
            continue;
        };
        let task_accept = accept.clone();
        let tls = tls.clone();
        tokio::task::spawn_local(async move {
            let _permit = permit;
            let session = StreamSession::new(task_accept.transport, source, destination);
            match tls {
                None => serve_stream(stream, session, &task_accept).await,
                Some(tls) => {
                    let handshake =
                        timeout(task_accept.stream.handshake_timeout, tls.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls_stream)) => serve_stream(tls_stream, session, &task_accept).await,
                        _ => task_accept
                            .core
                            .borrow()
                            .metrics()
                            .tls_handshake_failures
                            .inc(),
                    }
                }
            }
        });
    }
}

/// Reads, frames and answers one connection until it closes, idles out or sends an oversize
/// message. The idle deadline moves only when a whole message arrives.
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
        let count = match timeout(remaining, stream.read(&mut buffer)).await {
            Err(_) => {
                accept
                    .core
                    .borrow()
                    .metrics()
                    .connections_idle_timeouts
                    .inc();
                return;
            }
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(count)) => count,
        };
        let outcome = session.handle_bytes(&mut accept.core.borrow_mut(), &buffer[..count]);
        if matches!(outcome, Ok(messages) if messages > 0) {
            deadline = Instant::now() + idle_timeout;
        }
        if !session.replies().is_empty() {
            let write = async {
                stream.write_all(session.replies()).await?;
                stream.flush().await
            };
            if !matches!(timeout(idle_timeout, write).await, Ok(Ok(()))) {
                return;
            }
            session.clear_replies();
        }
        if outcome.is_err() {
            return;
        }
    }
}
