//! Per-source-IP reply budget (a token bucket) so responsive mode cannot be used as a reflector.
//!
//! Pure: the caller passes the time (`now_ns`, any monotonic nanosecond clock). One limiter per
//! shard; the table holds at most `sources_max` source IPs (`REPLY_LIMITER_SOURCES_MAX`). When it
//! is full, buckets that have refilled completely are forgotten first (forgetting them changes no
//! decision); if none has, an eighth of the table is forgotten at once, so the cost stays
//! amortized O(1) per new source under a spoofed-source spray. A forgotten source starts again
//! with a full burst, which bounds the extra replies any one victim can get to `burst` per
//! eviction. The bucket arithmetic is [`crate::token_bucket`]'s.
//!
//! Never: allocates beyond its table bound, reads a clock, answers over budget.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::token_bucket::{Rate, TokenBucket};

/// What to do with one request's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum ReplyVerdict {
    /// Within budget: send it.
    Reply,
    /// Over budget: record the event, send nothing.
    Drop,
}

/// A token bucket per source IP.
#[derive(Debug)]
pub(crate) struct ReplyLimiter {
    rate: Rate,
    sources_max: usize,
    buckets: HashMap<IpAddr, TokenBucket>,
}

impl ReplyLimiter {
    pub(crate) fn new(rate_per_second: u32, burst: u32, sources_max: usize) -> Self {
        assert!(sources_max > 0);
        Self {
            rate: Rate::new(rate_per_second, burst),
            sources_max,
            buckets: HashMap::with_capacity(sources_max.min(4096)),
        }
    }

    /// Spends one token of `source`'s budget if it has one.
    pub(crate) fn handle_request(&mut self, source: IpAddr, now_ns: u64) -> ReplyVerdict {
        let rate = self.rate;
        if !self.buckets.contains_key(&source) && self.buckets.len() >= self.sources_max {
            self.forget_some(now_ns);
        }
        let bucket = self
            .buckets
            .entry(source)
            .or_insert_with(|| TokenBucket::full(rate, now_ns));
        if bucket.try_take(rate, now_ns) {
            ReplyVerdict::Reply
        } else {
            ReplyVerdict::Drop
        }
    }

    /// Sources currently tracked.
    #[cfg(test)]
    pub(crate) fn sources_count(&self) -> usize {
        self.buckets.len()
    }

    fn forget_some(&mut self, now_ns: u64) {
        let rate = self.rate;
        self.buckets.retain(|_, b| !b.is_full_at(rate, now_ns));
        if self.buckets.len() >= self.sources_max {
            let victims: Vec<IpAddr> = self
                .buckets
                .keys()
                .take((self.sources_max / 8).max(1))
                .copied()
                .collect();
            for ip in victims {
                self.buckets.remove(&ip);
            }
        }
        debug_assert!(self.buckets.len() < self.sources_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_NS: u64 = 1_000_000_000;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn replies(limiter: &mut ReplyLimiter, source: IpAddr, count: u32, now_ns: u64) -> u32 {
        (0..count)
            .filter(|_| limiter.handle_request(source, now_ns) == ReplyVerdict::Reply)
            .count() as u32
    }

    #[test]
    fn reply_limiter_burst_at_limit_and_over() {
        let mut limiter = ReplyLimiter::new(10, 20, 16);
        assert_eq!(replies(&mut limiter, ip(1), 20, 0), 20);
        assert_eq!(limiter.handle_request(ip(1), 0), ReplyVerdict::Drop);
        // Another source has its own budget.
        assert_eq!(replies(&mut limiter, ip(2), 21, 0), 20);
    }

    #[test]
    fn reply_limiter_refills_at_rate() {
        let mut limiter = ReplyLimiter::new(10, 20, 16);
        assert_eq!(replies(&mut limiter, ip(1), 20, 0), 20);
        // 100 ms buys exactly one token (limit), not two (limit + 1).
        assert_eq!(replies(&mut limiter, ip(1), 2, SECOND_NS / 10), 1);
        // 99 ms buys none.
        assert_eq!(
            replies(&mut limiter, ip(1), 1, SECOND_NS / 10 + 99_000_000),
            0
        );
        // A long pause refills to the burst, never beyond.
        assert_eq!(replies(&mut limiter, ip(1), 30, 1_000 * SECOND_NS), 20);
    }

    #[test]
    fn reply_limiter_flood_bounded() {
        let mut limiter = ReplyLimiter::new(10, 20, 16);
        // 1,000 requests/s for 3 s: at most burst + rate * seconds.
        let mut sent = 0;
        for i in 0..3_000u64 {
            sent += replies(&mut limiter, ip(9), 1, i * SECOND_NS / 1_000);
        }
        assert!(sent <= 20 + 10 * 3, "{sent}");
        assert!(sent >= 20 + 10 * 3 - 1, "{sent}");
    }

    #[test]
    fn reply_limiter_table_bounded_at_limit_and_over() {
        let mut limiter = ReplyLimiter::new(1, 1, 8);
        for last in 0..8 {
            assert_eq!(limiter.handle_request(ip(last), 0), ReplyVerdict::Reply);
        }
        assert_eq!(limiter.sources_count(), 8);
        // Source 9 of a full table (limit + 1): something is forgotten, the table stays bounded.
        assert_eq!(limiter.handle_request(ip(8), 0), ReplyVerdict::Reply);
        assert!(limiter.sources_count() <= 8);
        for last in 0..=255 {
            let _ = limiter.handle_request(ip(last), 0);
            assert!(limiter.sources_count() <= 8);
        }
    }

    #[test]
    fn reply_limiter_zero_burst_never_replies() {
        let mut limiter = ReplyLimiter::new(0, 0, 8);
        assert_eq!(replies(&mut limiter, ip(1), 5, 10 * SECOND_NS), 0);
    }
}
