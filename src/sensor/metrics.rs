//! The sensor's counters: one cache-padded [`ShardMetrics`] per shard, relaxed atomics, summed by
//! [`SensorMetrics`] when rendered.
//!
//! Never: shares a cache line between shards, takes a lock.

use crate::metrics::{Counter, Render, write_counter, write_gauge, write_header, write_sample};

/// One shard's counters (written by that shard only).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardMetrics {
    pub datagrams_received: Counter,
    pub bytes_received: Counter,
    pub events: Counter,
    pub non_requests_empty: Counter,
    pub non_requests_keepalive: Counter,
    pub non_requests_response: Counter,
    pub non_requests_garbage: Counter,
    pub messages_oversize: Counter,
    pub events_dropped: Counter,
    pub replies_sent: Counter,
    pub replies_rate_limited: Counter,
    /// Replies not sent: unsafe source address, build refused (ACK, missing headers) or a send
    /// error.
    pub replies_skipped: Counter,
    pub connections_accepted: Counter,
    pub connections_closed: Counter,
    pub connections_refused_limit: Counter,
    pub connections_idle_timeouts: Counter,
    pub tls_handshake_failures: Counter,
    pub receive_errors: Counter,
}

/// All shards' counters.
#[derive(Debug)]
pub struct SensorMetrics {
    shards: Box<[ShardMetrics]>,
}

/// The sums over all shards, for tests and the status line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SensorTotals {
    pub datagrams_received: u64,
    pub bytes_received: u64,
    pub events: u64,
    pub non_requests_empty: u64,
    pub non_requests_keepalive: u64,
    pub non_requests_response: u64,
    pub non_requests_garbage: u64,
    pub messages_oversize: u64,
    pub events_dropped: u64,
    pub replies_sent: u64,
    pub replies_rate_limited: u64,
    pub replies_skipped: u64,
    pub connections_accepted: u64,
    pub connections_closed: u64,
    pub connections_refused_limit: u64,
    pub connections_idle_timeouts: u64,
    pub tls_handshake_failures: u64,
    pub receive_errors: u64,
}

impl SensorTotals {
    /// Connections open now (accepted and not yet closed).
    pub fn connections_open(&self) -> u64 {
        self.connections_accepted
            .saturating_sub(self.connections_closed)
    }
}

impl SensorMetrics {
    pub(crate) fn new(shard_count: usize) -> Self {
        Self {
            shards: (0..shard_count).map(|_| ShardMetrics::default()).collect(),
        }
    }

    /// Shard `index`'s counters.
    pub fn shard(&self, index: usize) -> &ShardMetrics {
        &self.shards[index]
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Every counter summed over the shards.
    pub fn totals(&self) -> SensorTotals {
        let mut t = SensorTotals::default();
        for s in &self.shards {
            t.datagrams_received += s.datagrams_received.get();
            t.bytes_received += s.bytes_received.get();
            t.events += s.events.get();
            t.non_requests_empty += s.non_requests_empty.get();
            t.non_requests_keepalive += s.non_requests_keepalive.get();
            t.non_requests_response += s.non_requests_response.get();
            t.non_requests_garbage += s.non_requests_garbage.get();
            t.messages_oversize += s.messages_oversize.get();
            t.events_dropped += s.events_dropped.get();
            t.replies_sent += s.replies_sent.get();
            t.replies_rate_limited += s.replies_rate_limited.get();
            t.replies_skipped += s.replies_skipped.get();
            t.connections_accepted += s.connections_accepted.get();
            t.connections_closed += s.connections_closed.get();
            t.connections_refused_limit += s.connections_refused_limit.get();
            t.connections_idle_timeouts += s.connections_idle_timeouts.get();
            t.tls_handshake_failures += s.tls_handshake_failures.get();
            t.receive_errors += s.receive_errors.get();
        }
        t
    }
}

impl Render for SensorMetrics {
    fn render(&self, out: &mut String) {
        let t = self.totals();
        write_counter(
            out,
            "sip_datagrams_received_total",
            "UDP datagrams received.",
            t.datagrams_received,
        );
        write_counter(
            out,
            "sip_bytes_received_total",
            "SIP bytes received (UDP, TCP, TLS).",
            t.bytes_received,
        );
        write_counter(
            out,
            "events_total",
            "SIP requests turned into events.",
            t.events,
        );
        write_header(
            out,
            "sip_non_requests_total",
            "counter",
            "Messages that were not SIP requests, by kind.",
        );
        for (kind, value) in [
            ("empty", t.non_requests_empty),
            ("keepalive", t.non_requests_keepalive),
            ("response", t.non_requests_response),
            ("garbage", t.non_requests_garbage),
        ] {
            write_sample(
                out,
                "sip_non_requests_total",
                &format!("kind=\"{kind}\""),
                value,
            );
        }
        write_counter(
            out,
            "sip_messages_oversize_total",
            "Stream messages over the size limit (connection closed).",
            t.messages_oversize,
        );
        write_counter(
            out,
            "events_dropped_total",
            "Events dropped because the writer channel was full.",
            t.events_dropped,
        );
        write_counter(
            out,
            "sip_replies_total",
            "Replies sent in responsive mode.",
            t.replies_sent,
        );
        write_counter(
            out,
            "sip_replies_rate_limited_total",
            "Replies withheld by the per-source rate limit.",
            t.replies_rate_limited,
        );
        write_counter(
            out,
            "sip_replies_skipped_total",
            "Replies not sent: no reply due, unsafe source or send error.",
            t.replies_skipped,
        );
        write_gauge(
            out,
            "connections_open",
            "Open TCP/TLS connections.",
            t.connections_open(),
        );
        write_counter(
            out,
            "connections_accepted_total",
            "TCP/TLS connections accepted.",
            t.connections_accepted,
        );
        write_counter(
            out,
            "connections_refused_limit_total",
            "TCP/TLS connections closed at once by a connection cap.",
            t.connections_refused_limit,
        );
        write_counter(
            out,
            "connections_idle_timeouts_total",
            "TCP/TLS connections closed by the idle timeout.",
            t.connections_idle_timeouts,
        );
        write_counter(
            out,
            "tls_handshake_failures_total",
            "TLS handshakes that failed or timed out.",
            t.tls_handshake_failures,
        );
        write_counter(
            out,
            "sip_receive_errors_total",
            "Socket receive or accept errors.",
            t.receive_errors,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_metrics_sum_shards() {
        let metrics = SensorMetrics::new(2);
        metrics.shard(0).events.add(2);
        metrics.shard(1).events.add(3);
        metrics.shard(1).non_requests_response.inc();
        metrics.shard(0).connections_accepted.add(2);
        metrics.shard(0).connections_closed.inc();
        let totals = metrics.totals();
        assert_eq!(totals.events, 5);
        assert_eq!(totals.connections_open(), 1);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("sentrypeer_events_total 5\n"));
        assert!(out.contains("sentrypeer_sip_non_requests_total{kind=\"response\"} 1\n"));
        assert!(out.contains("sentrypeer_connections_open 1\n"));
        assert_eq!(align_of::<ShardMetrics>(), 128);
    }
}
