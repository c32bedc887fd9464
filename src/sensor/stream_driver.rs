//! A TCP/TLS connection as a state machine (sans-I/O, quinn-proto style), the same for both
//! engines: framing of the received bytes, keep-alive accounting, the replies to write and the
//! timing (TLS handshake deadline, idle deadline, write deadline, when to yield). The shell reads,
//! writes and sleeps until [`StreamSession::poll_timeout`]; time is passed in.
//! - The idle deadline moves only when a whole message arrives, so a slow-loris sender dribbling
//!   bytes is cut at the idle timeout.
//! - A reply must be written within the write timeout, or the connection closes.
//! - After `STREAM_READS_BEFORE_YIELD` reads the task yields once, so a connection that always has
//!   bytes ready cannot starve the shard's other tasks.
//!
//! Also here: [`ConnectionTable`], the per-IP and per-shard connection caps (a permit is taken
//! before a connection's task is spawned).
//!
//! Never: reads a clock, touches a socket, keeps a connection past a deadline.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::metrics::{SensorMetrics, ShardMetrics};
use super::shard::ShardCore;
use crate::config::limits::{SIP_MESSAGE_BYTES_MAX, STREAM_READS_BEFORE_YIELD};
use crate::event::{Transport, timestamp};
use crate::sip::Framer;

/// Why a stream connection must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamClose {
    /// A message over `SIP_MESSAGE_BYTES_MAX`.
    Oversize,
    /// No whole message within the idle timeout.
    IdleTimeout,
    /// A reply not written within the write timeout.
    WriteTimeout,
    /// The TLS handshake did not finish in time.
    HandshakeTimeout,
}

impl StreamClose {
    /// Counts the close in its counter.
    pub(crate) fn count(self, metrics: &ShardMetrics) {
        match self {
            Self::Oversize => metrics.messages_oversize.inc(),
            Self::IdleTimeout => metrics.connections_idle_timeouts.inc(),
            Self::WriteTimeout => metrics.connections_write_timeouts.inc(),
            Self::HandshakeTimeout => metrics.tls_handshake_failures.inc(),
        }
    }
}

/// A connection's timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamTimeouts {
    pub(crate) idle: Duration,
    pub(crate) write: Duration,
    pub(crate) handshake: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake { deadline: Instant },
    Reading,
    Writing { deadline: Instant },
}

/// One TCP/TLS connection's framing, pending replies and deadlines.
pub(crate) struct StreamSession {
    framer: Framer,
    transport: Transport,
    source: SocketAddr,
    destination: SocketAddr,
    replies: Vec<u8>,
    keepalives_count: u64,
    timeouts: StreamTimeouts,
    phase: Phase,
    idle_deadline: Instant,
    reads_since_yield: usize,
}

impl StreamSession {
    /// A session accepted at `now`; a TLS one starts in its handshake.
    pub(crate) fn new(
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        timeouts: StreamTimeouts,
        now: Instant,
    ) -> Self {
        let phase = match transport {
            Transport::Tls => Phase::Handshake {
                deadline: now + timeouts.handshake,
            },
            Transport::Tcp | Transport::Udp => Phase::Reading,
        };
        Self {
            framer: Framer::new(SIP_MESSAGE_BYTES_MAX),
            transport,
            source,
            destination,
            replies: Vec::new(),
            keepalives_count: 0,
            timeouts,
            phase,
            idle_deadline: now + timeouts.idle,
            reads_since_yield: 0,
        }
    }

    /// The TLS handshake finished at `now`: the idle timeout starts.
    pub(crate) fn handle_handshake_done(&mut self, now: Instant) {
        self.phase = Phase::Reading;
        self.idle_deadline = now + self.timeouts.idle;
    }

    /// Feeds bytes read at `now` and handles every complete message. Returns how many messages
    /// were complete; replies due wait in [`poll_transmit`](Self::poll_transmit).
    pub(crate) fn handle_bytes(
        &mut self,
        core: &mut ShardCore,
        bytes: &[u8],
        now: Instant,
    ) -> Result<usize, StreamClose> {
        self.reads_since_yield += 1;
        let outcome = self.frame(core, bytes);
        if matches!(outcome, Ok(messages) if messages > 0) {
            self.idle_deadline = now + self.timeouts.idle;
        }
        if let Err(close) = outcome {
            close.count(core.metrics());
        }
        if !self.replies.is_empty() {
            self.phase = Phase::Writing {
                deadline: now + self.timeouts.write,
            };
        }
        outcome
    }

    fn frame(&mut self, core: &mut ShardCore, bytes: &[u8]) -> Result<usize, StreamClose> {
        self.framer
            .handle_bytes(bytes)
            .map_err(|_| StreamClose::Oversize)?;
        let mut messages_count = 0;
        let timestamp_ns = timestamp::now_ns();
        loop {
            self.count_keepalives(core.metrics());
            let message = match self.framer.poll_message() {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(messages_count),
                Err(_) => return Err(StreamClose::Oversize),
            };
            messages_count += 1;
            let (transport, source, destination) = (self.transport, self.source, self.destination);
            if let Some(reply) =
                core.handle_message(message, transport, source, destination, timestamp_ns)
            {
                self.replies.extend_from_slice(reply);
                core.metrics().replies_sent.inc();
            }
        }
    }

    /// Adds the keep-alives the framer skipped since the last look to their counter.
    fn count_keepalives(&mut self, metrics: &ShardMetrics) {
        let keepalives_count = self.framer.keepalives();
        metrics
            .non_requests_keepalive
            .add(keepalives_count.saturating_sub(self.keepalives_count));
        self.keepalives_count = keepalives_count;
    }

    /// Replies waiting to be written.
    pub(crate) fn poll_transmit(&self) -> Option<&[u8]> {
        (!self.replies.is_empty()).then_some(self.replies.as_slice())
    }

    /// The replies were written in full.
    pub(crate) fn handle_written(&mut self) {
        self.replies.clear();
        self.phase = Phase::Reading;
    }

    /// The deadline of the current phase: handshake, write, or idle.
    pub(crate) fn poll_timeout(&self) -> Instant {
        match self.phase {
            Phase::Handshake { deadline } | Phase::Writing { deadline } => deadline,
            Phase::Reading => self.idle_deadline,
        }
    }

    /// The deadline was waited for; the close due at `now`, if it has come.
    pub(crate) fn handle_timeout(&self, now: Instant) -> Option<StreamClose> {
        if now < self.poll_timeout() {
            return None;
        }
        Some(match self.phase {
            Phase::Handshake { .. } => StreamClose::HandshakeTimeout,
            Phase::Reading => StreamClose::IdleTimeout,
            Phase::Writing { .. } => StreamClose::WriteTimeout,
        })
    }

    /// True (once per `STREAM_READS_BEFORE_YIELD` reads) when the task should yield now.
    pub(crate) fn poll_yield(&mut self) -> bool {
        if self.reads_since_yield < STREAM_READS_BEFORE_YIELD {
            return false;
        }
        self.reads_since_yield = 0;
        true
    }
}

/// Open connections of one shard, per source IP and in total. A permit is taken before the
/// connection's task is spawned and given back when the permit is dropped.
pub(crate) struct ConnectionTable {
    per_ip_max: usize,
    per_shard_max: usize,
    open_count: Cell<usize>,
    per_ip: RefCell<HashMap<IpAddr, usize>>,
    metrics: Arc<SensorMetrics>,
    index: usize,
}

/// One open connection's place in its [`ConnectionTable`].
pub(crate) struct ConnectionPermit {
    table: Rc<ConnectionTable>,
    ip: IpAddr,
}

impl ConnectionTable {
    pub(crate) fn new(
        per_ip_max: usize,
        per_shard_max: usize,
        metrics: Arc<SensorMetrics>,
        index: usize,
    ) -> Rc<Self> {
        Rc::new(Self {
            per_ip_max,
            per_shard_max,
            open_count: Cell::new(0),
            per_ip: RefCell::new(HashMap::new()),
            metrics,
            index,
        })
    }

    /// A permit for a new connection from `ip`, or `None` (counted) when a cap is reached.
    pub(crate) fn try_open(self: &Rc<Self>, ip: IpAddr) -> Option<ConnectionPermit> {
        let metrics = self.metrics.shard(self.index);
        let mut per_ip = self.per_ip.borrow_mut();
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if self.open_count.get() >= self.per_shard_max || from_ip >= self.per_ip_max {
            metrics.connections_refused_limit.inc();
            return None;
        }
        per_ip.insert(ip, from_ip + 1);
        self.open_count.set(self.open_count.get() + 1);
        metrics.connections_accepted.inc();
        Some(ConnectionPermit {
            table: Rc::clone(self),
            ip,
        })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let table = &self.table;
        let mut per_ip = table.per_ip.borrow_mut();
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        table
            .open_count
            .set(table.open_count.get().saturating_sub(1));
        table.metrics.shard(table.index).connections_closed.inc();
    }
}

#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::shard::test_core;

    const TIMEOUTS: StreamTimeouts = StreamTimeouts {
        idle: Duration::from_secs(30),
        write: Duration::from_secs(5),
        handshake: Duration::from_secs(10),
    };

    fn session(transport: Transport, now: Instant) -> StreamSession {
        let source = "192.0.2.1:40000".parse().unwrap();
        let destination = "127.0.0.1:5060".parse().unwrap();
        StreamSession::new(transport, source, destination, TIMEOUTS, now)
    }

    fn options(call_id: &str) -> String {
        format!(
            "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:40000;branch=z9hG4bK-{call_id}\r\n\
             From: <sip:a@192.0.2.1>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn stream_idle_deadline_moves_only_on_a_whole_message() {
        let (mut core, events, metrics) = test_core(false);
        let start = Instant::now();
        let mut session = session(Transport::Tcp, start);
        assert_eq!(session.poll_timeout(), start + TIMEOUTS.idle);
        let message = options("idle");
        let (head, tail) = message.as_bytes().split_at(40);
        // A dribble moves nothing.
        let later = start + Duration::from_secs(20);
        assert_eq!(session.handle_bytes(&mut core, head, later), Ok(0));
        assert_eq!(session.poll_timeout(), start + TIMEOUTS.idle);
        let before = start + TIMEOUTS.idle - Duration::from_millis(1);
        assert_eq!(session.handle_timeout(before), None);
        // The rest of the message moves it.
        let end = start + Duration::from_secs(25);
        assert_eq!(session.handle_bytes(&mut core, tail, end), Ok(1));
        assert_eq!(session.poll_timeout(), end + TIMEOUTS.idle);
        assert_eq!(session.handle_timeout(start + TIMEOUTS.idle), None);
        let close = session.handle_timeout(end + TIMEOUTS.idle);
        assert_eq!(close, Some(StreamClose::IdleTimeout));
        close.unwrap().count(metrics.shard(0));
        assert_eq!(metrics.totals().connections_idle_timeouts, 1);
        assert_eq!(events.try_iter().count(), 1);
    }

    #[test]
    fn stream_write_timeout_applies_while_a_reply_waits() {
        let (mut core, _events, metrics) = test_core(true);
        let start = Instant::now();
        let mut session = session(Transport::Tcp, start);
        assert_eq!(session.poll_transmit(), None);
        let message = options("write");
        assert_eq!(
            session.handle_bytes(&mut core, message.as_bytes(), start),
            Ok(1)
        );
        let reply = session.poll_transmit().expect("a reply to write");
        assert!(reply.starts_with(b"SIP/2.0 200 OK\r\n"));
        assert_eq!(session.poll_timeout(), start + TIMEOUTS.write);
        let late = start + TIMEOUTS.write;
        assert_eq!(
            session.handle_timeout(late),
            Some(StreamClose::WriteTimeout)
        );
        // Written in time: back to the idle deadline.
        session.handle_written();
        assert_eq!(session.poll_transmit(), None);
        assert_eq!(session.poll_timeout(), start + TIMEOUTS.idle);
        assert_eq!(session.handle_timeout(late), None);
        StreamClose::WriteTimeout.count(metrics.shard(0));
        assert_eq!(metrics.totals().connections_write_timeouts, 1);
        assert_eq!(metrics.totals().replies_sent, 1);
    }

    #[test]
    fn stream_tls_handshake_deadline_then_idle() {
        let start = Instant::now();
        let mut session = session(Transport::Tls, start);
        assert_eq!(session.poll_timeout(), start + TIMEOUTS.handshake);
        let expired = start + TIMEOUTS.handshake;
        assert_eq!(
            session.handle_timeout(expired),
            Some(StreamClose::HandshakeTimeout)
        );
        let done = start + Duration::from_secs(1);
        session.handle_handshake_done(done);
        assert_eq!(session.poll_timeout(), done + TIMEOUTS.idle);
    }

    #[test]
    fn stream_keepalives_counted_once_each() {
        let (mut core, events, metrics) = test_core(false);
        let now = Instant::now();
        let mut session = session(Transport::Tcp, now);
        assert_eq!(session.handle_bytes(&mut core, b"\r\n\r\n", now), Ok(0));
        assert_eq!(metrics.totals().non_requests_keepalive, 1);
        let message = format!("{}\r\n\r\n{}", options("a"), options("b"));
        assert_eq!(
            session.handle_bytes(&mut core, message.as_bytes(), now),
            Ok(2)
        );
        assert_eq!(metrics.totals().non_requests_keepalive, 2);
        // Keep-alives are not messages: they do not move the idle deadline.
        let later = now + Duration::from_secs(1);
        assert_eq!(session.handle_bytes(&mut core, b"\r\n", later), Ok(0));
        assert_eq!(session.poll_timeout(), now + TIMEOUTS.idle);
        assert_eq!(metrics.totals().non_requests_keepalive, 3);
        assert_eq!(session.framer.keepalives(), 3);
        assert_eq!(events.try_iter().count(), 2);
    }

    #[test]
    fn stream_oversize_closes_and_counts() {
        let (mut core, _events, metrics) = test_core(false);
        let now = Instant::now();
        let mut session = session(Transport::Tcp, now);
        let huge = vec![b'A'; SIP_MESSAGE_BYTES_MAX + 1];
        assert_eq!(
            session.handle_bytes(&mut core, &huge, now),
            Err(StreamClose::Oversize)
        );
        assert_eq!(metrics.totals().messages_oversize, 1);
    }

    #[test]
    fn stream_yields_after_the_read_budget() {
        let (mut core, _events, _metrics) = test_core(false);
        let now = Instant::now();
        let mut session = session(Transport::Tcp, now);
        for _ in 1..STREAM_READS_BEFORE_YIELD {
            session.handle_bytes(&mut core, b"X", now).unwrap();
            assert!(!session.poll_yield());
        }
        session.handle_bytes(&mut core, b"X", now).unwrap();
        assert!(session.poll_yield());
        assert!(!session.poll_yield());
    }

    #[test]
    fn connection_table_caps_at_limit_and_over() {
        let metrics = Arc::new(SensorMetrics::new(1));
        let table = ConnectionTable::new(2, 3, Arc::clone(&metrics), 0);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let first = table.try_open(a).unwrap();
        let _second = table.try_open(a).unwrap();
        assert!(table.try_open(a).is_none(), "per-IP limit + 1");
        let _third = table.try_open(b).unwrap();
        assert!(table.try_open(b).is_none(), "per-shard limit + 1");
        drop(first);
        assert!(table.try_open(a).is_some());
        let totals = metrics.totals();
        assert_eq!(totals.connections_refused_limit, 2);
        assert_eq!(totals.connections_accepted, 4);
        assert_eq!(totals.connections_closed, 2);
        assert_eq!(totals.connections_open(), 2);
    }
}
