//! Counters and histograms shared by the parts, rendered as Prometheus text by the API.
//!
//! Each part owns its counter struct (e.g. one per shard) and renders it with the helpers here;
//! the API concatenates the parts' renderings.
//!
//! Never: takes a lock or allocates on the hot path (counters are relaxed atomics, one cache line
//! per shard).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

/// A monotonically increasing counter (relaxed atomic).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (relaxed atomic).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Something that renders its metrics in the Prometheus text format.
pub trait Render: Send + Sync {
    fn render(&self, out: &mut String);
}

/// `# HELP`/`# TYPE` header of one metric family.
pub fn write_header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP sentrypeer_{name} {help}");
    let _ = writeln!(out, "# TYPE sentrypeer_{name} {kind}");
}

/// One sample; `labels` is the text inside `{}` (empty for none).
pub fn write_sample(out: &mut String, name: &str, labels: &str, value: u64) {
    if labels.is_empty() {
        let _ = writeln!(out, "sentrypeer_{name} {value}");
    } else {
        let _ = writeln!(out, "sentrypeer_{name}{{{labels}}} {value}");
    }
}

/// A counter family with one unlabelled sample.
pub fn write_counter(out: &mut String, name: &str, help: &str, value: u64) {
    write_header(out, name, "counter", help);
    write_sample(out, name, "", value);
}

/// A gauge family with one unlabelled sample.
pub fn write_gauge(out: &mut String, name: &str, help: &str, value: u64) {
    write_header(out, name, "gauge", help);
    write_sample(out, name, "", value);
}

/// A histogram rendered as a Prometheus summary (p50, p90, p99, p999, count, sum), in the unit
/// the histogram was recorded in (say it in `name`, e.g. `writer_commit_microseconds`).
pub fn write_summary(out: &mut String, name: &str, help: &str, histogram: &Histogram<u64>) {
    write_header(out, name, "summary", help);
    for quantile in ["0.5", "0.9", "0.99", "0.999"] {
        let q: f64 = quantile.parse().unwrap_or(0.5);
        let value = histogram.value_at_quantile(q);
        let _ = writeln!(out, "sentrypeer_{name}{{quantile=\"{quantile}\"}} {value}");
    }
    let sum = histogram.mean() * histogram.len() as f64;
    let _ = writeln!(out, "sentrypeer_{name}_sum {sum:.0}");
    let _ = writeln!(out, "sentrypeer_{name}_count {}", histogram.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_text() {
        let counter = Counter::default();
        counter.add(3);
        counter.inc();
        let mut out = String::new();
        write_counter(&mut out, "events_total", "Events seen.", counter.get());
        assert!(out.contains("# TYPE sentrypeer_events_total counter\n"));
        assert!(out.ends_with("sentrypeer_events_total 4\n"));
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        histogram.record(10).unwrap();
        out.clear();
        write_summary(&mut out, "commit_microseconds", "Commit time.", &histogram);
        assert!(out.contains("sentrypeer_commit_microseconds{quantile=\"0.99\"} 10\n"));
        assert!(out.contains("sentrypeer_commit_microseconds_count 1\n"));
    }
}
