//! What a shard does with one received message, whichever engine and transport delivered it:
//! scan it with `sip`, count non-requests, decide whether the request proves its source (a
//! TCP/TLS handshake, or a fresh To-tag or nonce of ours: `sip::proof`), build and `try_send` the
//! [`Event`], and in responsive mode decide on and build the reply (200, or with
//! `--sip-challenge` a 401 Digest challenge or a 403) into the shard's own buffer. A datagram from
//! an `--ignore-ip` source is counted and dropped before any of that.
//!
//! Never: blocks (a full channel drops and counts), allocates per reply, replies to ACK, a
//! response, garbage, a rate-limited source or an unsafe source address; scans, stores or
//! answers anything from an ignored source.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use uuid::Uuid;

use super::io_error::{IoErrorClass, IoErrorLog, IoOp, classify};
use super::metrics::{SensorMetrics, ShardMetrics};
use super::reply_limiter::{ReplyLimiter, ReplyVerdict};
use super::udp_batch::{RecvBatch, send_from};
use crate::config::limits::{
    DEBUG_LINES_PER_SECOND_MAX, EVENT_FIELD_BYTES_MAX, IO_ERROR_LOG_INTERVAL, REPLY_BYTES_MAX,
    REPLY_LIMITER_SOURCES_MAX,
};
use crate::event::{CollectedMethod, Event, EventParts, Transport, display_ip, timestamp};
use crate::ignore::IgnoreList;
use crate::sip::proof::TOKEN_BYTES;
use crate::sip::{self, ProofKey, Status, TokenKind, TokenVerdict};

/// What every shard is given at start.
#[derive(Clone)]
pub(crate) struct ShardSettings {
    pub(crate) node_id: Uuid,
    /// Keys the To-tags and nonces that prove a source (`sip::proof`).
    pub(crate) proof_key: ProofKey,
    /// `--sip-challenge`: REGISTER and INVITE get a 401 Digest challenge.
    pub(crate) sip_challenge: bool,
    pub(crate) sip_realm: Arc<[u8]>,
    pub(crate) responsive: bool,
    pub(crate) events: Sender<Event>,
    pub(crate) metrics: Arc<SensorMetrics>,
    pub(crate) debug: bool,
    pub(crate) server_header: Arc<[u8]>,
    pub(crate) reply_rate_per_second: u32,
    pub(crate) reply_burst: u32,
    /// `--ignore-ip`: sources dropped before anything else, only counted.
    pub(crate) ignore_ip: IgnoreList,
}

/// Where a message came from and went to, and when.
struct Route {
    transport: Transport,
    source: SocketAddr,
    destination: SocketAddr,
    timestamp_ns: u64,
}

/// What a request proved about its source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Proofs {
    /// A two-way exchange: a handshake, or a fresh To-tag or nonce of ours for this IP.
    source: bool,
    /// The credentials carried a fresh nonce of ours (answered 403, not challenged again).
    nonce: bool,
}

/// The methods `--sip-challenge` challenges.
fn is_challenged(method: &[u8]) -> bool {
    method == b"REGISTER" || method == b"INVITE"
}

/// One shard's message handling state.
pub(crate) struct ShardCore {
    settings: ShardSettings,
    index: usize,
    limiter: ReplyLimiter,
    reply: Vec<u8>,
    scratch_called: Vec<u8>,
    scratch_agent: Vec<u8>,
    epoch: Instant,
    debug_window_s: u64,
    debug_lines_count: u32,
    io_error_log: IoErrorLog,
}

/// A reply source must be a real unicast host: never port 0, unspecified, broadcast or multicast.
pub(crate) fn reply_source_is_safe(source: SocketAddr) -> bool {
    if source.port() == 0 {
        return false;
    }
    match display_ip(source) {
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
            epoch: Instant::now(),
            debug_window_s: 0,
            debug_lines_count: 0,
            io_error_log: IoErrorLog::default(),
        }
    }

    pub(crate) fn metrics(&self) -> &ShardMetrics {
        self.settings.metrics.shard(self.index)
    }

    /// Whether `source` is in the `--ignore-ip` list; an ignored source is counted here and
    /// must then be dropped by the caller without any other handling (no event, no reply).
    pub(crate) fn drop_ignored(&self, source: IpAddr) -> bool {
        let ignored = self.settings.ignore_ip.contains(source);
        if ignored {
            self.metrics().ignored_sources.inc();
        }
        ignored
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
        self.metrics().bytes_received.add(message.len() as u64);
        let request = match sip::scan(message) {
            Ok(request) => request,
            Err(kind) => {
                self.handle_non_request(kind, message, transport, source);
                return None;
            }
        };
        let route = Route {
            transport,
            source,
            destination,
            timestamp_ns,
        };
        let now_s = timestamp_ns / 1_000_000_000;
        let proofs = self.check_proofs(&request, transport, display_ip(source), now_s);
        self.send_event(&request, message, &route, proofs.source);
        if !self.settings.responsive {
            return None;
        }
        self.build_reply(&request, source, proofs, now_s)
    }

    /// Whether `request` from `ip` proves its source: a TCP/TLS handshake; in responsive mode a
    /// fresh To-tag of ours (the ACK, BYE or re-INVITE after our reply); with `--sip-challenge` a
    /// fresh nonce of ours in its credentials. Tags and nonces that are not are counted.
    fn check_proofs(
        &mut self,
        request: &sip::Request<'_>,
        transport: Transport,
        ip: IpAddr,
        now_s: u64,
    ) -> Proofs {
        let mut proofs = Proofs::default();
        if self.settings.sip_challenge
            && let Some(nonce) = request
                .authorization
                .and_then(|value| sip::parse_credentials(value).nonce)
        {
            proofs.nonce = self.check_token(TokenKind::Nonce, ip, nonce, now_s);
        }
        if transport != Transport::Udp {
            self.metrics().proofs_handshake.inc();
            proofs.source = true;
        } else if proofs.nonce {
            proofs.source = true;
        } else if self.settings.responsive
            && let Some(tag) = request.to_tag().filter(|tag| tag.len() == TOKEN_BYTES)
        {
            proofs.source = self.check_token(TokenKind::Tag, ip, tag, now_s);
        }
        proofs
    }

    /// Checks one token and counts the verdict; true when valid.
    fn check_token(&mut self, kind: TokenKind, ip: IpAddr, token: &[u8], now_s: u64) -> bool {
        let verdict = self.settings.proof_key.check_token(kind, ip, token, now_s);
        let metrics = self.metrics();
        match (verdict, kind) {
            (TokenVerdict::Valid, TokenKind::Tag) => metrics.proofs_tag.inc(),
            (TokenVerdict::Valid, TokenKind::Nonce) => metrics.proofs_nonce.inc(),
            (TokenVerdict::Stale, _) => metrics.proofs_rejected_stale.inc(),
            (TokenVerdict::Foreign, _) => metrics.proofs_rejected_foreign.inc(),
        }
        verdict == TokenVerdict::Valid
    }

    /// Builds the event of a request and `try_send`s it (a full channel drops and counts).
    fn send_event(
        &mut self,
        request: &sip::Request<'_>,
        message: &[u8],
        route: &Route,
        source_verified: bool,
    ) {
        let collected_method = if self.settings.responsive {
            CollectedMethod::Responsive
        } else {
            CollectedMethod::Passive
        };
        let event = Event::new(&EventParts {
            timestamp_ns: route.timestamp_ns,
            uuid: Uuid::new_v4(),
            node_id: self.settings.node_id,
            transport: route.transport,
            collected_method,
            source: route.source,
            destination: route.destination,
            method: request.method,
            called_number: request.called_number(&mut self.scratch_called),
            user_agent: request.user_agent_value(&mut self.scratch_agent),
            message,
            source_verified,
            auth_username: request.auth_username(),
        });
        let metrics = self.settings.metrics.shard(self.index);
        metrics.events.inc();
        match self.settings.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                metrics.events_dropped.inc();
            }
        }
    }

    /// The reply to a request from `source` in responsive mode, unless the source is unsafe, the
    /// request is an ACK, the source is rate-limited or no reply can be built. The To-tag is a
    /// keyed token for the source IP; with `--sip-challenge`, REGISTER and INVITE get a 401
    /// with a keyed nonce, or a 403 when they returned a fresh one.
    fn build_reply(
        &mut self,
        request: &sip::Request<'_>,
        source: SocketAddr,
        proofs: Proofs,
        now_s: u64,
    ) -> Option<&[u8]> {
        if !reply_source_is_safe(source) || request.method == b"ACK" {
            self.metrics().replies_skipped.inc();
            return None;
        }
        let now_ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let ip = display_ip(source);
        if self.limiter.handle_request(ip, now_ns) == ReplyVerdict::Drop {
            self.metrics().replies_rate_limited.inc();
            return None;
        }
        let key = &self.settings.proof_key;
        let tag = key.make_token(TokenKind::Tag, ip, now_s);
        let nonce;
        let challenged = self.settings.sip_challenge && is_challenged(request.method);
        let status = match (challenged, proofs.nonce) {
            (false, _) => Status::Ok,
            (true, true) => Status::Forbidden,
            (true, false) => {
                nonce = key.make_token(TokenKind::Nonce, ip, now_s);
                Status::Unauthorized {
                    realm: &self.settings.sip_realm,
                    nonce: nonce.as_bytes(),
                }
            }
        };
        let server = &self.settings.server_header;
        let built = sip::build_response(request, status, server, tag.as_bytes(), &mut self.reply);
        let metrics = self.settings.metrics.shard(self.index);
        let Some(reply) = built else {
            metrics.replies_skipped.inc();
            return None;
        };
        if matches!(status, Status::Unauthorized { .. }) {
            metrics.challenges_sent.inc();
        }
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

    /// Counts a socket error met doing `op` on the socket bound to `local` in its class, logs it
    /// when its class's line is due (`io_error.rs`) and returns the class.
    pub(crate) fn handle_io_error(
        &mut self,
        op: IoOp,
        local: SocketAddr,
        error: &io::Error,
        now: Instant,
    ) -> IoErrorClass {
        let class = classify(op, error);
        let metrics = self.metrics();
        let consequence = match class {
            IoErrorClass::Transient => {
                metrics.io_errors_transient.inc();
                "transient: counted, the socket is still served"
            }
            IoErrorClass::Fatal => {
                metrics.io_errors_fatal.inc();
                "fatal: this socket is no longer served"
            }
        };
        if self.io_error_log.handle_error(class, now) {
            eprintln!(
                "sentrypeer: shard {}: {op} on {local}: {error} ({consequence}; more such errors \
                 within {} s are only counted)",
                self.index,
                IO_ERROR_LOG_INTERVAL.as_secs()
            );
        }
        class
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
        if core.drop_ignored(source.ip()) {
            continue;
        }
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
                    core.handle_io_error(IoOp::UdpReply, local, &error, Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
impl ShardCore {
    /// Turns `--sip-challenge` on or off (tests).
    pub(crate) fn set_sip_challenge(&mut self, on: bool) {
        self.settings.sip_challenge = on;
    }
}

/// A shard core for unit tests: shard 0 of one, its event receiver and its metrics.
#[cfg(test)]
pub(crate) fn test_core(
    responsive: bool,
) -> (
    ShardCore,
    crossbeam_channel::Receiver<Event>,
    Arc<SensorMetrics>,
) {
    let (events, receiver) = crossbeam_channel::bounded(64);
    let metrics = Arc::new(SensorMetrics::new(1));
    let settings = ShardSettings {
        node_id: Uuid::new_v4(),
        proof_key: ProofKey::new([7; 32]),
        sip_challenge: false,
        sip_realm: Arc::from(&b"asterisk"[..]),
        responsive,
        events,
        metrics: Arc::clone(&metrics),
        debug: false,
        server_header: Arc::from(&b"test"[..]),
        reply_rate_per_second: 100,
        reply_burst: 100,
        ignore_ip: IgnoreList::default(),
    };
    (ShardCore::new(settings, 0), receiver, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_counted_per_class() {
        let (mut core, _events, metrics) = test_core(false);
        let local = "127.0.0.1:5060".parse().unwrap();
        let now = Instant::now();
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let broken = io::Error::from_raw_os_error(libc::EBADF);
        for _ in 0..3 {
            let class = core.handle_io_error(IoOp::UdpReceive, local, &refused, now);
            assert_eq!(class, IoErrorClass::Transient);
        }
        let class = core.handle_io_error(IoOp::Accept, local, &broken, now);
        assert_eq!(class, IoErrorClass::Fatal);
        let totals = metrics.totals();
        assert_eq!((totals.io_errors_transient, totals.io_errors_fatal), (3, 1));
    }

    #[test]
    fn ignored_sources_counted() {
        let (mut core, _events, metrics) = test_core(false);
        let nets = ["127.0.0.77", "2001:db8::/32"].map(crate::ignore::parse_cidr);
        core.settings.ignore_ip = IgnoreList::new(nets.into_iter().flatten());
        for (source, ignored) in [
            ("127.0.0.77", true),
            ("::ffff:127.0.0.77", true),
            ("2001:db8::1", true),
            ("127.0.0.1", false),
            ("::1", false),
        ] {
            assert_eq!(
                core.drop_ignored(source.parse().unwrap()),
                ignored,
                "{source}"
            );
        }
        assert_eq!(metrics.totals().ignored_sources, 3);
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
