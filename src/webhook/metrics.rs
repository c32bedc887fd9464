//! The webhook worker's counters, rendered as Prometheus text (never a secret or a URL).

use std::sync::Arc;

use crate::metrics::{Counter, Gauge, Render, write_counter, write_gauge};
use crate::store::CommitWatch;

/// Counters of one webhook worker; the lag is computed when read, from the commit watch.
#[derive(Debug)]
pub struct WebhookMetrics {
    /// Events the endpoint accepted (200, 201, 202, 204).
    pub events_delivered_total: Counter,
    /// Webhook or token requests that failed (connect error, timeout, 5xx, 408, 429, 401/403
    /// after a token refresh, bad token response) and were retried after a back-off.
    pub requests_failed_total: Counter,
    /// Events the endpoint rejected with another 4xx, skipped.
    pub events_skipped_total: Counter,
    /// Events removed from the store (retention) before they were delivered.
    pub events_pruned_total: Counter,
    /// OAuth2 access tokens fetched successfully.
    pub token_refreshes_total: Counter,
    /// Unix time (seconds) of the last accepted request; 0 before the first.
    pub last_success_unix_seconds: Gauge,
    /// The key of the last event delivered, skipped or pruned (the cursor).
    pub cursor: Gauge,
    commits: Arc<CommitWatch>,
}

impl WebhookMetrics {
    pub(crate) fn new(commits: Arc<CommitWatch>, cursor: u64) -> Self {
        let metrics = Self {
            events_delivered_total: Counter::default(),
            requests_failed_total: Counter::default(),
            events_skipped_total: Counter::default(),
            events_pruned_total: Counter::default(),
            token_refreshes_total: Counter::default(),
            last_success_unix_seconds: Gauge::default(),
            cursor: Gauge::default(),
            commits,
        };
        metrics.cursor.set(cursor);
        metrics
    }

    /// Committed events not yet delivered, skipped or pruned: last committed key - cursor.
    pub fn lag_events(&self) -> u64 {
        self.commits.last_key().saturating_sub(self.cursor.get())
    }
}

impl Render for WebhookMetrics {
    fn render(&self, out: &mut String) {
        write_counter(
            out,
            "webhook_events_delivered_total",
            "Events the webhook endpoint accepted.",
            self.events_delivered_total.get(),
        );
        write_counter(
            out,
            "webhook_requests_failed_total",
            "Webhook or token requests that failed and were retried after a back-off.",
            self.requests_failed_total.get(),
        );
        write_counter(
            out,
            "webhook_events_skipped_total",
            "Events the webhook endpoint rejected with a 4xx status, skipped.",
            self.events_skipped_total.get(),
        );
        write_counter(
            out,
            "webhook_events_pruned_total",
            "Events removed by retention before the webhook delivered them.",
            self.events_pruned_total.get(),
        );
        write_counter(
            out,
            "webhook_token_refreshes_total",
            "OAuth2 access tokens fetched.",
            self.token_refreshes_total.get(),
        );
        write_gauge(
            out,
            "webhook_lag_events",
            "Committed events the webhook has not delivered yet.",
            self.lag_events(),
        );
        write_gauge(
            out,
            "webhook_last_success_timestamp_seconds",
            "Unix time of the last request the webhook endpoint accepted (0: none).",
            self.last_success_unix_seconds.get(),
        );
        write_gauge(
            out,
            "webhook_cursor",
            "Key of the last event delivered, skipped or pruned.",
            self.cursor.get(),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn webhook_metrics_render_and_lag() {
        let commits = Arc::new(CommitWatch::default());
        let metrics = WebhookMetrics::new(Arc::clone(&commits), 0);
        metrics.events_delivered_total.add(3);
        metrics.cursor.set(3);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("sentrypeer_webhook_events_delivered_total 3\n"));
        assert!(out.contains("# TYPE sentrypeer_webhook_lag_events gauge\n"));
        assert!(out.contains("sentrypeer_webhook_lag_events 0\n"));
        assert!(out.contains("sentrypeer_webhook_cursor 3\n"));
        assert_eq!(metrics.lag_events(), 0);
    }
}
