//! The webhook worker's time source. Every instant the worker decides by (a back-off deadline,
//! a token's lifetime, the cursor-persist interval, the failure-log interval) comes from a
//! [`WebhookClock`], so a test can drive that time instead of sleeping through it. Production
//! uses [`SystemClock`]: `Instant::now`, and a back-off is one real wait, as without a clock.
//!
//! Never: used for anything but those decisions. The idle wait for commits and ureq's connect
//! and request timeouts bound real blocking and stay in real time; the
//! `last_success_unix_seconds` metric is wall-clock time.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Where the webhook worker reads the time (see the module doc).
pub trait WebhookClock: Debug + Send + Sync {
    /// The current time.
    fn now(&self) -> Instant;

    /// How long to block in real time, while waiting until `left` has passed by this clock,
    /// before reading [`Self::now`] again. The whole of `left` for the system clock; a short
    /// poll for a clock a test moves.
    fn real_wait(&self, left: Duration) -> Duration {
        left
    }
}

/// The real clock (`Instant::now`), the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WebhookClock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}
