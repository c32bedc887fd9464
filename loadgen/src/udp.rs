//! The UDP generator: one thread, `sendmmsg` batches on connected sockets bound across the
//! source range (round-robin per batch), or on one unconnected socket with an `IP_PKTINFO`
//! source per datagram (`--source-per-message`); paced per batch; replies read with one
//! `poll` plus `recvmmsg` in responsive mode.
//!
//! Never: retries a failed datagram (counted in `errors`), or waits for replies longer than
//! `reply_wait` after the last one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::message::{FactoryConfig, MessageFactory, Transport};
use crate::mmsg::{RecvBatch, SendBatch, SendOutcome};
use crate::pacing::Pacer;
use crate::plan::RunPlan;
use crate::progress::{LiveCounters, LiveSnapshot, Publisher, warn};
use crate::reply::reply_call_id;
use crate::report::{LatencySummary, LatencyTracker, Report};
use crate::target::SourceCycle;

/// Socket buffers asked for on sending sockets (bytes); the kernel may cap them.
const UDP_SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Datagrams read per `recvmmsg` when collecting replies, and the bytes kept of each.
const REPLY_BATCH_DATAGRAMS: usize = 64;
const REPLY_DATAGRAM_BYTES: usize = 2048;

struct Sender {
    socket: UdpSocket,
    local: SocketAddr,
}

fn open_socket(
    target: SocketAddr,
    source: Option<IpAddr>,
    responsive: bool,
    connect: bool,
) -> anyhow::Result<Sender> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    let _ = socket.set_send_buffer_size(UDP_SOCKET_BUFFER_BYTES);
    if responsive {
        let _ = socket.set_recv_buffer_size(UDP_SOCKET_BUFFER_BYTES);
    }
    let unspecified = match target {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let bind = SocketAddr::new(source.unwrap_or(unspecified), 0);
    socket
        .bind(&bind.into())
        .with_context(|| format!("binding UDP source {bind}"))?;
    if connect {
        socket
            .connect(&target.into())
            .with_context(|| format!("connecting UDP socket to {target}"))?;
    }
    socket.set_nonblocking(false)?;
    let socket: UdpSocket = socket.into();
    let local = socket.local_addr()?;
    Ok(Sender { socket, local })
}

/// Counters of a UDP run.
#[derive(Debug, Default)]
struct Totals {
    generated: u64,
    sent: u64,
    malformed: u64,
    errors: u64,
    bytes: u64,
    replies: u64,
    first_error_logged: bool,
}

impl Totals {
    fn live(&self) -> LiveSnapshot {
        LiveSnapshot {
            sent: self.sent,
            errors: self.errors,
            replies: self.replies,
        }
    }
}

/// Reads every reply waiting on the sockets of `poll_fds` (one per sender) without blocking;
/// returns how many arrived.
fn collect_replies(
    poll_fds: &mut [libc::pollfd],
    batch: &mut RecvBatch,
    tracker: &mut LatencyTracker,
) -> u64 {
    let fd_count = libc::nfds_t::try_from(poll_fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `poll_fds` is a live array of `fd_count` pollfd; timeout 0 never blocks.
    if unsafe { libc::poll(poll_fds.as_mut_ptr(), fd_count, 0) } <= 0 {
        return 0;
    }
    let mut total = 0;
    for poll_fd in poll_fds
        .iter()
        .filter(|poll_fd| poll_fd.revents & libc::POLLIN != 0)
    {
        while let Ok(count) = batch.recv(poll_fd.fd, libc::MSG_DONTWAIT) {
            if count == 0 {
                break;
            }
            let now = Instant::now();
            for index in 0..count {
                if let Some((0, seq)) = reply_call_id(batch.datagram(index)) {
                    tracker.handle_reply(seq, now);
                }
            }
            total += count as u64;
        }
    }
    total
}

/// The datagrams of one batch, laid end to end, with their bounds and (per-message sources)
/// their source addresses.
#[derive(Default)]
struct Outgoing {
    buffer: Vec<u8>,
    bounds: Vec<(usize, usize)>,
    origins: Vec<Ipv4Addr>,
}

impl Outgoing {
    /// Writes `batch` messages from `local` (or from the next addresses of `cycle`, keeping
    /// `local`'s port); returns how many were not well-formed requests.
    fn fill(
        &mut self,
        factory: &mut MessageFactory,
        batch: u64,
        local: SocketAddr,
        mut cycle: Option<&mut SourceCycle>,
        tracker: &mut LatencyTracker,
        now: Instant,
    ) -> u64 {
        self.buffer.clear();
        self.bounds.clear();
        self.origins.clear();
        let mut malformed = 0;
        for _ in 0..batch {
            let from = match cycle.as_deref_mut() {
                Some(cycle) => {
                    let ip = cycle.next_ip();
                    self.origins.push(ip);
                    SocketAddr::new(IpAddr::V4(ip), local.port())
                }
                None => local,
            };
            let start_index = self.buffer.len();
            let written = factory.write_next(from, &mut self.buffer);
            self.bounds.push((start_index, self.buffer.len()));
            if written.kind.is_request() {
                tracker.handle_sent(written.seq, now);
            } else {
                malformed += 1;
            }
        }
        malformed
    }

    fn send(&self, send: &mut SendBatch, sender: &Sender, target: SocketAddr) -> SendOutcome {
        let fd = sender.socket.as_raw_fd();
        match target {
            SocketAddr::V4(target) if !self.origins.is_empty() => {
                send.send_from(fd, &self.buffer, &self.bounds, target, &self.origins)
            }
            _ => send.send(fd, &self.buffer, &self.bounds),
        }
    }
}

/// Opens the sending sockets: one per source address, or one unconnected socket when every
/// datagram names its own source.
fn open_senders(plan: &RunPlan) -> anyhow::Result<Vec<Sender>> {
    if plan.source_cycle.is_some() {
        return Ok(vec![open_socket(
            plan.target,
            None,
            plan.responsive,
            false,
        )?]);
    }
    plan.bind_addresses(plan.sources.len().max(1))
        .into_iter()
        .map(|source| open_socket(plan.target, source, plan.responsive, true))
        .collect()
}

fn udp_factory(plan: &RunPlan) -> MessageFactory {
    MessageFactory::new(FactoryConfig {
        transport: Transport::Udp,
        target: plan.target,
        mix: plan.mix,
        malformed_ppm: plan.malformed_ppm,
        seed: plan.seed,
        stream_id: 0,
        number_pool: plan.number_pool,
    })
}

/// One `poll` entry per sender, waiting for replies.
fn reply_poll_fds(senders: &[Sender]) -> Vec<libc::pollfd> {
    senders
        .iter()
        .map(|sender| libc::pollfd {
            fd: sender.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect()
}

/// Runs the UDP generator to completion, publishing its counters to `live` as it goes.
pub fn run_udp(plan: &RunPlan, live: &LiveCounters) -> anyhow::Result<Report> {
    let senders = open_senders(plan)?;
    let mut cycle = plan.source_cycle;
    let mut factory = udp_factory(plan);
    let start = Instant::now();
    let pacer = Pacer::new(start, plan.rate_per_s);
    let batch_max = pacer.batch_size(plan.batch) as u64;
    let deadline = plan.duration.map(|duration| start + duration);
    let mut tracker = LatencyTracker::new(start);
    let mut replies = RecvBatch::new(REPLY_BATCH_DATAGRAMS, REPLY_DATAGRAM_BYTES);
    let mut send = SendBatch::default();
    let mut outgoing = Outgoing::default();
    let mut poll_fds = reply_poll_fds(&senders);
    let mut totals = Totals::default();
    let mut publisher = Publisher::new(live, start);
    for turn in 0_usize.. {
        let remaining = plan
            .count
            .map_or(u64::MAX, |count| count - totals.generated);
        let batch = batch_max.min(remaining);
        if batch == 0 {
            break;
        }
        pacer.wait_for(totals.generated + batch - 1);
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            break;
        }
        let sender = &senders[turn % senders.len()];
        let local = sender.local;
        totals.malformed += outgoing.fill(
            &mut factory,
            batch,
            local,
            cycle.as_mut(),
            &mut tracker,
            now,
        );
        let outcome = outgoing.send(&mut send, sender, plan.target);
        totals.generated += batch;
        totals.sent += outcome.sent;
        totals.bytes += outcome.sent_bytes;
        totals.errors += outcome.errors;
        if let Some(error) = outcome.last_error.filter(|_| !totals.first_error_logged) {
            warn(format_args!(
                "sentrypeer-loadgen: send error (further ones only counted): {error}"
            ));
            totals.first_error_logged = true;
        }
        if plan.responsive {
            // One poll over all sockets, then recvmmsg only where replies wait.
            totals.replies += collect_replies(&mut poll_fds, &mut replies, &mut tracker);
        }
        publisher.publish(now, totals.live());
    }
    let duration = start.elapsed();
    publisher.flush(totals.live());
    if plan.responsive {
        totals.replies += drain_replies(
            plan,
            &mut poll_fds,
            &mut replies,
            &mut tracker,
            &totals,
            &mut publisher,
        );
        publisher.flush(totals.live());
    }
    Ok(finish(plan, &totals, &tracker, duration, senders.len()))
}

/// Waits for outstanding replies until all requests are answered or `reply_wait` passes idle;
/// returns how many arrived.
fn drain_replies(
    plan: &RunPlan,
    poll_fds: &mut [libc::pollfd],
    batch: &mut RecvBatch,
    tracker: &mut LatencyTracker,
    totals: &Totals,
    publisher: &mut Publisher<'_>,
) -> u64 {
    let expected = totals.sent.saturating_sub(totals.malformed);
    let mut replies = totals.replies;
    let mut last_reply = Instant::now();
    while replies < expected && last_reply.elapsed() < plan.reply_wait {
        let got = collect_replies(poll_fds, batch, tracker);
        if got == 0 {
            std::thread::sleep(Duration::from_millis(1));
        } else {
            replies += got;
            last_reply = Instant::now();
            let live = LiveSnapshot {
                replies,
                ..totals.live()
            };
            publisher.publish(last_reply, live);
        }
    }
    replies - totals.replies
}

fn finish(
    plan: &RunPlan,
    totals: &Totals,
    tracker: &LatencyTracker,
    duration: Duration,
    sockets: usize,
) -> Report {
    let duration_s = duration.as_secs_f64();
    Report {
        mode: "udp",
        target: plan.target.to_string(),
        sent: totals.sent,
        malformed: totals.malformed,
        errors: totals.errors,
        replies: totals.replies,
        latency_us: LatencySummary::from_histogram(&tracker.histogram),
        rate_requested: plan.rate_per_s,
        rate_achieved: if duration_s > 0.0 {
            totals.sent as f64 / duration_s
        } else {
            0.0
        },
        duration_s,
        bytes: totals.bytes,
        sockets: sockets as u64,
        sources: plan
            .source_cycle
            .map_or(plan.sources.len().max(1) as u64, |cycle| {
                u64::from(cycle.count())
            }),
    }
}
