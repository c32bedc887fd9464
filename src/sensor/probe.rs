//! Can this process use io_uring? glommio panics instead of returning an error when it cannot, so
//! we ask the kernel first with a raw `io_uring_setup` and close the ring at once.
//!
//! Never: panics; leaves the probe ring open.

use std::io;

use crate::config::limits::GLOMMIO_MEMLOCK_BYTES_PER_SHARD;

/// Raises RLIMIT_MEMLOCK's soft limit toward its hard limit when it is below what `shards`
/// glommio executors need. Returns the soft limit now in force.
pub(crate) fn raise_memlock(shards: usize) -> u64 {
    let wanted = GLOMMIO_MEMLOCK_BYTES_PER_SHARD.saturating_mul(shards as u64);
    // SAFETY: getrlimit/setrlimit read and write the plain struct we pass.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: if limit.rlim_max == libc::RLIM_INFINITY {
                    wanted
                } else {
                    wanted.min(limit.rlim_max)
                },
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        limit.rlim_cur
    }
}

/// Why the io_uring engine cannot run, as one line for stderr.
pub(crate) fn probe_io_uring() -> Result<(), String> {
    // struct io_uring_params is 120 bytes; all zero asks for defaults.
    let mut params = [0u32; 30];
    // SAFETY: io_uring_setup reads and writes `params` (120 bytes, the size of struct
    // io_uring_params) and returns a new fd or -1; the fd is closed right away.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: `fd` is the ring we just created and own.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let error = io::Error::last_os_error();
    Err(match error.raw_os_error() {
        Some(libc::ENOSYS) => {
            format!(
                "io_uring_setup: {error} (blocked by seccomp, e.g. a container's default profile?)"
            )
        }
        Some(libc::EPERM) => {
            format!("io_uring_setup: {error} (the kernel.io_uring_disabled sysctl or seccomp?)")
        }
        Some(libc::ENOMEM) => format!("io_uring_setup: {error} (RLIMIT_MEMLOCK too low?)"),
        _ => format!("io_uring_setup: {error}"),
    })
}
