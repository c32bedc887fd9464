//! The output thread: takes the batches the writer has committed and appends their JSON-log
//! lines (flushed once per batch) and sends their syslog lines, so that formatting and writing
//! the log runs beside the next LMDB transaction instead of after it.
//!
//! The channel from the writer holds [`WRITER_OUTPUT_BATCHES_MAX`] batches; when it is full the writer
//! waits, so the log never falls more than that many batches behind the store. Emptied batch
//! vectors go back to the writer for reuse. The JSON log is reopened by name on request
//! (SIGHUP, log rotation) before the next batch or within [`STORE_IDLE_WAKE_INTERVAL`]. The log's older
//! pages are dropped from the page cache as it grows ([`super::log_cache`]).
//!
//! Never: sees an event that is not committed, panics on an output error (errors are counted and
//! reported once per [`crate::config::limits::IO_ERROR_LOG_INTERVAL`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::StoreError;
use super::log_cache::LogCacheTrim;
use super::syslog::{self, Syslog};
use super::writer::{Reports, WriterMetrics};
use crate::config::limits::{
    JSON_LOG_BUFFER_BYTES, STORE_IDLE_WAKE_INTERVAL, WRITER_OUTPUT_BATCHES_MAX,
};
use crate::event::Event;
use crate::event::json::write_json;
use crate::worker_thread::WorkerThread;

/// The writer's side: hand committed batches over, get empty vectors back.
pub(super) struct OutputLink {
    batches: Sender<Vec<Event>>,
    empties: Receiver<Vec<Event>>,
    thread: WorkerThread,
}

impl OutputLink {
    /// Hands a committed batch over (waits while [`WRITER_OUTPUT_BATCHES_MAX`] are queued) and returns
    /// an empty vector to fill next.
    pub(super) fn send(&self, batch: Vec<Event>, capacity: usize) -> Vec<Event> {
        // The thread only ends when this sender is dropped, so a send cannot fail; if it ever
        // did, the batch is simply not logged.
        let _ = self.batches.send(batch);
        self.empties
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(capacity))
    }

    /// Lets the thread write what is queued, flush and end; waits for it.
    pub(super) fn finish(self) {
        drop(self.batches);
        self.thread.join();
    }
}

/// Where committed events go besides the store.
pub(super) struct OutputSettings {
    pub(super) json_path: Option<PathBuf>,
    pub(super) syslog_socket: Option<PathBuf>,
    /// `--verified-only`: syslog lines only for events whose source was verified.
    pub(super) syslog_verified_only: bool,
    pub(super) reopen: Arc<AtomicBool>,
    pub(super) metrics: Arc<WriterMetrics>,
    pub(super) error_lines: Option<Sender<String>>,
}

/// Starts the output thread (named `output`); `None` when there is no output to write.
pub(super) fn spawn_outputs(settings: OutputSettings) -> Result<Option<OutputLink>, StoreError> {
    if settings.json_path.is_none() && settings.syslog_socket.is_none() {
        return Ok(None);
    }
    let (batches, batches_rx) = crossbeam_channel::bounded(WRITER_OUTPUT_BATCHES_MAX);
    let (empties_tx, empties) = crossbeam_channel::bounded(WRITER_OUTPUT_BATCHES_MAX + 1);
    let mut outputs = Outputs {
        syslog: settings.syslog_socket.as_deref().map(Syslog::new),
        syslog_verified_only: settings.syslog_verified_only,
        json_path: settings.json_path,
        json: None,
        json_lines: Vec::with_capacity(JSON_LOG_BUFFER_BYTES),
        json_trim: LogCacheTrim::default(),
        reopen: settings.reopen,
        metrics: settings.metrics,
        reports: Reports::new(settings.error_lines),
    };
    // Opened before start-up finishes, so that a bad path is reported at once.
    outputs.open_json_log();
    let thread = WorkerThread::spawn("output", move || outputs.run(&batches_rx, &empties_tx))
        .map_err(StoreError::Spawn)?;
    Ok(Some(OutputLink {
        batches,
        empties,
        thread,
    }))
}

struct Outputs {
    json_path: Option<PathBuf>,
    json: Option<File>,
    /// The batch's lines, written to `json` at the batch's end or whenever they pass
    /// [`JSON_LOG_BUFFER_BYTES`]: empty between batches.
    json_lines: Vec<u8>,
    json_trim: LogCacheTrim,
    syslog: Option<Syslog>,
    syslog_verified_only: bool,
    reopen: Arc<AtomicBool>,
    metrics: Arc<WriterMetrics>,
    reports: Reports,
}

impl Outputs {
    fn run(mut self, batches: &Receiver<Vec<Event>>, empties: &Sender<Vec<Event>>) {
        loop {
            match batches.recv_timeout(STORE_IDLE_WAKE_INTERVAL) {
                Ok(mut batch) => {
                    self.write_json_lines(&batch);
                    self.send_syslog_lines(&batch);
                    batch.clear();
                    let _ = empties.try_send(batch);
                }
                Err(RecvTimeoutError::Timeout) => self.reopen_json_log_if_asked(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn write_json_lines(&mut self, events: &[Event]) {
        if self.json_path.is_none() {
            return;
        }
        self.reopen_json_log_if_asked();
        if self.json.is_none() {
            self.open_json_log();
        }
        let Some(json) = &mut self.json else { return };
        let lines = &mut self.json_lines;
        let mut result = Ok(());
        for event in events {
            result = write_json(event, &mut *lines).map(|()| lines.push(b'\n'));
            if result.is_ok() && lines.len() >= JSON_LOG_BUFFER_BYTES {
                result = json.write_all(lines);
                lines.clear();
            }
            if result.is_err() {
                break;
            }
        }
        let result = result.and_then(|()| json.write_all(lines));
        lines.clear();
        if result.is_ok() {
            self.json_trim.after_flush(json);
        }
        if let Err(error) = result {
            self.json = None;
            self.metrics.json_log_errors_total.inc();
            let path = self.json_path_text();
            self.reports.report("json-write", || {
                format!("cannot write JSON log {path}: {error}")
            });
        }
    }

    /// Reopens the JSON log by its name if SIGHUP asked for it (log rotation). Checked before
    /// every batch's lines too, so that a batch that arrived meanwhile goes to the new file.
    fn reopen_json_log_if_asked(&mut self) {
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.json = None;
            self.open_json_log();
        }
    }

    fn open_json_log(&mut self) {
        let Some(path) = &self.json_path else { return };
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => {
                self.json = Some(file);
                self.json_trim = LogCacheTrim::default();
            }
            Err(error) => {
                self.json = None;
                self.metrics.json_log_errors_total.inc();
                let path = self.json_path_text();
                self.reports.report("json-open", || {
                    format!("cannot open JSON log {path}: {error}; events are still stored")
                });
            }
        }
    }

    fn json_path_text(&self) -> String {
        self.json_path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    fn send_syslog_lines(&mut self, events: &[Event]) {
        let Some(syslog) = &mut self.syslog else {
            return;
        };
        if let Err(error) = syslog.connect() {
            self.metrics.syslog_errors_total.inc();
            let path = syslog.path().display().to_string();
            self.reports.report("syslog", || {
                format!("cannot connect to syslog {path}: {error}")
            });
            return;
        }
        let now = syslog::now();
        for event in events {
            if self.syslog_verified_only && !event.source_verified {
                self.metrics.syslog_unverified_skipped_total.inc();
                continue;
            }
            if let Err(error) = syslog.send(event, now) {
                self.metrics.syslog_errors_total.inc();
                let path = syslog.path().display().to_string();
                self.reports.report("syslog", || {
                    format!("cannot send to syslog {path}: {error}")
                });
                return;
            }
        }
    }
}
