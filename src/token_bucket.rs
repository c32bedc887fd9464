//! One token bucket, pure: the reply limiter (per source IP) and the P2P node (publishing, and
//! per forwarding peer) spend their budgets through it.
//!
//! Tokens are counted in millionths so that a refill is an exact integer; time is passed in as
//! nanoseconds of any monotonic clock. A [`Rate`] is kept apart from the [`TokenBucket`] so that
//! a table of buckets stores 16 bytes per entry.
//!
//! Never: reads a clock, allocates, panics or overflows (arithmetic saturates), holds more than
//! the burst, lets a clock that goes backwards mint tokens.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// Millionths of a token per token.
const MICRO: u64 = 1_000_000;

/// Nanoseconds per second divided by [`MICRO`]: a rate of `r` tokens per second earns `r`
/// millionths every this many nanoseconds.
const NANOS_PER_MICRO_SECOND: u64 = 1_000_000_000 / MICRO;

/// How fast a bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    per_second: u64,
    burst_micro: u64,
}

impl Rate {
    /// `per_second` tokens a second, at most `burst` held.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: per_second as u64,
            burst_micro: burst as u64 * MICRO,
        }
    }

    /// Millionths of a token earned in `elapsed_ns` (saturating: a long pause fills any burst).
    const fn earned_micro(self, elapsed_ns: u64) -> u64 {
        elapsed_ns.saturating_mul(self.per_second) / NANOS_PER_MICRO_SECOND
    }
}

/// A budget of tokens: one token is one permitted action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    tokens_micro: u64,
    updated_ns: u64,
}

impl TokenBucket {
    /// A bucket holding its whole burst at `now_ns`.
    pub const fn full(rate: Rate, now_ns: u64) -> Self {
        Self {
            tokens_micro: rate.burst_micro,
            updated_ns: now_ns,
        }
    }

    /// Adds what was earned since the last update, up to the burst. Time too short to earn a
    /// whole millionth carries over to the next refill (so frequent calls cannot starve a slow
    /// rate). A `now_ns` earlier than the last update earns nothing and does not move the
    /// bucket's time back.
    pub fn refill(&mut self, rate: Rate, now_ns: u64) {
        let Some(elapsed_ns) = now_ns.checked_sub(self.updated_ns) else {
            return;
        };
        let tokens_micro = self
            .tokens_micro
            .saturating_add(rate.earned_micro(elapsed_ns));
        if tokens_micro >= rate.burst_micro || rate.per_second == 0 {
            self.tokens_micro = tokens_micro.min(rate.burst_micro);
            self.updated_ns = now_ns;
        } else {
            // Below the burst (at most u32::MAX tokens), so this cannot saturate; it is at most
            // `elapsed_ns`.
            let spent_ns = (tokens_micro - self.tokens_micro)
                .saturating_mul(NANOS_PER_MICRO_SECOND)
                / rate.per_second;
            self.tokens_micro = tokens_micro;
            self.updated_ns += spent_ns;
        }
    }

    /// Whether one whole token is available (as of the last refill).
    pub const fn has_token(&self) -> bool {
        self.tokens_micro >= MICRO
    }

    /// Spends one token if a whole one is available (as of the last refill).
    pub fn take(&mut self) -> bool {
        if self.has_token() {
            self.tokens_micro -= MICRO;
            true
        } else {
            false
        }
    }

    /// Refills to `now_ns`, then spends one token if a whole one is available.
    pub fn try_take(&mut self, rate: Rate, now_ns: u64) -> bool {
        self.refill(rate, now_ns);
        self.take()
    }

    /// Whether the bucket would be full at `now_ns`: forgetting it then (and starting again
    /// with [`TokenBucket::full`]) changes no decision.
    pub const fn is_full_at(&self, rate: Rate, now_ns: u64) -> bool {
        let earned = rate.earned_micro(now_ns.saturating_sub(self.updated_ns));
        self.tokens_micro.saturating_add(earned) >= rate.burst_micro
    }
}

#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECOND_NS: u64 = 1_000_000_000;

    fn takes(bucket: &mut TokenBucket, rate: Rate, count: u32, now_ns: u64) -> u32 {
        (0..count).filter(|_| bucket.try_take(rate, now_ns)).count() as u32
    }

    #[test]
    fn token_bucket_burst_at_limit_and_over() {
        let rate = Rate::new(10, 20);
        let mut bucket = TokenBucket::full(rate, 0);
        assert_eq!(takes(&mut bucket, rate, 21, 0), 20);
        assert!(!bucket.has_token());
    }

    #[test]
    fn token_bucket_refills_exactly_at_rate() {
        let rate = Rate::new(10, 20);
        let mut bucket = TokenBucket::full(rate, 0);
        assert_eq!(takes(&mut bucket, rate, 20, 0), 20);
        // 99 ms buy nothing, 100 ms exactly one token.
        assert_eq!(takes(&mut bucket, rate, 1, 99_999_999), 0);
        assert_eq!(takes(&mut bucket, rate, 2, SECOND_NS / 10), 1);
        // A long pause refills to the burst, never beyond.
        assert_eq!(takes(&mut bucket, rate, 30, 1_000 * SECOND_NS), 20);
        // Even the longest pause saturates instead of overflowing.
        assert_eq!(takes(&mut bucket, rate, 30, u64::MAX), 20);
    }

    #[test]
    fn token_bucket_take_without_refill_spends_what_is_there() {
        let rate = Rate::new(1, 2);
        let mut bucket = TokenBucket::full(rate, 0);
        assert!(bucket.take());
        assert!(bucket.take());
        assert!(!bucket.take());
        bucket.refill(rate, SECOND_NS);
        assert!(bucket.has_token());
        assert!(bucket.take());
        assert!(!bucket.has_token());
    }

    #[test]
    fn token_bucket_clock_backwards_earns_nothing() {
        let rate = Rate::new(10, 1);
        let mut bucket = TokenBucket::full(rate, 5 * SECOND_NS);
        assert!(bucket.try_take(rate, 5 * SECOND_NS));
        assert!(!bucket.try_take(rate, 0));
        // The bucket's time did not move back: 100 ms after 5 s earns the next token.
        assert!(!bucket.try_take(rate, 5 * SECOND_NS + 99_000_000));
        assert!(bucket.try_take(rate, 5 * SECOND_NS + SECOND_NS / 10));
    }

    #[test]
    fn token_bucket_frequent_calls_do_not_starve_a_slow_rate() {
        // One token a second earns a millionth per microsecond: asked every 100 ns, the time
        // must still add up to a token after one second.
        let rate = Rate::new(1, 1);
        let mut bucket = TokenBucket::full(rate, 0);
        assert!(bucket.try_take(rate, 0));
        let mut granted_at_ns = None;
        for step in 1..=10_001_000u64 {
            if bucket.try_take(rate, step * 100) {
                granted_at_ns = Some(step * 100);
                break;
            }
        }
        assert_eq!(granted_at_ns, Some(SECOND_NS));
    }

    #[test]
    fn token_bucket_zero_burst_or_zero_rate() {
        let empty = Rate::new(10, 0);
        let mut bucket = TokenBucket::full(empty, 0);
        assert_eq!(takes(&mut bucket, empty, 5, 10 * SECOND_NS), 0);
        let stopped = Rate::new(0, 3);
        let mut bucket = TokenBucket::full(stopped, 0);
        assert_eq!(takes(&mut bucket, stopped, 5, 10 * SECOND_NS), 3);
        assert_eq!(takes(&mut bucket, stopped, 5, 100 * SECOND_NS), 0);
    }

    #[test]
    fn token_bucket_is_full_at() {
        let rate = Rate::new(10, 2);
        let mut bucket = TokenBucket::full(rate, 0);
        assert!(bucket.is_full_at(rate, 0));
        assert!(bucket.try_take(rate, 0));
        assert!(!bucket.is_full_at(rate, 99_999_999));
        assert!(bucket.is_full_at(rate, SECOND_NS / 10));
    }

    proptest! {
        /// Over any sequence of requests, the tokens spent never exceed the burst plus what the
        /// elapsed time earned, and a bucket never holds more than its burst.
        #[test]
        fn token_bucket_never_over_budget(
            per_second in 0u32..1_000,
            burst in 0u32..100,
            steps in proptest::collection::vec((0u64..2 * SECOND_NS, 0u32..50), 1..50),
        ) {
            let rate = Rate::new(per_second, burst);
            let mut bucket = TokenBucket::full(rate, 0);
            let (mut now_ns, mut spent) = (0u64, 0u64);
            for (step_ns, requests) in steps {
                now_ns += step_ns;
                spent += u64::from(takes(&mut bucket, rate, requests, now_ns));
                prop_assert!(bucket.tokens_micro <= u64::from(burst) * MICRO);
            }
            let earned = u128::from(now_ns) * u128::from(per_second) / u128::from(SECOND_NS);
            prop_assert!(u128::from(spent) <= u128::from(burst) + earned);
        }

        /// A source that asks no faster than the rate is never refused.
        #[test]
        fn token_bucket_at_rate_never_refused(per_second in 1u32..1_000, burst in 1u32..100,
                                              count in 1u64..500) {
            let rate = Rate::new(per_second, burst);
            let mut bucket = TokenBucket::full(rate, 0);
            let interval_ns = SECOND_NS.div_ceil(u64::from(per_second));
            for i in 0..count {
                prop_assert!(bucket.try_take(rate, i * interval_ns));
            }
        }
    }
}
