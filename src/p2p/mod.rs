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
//! Never: stores or forwards an unvalidated entry, or an entry whose source IP is in
//! `--ignore-ip` (dropped and counted); re-publishes a peer's event as ours (only
//! events whose node id is ours are read for publishing); blocks the writer or a shard.
//!
//! Limits: the `P2P_*` constants in [`crate::config::limits`].
//!
//! The libp2p parts (`handle`, `key`, `node`) need the default cargo feature `p2p`; without it
//! (a lighter build, e.g. for the benchmarks) [`start`] refuses `-p` with one line.

#[cfg(not(feature = "p2p"))]
mod absent;
#[cfg(feature = "p2p")]
pub mod behaviour;
pub mod entry;
#[cfg(feature = "p2p")]
mod handle;
#[cfg(feature = "p2p")]
mod key;
#[cfg(feature = "p2p")]
mod node;
pub mod outbox;

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::metrics::{self, Counter, Gauge, Render};

#[cfg(not(feature = "p2p"))]
pub use absent::{P2pHandle, start};
pub use entry::{EntryError, ValidEntry, parse_message};
#[cfg(feature = "p2p")]
use handle::Shared;
#[cfg(feature = "p2p")]
pub use handle::{P2pHandle, start};

/// The gossipsub topic events are shared on.
pub const TOPIC: &str = "sentrypeer/bad_actors/1";

/// The Kademlia protocol name.
pub const KAD_PROTOCOL: &str = "/sentrypeer/kad/1.0.0";

/// The identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/sentrypeer/id/1.0.0";

/// The delivery cursor name in the store: every local event up to this key is published.
pub const CURSOR: &str = "p2p";

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
    #[error("p2p: this sentrypeer was built without the `p2p` cargo feature")]
    NotBuilt,
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
    /// Received entries dropped because their source IP is in `--ignore-ip`.
    pub ignored_sources_total: Counter,
    /// Local events not shared under `--verified-only`: their source was not verified.
    pub unverified_not_shared_total: Counter,
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

    /// The plain counters: Prometheus name, help text, counter.
    fn counters(&self) -> [(&'static str, &'static str, &Counter); 13] {
        [
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
        ]
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
        for (name, help, counter) in self.counters() {
            metrics::write_counter(out, name, help, counter.get());
        }
        metrics::write_counter(
            out,
            "p2p_ignored_source_total",
            "Received entries dropped: their source IP is in --ignore-ip.",
            self.ignored_sources_total.get(),
        );
        metrics::write_counter(
            out,
            "p2p_unverified_not_shared_total",
            "Local events not shared under --verified-only: their source was not verified.",
            self.unverified_not_shared_total.get(),
        );
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
