//! The bare sink: one UDP socket with a large receive buffer, `recvmmsg` in batches, and only
//! counting. It is the loopback limit the sensor is compared with.
//!
//! Never: parses, stores or answers what it receives; runs past `--duration`, past the idle
//! period after the last datagram, past `--count`, or after SIGINT/SIGTERM.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::mmsg::RecvBatch;

/// Datagrams per `recvmmsg` call (quinn-udp uses 32; more amortises better on a flood).
pub const SINK_BATCH_DATAGRAMS: usize = 64;

/// Bytes kept of each datagram; longer ones are still counted at full length (`MSG_TRUNC`).
const SINK_DATAGRAM_BYTES: usize = 2048;

/// Default `SO_RCVBUF`: 8 MiB, as in the reference measurements of docs/benchmarks.md.
pub const SINK_RCVBUF_BYTES_DEFAULT: usize = 8 << 20;

/// How often a blocked receive wakes up to check the stop conditions.
const SINK_WAKE_INTERVAL: Duration = Duration::from_millis(50);

/// How the sink runs.
#[derive(Debug, Clone)]
pub struct SinkPlan {
    pub listen: SocketAddr,
    pub duration: Option<Duration>,
    /// Stop after this long without a datagram, once one has arrived (zero: never).
    pub idle: Duration,
    pub count: Option<u64>,
    pub rcvbuf_bytes: usize,
}

/// What the sink saw.
#[derive(Debug, Clone, Serialize)]
pub struct SinkReport {
    pub listen: String,
    pub received: u64,
    pub bytes: u64,
    /// From the first to the last datagram.
    pub duration_s: f64,
    /// `received / duration_s`.
    pub rate: f64,
    /// From start to stop.
    pub wall_s: f64,
    /// User plus system CPU of the whole process while receiving.
    pub cpu_s: f64,
    pub cpu_us_per_datagram: f64,
    /// `SO_RCVBUF` as the kernel reports it (twice what was granted).
    pub rcvbuf_bytes: usize,
    pub rss_peak_kib: u64,
    /// `duration`, `idle`, `count` or `signal`.
    pub stopped_by: &'static str,
}

/// Binds the sink socket with the receive buffer asked for (forced past `rmem_max` when root).
pub fn bind_sink(plan: &SinkPlan) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(plan.listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    let size = libc::c_int::try_from(plan.rcvbuf_bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads one c_int from a live stack variable of the right size.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced != 0 {
        socket.set_recv_buffer_size(plan.rcvbuf_bytes)?;
    }
    socket.bind(&plan.listen.into())?;
    socket.set_read_timeout(Some(SINK_WAKE_INTERVAL))?;
    Ok(socket.into())
}

/// CPU seconds (user + system) of this process.
fn process_cpu_s() -> f64 {
    // SAFETY: rusage is plain data; getrusage fills it and we read it only on success.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a live rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Peak RSS in KiB (`VmHWM`); `ru_maxrss` would include the parent's RSS from before `exec`.
fn process_rss_peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Receives until a stop condition holds; `stop` is set by the signal handlers.
pub fn run_sink(socket: &UdpSocket, plan: &SinkPlan, stop: &AtomicBool) -> io::Result<SinkReport> {
    let mut batch = RecvBatch::new(SINK_BATCH_DATAGRAMS, SINK_DATAGRAM_BYTES);
    let fd = socket.as_raw_fd();
    let start = Instant::now();
    let cpu_start = process_cpu_s();
    let deadline = plan.duration.map(|duration| start + duration);
    let (mut received, mut bytes) = (0_u64, 0_u64);
    let (mut first, mut last) = (None, start);
    let stopped_by = loop {
        if stop.load(Ordering::Relaxed) {
            break "signal";
        }
        match batch.recv(fd, libc::MSG_WAITFORONE | libc::MSG_TRUNC) {
            Ok(count) => {
                last = Instant::now();
                first.get_or_insert(last);
                received += count as u64;
                bytes += (0..count)
                    .map(|index| batch.wire_len(index) as u64)
                    .sum::<u64>();
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(error) => return Err(error),
        }
        if plan.count.is_some_and(|count| received >= count) {
            break "count";
        }
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            break "duration";
        }
        if first.is_some() && !plan.idle.is_zero() && now.duration_since(last) >= plan.idle {
            break "idle";
        }
    };
    let cpu_s = process_cpu_s() - cpu_start;
    let rss_peak_kib = process_rss_peak_kib();
    let duration_s = first.map_or(0.0, |first| last.duration_since(first).as_secs_f64());
    Ok(SinkReport {
        listen: socket.local_addr()?.to_string(),
        received,
        bytes,
        duration_s,
        rate: if duration_s > 0.0 {
            received as f64 / duration_s
        } else {
            0.0
        },
        wall_s: start.elapsed().as_secs_f64(),
        cpu_s,
        cpu_us_per_datagram: if received > 0 {
            cpu_s * 1e6 / received as f64
        } else {
            0.0
        },
        rcvbuf_bytes: socket2::SockRef::from(socket).recv_buffer_size()?,
        rss_peak_kib,
        stopped_by,
    })
}

impl std::fmt::Display for SinkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sentrypeer-loadgen sink on {} (SO_RCVBUF {} bytes)",
            self.listen, self.rcvbuf_bytes
        )?;
        writeln!(
            f,
            "  received {} datagrams, {} bytes; {:.0}/s over {:.3} s (first to last)",
            self.received, self.bytes, self.rate, self.duration_s
        )?;
        write!(
            f,
            "  cpu {:.3} s ({:.2} us per datagram), peak RSS {} KiB, stopped by {}",
            self.cpu_s, self.cpu_us_per_datagram, self.rss_peak_kib, self.stopped_by
        )
    }
}
