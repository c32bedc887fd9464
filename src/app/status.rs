//! What a person sees with `-v`: a start-up banner and a periodic one-line status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::store::Store;
use crate::store::writer::WriterMetrics;

/// The numbers behind the periodic status line, and their previous values for rates.
pub(super) struct Status {
    store: Store,
    writer: Arc<WriterMetrics>,
    last_at: Instant,
    last_committed: u64,
}

impl Status {
    pub(super) fn new(store: &Store, writer: Arc<WriterMetrics>) -> Self {
        let last_committed = writer.events_committed_total.get();
        Self {
            store: store.clone(),
            writer,
            last_at: Instant::now(),
            last_committed,
        }
    }

    /// Version, node id, store, outputs and listeners, once at start-up.
    pub(super) fn print_banner(&self, config: &Config, startup: Duration) {
        eprintln!(
            "sentrypeer {} node {} started in {} ms",
            env!("CARGO_PKG_VERSION"),
            self.store.node_id(),
            startup.as_millis()
        );
        eprintln!(
            "sentrypeer: store {} ({} bytes)",
            self.store.path().display(),
            self.store_bytes()
        );
        let mut outputs = Vec::new();
        if let Some(path) = &config.output.json_log_file {
            outputs.push(format!("json log {}", path.display()));
        }
        if config.output.syslog {
            outputs.push(format!("syslog {}", config.output.syslog_socket.display()));
        }
        if let Some(webhook) = &config.webhook {
            outputs.push(format!("webhook {}", webhook.url));
        }
        if outputs.is_empty() {
            outputs.push("store only".to_string());
        }
        eprintln!("sentrypeer: outputs: {}", outputs.join(", "));
    }

    /// One line: events/s since the last line, totals, store size.
    pub(super) fn print_line(&mut self) {
        let now = Instant::now();
        let committed = self.writer.events_committed_total.get();
        let seconds = now.duration_since(self.last_at).as_secs_f64().max(0.001);
        let rate = (committed.saturating_sub(self.last_committed)) as f64 / seconds;
        self.last_at = now;
        self.last_committed = committed;
        eprintln!(
            "sentrypeer: status: {rate:.0} events/s, {committed} stored, {} commit errors, store {} bytes",
            self.writer.commit_errors_total.get(),
            self.store_bytes()
        );
    }

    fn store_bytes(&self) -> u64 {
        std::fs::metadata(self.store.path()).map_or(0, |m| m.len())
    }
}
