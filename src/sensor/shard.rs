//! What a shard does with one received message, whichever engine and transport delivered it:
//! scan it with `sip`, count non-requests, build and `try_send` the [`Event`], and in responsive
//! mode decide on and build the reply into the shard's own buffer.
//!
//! Never: blocks (a full channel drops and counts), allocates per reply, replies to ACK, a
//! response, garbage, a rate-limited source or an unsafe source address.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use uuid::Uuid;

use super::metrics::{SensorMetrics, ShardMetrics};
use super::reply_limiter::{ReplyLimiter, ReplyVerdict};
use super::udp_batch::{RecvBatch, send_from};
use crate::config::limits::{
    DEBUG_LINES_PER_SECOND_MAX, EVENT_FIELD_BYTES_MAX, IO_ERROR_LOG_INTERVAL, REPLY_BYTES_MAX,
    REPLY_LIMITER_SOURCES_MAX, SIP_MESSAGE_BYTES_MAX,
};
use crate::event::{CollectedMethod, Event, EventParts, Transport, timestamp};
use crate::sip::{self, Framer};

/// What every shard is given at start.
#[derive(Clone)]
pub(crate) struct ShardSettings {
    pub(crate) node_id: Uuid,
    pub(crate) responsive: bool,
    pub(crate) events: Sender<Event>,
    pub(crate) metrics: Arc<SensorMetrics>,
    pub(crate) debug: bool,
    pub(crate) server_header: Arc<[u8]>,
    pub(crate) reply_rate_per_second: u32,
    pub(crate) reply_burst: u32,
}

/// One shard's message handling state.
pub(crate) struct ShardCore {
    settings: ShardSettings,
    index: usize,
    limiter: ReplyLimiter,
    reply: Vec<u8>,
    scratch_called: Vec<u8>,
    scratch_agent: Vec<u8>,
    tag_seed: u64,
    tag_count: u64,
    epoch: Instant,
    debug_window_s: u64,
    debug_lines_count: u32,
    io_error_logged: Option<Instant>,
}

/// A reply source must be a real unicast host: never port 0, unspecified, broadcast or multicast.
pub(crate) fn reply_source_is_safe(source: SocketAddr) -> bool {
    if source.port() == 0 {
        return false;
    }
    match crate::event::display_ip(source) {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    }
}

impl ShardCore {
    pub(crate) fn new(settings: ShardSettings, index: usize) -> Self {
        let limiter = ReplyLimiter::new(
            settings.reply_rate_per_second,
            settings.reply_burst,
            REPLY_LIMITER_SOURCES_MAX,
        );
        Self {
            settings,
            index,
            limiter,
            reply: Vec::with_capacity(REPLY_BYTES_MAX),
            scratch_called: Vec::with_capacity(EVENT_FIELD_BYTES_MAX),
            scratch_agent: Vec::with_capacity(EVENT_FIELD_BYTES_MAX),
            tag_seed: Uuid::new_v4().as_u64_pair().0,
            tag_count: 0,
            epoch: Instant::now(),
            debug_window_s: 0,
            debug_lines_count: 0,
            io_error_logged: None,
        }
    }

    pub(crate) fn metrics(&self) -> &ShardMetrics {
        self.settings.metrics.shard(self.index)
    }

    /// Handles one message (a datagram or one framed stream message) received at `timestamp_ns`
    /// (UTC, read once per receive batch). Returns the reply to send back, if one is due.
    pub(crate) fn handle_message(
        &mut self,
        message: &[u8],
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        timestamp_ns: u64,
    ) -> Option<&[u8]> {
        let metrics = self.settings.metrics.shard(self.index);
        metrics.bytes_received.add(message.len() as u64);
        let request = match sip::scan(message) {
            Ok(request) => request,
            Err(kind) => {
                self.handle_non_request(kind, message, transport, source);
                return None;
            }
        };
        let collected_method = if self.settings.responsive {
            CollectedMethod::Responsive
        } else {
            CollectedMethod::Passive
        };
        let event = Event::new(&EventParts {
            timestamp_ns,
            uuid: Uuid::new_v4(),
            node_id: self.settings.node_id,
            transport,
            collected_method,
            source,
            destination,
            method: request.method,
            called_number: request.called_number(&mut self.scratch_called),
            user_agent: request.user_agent_value(&mut self.scratch_agent),
            message,
        });
        metrics.events.inc();
        match self.settings.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                metrics.events_dropped.inc();
            }
        }
        if !self.settings.responsive {
            return None;
        }
        if !reply_source_is_safe(source) {
            metrics.replies_skipped.inc();
            return None;
        }
        if request.method == b"ACK" {
            metrics.replies_skipped.inc();
            return None;
        }
        let now_ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if self
            .limiter
            .handle_request(crate::event::display_ip(source), now_ns)
            == ReplyVerdict::Drop
        {
            metrics.replies_rate_limited.inc();
            return None;
        }
        self.tag_count += 1;
        let tag_value = self.tag_seed ^ self.tag_count.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut tag = [0u8; 16];
        for (i, byte) in tag.iter_mut().enumerate() {
            *byte = b"0123456789abcdef"[((tag_value >> (60 - 4 * i)) & 0xF) as usize];
        }
        self.reply.clear();
        let server = &self.settings.server_header;
        let Some(reply) = sip::build_reply(&request, server, &tag, &mut self.reply) else {
            metrics.replies_skipped.inc();
            return None;
        };
        self.reply.get(..reply.len)
    }

    fn handle_non_request(
        &mut self,
        kind: sip::NotRequest,
        message: &[u8],
        transport: Transport,
        source: SocketAddr,
    ) {
        let metrics = self.settings.metrics.shard(self.index);
        let (counter, name) = match kind {
            sip::NotRequest::Empty => (&metrics.non_requests_empty, "empty"),
            sip::NotRequest::KeepAlive => (&metrics.non_requests_keepalive, "keep-alive"),
            sip::NotRequest::Response => (&metrics.non_requests_response, "SIP response"),
            sip::NotRequest::Garbage => (&metrics.non_requests_garbage, "not a SIP request"),
        };
        counter.inc();
        if self.settings.debug && self.debug_line_allowed() {
            let head = message.get(..80).unwrap_or(message);
            eprintln!(
                "sentrypeer: debug: {name} from {source} over {}, {} bytes: {}",
                transport.as_str(),
                message.len(),
                head.escape_ascii()
            );
        }
    }

    fn debug_line_allowed(&mut self) -> bool {
        let second = self.epoch.elapsed().as_secs();
        if second != self.debug_window_s {
            self.debug_window_s = second;
            self.debug_lines_count = 0;
        }
        self.debug_lines_count += 1;
        self.debug_lines_count <= DEBUG_LINES_PER_SECOND_MAX
    }

    /// Counts a recoverable socket error and logs it at most once per `IO_ERROR_LOG_INTERVAL`.
    pub(crate) fn handle_io_error(&mut self, what: &str, error: &std::io::Error) {
        self.metrics().receive_errors.inc();
        let due = self
            .io_error_logged
            .is_none_or(|at| at.elapsed() >= IO_ERROR_LOG_INTERVAL);
        if due {
            self.io_error_logged = Some(Instant::now());
            eprintln!("sentrypeer: shard {}: {what}: {error}", self.index);
        }
    }
}

/// Handles datagrams `0..count` of the last receive: events, and replies sent from the address
/// each request was sent to.
pub(crate) fn handle_datagrams(
    core: &mut ShardCore,
    batch: &RecvBatch,
    count: usize,
    fd: RawFd,
    local: SocketAddr,
) {
    let metrics = Arc::clone(&core.settings.metrics);
    let metrics = metrics.shard(core.index);
    // One clock read per batch: the datagrams of one recvmmsg arrived within microseconds.
    let timestamp_ns = timestamp::now_ns();
    for index in 0..count {
        let Some(datagram) = batch.datagram(index) else {
            break;
        };
        metrics.datagrams_received.inc();
        let Some(source) = datagram.source else {
            metrics.receive_errors.inc();
            continue;
        };
        if datagram.truncated {
            metrics.messages_oversize.inc();
            continue;
        }
        let destination_ip = datagram.destination_ip.unwrap_or(local.ip());
        let destination = SocketAddr::new(destination_ip, local.port());
        let reply = core.handle_message(
            datagram.bytes,
            Transport::Udp,
            source,
            destination,
            timestamp_ns,
        );
        if let Some(reply) = reply {
            match send_from(fd, reply, source, Some(destination_ip)) {
                Ok(_) => metrics.replies_sent.inc(),
                Err(error) => {
                    metrics.replies_skipped.inc();
                    core.handle_io_error("UDP reply", &error);
                }
            }
        }
    }
}

/// Why a stream connection must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamClose {
    /// A message over `SIP_MESSAGE_BYTES_MAX` (counted as oversize).
    Oversize,
}

/// One TCP/TLS connection's framing state and pending replies.
pub(crate) struct StreamSession {
    framer: Framer,
    transport: Transport,
    source: SocketAddr,
    destination: SocketAddr,
    replies: Vec<u8>,
    keepalives_count: u64,
}

impl StreamSession {
    pub(crate) fn new(transport: Transport, source: SocketAddr, destination: SocketAddr) -> Self {
        Self {
            framer: Framer::new(SIP_MESSAGE_BYTES_MAX),
            transport,
            source,
            destination,
            replies: Vec::new(),
            keepalives_count: 0,
        }
    }

    /// Feeds received bytes and handles every complete message. Returns how many messages were
    /// complete; replies due are appended to [`replies`](Self::replies).
    pub(crate) fn handle_bytes(
        &mut self,
        core: &mut ShardCore,
        bytes: &[u8],
    ) -> Result<usize, StreamClose> {
        let oversize = |core: &ShardCore| {
            core.metrics().messages_oversize.inc();
            StreamClose::Oversize
        };
        if self.framer.handle_bytes(bytes).is_err() {
            return Err(oversize(core));
        }
        let mut messages_count = 0;
        let timestamp_ns = timestamp::now_ns();
        loop {
            let keepalives_count = self.framer.keepalives();
            if keepalives_count > self.keepalives_count {
                core.metrics()
                    .non_requests_keepalive
                    .add(keepalives_count - self.keepalives_count);
                self.keepalives_count = keepalives_count;
            }
            match self.framer.poll_message() {
                Ok(Some(message)) => {
                    messages_count += 1;
                    let (transport, source, destination) =
                        (self.transport, self.source, self.destination);
                    if let Some(reply) =
                        core.handle_message(message, transport, source, destination, timestamp_ns)
                    {
                        self.replies.extend_from_slice(reply);
                        core.metrics().replies_sent.inc();
                    }
                }
                Ok(None) => {
                    let keepalives_count = self.framer.keepalives();
                    let new_count = keepalives_count.saturating_sub(self.keepalives_count);
                    core.metrics().non_requests_keepalive.add(new_count);
                    self.keepalives_count = keepalives_count;
                    return Ok(messages_count);
                }
                Err(_) => return Err(oversize(core)),
            }
        }
    }

    /// Replies waiting to be written.
    pub(crate) fn replies(&self) -> &[u8] {
        &self.replies
    }

    pub(crate) fn clear_replies(&mut self) {
        self.replies.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(totals.connections_open(), 2);
    }

    #[test]
    fn reply_source_safety() {
        for unsafe_source in [
            "0.0.0.0:5060",
            "1.2.3.4:0",
            "255.255.255.255:5060",
            "224.0.0.1:5060",
        ] {
            assert!(
                !reply_source_is_safe(unsafe_source.parse().unwrap()),
                "{unsafe_source}"
            );
        }
        for unsafe_source in ["[::]:5060", "[ff02::1]:5060", "[::ffff:0.0.0.0]:5060"] {
            assert!(
                !reply_source_is_safe(unsafe_source.parse().unwrap()),
                "{unsafe_source}"
            );
        }
        assert!(reply_source_is_safe("127.0.0.1:5060".parse().unwrap()));
        assert!(reply_source_is_safe("[::1]:5060".parse().unwrap()));
    }
}
