//! `sentrypeer-loadgen`: scanner-like SIP traffic for benchmarking SentryPeer, and a bare
//! `recvmmsg` sink that gives the loopback limit to compare against.
//!
//! Data flow: [`message::MessageFactory`] writes sipvicious-style requests (and, on request, a
//! share of malformed packets and SIP responses) into caller-owned buffers; [`udp`] sends them in
//! `sendmmsg` batches, [`stream`] pipelines them over TCP or TLS connections; both are paced by
//! [`pacing::Pacer`] and summarised in a [`report::Report`]. [`sink`] only counts what arrives.
//! [`reply`] frames replies and recovers the sequence number from the Call-ID so that
//! [`report::LatencyTracker`] can time them. [`progress`] draws the live line on stderr from
//! counters the send loops publish now and then.
//!
//! Never: sends to an address that is not loopback unless the user names it
//! (`--allow-non-loopback`, checked in [`target`]), runs without a bound (a count or a duration
//! is required), or depends on the `sentrypeer` crate (it builds its own SIP bytes).
//!
//! Limits: [`plan::BATCH_DATAGRAMS_MAX`], [`sink::SINK_BATCH_DATAGRAMS`],
//! [`report::LATENCY_SLOTS`], [`stream::STREAM_PENDING_BYTES_MAX`].

pub mod message;
pub mod mmsg;
pub mod pacing;
pub mod plan;
pub mod progress;
pub mod reply;
pub mod report;
pub mod rng;
pub mod sink;
pub mod stream;
pub mod target;
pub mod tls;
pub mod udp;
