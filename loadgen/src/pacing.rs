//! Token pacing per batch: at a fixed rate, message `n` is due at `start + n / rate`; flat out,
//! everything is due now.
//!
//! Never: bursts more than one batch ahead of schedule.

use std::time::{Duration, Instant};

/// Decides how many messages may go now and how long to wait for the next.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    start: Instant,
    /// Messages per second; `None` is flat out.
    rate_per_s: Option<f64>,
}

/// Below this wait we spin-yield instead of sleeping (sleep overshoots by tens of us).
const SLEEP_THRESHOLD: Duration = Duration::from_micros(200);

impl Pacer {
    pub fn new(start: Instant, rate_per_s: Option<f64>) -> Self {
        if let Some(rate) = rate_per_s {
            assert!(rate > 0.0, "rate must be positive");
        }
        Self { start, rate_per_s }
    }

    /// The batch size that keeps batches about 1 ms apart, within `1..=batch_max`.
    pub fn batch_size(&self, batch_max: usize) -> usize {
        match self.rate_per_s {
            None => batch_max,
            Some(rate) => ((rate / 1000.0) as usize).clamp(1, batch_max.max(1)),
        }
    }

    /// How many messages are due at `now` once `sent` have gone (unbounded when flat out).
    pub fn due_count(&self, sent: u64, now: Instant) -> u64 {
        match self.rate_per_s {
            None => u64::MAX,
            Some(rate) => {
                let due = (now.saturating_duration_since(self.start).as_secs_f64() * rate) as u64;
                due.saturating_sub(sent)
            }
        }
    }

    /// When message number `sent` (0-based) is due.
    pub fn due_at(&self, sent: u64) -> Instant {
        match self.rate_per_s {
            None => self.start,
            Some(rate) => self.start + Duration::from_secs_f64(sent as f64 / rate),
        }
    }

    /// Blocks until message number `sent` is due.
    pub fn wait_for(&self, sent: u64) {
        let due = self.due_at(sent);
        loop {
            let now = Instant::now();
            if now >= due {
                return;
            }
            let wait = due - now;
            if wait > SLEEP_THRESHOLD {
                std::thread::sleep(wait - SLEEP_THRESHOLD / 2);
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_due_count_follows_rate() {
        let start = Instant::now();
        let pacer = Pacer::new(start, Some(1000.0));
        assert_eq!(pacer.due_count(0, start), 0);
        assert_eq!(pacer.due_count(0, start + Duration::from_millis(10)), 10);
        assert_eq!(pacer.due_count(4, start + Duration::from_millis(10)), 6);
        assert_eq!(pacer.due_count(20, start + Duration::from_millis(10)), 0);
        assert_eq!(pacer.due_at(500), start + Duration::from_millis(500));
    }

    #[test]
    fn pacer_flat_out_is_always_due() {
        let start = Instant::now();
        let pacer = Pacer::new(start, None);
        assert_eq!(pacer.due_count(1_000_000, start), u64::MAX);
        assert_eq!(pacer.due_at(1_000_000), start);
        assert_eq!(pacer.batch_size(32), 32);
    }

    #[test]
    fn pacer_batch_size_scales_with_rate() {
        let pacer = Pacer::new(Instant::now(), Some(10.0));
        assert_eq!(pacer.batch_size(32), 1);
        let pacer = Pacer::new(Instant::now(), Some(20_000.0));
        assert_eq!(pacer.batch_size(32), 20);
        let pacer = Pacer::new(Instant::now(), Some(1e9));
        assert_eq!(pacer.batch_size(32), 32);
    }
}
