//! The data plane: per-core shards that move bytes between the kernel and `sip`, build events and
//! `try_send` them to the writer.
//!
//! [`start`] binds every socket on the calling thread (so a bind failure stops start-up with one
//! line), picks the engine, then runs one pinned shard thread per core. Each shard owns one UDP
//! socket and one TCP listener per listen address plus one TLS listener, all bound with
//! SO_REUSEPORT so the kernel spreads flows across shards. Files:
//! - `socket.rs`: socket2 sockets (SO_REUSEPORT, SO_RCVBUF, IP_PKTINFO);
//! - `udp_batch.rs`: `recvmmsg` with destination addresses, `sendmsg` from a chosen source;
//! - `shard.rs`: what a shard does with a message (scan, event, try_send, reply), stream
//!   sessions (framing) and the connection caps;
//! - `reply_limiter.rs`: the per-source reply token bucket (pure);
//! - `uring.rs` (glommio, io_uring) and `portable.rs` (a current-thread tokio runtime per shard):
//!   the two engines, same shape; `probe.rs` decides whether io_uring is usable;
//! - `tls.rs`: rustls configuration, self-signed certificate generation;
//! - `metrics.rs`: per-shard counters, summed when rendered.
//!
//! Never: blocks, parses SIP itself, spawns or queues without a bound, replies to an unsanitized
//! source.
//!
//! Limits: `RECV_BATCH_DATAGRAMS`, `UDP_DATAGRAM_BYTES_MAX`, `SIP_MESSAGE_BYTES_MAX`,
//! `SHARD_BATCH_BEFORE_YIELD`, `REPLY_BYTES_MAX`, `REPLY_LIMITER_SOURCES_MAX`,
//! `DEBUG_LINES_PER_SECOND_MAX`, and the connection caps and timeouts of [`SensorConfig`], in
//! [`crate::config::limits`].

pub mod metrics;
mod portable;
mod probe;
pub(crate) mod reply_limiter;
mod shard;
mod socket;
mod tls;
pub mod udp_batch;
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
use crate::config::{EngineChoice, SensorConfig};
use crate::event::Event;

/// How often an idle shard looks at the stop flag.
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Datagram batches a stopping shard still drains per socket at most.
const STOP_DRAIN_BATCHES_MAX: usize = 4_096;

/// Bytes read from a TCP/TLS connection at once.
const STREAM_READ_BYTES: usize = 16 * 1024;

/// How many times binding a port-0 address is retried when the port the kernel picked for UDP is
/// taken for TCP (or on another shard).
const PORT_ZERO_BIND_ATTEMPTS: usize = 8;

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

/// The sockets one shard serves.
struct ShardSockets {
    udp: Vec<socket2::Socket>,
    tcp: Vec<socket2::Socket>,
    tls: Option<socket2::Socket>,
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
                let (udp_address, tcp_address) = (
                    socket::local_address(&udp[0]).map_err(bind_error("UDP", address))?,
                    socket::local_address(&tcp[0]).map_err(bind_error("TCP", address))?,
                );
                for ((shard, u), t) in shards.iter_mut().zip(udp).zip(tcp) {
                    shard.udp.push(u);
                    shard.tcp.push(t);
                }
                return Ok((udp_address, tcp_address));
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
    for (shard, s) in shards.iter_mut().zip(sockets) {
        shard.tls = Some(s);
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

/// Binds every socket, starts one shard thread per core and returns once all are running.
pub fn start(
    config: &SensorConfig,
    node_id: Uuid,
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
    let mut shards: Vec<ShardSockets> = (0..shard_count)
        .map(|_| ShardSockets {
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: None,
        })
        .collect();
    let (mut udp_addrs, mut tcp_addrs, mut tls_addr) = (Vec::new(), Vec::new(), None);
    if shard_count > 0 {
        for address in &config.listen {
            let (udp, tcp) = bind_listen_address(*address, &mut shards, config.udp_rcvbuf_bytes)?;
            udp_addrs.push(udp);
            tcp_addrs.push(tcp);
        }
        if let (Some(address), Some(_)) = (config.tls_listen, &tls) {
            tls_addr = Some(bind_tls(address, &mut shards)?);
        }
    }
    let settings = ShardSettings {
        node_id,
        responsive: config.responsive,
        events,
        metrics: Arc::clone(&metrics),
        debug,
        server_header: Arc::from(config.server_header.as_bytes()),
        reply_rate_per_second: config.reply_rate_per_second,
        reply_burst: config.reply_burst,
    };
    let stream = StreamSettings {
        idle_timeout: config.tcp_idle_timeout,
        handshake_timeout: config.tls_handshake_timeout,
        connections_per_ip_max: config.tcp_connections_per_ip_max,
        connections_per_shard_max: config.tcp_connections_per_shard_max,
        tls,
    };
    let stop = Arc::new(AtomicBool::new(false));
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
            stop: Arc::clone(&stop),
            ready: ready_sender.clone(),
        };
        let spawned = match engine {
            EngineKind::IoUring => uring::spawn(shard),
            EngineKind::Portable => portable::spawn(shard),
        };
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(reason) => {
                stop_threads(&stop, threads);
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
            stop_threads(&stop, threads);
            return Err(SensorError::Shard { index, reason });
        }
    }
    Ok(Sensor {
        engine,
        fallback_reason,
        udp_addrs,
        tcp_addrs,
        tls_addr,
        metrics,
        stop,
        threads,
    })
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
