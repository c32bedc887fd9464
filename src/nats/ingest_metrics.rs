//! The NATS hub's counters (`--nats-ingest`), rendered as Prometheus text (never a URL or a
//! credential).

use crate::metrics::{self, Counter, Gauge, Render};

use super::ingest_decode::Reject;

/// Counters of the hub's ingest worker. Every received message ends in exactly one of stored,
/// duplicate, rejected or ignored, and is then acknowledged (unless the hub stops first: then
/// JetStream delivers it again).
#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// Messages taken from the durable consumer (redeliveries included).
    pub received_total: Counter,
    /// Events handed to the writer and seen committed.
    pub stored_total: Counter,
    /// Messages whose event UUID was already stored, or in flight in another message (skipped).
    pub duplicate_total: Counter,
    /// Messages that are not a valid event, per [`Reject`] reason (acknowledged and dropped).
    pub rejected_total: [Counter; Reject::ALL.len()],
    /// Events whose source is in `--ignore-ip` (acknowledged and dropped).
    pub ignored_source_total: Counter,
    /// Acknowledgements sent.
    pub acked_total: Counter,
    /// Acknowledgements the client could not send (JetStream redelivers those messages).
    pub ack_errors_total: Counter,
    /// Times the writer's channel was full; the event is offered again, not dropped.
    pub channel_full_total: Counter,
    /// Connect, consumer or pull failures (followed by a back-off and a new consumer).
    pub consumer_errors_total: Counter,
    /// Messages received and not yet acknowledged.
    pub in_flight: Gauge,
}

impl IngestMetrics {
    /// Total rejected messages, every reason.
    pub fn rejected(&self) -> u64 {
        self.rejected_total.iter().map(Counter::get).sum()
    }
}

impl Render for IngestMetrics {
    fn render(&self, out: &mut String) {
        let counters = [
            (
                "nats_ingest_received_total",
                "Messages received from the JetStream consumer.",
                &self.received_total,
            ),
            (
                "nats_ingest_stored_total",
                "Fleet events committed to the store, then acknowledged.",
                &self.stored_total,
            ),
            (
                "nats_ingest_duplicate_total",
                "Messages whose event UUID was already stored or in flight (skipped, acknowledged).",
                &self.duplicate_total,
            ),
            (
                "nats_ingest_ignored_source_total",
                "Fleet events whose source is in --ignore-ip (dropped, acknowledged).",
                &self.ignored_source_total,
            ),
            (
                "nats_ingest_acked_total",
                "Acknowledgements sent to JetStream.",
                &self.acked_total,
            ),
            (
                "nats_ingest_ack_errors_total",
                "Acknowledgements that could not be sent (the message is delivered again).",
                &self.ack_errors_total,
            ),
            (
                "nats_ingest_channel_full_total",
                "Times the writer's channel was full (the event is offered again).",
                &self.channel_full_total,
            ),
            (
                "nats_ingest_consumer_errors_total",
                "Connect, consumer or pull failures (retried after a back-off).",
                &self.consumer_errors_total,
            ),
        ];
        for (name, help, counter) in counters {
            metrics::write_counter(out, name, help, counter.get());
        }
        let name = "nats_ingest_rejected_total";
        metrics::write_header(
            out,
            name,
            "counter",
            "Messages that are not a valid event (dropped, acknowledged), per reason.",
        );
        for (reason, counter) in Reject::ALL.iter().zip(&self.rejected_total) {
            let labels = format!("reason=\"{}\"", reason.as_str());
            metrics::write_sample(out, name, &labels, counter.get());
        }
        metrics::write_gauge(
            out,
            "nats_ingest_in_flight",
            "Messages received and not yet acknowledged.",
            self.in_flight.get(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_metrics_render() {
        let metrics = IngestMetrics::default();
        metrics.rejected_total[Reject::Uuid.index()].add(2);
        metrics.stored_total.inc();
        metrics.in_flight.set(7);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("sentrypeer_nats_ingest_rejected_total{reason=\"uuid\"} 2\n"));
        assert!(out.contains("sentrypeer_nats_ingest_rejected_total{reason=\"oversize\"} 0\n"));
        assert!(out.contains("sentrypeer_nats_ingest_stored_total 1\n"));
        assert!(out.contains("sentrypeer_nats_ingest_in_flight 7\n"));
        assert_eq!(metrics.rejected(), 2);
    }
}
