//! The dashboard's LMDB tables: `dashboard` (time buckets: [`dashboard::bucket_key`] ->
//! [`dashboard::Counts`]) and `dashboard_recent` (`i` + IP bytes or `n` + called number -> the
//! keys of its newest events, a ring of big-endian u64s). The writer adds each batch to the
//! buckets in the batch's write transaction ([`apply`]) and prunes old buckets
//! ([`Store::prune_dashboard`]); readers get a window's buckets and a key's recent events.
//!
//! Recent events of an IP or number: a ring of at most [`DASHBOARD_RECENT_EVENTS_MAX`] event
//! keys per key. The writer gathers new keys in [`PendingRings`] and writes them
//! ([`flush_recent`]: one small get and put per distinct IP and number) in a batch's
//! transaction: every batch under a light load, every
//! [`crate::config::limits::DASHBOARD_RECENT_FLUSH_INTERVAL`] under a flood, so a detail view
//! may lag a flood by that much. A detail view then reads 20 events by key. Rings are kept like
//! the per-IP aggregates; keys of events pruned by retention are skipped when read.
//!
//! Never: runs outside the writer's transaction for writes, fails a batch on a stored value
//! that does not decode (it is replaced).

use std::ops::Bound;

use heed::{RoTxn, RwTxn, WithoutTls};

use super::dashboard::{
    self, BatchCounts, Counts, DIMENSIONS, Dimension, Granularity, Horizon, bucket_key,
};
use super::recent_rings::{PendingRings, RECENT_IP, RECENT_NUMBER, RingFlush};
use super::{Reader, Store, StoreError, Stored, Table, encoder, ip_key, number_key, ring_codec};
use crate::config::limits::DASHBOARD_RECENT_EVENTS_MAX;
use crate::event::Event;

/// The dashboard's two tables.
#[derive(Clone, Copy)]
pub(super) struct DashTables {
    pub(super) buckets: Table,
    pub(super) recent: Table,
}

/// The table names, after the store's other tables.
pub(super) const DASH_TABLE_NAMES: [&str; 2] = ["dashboard", "dashboard_recent"];

/// Events read per transaction when re-adding the rings' tail at start.
const RECENT_TAIL_CHUNK: usize = 4_096;

/// `meta` key: the newest event key in the stored rings.
const META_RECENT_THROUGH: &[u8] = b"dashboard_recent_through";

/// Keys folded into a bucket's "other" count in one batch, per dimension.
pub type Folded = [u64; DIMENSIONS];

/// Adds the batch's committed events to the buckets; the rings are [`flush_recent`]'s.
pub(super) fn apply(
    tables: &DashTables,
    txn: &mut RwTxn<'_>,
    batch: &encoder::Batch,
    stored: &[Stored],
    horizon: &Horizon,
    folded: &mut Folded,
) -> Result<(), heed::Error> {
    let mut counts = BatchCounts::for_batch(batch.events.len());
    for (event, outcome) in batch.events.iter().zip(stored) {
        if let Stored::Key(_) = *outcome {
            counts.add(event);
        }
    }
    let mut value = Vec::with_capacity(4096);
    for delta in counts.roll_up(horizon) {
        for (dimension, keys) in Dimension::ALL.into_iter().zip(delta.dimensions) {
            if keys.keys.is_empty() {
                continue;
            }
            let key = bucket_key(delta.granularity, dimension, delta.start_s);
            let old = tables.buckets.get(txn, &key)?;
            let count = dashboard::merge_value(old, keys, &mut value);
            if let Some(slot) = folded.get_mut(dimension.index()) {
                *slot += count;
            }
            tables.buckets.put(txn, &key, &value)?;
        }
    }
    Ok(())
}

/// Adds the batch's committed events to the pending rings, and writes them ([`flush_recent`])
/// when `due` or full; the caller clears them once the transaction committed.
pub(super) fn add_recent(
    tables: &DashTables,
    meta: Table,
    txn: &mut RwTxn<'_>,
    batch: &encoder::Batch,
    stored: &[Stored],
    pending: &mut PendingRings,
    due: bool,
) -> Result<RingFlush, heed::Error> {
    // A retried batch adds the same keys again, which the rings skip.
    pending.add_batch(&batch.events, stored);
    let flush = match (pending.is_full(), due) {
        (true, _) => RingFlush::Full,
        (false, true) => RingFlush::Due,
        (false, false) => return Ok(RingFlush::Not),
    };
    flush_recent(tables, meta, txn, pending)?;
    Ok(flush)
}

/// Appends the pending rings' event keys to the stored rings, in key order, and records the
/// flush point in `meta` (the caller clears `pending` once the transaction committed).
pub(super) fn flush_recent(
    tables: &DashTables,
    meta: Table,
    txn: &mut RwTxn<'_>,
    pending: &PendingRings,
) -> Result<(), heed::Error> {
    let mut value = Vec::with_capacity(8 * DASHBOARD_RECENT_EVENTS_MAX);
    for (ring_key, events) in pending.sorted() {
        let old = tables.recent.get(txn, ring_key)?;
        ring_codec::push_recent(old, events, &mut value);
        tables.recent.put(txn, ring_key, &value)?;
    }
    meta.put(txn, META_RECENT_THROUGH, &pending.through().to_be_bytes())
}

/// Where the stored rings end: the newest event key they were flushed with; `None` for a store
/// written before rings could wait (its rings were written with every batch).
pub(super) fn recent_through(
    meta: Table,
    txn: &RoTxn<'_, WithoutTls>,
) -> Result<Option<u64>, heed::Error> {
    Ok(meta
        .get(txn, META_RECENT_THROUGH)?
        .and_then(|value| <[u8; 8]>::try_from(value).ok())
        .map(u64::from_be_bytes))
}

impl Store {
    /// Writes the pending rings in a write transaction of their own (the writer, idle or
    /// stopping); clears them once committed.
    pub(super) fn flush_recent_rings(&self, pending: &mut PendingRings) -> Result<(), heed::Error> {
        let Some(tables) = self.inner.tables.dash else {
            return Ok(());
        };
        if pending.is_empty() {
            return Ok(());
        }
        let mut txn = self.inner.env.write_txn()?;
        flush_recent(&tables, self.inner.tables.meta, &mut txn, pending)?;
        txn.commit()?;
        pending.clear();
        Ok(())
    }

    /// At the writer's start: adds to `pending` the events committed after the rings' flush
    /// point (a `kill -9` between flushes), [`RECENT_TAIL_CHUNK`] at a time. A store without a
    /// flush point gets one at its last event, as its rings are complete.
    pub(super) fn pending_recent_tail(&self, pending: &mut PendingRings) -> Result<(), StoreError> {
        if self.inner.tables.dash.is_none() {
            return Ok(());
        }
        let (through, last) = {
            let reader = self.read()?;
            (
                recent_through(self.inner.tables.meta, &reader.txn)?,
                reader.last_key()?,
            )
        };
        let Some(mut after) = through else {
            let mut txn = self.inner.env.write_txn()?;
            self.inner
                .tables
                .meta
                .put(&mut txn, META_RECENT_THROUGH, &last.to_be_bytes())?;
            txn.commit()?;
            return Ok(());
        };
        loop {
            let events = self.read()?.events_after(after, RECENT_TAIL_CHUNK)?;
            let Some((last, _)) = events.last() else {
                return Ok(());
            };
            after = *last;
            for (key, event) in &events {
                pending.add_event(event, *key);
                if pending.is_full() {
                    self.flush_recent_rings(pending)?;
                }
            }
        }
    }

    /// Removes dashboard buckets that `horizon` no longer keeps, in one write transaction.
    /// The writer calls it every [`crate::config::limits::DASHBOARD_PRUNE_INTERVAL`]; tests
    /// call it with a chosen time. Returns how many buckets were removed.
    pub fn prune_dashboard(&self, horizon: &Horizon) -> Result<usize, heed::Error> {
        let Some(tables) = self.inner.tables.dash else {
            return Ok(0);
        };
        let _guard = self
            .inner
            .resize_lock
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut txn = self.inner.env.write_txn()?;
        let mut removed = 0;
        for granularity in Granularity::ALL {
            let cutoff = horizon.cutoff_s(granularity);
            for dimension in Dimension::ALL {
                let low = bucket_key(granularity, dimension, 0);
                let high = bucket_key(granularity, dimension, cutoff);
                let range = (Bound::Included(&low[..]), Bound::Excluded(&high[..]));
                removed += tables.buckets.delete_range(&mut txn, &range)?;
            }
        }
        txn.commit()?;
        Ok(removed)
    }
}

impl Reader<'_> {
    /// The buckets of one dimension from `first_start_s` to `last_start_s` (both included),
    /// oldest first, as (start, counts); absent buckets are not listed.
    pub fn dashboard_buckets(
        &self,
        granularity: Granularity,
        dimension: Dimension,
        first_start_s: u64,
        last_start_s: u64,
    ) -> Result<Vec<(u64, Counts)>, StoreError> {
        let Some(tables) = self.store.tables.dash else {
            return Ok(Vec::new());
        };
        let low = bucket_key(granularity, dimension, first_start_s);
        let high = bucket_key(granularity, dimension, last_start_s);
        let range = (Bound::Included(&low[..]), Bound::Included(&high[..]));
        let mut out = Vec::new();
        for entry in tables.buckets.range(&self.txn, &range)? {
            let (key, value) = entry?;
            let Some((_, _, start)) = dashboard::parse_bucket_key(key) else {
                continue;
            };
            if let Some(counts) = Counts::decode(value) {
                out.push((start, counts));
            }
        }
        Ok(out)
    }

    /// The newest events (at most [`DASHBOARD_RECENT_EVENTS_MAX`], newest first) of a source
    /// IP (`ip_key` bytes) or a called number, from its ring; pruned events are skipped.
    fn recent_of(&self, kind: u8, key: &[u8]) -> Result<Vec<(u64, Event)>, StoreError> {
        let Some(tables) = self.store.tables.dash else {
            return Ok(Vec::new());
        };
        let mut table_key = Vec::with_capacity(1 + key.len());
        table_key.push(kind);
        table_key.extend_from_slice(key);
        let Some(ring) = tables.recent.get(&self.txn, &table_key)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for event_key in ring_codec::recent_keys(ring) {
            let bytes = event_key.to_be_bytes();
            if let Some(value) = self.store.tables.events.get(&self.txn, &bytes)?
                && let Some(decoded) = self.decode_entry(&bytes, value)
            {
                out.push(decoded);
            }
        }
        Ok(out)
    }

    /// A source IP's newest events (see [`Self::recent_of`]).
    pub fn recent_events_of_ip(
        &self,
        ip: std::net::IpAddr,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let key = ip_key(super::canonical_ip(ip));
        self.recent_of(RECENT_IP, key.as_slice())
    }

    /// A called number's newest events.
    pub fn recent_events_of_number(&self, number: &[u8]) -> Result<Vec<(u64, Event)>, StoreError> {
        match number_key(Some(number)) {
            Some(key) => self.recent_of(RECENT_NUMBER, key),
            None => Ok(Vec::new()),
        }
    }

    /// The newest events with a key above `after` (all when `None`), newest first, at most
    /// `limit`: the live feed. Walks back from the newest event, so it costs `limit` reads.
    pub fn newest_events_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.store.tables.events.rev_iter(&self.txn)? {
            if out.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            let number = <[u8; 8]>::try_from(key).map(u64::from_be_bytes);
            if after.is_some_and(|after| number.is_ok_and(|number| number <= after)) {
                break;
            }
            if let Some(decoded) = self.decode_entry(key, value) {
                out.push(decoded);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use crate::store::test_events::event_from;

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&StoreConfig {
            db_file: dir.path().join("sentrypeer.db"),
            batch_events_max: 4_096,
            batch_interval: std::time::Duration::from_millis(50),
            no_sync: true,
            retention_days: None,
        })
        .unwrap()
    }

    fn event(index: u64) -> Event {
        event_from(index, "10.0.0.9:5060".parse().unwrap(), "7")
    }

    /// Commits events `range` in one batch; `flush`: whether the rings are due.
    fn commit(
        store: &Store,
        rings: &mut PendingRings,
        range: std::ops::RangeInclusive<u64>,
        flush: bool,
    ) -> RingFlush {
        let mut batch = encoder::Batch::encoded(range.map(event).collect());
        let horizon = Horizon::from_ns(1_700_000_000_000_000_000, None);
        let (mut stored, mut folded) = (Vec::new(), Folded::default());
        let flushed = store
            .commit_batch(&mut batch, &mut stored, &horizon, &mut folded, rings, flush)
            .unwrap();
        if flushed != RingFlush::Not {
            rings.clear();
        }
        flushed
    }

    fn ring(store: &Store) -> Vec<u64> {
        let reader = store.read().unwrap();
        let ip = reader
            .recent_events_of_ip("10.0.0.9".parse().unwrap())
            .unwrap();
        let number = reader.recent_events_of_number(b"7").unwrap();
        let keys: Vec<u64> = number.iter().map(|(key, _)| *key).collect();
        assert_eq!(ip.iter().map(|(key, _)| *key).collect::<Vec<_>>(), keys);
        keys
    }

    fn newest(last: u64) -> Vec<u64> {
        (last + 1 - DASHBOARD_RECENT_EVENTS_MAX as u64..=last)
            .rev()
            .collect()
    }

    /// Rings left pending by a `kill -9` (here: dropped) are re-added from the events after
    /// the flush point when the writer starts again.
    #[test]
    fn rings_pending_at_a_crash_are_re_added_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut rings = PendingRings::default();
        store.pending_recent_tail(&mut rings).unwrap();
        assert!(rings.is_empty());
        assert_eq!(commit(&store, &mut rings, 1..=30, true), RingFlush::Due);
        assert!(rings.is_empty());
        assert_eq!(commit(&store, &mut rings, 31..=60, false), RingFlush::Not);
        assert_eq!(commit(&store, &mut rings, 61..=70, false), RingFlush::Not);
        assert_eq!(
            ring(&store),
            newest(30),
            "the pending rings are not written yet"
        );
        drop((rings, store));

        let store = open(&dir);
        let mut rings = PendingRings::default();
        store.pending_recent_tail(&mut rings).unwrap();
        assert_eq!(rings.through(), 70);
        store.flush_recent_rings(&mut rings).unwrap();
        assert!(rings.is_empty());
        assert_eq!(ring(&store), newest(70));
        // Nothing after the flush point: nothing to re-add.
        let mut again = PendingRings::default();
        store.pending_recent_tail(&mut again).unwrap();
        assert!(again.is_empty());
        assert_eq!(again.through(), 0);
    }

    /// A batch committed twice (a retry after a failed commit adds it to the rings again)
    /// lists each event once.
    #[test]
    fn a_retried_batch_is_in_the_rings_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut rings = PendingRings::default();
        let mut batch = encoder::Batch::encoded((1..=5).map(event).collect());
        rings.add_batch(
            &batch.events,
            &[Stored::Key(1), Stored::Key(2), Stored::Key(3)],
        );
        let horizon = Horizon::from_ns(1_700_000_000_000_000_000, None);
        let (mut stored, mut folded) = (Vec::new(), Folded::default());
        let flushed = store
            .commit_batch(
                &mut batch,
                &mut stored,
                &horizon,
                &mut folded,
                &mut rings,
                true,
            )
            .unwrap();
        assert_eq!(flushed, RingFlush::Due);
        assert_eq!(ring(&store), [5, 4, 3, 2, 1]);
    }
}
