//! What a person sees with `-v`: a start-up banner and a periodic one-line status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::ApiHandle;
use crate::config::Config;
use crate::p2p::P2pMetrics;
use crate::sensor::{EngineKind, Sensor, SensorMetrics};
use crate::store::Store;
use crate::store::writer::WriterMetrics;

/// The numbers behind the periodic status line, and their previous values for rates.
pub(super) struct Status {
    store: Store,
    writer: Arc<WriterMetrics>,
    sensor: Option<Arc<SensorMetrics>>,
    p2p: Option<Arc<P2pMetrics>>,
    last_at: Instant,
    last_committed: u64,
}

impl Status {
    pub(super) fn new(
        store: &Store,
        writer: Arc<WriterMetrics>,
        sensor: Option<Arc<SensorMetrics>>,
        p2p: Option<Arc<P2pMetrics>>,
    ) -> Self {
        let last_committed = writer.events_committed_total.get();
        Self {
            store: store.clone(),
            writer,
            sensor,
            p2p,
            last_at: Instant::now(),
            last_committed,
        }
    }

    /// Version, node id, engine, listeners, store and outputs, once at start-up.
    pub(super) fn print_banner(
        &self,
        config: &Config,
        sensor: Option<&Sensor>,
        api: Option<&ApiHandle>,
        startup: Duration,
    ) {
        eprintln!(
            "sentrypeer {} node {} started in {} ms",
            env!("CARGO_PKG_VERSION"),
            self.store.node_id(),
            startup.as_millis()
        );
        match sensor {
            Some(sensor) => {
                let engine = match sensor.engine() {
                    EngineKind::IoUring => "io_uring",
                    EngineKind::Portable => "portable",
                };
                let why = sensor
                    .fallback_reason()
                    .map_or(String::new(), |r| format!(" ({r})"));
                eprintln!(
                    "sentrypeer: sensor: {engine} engine{why}, {} cores, {} mode",
                    config.sensor.cores,
                    if config.sensor.responsive {
                        "responsive"
                    } else {
                        "silent"
                    }
                );
                let list = |addrs: Vec<std::net::SocketAddr>| {
                    addrs
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                eprintln!("sentrypeer: SIP UDP on {}", list(sensor.udp_addrs()));
                eprintln!("sentrypeer: SIP TCP on {}", list(sensor.tcp_addrs()));
                if let Some(tls) = sensor.tls_addr() {
                    eprintln!("sentrypeer: SIP TLS on {tls}");
                }
            }
            None => eprintln!("sentrypeer: sensor: off (-R)"),
        }
        if let Some(api) = api {
            eprintln!("sentrypeer: API on http://{}", api.local_addr());
        }
        eprintln!(
            "sentrypeer: store {} ({} bytes)",
            self.store.path().display(),
            self.store_bytes()
        );
        eprintln!("sentrypeer: outputs: {}", outputs(config).join(", "));
    }

    /// One line: events/s since the last line, drops, totals, store size, peers.
    pub(super) fn print_line(&mut self) {
        let now = Instant::now();
        let committed = self.writer.events_committed_total.get();
        let seconds = now.duration_since(self.last_at).as_secs_f64().max(0.001);
        let rate = (committed.saturating_sub(self.last_committed)) as f64 / seconds;
        self.last_at = now;
        self.last_committed = committed;
        let dropped = self
            .sensor
            .as_ref()
            .map_or(0, |s| s.totals().events_dropped);
        let peers = self
            .p2p
            .as_ref()
            .map(|p| format!(", {} peers", p.peers.get()));
        eprintln!(
            "sentrypeer: status: {rate:.1} events/s, {committed} stored, {dropped} dropped, \
             {} commit errors, store {} bytes{}",
            self.writer.commit_errors_total.get(),
            self.store_bytes(),
            peers.unwrap_or_default()
        );
    }

    fn store_bytes(&self) -> u64 {
        std::fs::metadata(self.store.path()).map_or(0, |m| m.len())
    }
}

/// The outputs that are on, for the banner.
fn outputs(config: &Config) -> Vec<String> {
    let mut outputs = Vec::new();
    if let Some(path) = &config.output.json_log_file {
        outputs.push(format!("json log {}", path.display()));
    }
    if config.output.syslog {
        outputs.push(format!("syslog {}", config.output.syslog_socket.display()));
    }
    if let Some(webhook) = &config.webhook {
        outputs.push(format!("webhook {}", url_host(&webhook.url)));
    }
    if let Some(nats) = &config.nats {
        let role = if nats.ingest {
            "ingest from"
        } else {
            "publish to"
        };
        let hosts: Vec<String> = nats.urls.iter().map(|url| nats_host(url)).collect();
        outputs.push(format!(
            "nats {role} stream {} at {}",
            nats.stream,
            hosts.join(",")
        ));
    }
    if config.p2p.enabled {
        outputs.push(format!("p2p on {}", config.p2p.listen));
    }
    if outputs.is_empty() {
        outputs.push("store only".to_string());
    }
    outputs
}

/// A NATS server URL without credentials; a bare `host:port` stays bare.
fn nats_host(url: &str) -> String {
    if url.contains("://") {
        url_host(url)
    } else {
        url.rsplit_once('@')
            .map_or(url, |(_, host)| host)
            .to_owned()
    }
}

/// `scheme://host[:port]` of a URL, without credentials, path or query (they may hold secrets).
fn url_host(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::{nats_host, url_host};

    #[test]
    fn status_nats_host_hides_credentials() {
        assert_eq!(nats_host("nats://u:p@h:4222"), "nats://h:4222");
        assert_eq!(nats_host("u:p@h:4222"), "h:4222");
        assert_eq!(nats_host("h"), "h");
    }

    #[test]
    fn status_url_host_hides_credentials() {
        assert_eq!(
            url_host("https://user:pw@siem.example:8443/x?token=t"),
            "https://siem.example:8443"
        );
        assert_eq!(url_host("http://h/p"), "http://h");
    }
}
