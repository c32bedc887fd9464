//! Run results: counters, the reply-latency histogram and their human and JSON forms.
//!
//! Never: keeps per-message state beyond [`LATENCY_SLOTS`] send times.

use std::fmt;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Send times remembered for matching replies, per stream: a reply for a message sent more than
/// this many messages earlier is counted but not timed. Memory: 16 bytes a slot (1 MiB).
pub const LATENCY_SLOTS: usize = 1 << 16;

/// Highest latency the histogram records, in microseconds (60 s); above it values saturate.
const LATENCY_US_MAX: u64 = 60_000_000;

/// Remembers send times by sequence number and records reply latency.
#[derive(Debug)]
pub struct LatencyTracker {
    start: Instant,
    /// `(seq + 1, sent_ns)`; 0 marks an empty or already answered slot.
    slots: Vec<(u64, u64)>,
    pub histogram: Histogram<u64>,
}

impl LatencyTracker {
    pub fn new(start: Instant) -> Self {
        let histogram = Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
            .unwrap_or_else(|_| unreachable!("constant bounds are valid"));
        Self {
            start,
            slots: vec![(0, 0); LATENCY_SLOTS],
            histogram,
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Notes that message `seq` left at `now`.
    pub fn handle_sent(&mut self, seq: u64, now: Instant) {
        let nanos = self.nanos(now);
        let index = (seq % LATENCY_SLOTS as u64) as usize;
        self.slots[index] = (seq + 1, nanos);
    }

    /// Records the latency of a reply to `seq`; false if it is unknown or already answered.
    pub fn handle_reply(&mut self, seq: u64, now: Instant) -> bool {
        let index = (seq % LATENCY_SLOTS as u64) as usize;
        let (slot_seq, sent_ns) = self.slots[index];
        if slot_seq != seq + 1 {
            return false;
        }
        self.slots[index] = (0, 0);
        let micros = (self.nanos(now).saturating_sub(sent_ns) / 1000).clamp(1, LATENCY_US_MAX);
        self.histogram.saturating_record(micros);
        true
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub count: u64,
}

impl LatencySummary {
    pub fn from_histogram(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            p50: histogram.value_at_quantile(0.50),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            count: histogram.len(),
        }
    }
}

/// The result of one generator run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub target: String,
    /// Messages handed to the kernel (UDP) or fully written to the connection (TCP/TLS).
    pub sent: u64,
    /// Of `sent`, those that were not well-formed requests (`--malformed-share`).
    pub malformed: u64,
    /// Messages that failed to go out (send errors, refused, lost with a broken connection).
    pub errors: u64,
    /// Replies read (responsive mode; on TCP/TLS also without it).
    pub replies: u64,
    pub latency_us: LatencySummary,
    pub rate_requested: Option<f64>,
    pub rate_achieved: f64,
    pub duration_s: f64,
    pub bytes: u64,
    pub sockets: u64,
    pub sources: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "sentrypeer-loadgen {} -> {}", self.mode, self.target)?;
        let requested = self
            .rate_requested
            .map_or("flat out".to_owned(), |r| format!("{r:.0}/s"));
        writeln!(
            f,
            "  sent {} ({} malformed), errors {}, {} bytes in {:.3} s",
            self.sent, self.malformed, self.errors, self.bytes, self.duration_s
        )?;
        writeln!(
            f,
            "  rate {:.0}/s achieved ({requested} requested)",
            self.rate_achieved
        )?;
        writeln!(
            f,
            "  {} sockets from {} source addresses",
            self.sockets, self.sources
        )?;
        let latency = self.latency_us;
        write!(
            f,
            "  replies {}; latency us p50 {} p99 {} p999 {} max {}",
            self.replies, latency.p50, latency.p99, latency.p999, latency.max
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn latency_tracker_matches_once() {
        let start = Instant::now();
        let mut tracker = LatencyTracker::new(start);
        tracker.handle_sent(7, start);
        assert!(!tracker.handle_reply(8, start));
        assert!(tracker.handle_reply(7, start + Duration::from_micros(250)));
        assert!(!tracker.handle_reply(7, start + Duration::from_micros(300)));
        let summary = LatencySummary::from_histogram(&tracker.histogram);
        assert_eq!(summary.count, 1);
        assert!((249..=251).contains(&summary.p50), "{summary:?}");
    }

    #[test]
    fn latency_tracker_forgets_overwritten_slots() {
        let start = Instant::now();
        let mut tracker = LatencyTracker::new(start);
        tracker.handle_sent(1, start);
        tracker.handle_sent(1 + LATENCY_SLOTS as u64, start);
        assert!(!tracker.handle_reply(1, start));
        assert!(tracker.handle_reply(1 + LATENCY_SLOTS as u64, start));
    }

    #[test]
    fn latency_summary_empty_is_zero() {
        let tracker = LatencyTracker::new(Instant::now());
        assert_eq!(
            LatencySummary::from_histogram(&tracker.histogram),
            LatencySummary::default()
        );
    }
}
