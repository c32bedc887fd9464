//! The writer thread: takes the batches the encoder thread ([`super::encoder`]) cut from the event
//! channel and encoded, commits each in one LMDB write transaction, and only then announces the
//! committed keys through [`CommitWatch`] and hands the batch to the output thread
//! ([`super::outputs`]: JSON log, syslog). Events flow: shards -> encoder -> writer -> outputs.
//!
//! A batch ends at `batch_events_max` events or `batch_interval` after its first event. A full
//! map is grown and the whole batch retried; any other commit error (disk full) is reported at
//! most once per [`IO_ERROR_LOG_INTERVAL`] and retried with back-off, keeping the batch (the
//! channel backs up and the shards drop and count). Between batches it prunes old events
//! (retention). A batch that brings the newly trained zstd dictionary ([`super::dictionary`])
//! stores it in its own transaction.
//! The dashboard's recent-event rings are written with every small batch, and under a flood every
//! [`DASHBOARD_RECENT_FLUSH_INTERVAL`] ([`super::recent_rings`]); at start, the events committed
//! after their last write are added back.
//!
//! Never: writes a JSON or syslog line for an event that is not committed, half-writes a batch,
//! panics on an output error.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use hdrhistogram::Histogram;

use super::dashboard::{Dimension, Horizon};
use super::dictionary::Trainer;
use super::encoder::{Batch, EncoderLink, EncoderSetup, spawn_encoder};
use super::outputs::{OutputLink, OutputSettings, spawn_outputs};
use super::recent_rings::{self, FlushClock, PendingRings, RingFlush};
use super::{Folded, Store, StoreError, Stored, codec};
use crate::config::limits::{
    self, DASHBOARD_RECENT_FLUSH_INTERVAL, IO_ERROR_LOG_INTERVAL, STORE_IDLE_WAKE_INTERVAL,
    STORE_PRUNE_EVENTS_PER_TXN, WRITER_COMMIT_RETRY_BACKOFF_MAX, WRITER_COMMIT_RETRY_BACKOFF_MIN,
    WRITER_SHUTDOWN_COMMIT_ATTEMPTS_MAX,
};
use crate::config::{OutputConfig, StoreConfig};
use crate::event::Event;
use crate::event::timestamp::now_ns;
use crate::metrics::{self, Counter, Render};
use crate::worker_thread::WorkerThread;

const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// Writer settings that are not part of the configuration (tests and tools).
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// The syslog socket (`/dev/log`).
    pub syslog_socket: PathBuf,
    /// How often retention looks for old events.
    pub prune_interval: Duration,
    /// Also send every reported error line here (tests); stderr always gets it.
    pub error_lines: Option<Sender<String>>,
    /// Country/AS look-ups for every event, in the encoder thread (`--geoip-db`, `--asn-db`).
    pub enricher: Option<Arc<crate::enrich::Enricher>>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            syslog_socket: PathBuf::from("/dev/log"),
            prune_interval: limits::STORE_PRUNE_INTERVAL,
            error_lines: None,
            enricher: None,
        }
    }
}

/// The last committed event key, for the webhook and P2P workers to wait on.
///
/// Workers keep their own cursor (see [`Store::set_cursor`]), call [`Self::wait_past`] with it,
/// then read [`super::Reader::events_after`]. Keys only grow.
#[derive(Debug, Default)]
pub struct CommitWatch {
    state: Mutex<WatchState>,
    changed: Condvar,
}

#[derive(Debug, Default, Clone, Copy)]
struct WatchState {
    last_key: u64,
    finished: bool,
}

impl CommitWatch {
    /// The key of the last committed event (0: none since start and none before).
    pub fn last_key(&self) -> u64 {
        self.lock().last_key
    }

    /// Whether the writer has ended (no more commits will come).
    pub fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// Waits until an event with a key above `key` is committed, the writer ends, or `timeout`
    /// passes; returns the last committed key.
    pub fn wait_past(&self, key: u64, timeout: Duration) -> u64 {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |s| s.last_key <= key && !s.finished)
            .unwrap_or_else(|p| p.into_inner());
        guard.last_key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, last_key: u64) {
        let mut state = self.lock();
        state.last_key = state.last_key.max(last_key);
        drop(state);
        self.changed.notify_all();
    }

    fn finish(&self) {
        self.lock().finished = true;
        self.changed.notify_all();
    }
}

/// The writer's counters and histograms (histograms are touched once per batch).
#[derive(Debug)]
pub struct WriterMetrics {
    pub batches_total: Counter,
    pub events_committed_total: Counter,
    pub events_duplicate_total: Counter,
    pub commit_errors_total: Counter,
    pub map_resizes_total: Counter,
    pub events_pruned_total: Counter,
    pub json_log_errors_total: Counter,
    pub syslog_errors_total: Counter,
    /// Syslog lines not sent under `--verified-only`: the event's source was not verified.
    pub syslog_unverified_skipped_total: Counter,
    /// Committed events whose source was verified.
    pub events_verified_total: Counter,
    /// Dashboard keys folded into a bucket's "other" count, per dimension.
    pub dashboard_keys_folded_total: [Counter; Dimension::ALL.len()],
    /// Dashboard buckets removed as too old.
    pub dashboard_buckets_pruned_total: Counter,
    /// Writes of the pending recent-event rings.
    pub dashboard_ring_flushes_total: Counter,
    /// Of those, writes forced by [`limits::DASHBOARD_RECENT_PENDING_KEYS_MAX`].
    pub dashboard_ring_flushes_full_total: Counter,
    batch_events: Mutex<Histogram<u64>>,
    commit_microseconds: Mutex<Histogram<u64>>,
}

impl Default for WriterMetrics {
    fn default() -> Self {
        let histogram =
            || Mutex::new(Histogram::new(3).unwrap_or_else(|_| unreachable_histogram()));
        Self {
            batches_total: Counter::default(),
            events_committed_total: Counter::default(),
            events_duplicate_total: Counter::default(),
            commit_errors_total: Counter::default(),
            map_resizes_total: Counter::default(),
            events_pruned_total: Counter::default(),
            json_log_errors_total: Counter::default(),
            syslog_errors_total: Counter::default(),
            syslog_unverified_skipped_total: Counter::default(),
            events_verified_total: Counter::default(),
            dashboard_keys_folded_total: Default::default(),
            dashboard_buckets_pruned_total: Counter::default(),
            dashboard_ring_flushes_total: Counter::default(),
            dashboard_ring_flushes_full_total: Counter::default(),
            batch_events: histogram(),
            commit_microseconds: histogram(),
        }
    }
}

/// `Histogram::new(3)` only fails for more than 5 significant digits.
fn unreachable_histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    Histogram::new(1).expect("1 significant digit is valid")
}

impl WriterMetrics {
    /// A copy of the batch size histogram (events per committed batch).
    pub fn batch_events(&self) -> Histogram<u64> {
        self.batch_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A copy of the commit latency histogram (microseconds).
    pub fn commit_microseconds(&self) -> Histogram<u64> {
        self.commit_microseconds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Render for WriterMetrics {
    fn render(&self, out: &mut String) {
        let counters = [
            (
                "writer_batches_total",
                "Write transactions committed.",
                &self.batches_total,
            ),
            (
                "writer_events_committed_total",
                "Events stored.",
                &self.events_committed_total,
            ),
            (
                "writer_events_duplicate_total",
                "Events skipped: UUID already stored.",
                &self.events_duplicate_total,
            ),
            (
                "writer_commit_errors_total",
                "Failed commits (retried).",
                &self.commit_errors_total,
            ),
            (
                "writer_map_resizes_total",
                "LMDB map size doublings.",
                &self.map_resizes_total,
            ),
            (
                "writer_events_pruned_total",
                "Events removed by retention.",
                &self.events_pruned_total,
            ),
            (
                "writer_json_log_errors_total",
                "JSON log open or write errors.",
                &self.json_log_errors_total,
            ),
            (
                "writer_syslog_errors_total",
                "Syslog connect or send errors.",
                &self.syslog_errors_total,
            ),
            (
                "writer_syslog_unverified_skipped_total",
                "Syslog lines not sent under --verified-only: the source was not verified.",
                &self.syslog_unverified_skipped_total,
            ),
            (
                "writer_events_verified_total",
                "Committed events whose source IP was verified.",
                &self.events_verified_total,
            ),
        ];
        for (name, help, counter) in counters {
            metrics::write_counter(out, name, help, counter.get());
        }
        self.render_dashboard(out);
        let batch = self.batch_events();
        metrics::write_summary(
            out,
            "writer_batch_events",
            "Events per write transaction.",
            &batch,
        );
        let commit = self.commit_microseconds();
        metrics::write_summary(
            out,
            "writer_commit_microseconds",
            "Commit latency.",
            &commit,
        );
    }
}

impl WriterMetrics {
    /// The dashboard's counters.
    fn render_dashboard(&self, out: &mut String) {
        metrics::write_counter(
            out,
            "writer_dashboard_buckets_pruned_total",
            "Dashboard time buckets removed as older than they are kept.",
            self.dashboard_buckets_pruned_total.get(),
        );
        metrics::write_counter(
            out,
            "writer_dashboard_ring_flushes_total",
            "Writes of the recent-event rings: every batch under a light load, at most every \
             250 ms under a flood.",
            self.dashboard_ring_flushes_total.get(),
        );
        metrics::write_counter(
            out,
            "writer_dashboard_ring_flushes_full_total",
            "Ring writes forced early: 16,384 IPs and numbers were pending.",
            self.dashboard_ring_flushes_full_total.get(),
        );
        let name = "writer_dashboard_keys_folded_total";
        metrics::write_header(
            out,
            name,
            "counter",
            "Dashboard keys (IP, number, ...) folded into a time bucket's other count: over the \
         per-bucket cap.",
        );
        for (dimension, counter) in Dimension::ALL.iter().zip(&self.dashboard_keys_folded_total) {
            let labels = format!("dimension=\"{}\"", dimension.name());
            metrics::write_sample(out, name, &labels, counter.get());
        }
    }
}

/// The running writer.
#[derive(Debug)]
pub struct WriterHandle {
    thread: WorkerThread,
    metrics: Arc<WriterMetrics>,
    commits: Arc<CommitWatch>,
    reopen: Arc<AtomicBool>,
}

impl WriterHandle {
    /// Asks the writer to reopen the JSON log before its next batch (SIGHUP, log rotation).
    pub fn reopen_log(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    pub fn metrics(&self) -> Arc<WriterMetrics> {
        Arc::clone(&self.metrics)
    }

    /// The committed-key watch the webhook and P2P workers wait on.
    pub fn commits(&self) -> Arc<CommitWatch> {
        Arc::clone(&self.commits)
    }

    /// Waits for the writer to end: it ends after every sender of its channel is dropped and
    /// what was queued is committed and logged.
    pub fn join(self) {
        self.thread.join();
    }
}

/// Starts the writer thread (named `writer`) with default [`WriterOptions`].
pub fn spawn_writer(
    store: Store,
    events: Receiver<Event>,
    outputs: &OutputConfig,
    settings: &StoreConfig,
) -> Result<WriterHandle, StoreError> {
    spawn_writer_with(store, events, outputs, settings, WriterOptions::default())
}

/// Starts the writer thread with explicit [`WriterOptions`].
pub fn spawn_writer_with(
    store: Store,
    events: Receiver<Event>,
    outputs: &OutputConfig,
    settings: &StoreConfig,
    options: WriterOptions,
) -> Result<WriterHandle, StoreError> {
    let metrics = Arc::new(WriterMetrics::default());
    let commits = Arc::new(CommitWatch::default());
    let reopen = Arc::new(AtomicBool::new(false));
    let dictionary = store.dictionary_bytes()?;
    let trainer = match dictionary {
        Some(_) => Trainer::finished(),
        None => Trainer::new(),
    };
    let mut packer = match dictionary {
        Some((id, bytes)) => codec::Packer::with_dictionary(id, &bytes),
        None => codec::Packer::new(),
    }?;
    packer.set_local_node(Some(store.node_id()));
    let batch_events_max = settings
        .batch_events_max
        .clamp(1, limits::WRITER_BATCH_EVENTS_MAX);
    let last_key = store.read()?.last_key()?;
    commits.publish(last_key);
    let output_link = spawn_outputs(OutputSettings {
        json_path: outputs.json_log_file.clone(),
        syslog_socket: outputs.syslog.then(|| options.syslog_socket.clone()),
        syslog_verified_only: outputs.verified_only,
        reopen: Arc::clone(&reopen),
        metrics: Arc::clone(&metrics),
        error_lines: options.error_lines.clone(),
    })?;
    let encoder = spawn_encoder(EncoderSetup {
        events,
        packer,
        trainer,
        reports: Reports::new(options.error_lines.clone()),
        batch_events_max,
        batch_interval: settings.batch_interval,
        enricher: options.enricher.clone(),
    })?;
    let writer = Writer {
        store,
        batch_events_max,
        retention_ns: settings
            .retention_days
            .map(|d| u64::from(d).saturating_mul(NANOS_PER_DAY)),
        prune_interval: options.prune_interval,
        metrics: Arc::clone(&metrics),
        commits: Arc::clone(&commits),
        reports: Reports::new(options.error_lines),
        outputs: output_link,
        dictionary_unstored: None,
        dashboard_prune_due: Instant::now(),
        rings: PendingRings::default(),
        rings_flushed: FlushClock::new(),
    };
    let thread =
        WorkerThread::spawn("writer", move || writer.run(encoder)).map_err(StoreError::Spawn)?;
    Ok(WriterHandle {
        thread,
        metrics,
        commits,
        reopen,
    })
}

/// Error lines, each kind at most once per [`IO_ERROR_LOG_INTERVAL`].
pub(super) struct Reports {
    last: Vec<(&'static str, Instant)>,
    lines: Option<Sender<String>>,
}

impl Reports {
    /// Reports go to stderr and, if given, to `lines` (tests).
    pub(super) fn new(lines: Option<Sender<String>>) -> Self {
        Self {
            last: Vec::new(),
            lines,
        }
    }

    pub(super) fn report(&mut self, kind: &'static str, message: impl FnOnce() -> String) {
        let now = Instant::now();
        match self.last.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, at)) if now.duration_since(*at) < IO_ERROR_LOG_INTERVAL => return,
            Some((_, at)) => *at = now,
            None => self.last.push((kind, now)),
        }
        let line = format!("sentrypeer: {}", message());
        eprintln!("{line}");
        if let Some(lines) = &self.lines {
            let _ = lines.try_send(line);
        }
    }
}

struct Writer {
    store: Store,
    batch_events_max: usize,
    retention_ns: Option<u64>,
    prune_interval: Duration,
    metrics: Arc<WriterMetrics>,
    commits: Arc<CommitWatch>,
    reports: Reports,
    /// The output thread, when there is a JSON log or syslog.
    outputs: Option<OutputLink>,
    /// When the dashboard's old buckets are next pruned.
    dashboard_prune_due: Instant,
    /// The new dictionary of a batch given up at shutdown, stored with the next batch.
    dictionary_unstored: Option<Vec<u8>>,
    /// Committed events not yet in the dashboard's recent-event rings.
    rings: PendingRings,
    rings_flushed: FlushClock,
}

impl Writer {
    fn run(mut self, encoder: EncoderLink) {
        let mut stored = Vec::new();
        let mut prune_due = Instant::now();
        if let Err(error) = self.store.pending_recent_tail(&mut self.rings) {
            self.reports.report("rings", || {
                format!("cannot re-add the newest events to the dashboard's rings: {error}")
            });
        }
        loop {
            self.housekeeping(&mut prune_due);
            let mut batch = match encoder.recv_timeout(self.idle_wait()) {
                Ok(batch) => batch,
                Err(RecvTimeoutError::Timeout) => {
                    self.flush_rings(false);
                    continue;
                }
                // The encoder ended: the event channel closed and everything in it was passed on.
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.commit(&mut batch, &mut stored, &encoder);
            let events = std::mem::take(&mut batch.events);
            batch.events = self.emit(events, &stored);
            encoder.recycle(batch);
        }
        encoder.join();
        self.flush_rings(true);
        if let Some(outputs) = self.outputs.take() {
            outputs.finish();
        }
        self.commits.finish();
    }

    /// Commits the batch, growing the map or retrying until it is stored. Once the event channel
    /// has closed (shutdown), gives up after [`WRITER_SHUTDOWN_COMMIT_ATTEMPTS_MAX`] failures so that
    /// the process can exit; `stored` is then empty and nothing is emitted.
    fn commit(&mut self, batch: &mut Batch, stored: &mut Vec<Stored>, encoder: &EncoderLink) {
        let mut backoff = WRITER_COMMIT_RETRY_BACKOFF_MIN;
        let mut failures = 0;
        batch.adopt_unstored_dictionary(&mut self.dictionary_unstored);
        loop {
            if encoder.closed() && failures >= WRITER_SHUTDOWN_COMMIT_ATTEMPTS_MAX {
                stored.clear();
                self.rings.discard_after(self.commits.last_key());
                self.dictionary_unstored = batch.take_dictionary();
                eprintln!(
                    "sentrypeer: shutting down with {} events not stored in {}",
                    batch.len(),
                    self.store.path().display()
                );
                return;
            }
            let started = Instant::now();
            let horizon = Horizon::from_ns(now_ns(), self.retention_ns);
            let mut folded: Folded = Default::default();
            let flush_rings = recent_rings::flush_due(
                batch.len(),
                self.rings_flushed.since(started),
                DASHBOARD_RECENT_FLUSH_INTERVAL,
            );
            match self.store.commit_batch(
                batch,
                stored,
                &horizon,
                &mut folded,
                &mut self.rings,
                flush_rings,
            ) {
                Ok(flushed) => {
                    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    self.record_commit(batch.len(), micros);
                    self.rings_flushed_as(flushed, started);
                    for (counter, count) in
                        self.metrics.dashboard_keys_folded_total.iter().zip(folded)
                    {
                        counter.add(count);
                    }
                    return;
                }
                Err(heed::Error::Mdb(heed::MdbError::MapFull)) => match self.store.grow_map() {
                    Ok(_) => self.metrics.map_resizes_total.inc(),
                    Err(error) => {
                        failures += 1;
                        self.commit_failed(&error.to_string(), &mut backoff);
                    }
                },
                Err(error) => {
                    failures += 1;
                    self.commit_failed(&error.to_string(), &mut backoff);
                }
            }
        }
    }

    /// How long to wait for a batch: the idle wake, or less when pending rings fall due.
    fn idle_wait(&self) -> Duration {
        if self.rings.is_empty() {
            return STORE_IDLE_WAKE_INTERVAL;
        }
        let since = self.rings_flushed.since(Instant::now());
        DASHBOARD_RECENT_FLUSH_INTERVAL
            .saturating_sub(since)
            .clamp(Duration::from_millis(1), STORE_IDLE_WAKE_INTERVAL)
    }

    /// Writes the pending rings in a transaction of their own: when due (idle), or `always`
    /// (stopping, a few attempts).
    fn flush_rings(&mut self, always: bool) {
        let now = Instant::now();
        if !always && self.rings_flushed.since(now) < DASHBOARD_RECENT_FLUSH_INTERVAL {
            return;
        }
        let attempts = if always {
            WRITER_SHUTDOWN_COMMIT_ATTEMPTS_MAX
        } else {
            1
        };
        for _ in 0..attempts {
            if self.rings.is_empty() {
                return;
            }
            match self.store.flush_recent_rings(&mut self.rings) {
                Ok(()) => {
                    self.rings_flushed_as(RingFlush::Due, now);
                    return;
                }
                Err(heed::Error::Mdb(heed::MdbError::MapFull)) => {
                    if self.store.grow_map().is_ok() {
                        self.metrics.map_resizes_total.inc();
                    }
                }
                Err(error) => {
                    let path = self.store.path().display().to_string();
                    self.reports.report("rings", || {
                        format!("cannot write the dashboard's rings to {path}: {error}")
                    });
                }
            }
        }
    }

    /// After a commit that wrote the pending rings: clears them and counts.
    fn rings_flushed_as(&mut self, flushed: RingFlush, at: Instant) {
        match flushed {
            RingFlush::Not => return,
            RingFlush::Due => {}
            RingFlush::Full => self.metrics.dashboard_ring_flushes_full_total.inc(),
        }
        self.rings.clear();
        self.metrics.dashboard_ring_flushes_total.inc();
        self.rings_flushed.flushed(at);
    }

    fn commit_failed(&mut self, error: &str, backoff: &mut Duration) {
        self.metrics.commit_errors_total.inc();
        let path = self.store.path().display().to_string();
        self.reports.report("commit", || {
            format!("cannot commit events to {path}: {error}; retrying (events queue up meanwhile)")
        });
        std::thread::sleep(*backoff);
        *backoff = (*backoff * 2).min(WRITER_COMMIT_RETRY_BACKOFF_MAX);
    }

    fn record_commit(&mut self, batch_len: usize, micros: u64) {
        self.metrics.batches_total.inc();
        let mut sizes = self
            .metrics
            .batch_events
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let _ = sizes.record(batch_len as u64);
        drop(sizes);
        let mut latency = self
            .metrics
            .commit_microseconds
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let _ = latency.record(micros);
    }

    /// After the commit: the counters, the commit watch, then the committed events to the
    /// output thread. Returns an empty vector for the next batch.
    fn emit(&mut self, mut batch: Vec<Event>, stored: &[Stored]) -> Vec<Event> {
        let mut last_key = None;
        let mut committed = 0;
        for outcome in stored {
            match outcome {
                Stored::Key(key) => {
                    last_key = Some(*key);
                    committed += 1;
                }
                Stored::Duplicate => self.metrics.events_duplicate_total.inc(),
            }
        }
        self.metrics.events_committed_total.add(committed);
        if committed < batch.len() as u64 {
            // Duplicates (and a batch given up at shutdown, `stored` empty) are not emitted.
            let mut outcomes = stored.iter();
            batch.retain(|_| matches!(outcomes.next(), Some(Stored::Key(_))));
        }
        let verified = batch.iter().filter(|event| event.source_verified).count();
        self.metrics.events_verified_total.add(verified as u64);
        if let Some(key) = last_key {
            self.commits.publish(key);
        }
        match &self.outputs {
            Some(outputs) => outputs.send(batch, self.batch_events_max),
            None => {
                batch.clear();
                batch
            }
        }
    }

    fn housekeeping(&mut self, prune_due: &mut Instant) {
        if let Some(retention_ns) = self.retention_ns
            && Instant::now() >= *prune_due
        {
            let cutoff = now_ns().saturating_sub(retention_ns);
            match self.store.prune_before(cutoff, STORE_PRUNE_EVENTS_PER_TXN) {
                Ok(removed) => {
                    self.metrics.events_pruned_total.add(removed as u64);
                    let full = removed == STORE_PRUNE_EVENTS_PER_TXN;
                    *prune_due = if full {
                        Instant::now()
                    } else {
                        Instant::now() + self.prune_interval
                    };
                }
                Err(heed::Error::Mdb(heed::MdbError::MapFull)) => {
                    if self.store.grow_map().is_ok() {
                        self.metrics.map_resizes_total.inc();
                    }
                }
                Err(error) => {
                    *prune_due = Instant::now() + self.prune_interval;
                    self.reports
                        .report("prune", || format!("cannot prune old events: {error}"));
                }
            }
        }
        self.prune_dashboard();
    }

    /// Removes the dashboard buckets older than they are kept, every
    /// [`limits::DASHBOARD_PRUNE_INTERVAL`].
    fn prune_dashboard(&mut self) {
        if Instant::now() < self.dashboard_prune_due {
            return;
        }
        self.dashboard_prune_due = Instant::now() + limits::DASHBOARD_PRUNE_INTERVAL;
        let horizon = Horizon::from_ns(now_ns(), self.retention_ns);
        match self.store.prune_dashboard(&horizon) {
            Ok(removed) => self
                .metrics
                .dashboard_buckets_pruned_total
                .add(removed as u64),
            Err(heed::Error::Mdb(heed::MdbError::MapFull)) => {
                if self.store.grow_map().is_ok() {
                    self.metrics.map_resizes_total.inc();
                }
            }
            Err(error) => self.reports.report("dashboard prune", || {
                format!("cannot prune old dashboard buckets: {error}")
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::store::test_events::event_from;

    fn event(index: u64) -> Event {
        let source: SocketAddr = format!("10.0.{}.{}:5060", index % 200, index % 250)
            .parse()
            .unwrap();
        event_from(index, source, &index.to_string())
    }

    /// A store in `dir` (no fsync, no outputs) and its writer, fed through the returned sender.
    fn start(
        dir: &tempfile::TempDir,
        batch_events_max: usize,
        batch_interval: Duration,
    ) -> (Store, Sender<Event>, WriterHandle) {
        let store = Store::open(&config_in(dir, batch_events_max, batch_interval)).unwrap();
        let (sender, writer) = restart(&store, dir, batch_events_max, batch_interval);
        (store, sender, writer)
    }

    fn config_in(
        dir: &tempfile::TempDir,
        batch_events_max: usize,
        batch_interval: Duration,
    ) -> StoreConfig {
        StoreConfig {
            db_file: dir.path().join("sentrypeer.db"),
            batch_events_max,
            batch_interval,
            no_sync: true,
            retention_days: None,
        }
    }

    /// A new writer on `store` (opened from `dir`), fed through the returned sender.
    fn restart(
        store: &Store,
        dir: &tempfile::TempDir,
        batch_events_max: usize,
        batch_interval: Duration,
    ) -> (Sender<Event>, WriterHandle) {
        let outputs = OutputConfig {
            json_log_file: None,
            syslog: false,
            syslog_socket: PathBuf::from("/nonexistent"),
            verified_only: false,
        };
        let config = config_in(dir, batch_events_max, batch_interval);
        let (sender, receiver) = crossbeam_channel::bounded(4_096);
        let writer = spawn_writer(store.clone(), receiver, &outputs, &config).unwrap();
        (sender, writer)
    }

    /// An IP's and a number's recent-event rings hold their newest events, newest first,
    /// however the events fall into batches: a few small ones (rings written with each) and
    /// flood-sized ones (rings left pending between flushes, the last flush at stop).
    #[test]
    fn recent_rings_keep_the_newest_events() {
        let small = 3 * limits::DASHBOARD_RECENT_EVENTS_MAX as u64 + 7;
        let flood = 3 * limits::DASHBOARD_RECENT_DEFER_BATCH_MIN as u64;
        for (total, batch) in [(small, 4_096), (flood, flood as usize / 3)] {
            let dir = tempfile::tempdir().unwrap();
            let (store, sender, writer) = start(&dir, batch, Duration::from_millis(50));
            let commits = writer.commits();
            let metrics = writer.metrics();
            let source: SocketAddr = "10.0.0.9:5060".parse().unwrap();
            for index in 0..total {
                sender.send(event_from(index, source, "7")).unwrap();
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while commits.last_key() < total {
                assert!(Instant::now() < deadline, "events not committed");
                commits.wait_past(commits.last_key(), Duration::from_millis(50));
            }
            drop(sender);
            writer.join();
            assert!(metrics.dashboard_ring_flushes_total.get() >= 1);
            let reader = store.read().unwrap();
            let newest: Vec<u64> = (total - limits::DASHBOARD_RECENT_EVENTS_MAX as u64 + 1..=total)
                .rev()
                .collect();
            let ip = reader.recent_events_of_ip(source.ip()).unwrap();
            assert_eq!(ip.iter().map(|(key, _)| *key).collect::<Vec<_>>(), newest);
            let number = reader.recent_events_of_number(b"7").unwrap();
            assert_eq!(
                number.iter().map(|(key, _)| *key).collect::<Vec<_>>(),
                newest
            );
        }
    }

    /// Sends `events` and waits until the last is committed.
    fn commit_all(
        sender: &Sender<Event>,
        writer: &WriterHandle,
        events: impl Iterator<Item = Event>,
    ) {
        let commits = writer.commits();
        let mut last = commits.last_key();
        for event in events {
            sender.send(event).unwrap();
            last += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while commits.last_key() < last {
            assert!(Instant::now() < deadline, "events not committed");
            commits.wait_past(commits.last_key(), Duration::from_millis(50));
        }
    }

    /// The dictionary id of each stored record, oldest first, and the stored dictionary.
    fn records_and_dictionary(store: &Store) -> (Vec<Option<u32>>, Option<Vec<u8>>) {
        let tables = &store.inner.tables;
        let txn = store.inner.env.read_txn().unwrap();
        let ids = tables
            .events
            .iter(&txn)
            .unwrap()
            .map(|entry| {
                codec::decode_header(entry.unwrap().1)
                    .unwrap()
                    .dictionary_id
            })
            .collect();
        let dictionary = tables
            .meta
            .get(&txn, super::super::META_DICTIONARY)
            .unwrap()
            .map(<[u8]>::to_vec);
        (ids, dictionary)
    }

    /// Commits events `keys` through `writer` and stops it; each record's dictionary id (oldest
    /// first) and the stored dictionary, read raw (no [`super::super::Reader`], which would load the
    /// dictionary into the store handle).
    fn commit_then_check(
        store: &Store,
        (sender, writer): (Sender<Event>, WriterHandle),
        keys: std::ops::Range<u64>,
    ) -> (Vec<Option<u32>>, Vec<u8>) {
        commit_all(&sender, &writer, keys.map(event));
        drop(sender);
        writer.join();
        let (ids, dictionary) = records_and_dictionary(store);
        (ids, dictionary.expect("no dictionary stored"))
    }

    /// Every stored event decodes.
    fn assert_all_decode(store: &Store, count: usize) {
        let reader = store.read().unwrap();
        assert_eq!(reader.events_after(0, 100_000).unwrap().len(), count);
    }

    /// Small batches: the first records go without the dictionary, the ones after its training
    /// name it.
    #[test]
    fn records_after_training_use_the_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let (store, sender, writer) = start(&dir, 64, Duration::from_millis(5));
        let total = limits::STORE_DICTIONARY_SAMPLES as u64 + 100;
        let (ids, _) = commit_then_check(&store, (sender, writer), 0..total);
        assert_eq!(ids.len() as u64, total);
        assert_eq!(ids.first(), Some(&None));
        assert_eq!(ids.last(), Some(&Some(super::super::DICTIONARY_ID)));
        assert_all_decode(&store, ids.len());
    }

    /// A flood's first batch completes the samples: it is compressed with the dictionary trained
    /// on it, so (almost) no record goes without. Trained after the commit, as before, every
    /// record of the first batch went without.
    #[test]
    fn the_batch_that_completes_the_samples_uses_the_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let (store, sender, writer) = start(&dir, 4_096, Duration::from_millis(200));
        let total = 2 * limits::STORE_DICTIONARY_SAMPLES as u64;
        let (ids, _) = commit_then_check(&store, (sender, writer), 0..total);
        assert_eq!(ids.len() as u64, total);
        let without = ids.iter().filter(|id| id.is_none()).count();
        assert!(
            without < limits::STORE_DICTIONARY_SAMPLES,
            "{without} of {total} records without the dictionary"
        );
        assert_all_decode(&store, ids.len());
    }

    /// A second writer on the same store (no reader has loaded the dictionary in between) keeps
    /// the stored dictionary: a new one under the same id would make the old records unreadable.
    #[test]
    fn a_restarted_writer_keeps_the_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let interval = Duration::from_millis(5);
        let (store, sender, writer) = start(&dir, 256, interval);
        let first = 2 * limits::STORE_DICTIONARY_SAMPLES as u64;
        let (_, trained) = commit_then_check(&store, (sender, writer), 0..first);
        let again = restart(&store, &dir, 256, interval);
        let (ids, kept) = commit_then_check(&store, again, first..2 * first);
        assert!(kept == trained, "the stored dictionary changed");
        assert_eq!(ids.len() as u64, 2 * first);
        assert_eq!(ids.last(), Some(&Some(super::super::DICTIONARY_ID)));
        assert_all_decode(&store, ids.len());
    }
}
