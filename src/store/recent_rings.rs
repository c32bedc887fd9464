//! The recent-event rings the writer has not yet written to `dashboard_recent`: per IP and per
//! called number, the newest keys of its committed events since the last flush. Under a flood
//! the writer flushes them every [`DASHBOARD_RECENT_FLUSH_INTERVAL`] instead of every batch: a
//! flood with thousands of distinct numbers rewrote nearly every page of that table per commit
//! (0.5 us of the writer's CPU and 500 bytes of page writes per event at 150,000/s).
//!
//! Pure: the LMDB side is [`super::dashboard_table::flush_recent`]; the flush point (kept in
//! `meta` with the rings) lets a restart after `kill -9` re-add the events after it.
//!
//! Never: holds more than [`DASHBOARD_RECENT_PENDING_KEYS_MAX`] keys (full is flushed at once),
//! or more than [`DASHBOARD_RECENT_EVENTS_MAX`] event keys per key after a flush's worth, adds an
//! event key twice (a retried commit adds its batch again).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

use super::{Stored, ip_key, number_key};
use crate::config::limits::{
    DASHBOARD_RECENT_DEFER_BATCH_MIN, DASHBOARD_RECENT_EVENTS_MAX,
    DASHBOARD_RECENT_PENDING_KEYS_MAX,
};
use crate::event::{Event, display_ip};

/// Ring keys in `dashboard_recent`: this byte, then the IP's bytes or the number.
pub(super) const RECENT_IP: u8 = b'i';
pub(super) const RECENT_NUMBER: u8 = b'n';

/// Ring key (kind byte + IP or number) -> new event keys, oldest first.
#[derive(Default)]
pub(crate) struct PendingRings {
    rings: HashMap<Box<[u8]>, Vec<u64>, RandomState>,
    /// The newest event key added (0: none): the flush point a flush records.
    through: u64,
    scratch: Vec<u8>,
}

impl PendingRings {
    /// Adds the committed events of a batch (`stored` pairs them with their keys).
    pub(crate) fn add_batch(&mut self, events: &[Event], stored: &[Stored]) {
        for (event, outcome) in events.iter().zip(stored) {
            if let Stored::Key(key) = *outcome {
                self.add_event(event, key);
            }
        }
    }

    /// Adds one committed event: to its IP's ring and, if it has one, its number's.
    pub(crate) fn add_event(&mut self, event: &Event, key: u64) {
        self.add(RECENT_IP, ip_key(display_ip(event.source)).as_slice(), key);
        if let Some(number) = number_key(event.called_number()) {
            self.add(RECENT_NUMBER, number, key);
        }
        self.through = self.through.max(key);
    }

    fn add(&mut self, kind: u8, key: &[u8], event_key: u64) {
        self.scratch.clear();
        self.scratch.push(kind);
        self.scratch.extend_from_slice(key);
        let ring = match self.rings.get_mut(self.scratch.as_slice()) {
            Some(ring) => ring,
            None => self
                .rings
                .entry(self.scratch.as_slice().into())
                .or_default(),
        };
        // Keys only grow: a smaller or equal one is a retried batch's.
        if ring.last().is_some_and(|last| *last >= event_key) {
            return;
        }
        // Older keys than a ring holds are dropped in halves, not one by one.
        if ring.len() >= 2 * DASHBOARD_RECENT_EVENTS_MAX {
            ring.drain(..ring.len() - DASHBOARD_RECENT_EVENTS_MAX);
        }
        ring.push(event_key);
    }

    /// Whether this many keys wait that the rings must be flushed now.
    pub(crate) fn is_full(&self) -> bool {
        self.rings.len() >= DASHBOARD_RECENT_PENDING_KEYS_MAX
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    /// The newest event key added (0: none).
    pub(crate) fn through(&self) -> u64 {
        self.through
    }

    /// The rings in key order (ring key, new event keys oldest first, at most a ring's worth).
    pub(crate) fn sorted(&self) -> Vec<(&[u8], &[u64])> {
        let mut rings: Vec<(&[u8], &[u64])> = self
            .rings
            .iter()
            .map(|(key, events)| {
                let newest = events.len().saturating_sub(DASHBOARD_RECENT_EVENTS_MAX);
                (&key[..], events.get(newest..).unwrap_or_default())
            })
            .collect();
        rings.sort_unstable_by(|a, b| a.0.cmp(b.0));
        rings
    }

    /// After a flush committed: nothing pending (the flush point stays).
    pub(crate) fn clear(&mut self) {
        self.rings.clear();
    }

    /// Forgets event keys above `last_committed` (a batch given up at shutdown).
    pub(crate) fn discard_after(&mut self, last_committed: u64) {
        self.rings.retain(|_, events| {
            events.retain(|key| *key <= last_committed);
            !events.is_empty()
        });
        self.through = self.through.min(last_committed);
    }
}

/// Whether the batch being committed should write the pending rings too: a light load (a small
/// batch) writes them every commit, as it costs little; a flood every `interval`. (Full rings
/// are written whatever this says.)
pub(crate) fn flush_due(batch_events: usize, since_flush: Duration, interval: Duration) -> bool {
    batch_events < DASHBOARD_RECENT_DEFER_BATCH_MIN || since_flush >= interval
}

/// Whether a commit wrote the pending rings, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RingFlush {
    Not,
    Due,
    Full,
}

/// When the rings were last flushed, for [`flush_due`] (time is passed in).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlushClock {
    at: Option<Instant>,
}

impl FlushClock {
    pub(crate) fn new() -> Self {
        Self { at: None }
    }

    /// Time since the last flush; the maximum before the first.
    pub(crate) fn since(&self, now: Instant) -> Duration {
        self.at
            .map_or(Duration::MAX, |at| now.saturating_duration_since(at))
    }

    pub(crate) fn flushed(&mut self, now: Instant) {
        self.at = Some(now);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn ring(pending: &PendingRings, key: &[u8]) -> Vec<u64> {
        pending
            .sorted()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, events)| events.to_vec())
            .unwrap_or_default()
    }

    #[test]
    fn a_ring_keeps_its_newest_keys_once_each() {
        let mut pending = PendingRings::default();
        for key in 1..=100 {
            pending.add(RECENT_NUMBER, b"44", key);
        }
        // A retried batch adds its keys again.
        for key in 90..=100 {
            pending.add(RECENT_NUMBER, b"44", key);
        }
        let newest: Vec<u64> = (100 - DASHBOARD_RECENT_EVENTS_MAX as u64 + 1..=100).collect();
        assert_eq!(ring(&pending, b"n44"), newest);
        assert!(pending.rings[&b"n44"[..]].len() <= 2 * DASHBOARD_RECENT_EVENTS_MAX);
        assert_eq!(
            pending.through(),
            0,
            "add alone does not move the flush point"
        );
        pending.clear();
        assert!(pending.is_empty());
    }

    #[test]
    fn rings_are_listed_in_key_order_and_cleared() {
        let mut pending = PendingRings::default();
        pending.add(RECENT_NUMBER, b"9", 3);
        pending.add(RECENT_IP, &[10, 0, 0, 1], 2);
        pending.add(RECENT_NUMBER, b"1", 1);
        let keys: Vec<&[u8]> = pending.sorted().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [&b"i\x0a\x00\x00\x01"[..], b"n1", b"n9"]);
        pending.clear();
        assert!(pending.is_empty());
    }

    #[test]
    fn full_at_the_key_bound() {
        let mut pending = PendingRings::default();
        for index in 0..DASHBOARD_RECENT_PENDING_KEYS_MAX as u64 {
            assert!(!pending.is_full());
            pending.add(RECENT_NUMBER, &index.to_be_bytes(), index + 1);
        }
        assert!(pending.is_full());
    }

    #[test]
    fn discarding_keeps_only_committed_keys() {
        let mut pending = PendingRings::default();
        pending.add(RECENT_NUMBER, b"1", 5);
        pending.add(RECENT_NUMBER, b"1", 6);
        pending.add(RECENT_NUMBER, b"2", 7);
        pending.through = 7;
        pending.discard_after(5);
        assert_eq!(ring(&pending, b"n1"), [5]);
        assert_eq!(ring(&pending, b"n2"), Vec::<u64>::new());
        assert_eq!(pending.through(), 5);
    }

    #[test]
    fn small_batches_flush_every_commit_floods_every_interval() {
        let interval = Duration::from_millis(250);
        let small = DASHBOARD_RECENT_DEFER_BATCH_MIN - 1;
        let large = DASHBOARD_RECENT_DEFER_BATCH_MIN;
        assert!(flush_due(small, Duration::ZERO, interval));
        assert!(!flush_due(large, Duration::from_millis(249), interval));
        assert!(flush_due(large, interval, interval));
        let mut clock = FlushClock::new();
        let now = Instant::now();
        assert!(flush_due(large, clock.since(now), interval));
        clock.flushed(now);
        assert!(!flush_due(
            large,
            clock.since(now + Duration::from_millis(10)),
            interval
        ));
        assert!(flush_due(large, clock.since(now + interval), interval));
    }
}
