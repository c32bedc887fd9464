//! Every limit of the program, in one place (TigerBeetle's `constants.zig`).
//!
//! Each constant says what it bounds, what happens at the limit, and the counter that moves.
//! Settings may lower a limit but never raise it above the cap here; `config` checks that at
//! start-up.

use std::time::Duration;

/// Largest UDP datagram (the IPv4/IPv6 payload maximum); every one fits, none is truncated.
pub const UDP_DATAGRAM_BYTES_MAX: usize = 65_535;

/// Largest SIP message kept in an event and accepted on TCP/TLS; a longer stream message closes
/// the connection (counter `sip_messages_oversize_total`). Worst case per connection: this many
/// bytes buffered.
pub const SIP_MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// The message bytes an event keeps (the rest is truncated).
pub const EVENT_MESSAGE_BYTES_MAX: usize = SIP_MESSAGE_BYTES_MAX;

/// Longest method, called number or user agent kept in an event; longer values are truncated.
pub const EVENT_FIELD_BYTES_MAX: usize = 1024;

/// Header lines the scanner looks at; later headers are ignored (the message is still an event).
pub const SIP_HEADERS_COUNT_MAX: usize = 256;

/// Via headers remembered for a reply; more are not echoed.
pub const SIP_VIA_COUNT_MAX: usize = 16;

/// Largest reply the reply builder writes; a request whose echoed headers would exceed it gets
/// no reply (counter `replies_oversize_total`).
pub const REPLY_BYTES_MAX: usize = 8 * 1024;

/// Datagrams taken per `recvmmsg` call.
pub const RECV_BATCH_DATAGRAMS: usize = 32;

/// Default receive buffer asked of the kernel per UDP socket (`--udp-rcvbuf`).
pub const UDP_RCVBUF_BYTES_DEFAULT: usize = 8 * 1024 * 1024;

/// Messages a shard handles before it yields to its other tasks.
pub const SHARD_BATCH_BEFORE_YIELD: usize = 256;

/// Default idle timeout of a TCP/TLS connection (`--tcp-idle-timeout`).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a TLS client has to finish its handshake; then the connection is closed.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default cap of open TCP/TLS connections from one source IP (per shard).
pub const TCP_CONNECTIONS_PER_IP_MAX: usize = 64;

/// Default cap of open TCP/TLS connections per shard; accepts over it are closed at once.
pub const TCP_CONNECTIONS_PER_SHARD_MAX: usize = 10_000;

/// Events waiting between the shards and the writer; when full, shards drop and count
/// (`events_dropped_total`). Worst case memory: this many events (~1 KiB each typical).
pub const EVENT_CHANNEL_CAPACITY: usize = 65_536;

/// Default and maximum events per LMDB write transaction.
pub const WRITER_BATCH_EVENTS_DEFAULT: usize = 4_096;
pub const WRITER_BATCH_EVENTS_MAX: usize = 65_536;

/// Default longest wait before a partial batch is committed.
pub const WRITER_BATCH_INTERVAL: Duration = Duration::from_millis(20);

/// Default reply budget per source IP in responsive mode: a token bucket.
pub const REPLY_RATE_PER_SECOND: u32 = 10;
pub const REPLY_BURST: u32 = 20;

/// Source IPs tracked by a shard's reply limiter; the oldest are forgotten beyond this.
pub const REPLY_LIMITER_SOURCES_MAX: usize = 65_536;

/// Items returned by one page of an API list.
pub const API_PAGE_ITEMS_MAX: usize = 100_000;

/// Open API connections; more are refused.
pub const API_CONNECTIONS_MAX: usize = 1_024;

/// Events queued between the writer and the webhook worker.
pub const WEBHOOK_QUEUE_CAPACITY: usize = 65_536;

/// Largest P2P entry accepted from a peer.
pub const P2P_ENTRY_BYTES_MAX: usize = 4 * 1024;

/// `-d` lines describing non-requests a shard prints per second at most; the rest are counted
/// only (the `sip_non_requests_total` counters still move).
pub const DEBUG_LINES_PER_SECOND_MAX: u32 = 20;

/// How often a recurring I/O error is logged at most.
pub const IO_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

const _: () = assert!(SIP_MESSAGE_BYTES_MAX <= UDP_DATAGRAM_BYTES_MAX + 1);
const _: () = assert!(WRITER_BATCH_EVENTS_DEFAULT <= WRITER_BATCH_EVENTS_MAX);
const _: () = assert!(REPLY_BURST >= REPLY_RATE_PER_SECOND);
