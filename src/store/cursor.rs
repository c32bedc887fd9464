//! A commit reader's cursor: the key of the last event a worker (the webhook, the NATS
//! publisher) has handled, kept in memory and written to the store's `meta` table (`cursor/<name>`)
//! when enough events or enough time have passed since the last write.
//!
//! Time is passed in (the webhook drives it with its own clock in tests). Never: moves
//! backwards, writes on every advance, or reads the time itself.

use std::time::{Duration, Instant};

use super::{Store, StoreError};
use crate::event::Event;

/// When a cursor is written: after `events` handled events, or after `interval` with any.
#[derive(Debug, Clone, Copy)]
pub struct PersistPolicy {
    pub events: u64,
    pub interval: Duration,
}

impl PersistPolicy {
    /// Whether a write is due: `behind_events` handled since the last write, `since_stored` ago.
    pub fn due(self, behind_events: u64, since_stored: Duration) -> bool {
        behind_events >= self.events || (behind_events > 0 && since_stored >= self.interval)
    }
}

/// Events read after a cursor (see [`CommitCursor::read_after`]).
#[derive(Debug, Default)]
pub struct ReadAfter {
    pub events: Vec<(u64, Event)>,
    /// Events removed from the store (retention) before the worker handled them; the cursor
    /// has moved over them.
    pub pruned: u64,
}

/// One named cursor (see the module comment).
#[derive(Debug)]
pub struct CommitCursor {
    name: &'static str,
    policy: PersistPolicy,
    value: u64,
    stored: u64,
    stored_at: Instant,
}

impl CommitCursor {
    /// The cursor `name` as stored (0, before the oldest event, when never written).
    pub fn load(
        store: &Store,
        name: &'static str,
        policy: PersistPolicy,
        now: Instant,
    ) -> Result<Self, StoreError> {
        let value = store.read()?.cursor(name)?;
        Ok(Self {
            name,
            policy,
            value,
            stored: value,
            stored_at: now,
        })
    }

    /// The key of the last event handled.
    pub fn value(&self) -> u64 {
        self.value
    }

    /// Moves the cursor forward to `key` (never back) and writes it when due. An error is a
    /// failed write: the cursor has still moved, and the write is tried again when next due.
    pub fn advance(&mut self, store: &Store, key: u64, now: Instant) -> Result<(), StoreError> {
        self.value = self.value.max(key);
        self.persist_if_due(store, now)
    }

    /// Writes the cursor if the policy says it is due.
    pub fn persist_if_due(&mut self, store: &Store, now: Instant) -> Result<(), StoreError> {
        let behind = self.value.saturating_sub(self.stored);
        let since_stored = now.saturating_duration_since(self.stored_at);
        if self.policy.due(behind, since_stored) {
            return self.persist(store, now);
        }
        Ok(())
    }

    /// Writes the cursor now if it moved since the last write.
    pub fn persist(&mut self, store: &Store, now: Instant) -> Result<(), StoreError> {
        if self.value == self.stored {
            return Ok(());
        }
        self.stored_at = now;
        store.set_cursor(self.name, self.value)?;
        self.stored = self.value;
        Ok(())
    }

    /// Up to `max` committed events after the cursor. Events missing between the cursor and
    /// the first one read (or the last key, when none) were removed by retention: the cursor
    /// moves over them (written when next due) and they are counted in [`ReadAfter::pruned`].
    pub fn read_after(&mut self, store: &Store, max: usize) -> Result<ReadAfter, StoreError> {
        let reader = store.read()?;
        let events = reader.events_after(self.value, max)?;
        let missing_until = match events.first() {
            Some((key, _)) => key.saturating_sub(1),
            None => reader.last_key()?,
        };
        let pruned = missing_until.saturating_sub(self.value);
        self.value = self.value.max(missing_until);
        Ok(ReadAfter { events, pruned })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persist_due_by_count_or_interval() {
        let interval = Duration::from_secs(1);
        let policy = PersistPolicy {
            events: 1_000,
            interval,
        };
        assert!(!policy.due(0, Duration::from_secs(99)));
        assert!(!policy.due(1, Duration::from_millis(999)));
        assert!(policy.due(1, interval));
        assert!(!policy.due(999, Duration::ZERO));
        assert!(policy.due(1_000, Duration::ZERO));
    }
}
