//! The data plane: per-core shards that move bytes between the kernel and `sip`, build events and
//! `try_send` them to the writer.
//!
//! [`start`] binds every socket on the calling thread (so a bind failure, or a socket whose local
//! address cannot be read, stops start-up with one line), picks the engine, then runs one pinned
//! shard thread per core. Each shard owns one UDP socket and one TCP listener per listen address
//! plus one TLS listener, all bound with SO_REUSEPORT so the kernel spreads flows across shards.
//! Files:
//! - `socket.rs`: socket2 sockets (SO_REUSEPORT, SO_RCVBUF, IP_PKTINFO);
//! - `udp_batch.rs`: `recvmmsg` with destination addresses, `sendmsg` from a chosen source;
//! - `shard.rs`: what a shard does with a message (scan, event, try_send, reply);
//! - `udp_driver.rs`, `stream_driver.rs`, `io_error.rs`: the pure drivers (sans-I/O, time passed
//!   in): the UDP loop policy (gather pause, yield, drain on stop), a connection's framing and
//!   deadlines, the connection caps, and the one socket error policy;
//! - `shell.rs`: the shard's tasks, written once over an engine (`shell::Engine`); `uring.rs`
//!   (glommio, io_uring) and `portable.rs` (a current-thread tokio runtime) are the two thin
//!   engines; `probe.rs` decides whether io_uring is usable;
//! - `reply_limiter.rs`: the per-source reply token bucket (pure);
//! - `tls.rs`: rustls configuration, self-signed certificate generation;
//! - `metrics.rs`: per-shard counters, summed when rendered.
//!
//! Never: blocks, parses SIP itself, spawns or queues without a bound, replies to an unsanitized
//! source.
//!
//! Limits: `RECV_BATCH_DATAGRAMS`, `UDP_RECEIVE_GATHER`, `UDP_DATAGRAM_BYTES_MAX`,
//! `SIP_MESSAGE_BYTES_MAX`, `SHARD_BATCH_BEFORE_YIELD`, `STOP_DRAIN_BATCHES_MAX`,
//! `STOP_POLL_INTERVAL`, `STREAM_READ_BYTES`, `IO_ERROR_RETRY_PAUSE`, `REPLY_BYTES_MAX`,
//! `REPLY_LIMITER_SOURCES_MAX`, `DEBUG_LINES_PER_SECOND_MAX`, and the connection caps and timeouts
//! of [`SensorConfig`], in [`crate::config::limits`].

mod io_error;
mod kernel_drops;
pub mod metrics;
mod portable;
mod probe;
#[cfg(test)]
mod proof_tests;
pub(crate) mod reply_limiter;
mod shard;
mod shell;
pub mod socket;
mod stream_driver;
mod tls;
pub mod udp_batch;
mod udp_driver;
mod uring;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use uuid::Uuid;

pub use self::metrics::{SensorMetrics, SensorTotals, ShardMetrics};
use self::shard::ShardSettings;
use crate::config::limits::PORT_ZERO_BIND_ATTEMPTS;
use crate::config::{EngineChoice, SensorConfig};
use crate::event::{Event, Transport};
use crate::sip::ProofKey;

/// Which engine runs the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// glommio on io_uring.
    IoUring,
    /// Plain threads, epoll (a current-thread tokio runtime per shard) and `recvmmsg`.
    Portable,
}

/// Why the sensor could not start (one line each).
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error("cannot bind {transport} {address}: {}", os_message(error))]
    Bind {
        transport: &'static str,
        address: SocketAddr,
        error: io::Error,
    },
    #[error("TLS certificate: {0}")]
    Tls(String),
    #[error(
        "cannot read the local address of a {transport} socket of shard {index}: {}",
        os_message(error)
    )]
    LocalAddress {
        transport: &'static str,
        index: usize,
        error: io::Error,
    },
    #[error("cannot start sensor shard {index}: {reason}")]
    Shard { index: usize, reason: String },
    #[error("invalid sensor setting: {0}")]
    Config(&'static str),
}

/// An I/O error as the C library words it, without Rust's ` (os error N)` suffix.
fn os_message(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(index) => text[..index].to_owned(),
        None => text,
    }
}

/// A bound socket and the address it is bound to (read once, at start-up).
struct BoundSocket {
    socket: socket2::Socket,
    local: SocketAddr,
}

/// The sockets one shard serves.
#[derive(Default)]
struct ShardSockets {
    udp: Vec<BoundSocket>,
    /// TCP listeners, then the TLS one.
    listeners: Vec<(BoundSocket, Transport)>,
}

/// Pairs each shard's socket with its local address; a socket whose address cannot be read
/// fails start-up (it could not be served).
fn bound_sockets(
    sockets: Vec<socket2::Socket>,
    transport: &'static str,
) -> Result<Vec<BoundSocket>, SensorError> {
    sockets
        .into_iter()
        .enumerate()
        .map(|(index, socket)| match socket::local_address(&socket) {
            Ok(local) => Ok(BoundSocket { socket, local }),
            Err(error) => Err(SensorError::LocalAddress {
                transport,
                index,
                error,
            }),
        })
        .collect()
}

/// Settings the engines need besides [`ShardSettings`].
#[derive(Clone)]
struct StreamSettings {
    idle_timeout: Duration,
    handshake_timeout: Duration,
    connections_per_ip_max: usize,
    connections_per_shard_max: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// The running sensor.
pub struct Sensor {
    engine: EngineKind,
    fallback_reason: Option<String>,
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    metrics: Arc<SensorMetrics>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Sensor {
    pub fn engine(&self) -> EngineKind {
        self.engine
    }

    /// Why the io_uring engine was not used although asked for (`None` when it runs or `-N`).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// The bound UDP addresses (real ports), one per listen address.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp_addrs.clone()
    }

    /// The bound TCP addresses (real ports), one per listen address.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp_addrs.clone()
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    pub fn metrics(&self) -> Arc<SensorMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Stops accepting and receiving, drains what the sockets hold into the channel and joins
    /// every shard thread (dropping the sensor does the same).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        stop_threads(&self.stop, std::mem::take(&mut self.threads));
    }
}

fn bind_error(transport: &'static str, address: SocketAddr) -> impl Fn(io::Error) -> SensorError {
    move |error| SensorError::Bind {
        transport,
        address,
        error,
    }
}

/// Binds one listen address on every shard: UDP and TCP on the same port.
fn bind_listen_address(
    address: SocketAddr,
    shards: &mut [ShardSockets],
    receive_buffer_bytes: usize,
) -> Result<(SocketAddr, SocketAddr), SensorError> {
    let attempts = if address.port() == 0 {
        PORT_ZERO_BIND_ATTEMPTS
    } else {
        1
    };
    let mut last_error = None;
    for _ in 0..attempts {
        match bind_listen_address_once(address, shards.len(), receive_buffer_bytes) {
            Ok((udp, tcp)) => {
                let (udp, tcp) = (bound_sockets(udp, "UDP")?, bound_sockets(tcp, "TCP")?);
                let addresses = (udp[0].local, tcp[0].local);
                for ((shard, u), t) in shards.iter_mut().zip(udp).zip(tcp) {
                    shard.udp.push(u);
                    shard.listeners.push((t, Transport::Tcp));
                }
                return Ok(addresses);
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or(SensorError::Config("no listen address bound")))
}

type BoundSockets = (Vec<socket2::Socket>, Vec<socket2::Socket>);

fn bind_listen_address_once(
    address: SocketAddr,
    shard_count: usize,
    receive_buffer_bytes: usize,
) -> Result<BoundSockets, SensorError> {
    let first =
        socket::bind_udp(address, receive_buffer_bytes).map_err(bind_error("UDP", address))?;
    let actual = socket::local_address(&first).map_err(bind_error("UDP", address))?;
    let mut udp = vec![first];
    for _ in 1..shard_count {
        udp.push(
            socket::bind_udp(actual, receive_buffer_bytes).map_err(bind_error("UDP", actual))?,
        );
    }
    let tcp = (0..shard_count)
        .map(|_| socket::bind_tcp(actual).map_err(bind_error("TCP", actual)))
        .collect::<Result<_, _>>()?;
    Ok((udp, tcp))
}

fn bind_tls(address: SocketAddr, shards: &mut [ShardSockets]) -> Result<SocketAddr, SensorError> {
    let first = socket::bind_tcp(address).map_err(bind_error("TLS", address))?;
    let actual = socket::local_address(&first).map_err(bind_error("TLS", address))?;
    let mut sockets = vec![first];
    for _ in 1..shards.len() {
        sockets.push(socket::bind_tcp(actual).map_err(bind_error("TLS", actual))?);
    }
    for (shard, bound) in shards.iter_mut().zip(bound_sockets(sockets, "TLS")?) {
        shard.listeners.push((bound, Transport::Tls));
    }
    Ok(actual)
}

/// Picks the engine: `(engine, fallback reason)`. Prints the reason on stderr.
fn choose_engine(config: &SensorConfig) -> (EngineKind, Option<String>) {
    if config.engine == EngineChoice::Portable {
        return (EngineKind::Portable, None);
    }
    let probe = if config.force_probe_failure {
        Err("io_uring probe failure forced (--danger-force-portable-fallback)".to_owned())
    } else {
        probe::raise_memlock(config.cores.max(1));
        probe::probe_io_uring()
    };
    match probe {
        Ok(()) => (EngineKind::IoUring, None),
        Err(reason) => {
            eprintln!("sentrypeer: io_uring unavailable, using the portable engine: {reason}");
            (EngineKind::Portable, Some(reason))
        }
    }
}

/// Every shard's sockets and the addresses they are bound to.
struct Bound {
    shards: Vec<ShardSockets>,
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    tls_addr: Option<SocketAddr>,
}

/// Binds every listen address (and the TLS one, when TLS is configured) on `shard_count` shards.
fn bind_all(config: &SensorConfig, shard_count: usize, tls: bool) -> Result<Bound, SensorError> {
    let mut bound = Bound {
        shards: (0..shard_count).map(|_| ShardSockets::default()).collect(),
        udp_addrs: Vec::new(),
        tcp_addrs: Vec::new(),
        tls_addr: None,
    };
    if shard_count == 0 {
        return Ok(bound);
    }
    for address in &config.listen {
        let (udp, tcp) = bind_listen_address(*address, &mut bound.shards, config.udp_rcvbuf_bytes)?;
        bound.udp_addrs.push(udp);
        bound.tcp_addrs.push(tcp);
    }
    if let (Some(address), true) = (config.tls_listen, tls) {
        bound.tls_addr = Some(bind_tls(address, &mut bound.shards)?);
    }
    Ok(bound)
}

/// Who the sensor is: the node id its events carry and the secret its source proofs are keyed
/// with (both kept in the store).
#[derive(Debug, Clone)]
pub struct Identity {
    pub node_id: Uuid,
    pub proof_key: ProofKey,
}

impl Identity {
    /// A node id with a fresh random proof secret (tests and tools without a store).
    pub fn ephemeral(node_id: Uuid) -> Self {
        let mut secret = [0u8; 32];
        // The OS generator does not fail on Linux once booted; a zero secret would still work.
        let _ = getrandom::fill(&mut secret);
        Self {
            node_id,
            proof_key: ProofKey::new(secret),
        }
    }
}

/// Binds every socket, starts one shard thread per core and returns once all are running.
pub fn start(
    config: &SensorConfig,
    identity: &Identity,
    events: Sender<Event>,
    debug: bool,
) -> Result<Sensor, SensorError> {
    let shard_count = if config.enabled {
        config.cores.max(1)
    } else {
        0
    };
    let metrics = Arc::new(SensorMetrics::new(shard_count));
    let (engine, fallback_reason) = choose_engine(config);
    let tls = match config.tls_listen {
        Some(_) if config.enabled => Some(tls::server_config(&config.tls_cert, &config.tls_key)?),
        _ => None,
    };
    let bound = bind_all(config, shard_count, tls.is_some())?;
    let settings = ShardSettings {
        node_id: identity.node_id,
        proof_key: identity.proof_key.clone(),
        sip_challenge: config.sip_challenge,
        sip_realm: Arc::from(config.sip_realm.as_bytes()),
        responsive: config.responsive,
        events,
        metrics: Arc::clone(&metrics),
        debug,
        server_header: Arc::from(config.server_header.as_bytes()),
        reply_rate_per_second: config.reply_rate_per_second,
        reply_burst: config.reply_burst,
        ignore_ip: config.ignore_ip.clone(),
    };
    let stream = StreamSettings {
        idle_timeout: config.tcp_idle_timeout,
        handshake_timeout: config.tls_handshake_timeout,
        connections_per_ip_max: config.tcp_connections_per_ip_max,
        connections_per_shard_max: config.tcp_connections_per_shard_max,
        tls,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let threads = start_shards(engine, bound.shards, &settings, &stream, &stop)?;
    Ok(Sensor {
        engine,
        fallback_reason,
        udp_addrs: bound.udp_addrs,
        tcp_addrs: bound.tcp_addrs,
        tls_addr: bound.tls_addr,
        metrics,
        stop,
        threads,
    })
}

/// Spawns one pinned thread per shard on `engine` and waits until every shard reports ready;
/// on any failure stops those started and returns the first failure.
fn start_shards(
    engine: EngineKind,
    shards: Vec<ShardSockets>,
    settings: &ShardSettings,
    stream: &StreamSettings,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<()>>, SensorError> {
    let shard_count = shards.len();
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    let mut threads = Vec::with_capacity(shard_count);
    let (ready_sender, ready) = std::sync::mpsc::channel::<Result<(), String>>();
    for (index, sockets) in shards.into_iter().enumerate() {
        let core = (!core_ids.is_empty()).then(|| core_ids[index % core_ids.len()]);
        let shard = ShardStart {
            index,
            core,
            sockets,
            settings: settings.clone(),
            stream: stream.clone(),
            stop: Arc::clone(stop),
            ready: ready_sender.clone(),
        };
        match spawn_shard(engine, shard) {
            Ok(thread) => threads.push(thread),
            Err(reason) => {
                stop_threads(stop, threads);
                return Err(SensorError::Shard { index, reason });
            }
        }
    }
    drop(ready_sender);
    for index in 0..shard_count {
        let outcome = ready
            .recv()
            .unwrap_or_else(|_| Err("shard thread ended".to_owned()));
        if let Err(reason) = outcome {
            stop_threads(stop, threads);
            return Err(SensorError::Shard { index, reason });
        }
    }
    Ok(threads)
}

/// Starts one shard's thread, pinned to its core, running `engine`.
fn spawn_shard(engine: EngineKind, shard: ShardStart) -> Result<JoinHandle<()>, String> {
    let (name, run): (_, fn(ShardStart)) = match engine {
        EngineKind::IoUring => ("uring", uring::run_thread),
        EngineKind::Portable => ("portable", portable::run_thread),
    };
    std::thread::Builder::new()
        .name(format!("sensor-{name}-{}", shard.index))
        .spawn(move || {
            if let Some(core) = shard.core {
                core_affinity::set_for_current(core);
            }
            run(shard);
        })
        .map_err(|e| e.to_string())
}

fn stop_threads(stop: &AtomicBool, threads: Vec<JoinHandle<()>>) {
    stop.store(true, Ordering::Release);
    for thread in threads {
        let _ = thread.join();
    }
}

/// Everything a shard thread starts with.
struct ShardStart {
    index: usize,
    core: Option<core_affinity::CoreId>,
    sockets: ShardSockets,
    settings: ShardSettings,
    stream: StreamSettings,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_without_an_ip_address_fails_start_up_in_one_line() {
        let udp = socket::bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 16).unwrap();
        let unix = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::DGRAM, None).unwrap();
        let error = bound_sockets(vec![udp, unix], "UDP").err().unwrap();
        assert_eq!(
            error.to_string(),
            "cannot read the local address of a UDP socket of shard 1: not an IP socket"
        );
        let udp = socket::bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 16).unwrap();
        let bound = bound_sockets(vec![udp], "UDP").unwrap();
        assert_eq!(bound[0].local.ip(), std::net::IpAddr::from([127, 0, 0, 1]));
        assert_ne!(bound[0].local.port(), 0);
    }
}
