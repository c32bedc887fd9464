//! The API's own counters: requests by status class, refused connections, latency.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::metrics::{self, Counter, Render};

/// Counters of the API server (rendered in its own `/metrics`).
#[derive(Debug)]
pub struct ApiMetrics {
    /// Responses by status class: index 0 is 1xx ... index 4 is 5xx.
    responses_by_class: [Counter; 5],
    pub connections_total: Counter,
    /// Connections closed at once because [`crate::config::limits::API_CONNECTIONS_MAX`] were open.
    pub connections_refused_total: Counter,
    /// Connections closed because the client stopped reading a response.
    pub connections_stalled_total: Counter,
    /// Store reads that failed (answered 500).
    pub store_errors_total: Counter,
    request_microseconds: Mutex<Histogram<u64>>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            responses_by_class: Default::default(),
            connections_total: Counter::default(),
            connections_refused_total: Counter::default(),
            connections_stalled_total: Counter::default(),
            store_errors_total: Counter::default(),
            request_microseconds: Mutex::new(new_histogram()),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // Only more than 5 significant digits is an error.
    Histogram::new(3).unwrap_or_else(|_| {
        #[allow(clippy::expect_used)]
        Histogram::new(1).expect("1 significant digit is valid")
    })
}

impl ApiMetrics {
    /// Counts one response with `status` that took `elapsed`.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        if let Some(counter) = self.responses_by_class.get(class) {
            counter.inc();
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let mut histogram = self
            .request_microseconds
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let _ = histogram.record(micros.max(1));
    }

    /// Responses with a status in `class` (1 to 5, i.e. 1xx to 5xx).
    pub fn responses(&self, class: u16) -> u64 {
        usize::from(class)
            .checked_sub(1)
            .and_then(|index| self.responses_by_class.get(index))
            .map_or(0, Counter::get)
    }

    /// A copy of the request latency histogram (microseconds).
    pub fn request_microseconds(&self) -> Histogram<u64> {
        self.request_microseconds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Render for ApiMetrics {
    fn render(&self, out: &mut String) {
        let name = "api_responses_total";
        metrics::write_header(out, name, "counter", "API responses by status class.");
        for (index, counter) in self.responses_by_class.iter().enumerate() {
            let labels = format!("class=\"{}xx\"", index + 1);
            metrics::write_sample(out, name, &labels, counter.get());
        }
        metrics::write_counter(
            out,
            "api_connections_total",
            "API connections accepted.",
            self.connections_total.get(),
        );
        metrics::write_counter(
            out,
            "api_connections_refused_total",
            "API connections closed at once: too many open.",
            self.connections_refused_total.get(),
        );
        metrics::write_counter(
            out,
            "api_connections_stalled_total",
            "API connections closed: the client stopped reading a response.",
            self.connections_stalled_total.get(),
        );
        metrics::write_counter(
            out,
            "api_store_errors_total",
            "API store reads that failed.",
            self.store_errors_total.get(),
        );
        metrics::write_summary(
            out,
            "api_request_microseconds",
            "API request latency.",
            &self.request_microseconds(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_metrics_classes() {
        let metrics = ApiMetrics::default();
        metrics.record(200, Duration::from_micros(10));
        metrics.record(404, Duration::from_micros(10));
        metrics.record(404, Duration::from_micros(10));
        metrics.record(999, Duration::from_micros(10));
        assert_eq!(metrics.responses(2), 1);
        assert_eq!(metrics.responses(4), 2);
        assert_eq!(metrics.responses(5), 1);
        assert_eq!(metrics.responses(0), 0);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("sentrypeer_api_responses_total{class=\"4xx\"} 2\n"));
        assert!(out.contains("sentrypeer_api_request_microseconds_count 4\n"));
    }
}
