//! Configuration: the command line, environment and TOML file of compat.md §1, parsed and
//! validated once at start-up into one typed [`Config`].
//!
//! Precedence for valued settings: command line > environment > config file > default. Boolean
//! features are on when the flag or the environment variable is present (any value).
//!
//! Never: read again on the hot path; hold a limit outside [`limits`]; print a secret.

pub mod limits;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A secret string (OAuth2 client secret, API token): never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// Which engine runs the sensor shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    /// io_uring (glommio) when the probe succeeds, else portable with a one-line reason.
    Auto,
    /// Plain threads with epoll and recvmmsg (`-N`).
    Portable,
}

/// The SIP sensor's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorConfig {
    /// `-R` turns the sensor off entirely.
    pub enabled: bool,
    pub listen: Vec<SocketAddr>,
    /// `None` when TLS is off (`-N`).
    pub tls_listen: Option<SocketAddr>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub responsive: bool,
    pub cores: usize,
    pub engine: EngineChoice,
    /// Test hook: pretend the io_uring probe failed (hidden `--danger-force-portable-fallback`).
    pub force_probe_failure: bool,
    pub udp_rcvbuf_bytes: usize,
    pub tcp_idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub tcp_connections_per_ip_max: usize,
    pub tcp_connections_per_shard_max: usize,
    pub reply_rate_per_second: u32,
    pub reply_burst: u32,
    pub server_header: String,
}

/// The store and its writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub db_file: PathBuf,
    pub batch_events_max: usize,
    pub batch_interval: Duration,
    /// `--no-sync`: commit without fsync.
    pub no_sync: bool,
    /// `None` keeps every event.
    pub retention_days: Option<u32>,
}

/// Outputs fed by the writer after each commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputConfig {
    /// `None` when the JSON log is off.
    pub json_log_file: Option<PathBuf>,
    pub syslog: bool,
}

/// The HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub token: Option<Secret>,
}

/// The webhook (`-w`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    pub oauth2_client_id: Option<String>,
    pub oauth2_client_secret: Option<Secret>,
    pub oauth2_token_url: String,
    pub oauth2_audience: String,
    /// `None`: one JSON object per request (as the original).
    pub batch: Option<usize>,
}

/// Peer to peer (`-p`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P2pConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub bootstrap: String,
}

/// A subcommand that reads the store instead of running the sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the sensor (no subcommand).
    Run,
    /// `sentrypeer stats`
    Stats,
    /// `sentrypeer export --format F [-o FILE]`
    Export {
        format: ExportFormat,
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
    Sqlite,
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub command: Command,
    pub sensor: SensorConfig,
    pub store: StoreConfig,
    pub output: OutputConfig,
    pub api: ApiConfig,
    /// `None` when the webhook is off.
    pub webhook: Option<WebhookConfig>,
    pub p2p: P2pConfig,
    pub verbose: bool,
    pub debug: bool,
}
