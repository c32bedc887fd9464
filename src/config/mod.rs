//! Configuration: the command line, environment and TOML file of compat.md §1, parsed and
//! validated once at start-up into one typed [`Config`].
//!
//! Precedence for valued settings: command line > environment > config file > default. Boolean
//! features are on when the flag or the environment variable is present (any value), or the
//! config file sets them `true`.
//!
//! Flow: [`load`] (the process) or [`load_from`] (tests) parse the arguments with the clap
//! definition in `cli.rs` ([`command`]), read the config file (`-g`, `SENTRYPEER_CONFIG_FILE`, or
//! `~/.config/sentrypeer/default-config.toml` if it exists) and parse it with `file.rs`, then
//! `resolve.rs` merges the sources and validates every value into [`Config`]; text defaults are
//! in [`defaults`]. Errors are one [`ConfigError`], one line each, naming the setting.
//!
//! Never: read again on the hot path; hold a limit outside [`limits`]; print a secret (secrets
//! are [`Secret`]s, and clap never shows environment values in `-h`).
//!
//! Limits: every number is checked against its bound in [`limits`] (`SENSOR_CORES_MAX`,
//! `UDP_RCVBUF_BYTES_MAX`, `TCP_IDLE_TIMEOUT_MAX`, `TCP_CONNECTIONS_PER_SHARD_MAX`,
//! `REPLY_RATE_PER_SECOND_MAX`, `REPLY_BURST_MAX`, `SERVER_HEADER_BYTES_MAX`,
//! `WRITER_BATCH_EVENTS_MAX`, `WRITER_BATCH_INTERVAL_MAX`, `RETENTION_DAYS_MAX`,
//! `WEBHOOK_BATCH_EVENTS_MAX`), the `--ignore-ip` list against `IGNORE_IP_ENTRIES_MAX`, and the
//! NATS settings against `NATS_URLS_MAX`, `NATS_SUBJECT_PREFIX_BYTES_MAX` and
//! `NATS_STREAM_NAME_BYTES_MAX`.

mod cli;
pub mod defaults;
mod file;
pub mod limits;
mod resolve;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::FromArgMatches;

use crate::ignore::IgnoreList;

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
    /// `--ignore-ip`: sources dropped on the shard, only counted.
    pub ignore_ip: IgnoreList,
    /// `--sip-challenge`: REGISTER/INVITE get a 401 Digest challenge (implies `responsive`).
    pub sip_challenge: bool,
    /// `--sip-realm`: the challenge's realm.
    pub sip_realm: String,
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
    /// Where syslog lines go (hidden `--syslog-socket`, for tests): `/dev/log` by default.
    pub syslog_socket: PathBuf,
    /// `--verified-only`: the syslog line only for events from verified sources.
    pub verified_only: bool,
}

/// The HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub token: Option<Secret>,
    /// `--verified-only`: `/ip-addresses` feeds list verified sources unless `?verified=false`.
    pub verified_only: bool,
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

/// NATS JetStream (`--nats-url` and the other `--nats-*` options): publish this node's events,
/// or, with `--nats-ingest`, gather the fleet's.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// Server URLs (`nats://`, `tls://`, `ws://`, `wss://` or `host:port`); may hold a user and
    /// password, so `Debug` shows only their hosts.
    pub urls: Vec<String>,
    /// Subjects are `<subject_prefix>.<node id>`; the stream holds `<subject_prefix>.>`.
    pub subject_prefix: String,
    pub stream: String,
    /// `--nats-creds`: a credentials file (user JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// `--nats-ca`: CA certificates trusted instead of the system roots; TLS is then required.
    pub ca: Option<PathBuf>,
    /// `--nats-ingest`: this node is a hub (it stores the stream's events and does not publish).
    pub ingest: bool,
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<&str> = self
            .urls
            .iter()
            .map(|url| url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host))
            .collect();
        f.debug_struct("NatsConfig")
            .field("urls", &urls)
            .field("subject_prefix", &self.subject_prefix)
            .field("stream", &self.stream)
            .field("creds", &self.creds)
            .field("ca", &self.ca)
            .field("ingest", &self.ingest)
            .finish()
    }
}

/// Peer to peer (`-p`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P2pConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub bootstrap: String,
    /// `--ignore-ip`: received entries naming a source in it are dropped and counted.
    pub ignore_ip: IgnoreList,
    /// `--verified-only`: only events from verified sources are shared.
    pub verified_only: bool,
}

/// Offline enrichment of source IPs (`--geoip-db`, `--asn-db`): MMDB files, both optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnrichConfig {
    /// Country database (`country.iso_code` or `country_code`).
    pub geoip_db: Option<PathBuf>,
    /// ASN database (`autonomous_system_number`/`_organization`, or `asn`/`as_name`).
    pub asn_db: Option<PathBuf>,
}

impl EnrichConfig {
    /// Whether any database is configured (the JSON log then has the enrichment keys).
    pub fn enabled(&self) -> bool {
        self.geoip_db.is_some() || self.asn_db.is_some()
    }
}

/// What the process does: run the sensor, or one subcommand.
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
    /// `sentrypeer top [--api URL]`: the live terminal view of a running sensor's API, which
    /// sends `api.token` when set.
    Top {
        api_url: String,
        /// Test hook (hidden `--danger-panic-after-first-draw`): panic once the screen is up.
        panic_after_first_draw: bool,
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
    /// `None` when no `--nats-url` is given.
    pub nats: Option<NatsConfig>,
    pub p2p: P2pConfig,
    pub enrich: EnrichConfig,
    pub verbose: bool,
    pub debug: bool,
}

/// Why the configuration could not be built; each message is one line naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A command-line error, or `-h`/`-V`: [`load`] lets clap print it and exit (2, or 0).
    #[error("{0}")]
    Usage(#[from] clap::Error),
    #[error("cannot read config file \"{}\"", .path.display())]
    ConfigFileRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid config file \"{}\": {problem}", .path.display())]
    ConfigFileInvalid { path: PathBuf, problem: String },
    #[error("the value of {key} is not valid UTF-8")]
    NotUnicode { key: &'static str },
    #[error("invalid listen address \"{value}\" for {key}")]
    InvalidAddress { key: &'static str, value: String },
    #[error("invalid CIDR \"{value}\" for {key}")]
    InvalidCidr { key: &'static str, value: String },
    #[error("invalid number \"{value}\" for {key}")]
    InvalidNumber { key: &'static str, value: String },
    #[error("{key} {value} is out of range ({min} to {max})")]
    OutOfRange {
        key: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("invalid {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("invalid json_log_file \"{}\": {problem}", .path.display())]
    JsonLogFile { path: PathBuf, problem: String },
    #[error("cannot read {key} \"{}\": {problem}", .path.display())]
    ReadableFile {
        key: &'static str,
        path: PathBuf,
        problem: String,
    },
}

/// The clap definition of the whole command line (for `-h` and man pages).
pub fn command() -> clap::Command {
    cli::command()
}

/// The configuration of this process, from `std::env::args_os()`, the process environment and
/// the config file. Help, version and usage errors are printed by clap, which then exits the
/// process (0 for `-h`/`-V`, 2 for a usage error).
pub fn load() -> Result<Config, ConfigError> {
    match load_from(std::env::args_os(), &|name| std::env::var_os(name)) {
        Err(ConfigError::Usage(error)) => error.exit(),
        other => other,
    }
}

/// The configuration from `args` (the first is the program name), the environment seen through
/// `env`, and the config file that `-g`, `SENTRYPEER_CONFIG_FILE` or `$HOME` (from `env`) names.
pub fn load_from<I, T>(
    args: I,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = cli::command().try_get_matches_from(args)?;
    let cli = cli::Cli::from_arg_matches(&matches)?;
    let file = match config_file_path(&matches, &cli, env) {
        Some((path, named)) => read_config_file(&path, named)?,
        None => file::FileConfig::default(),
    };
    let sources = resolve::Sources {
        matches: &matches,
        cli: &cli,
        env,
        file: &file,
        cores_online: cores_online(),
    };
    let config = resolve::resolve(&sources)?;
    // Only the sensor writes the JSON log; `stats` and `export` do not need it.
    if let (Command::Run, Some(path)) = (&config.command, &config.output.json_log_file) {
        check_json_log_file(path)?;
    }
    if config.command == Command::Run {
        let enrich = &config.enrich;
        check_readable_files(&[("geoip_db", &enrich.geoip_db), ("asn_db", &enrich.asn_db)])?;
        if let Some(nats) = &config.nats {
            check_readable_files(&[("nats_creds", &nats.creds), ("nats_ca", &nats.ca)])?;
        }
    }
    Ok(config)
}

/// The config file to read and whether it was named (`-g`, env) rather than the default.
fn config_file_path(
    matches: &clap::ArgMatches,
    cli: &cli::Cli,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Option<(PathBuf, bool)> {
    let on_command_line =
        matches.value_source("config_file") == Some(clap::parser::ValueSource::CommandLine);
    if let Some(path) = cli.config_file.as_ref().filter(|_| on_command_line) {
        return Some((PathBuf::from(path), true));
    }
    if let Some(path) = env("SENTRYPEER_CONFIG_FILE").filter(|path| !path.is_empty()) {
        return Some((PathBuf::from(path), true));
    }
    let home = env("HOME").filter(|home| !home.is_empty())?;
    let path = Path::new(&home).join(defaults::CONFIG_FILE_IN_HOME);
    path.exists().then_some((path, false))
}

fn read_config_file(path: &Path, named: bool) -> Result<file::FileConfig, ConfigError> {
    debug_assert!(named || path.exists());
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ConfigFileRead {
        path: path.to_owned(),
        source,
    })?;
    file::parse(&text).map_err(|problem| ConfigError::ConfigFileInvalid {
        path: path.to_owned(),
        problem,
    })
}

/// The sensor's default core count: the cores this process may run on.
fn cores_online() -> usize {
    core_affinity::get_core_ids()
        .map(|ids| ids.len())
        .filter(|count| *count > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
}

/// The JSON log file must be creatable: its directory exists and is writable, and the path is
/// not a directory.
fn check_json_log_file(path: &Path) -> Result<(), ConfigError> {
    let problem = |problem: String| ConfigError::JsonLogFile {
        path: path.to_owned(),
        problem,
    };
    if path.is_dir() {
        return Err(problem("is a directory".into()));
    }
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !directory.is_dir() {
        return Err(problem(format!(
            "directory \"{}\" does not exist",
            directory.display()
        )));
    }
    let target = if path.exists() { path } else { directory };
    rustix::fs::access(target, rustix::fs::Access::WRITE_OK)
        .map_err(|errno| problem(format!("\"{}\" is not writable: {errno}", target.display())))
}

/// Files the sensor reads later (the MMDB files, the NATS credentials and CA) must be readable
/// regular files at start; their contents are checked when they are opened.
fn check_readable_files(named: &[(&'static str, &Option<PathBuf>)]) -> Result<(), ConfigError> {
    for &(key, path) in named {
        let Some(path) = path else { continue };
        let problem = |problem: String| ConfigError::ReadableFile {
            key,
            path: path.clone(),
            problem,
        };
        if path.is_dir() {
            return Err(problem("is a directory".into()));
        }
        std::fs::File::open(path).map_err(|error| problem(error.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
