//! The sensor's counters: one cache-padded [`ShardMetrics`] per shard, relaxed atomics, summed by
//! [`SensorMetrics`] when rendered.
//!
//! Never: shares a cache line between shards, takes a lock.

use crate::metrics::{Counter, Render, write_gauge, write_header, write_sample};

/// Declares every shard counter once: the field of [`ShardMetrics`] and [`SensorTotals`], its
/// Prometheus name, labels and help text. Rows sharing a name form one labelled family (the first
/// row's help is used).
macro_rules! shard_counters {
    ($($(#[$doc:meta])* $field:ident: $name:literal, $labels:literal, $help:literal;)*) => {
        /// One shard's counters (written by that shard only).
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct ShardMetrics {
            $($(#[$doc])* pub $field: Counter,)*
        }

        /// The sums over all shards, for tests and the status line.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct SensorTotals {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl SensorTotals {
            fn add_shard(&mut self, shard: &ShardMetrics) {
                $(self.$field += shard.$field.get();)*
            }

            /// Every counter as (name, labels, help, value), in rendering order.
            fn samples(&self) -> impl Iterator<Item = (&'static str, &'static str, &'static str, u64)> {
                [$(($name, $labels, $help, self.$field)),*].into_iter()
            }
        }
    };
}

shard_counters! {
    datagrams_received: "sip_datagrams_received_total", "", "UDP datagrams received.";
    /// Datagrams and TCP/TLS connections from an `--ignore-ip` source, dropped unread.
    ignored_sources: "sip_ignored_source_total", "",
        "Datagrams and TCP/TLS connections from an --ignore-ip source, dropped on arrival.";
    /// `recvmmsg` calls, whatever they returned (datagrams, would-block or an error).
    udp_receive_calls: "sip_udp_receive_calls_total", "", "UDP receive (recvmmsg) calls.";
    /// `recvmmsg` calls that found the queue empty (would-block).
    udp_receive_calls_empty: "sip_udp_receive_empty_total", "",
        "UDP receive calls that found no datagram waiting.";
    bytes_received: "sip_bytes_received_total", "", "SIP bytes received (UDP, TCP, TLS).";
    events: "events_total", "", "SIP requests turned into events.";
    non_requests_empty: "sip_non_requests_total", "kind=\"empty\"",
        "Messages that were not SIP requests, by kind.";
    non_requests_keepalive: "sip_non_requests_total", "kind=\"keepalive\"", "";
    non_requests_response: "sip_non_requests_total", "kind=\"response\"", "";
    non_requests_garbage: "sip_non_requests_total", "kind=\"garbage\"", "";
    messages_oversize: "sip_messages_oversize_total", "",
        "Stream messages over the size limit (connection closed).";
    events_dropped: "events_dropped_total", "",
        "Events dropped because the writer channel was full.";
    replies_sent: "sip_replies_total", "", "Replies sent in responsive mode.";
    replies_rate_limited: "sip_replies_rate_limited_total", "",
        "Replies withheld by the per-source rate limit.";
    /// Replies not sent: unsafe source address, build refused (ACK, missing headers) or a send
    /// error.
    replies_skipped: "sip_replies_skipped_total", "",
        "Replies not sent: no reply due, unsafe source or send error.";
    connections_accepted: "connections_accepted_total", "", "TCP/TLS connections accepted.";
    connections_closed: "connections_closed_total", "", "TCP/TLS connections closed.";
    connections_refused_limit: "connections_refused_limit_total", "",
        "TCP/TLS connections closed at once by a connection cap.";
    connections_idle_timeouts: "connections_idle_timeouts_total", "",
        "TCP/TLS connections closed by the idle timeout.";
    /// Connections closed because a reply could not be written within the write timeout.
    connections_write_timeouts: "connections_write_timeouts_total", "",
        "TCP/TLS connections closed because a reply was not written in time.";
    tls_handshake_failures: "tls_handshake_failures_total", "",
        "TLS handshakes that failed or timed out.";
    /// Datagrams whose source address could not be read.
    receive_errors: "sip_receive_errors_total", "",
        "Datagrams received without a readable source address.";
    /// Socket errors after which the next call may succeed (counted, logged rate-limited).
    io_errors_transient: "sip_io_errors_total", "class=\"transient\"",
        "Socket receive, send and accept errors, by class (fatal: that socket is no longer served).";
    /// Socket errors after which the socket is no longer served.
    io_errors_fatal: "sip_io_errors_total", "class=\"fatal\"", "";
    /// `--sip-challenge`: 401 Digest challenges sent.
    challenges_sent: "sip_challenges_sent_total", "", "401 Digest challenges sent (--sip-challenge).";
    /// Requests that proved their source: a TCP/TLS handshake, or a fresh To-tag or nonce of ours.
    proofs_handshake: "sip_source_proofs_total", "kind=\"handshake\"",
        "Requests that proved their source IP, by kind of proof.";
    proofs_tag: "sip_source_proofs_total", "kind=\"tag\"", "";
    proofs_nonce: "sip_source_proofs_total", "kind=\"nonce\"", "";
    /// A To-tag or nonce that is ours but too old.
    proofs_rejected_stale: "sip_source_proofs_rejected_total", "reason=\"stale\"",
        "To-tags and nonces presented that prove nothing, by reason.";
    /// A To-tag or nonce not made by this node for this IP (forged, other node, other IP).
    proofs_rejected_foreign: "sip_source_proofs_rejected_total", "reason=\"foreign\"", "";
}

/// All shards' counters.
#[derive(Debug)]
pub struct SensorMetrics {
    shards: Box<[ShardMetrics]>,
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
        let mut totals = SensorTotals::default();
        for shard in &self.shards {
            totals.add_shard(shard);
        }
        totals
    }
}

impl Render for SensorMetrics {
    fn render(&self, out: &mut String) {
        let totals = self.totals();
        let mut family = "";
        for (name, labels, help, value) in totals.samples() {
            if name != family {
                write_header(out, name, "counter", help);
                family = name;
            }
            write_sample(out, name, labels, value);
        }
        write_gauge(
            out,
            "connections_open",
            "Open TCP/TLS connections.",
            totals.connections_open(),
        );
        self.render_per_shard(out);
        if let Some(drops) = super::kernel_drops::process_udp_drops() {
            let name = "sip_udp_kernel_drops_total";
            let help =
                "Datagrams the kernel dropped on this process's UDP sockets (receive buffer full).";
            write_header(out, name, "counter", help);
            write_sample(out, name, "", drops);
        }
    }
}

/// A per-shard family: name, help, the shard's value.
type PerShardFamily = (&'static str, &'static str, fn(&ShardMetrics) -> u64);

impl SensorMetrics {
    /// Each shard's datagrams and events, labelled `shard="<index>"` (the load per core).
    fn render_per_shard(&self, out: &mut String) {
        let families: [PerShardFamily; 2] = [
            (
                "shard_datagrams_received_total",
                "UDP datagrams received, by shard.",
                |shard| shard.datagrams_received.get(),
            ),
            (
                "shard_events_total",
                "SIP requests turned into events, by shard.",
                |shard| shard.events.get(),
            ),
        ];
        for (name, help, value) in families {
            write_header(out, name, "counter", help);
            for (index, shard) in self.shards.iter().enumerate() {
                write_sample(out, name, &format!("shard=\"{index}\""), value(shard));
            }
        }
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
        // A labelled family has one header; every counter is rendered.
        assert_eq!(
            out.matches("# TYPE sentrypeer_sip_non_requests_total")
                .count(),
            1
        );
        assert_eq!(out.matches("sentrypeer_sip_io_errors_total{").count(), 2);
        // 30 counters, connections_open, 2 per-shard families x 2 shards, the kernel drops.
        assert_eq!(
            out.lines().filter(|l| !l.starts_with('#')).count(),
            30 + 1 + 4 + 1
        );
        assert!(out.contains("sentrypeer_shard_events_total{shard=\"1\"} 3\n"));
        assert!(out.contains("sentrypeer_sip_udp_kernel_drops_total "));
        assert_eq!(align_of::<ShardMetrics>(), 128);
    }
}
