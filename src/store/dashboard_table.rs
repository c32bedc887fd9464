//! The dashboard's LMDB tables: `dashboard` (time buckets: [`dashboard::bucket_key`] ->
//! [`dashboard::Counts`]) and `dashboard_recent` (`i` + IP bytes or `n` + called number -> the
//! keys of its newest events, a ring of big-endian u64s). The writer adds each batch in its own
//! write transaction ([`apply`]) and prunes old buckets ([`Store::prune_dashboard`]); readers
//! get a window's buckets and a key's recent events.
//!
//! Recent events of an IP or number: a ring of at most [`DASHBOARD_RECENT_EVENTS_MAX`] event
//! keys per key, rewritten once per batch per distinct IP and number (one small get and put,
//! next to the aggregate update the batch makes anyway); a detail view then reads 20 events by
//! key. Rings are kept like the per-IP aggregates; keys of events pruned by retention are
//! skipped when read.
//!
//! Never: runs outside the writer's transaction for writes, fails a batch on a stored value
//! that does not decode (it is replaced).

use std::ops::Bound;

use heed::RwTxn;

use super::dashboard::{
    self, BatchCounts, Counts, DIMENSIONS, Dimension, Granularity, Horizon, bucket_key,
};
use super::{IpKey, Reader, Store, Stored, Table, encoder, ip_key, number_key};
use crate::config::limits::DASHBOARD_RECENT_EVENTS_MAX;
use crate::event::{Event, display_ip};

/// The dashboard's two tables.
#[derive(Clone, Copy)]
pub(super) struct DashTables {
    pub(super) buckets: Table,
    pub(super) recent: Table,
}

/// The table names, after the store's other tables.
pub(super) const DASH_TABLE_NAMES: [&str; 2] = ["dashboard", "dashboard_recent"];

const RECENT_IP: u8 = b'i';
const RECENT_NUMBER: u8 = b'n';

/// Keys folded into a bucket's "other" count in one batch, per dimension.
pub type Folded = [u64; DIMENSIONS];

/// Adds the batch's committed events to the buckets and the recent-event rings.
pub(super) fn apply(
    tables: &DashTables,
    txn: &mut RwTxn<'_>,
    batch: &encoder::Batch,
    stored: &[Stored],
    horizon: &Horizon,
    folded: &mut Folded,
) -> Result<(), heed::Error> {
    let mut counts = BatchCounts::for_batch(batch.events.len());
    // (IP or number, event key) pairs, sorted below: one allocation for the batch, not one
    // per distinct IP and number.
    let mut ips: Vec<(IpKey, u64)> = Vec::with_capacity(batch.events.len());
    let mut numbers: Vec<(&[u8], u64)> = Vec::with_capacity(batch.events.len());
    for (event, outcome) in batch.events.iter().zip(stored) {
        let Stored::Key(key) = *outcome else {
            continue;
        };
        counts.add(event);
        ips.push((ip_key(display_ip(event.source)), key));
        if let Some(number) = number_key(event.called_number()) {
            numbers.push((number, key));
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
    let ips: Vec<(&[u8], u64)> = ips.iter().map(|(ip, key)| (ip.as_slice(), *key)).collect();
    put_recent(tables.recent, txn, RECENT_IP, ips)?;
    put_recent(tables.recent, txn, RECENT_NUMBER, numbers)
}

/// Appends each IP's or number's new event keys (`pairs`, in any order) to its ring, visiting
/// the rings in key order.
fn put_recent(
    table: Table,
    txn: &mut RwTxn<'_>,
    kind: u8,
    mut pairs: Vec<(&[u8], u64)>,
) -> Result<(), heed::Error> {
    pairs.sort_unstable();
    let mut table_key = Vec::with_capacity(64);
    let mut value = Vec::with_capacity(8 * DASHBOARD_RECENT_EVENTS_MAX);
    let mut events = Vec::with_capacity(DASHBOARD_RECENT_EVENTS_MAX);
    for run in pairs.chunk_by(|a, b| a.0 == b.0) {
        let Some(&(key, _)) = run.first() else {
            continue;
        };
        events.clear();
        // Only the newest fit in a ring.
        let newest = run.get(run.len().saturating_sub(DASHBOARD_RECENT_EVENTS_MAX)..);
        events.extend(newest.unwrap_or_default().iter().map(|(_, event)| *event));
        table_key.clear();
        table_key.push(kind);
        table_key.extend_from_slice(key);
        let old = table.get(txn, &table_key)?;
        dashboard::push_recent(old, &events, &mut value);
        table.put(txn, &table_key, &value)?;
    }
    Ok(())
}

impl Store {
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
    ) -> Result<Vec<(u64, Counts)>, super::StoreError> {
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
    fn recent_of(&self, kind: u8, key: &[u8]) -> Result<Vec<(u64, Event)>, super::StoreError> {
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
        for event_key in dashboard::recent_keys(ring) {
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
    ) -> Result<Vec<(u64, Event)>, super::StoreError> {
        let key = ip_key(super::canonical_ip(ip));
        self.recent_of(RECENT_IP, key.as_slice())
    }

    /// A called number's newest events.
    pub fn recent_events_of_number(
        &self,
        number: &[u8],
    ) -> Result<Vec<(u64, Event)>, super::StoreError> {
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
    ) -> Result<Vec<(u64, Event)>, super::StoreError> {
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
