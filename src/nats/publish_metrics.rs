//! The NATS publisher's counters, rendered as Prometheus text (never a URL or a credential).

use std::sync::Arc;

use crate::metrics::{Counter, Gauge, Render, write_counter, write_gauge};
use crate::store::CommitWatch;

/// Counters of the publisher; the backlog is computed when read, from the commit watch.
#[derive(Debug)]
pub struct PublisherMetrics {
    /// Publishes sent to JetStream (republishes after a failure included).
    pub published_total: Counter,
    /// Publishes JetStream acknowledged (stored, or recognised as a duplicate).
    pub acknowledged_total: Counter,
    /// Acknowledgements that said "duplicate": a republish JetStream had already stored.
    pub duplicates_total: Counter,
    /// Publishes that failed or whose acknowledgement did not come in time, to be sent again.
    pub retried_total: Counter,
    /// Events never published: too large for the server's `max_payload` (logged).
    pub skipped_total: Counter,
    /// Events removed from the store (retention) before they were published.
    pub pruned_total: Counter,
    /// 1 while the client is connected to a NATS server, else 0.
    pub connected: Gauge,
    /// The key of the last event acknowledged (or skipped or pruned): the cursor.
    pub cursor: Gauge,
    commits: Arc<CommitWatch>,
}

impl PublisherMetrics {
    pub(crate) fn new(commits: Arc<CommitWatch>, cursor: u64) -> Self {
        let metrics = Self {
            published_total: Counter::default(),
            acknowledged_total: Counter::default(),
            duplicates_total: Counter::default(),
            retried_total: Counter::default(),
            skipped_total: Counter::default(),
            pruned_total: Counter::default(),
            connected: Gauge::default(),
            cursor: Gauge::default(),
            commits,
        };
        metrics.cursor.set(cursor);
        metrics
    }

    /// Committed events not yet acknowledged: last committed key - cursor.
    pub fn backlog_events(&self) -> u64 {
        self.commits.last_key().saturating_sub(self.cursor.get())
    }
}

impl Render for PublisherMetrics {
    fn render(&self, out: &mut String) {
        let counters = [
            (
                "nats_published_total",
                "Events published to NATS JetStream (republishes included).",
                &self.published_total,
            ),
            (
                "nats_acknowledged_total",
                "Publishes NATS JetStream acknowledged.",
                &self.acknowledged_total,
            ),
            (
                "nats_duplicates_total",
                "Acknowledged publishes JetStream had already stored (republishes).",
                &self.duplicates_total,
            ),
            (
                "nats_publish_retried_total",
                "Publishes that failed or timed out and are sent again after a back-off.",
                &self.retried_total,
            ),
            (
                "nats_events_skipped_total",
                "Events larger than the NATS server accepts, never published.",
                &self.skipped_total,
            ),
            (
                "nats_events_pruned_total",
                "Events removed by retention before they were published to NATS.",
                &self.pruned_total,
            ),
        ];
        for (name, help, counter) in counters {
            write_counter(out, name, help, counter.get());
        }
        write_gauge(
            out,
            "nats_backlog_events",
            "Committed events NATS JetStream has not acknowledged yet.",
            self.backlog_events(),
        );
        write_gauge(
            out,
            "nats_connected",
            "1 while the publisher is connected to a NATS server.",
            self.connected.get(),
        );
        write_gauge(
            out,
            "nats_cursor",
            "Key of the last event acknowledged by NATS JetStream.",
            self.cursor.get(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_publisher_metrics_render_and_backlog() {
        let commits = Arc::new(CommitWatch::default());
        let metrics = PublisherMetrics::new(Arc::clone(&commits), 2);
        metrics.acknowledged_total.add(2);
        metrics.connected.set(1);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains("sentrypeer_nats_acknowledged_total 2\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE sentrypeer_nats_backlog_events gauge\n"));
        assert!(out.contains("sentrypeer_nats_backlog_events 0\n"));
        assert!(out.contains("sentrypeer_nats_connected 1\n"));
        assert!(out.contains("sentrypeer_nats_cursor 2\n"));
    }
}
