//! Peer to peer: a libp2p node that shares committed local events and stores validated peer
//! events through the writer (compat.md §7, `docs/p2p.md` for the wire protocol).
//!
//! Parts: [`entry`] (pure: the message schema and the validator of untrusted bytes),
//! [`outbox`] (pure: coalescing of local events and packing into messages), `node` (the libp2p
//! swarm on its own thread and tokio runtime: TCP + noise + yamux, identify, Kademlia, gossipsub)
//! and a reader thread that waits on [`CommitWatch`] and reads the store after the `p2p` cursor.
//! [`start`] binds the listen address before it returns; the bootstrap peer is dialled in the
//! background with back-off, so an unreachable one never delays start-up or capture.
//!
//! Never: stores or forwards an unvalidated entry; re-publishes a peer's event as ours (only
//! events whose node id is ours are read for publishing); blocks the writer or a shard.
//!
//! Limits: the `P2P_*` constants in [`crate::config::limits`].

pub mod entry;
mod key;
mod node;
pub mod outbox;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::P2pConfig;
use crate::event::Event;
use crate::metrics::{self, Counter, Gauge, Render};
use crate::store::{CommitWatch, Store};

pub use entry::{EntryError, ValidEntry, parse_message};

/// The gossipsub topic events are shared on.
pub const TOPIC: &str = "sentrypeer/bad_actors/1";

/// The Kademlia protocol name.
pub const KAD_PROTOCOL: &str = "/sentrypeer/kad/1.0.0";

/// The identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/sentrypeer/id/1.0.0";

/// The delivery cursor name in the store: every local event up to this key is published.
pub const CURSOR: &str = "p2p";

/// Set to 1 in the store's cursors once P2P has run (so that cursor 0 means "from the start").
const CURSOR_STARTED: &str = "p2p_started";

/// Errors starting the node.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error("p2p key file {path}: {source}")]
    Key {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("p2p key file {0} does not hold an ed25519 key")]
    KeyDecode(PathBuf),
    #[error("p2p: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("p2p transport: {0}")]
    Transport(String),
    #[error("p2p: cannot listen on {address}: {reason}")]
    Listen { address: String, reason: String },
    #[error("p2p bootstrap address {0:?} is neither host[:port] nor a multiaddr")]
    Bootstrap(String),
    #[error("p2p: cannot start thread: {0}")]
    Spawn(std::io::Error),
    #[error("p2p: the node thread ended during start-up")]
    Startup,
}

/// The node's counters (rendered with the `p2p_` prefix).
#[derive(Debug, Default)]
pub struct P2pMetrics {
    /// Connected peers.
    pub peers: Gauge,
    /// Peers subscribed to the topic.
    pub topic_peers: Gauge,
    /// Messages accepted from peers / published by us.
    pub messages_in_total: Counter,
    pub messages_out_total: Counter,
    /// Entries accepted / published, and the events they stand for (sum of `count`).
    pub entries_in_total: Counter,
    pub entries_in_events_total: Counter,
    pub entries_out_total: Counter,
    pub entries_out_events_total: Counter,
    /// Payload bytes of received (all) / published messages.
    pub bytes_in_total: Counter,
    pub bytes_out_total: Counter,
    /// Rejected messages by [`EntryError`] (indexed by [`EntryError::index`]).
    pub rejected: [Counter; EntryError::ALL.len()],
    /// Messages ignored because the forwarding peer was over its rate.
    pub rate_limited_total: Counter,
    /// Entries skipped because their UUID was received recently.
    pub duplicates_total: Counter,
    /// Valid entries dropped because the writer channel was full.
    pub events_dropped_total: Counter,
    /// Local events not shareable (a field the protocol does not allow).
    pub unshareable_total: Counter,
    /// Publish attempts that failed for a reason other than "no peers yet".
    pub publish_errors_total: Counter,
    /// Entries waiting to be published.
    pub pending_entries: Gauge,
    /// Failed bootstrap dials.
    pub bootstrap_failures_total: Counter,
}

impl P2pMetrics {
    /// Rejected messages for one reason.
    pub fn rejected(&self, reason: EntryError) -> u64 {
        self.rejected.get(reason.index()).map_or(0, Counter::get)
    }

    /// Rejected messages, all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(Counter::get).sum()
    }
}

impl Render for P2pMetrics {
    fn render(&self, out: &mut String) {
        metrics::write_gauge(out, "p2p_peers", "Connected P2P peers.", self.peers.get());
        metrics::write_gauge(
            out,
            "p2p_topic_peers",
            "Peers subscribed to the events topic.",
            self.topic_peers.get(),
        );
        let counters: [(&str, &str, &Counter); 13] = [
            (
                "p2p_messages_in_total",
                "Messages accepted from peers.",
                &self.messages_in_total,
            ),
            (
                "p2p_messages_out_total",
                "Messages published.",
                &self.messages_out_total,
            ),
            (
                "p2p_entries_in_total",
                "Entries accepted from peers.",
                &self.entries_in_total,
            ),
            (
                "p2p_entries_in_events_total",
                "Events the accepted entries stand for (sum of count).",
                &self.entries_in_events_total,
            ),
            (
                "p2p_entries_out_total",
                "Entries published.",
                &self.entries_out_total,
            ),
            (
                "p2p_entries_out_events_total",
                "Local events the published entries stand for.",
                &self.entries_out_events_total,
            ),
            (
                "p2p_bytes_in_total",
                "Payload bytes received.",
                &self.bytes_in_total,
            ),
            (
                "p2p_bytes_out_total",
                "Payload bytes published.",
                &self.bytes_out_total,
            ),
            (
                "p2p_rate_limited_total",
                "Messages ignored: the forwarding peer was over its rate.",
                &self.rate_limited_total,
            ),
            (
                "p2p_duplicates_total",
                "Received entries skipped as recently seen.",
                &self.duplicates_total,
            ),
            (
                "p2p_events_dropped_total",
                "Valid received entries dropped: writer channel full.",
                &self.events_dropped_total,
            ),
            (
                "p2p_unshareable_total",
                "Local events not shareable under the protocol limits.",
                &self.unshareable_total,
            ),
            (
                "p2p_publish_errors_total",
                "Publish attempts that failed (other than no peers).",
                &self.publish_errors_total,
            ),
        ];
        for (name, help, counter) in counters {
            metrics::write_counter(out, name, help, counter.get());
        }
        metrics::write_header(
            out,
            "p2p_messages_rejected_total",
            "counter",
            "Messages rejected by validation, by reason.",
        );
        for reason in EntryError::ALL {
            let mut labels = String::new();
            let _ = write!(labels, "reason=\"{}\"", reason.as_str());
            metrics::write_sample(
                out,
                "p2p_messages_rejected_total",
                &labels,
                self.rejected(reason),
            );
        }
        metrics::write_gauge(
            out,
            "p2p_pending_entries",
            "Entries waiting to be published.",
            self.pending_entries.get(),
        );
        metrics::write_counter(
            out,
            "p2p_bootstrap_failures_total",
            "Failed bootstrap dials.",
            self.bootstrap_failures_total.get(),
        );
    }
}

/// State shared between the handle and the threads.
#[derive(Debug, Default)]
struct Shared {
    listen_addrs: Mutex<Vec<String>>,
    stop: AtomicBool,
    /// The store key through which local events are published (for the cursor).
    published_through: AtomicU64,
}

/// The running node.
pub struct P2pHandle {
    peer_id: String,
    metrics: Arc<P2pMetrics>,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    node: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for P2pHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pHandle")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl P2pHandle {
    /// This node's libp2p peer id (base58).
    pub fn peer_id(&self) -> String {
        self.peer_id.clone()
    }

    /// The multiaddrs the node listens on (with the real port).
    pub fn listen_addrs(&self) -> Vec<String> {
        self.shared
            .listen_addrs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn metrics(&self) -> Arc<P2pMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Stops the node and the reader and saves the `p2p` cursor.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for thread in [self.node.take(), self.reader.take()].into_iter().flatten() {
            if thread.join().is_err() {
                eprintln!("sentrypeer: a p2p thread panicked");
            }
        }
    }
}

impl Drop for P2pHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How long [`start`] waits for the listener.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the node: loads or creates the key beside the store, binds `config.listen`, then
/// runs in the background (bootstrap, publishing, receiving). Received valid events go to
/// `events` (the writer channel; never blocks: a full channel drops and counts).
pub fn start(
    config: &P2pConfig,
    store: Store,
    events: crossbeam_channel::Sender<Event>,
    commits: Arc<CommitWatch>,
    debug: bool,
) -> Result<P2pHandle, P2pError> {
    let keypair = key::load_or_create(&key::key_path(store.path()))?;
    let bootstrap = node::parse_bootstrap(&config.bootstrap)?;
    let metrics = Arc::new(P2pMetrics::default());
    let shared = Arc::new(Shared::default());
    let (cursor, first_start) = {
        let reader = store.read()?;
        if reader.cursor(CURSOR_STARTED)? == 0 {
            // First start with -p: share what is collected from now on, not the whole history.
            (reader.last_key()?, true)
        } else {
            (reader.cursor(CURSOR)?, false)
        }
    };
    if first_start {
        store.set_cursor(CURSOR, cursor)?;
        store.set_cursor(CURSOR_STARTED, 1)?;
    }
    shared.published_through.store(cursor, Ordering::Release);
    let (batches_tx, batches_rx) = tokio::sync::mpsc::channel(node::READ_BATCHES_QUEUED);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let peer_id = libp2p::PeerId::from(keypair.public()).to_string();
    let node_settings = node::Settings {
        keypair,
        listen: config.listen,
        bootstrap,
        own_node_id: store.node_id(),
        read_key: cursor,
        debug,
    };
    let node_metrics = Arc::clone(&metrics);
    let node_shared = Arc::clone(&shared);
    let node = std::thread::Builder::new()
        .name("p2p".into())
        .spawn(move || {
            node::run(
                node_settings,
                events,
                batches_rx,
                stop_rx,
                ready_tx,
                node_metrics,
                node_shared,
            );
        })
        .map_err(P2pError::Spawn)?;
    match ready_rx.recv_timeout(START_TIMEOUT) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            let _ = node.join();
            return Err(error);
        }
        Err(_) => {
            shared.stop.store(true, Ordering::Release);
            let _ = stop_tx.send(());
            let _ = node.join();
            return Err(P2pError::Startup);
        }
    }
    let reader_shared = Arc::clone(&shared);
    let reader = std::thread::Builder::new()
        .name("p2p-reader".into())
        .spawn(move || node::read_store(store, commits, batches_tx, reader_shared, cursor))
        .map_err(P2pError::Spawn);
    let mut handle = P2pHandle {
        peer_id,
        metrics,
        shared,
        stop: Some(stop_tx),
        node: Some(node),
        reader: None,
    };
    handle.reader = Some(reader?);
    if debug {
        eprintln!("sentrypeer: p2p peer id {}", handle.peer_id);
        for address in handle.listen_addrs() {
            eprintln!("sentrypeer: p2p listening on {address}");
        }
    }
    Ok(handle)
}
