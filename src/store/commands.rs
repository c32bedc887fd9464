//! `sentrypeer stats` and `sentrypeer export`: read the store through short read transactions,
//! so both work while a sensor runs (LMDB lets a second process read).
//!
//! `export` reports its progress (events done of the store's count) through [`ExportProgress`];
//! the binary draws it, this module never does.
//!
//! Never: writes to the store, overwrites an existing export file, writes to stderr.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::{Store, StoreError, StoreOptions};
use crate::config::limits::EXPORT_CHUNK_EVENTS;
use crate::config::{ExportFormat, StoreConfig};
use crate::event::display_ip;
use crate::event::json::write_json;
use crate::event::timestamp::format_timestamp;

/// The CSV columns: the JSON-log keys (without the constant app name and version).
const CSV_HEADER: [&str; 15] = [
    "event_timestamp",
    "event_uuid",
    "created_by_node_id",
    "collected_method",
    "transport_type",
    "source_ip",
    "source_port",
    "destination_ip",
    "destination_port",
    "called_number",
    "sip_method",
    "sip_user_agent",
    "sip_message",
    "source_verified",
    "auth_username",
];

fn open_existing(config: &StoreConfig) -> Result<Store, StoreError> {
    let options = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    Store::open_with(config, options)
}

/// Prints `events`, `source_ips`, `called_numbers`, `first_event`, `last_event`, `store_bytes`,
/// `node_id` and `verified_ips`, one `key: value` line each.
pub fn stats(config: &StoreConfig, out: &mut dyn Write) -> Result<(), StoreError> {
    let store = open_existing(config)?;
    let reader = store.read()?;
    let totals = reader.totals()?;
    let bounds = reader.first_and_last_event()?;
    drop(reader);
    let stamp = |ns: Option<u64>| ns.map_or_else(|| "none".to_string(), format_timestamp);
    let store_bytes = std::fs::metadata(store.path())
        .map_err(|source| StoreError::Io {
            path: store.path().to_path_buf(),
            source,
        })?
        .len();
    writeln!(out, "events: {}", totals.events)?;
    writeln!(out, "source_ips: {}", totals.source_ips)?;
    writeln!(out, "called_numbers: {}", totals.called_numbers)?;
    writeln!(
        out,
        "first_event: {}",
        stamp(bounds.as_ref().map(|(f, _)| f.timestamp_ns))
    )?;
    writeln!(
        out,
        "last_event: {}",
        stamp(bounds.as_ref().map(|(_, l)| l.timestamp_ns))
    )?;
    writeln!(out, "store_bytes: {store_bytes}")?;
    writeln!(out, "node_id: {}", store.node_id().hyphenated())?;
    writeln!(out, "verified_ips: {}", totals.verified_ips)?;
    Ok(())
}

/// Told how far an export is.
pub trait ExportProgress {
    /// Once, before the first event: the events the store holds (more may arrive meanwhile).
    fn start(&mut self, total_events: u64);
    /// After each chunk: the events written so far.
    fn advance(&mut self, done_events: u64);
    /// Once, after the last event was written.
    fn finish(&mut self);
}

/// No progress reporting.
impl ExportProgress for () {
    fn start(&mut self, _total_events: u64) {}
    fn advance(&mut self, _done_events: u64) {}
    fn finish(&mut self) {}
}

/// Writes every stored event, oldest first, as JSON lines, CSV or an SQLite file (the original's
/// `honey` table; needs `output`). JSON lines and CSV go to `output` when given, else to `out`.
pub fn export(
    config: &StoreConfig,
    format: ExportFormat,
    output: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), StoreError> {
    export_with_progress(config, format, output, out, &mut ())
}

/// [`export`], telling `progress` how far it is.
pub fn export_with_progress(
    config: &StoreConfig,
    format: ExportFormat,
    output: Option<&Path>,
    out: &mut dyn Write,
    progress: &mut dyn ExportProgress,
) -> Result<(), StoreError> {
    if format == ExportFormat::Sqlite && output.is_none() {
        return Err(StoreError::SqliteNeedsOutput);
    }
    if let Some(path) = output
        && path.exists()
    {
        return Err(StoreError::OutputExists(path.to_path_buf()));
    }
    let store = open_existing(config)?;
    let mut events = Events {
        store: &store,
        progress,
    };
    match (format, output) {
        (ExportFormat::Sqlite, Some(path)) => export_sqlite(&mut events, path),
        (ExportFormat::Sqlite, None) => Err(StoreError::SqliteNeedsOutput),
        (format, Some(path)) => {
            let file = File::create(path).map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let mut file = BufWriter::new(file);
            export_text(&mut events, format, &mut file)?;
            file.flush()?;
            Ok(())
        }
        (format, None) => export_text(&mut events, format, out),
    }
}

/// The store's events, read in chunks, with the progress to tell.
struct Events<'a> {
    store: &'a Store,
    progress: &'a mut dyn ExportProgress,
}

impl Events<'_> {
    /// Calls `each` for every stored event in key order, one read transaction per chunk,
    /// telling the progress after each chunk.
    fn for_each(
        &mut self,
        mut each: impl FnMut(&crate::event::Event) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.progress.start(self.store.read()?.totals()?.events);
        let mut after = 0;
        let mut done_events = 0;
        loop {
            let chunk = self
                .store
                .read()?
                .events_after(after, EXPORT_CHUNK_EVENTS)?;
            let Some((last, _)) = chunk.last() else {
                self.progress.finish();
                return Ok(());
            };
            after = *last;
            for (_, event) in &chunk {
                each(event)?;
            }
            done_events += chunk.len() as u64;
            self.progress.advance(done_events);
        }
    }
}

fn export_text(
    events: &mut Events<'_>,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<(), StoreError> {
    if format == ExportFormat::Csv {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(CSV_HEADER)?;
        events.for_each(|event| {
            let row = row(event);
            csv.write_record(&row)?;
            Ok(())
        })?;
        csv.flush()?;
        return Ok(());
    }
    let mut out = BufWriter::new(out);
    let mut line = Vec::new();
    events.for_each(|event| {
        line.clear();
        write_json(event, &mut line)?;
        line.push(b'\n');
        out.write_all(&line)?;
        Ok(())
    })?;
    out.flush()?;
    Ok(())
}

/// One CSV row in [`CSV_HEADER`] order.
fn row(event: &crate::event::Event) -> [String; 15] {
    [
        format_timestamp(event.timestamp_ns),
        event.uuid.hyphenated().to_string(),
        event.node_id.hyphenated().to_string(),
        event.collected_method.as_str().to_string(),
        event.transport.as_str().to_string(),
        display_ip(event.source).to_string(),
        event.source.port().to_string(),
        display_ip(event.destination).to_string(),
        event.destination.port().to_string(),
        event.called_number_text().into_owned(),
        event.method_text().into_owned(),
        event.user_agent_text().into_owned(),
        event.message_text().into_owned(),
        event.source_verified.to_string(),
        event.auth_username_text().into_owned(),
    ]
}

fn export_sqlite(events: &mut Events<'_>, path: &Path) -> Result<(), StoreError> {
    let mut connection = rusqlite::Connection::open(path)?;
    connection.execute_batch(
        "CREATE TABLE honey (
            honey_id INTEGER PRIMARY KEY,
            event_timestamp TEXT,
            event_uuid TEXT,
            collected_method TEXT,
            created_by_node_id TEXT,
            transport_type TEXT,
            source_ip TEXT,
            destination_ip TEXT,
            called_number TEXT,
            sip_method TEXT,
            sip_user_agent TEXT,
            sip_message TEXT
        );",
    )?;
    let txn = connection.transaction()?;
    {
        let mut insert = txn.prepare(
            "INSERT INTO honey (event_timestamp, event_uuid, collected_method, created_by_node_id,
             transport_type, source_ip, destination_ip, called_number, sip_method, sip_user_agent,
             sip_message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        events.for_each(|event| {
            insert.execute(rusqlite::params![
                format_timestamp(event.timestamp_ns),
                event.uuid.hyphenated().to_string(),
                event.collected_method.as_str(),
                event.node_id.hyphenated().to_string(),
                event.transport.as_str(),
                display_ip(event.source).to_string(),
                display_ip(event.destination).to_string(),
                event.called_number_text(),
                event.method_text(),
                event.user_agent_text(),
                event.message_text(),
            ])?;
            Ok(())
        })?;
    }
    txn.commit()?;
    Ok(())
}
