//! Pure decisions of the webhook worker: what a response status means, how long to back off,
//! how long a token may be used. No I/O, clock or RNG: the caller passes them in.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use crate::config::limits;

/// What a webhook response status asks of the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 200, 201, 202, 204: the request was accepted; advance the cursor.
    Delivered,
    /// 401, 403: refresh the OAuth2 token once and retry; otherwise a failure.
    Unauthorized,
    /// Another 4xx: the endpoint will never take these events; skip them.
    Rejected,
    /// 408, 429, 5xx, and anything else (1xx, 3xx, other 2xx): back off and retry.
    Retry,
}

/// Classifies a webhook response status.
pub(crate) fn classify_status(status: u16) -> Verdict {
    match status {
        200 | 201 | 202 | 204 => Verdict::Delivered,
        401 | 403 => Verdict::Unauthorized,
        408 | 429 => Verdict::Retry,
        400..=499 => Verdict::Rejected,
        _ => Verdict::Retry,
    }
}

/// The wait after the `failures`-th consecutive failed attempt (1 for the first): `initial`
/// doubled per earlier failure, capped at `max`, of which the upper half is jitter taken from
/// `random` ("equal jitter"), so workers that failed together do not retry together.
pub(crate) fn backoff_delay(
    failures: u32,
    initial: Duration,
    max: Duration,
    random: u64,
) -> Duration {
    let initial_ms = u64::try_from(initial.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX).max(1);
    let shift = failures.saturating_sub(1).min(63);
    let full_ms = initial_ms.saturating_mul(1u64 << shift).min(max_ms);
    let half_ms = full_ms / 2;
    let jitter_ms = random % (full_ms - half_ms + 1);
    Duration::from_millis(half_ms + jitter_ms)
}

/// Whether the `failures`-th failure in a row is logged: the first one, then at most once per
/// [`limits::IO_ERROR_LOG_INTERVAL`] (`since_logged`: time since the last logged one).
pub(crate) fn failure_log_due(failures: u32, since_logged: Option<Duration>) -> bool {
    failures == 1 || since_logged.is_none_or(|since| since >= limits::IO_ERROR_LOG_INTERVAL)
}

/// How long a token that expires in `expires_in_seconds` may be used: until 10% of its
/// lifetime or [`limits::WEBHOOK_TOKEN_EARLY_MAX`] (the shorter) before it expires; without
/// `expires_in`, [`limits::WEBHOOK_TOKEN_LIFETIME_DEFAULT`].
pub(crate) fn token_usable_for(expires_in_seconds: Option<u64>) -> Duration {
    let Some(seconds) = expires_in_seconds else {
        return limits::WEBHOOK_TOKEN_LIFETIME_DEFAULT;
    };
    let lifetime = Duration::from_secs(seconds);
    let early = (lifetime / 10).min(limits::WEBHOOK_TOKEN_EARLY_MAX);
    lifetime.saturating_sub(early)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_status_table() {
        for status in [200, 201, 202, 204] {
            assert_eq!(classify_status(status), Verdict::Delivered, "{status}");
        }
        for status in [401, 403] {
            assert_eq!(classify_status(status), Verdict::Unauthorized, "{status}");
        }
        for status in [400, 404, 405, 409, 410, 413, 415, 422, 499] {
            assert_eq!(classify_status(status), Verdict::Rejected, "{status}");
        }
        for status in [
            0, 100, 203, 206, 301, 302, 304, 408, 429, 500, 502, 503, 504, 599, 999,
        ] {
            assert_eq!(classify_status(status), Verdict::Retry, "{status}");
        }
    }

    #[test]
    fn backoff_delay_doubles_with_jitter_and_caps() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(60);
        for failures in 1..=40 {
            let full = (100u64 << (failures - 1).min(20)).min(60_000);
            let low = backoff_delay(failures, initial, max, 0);
            let high = backoff_delay(failures, initial, max, u64::MAX - 1);
            assert_eq!(low, Duration::from_millis(full / 2), "{failures}");
            assert!(
                high >= low && high <= Duration::from_millis(full),
                "{failures}"
            );
            for random in [1, 7, 12_345, u64::MAX] {
                let delay = backoff_delay(failures, initial, max, random);
                assert!(delay >= low && delay <= Duration::from_millis(full));
            }
        }
        assert_eq!(backoff_delay(0, initial, max, 0), Duration::from_millis(50));
        assert_eq!(
            backoff_delay(u32::MAX, initial, max, 0),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff_delay(3, Duration::ZERO, Duration::ZERO, u64::MAX),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn failure_log_due_first_then_per_interval() {
        let interval = limits::IO_ERROR_LOG_INTERVAL;
        assert!(failure_log_due(1, Some(Duration::ZERO)));
        assert!(failure_log_due(2, None));
        assert!(!failure_log_due(2, Some(Duration::ZERO)));
        assert!(!failure_log_due(
            9,
            Some(interval - Duration::from_millis(1))
        ));
        assert!(failure_log_due(9, Some(interval)));
    }

    #[test]
    fn token_usable_for_refreshes_early() {
        assert_eq!(token_usable_for(Some(3600)), Duration::from_secs(3570));
        assert_eq!(token_usable_for(Some(100)), Duration::from_secs(90));
        assert_eq!(token_usable_for(Some(1)), Duration::from_millis(900));
        assert_eq!(token_usable_for(Some(0)), Duration::ZERO);
        assert_eq!(
            token_usable_for(None),
            limits::WEBHOOK_TOKEN_LIFETIME_DEFAULT
        );
        assert!(token_usable_for(Some(u64::MAX)) > Duration::from_secs(1 << 40));
    }
}
