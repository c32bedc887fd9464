//! One policy for socket errors, shared by every socket task of both engines: each error is
//! sorted into a class, counted in that class's counter and logged at most once per class per
//! `IO_ERROR_LOG_INTERVAL`.
//! - transient (EINTR, EAGAIN, ENOBUFS, ENOMEM, EMFILE, ECONNREFUSED/EHOSTUNREACH/ENETUNREACH from
//!   ICMP, anything unknown): the next call may succeed; the task carries on, after
//!   `IO_ERROR_RETRY_PAUSE` when resources ran short ([`retry_pause`]);
//! - fatal (EBADF, ENOTSOCK, EINVAL, EFAULT, ...): the socket cannot be served any more; a receive
//!   or accept task ends. A send error never ends a task (the next receive on a broken socket
//!   fails too), so for sends only a broken descriptor counts as fatal.
//!
//! Pure: time is passed in. Never: reads a clock, ends a task on a transient error, logs more
//! than one line per class per interval.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::config::limits::{IO_ERROR_LOG_INTERVAL, IO_ERROR_RETRY_PAUSE};

/// What a socket task was doing when the error came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoOp {
    UdpReceive,
    UdpReply,
    Accept,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UdpReceive => "UDP receive",
            Self::UdpReply => "UDP reply",
            Self::Accept => "accept",
        })
    }
}

/// How bad a socket error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoErrorClass {
    /// The next call may succeed.
    Transient,
    /// The socket cannot be served any more.
    Fatal,
}

impl IoErrorClass {}

/// The class of `error` met while doing `op`.
pub(crate) fn classify(op: IoOp, error: &io::Error) -> IoErrorClass {
    let Some(code) = error.raw_os_error() else {
        // Not from the kernel (e.g. a runtime's own error): assume it passes.
        return IoErrorClass::Transient;
    };
    let broken_descriptor = matches!(code, libc::EBADF | libc::ENOTSOCK | libc::EFAULT);
    let fatal = match op {
        IoOp::UdpReply => broken_descriptor,
        IoOp::UdpReceive | IoOp::Accept => {
            broken_descriptor || matches!(code, libc::EINVAL | libc::EOPNOTSUPP)
        }
    };
    if fatal {
        IoErrorClass::Fatal
    } else {
        IoErrorClass::Transient
    }
}

/// How long a task waits before it tries again after a transient `error`: a shortage of
/// resources (ENOBUFS, ENOMEM, EMFILE, ENFILE, or an error not from the kernel) is given
/// `IO_ERROR_RETRY_PAUSE` to pass; one caused by a peer (ECONNABORTED, ECONNREFUSED, EINTR, ...)
/// is gone with the call that reported it, and pausing would let a peer slow the socket down.
pub(crate) fn retry_pause(error: &io::Error) -> Duration {
    match error.raw_os_error() {
        None | Some(libc::ENOBUFS | libc::ENOMEM | libc::EMFILE | libc::ENFILE) => {
            IO_ERROR_RETRY_PAUSE
        }
        Some(_) => Duration::ZERO,
    }
}

/// When each class was last logged.
#[derive(Debug, Default)]
pub(crate) struct IoErrorLog {
    logged_at: [Option<Instant>; 2],
}

impl IoErrorLog {
    /// Records an error of `class` at `now`; true when its line is due (the first of the class,
    /// or `IO_ERROR_LOG_INTERVAL` after the last one logged).
    pub(crate) fn handle_error(&mut self, class: IoErrorClass, now: Instant) -> bool {
        let [transient, fatal] = &mut self.logged_at;
        let logged_at = match class {
            IoErrorClass::Transient => transient,
            IoErrorClass::Fatal => fatal,
        };
        let due =
            logged_at.is_none_or(|at| now.saturating_duration_since(at) >= IO_ERROR_LOG_INTERVAL);
        if due {
            *logged_at = Some(now);
        }
        due
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

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn io_error_classes() {
        for code in [
            libc::EINTR,
            libc::EAGAIN,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::ECONNREFUSED,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::EMFILE,
        ] {
            for op in [IoOp::UdpReceive, IoOp::UdpReply, IoOp::Accept] {
                assert_eq!(
                    classify(op, &os(code)),
                    IoErrorClass::Transient,
                    "{op} {code}"
                );
            }
        }
        for code in [libc::EBADF, libc::ENOTSOCK, libc::EFAULT] {
            for op in [IoOp::UdpReceive, IoOp::UdpReply, IoOp::Accept] {
                assert_eq!(classify(op, &os(code)), IoErrorClass::Fatal, "{op} {code}");
            }
        }
        // EINVAL ends a receive or accept loop; on a send it concerns one destination only.
        assert_eq!(
            classify(IoOp::UdpReceive, &os(libc::EINVAL)),
            IoErrorClass::Fatal
        );
        assert_eq!(
            classify(IoOp::Accept, &os(libc::EINVAL)),
            IoErrorClass::Fatal
        );
        assert_eq!(
            classify(IoOp::UdpReply, &os(libc::EINVAL)),
            IoErrorClass::Transient
        );
        let runtime = io::Error::other("runtime shutting down");
        assert_eq!(
            classify(IoOp::UdpReceive, &runtime),
            IoErrorClass::Transient
        );
    }

    #[test]
    fn io_error_pause_only_for_a_shortage() {
        for code in [libc::ENOBUFS, libc::ENOMEM, libc::EMFILE, libc::ENFILE] {
            assert_eq!(retry_pause(&os(code)), IO_ERROR_RETRY_PAUSE, "{code}");
        }
        for code in [
            libc::ECONNABORTED,
            libc::ECONNREFUSED,
            libc::EINTR,
            libc::EHOSTUNREACH,
        ] {
            assert_eq!(retry_pause(&os(code)), Duration::ZERO, "{code}");
        }
        assert_eq!(retry_pause(&io::Error::other("?")), IO_ERROR_RETRY_PAUSE);
    }

    #[test]
    fn io_error_log_is_rate_limited_per_class() {
        let mut log = IoErrorLog::default();
        let start = Instant::now();
        assert!(log.handle_error(IoErrorClass::Transient, start));
        assert!(!log.handle_error(IoErrorClass::Transient, start + Duration::from_secs(1)));
        // The other class has its own line.
        assert!(log.handle_error(IoErrorClass::Fatal, start + Duration::from_secs(2)));
        assert!(!log.handle_error(IoErrorClass::Fatal, start + Duration::from_secs(3)));
        let later = start + IO_ERROR_LOG_INTERVAL;
        assert!(!log.handle_error(IoErrorClass::Transient, later - Duration::from_millis(1)));
        assert!(log.handle_error(IoErrorClass::Transient, later));
        assert!(!log.handle_error(IoErrorClass::Transient, later));
    }
}
