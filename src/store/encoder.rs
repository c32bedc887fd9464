//! The encoder thread: drains the shards' event channel into batches (a size or a time bound),
//! enriches every event with its source's country and AS when `--geoip-db`/`--asn-db` are set
//! ([`crate::enrich`]; one look-up per distinct source IP and batch), and encodes every event's
//! store record (zstd) before the writer opens its transaction, so that compression runs beside
//! the previous batch's commit and fsync instead of before it.
//!
//! The channel to the writer holds [`WRITER_ENCODED_BATCHES_MAX`] batches; when it is full the encoder
//! waits and the shards' channel fills (the shards drop and count, never block). Emptied batches
//! come back for reuse. In a new store the encoder trains the zstd dictionary itself, once, on
//! the first events ([`Trainer`]): the batch that completes the samples waits for the training
//! (tens of milliseconds, bounded by the samples' bytes), is compressed with the new dictionary
//! and carries it to the writer, which stores it in that batch's transaction.
//!
//! Never: touches LMDB, drops an event it took from the channel.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use foldhash::fast::RandomState;

use super::codec::{self, Packer};
use super::dictionary::{Trained, Trainer};
use super::writer::Reports;
use super::{DICTIONARY_ID, StoreError};
use crate::config::limits::WRITER_ENCODED_BATCHES_MAX;
use crate::enrich::Enricher;
use crate::event::{Enrichment, Event, display_ip};
use crate::worker_thread::WorkerThread;

/// Events with their encoded store records, in channel order.
pub(crate) struct Batch {
    pub(super) events: Vec<Event>,
    records: Vec<u8>,
    /// End offset in `records` of each event's record.
    ends: Vec<usize>,
    /// The dictionary trained on this batch's events, which its records are the first to use.
    dictionary: Option<Vec<u8>>,
}

impl Batch {
    fn with_capacity(events: usize) -> Self {
        Self {
            events: Vec::with_capacity(events),
            records: Vec::with_capacity(events * 256),
            ends: Vec::with_capacity(events),
            dictionary: None,
        }
    }

    /// A batch of `events` encoded without a dictionary (tests commit it directly).
    #[cfg(test)]
    pub(super) fn encoded(events: Vec<Event>) -> Self {
        let mut batch = Self::with_capacity(events.len());
        batch.events = events;
        #[allow(clippy::unwrap_used)]
        batch.encode(&mut Packer::new().unwrap());
        batch
    }

    /// The record of event `index` (empty if out of range).
    pub(super) fn record(&self, index: usize) -> &[u8] {
        let start = index
            .checked_sub(1)
            .and_then(|i| self.ends.get(i).copied())
            .unwrap_or(0);
        let end = self.ends.get(index).copied().unwrap_or(start);
        self.records.get(start..end).unwrap_or_default()
    }

    /// Sets event `index`'s source-verified flag, in the event and in its encoded record.
    pub(super) fn mark_verified(&mut self, index: usize) {
        let start = index
            .checked_sub(1)
            .and_then(|i| self.ends.get(i).copied())
            .unwrap_or(0);
        let end = self.ends.get(index).copied().unwrap_or(start);
        if let Some(record) = self.records.get_mut(start..end) {
            codec::mark_verified(record);
        }
        if let Some(event) = self.events.get_mut(index) {
            event.source_verified = true;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    /// The newly trained dictionary this batch's records use, to be stored with them.
    pub(super) fn dictionary(&self) -> Option<&[u8]> {
        self.dictionary.as_deref()
    }

    /// Takes `unstored`, the new dictionary of a batch given up at shutdown (its records not
    /// stored), unless this batch brings one: the encoder compresses the later batches with it,
    /// so the next batch stored must store it.
    pub(super) fn adopt_unstored_dictionary(&mut self, unstored: &mut Option<Vec<u8>>) {
        if self.dictionary.is_none() {
            self.dictionary = unstored.take();
        }
    }

    /// Takes the dictionary back from a batch given up at shutdown.
    pub(super) fn take_dictionary(&mut self) -> Option<Vec<u8>> {
        self.dictionary.take()
    }

    /// Sets every event's enrichment from the databases in use now; `seen` (emptied first)
    /// holds one look-up per distinct source IP of the batch.
    fn enrich(&mut self, enricher: &Enricher, seen: &mut HashMap<IpAddr, Enrichment, RandomState>) {
        let databases = enricher.databases();
        seen.clear();
        for event in &mut self.events {
            let ip = display_ip(event.source);
            let found = seen.entry(ip).or_insert_with(|| databases.lookup(ip));
            event.enrichment = Some(Box::new(found.clone()));
        }
    }

    fn encode(&mut self, packer: &mut Packer) {
        self.records.clear();
        self.ends.clear();
        for event in &self.events {
            let start = self.records.len();
            if packer.encode(event, &mut self.records).is_err() {
                self.records.truncate(start);
                codec::encode(event, &mut self.records);
            }
            self.ends.push(self.records.len());
        }
    }
}

/// The writer's side of the encoder.
pub(super) struct EncoderLink {
    batches: Receiver<Batch>,
    empties: Sender<Batch>,
    closed: Arc<AtomicBool>,
    thread: WorkerThread,
}

impl EncoderLink {
    /// Whether the event channel has closed (shutdown): what is queued is the last.
    pub(super) fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The next encoded batch, waiting at most `timeout`.
    pub(super) fn recv_timeout(&self, timeout: Duration) -> Result<Batch, RecvTimeoutError> {
        self.batches.recv_timeout(timeout)
    }

    /// Gives a committed batch back for reuse.
    pub(super) fn recycle(&self, mut batch: Batch) {
        batch.events.clear();
        batch.dictionary = None;
        let _ = self.empties.try_send(batch);
    }

    /// Waits for the thread, which ends once the event channel closed and was drained.
    pub(super) fn join(self) {
        drop(self.batches);
        self.thread.join();
    }
}

/// What the encoder thread works with.
pub(super) struct EncoderSetup {
    pub(super) events: Receiver<Event>,
    /// With the store's dictionary if it has one.
    pub(super) packer: Packer,
    /// [`Trainer::finished`] when the store has its dictionary.
    pub(super) trainer: Trainer,
    pub(super) reports: Reports,
    pub(super) batch_events_max: usize,
    pub(super) batch_interval: Duration,
    pub(super) enricher: Option<Arc<Enricher>>,
}

/// Starts the encoder thread (named `encoder`).
pub(super) fn spawn_encoder(setup: EncoderSetup) -> Result<EncoderLink, StoreError> {
    let (batches_tx, batches) = crossbeam_channel::bounded(WRITER_ENCODED_BATCHES_MAX);
    let (empties, empties_rx) = crossbeam_channel::bounded(WRITER_ENCODED_BATCHES_MAX + 1);
    let closed = Arc::new(AtomicBool::new(false));
    let encoder = Encoder {
        closed: Arc::clone(&closed),
        events: setup.events,
        batches: batches_tx,
        empties: empties_rx,
        packer: setup.packer,
        trainer: setup.trainer,
        reports: setup.reports,
        batch_events_max: setup.batch_events_max,
        batch_interval: setup.batch_interval,
        enricher: setup.enricher,
        seen: HashMap::default(),
    };
    let thread =
        WorkerThread::spawn("encoder", move || encoder.run()).map_err(StoreError::Spawn)?;
    Ok(EncoderLink {
        batches,
        empties,
        closed,
        thread,
    })
}

struct Encoder {
    closed: Arc<AtomicBool>,
    events: Receiver<Event>,
    batches: Sender<Batch>,
    empties: Receiver<Batch>,
    packer: Packer,
    trainer: Trainer,
    reports: Reports,
    batch_events_max: usize,
    batch_interval: Duration,
    /// `None` when no MMDB file is configured: events keep `enrichment: None`.
    enricher: Option<Arc<Enricher>>,
    /// The batch's look-ups by source IP (at most one batch of entries).
    seen: HashMap<IpAddr, Enrichment, RandomState>,
}

impl Encoder {
    fn run(mut self) {
        loop {
            let Ok(first) = self.events.recv() else {
                // Disconnected: every sender is gone and the channel is empty.
                self.closed.store(true, Ordering::Release);
                break;
            };
            let mut batch = self
                .empties
                .try_recv()
                .unwrap_or_else(|_| Batch::with_capacity(self.batch_events_max));
            batch.events.push(first);
            let closing = self.fill(&mut batch.events);
            if closing {
                // Before the send, so that the writer knows this batch is the last.
                self.closed.store(true, Ordering::Release);
            }
            if let Some(enricher) = &self.enricher {
                batch.enrich(enricher, &mut self.seen);
            }
            batch.dictionary = self.train(&batch.events);
            batch.encode(&mut self.packer);
            // The writer only goes away after this thread ended; nothing to do if it did.
            if self.batches.send(batch).is_err() || closing {
                break;
            }
        }
    }

    /// Samples `events` while the store has no dictionary; once one is trained on them, the
    /// packer uses it from this batch on, and it is returned for the writer to store.
    fn train(&mut self, events: &[Event]) -> Option<Vec<u8>> {
        let error = match self.trainer.offer(events) {
            Trained::NotYet => return None,
            Trained::Dictionary(dictionary) => {
                match Packer::with_dictionary(DICTIONARY_ID, &dictionary) {
                    Ok(mut packer) => {
                        packer.set_local_node(self.packer.local_node());
                        self.packer = packer;
                        return Some(dictionary);
                    }
                    Err(error) => error,
                }
            }
            Trained::GaveUp(error) => error,
        };
        self.reports.report("dictionary", || {
            format!("no zstd dictionary ({error}); compressing without one")
        });
        None
    }

    /// Adds events until the batch is full or its interval passed; true when the channel closed.
    fn fill(&self, batch: &mut Vec<Event>) -> bool {
        let deadline = Instant::now() + self.batch_interval;
        while batch.len() < self.batch_events_max {
            match self.events.try_recv() {
                Ok(event) => {
                    batch.push(event);
                    continue;
                }
                Err(TryRecvError::Disconnected) => return true,
                Err(TryRecvError::Empty) => {}
            }
            match self.events.recv_deadline(deadline) {
                Ok(event) => batch.push(event),
                Err(RecvTimeoutError::Timeout) => return false,
                Err(RecvTimeoutError::Disconnected) => return true,
            }
        }
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The dictionary of a batch given up at shutdown goes with the next batch, unless that
    /// one brings its own.
    #[test]
    fn a_given_up_batchs_dictionary_goes_with_the_next() {
        let mut unstored = None;
        let mut given_up = Batch::with_capacity(1);
        given_up.dictionary = Some(vec![1, 2, 3]);
        given_up.adopt_unstored_dictionary(&mut unstored);
        assert_eq!(given_up.dictionary(), Some(&[1, 2, 3][..]));
        unstored = given_up.take_dictionary();
        let mut next = Batch::with_capacity(1);
        next.adopt_unstored_dictionary(&mut unstored);
        assert_eq!(next.dictionary(), Some(&[1, 2, 3][..]));
        assert!(unstored.is_none());
        let mut own = Batch::with_capacity(1);
        own.dictionary = Some(vec![9]);
        let mut other = Some(vec![1]);
        own.adopt_unstored_dictionary(&mut other);
        assert_eq!(own.dictionary(), Some(&[9][..]));
    }
}
