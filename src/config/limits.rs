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
/// no reply (counter `sip_replies_skipped_total`).
pub const REPLY_BYTES_MAX: usize = 8 * 1024;

/// Datagrams taken per `recvmmsg` call.
pub const RECV_BATCH_DATAGRAMS: usize = 32;

/// After a short `recvmmsg` batch (the queue was drained), how long a shard (either engine) lets
/// datagrams gather before it receives again, so that a flood arrives in fuller batches with
/// fewer wake-ups. At 100k datagrams/s the default receive buffer holds about 30 ms. In a 100k/s
/// flood, 1 ms took the shards' CPU from 50% of a core (no pause) to 40% (500 us: 45%).
pub const UDP_RECEIVE_GATHER: Duration = Duration::from_millis(1);

/// Memory each io_uring shard's executor preallocates and registers for glommio's own buffers
/// (glommio's default is 10 MiB). The shards take datagrams with `recvmmsg` into their own
/// buffers, so glommio's pool only serves the one-byte readiness peeks and TCP/TLS reads, which
/// fall back to the heap when it is full. glommio rounds it up to at least 64 KiB. With the
/// default the two shards of a 2-core machine held 20 MiB of the sensor's RssAnon from start-up.
pub const SHARD_IO_MEMORY_BYTES: usize = 64 * 1024;

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

// Bounds that `config` checks settings against at start-up; a setting outside them stops
// start-up with a one-line error naming the setting.

/// Most sensor cores (`--cores`): one executor and one socket set per core.
pub const SENSOR_CORES_MAX: usize = 1_024;

/// Largest receive buffer that may be asked per UDP socket (`--udp-rcvbuf`); the kernel caps
/// it further at `net.core.rmem_max` unless the process may override that.
pub const UDP_RCVBUF_BYTES_MAX: usize = 1 << 30;

/// Longest idle timeout of a TCP/TLS connection (`--tcp-idle-timeout`).
pub const TCP_IDLE_TIMEOUT_MAX: Duration = Duration::from_secs(3_600);

/// Highest reply rate and burst per source IP (`--reply-rate`, `--reply-burst`).
pub const REPLY_RATE_PER_SECOND_MAX: u32 = 100_000;
pub const REPLY_BURST_MAX: u32 = 100_000;

/// Longest `Server` header of replies (`--server-header`), printable ASCII only.
pub const SERVER_HEADER_BYTES_MAX: usize = 128;

/// Longest `--sip-realm`: a realm is a host or organisation name; 128 bytes keeps the 401 small.
pub const SIP_REALM_BYTES_MAX: usize = 128;

/// Most `--ignore-ip` CIDRs. Every request's source is checked against each of them in turn on
/// the shard (a few nanoseconds each), so the list must stay short: an operator's trunk providers,
/// upstream routers and resolvers are tens of networks, and 1024 bounds the check at about a
/// microsecond per request.
pub const IGNORE_IP_ENTRIES_MAX: usize = 1024;

/// Longest wait before a partial batch is committed (`--writer-interval-ms`).
pub const WRITER_BATCH_INTERVAL_MAX: Duration = Duration::from_secs(10);

/// Longest retention of raw events (`--retention-days`), about a century.
pub const RETENTION_DAYS_MAX: u32 = 36_500;

/// Most events per webhook request (`--webhook-batch`).
pub const WEBHOOK_BATCH_EVENTS_MAX: usize = 1_000;

/// Events waiting between the shards and the writer; when full, shards drop and count
/// (`events_dropped_total`). Worst case memory: this many events (~1 KiB each typical), plus the
/// batches behind it (encoder, writer, output: up to 5 x `--writer-batch`). Cut from 65,536 when
/// the default batch doubled, which kept the events in flight (and RssAnon) about where they were;
/// it absorbs a flood's first half second, while the store is new and the dictionary trains.
pub const EVENT_CHANNEL_CAPACITY: usize = 49_152;

/// Default and maximum events per LMDB write transaction. Every commit rewrites the pages of the
/// aggregates, indexes and rings its events touch: in a flood from 10,000 numbers the writer wrote
/// about 940 B per event in full 4,096-event commits and 580 B in 8,192-event ones
/// (`perf/results/2026-12-07-writer-batch-ab.txt`), and its CPU per event fell by 14-31%.
pub const WRITER_BATCH_EVENTS_DEFAULT: usize = 8_192;
pub const WRITER_BATCH_EVENTS_MAX: usize = 65_536;

/// Default longest wait before a partial batch is committed: also the most an event waits for its
/// JSON log line when the sensor is quiet.
pub const WRITER_BATCH_INTERVAL: Duration = Duration::from_millis(50);

/// Default reply budget per source IP in responsive mode: a token bucket.
pub const REPLY_RATE_PER_SECOND: u32 = 10;
pub const REPLY_BURST: u32 = 20;

/// Source IPs tracked by a shard's reply limiter; the oldest are forgotten beyond this.
pub const REPLY_LIMITER_SOURCES_MAX: usize = 65_536;

/// Items returned by one page of an API list.
pub const API_PAGE_ITEMS_MAX: usize = 100_000;

/// A list page is read by one pass over its aggregates table and a sort (instead of a look-up
/// per item through the last-seen index) when the table holds at most this many times the
/// page's items: the pass reads at most this many entries per item, sequentially.
pub const API_LIST_SCAN_FACTOR: usize = 2;

/// Open API connections; a connection over the cap is closed at once (counter
/// `api_connections_refused_total`). Worst case: this many hyper connections, each with at most
/// `API_REQUEST_HEAD_BYTES_MAX` buffered.
pub const API_CONNECTIONS_MAX: usize = 1_024;

/// Events returned by one `GET /events` page (default and cap of `limit`): events keep up to
/// `EVENT_MESSAGE_BYTES_MAX` of message, so the worst-case body is about 1000 x 64 KiB.
pub const API_EVENTS_PAGE_ITEMS_MAX: usize = 1_000;

/// Events returned by `GET /events` without `limit`.
pub const API_EVENTS_PAGE_ITEMS_DEFAULT: usize = 100;

/// Longest request target (path and query) the API answers; a longer one gets 414.
pub const API_URI_BYTES_MAX: usize = 8 * 1024;

/// Largest request head (request line and headers) hyper buffers; more gets 431 and the
/// connection is closed. Also the read buffer cap per connection (hyper's minimum is 8 KiB).
pub const API_REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;

/// Most request headers; more gets 431 and the connection is closed.
pub const API_REQUEST_HEADERS_COUNT_MAX: usize = 64;

/// Time a client has to send a whole request head (also the idle keep-alive timeout); then the
/// connection is closed.
pub const API_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a response write may stay blocked because the client does not read; then the
/// connection is closed (counter `api_connections_stalled_total`). Bounds how long one
/// connection can pin a response (up to ~10 MB for a full list) in memory.
pub const API_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Blocking threads that run long store reads (full lists, events) for the API.
pub const API_BLOCKING_THREADS_MAX: usize = 4;

/// Time the webhook worker gives a TCP (and TLS) connect to the webhook or token URL; a
/// timeout is a failed attempt (counter `webhook_requests_failed_total`) and backs off.
pub const WEBHOOK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time one webhook or token request may take in total (connect, send, response); a timeout is a
/// failed attempt and backs off. Also bounds how long `WebhookHandle::stop` can wait.
pub const WEBHOOK_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// First wait after a failed webhook attempt; it doubles per consecutive failure (with jitter)
/// up to [`WEBHOOK_BACKOFF_MAX`], so retries never end but never exceed one per minute.
pub const WEBHOOK_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
pub const WEBHOOK_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Events read from the store per read transaction by the webhook worker (or one batch, when
/// `--webhook-batch` is larger): worst case this many decoded events (up to
/// `EVENT_MESSAGE_BYTES_MAX` each, ~64 MiB for 1000) held while they are posted.
pub const WEBHOOK_READ_EVENTS_MAX: usize = 256;

/// The webhook cursor is written to the store after this many delivered (or skipped) events or
/// this long after the last write, and at stop: a crash re-sends at most that much (at least
/// once delivery).
pub const WEBHOOK_CURSOR_PERSIST_EVENTS: u64 = 1_000;
pub const WEBHOOK_CURSOR_PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// Longest single wait of the idle webhook worker on the commit watch before it checks for a
/// stop request; bounds how long `stop` waits for an idle worker.
pub const WEBHOOK_IDLE_WAIT: Duration = Duration::from_millis(100);

/// An OAuth2 token is replaced this long before it expires at most (10% of its lifetime when
/// that is shorter); a token response without `expires_in` is kept this long.
pub const WEBHOOK_TOKEN_EARLY_MAX: Duration = Duration::from_secs(30);
pub const WEBHOOK_TOKEN_LIFETIME_DEFAULT: Duration = Duration::from_secs(300);

/// Largest token or webhook response body read; a longer token response is a failed attempt,
/// a longer webhook response body is not read further (the connection is not reused).
pub const WEBHOOK_RESPONSE_BYTES_MAX: u64 = 64 * 1024;

/// Largest P2P entry accepted from a peer.
pub const P2P_ENTRY_BYTES_MAX: usize = 4 * 1024;

/// `-d` lines describing non-requests a shard prints per second at most; the rest are counted
/// only (the `sip_non_requests_total` counters still move).
pub const DEBUG_LINES_PER_SECOND_MAX: u32 = 20;

/// Largest P2P message payload (the JSON) we publish or accept. Well under
/// [`P2P_TRANSMIT_BYTES_MAX`]: besides the signed envelope (~200 bytes), libp2p-gossipsub 0.50
/// checks its whole read buffer (the frame plus up to 8 KiB read ahead of the next one) against
/// the frame cap and drops the stream when it is over, so frames must stay 8 KiB below the cap.
pub const P2P_MESSAGE_BYTES_MAX: usize = 48 * 1024;

/// Gossipsub's `max_transmit_size`: larger frames are dropped by the codec.
pub const P2P_TRANSMIT_BYTES_MAX: usize = 60 * 1024;

/// Entries in one P2P message; a message with more is rejected.
pub const P2P_ENTRIES_PER_MESSAGE_MAX: usize = 256;

/// The `sip_message` text kept in a shared entry (longer is truncated when sending, rejected
/// when received).
pub const P2P_SIP_MESSAGE_BYTES_MAX: usize = 1024;

/// Longest method, called number or user agent in a P2P entry.
pub const P2P_FIELD_BYTES_MAX: usize = 256;

/// Largest `count` of one coalesced entry.
pub const P2P_ENTRY_COUNT_MAX: u64 = 1_000_000;

/// How far in the future a peer's event timestamp may be (clock skew).
pub const P2P_FUTURE_SKEW: Duration = Duration::from_secs(60);

/// Oldest peer event accepted (older ones are rejected as stale).
pub const P2P_EVENT_AGE_MAX: Duration = Duration::from_secs(7 * 86_400);

/// Repeats of one (source IP, called number, method) within this window are sent as one entry.
pub const P2P_COALESCE_WINDOW: Duration = Duration::from_secs(1);

/// Entries waiting to be published; when full the P2P reader stops reading the store (the
/// events stay after the `p2p` cursor, nothing is dropped).
pub const P2P_PENDING_ENTRIES_MAX: usize = 20_000;

/// Messages this node publishes per second at most.
pub const P2P_PUBLISH_MESSAGES_PER_SECOND: u32 = 20;

/// Per-peer receive budget: messages per second (token bucket) and burst; beyond it a message
/// is ignored (not forwarded, not stored) and counted.
pub const P2P_PEER_MESSAGES_PER_SECOND: u32 = 50;
pub const P2P_PEER_MESSAGES_BURST: u32 = 200;

/// P2P connections: established incoming, pending incoming (handshakes) and per peer; more are
/// refused by libp2p's connection limits.
pub const P2P_CONNECTIONS_INCOMING_MAX: u32 = 256;
pub const P2P_CONNECTIONS_PENDING_INCOMING_MAX: u32 = 64;
pub const P2P_CONNECTIONS_PER_PEER_MAX: u32 = 2;

/// Recently received event UUIDs remembered to skip duplicates before the writer channel.
pub const P2P_RECENT_UUIDS: usize = 65_536;

/// Bootstrap dial back-off: first and largest delay.
pub const P2P_BOOTSTRAP_BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const P2P_BOOTSTRAP_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How often a recurring I/O error is logged at most.
pub const IO_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// LMDB map size a new store starts with; sparse, so it costs address space, not disk. When a
/// write transaction finds the map full the writer doubles it (counter `writer_map_resizes_total`)
/// and retries the batch.
pub const STORE_MAP_BYTES_INITIAL: usize = 1 << 30;

/// Largest LMDB map the writer grows to (1 TiB); beyond it commits fail and are reported.
pub const STORE_MAP_BYTES_MAX: usize = 1 << 40;

/// LMDB reader slots: concurrent read transactions (API connections, workers, commands);
/// one more fails with MDB_READERS_FULL.
pub const STORE_READERS_MAX: u32 = API_CONNECTIONS_MAX as u32 + 64;

/// Called numbers are aggregated under at most this many bytes (LMDB keys are at most 511
/// bytes; the newest-first index adds 8).
pub const CALLED_NUMBER_KEY_BYTES_MAX: usize = 256;

/// Raw events removed by retention per write transaction, so pruning never stalls ingest.
pub const STORE_PRUNE_EVENTS_PER_TXN: usize = 1_000;

/// How often the writer looks for events older than the retention (sooner while a pass was
/// full).
pub const STORE_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Messages sampled to train the store's zstd dictionary (once per store), each cut to
/// `STORE_DICTIONARY_SAMPLE_BYTES_MAX`, together at most `STORE_DICTIONARY_SAMPLES_BYTES_MAX`.
/// The encoder waits for the training, so the bytes bound that one stall: 22 ms on 261 KB of
/// tails here, 36 ms on 517 KB, 102 ms on 2 MB (`perf/results/2026-12-07-dictionary-training.txt`).
pub const STORE_DICTIONARY_SAMPLES: usize = 1_000;
pub const STORE_DICTIONARY_SAMPLE_BYTES_MAX: usize = 2 * 1024;
pub const STORE_DICTIONARY_SAMPLES_BYTES_MAX: usize = 256 * 1024;

/// Size of the trained zstd dictionary.
pub const STORE_DICTIONARY_BYTES_MAX: usize = 16 * 1024;

/// Longest a syslog datagram send may block; on timeout the rest of the batch's syslog lines
/// are skipped (counter `writer_syslog_errors_total`).
pub const SYSLOG_SEND_TIMEOUT: Duration = Duration::from_millis(50);

// Store: writer, encoder, output thread, JSON log, codec, export.

/// How long the idle writer and the idle output thread wait for a batch before they do their
/// housekeeping anyway (retention pruning, the dashboard's rings; reopening the JSON log after
/// SIGHUP). Bounds how late that runs with no traffic, at two wake-ups a second when idle.
pub const STORE_IDLE_WAKE_INTERVAL: Duration = Duration::from_millis(500);

/// Sleep after a failed commit (other than a full map), doubling per failure from the first to
/// the largest: a passing error is retried within milliseconds, a lasting one (disk full,
/// permissions) costs at most one attempt a second, and the writer resumes within a second of it
/// clearing. Meanwhile events wait in the channel (then drop, counted: `events_dropped_total`).
pub const WRITER_COMMIT_RETRY_BACKOFF_MIN: Duration = Duration::from_millis(10);
pub const WRITER_COMMIT_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Failed commits after the event channel closed before the writer gives the batch up (about
/// 15 s with the back-off above), so that a full disk cannot keep the process from exiting; the
/// lost count is printed.
pub const WRITER_SHUTDOWN_COMMIT_ATTEMPTS_MAX: u32 = 20;

/// zstd dictionary trainings the encoder tries (each on fresh samples, when the last had too
/// little variety) before it reports once and compresses without a dictionary for good; three
/// keep a store of near-identical traffic from sampling forever.
pub const STORE_DICTIONARY_ATTEMPTS_MAX: u32 = 3;

/// Encoded batches that may wait between the encoder and the writer; when full the encoder waits
/// and the event channel fills. One keeps the writer busy (one committing, one ready) while
/// holding at most one more batch (`WRITER_BATCH_EVENTS_MAX` events) of encoded records.
pub const WRITER_ENCODED_BATCHES_MAX: usize = 1;

/// Committed batches that may wait for the output thread (JSON log, syslog); when full the
/// writer waits, so the log is never more than this many batches behind the store. One lets the
/// log writing run beside the next commit without letting it fall behind.
pub const WRITER_OUTPUT_BATCHES_MAX: usize = 1;

/// The output thread's buffer of JSON-log lines, written at each batch's end or when it holds this
/// many bytes: a few hundred lines (~1 KiB each) per write call instead of one call per line.
pub const JSON_LOG_BUFFER_BYTES: usize = 256 * 1024;

/// JSON log bytes between two page-cache trims (`posix_fadvise(DONTNEED)`), and the newest log
/// bytes never trimmed (what `tail -f` readers are still reading). At a flood's ~90 MB/s of log,
/// 8 MiB is about ten trims a second; 32 MiB is a third of a second of log.
pub const JSON_LOG_TRIM_STEP_BYTES: u64 = 8 * 1024 * 1024;
pub const JSON_LOG_KEPT_BYTES: u64 = 32 * 1024 * 1024;

/// zstd level of event tails: with the dictionary, level 1 is 7 bytes per tail larger than level
/// 3 and about a third cheaper (`STORE_BENCH_EXPLORE`, docs/benchmarks.md "Store").
pub const STORE_ZSTD_LEVEL: i32 = 1;

/// Event tails shorter than this are stored raw: a zstd frame would not pay for itself.
pub const STORE_COMPRESS_BYTES_MIN: usize = 64;

/// Events read per read transaction by `sentrypeer export`: bounds the decoded events held
/// (~4 MiB typical) and how long one read transaction pins old LMDB pages.
pub const EXPORT_CHUNK_EVENTS: usize = 4_096;

// P2P node.

/// Reader batches queued from the store reader thread to the node; when full the reader waits
/// (the events stay in the store after the `p2p` cursor). Worst case this many batches of
/// [`P2P_READ_BATCH_EVENTS`] events.
pub const P2P_READ_BATCHES_QUEUED: usize = 4;

/// Events read from the store per read transaction by the P2P reader: enough to fill several
/// messages per read, few enough to end the read transaction quickly.
pub const P2P_READ_BATCH_EVENTS: usize = 1024;

/// Longest wait of the P2P reader for a commit (and its sleep after a read error) before it
/// checks for stop and saves the cursor; bounds how long `stop` waits for it.
pub const P2P_READER_WAIT: Duration = Duration::from_millis(200);

/// How often the P2P reader saves the `p2p` cursor at most: a crash re-publishes at most a
/// second of entries.
pub const P2P_CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// The node's housekeeping tick (publishing, bootstrap dials, stop check): spreads the publish
/// budget over ten slots a second and notices a stop or a due redial within 100 ms.
pub const P2P_TICK: Duration = Duration::from_millis(100);

/// Publish burst: one second's worth, so a node that was quiet catches up without a spike.
pub const P2P_PUBLISH_MESSAGES_BURST: u32 = P2P_PUBLISH_MESSAGES_PER_SECOND;

/// How long the node waits for its first listen address; then start-up fails.
pub const P2P_LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `p2p::start` waits for the node thread to report it is listening (key load, swarm
/// build, [`P2P_LISTEN_TIMEOUT`]); then start-up fails.
pub const P2P_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections with no traffic are closed after this: five minutes keep the mesh through quiet
/// spells (gossipsub heartbeats count as traffic) and shed dead peers.
pub const P2P_IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);

/// Peers found through Kademlia are dialed only while fewer than this many are connected: enough
/// for a healthy gossipsub mesh (which wants 6-12), well under
/// [`P2P_CONNECTIONS_INCOMING_MAX`].
pub const P2P_DISCOVERED_PEERS_DIALED_MAX: usize = 50;

// API.

/// How long `ApiHandle::stop` lets open requests finish before it drops their connections.
pub const API_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pause after an accept error (e.g. out of file descriptors) before accepting again, so that
/// the error does not spin a core while connections close.
pub const API_ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Capacity (`maxelem`) of the ipset sets that `?format=ipset` creates: room for ten full pages
/// of [`API_PAGE_ITEMS_MAX`], so repeated loads of new pages fit.
pub const API_IPSET_ELEMENTS_MAX: usize = 1_048_576;

/// Bytes per rendered list item, to size a list's output buffer once (an IPv4 item with its
/// timestamp is about 108, a called number's about 93); a larger list just grows the buffer.
pub const API_LIST_ITEM_BYTES_TYPICAL: usize = 112;

// App.

/// How often `-v` prints its one-line status.
pub const STATUS_LINE_INTERVAL: Duration = Duration::from_secs(10);

// NATS hub (`--nats-ingest`, `nats/ingest.rs`): the fleet's events from JetStream into the store.

/// Largest message payload the hub decodes; a larger one is acknowledged, dropped and counted
/// (`nats_ingest_rejected_total{reason="oversize"}`). NATS's own default `max_payload` (1 MiB):
/// a rendered event is at most ~400 KiB (a 64 KiB SIP message whose every byte became a JSON
/// escape), so no event a sensor publishes is refused.
pub const NATS_INGEST_PAYLOAD_BYTES_MAX: usize = 1024 * 1024;

/// How far in the future a fleet event's timestamp may be (sensor clock skew); later is rejected
/// (`reason="future"`). The P2P value.
pub const NATS_INGEST_FUTURE_SKEW: Duration = Duration::from_secs(60);

/// Oldest fleet event accepted (and never older than `--retention-days`); older is rejected
/// (`reason="stale"`). JetStream holds a sensor's backlog for days while the hub is away, not a
/// year: older is a broken clock. An event past retention would be pruned before it is
/// acknowledged.
pub const NATS_INGEST_EVENT_AGE_MAX: Duration = Duration::from_secs(365 * 86_400);

/// Messages the hub holds unacknowledged at most (its durable consumer's `max_ack_pending`, and
/// the worker stops pulling at it). Two default writer batches, so the writer always finds a
/// full batch while the previous one is being acknowledged; each costs an ack subject and a UUID
/// (the events themselves wait in the writer's bounded channel).
pub const NATS_INGEST_IN_FLIGHT_MAX: usize = 2 * WRITER_BATCH_EVENTS_DEFAULT;

/// Messages asked of the server per pull request.
pub const NATS_INGEST_PULL_BATCH: usize = 1_024;

/// JetStream redelivers a message the hub has not acknowledged within this time (the hub died,
/// or its writer is stuck); the store skips the repeat by UUID.
pub const NATS_INGEST_ACK_WAIT: Duration = Duration::from_secs(30);

/// With messages in flight, how often the hub worker offers refused events to the full writer
/// channel again and looks at the writer's commit watch (one mutex read); a moved watch means a
/// UUID look-up of the messages awaiting their commit. Adds at most this much to an
/// acknowledgement, well under the writer's 50 ms batch interval.
pub const NATS_INGEST_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// The hub worker looks its waiting messages up at least this often even when the commit watch
/// did not move (a batch of only duplicates publishes no new key).
pub const NATS_INGEST_RECHECK_INTERVAL: Duration = Duration::from_millis(100);

/// First wait after a failed connect or consumer set-up; doubles per consecutive failure up to
/// `NATS_INGEST_BACKOFF_MAX`, forever.
pub const NATS_INGEST_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
pub const NATS_INGEST_BACKOFF_MAX: Duration = Duration::from_secs(5);

const _: () = assert!(NATS_INGEST_PULL_BATCH <= NATS_INGEST_IN_FLIGHT_MAX);
const _: () =
    assert!(NATS_INGEST_BACKOFF_INITIAL.as_millis() <= NATS_INGEST_BACKOFF_MAX.as_millis());

const _: () = assert!(CALLED_NUMBER_KEY_BYTES_MAX + 8 <= 511);
const _: () = assert!(API_URI_BYTES_MAX < API_REQUEST_HEAD_BYTES_MAX);
const _: () = assert!(API_REQUEST_HEAD_BYTES_MAX >= 8 * 1024);
const _: () = assert!(API_EVENTS_PAGE_ITEMS_DEFAULT <= API_EVENTS_PAGE_ITEMS_MAX);
const _: () = assert!(STORE_MAP_BYTES_INITIAL <= STORE_MAP_BYTES_MAX);
const _: () = assert!(SIP_MESSAGE_BYTES_MAX <= UDP_DATAGRAM_BYTES_MAX + 1);
const _: () = assert!(WRITER_BATCH_EVENTS_DEFAULT <= WRITER_BATCH_EVENTS_MAX);
const _: () = assert!(REPLY_BURST >= REPLY_RATE_PER_SECOND);
const _: () = assert!(UDP_RCVBUF_BYTES_DEFAULT <= UDP_RCVBUF_BYTES_MAX);
const _: () = assert!(TCP_IDLE_TIMEOUT.as_secs() <= TCP_IDLE_TIMEOUT_MAX.as_secs());
const _: () = assert!(REPLY_RATE_PER_SECOND <= REPLY_RATE_PER_SECOND_MAX);
const _: () = assert!(REPLY_BURST <= REPLY_BURST_MAX);
const _: () = assert!(WRITER_BATCH_INTERVAL.as_millis() <= WRITER_BATCH_INTERVAL_MAX.as_millis());
const _: () = assert!(TCP_CONNECTIONS_PER_IP_MAX <= TCP_CONNECTIONS_PER_SHARD_MAX);
const _: () = assert!(WEBHOOK_BACKOFF_INITIAL.as_millis() <= WEBHOOK_BACKOFF_MAX.as_millis());
const _: () = assert!(WEBHOOK_READ_EVENTS_MAX >= 1);
const _: () = assert!(
    WRITER_COMMIT_RETRY_BACKOFF_MIN.as_millis() <= WRITER_COMMIT_RETRY_BACKOFF_MAX.as_millis()
);
const _: () = assert!(JSON_LOG_TRIM_STEP_BYTES <= JSON_LOG_KEPT_BYTES);
const _: () = assert!(API_IPSET_ELEMENTS_MAX >= 10 * API_PAGE_ITEMS_MAX);
const _: () = assert!(P2P_LISTEN_TIMEOUT.as_millis() < P2P_START_TIMEOUT.as_millis());

// Sensor

/// How often a shard's main task looks at the stop flag. A stop takes at most this long to reach
/// the socket tasks; 20 wake-ups a second cost an idle shard nothing measurable.
pub const STOP_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// `recvmmsg` batches a stopping shard still drains per UDP socket at most (4,096 x
/// `RECV_BATCH_DATAGRAMS` = 131,072 datagrams): more than an 8 MiB receive buffer holds of the
/// smallest SIP requests, so a stop empties the queue, yet it ends under a flood that never lets
/// the socket go idle.
pub const STOP_DRAIN_BATCHES_MAX: usize = 4_096;

/// Bytes read from a TCP/TLS connection at once, allocated once per connection: 16 KiB, the
/// largest TLS record's plaintext, so one read can take a whole record.
pub const STREAM_READ_BYTES: usize = 16 * 1024;

/// Attempts to bind a port-0 listen address when the port the kernel picked for UDP is taken for
/// TCP (or on another shard); each attempt picks a new random port, so 8 failures in a row mean
/// something else is wrong.
pub const PORT_ZERO_BIND_ATTEMPTS: usize = 8;

/// Listen backlog of each TCP/TLS listener, in connections: enough for a burst of scanner
/// connects while a shard is busy; the kernel caps it at `net.core.somaxconn` anyway.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Bytes of locked memory a glommio executor may pin: its default `io_memory` of 10 MiB plus the
/// rings; the soft RLIMIT_MEMLOCK is raised toward the hard limit when below this per shard.
pub const GLOMMIO_MEMLOCK_BYTES_PER_SHARD: u64 = 12 << 20;

/// Pause after a transient socket error (ENOBUFS, ENOMEM, EMFILE, ...) before the socket task
/// tries again: a persistent one then costs at most 100 calls a second, and at 100k datagrams/s
/// the 8 MiB default receive buffer holds far longer than 10 ms.
pub const IO_ERROR_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Messages or reads a TCP/TLS connection is served before its task yields to the shard's other
/// tasks, so a connection that always has bytes ready cannot starve them; the same count as a
/// UDP socket's `SHARD_BATCH_BEFORE_YIELD`.
pub const STREAM_READS_BEFORE_YIELD: usize = SHARD_BATCH_BEFORE_YIELD;

// SIP source proof (issue 18): the keyed To-tags and Digest nonces of `sip::proof`, the
// challenge reply of `sip::reply`.

/// Width of a proof token's time bucket, in seconds: the token names its bucket, so freshness is
/// known to the minute. Divides a day, so each bucket belongs to one daily key.
pub const PROOF_BUCKET_S: u64 = 60;

/// How long a To-tag or nonce of ours stays valid, in seconds (counted in whole buckets from the
/// bucket it was made in): a To-tag must outlive the call it names, up to its BYE (a scanner's
/// test call rarely lasts minutes, an hour covers long ones), and a Digest client answers a
/// challenge within seconds. Older tokens of ours are `Stale`, not proof.
pub const PROOF_TOKEN_FRESH_S: u64 = 3_600;

/// How far in the future a token's bucket may lie, in seconds: tokens are made and checked on the
/// same node with one clock, so only a bucket boundary crossed between shards (or a small clock
/// step back) needs room; a token from further ahead is not one of ours.
pub const PROOF_FUTURE_SKEW_S: u64 = 120;

/// MAC bytes a proof token carries (hex: twice as many characters): 80 bits, far beyond what a
/// spoofer guessing over UDP can try, while the whole token stays 28 characters.
pub const PROOF_MAC_BYTES: usize = 10;

const _: () = assert!(86_400 % PROOF_BUCKET_S == 0);
const _: () = assert!(PROOF_TOKEN_FRESH_S >= PROOF_BUCKET_S);
const _: () = assert!(PROOF_MAC_BYTES >= 8 && PROOF_MAC_BYTES <= 32);

// `sentrypeer top` (issue 21): the terminal view of a running sensor's HTTP API.

/// How often `sentrypeer top` asks the API: once a second, as `top` and `vector top` redraw; the
/// four requests it makes are cheap next to the API's own limits.
pub const TOP_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Longest wait of `top` for a key before it redraws (its "updated N s ago" clock ticks): short
/// enough that `q` and a signal end it at once, long enough to cost nothing while idle.
pub const TOP_REDRAW_INTERVAL: Duration = Duration::from_millis(250);

/// Time one `top` request may take in total (connect, send, whole body): a sensor that does not
/// answer within it is shown as unreachable and asked again on the next poll.
pub const TOP_HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest response body `top` reads: the events page below at the worst case of
/// `EVENT_MESSAGE_BYTES_MAX` per event, JSON-escaped, fits; a larger body is an error shown in the
/// view, never read into memory.
pub const TOP_RESPONSE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Events `top` asks of `/events` to count user agents: 200 x 64 KiB worst case stays under
/// `TOP_RESPONSE_BYTES_MAX`, and 200 recent events show which user agents are busy.
pub const TOP_EVENTS_LIMIT: usize = 200;

/// Items `top` asks of `/ip-addresses` and `/numbers`: enough to rank the busy ones of the window
/// (lists are newest first) while a body stays about 100 KiB (`API_LIST_ITEM_BYTES_TYPICAL`).
pub const TOP_LIST_ITEMS: usize = 1_000;

/// The window, in seconds, of `top`'s source IP, called number and user agent lists.
pub const TOP_WINDOW_S: u64 = 300;

/// Points of event-rate history `top` keeps (one per poll): ten minutes, wider than any sparkline
/// a terminal shows.
pub const TOP_HISTORY_POINTS: usize = 600;

/// Prometheus samples `top` parses from one `/metrics` body (the sensor exposes about 100); lines
/// beyond it are ignored.
pub const TOP_METRIC_SAMPLES_MAX: usize = 4_096;

/// Characters of an attacker-controlled string (user agent, number) `top` shows; longer ones are
/// cut with `…`.
pub const TOP_STRING_CHARS_MAX: usize = 96;

/// Rows a `top` list keeps (ranked); the view shows as many as fit.
pub const TOP_LIST_ROWS_MAX: usize = 100;

/// Smallest terminal `top` draws its panes in, in columns and rows; a smaller one is told so.
pub const TOP_MIN_COLUMNS: u16 = 80;
pub const TOP_MIN_ROWS: u16 = 24;

const _: () = assert!(TOP_EVENTS_LIMIT <= API_EVENTS_PAGE_ITEMS_MAX);
const _: () = assert!(TOP_LIST_ITEMS <= API_PAGE_ITEMS_MAX);
const _: () =
    assert!((TOP_EVENTS_LIMIT * EVENT_MESSAGE_BYTES_MAX) as u64 <= TOP_RESPONSE_BYTES_MAX);

// Dashboard aggregates (the writer's time buckets, `store/dashboard.rs`) and their endpoints.

/// How long per-minute buckets are kept: the 1-hour chart needs 60 of them; two hours leave a
/// margin for clock steps and late peer events. Older ones are pruned every
/// `DASHBOARD_PRUNE_INTERVAL` (and never written).
pub const DASHBOARD_MINUTE_BUCKETS_KEPT: Duration = Duration::from_secs(2 * 3_600);

/// How long per-hour buckets are kept: the 7-day chart needs 168, plus a day of margin.
pub const DASHBOARD_HOUR_BUCKETS_KEPT: Duration = Duration::from_secs(8 * 86_400);

/// How long per-day buckets are kept: the 90-day chart needs 90, plus one.
pub const DASHBOARD_DAY_BUCKETS_KEPT: Duration = Duration::from_secs(91 * 86_400);

/// Keys counted per bucket and dimension (IP, number, user agent, ...); beyond it the smallest
/// counts are folded into the bucket's "other" count (counter
/// `writer_dashboard_keys_folded_total{dimension}`). 100 keeps a top 10 over many buckets close
/// to exact while one value stays a few KiB, rewritten once per batch.
pub const DASHBOARD_BUCKET_KEYS_MAX: usize = 100;

/// Bytes of a key (user agent, number, method) kept in the dashboard counts; longer keys are
/// counted under their first this many bytes.
pub const DASHBOARD_KEY_BYTES_MAX: usize = 256;

/// Items of `/dashboard/api/top`.
pub const DASHBOARD_TOP_ITEMS_MAX: usize = 10;

/// Recent event keys kept per source IP and per called number (the detail views' events): one
/// small LMDB value per key, updated once per batch that saw it.
pub const DASHBOARD_RECENT_EVENTS_MAX: usize = 20;

/// Under a flood the writer writes the recent-event rings to the store at most this often (a
/// batch that adds to them in between leaves them pending in memory): rewriting the rings of
/// thousands of distinct numbers per commit cost 0.5 us of the writer's CPU per event.
pub const DASHBOARD_RECENT_FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// Batches smaller than this (a light load) write the rings in their own commit.
pub const DASHBOARD_RECENT_DEFER_BATCH_MIN: usize = 1_024;

/// Distinct IPs and numbers whose rings may wait in memory; reaching it flushes at once. With
/// at most 40 event keys per ring between flushes, and the ~50,000 events a flood brings in
/// one interval, that is a few MiB.
pub const DASHBOARD_RECENT_PENDING_KEYS_MAX: usize = 16_384;

/// Events `/dashboard/api/feed` returns without a cursor, and at most with one.
pub const DASHBOARD_FEED_EVENTS_INITIAL: usize = 20;
pub const DASHBOARD_FEED_EVENTS_MAX: usize = 50;

/// How often the writer removes dashboard buckets older than they are kept (one small write
/// transaction of range deletes).
pub const DASHBOARD_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

const _: () = assert!(DASHBOARD_KEY_BYTES_MAX < 511);
const _: () = assert!(DASHBOARD_BUCKET_KEYS_MAX <= u16::MAX as usize);
const _: () = assert!(DASHBOARD_TOP_ITEMS_MAX <= DASHBOARD_BUCKET_KEYS_MAX);
const _: () = assert!(DASHBOARD_FEED_EVENTS_INITIAL <= DASHBOARD_FEED_EVENTS_MAX);

// NATS (the publisher, and the connection the hub shares).

/// `--nats-url` values at most: a cluster's seed list, not a fleet.
pub const NATS_URLS_MAX: usize = 16;

/// Bytes of `--nats-subject` at most; the node id (36 bytes) and a dot are appended, and NATS
/// subjects stay well under the server's default 1 MiB payload with room to spare.
pub const NATS_SUBJECT_PREFIX_BYTES_MAX: usize = 128;

/// Bytes of `--nats-stream` at most: the server makes a directory of the name, and NATS advises
/// short names (32 is what its tooling keeps to; 64 leaves room).
pub const NATS_STREAM_NAME_BYTES_MAX: usize = 64;

/// Time one TCP (and TLS) connect to a NATS server may take before the client tries the next.
pub const NATS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reconnect waits of the NATS client: `NATS_RECONNECT_DELAY_STEP` per consecutive failed
/// attempt, capped at `NATS_RECONNECT_DELAY_MAX`, forever (a sensor outlives a server outage).
pub const NATS_RECONNECT_DELAY_STEP: Duration = Duration::from_millis(100);
pub const NATS_RECONNECT_DELAY_MAX: Duration = Duration::from_secs(5);

/// Time JetStream has to acknowledge one publish (or answer one API request) before the
/// publisher counts it failed and retries (counter `nats_publish_retried_total`).
pub const NATS_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes awaiting a JetStream acknowledgement at most: enough to keep a loopback or LAN
/// server busy on a loaded machine (with 256, and a window that emptied at every store read,
/// the publisher waited on acknowledgements in a quarter of its samples:
/// `perf/results/2026-12-06-nats-profile.txt`), while a stalled server holds at most this many
/// rendered events (~1 KiB each, 1 MiB in all) in the publisher.
pub const NATS_PUBLISH_IN_FLIGHT_MAX: usize = 1_024;

/// Events read from the store per read transaction by the publisher (the next read happens
/// while the previous ones await their acknowledgements).
pub const NATS_READ_EVENTS_MAX: usize = 1_024;

/// The publisher renders each event's JSON into chunks of this many bytes, split off without a
/// copy; a new chunk is taken when less than `NATS_RENDER_BYTES_MIN` is left (an event's JSON
/// is ~1 KiB; a bigger one only grows the chunk).
pub const NATS_RENDER_CHUNK_BYTES: usize = 64 * 1024;
pub const NATS_RENDER_BYTES_MIN: usize = 4 * 1024;

/// First wait after a failed publish round; it doubles per consecutive failure (with jitter) up
/// to `NATS_BACKOFF_MAX`: retries never end, but come at least every 10 s once the server is
/// back.
pub const NATS_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
pub const NATS_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The publisher's cursor (`meta` key `cursor/nats`) is written after this many acknowledged
/// events or this long after the last write, and at stop: a crash republishes at most that
/// much, and JetStream drops the repeats by `Nats-Msg-Id` within its duplicate window (a hub
/// also skips them by UUID). Each write is a synced LMDB transaction on the publisher's thread
/// that also holds the writer's lock: at 1,000 the publisher was in fsync in 6% of its samples
/// during a catch-up (`perf/results/2026-12-06-nats-profile.txt`); at 16,384 it writes one to
/// three times a second at the 16k-40k/s it reaches here.
pub const NATS_CURSOR_PERSIST_EVENTS: u64 = 16_384;
pub const NATS_CURSOR_PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// Longest single wait of the idle publisher on the commit watch before it checks for a stop.
pub const NATS_IDLE_WAIT: Duration = Duration::from_millis(100);

/// Time the publisher's stop gives the last publishes in flight to be acknowledged.
pub const NATS_STOP_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

const _: () = assert!(NATS_BACKOFF_INITIAL.as_millis() <= NATS_BACKOFF_MAX.as_millis());
const _: () = assert!(NATS_PUBLISH_IN_FLIGHT_MAX >= 1);
const _: () = assert!(NATS_READ_EVENTS_MAX >= NATS_PUBLISH_IN_FLIGHT_MAX);
