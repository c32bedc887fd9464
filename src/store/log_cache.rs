//! Keeps the JSON log from filling the page cache: after every [`JSON_LOG_TRIM_STEP_BYTES`] of log it asks
//! the kernel (`posix_fadvise(DONTNEED)`) to write older log pages back and drop them; the newest
//! [`JSON_LOG_KEPT_BYTES`], which `tail -f` readers are reading, are left alone.
//!
//! A flood writes about 90 MB of log per second. Left to the kernel, those pages pile up as dirty
//! page cache until writeback starts at the dirty threshold, and every new page is fresh memory:
//! on the 2-vCPU VM of `docs/benchmarks.md` that made the output thread's page-cache copy cost
//! 2-3 times more after 30 s, enough to cost events. Dropped pages are reused warm instead.
//!
//! Never: fails a write (the advice is only advice: its errors are ignored), blocks on the disk.

use std::fs::File;
use std::io::Seek;
use std::num::NonZeroU64;

use rustix::fs::{Advice, fadvise};

use crate::config::limits::{JSON_LOG_KEPT_BYTES, JSON_LOG_TRIM_STEP_BYTES};

/// Where the last advice reached, for one open log file.
#[derive(Debug, Default)]
pub struct LogCacheTrim {
    /// Log offset at the last advice.
    advised_at: u64,
}

impl LogCacheTrim {
    /// Call after each flush of `file` (opened for appending): every [`JSON_LOG_TRIM_STEP_BYTES`] of
    /// growth, advises the pages between `2 * JSON_LOG_KEPT_BYTES` and [`JSON_LOG_KEPT_BYTES`] behind the end.
    ///
    /// Each page is advised four times as the log grows past it: a dirty page is only sent to
    /// disk by the first advice, a clean one is dropped by the next.
    pub fn after_flush(&mut self, file: &File) {
        // With O_APPEND the file offset is the end of our last write.
        let Ok(end) = (&*file).stream_position() else {
            return;
        };
        if end < self.advised_at {
            // Truncated under us (copytruncate rotation): start over.
            *self = Self::default();
        }
        if end - self.advised_at < JSON_LOG_TRIM_STEP_BYTES {
            return;
        }
        self.advised_at = end;
        let stop = end.saturating_sub(JSON_LOG_KEPT_BYTES);
        let start = stop.saturating_sub(JSON_LOG_KEPT_BYTES);
        if let Some(len) = NonZeroU64::new(stop - start) {
            let _ = fadvise(file, start, Some(len), Advice::DontNeed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;

    const MIB: usize = 1024 * 1024;
    const PAGE: usize = 4096;

    /// One flag per page of `file`: resident in the page cache (via mmap + mincore).
    fn residency(file: &File) -> Vec<bool> {
        let len = file.metadata().unwrap().len() as usize;
        let mut vector = vec![0u8; len.div_ceil(PAGE)];
        // SAFETY: a read-only shared mapping of a file we own, unmapped before returning; mincore
        // writes one byte per page into a vector of exactly that many bytes.
        unsafe {
            use std::os::fd::AsRawFd;
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            assert_eq!(libc::mincore(map, len, vector.as_mut_ptr()), 0);
            libc::munmap(map, len);
        }
        vector.iter().map(|b| b & 1 == 1).collect()
    }

    fn resident_in(pages: &[bool], from_mib: usize, to_mib: usize) -> usize {
        let pages_per_mib = MIB / PAGE;
        pages[from_mib * pages_per_mib..to_mib * pages_per_mib]
            .iter()
            .filter(|r| **r)
            .count()
    }

    fn open_log(dir: &tempfile::TempDir) -> File {
        // Readable too, for the mapping of `residency`.
        OpenOptions::new()
            .read(true)
            .create(true)
            .append(true)
            .open(dir.path().join("json.log"))
            .unwrap()
    }

    #[test]
    fn log_cache_trim_drops_clean_old_pages_and_keeps_the_tail() {
        // Under the crate (the build's disk): tmpfs pages cannot be dropped.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let mut file = open_log(&dir);
        let chunk = vec![b'x'; MIB];
        let mut trim = LogCacheTrim::default();
        for _ in 0..96 {
            file.write_all(&chunk).unwrap();
            trim.after_flush(&file);
        }
        // Written back, as the earlier advice or the kernel would have by now.
        file.sync_data().unwrap();
        for _ in 0..8 {
            file.write_all(&chunk).unwrap();
            trim.after_flush(&file);
        }
        // The advice at 104 MiB covered [40, 72) MiB, all clean: dropped.
        let pages = residency(&file);
        assert_eq!(pages.len(), 104 * MIB / PAGE);
        assert_eq!(resident_in(&pages, 40, 72), 0);
        // The newest 32 MiB were never advised.
        assert_eq!(resident_in(&pages, 72, 104), 32 * MIB / PAGE);
        assert_eq!(file.metadata().unwrap().len(), 104 * MIB as u64);
    }

    #[test]
    fn log_cache_trim_waits_for_a_step_and_starts_over_after_truncation() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let mut file = open_log(&dir);
        let mut trim = LogCacheTrim::default();
        file.write_all(&vec![b'y'; 7 * MIB]).unwrap();
        trim.after_flush(&file);
        assert_eq!(trim.advised_at, 0);
        file.write_all(&vec![b'y'; 2 * MIB]).unwrap();
        trim.after_flush(&file);
        assert_eq!(trim.advised_at, 9 * MIB as u64);
        file.set_len(0).unwrap();
        file.write_all(b"line\n").unwrap();
        trim.after_flush(&file);
        assert_eq!(trim.advised_at, 0);
    }
}
