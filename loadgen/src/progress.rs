//! The live line on stderr while a generator runs: the send loops publish their counters into
//! shared atomics at most every [`PUBLISH_INTERVAL`]; a ticker thread reads them every
//! [`LIVE_TICK`] and redraws one indicatif line (sent, achieved rate, errors, replies,
//! elapsed/remaining).
//!
//! Messages for stderr during a run go through [`warn`], which lifts the line out of the way.
//!
//! Never: formats or draws in a send loop, draws anything when stderr is not a terminal (the
//! caller decides, see [`with_live_line`]), or touches stdout.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a send loop adds its counters to [`LiveCounters`]: rare enough to cost nothing per
/// packet, often enough for a line redrawn every [`LIVE_TICK`].
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(50);

/// How often the live line is redrawn (4 times a second).
pub const LIVE_TICK: Duration = Duration::from_millis(250);

/// The live line while one is drawn, for [`warn`].
static LIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Prints `message` as one line on stderr; while the live line is drawn, clears it first and
/// redraws it after, so the two do not mix.
pub fn warn(message: std::fmt::Arguments<'_>) {
    let bar = LIVE_BAR
        .lock()
        .map_or(None, |live| live.as_ref().map(ProgressBar::clone));
    match bar {
        Some(bar) => bar.suspend(|| eprintln!("{message}")),
        None => eprintln!("{message}"),
    }
}

/// Counters shared by the send loops (writers) and the live line (reader).
#[derive(Debug, Default)]
pub struct LiveCounters {
    sent: AtomicU64,
    errors: AtomicU64,
    replies: AtomicU64,
}

/// One reading of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveSnapshot {
    pub sent: u64,
    pub errors: u64,
    pub replies: u64,
}

impl LiveCounters {
    pub fn snapshot(&self) -> LiveSnapshot {
        LiveSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            replies: self.replies.load(Ordering::Relaxed),
        }
    }
}

/// One send loop's view of [`LiveCounters`]: adds what changed since its last publication,
/// at most every [`PUBLISH_INTERVAL`] (or always with [`Publisher::flush`]).
#[derive(Debug)]
pub struct Publisher<'a> {
    counters: &'a LiveCounters,
    published: LiveSnapshot,
    next_at: Instant,
}

impl<'a> Publisher<'a> {
    pub fn new(counters: &'a LiveCounters, now: Instant) -> Self {
        Self {
            counters,
            published: LiveSnapshot::default(),
            next_at: now,
        }
    }

    /// Publishes `totals` (this loop's running totals) if [`PUBLISH_INTERVAL`] has passed.
    #[inline]
    pub fn publish(&mut self, now: Instant, totals: LiveSnapshot) {
        if now >= self.next_at {
            self.flush(totals);
            self.next_at = now + PUBLISH_INTERVAL;
        }
    }

    /// Publishes `totals` now.
    pub fn flush(&mut self, totals: LiveSnapshot) {
        let delta = |now: u64, before: u64| now.saturating_sub(before);
        let counters = self.counters;
        counters
            .sent
            .fetch_add(delta(totals.sent, self.published.sent), Ordering::Relaxed);
        counters.errors.fetch_add(
            delta(totals.errors, self.published.errors),
            Ordering::Relaxed,
        );
        counters.replies.fetch_add(
            delta(totals.replies, self.published.replies),
            Ordering::Relaxed,
        );
        self.published = totals;
    }
}

/// What the live line knows about the run besides the counters.
#[derive(Debug, Clone, Copy)]
pub struct LiveBounds {
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Whether replies are read at all (UDP only with `--responsive`).
    pub replies_counted: bool,
}

/// The live line's text, e.g.
/// `sent 51200 of 100000, 10240/s, errors 0, replies 51190, 5.0 s elapsed, 55.0 s left`.
pub fn format_live(snapshot: LiveSnapshot, elapsed: Duration, bounds: &LiveBounds) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        snapshot.sent as f64 / seconds
    } else {
        0.0
    };
    let mut line = format!("sent {}", snapshot.sent);
    if let Some(count) = bounds.count {
        let _ = write!(line, " of {count}");
    }
    let _ = write!(line, ", {rate:.0}/s, errors {}", snapshot.errors);
    if bounds.replies_counted {
        let _ = write!(line, ", replies {}", snapshot.replies);
    }
    let _ = write!(line, ", {seconds:.1} s elapsed");
    if let Some(duration) = bounds.duration {
        let left = duration.saturating_sub(elapsed).as_secs_f64();
        let _ = write!(line, ", {left:.1} s left");
    }
    line
}

/// Runs `work` with the counters; when `draw` is true, a ticker thread redraws the live line
/// on stderr until `work` returns, then leaves its final state on screen.
pub fn with_live_line<T>(
    draw: bool,
    bounds: &LiveBounds,
    work: impl FnOnce(&LiveCounters) -> T,
) -> T {
    let counters = LiveCounters::default();
    if !draw {
        return work(&counters);
    }
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let counters = &counters;
        scope.spawn(move || tick(counters, bounds, &stopped));
        let result = work(counters);
        drop(stop);
        result
    })
}

/// The ticker: redraws every [`LIVE_TICK`] until the sender side of `stopped` is dropped.
fn tick(counters: &LiveCounters, bounds: &LiveBounds, stopped: &mpsc::Receiver<()>) {
    let start = Instant::now();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    if let Ok(mut live) = LIVE_BAR.lock() {
        *live = Some(bar.clone());
    }
    loop {
        bar.set_message(format_live(counters.snapshot(), start.elapsed(), bounds));
        bar.tick();
        match stopped.recv_timeout(LIVE_TICK) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Ok(mut live) = LIVE_BAR.lock() {
        *live = None;
    }
    bar.set_message(format_live(counters.snapshot(), start.elapsed(), bounds));
    bar.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_adds_deltas_at_most_every_interval() {
        let counters = LiveCounters::default();
        let start = Instant::now();
        let mut one = Publisher::new(&counters, start);
        let mut two = Publisher::new(&counters, start);
        let totals = |sent, errors, replies| LiveSnapshot {
            sent,
            errors,
            replies,
        };
        one.publish(start, totals(10, 1, 2));
        two.publish(start, totals(5, 0, 0));
        assert_eq!(counters.snapshot(), totals(15, 1, 2));
        // Within the interval: nothing moves.
        one.publish(start + PUBLISH_INTERVAL / 2, totals(20, 1, 2));
        assert_eq!(counters.snapshot(), totals(15, 1, 2));
        one.publish(start + PUBLISH_INTERVAL, totals(30, 2, 4));
        assert_eq!(counters.snapshot(), totals(35, 2, 4));
        two.flush(totals(6, 0, 1));
        assert_eq!(counters.snapshot(), totals(36, 2, 5));
    }

    #[test]
    fn live_line_names_what_the_run_has() {
        let snapshot = LiveSnapshot {
            sent: 5000,
            errors: 3,
            replies: 4990,
        };
        let both = LiveBounds {
            count: Some(100_000),
            duration: Some(Duration::from_secs(60)),
            replies_counted: true,
        };
        assert_eq!(
            format_live(snapshot, Duration::from_millis(2500), &both),
            "sent 5000 of 100000, 2000/s, errors 3, replies 4990, 2.5 s elapsed, 57.5 s left"
        );
        let count_only = LiveBounds {
            count: Some(10),
            duration: None,
            replies_counted: false,
        };
        assert_eq!(
            format_live(snapshot, Duration::ZERO, &count_only),
            "sent 5000 of 10, 0/s, errors 3, 0.0 s elapsed"
        );
        let late = LiveBounds {
            count: None,
            duration: Some(Duration::from_secs(1)),
            replies_counted: false,
        };
        assert!(
            format_live(snapshot, Duration::from_secs(2), &late).ends_with(", 0.0 s left"),
            "remaining time never goes negative"
        );
    }
}
