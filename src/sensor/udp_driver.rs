//! The UDP loop policy of one shard socket as a state machine (sans-I/O, quinn-proto style): the
//! shell asks [`UdpDriver::poll_action`] what to do next, does it (a `recvmmsg`, a sleep, a
//! yield, a readiness wait) and reports back with a `handle_*` call. Both engines run this one
//! policy:
//! - a full batch (`RECV_BATCH_DATAGRAMS`): receive again at once;
//! - a short batch (the queue was drained): pause `UDP_RECEIVE_GATHER` so that the next datagrams
//!   gather and arrive in a fuller batch with fewer wake-ups;
//! - would-block (empty): wait until the socket is readable;
//! - after `SHARD_BATCH_BEFORE_YIELD` datagrams without a pause or wait: yield once to the
//!   shard's other tasks;
//! - stop: drain what the socket holds, at most `STOP_DRAIN_BATCHES_MAX` batches, receiving back
//!   to back (no pause, no yield, no wait) until would-block;
//! - an error: transient receives again (after `IO_ERROR_RETRY_PAUSE` when resources ran short),
//!   fatal ends the socket task (the error is counted and logged by the caller, see
//!   `io_error.rs`).
//!
//! Pure: time is passed in. Never: reads a clock, sleeps, touches a socket.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use super::io_error::IoErrorClass;
use crate::config::limits::{
    RECV_BATCH_DATAGRAMS, SHARD_BATCH_BEFORE_YIELD, STOP_DRAIN_BATCHES_MAX,
};

/// What the shell must do next for one UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UdpAction {
    /// Call `recvmmsg` now and report with `handle_received`, `handle_would_block` or
    /// `handle_error`.
    Receive,
    /// Sleep until [`UdpDriver::poll_timeout`], then poll again.
    Pause,
    /// Let the shard's other tasks run once, then poll again.
    Yield,
    /// Wait until the socket is readable or the shard stops (then `handle_stop`), then poll
    /// again.
    WaitReadable,
    /// The socket task ends.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Receive,
    PauseUntil(Instant),
    Yield,
    WaitReadable,
    Stopped,
}

/// One UDP socket's loop state.
#[derive(Debug)]
pub(crate) struct UdpDriver {
    gather: Duration,
    state: State,
    /// Datagrams handled since the last pause, wait or yield.
    handled_count: usize,
    /// While stopping: batches still allowed.
    drain_batches_left: Option<usize>,
}

impl UdpDriver {
    /// A driver that pauses `gather` after a short batch (zero: never pauses).
    pub(crate) fn new(gather: Duration) -> Self {
        Self {
            gather,
            state: State::Receive,
            handled_count: 0,
            drain_batches_left: None,
        }
    }

    /// True once the shard asked this socket to stop.
    pub(crate) fn is_draining(&self) -> bool {
        self.drain_batches_left.is_some()
    }

    /// What to do at `now`. A pause whose end has come turns into [`UdpAction::Receive`];
    /// [`UdpAction::Yield`] and [`UdpAction::WaitReadable`] are given once (the next poll says
    /// receive).
    pub(crate) fn poll_action(&mut self, now: Instant) -> UdpAction {
        match self.state {
            State::Receive => UdpAction::Receive,
            State::PauseUntil(until) if now >= until => {
                self.state = State::Receive;
                UdpAction::Receive
            }
            State::PauseUntil(_) => UdpAction::Pause,
            State::Yield => {
                self.state = State::Receive;
                UdpAction::Yield
            }
            State::WaitReadable => {
                self.state = State::Receive;
                UdpAction::WaitReadable
            }
            State::Stopped => UdpAction::Stop,
        }
    }

    /// When the driver next wants to be polled without an event: the end of a pause.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::PauseUntil(until) => Some(until),
            _ => None,
        }
    }

    /// A `recvmmsg` returned `count` datagrams (already handled) at `now`.
    pub(crate) fn handle_received(&mut self, count: usize, now: Instant) {
        if self.count_drain_batch() {
            return;
        }
        self.handled_count += count;
        self.state = if count < RECV_BATCH_DATAGRAMS && !self.gather.is_zero() {
            self.handled_count = 0;
            State::PauseUntil(now + self.gather)
        } else if self.handled_count >= SHARD_BATCH_BEFORE_YIELD {
            self.handled_count = 0;
            State::Yield
        } else {
            State::Receive
        };
    }

    /// A `recvmmsg` found nothing waiting.
    pub(crate) fn handle_would_block(&mut self) {
        if self.state == State::Stopped {
            return;
        }
        self.handled_count = 0;
        self.state = if self.is_draining() {
            State::Stopped
        } else {
            State::WaitReadable
        };
    }

    /// A `recvmmsg` failed with an error of `class` (counted and logged by the caller); a
    /// transient one is retried after `pause` (see `io_error::retry_pause`).
    pub(crate) fn handle_error(&mut self, class: IoErrorClass, pause: Duration, now: Instant) {
        if class == IoErrorClass::Fatal {
            self.state = State::Stopped;
            return;
        }
        if self.count_drain_batch() {
            return;
        }
        self.handled_count = 0;
        self.state = if pause.is_zero() {
            State::Receive
        } else {
            State::PauseUntil(now + pause)
        };
    }

    /// The shard stops: drain without pausing (idempotent).
    pub(crate) fn handle_stop(&mut self) {
        if self.is_draining() || self.state == State::Stopped {
            return;
        }
        self.drain_batches_left = Some(STOP_DRAIN_BATCHES_MAX);
        self.state = State::Receive;
    }

    /// While draining, counts one batch and picks the next state; false when not draining.
    fn count_drain_batch(&mut self) -> bool {
        let Some(left) = self.drain_batches_left.as_mut() else {
            return false;
        };
        *left = left.saturating_sub(1);
        if self.state != State::Stopped {
            self.state = if *left == 0 {
                State::Stopped
            } else {
                State::Receive
            };
        }
        true
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
    use super::*;
    use crate::config::limits::{IO_ERROR_RETRY_PAUSE, UDP_RECEIVE_GATHER};

    fn driver() -> (UdpDriver, Instant) {
        (UdpDriver::new(UDP_RECEIVE_GATHER), Instant::now())
    }

    #[test]
    fn udp_driver_short_batch_pauses_for_the_gather() {
        let (mut driver, now) = driver();
        assert_eq!(driver.poll_action(now), UdpAction::Receive);
        driver.handle_received(3, now);
        let until = now + UDP_RECEIVE_GATHER;
        assert_eq!(driver.poll_timeout(), Some(until));
        assert_eq!(driver.poll_action(now), UdpAction::Pause);
        let almost = until - Duration::from_micros(1);
        assert_eq!(driver.poll_action(almost), UdpAction::Pause);
        assert_eq!(driver.poll_action(until), UdpAction::Receive);
        assert_eq!(driver.poll_timeout(), None);
    }

    #[test]
    fn udp_driver_full_batch_receives_again_at_once() {
        let (mut driver, now) = driver();
        driver.handle_received(RECV_BATCH_DATAGRAMS, now);
        assert_eq!(driver.poll_action(now), UdpAction::Receive);
        assert_eq!(driver.poll_timeout(), None);
    }

    #[test]
    fn udp_driver_empty_waits_for_readiness() {
        let (mut driver, now) = driver();
        driver.handle_would_block();
        assert_eq!(driver.poll_action(now), UdpAction::WaitReadable);
        // Readable: receive.
        assert_eq!(driver.poll_action(now), UdpAction::Receive);
    }

    #[test]
    fn udp_driver_zero_gather_never_pauses() {
        let mut driver = UdpDriver::new(Duration::ZERO);
        let now = Instant::now();
        driver.handle_received(1, now);
        assert_eq!(driver.poll_action(now), UdpAction::Receive);
    }

    #[test]
    fn udp_driver_yields_after_the_batch_budget() {
        let (mut driver, now) = driver();
        let full_batches = SHARD_BATCH_BEFORE_YIELD / RECV_BATCH_DATAGRAMS;
        for _ in 1..full_batches {
            driver.handle_received(RECV_BATCH_DATAGRAMS, now);
            assert_eq!(driver.poll_action(now), UdpAction::Receive);
        }
        driver.handle_received(RECV_BATCH_DATAGRAMS, now);
        assert_eq!(driver.poll_action(now), UdpAction::Yield);
        // The budget starts again after the yield.
        assert_eq!(driver.poll_action(now), UdpAction::Receive);
        driver.handle_received(RECV_BATCH_DATAGRAMS, now);
        assert_eq!(driver.poll_action(now), UdpAction::Receive);
    }

    #[test]
    fn udp_driver_pause_resets_the_yield_budget() {
        let (mut driver, now) = driver();
        for _ in 1..SHARD_BATCH_BEFORE_YIELD / RECV_BATCH_DATAGRAMS {
            driver.handle_received(RECV_BATCH_DATAGRAMS, now);
        }
        driver.handle_received(1, now);
        let later = now + UDP_RECEIVE_GATHER;
        assert_eq!(driver.poll_action(later), UdpAction::Receive);
        driver.handle_received(RECV_BATCH_DATAGRAMS, later);
        assert_eq!(driver.poll_action(later), UdpAction::Receive);
    }

    #[test]
    fn udp_driver_stop_drains_without_pause_until_empty() {
        let (mut driver, now) = driver();
        driver.handle_received(1, now);
        assert!(driver.poll_action(now) == UdpAction::Pause);
        // Stop cancels the pause; short batches no longer pause, nor does a yield come.
        driver.handle_stop();
        assert!(driver.is_draining());
        for _ in 0..SHARD_BATCH_BEFORE_YIELD {
            assert_eq!(driver.poll_action(now), UdpAction::Receive);
            driver.handle_received(1, now);
        }
        assert_eq!(driver.poll_action(now), UdpAction::Receive);
        driver.handle_would_block();
        assert_eq!(driver.poll_action(now), UdpAction::Stop);
    }

    #[test]
    fn udp_driver_stop_during_wait_drains_then_ends() {
        let (mut driver, now) = driver();
        driver.handle_would_block();
        assert_eq!(driver.poll_action(now), UdpAction::WaitReadable);
        driver.handle_stop();
        driver.handle_stop();
        assert_eq!(driver.poll_action(now), UdpAction::Receive);
        driver.handle_would_block();
        assert_eq!(driver.poll_action(now), UdpAction::Stop);
    }

    #[test]
    fn udp_driver_drain_is_bounded() {
        let (mut driver, now) = driver();
        driver.handle_stop();
        let mut batches = 0;
        while driver.poll_action(now) == UdpAction::Receive {
            batches += 1;
            assert!(batches <= STOP_DRAIN_BATCHES_MAX, "drain never ends");
            driver.handle_received(RECV_BATCH_DATAGRAMS, now);
        }
        assert_eq!(batches, STOP_DRAIN_BATCHES_MAX);
        assert_eq!(driver.poll_action(now), UdpAction::Stop);
    }

    #[test]
    fn udp_driver_transient_error_pauses_and_continues() {
        let (mut driver, now) = driver();
        driver.handle_error(IoErrorClass::Transient, IO_ERROR_RETRY_PAUSE, now);
        let until = now + IO_ERROR_RETRY_PAUSE;
        assert_eq!(driver.poll_action(now), UdpAction::Pause);
        assert_eq!(driver.poll_action(until), UdpAction::Receive);
        driver.handle_received(RECV_BATCH_DATAGRAMS, until);
        assert_eq!(driver.poll_action(until), UdpAction::Receive);
        // A peer's error (no pause): receive again at once.
        driver.handle_error(IoErrorClass::Transient, Duration::ZERO, until);
        assert_eq!(driver.poll_action(until), UdpAction::Receive);
    }

    #[test]
    fn udp_driver_fatal_error_ends_the_task() {
        let (mut driver, now) = driver();
        driver.handle_error(IoErrorClass::Fatal, Duration::ZERO, now);
        assert_eq!(driver.poll_action(now), UdpAction::Stop);
        // Nothing revives it, not even a stop (no drain of a broken socket).
        driver.handle_stop();
        driver.handle_would_block();
        assert_eq!(driver.poll_action(now), UdpAction::Stop);
    }

    #[test]
    fn udp_driver_transient_error_while_draining_counts_a_batch() {
        let (mut driver, now) = driver();
        driver.handle_stop();
        driver.handle_error(IoErrorClass::Transient, IO_ERROR_RETRY_PAUSE, now);
        assert_eq!(driver.poll_action(now), UdpAction::Receive);
        driver.handle_error(IoErrorClass::Fatal, Duration::ZERO, now);
        assert_eq!(driver.poll_action(now), UdpAction::Stop);
    }
}
