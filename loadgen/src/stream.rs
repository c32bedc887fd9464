//! The TCP and TLS generator: `connections` threads, each with one non-blocking connection
//! that pipelines Content-Length-framed messages at its share of the rate, reads and frames
//! replies, then half-closes and waits for the peer's close.
//!
//! Never: buffers more than [`STREAM_PENDING_BYTES_MAX`] unsent bytes per connection, or
//! waits on a connection longer than `reply_wait` after its last message went out.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use socket2::{Domain, Protocol, Socket, Type};

use crate::message::{FactoryConfig, MessageFactory, Transport};
use crate::pacing::Pacer;
use crate::plan::RunPlan;
use crate::progress::{LiveCounters, LiveSnapshot, Publisher, warn};
use crate::reply::{ReplyFramer, reply_call_id};
use crate::report::{LatencySummary, LatencyTracker, Report};

/// Unsent bytes kept ready per connection; generation pauses above it (back-pressure from a
/// slow peer). Worst case memory: this times `--connections`.
pub const STREAM_PENDING_BYTES_MAX: usize = 64 * 1024;

/// How long to wait for a TCP connection to be accepted.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest single `poll` wait; bounds how late the loop notices a deadline.
const POLL_WAIT_MS_MAX: i32 = 10;

/// One connection: plain TCP, or TLS on top of it.
struct Conn {
    socket: TcpStream,
    tls: Option<ClientConnection>,
}

impl Conn {
    /// Hands plaintext to the kernel (TCP) or to rustls (TLS).
    fn write_plain(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => self.socket.write(bytes),
            Some(tls) => tls.writer().write(bytes),
        }
    }

    /// Moves TLS records to the socket until done or the socket is full.
    fn flush_tls(&mut self) -> io::Result<bool> {
        let mut progress = false;
        if let Some(tls) = &mut self.tls {
            while tls.wants_write() {
                match tls.write_tls(&mut self.socket) {
                    Ok(_) => progress = true,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(progress)
    }

    fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// Reads whatever plaintext is available into `framer`; returns (bytes, end of stream).
    fn read_available(
        &mut self,
        scratch: &mut [u8],
        framer: &mut ReplyFramer,
    ) -> io::Result<(usize, bool)> {
        let mut total = 0;
        loop {
            let result = match &mut self.tls {
                None => self.socket.read(scratch),
                Some(tls) => match tls.read_tls(&mut self.socket) {
                    Ok(0) => Ok(0),
                    Ok(_) => {
                        tls.process_new_packets().map_err(io::Error::other)?;
                        match drain_tls_plaintext(tls, scratch, framer) {
                            Ok(count) => {
                                total += count;
                                continue;
                            }
                            Err(error) => Err(error),
                        }
                    }
                    Err(error) => Err(error),
                },
            };
            match result {
                Ok(0) => return Ok((total, true)),
                Ok(count) => {
                    framer.handle_bytes(&scratch[..count]);
                    total += count;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((total, false));
                }
                Err(error) => return Err(error),
            }
        }
    }
}

fn drain_tls_plaintext(
    tls: &mut ClientConnection,
    scratch: &mut [u8],
    framer: &mut ReplyFramer,
) -> io::Result<usize> {
    let mut total = 0;
    loop {
        match tls.reader().read(scratch) {
            Ok(0) => return Ok(total),
            Ok(count) => {
                framer.handle_bytes(&scratch[..count]);
                total += count;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(total),
            Err(error) => return Err(error),
        }
    }
}

fn connect(
    plan: &RunPlan,
    source: Option<IpAddr>,
    tls: Option<&Arc<ClientConfig>>,
) -> anyhow::Result<Conn> {
    let target = plan.target;
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if let Some(source) = source {
        let bind = SocketAddr::new(source, 0);
        socket
            .bind(&bind.into())
            .with_context(|| format!("binding TCP source {bind}"))?;
    }
    socket
        .connect_timeout(&target.into(), CONNECT_TIMEOUT)
        .with_context(|| format!("connecting to {target}"))?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    let tls = match tls {
        None => None,
        Some(config) => {
            let name = ServerName::IpAddress(target.ip().into());
            Some(ClientConnection::new(config.clone(), name).context("starting TLS")?)
        }
    };
    Ok(Conn {
        socket: socket.into(),
        tls,
    })
}

/// What one connection did.
struct StreamTotals {
    sent: u64,
    malformed: u64,
    errors: u64,
    bytes: u64,
    replies: u64,
    histogram: Histogram<u64>,
    /// When the last message was handed over (the end of the sending phase).
    finished: Option<Instant>,
}

/// The per-connection send state: generated bytes not yet handed over, with message ends.
struct Outbox {
    buffer: Vec<u8>,
    position: usize,
    ends: VecDeque<usize>,
}

impl Outbox {
    fn pending_bytes(&self) -> usize {
        self.buffer.len() - self.position
    }

    /// Marks `count` more bytes as handed over; returns how many messages completed.
    fn advance(&mut self, count: usize) -> u64 {
        self.position += count;
        let mut done = 0;
        while self.ends.front().is_some_and(|end| *end <= self.position) {
            self.ends.pop_front();
            done += 1;
        }
        if self.position == self.buffer.len() {
            self.buffer.clear();
            self.position = 0;
        } else if self.position >= STREAM_PENDING_BYTES_MAX {
            // A peer that never quite catches up: drop the sent prefix so the buffer stays
            // within about twice the pending cap.
            self.buffer.drain(..self.position);
            for end in &mut self.ends {
                *end -= self.position;
            }
            self.position = 0;
        }
        done
    }
}

struct StreamJob {
    index: usize,
    quota: Option<u64>,
    rate_per_s: Option<f64>,
    source: Option<IpAddr>,
    start: Instant,
}

fn run_connection(
    plan: &RunPlan,
    job: &StreamJob,
    tls: Option<&Arc<ClientConfig>>,
    live: &LiveCounters,
) -> StreamTotals {
    let tracker = LatencyTracker::new(job.start);
    let mut publisher = Publisher::new(live, job.start);
    let mut conn = match connect(plan, job.source, tls) {
        Ok(conn) => conn,
        Err(error) => {
            warn(format_args!(
                "sentrypeer-loadgen: connection {}: {error:#}",
                job.index
            ));
            let mut totals = StreamTotals::new(tracker.histogram);
            totals.errors = job.quota.unwrap_or(1);
            publisher.flush(totals.live());
            return totals;
        }
    };
    let mut state = ConnState::new(plan, job, tls.is_some(), tracker, &conn);
    if let Err(error) = state.drive(plan, &mut conn, &mut publisher) {
        warn(format_args!(
            "sentrypeer-loadgen: connection {}: {error}",
            job.index
        ));
        let lost = state.outbox.ends.len() as u64;
        let unmade = job.quota.map_or(0, |quota| quota - state.generated);
        state.totals.errors += lost + unmade;
    }
    publisher.flush(state.totals.live());
    let mut totals = state.totals;
    totals.histogram = state.tracker.histogram;
    totals
}

impl StreamTotals {
    fn new(histogram: Histogram<u64>) -> Self {
        Self {
            sent: 0,
            malformed: 0,
            errors: 0,
            bytes: 0,
            replies: 0,
            histogram,
            finished: None,
        }
    }

    fn live(&self) -> LiveSnapshot {
        LiveSnapshot {
            sent: self.sent,
            errors: self.errors,
            replies: self.replies,
        }
    }
}

struct ConnState {
    factory: MessageFactory,
    local: SocketAddr,
    pacer: Pacer,
    batch: u64,
    quota: u64,
    deadline: Option<Instant>,
    generated: u64,
    requests: u64,
    outbox: Outbox,
    framer: ReplyFramer,
    tracker: LatencyTracker,
    totals: StreamTotals,
    stream_id: u16,
}

impl ConnState {
    fn new(
        plan: &RunPlan,
        job: &StreamJob,
        tls: bool,
        tracker: LatencyTracker,
        conn: &Conn,
    ) -> Self {
        let stream_id = (job.index & 0xFFFF) as u16;
        let factory = MessageFactory::new(FactoryConfig {
            transport: if tls { Transport::Tls } else { Transport::Tcp },
            target: plan.target,
            mix: plan.mix,
            malformed_ppm: plan.malformed_ppm,
            seed: plan.seed,
            stream_id,
            number_pool: plan.number_pool,
        });
        let pacer = Pacer::new(job.start, job.rate_per_s);
        let histogram = tracker.histogram.clone();
        Self {
            factory,
            local: conn.socket.local_addr().unwrap_or(plan.target),
            batch: pacer.batch_size(plan.batch) as u64,
            pacer,
            quota: job.quota.unwrap_or(u64::MAX),
            deadline: plan.duration.map(|duration| job.start + duration),
            generated: 0,
            requests: 0,
            outbox: Outbox {
                buffer: Vec::with_capacity(2 * STREAM_PENDING_BYTES_MAX),
                position: 0,
                ends: VecDeque::new(),
            },
            framer: ReplyFramer::default(),
            tracker,
            totals: StreamTotals::new(histogram),
            stream_id,
        }
    }

    /// Appends the messages that are due, up to the pending-bytes cap.
    fn generate(&mut self, now: Instant) {
        let due = self
            .pacer
            .due_count(self.generated, now)
            .min(self.batch)
            .min(self.quota - self.generated);
        for _ in 0..due {
            if self.outbox.pending_bytes() >= STREAM_PENDING_BYTES_MAX {
                break;
            }
            let written = self.factory.write_next(self.local, &mut self.outbox.buffer);
            self.outbox.ends.push_back(self.outbox.buffer.len());
            self.generated += 1;
            if written.kind.is_request() {
                self.requests += 1;
                self.tracker.handle_sent(written.seq, now);
            } else {
                self.totals.malformed += 1;
            }
        }
    }

    fn generating(&self, now: Instant) -> bool {
        self.generated < self.quota && self.deadline.is_none_or(|deadline| now < deadline)
    }

    /// Hands pending bytes over until blocked; true if anything moved.
    fn send_pending(&mut self, conn: &mut Conn) -> io::Result<bool> {
        let mut progress = false;
        while self.outbox.pending_bytes() > 0 {
            let pending = &self.outbox.buffer[self.outbox.position..];
            match conn.write_plain(pending) {
                Ok(0) => break,
                Ok(count) => {
                    self.totals.bytes += count as u64;
                    self.totals.sent += self.outbox.advance(count);
                    progress = true;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        Ok(conn.flush_tls()? || progress)
    }

    fn take_replies(&mut self) {
        let now = Instant::now();
        while let Some(id) = self.framer.poll_message(reply_call_id) {
            self.totals.replies += 1;
            if let Some((stream_id, seq)) = id.filter(|(stream_id, _)| *stream_id == self.stream_id)
            {
                debug_assert_eq!(stream_id, self.stream_id);
                self.tracker.handle_reply(seq, now);
            }
        }
    }

    fn drive(
        &mut self,
        plan: &RunPlan,
        conn: &mut Conn,
        publisher: &mut Publisher<'_>,
    ) -> io::Result<()> {
        let mut scratch = vec![0_u8; 16 * 1024];
        let mut closed_at: Option<Instant> = None;
        let mut last_write = Instant::now();
        loop {
            let now = Instant::now();
            publisher.publish(now, self.totals.live());
            let generating = closed_at.is_none() && self.generating(now);
            if generating {
                self.generate(now);
            }
            let mut progress = self.send_pending(conn)?;
            let blocked = self.outbox.pending_bytes() > 0 || conn.wants_write();
            if progress || !blocked {
                last_write = now;
            } else if now.duration_since(last_write) >= plan.reply_wait {
                // A peer that stops reading must not hold us past `reply_wait`.
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "peer stopped reading",
                ));
            }
            let (read_bytes, eof) = conn.read_available(&mut scratch, &mut self.framer)?;
            progress |= read_bytes > 0;
            self.take_replies();
            if closed_at.is_none()
                && !generating
                && self.outbox.pending_bytes() == 0
                && !conn.wants_write()
            {
                if let Some(tls) = &mut conn.tls {
                    tls.send_close_notify();
                    conn.flush_tls()?;
                }
                let _ = conn.socket.shutdown(Shutdown::Write);
                closed_at = Some(Instant::now());
                self.totals.finished = closed_at;
            }
            if eof {
                if closed_at.is_none() {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "peer closed early",
                    ));
                }
                return Ok(());
            }
            if let Some(closed_at) = closed_at {
                let answered = plan.responsive && self.totals.replies >= self.requests;
                if answered || closed_at.elapsed() >= plan.reply_wait {
                    return Ok(());
                }
            }
            if !progress {
                self.wait(conn, closed_at.is_none());
            }
        }
    }

    /// Sleeps in `poll` until the socket is ready or the next message is due.
    fn wait(&self, conn: &Conn, generating: bool) {
        let want_write = self.outbox.pending_bytes() > 0 || conn.wants_write();
        let mut events = libc::POLLIN;
        if want_write {
            events |= libc::POLLOUT;
        }
        let timeout_ms = if generating && !want_write && self.generated < self.quota {
            let due = self.pacer.due_at(self.generated);
            let wait = due.saturating_duration_since(Instant::now());
            i32::try_from(wait.as_millis())
                .unwrap_or(POLL_WAIT_MS_MAX)
                .min(POLL_WAIT_MS_MAX)
        } else {
            POLL_WAIT_MS_MAX
        };
        let mut poll_fd = libc::pollfd {
            fd: conn.socket.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd on the stack for the duration of the call.
        let _ = unsafe { libc::poll(&mut poll_fd, 1, timeout_ms) };
    }
}

/// Runs the TCP (`tls` None) or TLS generator to completion, publishing its counters to `live`
/// as it goes.
pub fn run_stream(
    plan: &RunPlan,
    tls: Option<Arc<ClientConfig>>,
    live: &LiveCounters,
) -> anyhow::Result<Report> {
    let connections = plan.connections;
    let sources = plan.bind_addresses(connections);
    let start = Instant::now();
    let rate_per_s = plan.rate_per_s.map(|rate| rate / connections as f64);
    let jobs: Vec<StreamJob> = (0..connections)
        .map(|index| StreamJob {
            index,
            quota: plan.count.map(|count| {
                let share = count / connections as u64;
                share + u64::from((index as u64) < count % connections as u64)
            }),
            rate_per_s,
            source: sources[index],
            start,
        })
        .collect();
    let results: Vec<StreamTotals> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|job| {
                let tls = tls.as_ref();
                scope.spawn(move || run_connection(plan, job, tls, live))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join())
            .collect::<Result<_, _>>()
    })
    .map_err(|_| anyhow::anyhow!("a connection thread panicked"))?;
    let finished = results.iter().filter_map(|result| result.finished).max();
    let duration_s = finished
        .unwrap_or_else(Instant::now)
        .saturating_duration_since(start)
        .as_secs_f64();
    let mut histogram = LatencyTracker::new(start).histogram;
    let mut report = Report {
        mode: if tls.is_some() { "tls" } else { "tcp" },
        target: plan.target.to_string(),
        sent: 0,
        malformed: 0,
        errors: 0,
        replies: 0,
        latency_us: LatencySummary::default(),
        rate_requested: plan.rate_per_s,
        rate_achieved: 0.0,
        duration_s,
        bytes: 0,
        sockets: connections as u64,
        sources: plan.sources.len().max(1) as u64,
    };
    for result in &results {
        report.sent += result.sent;
        report.malformed += result.malformed;
        report.errors += result.errors;
        report.replies += result.replies;
        report.bytes += result.bytes;
        let _ = histogram.add(&result.histogram);
    }
    report.latency_us = LatencySummary::from_histogram(&histogram);
    report.rate_achieved = if duration_s > 0.0 {
        report.sent as f64 / duration_s
    } else {
        0.0
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_counts_messages_and_compacts() {
        let mut outbox = Outbox {
            buffer: Vec::new(),
            position: 0,
            ends: VecDeque::new(),
        };
        for _ in 0..3 {
            outbox
                .buffer
                .extend_from_slice(&[b'x'; STREAM_PENDING_BYTES_MAX / 2]);
            outbox.ends.push_back(outbox.buffer.len());
        }
        assert_eq!(outbox.advance(10), 0);
        assert_eq!(outbox.advance(STREAM_PENDING_BYTES_MAX / 2 - 10), 1);
        assert_eq!(outbox.buffer.len(), 3 * STREAM_PENDING_BYTES_MAX / 2);
        assert_eq!(outbox.advance(STREAM_PENDING_BYTES_MAX / 2 + 1), 1);
        // Past the cap the sent prefix is dropped and the ends shift with it.
        assert_eq!(outbox.position, 0);
        assert_eq!(outbox.pending_bytes(), STREAM_PENDING_BYTES_MAX / 2 - 1);
        assert_eq!(outbox.ends, [STREAM_PENDING_BYTES_MAX / 2 - 1]);
        assert_eq!(outbox.advance(STREAM_PENDING_BYTES_MAX / 2 - 1), 1);
        assert_eq!(outbox.pending_bytes(), 0);
        assert!(outbox.buffer.is_empty());
    }
}
