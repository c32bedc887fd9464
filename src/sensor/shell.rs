//! What both engines share, written once: a shard's start (its [`ShardCore`] and
//! [`ConnectionTable`], one task per socket), the stop wait, and the socket tasks themselves: the
//! UDP loop run by [`UdpDriver`], the accept loop with its caps and error policy, and each
//! connection run by [`StreamSession`]. An engine ([`Engine`]: `uring.rs`, `portable.rs`)
//! supplies only what differs: its socket types, the readiness wait, accept, sleep and spawn.
//!
//! Stop: the shard's main task polls the stop flag every `STOP_POLL_INTERVAL`, then closes the
//! stop channel; every socket task sees it (between batches, or in its wait), a UDP task drains
//! its socket, and the main task returns when the last socket task has ended.
//!
//! Never: blocks, decides loop policy or timing itself (the drivers do), spawns a connection task
//! without a permit, allocates per datagram, reads from a connection of an `--ignore-ip` source
//! (closed at accept, only counted).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_lite::future::{or, yield_now};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::TlsAcceptor;

use super::io_error::{IoErrorClass, IoOp, retry_pause};
use super::shard::{ShardCore, handle_datagrams};
use super::stream_driver::{
    ConnectionPermit, ConnectionTable, StreamClose, StreamSession, StreamTimeouts,
};
use super::udp_batch::RecvBatch;
use super::udp_driver::{UdpAction, UdpDriver};
use super::{BoundSocket, ShardSockets, ShardStart, StreamSettings};
use crate::config::limits::{STOP_POLL_INTERVAL, STREAM_READ_BYTES, UDP_RECEIVE_GATHER};
use crate::event::Transport;

/// A connection accepted by a listener.
pub(super) struct Accepted<S> {
    pub(super) stream: S,
    pub(super) source: SocketAddr,
    pub(super) destination: SocketAddr,
}

/// What an engine provides: syscalls, waits and tasks on its own executor.
pub(super) trait Engine: 'static {
    /// A UDP socket registered for readiness.
    type Udp: 'static;
    type Listener: 'static;
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;

    fn udp(socket: socket2::Socket) -> io::Result<Self::Udp>;
    fn udp_fd(udp: &Self::Udp) -> RawFd;
    /// Waits until the socket may be readable.
    fn readable(udp: &Self::Udp) -> impl Future<Output = io::Result<()>>;
    fn listener(socket: socket2::Socket) -> io::Result<Self::Listener>;
    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<Accepted<Self::Stream>>>;
    fn sleep(duration: Duration) -> impl Future<Output = ()>;
    /// Runs `task` on this shard's executor, detached.
    fn spawn(task: impl Future<Output = ()> + 'static);
}

type Core = Rc<RefCell<ShardCore>>;

/// Tells a socket task that the shard stops; the task holds `_done` until it ends.
#[derive(Clone)]
struct TaskStop {
    stop: async_channel::Receiver<()>,
    _done: async_channel::Sender<()>,
}

impl TaskStop {
    fn is_stopping(&self) -> bool {
        self.stop.is_closed()
    }

    /// Returns `false` once the shard stops (never otherwise), for racing against other waits.
    async fn stopped<T>(&self) -> Option<T> {
        let _ = self.stop.recv().await;
        None
    }
}

/// Sleeps until `deadline`, then gives `None` (to race against an operation).
async fn expire<E: Engine, T>(deadline: Instant) -> Option<T> {
    E::sleep(deadline.saturating_duration_since(Instant::now())).await;
    None
}

/// Reports a shard whose executor could not be built.
pub(super) fn start_failed(shard: &ShardStart, what: &str, error: &dyn std::fmt::Display) {
    let _ = shard.ready.send(Err(format!("{what}: {error}")));
}

/// A shard's life on its executor: start a task per socket, report ready, wait for the stop flag,
/// then stop the tasks and wait until every one has ended (UDP sockets drained).
pub(super) async fn run_shard<E: Engine>(shard: ShardStart) {
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
    let connections = Rc::new(Connections::new(Rc::clone(&core), table, &stream));
    let (stop_sender, stop_receiver) = async_channel::bounded(1);
    let (done_sender, done) = async_channel::bounded::<()>(1);
    let task_stop = TaskStop {
        stop: stop_receiver,
        _done: done_sender,
    };
    let started = start_tasks::<E>(sockets, &core, &connections, &task_stop);
    drop(task_stop);
    let failed = started.is_err();
    let _ = ready.send(started);
    if failed {
        // start() stops the other shards; dropping the stop sender ends the tasks started here.
        return;
    }
    while !stop.load(Ordering::Acquire) {
        E::sleep(STOP_POLL_INTERVAL).await;
    }
    drop(stop_sender);
    // Closed (an error) once the last socket task dropped its sender.
    let _ = done.recv().await;
}

fn start_tasks<E: Engine>(
    sockets: ShardSockets,
    core: &Core,
    connections: &Rc<Connections>,
    stop: &TaskStop,
) -> Result<(), String> {
    for BoundSocket { socket, local } in sockets.udp {
        let udp = E::udp(socket).map_err(|error| format!("UDP socket {local}: {error}"))?;
        E::spawn(run_udp::<E>(udp, local, Rc::clone(core), stop.clone()));
    }
    for (BoundSocket { socket, local }, transport) in sockets.listeners {
        let listener = E::listener(socket)
            .map_err(|error| format!("{} listener {local}: {error}", transport.as_str()))?;
        let listen = Listen {
            local,
            transport,
            connections: Rc::clone(connections),
        };
        E::spawn(run_listener::<E>(listener, listen, stop.clone()));
    }
    Ok(())
}

/// One UDP socket's task: does what its [`UdpDriver`] says until it says stop.
async fn run_udp<E: Engine>(udp: E::Udp, local: SocketAddr, core: Core, stop: TaskStop) {
    let fd = E::udp_fd(&udp);
    let mut batch = RecvBatch::new();
    let mut driver = UdpDriver::new(UDP_RECEIVE_GATHER);
    loop {
        if stop.is_stopping() {
            driver.handle_stop();
        }
        match driver.poll_action(Instant::now()) {
            UdpAction::Receive => {
                let result = batch.recv(fd);
                let core = &mut core.borrow_mut();
                core.metrics().udp_receive_calls.inc();
                match result {
                    Ok(count) => {
                        handle_datagrams(core, &batch, count, fd, local);
                        driver.handle_received(count, Instant::now());
                    }
                    Err(error) => handle_receive_error(core, &mut driver, local, &error),
                }
            }
            UdpAction::Pause => {
                let until = driver.poll_timeout().unwrap_or_else(Instant::now);
                E::sleep(until.saturating_duration_since(Instant::now())).await;
            }
            UdpAction::Yield => yield_now().await,
            UdpAction::WaitReadable => {
                let readable = async { Some(E::readable(&udp).await) };
                match or(readable, stop.stopped()).await {
                    None => driver.handle_stop(),
                    Some(Ok(())) => {}
                    Some(Err(error)) => {
                        handle_receive_error(&mut core.borrow_mut(), &mut driver, local, &error);
                    }
                }
            }
            UdpAction::Stop => return,
        }
    }
}

fn handle_receive_error(
    core: &mut ShardCore,
    driver: &mut UdpDriver,
    local: SocketAddr,
    error: &io::Error,
) {
    if error.kind() == io::ErrorKind::WouldBlock {
        core.metrics().udp_receive_calls_empty.inc();
        driver.handle_would_block();
        return;
    }
    let now = Instant::now();
    let class = core.handle_io_error(IoOp::UdpReceive, local, error, now);
    driver.handle_error(class, retry_pause(error), now);
}

/// What a shard's listeners and connections share.
struct Connections {
    core: Core,
    table: Rc<ConnectionTable>,
    timeouts: StreamTimeouts,
    tls: Option<TlsAcceptor>,
}

impl Connections {
    fn new(core: Core, table: Rc<ConnectionTable>, stream: &StreamSettings) -> Self {
        Self {
            core,
            table,
            timeouts: StreamTimeouts {
                idle: stream.idle_timeout,
                // A reply has as long to be written as a message has to arrive.
                write: stream.idle_timeout,
                handshake: stream.handshake_timeout,
            },
            tls: stream.tls.clone().map(TlsAcceptor::from),
        }
    }

    fn count_close(&self, close: StreamClose) {
        close.count(self.core.borrow().metrics());
    }
}

/// One listener's identity and its shard's connections.
struct Listen {
    local: SocketAddr,
    transport: Transport,
    connections: Rc<Connections>,
}

/// One listener's task: accepts until the shard stops or a fatal error; a connection's task is
/// spawned only with a permit from the connection caps.
async fn run_listener<E: Engine>(listener: E::Listener, listen: Listen, stop: TaskStop) {
    while !stop.is_stopping() {
        let accepted = async { Some(E::accept(&listener).await) };
        let Some(accepted) = or(accepted, stop.stopped()).await else {
            return;
        };
        let error = match accepted {
            Ok(accepted) => {
                let source = accepted.source.ip();
                if listen.connections.core.borrow().drop_ignored(source) {
                    // Closed at once, unread, uncounted by the connection caps.
                    drop(accepted);
                    continue;
                }
                let permit = listen.connections.table.try_open(source);
                if let Some(permit) = permit {
                    let connections = Rc::clone(&listen.connections);
                    E::spawn(serve_connection::<E>(
                        accepted,
                        permit,
                        listen.transport,
                        connections,
                    ));
                }
                continue;
            }
            Err(error) => error,
        };
        let now = Instant::now();
        let class = listen.connections.core.borrow_mut().handle_io_error(
            IoOp::Accept,
            listen.local,
            &error,
            now,
        );
        if class == IoErrorClass::Fatal {
            return;
        }
        let pause = retry_pause(&error);
        if !pause.is_zero() {
            let paused = async {
                E::sleep(pause).await;
                Some(())
            };
            if or(paused, stop.stopped()).await.is_none() {
                return;
            }
        }
    }
}

/// One connection's task: the TLS handshake (within its deadline) if any, then the session.
async fn serve_connection<E: Engine>(
    accepted: Accepted<E::Stream>,
    _permit: ConnectionPermit,
    transport: Transport,
    connections: Rc<Connections>,
) {
    let Accepted {
        stream,
        source,
        destination,
    } = accepted;
    let timeouts = connections.timeouts;
    let session = StreamSession::new(transport, source, destination, timeouts, Instant::now());
    let tls = match (transport, &connections.tls) {
        (Transport::Tls, Some(tls)) => tls.clone(),
        _ => return serve_stream::<E, _>(stream, session, &connections).await,
    };
    let handshake = async { Some(tls.accept(stream).await) };
    match or(handshake, expire::<E, _>(session.poll_timeout())).await {
        Some(Ok(tls_stream)) => {
            let mut session = session;
            session.handle_handshake_done(Instant::now());
            serve_stream::<E, _>(tls_stream, session, &connections).await;
        }
        Some(Err(_)) => connections
            .core
            .borrow()
            .metrics()
            .tls_handshake_failures
            .inc(),
        None => connections.count_close(StreamClose::HandshakeTimeout),
    }
}

/// Reads, frames and answers one connection until it closes, a deadline passes or it sends an
/// oversize message; every decision is the [`StreamSession`]'s.
async fn serve_stream<E: Engine, S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut session: StreamSession,
    connections: &Connections,
) {
    let mut buffer = vec![0u8; STREAM_READ_BYTES];
    loop {
        let read = async { Some(stream.read(&mut buffer).await) };
        let count = match or(read, expire::<E, _>(session.poll_timeout())).await {
            Some(Ok(0) | Err(_)) => return,
            Some(Ok(count)) => count,
            None => match session.handle_timeout(Instant::now()) {
                Some(close) => return connections.count_close(close),
                None => continue,
            },
        };
        let bytes = buffer.get(..count).unwrap_or_default();
        let outcome =
            session.handle_bytes(&mut connections.core.borrow_mut(), bytes, Instant::now());
        if !write_replies::<E, S>(&mut stream, &mut session, connections).await || outcome.is_err()
        {
            return;
        }
        if session.poll_yield() {
            yield_now().await;
        }
    }
}

/// Writes the session's pending replies within the write deadline; false when the connection
/// must close (write error or timeout).
async fn write_replies<E: Engine, S: AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut StreamSession,
    connections: &Connections,
) -> bool {
    let Some(replies) = session.poll_transmit() else {
        return true;
    };
    let deadline = session.poll_timeout();
    let write =
        async { Some(stream.write_all(replies).await.is_ok() && stream.flush().await.is_ok()) };
    let written = or(write, expire::<E, _>(deadline)).await;
    match written {
        Some(true) => {
            session.handle_written();
            true
        }
        Some(false) => false,
        None => {
            connections.count_close(StreamClose::WriteTimeout);
            false
        }
    }
}
