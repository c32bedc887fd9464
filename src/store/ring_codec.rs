//! The stored form of a dashboard recent-event ring (`dashboard_recent` values): the newest
//! [`DASHBOARD_RECENT_EVENTS_MAX`] event keys of one source IP or called number, oldest first.
//!
//! Compact form (written): [`RING_COMPACT`], the oldest key as a LEB128 varint, then each next
//! key's difference from the one before (wrapping, so any order encodes), as varints. Event keys
//! grow by one per stored event, so a ring of 20 keys takes 20-60 bytes instead of 160 (the
//! table's pages, and the pages each flush rewrites, shrink with it). Old form (still read):
//! big-endian u64s, oldest first; its first byte is 0 for any key below 2^56.
//!
//! Never: panics or allocates more than [`DASHBOARD_RECENT_EVENTS_MAX`] keys on corrupt bytes
//! (decoding stops at the first bad varint), does I/O.

use super::codec::{read_varint, write_varint};
use crate::config::limits::DASHBOARD_RECENT_EVENTS_MAX;

/// First byte of a ring in the compact form.
const RING_COMPACT: u8 = 0xd1;

/// Appends a batch's event keys (oldest first) to a stored ring (`old`, either form) and writes
/// the newest [`DASHBOARD_RECENT_EVENTS_MAX`] to `out` in the compact form.
pub fn push_recent(old: Option<&[u8]>, new_keys: &[u64], out: &mut Vec<u8>) {
    let mut newest = Newest::default();
    for_each_key(old.unwrap_or_default(), |key| newest.push(key));
    let skip = new_keys.len().saturating_sub(DASHBOARD_RECENT_EVENTS_MAX);
    for &key in new_keys.iter().skip(skip) {
        newest.push(key);
    }
    out.clear();
    out.push(RING_COMPACT);
    let mut previous = 0u64;
    for key in newest.oldest_first() {
        write_varint(key.wrapping_sub(previous), out);
        previous = key;
    }
}

/// The event keys of a ring (either form), newest first.
pub fn recent_keys(ring: &[u8]) -> Vec<u64> {
    let mut newest = Newest::default();
    for_each_key(ring, |key| newest.push(key));
    let mut keys: Vec<u64> = newest.oldest_first().collect();
    keys.reverse();
    keys
}

/// Calls `f` with each key of `ring`, oldest first; stops at the first undecodable bytes.
fn for_each_key(ring: &[u8], mut f: impl FnMut(u64)) {
    match ring.split_first() {
        Some((&RING_COMPACT, mut rest)) => {
            let mut key = 0u64;
            while let Some((delta, after)) = read_varint(rest) {
                key = key.wrapping_add(delta);
                f(key);
                rest = after;
            }
        }
        _ => {
            for chunk in ring.chunks_exact(8) {
                if let Ok(bytes) = <[u8; 8]>::try_from(chunk) {
                    f(u64::from_be_bytes(bytes));
                }
            }
        }
    }
}

/// The last [`DASHBOARD_RECENT_EVENTS_MAX`] keys pushed, in a fixed array.
#[derive(Default)]
struct Newest {
    keys: [u64; DASHBOARD_RECENT_EVENTS_MAX],
    /// Keys pushed so far (the next slot is `pushed % MAX`).
    pushed: usize,
}

impl Newest {
    fn push(&mut self, key: u64) {
        if let Some(slot) = self.keys.get_mut(self.pushed % DASHBOARD_RECENT_EVENTS_MAX) {
            *slot = key;
        }
        self.pushed += 1;
    }

    fn oldest_first(&self) -> impl Iterator<Item = u64> + '_ {
        let held = self.pushed.min(DASHBOARD_RECENT_EVENTS_MAX);
        let first = self.pushed - held;
        (first..self.pushed)
            .filter_map(|index| self.keys.get(index % DASHBOARD_RECENT_EVENTS_MAX).copied())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The old form of `keys` (oldest first).
    fn old_form(keys: &[u64]) -> Vec<u8> {
        keys.iter().flat_map(|key| key.to_be_bytes()).collect()
    }

    #[test]
    fn recent_ring_keeps_the_newest() {
        let mut ring = Vec::new();
        push_recent(None, &[1, 2, 3], &mut ring);
        assert_eq!(recent_keys(&ring), [3, 2, 1]);
        let many: Vec<u64> = (4..40).collect();
        let mut next = Vec::new();
        push_recent(Some(&ring), &many, &mut next);
        let keys = recent_keys(&next);
        assert_eq!(keys.len(), DASHBOARD_RECENT_EVENTS_MAX);
        assert_eq!(keys[0], 39);
        assert_eq!(
            *keys.last().unwrap(),
            40 - DASHBOARD_RECENT_EVENTS_MAX as u64
        );
    }

    #[test]
    fn an_old_form_ring_is_read_and_rewritten_compact() {
        let old = old_form(&[1, 2, 3]);
        assert_eq!(recent_keys(&old), [3, 2, 1]);
        let mut next = Vec::new();
        push_recent(Some(&old), &[9], &mut next);
        assert_eq!(next[0], RING_COMPACT);
        assert_eq!(recent_keys(&next), [9, 3, 2, 1]);
        // A torn old ring: whole keys are kept.
        assert_eq!(recent_keys(&old[..12]), [1]);
    }

    /// A flood's ring: 20 keys some thousands apart fit in a quarter of the old 160 bytes.
    #[test]
    fn a_flood_ring_is_small() {
        let keys: Vec<u64> = (0..20).map(|i| 5_000_000 + i * 9_973).collect();
        let mut ring = Vec::new();
        push_recent(None, &keys, &mut ring);
        assert!(ring.len() <= 1 + 4 + 19 * 2, "{} bytes", ring.len());
        assert_eq!(
            recent_keys(&ring),
            keys.iter().rev().copied().collect::<Vec<_>>()
        );
    }

    proptest! {
        /// Any history of pushes keeps exactly the newest keys, in order, whatever their order.
        #[test]
        fn pushes_keep_the_newest(batches in proptest::collection::vec(
            proptest::collection::vec(any::<u64>(), 0..30), 0..6)) {
            let mut ring: Option<Vec<u8>> = None;
            let mut all = Vec::new();
            for batch in &batches {
                let mut next = Vec::new();
                push_recent(ring.as_deref(), batch, &mut next);
                ring = Some(next);
                all.extend_from_slice(batch);
            }
            let want: Vec<u64> = all.iter().rev().take(DASHBOARD_RECENT_EVENTS_MAX).copied().collect();
            let got = ring.map(|r| recent_keys(&r)).unwrap_or_default();
            prop_assert_eq!(got, want);
        }

        /// Any bytes decode without a panic, to at most the bound of keys.
        #[test]
        fn any_bytes_decode(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            prop_assert!(recent_keys(&bytes).len() <= DASHBOARD_RECENT_EVENTS_MAX);
            let mut compact = vec![RING_COMPACT];
            compact.extend_from_slice(&bytes);
            prop_assert!(recent_keys(&compact).len() <= DASHBOARD_RECENT_EVENTS_MAX);
            let mut out = Vec::new();
            push_recent(Some(&compact), &[7], &mut out);
            prop_assert_eq!(recent_keys(&out).first().copied(), Some(7));
        }
    }
}
