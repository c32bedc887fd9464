//! The command line of compat.md §1 as a clap definition.
//!
//! Every valued option is taken as an `OsString` and parsed later by `resolve`, so a bad value
//! gives the same one-line error whether it came from the command line, the environment or the
//! config file. The `env` attributes are there for `-h` (and man pages); the values clap reads
//! from the environment are ignored, because `resolve` reads the environment itself (presence
//! decides booleans, which clap cannot express).

use std::ffi::OsString;

use clap::builder::FalseyValueParser;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use super::defaults;
use super::limits;

/// What `-h` prints first; compat.md §1 fixes it.
pub(crate) const ABOUT: &str = "Protect your SIP Servers from bad actors";

#[derive(Debug, Parser)]
#[command(name = "sentrypeer", version, about = ABOUT, max_term_width = 100)]
pub(crate) struct Cli {
    /// Database location
    #[arg(
        short = 'f',
        long,
        env = "SENTRYPEER_DB_FILE",
        value_name = "DB_FILE",
        global = true
    )]
    pub(crate) db_file: Option<OsString>,

    /// Turn the JSON log on
    #[arg(short = 'j', long, env = "SENTRYPEER_JSON_LOG", value_parser = FalseyValueParser::new())]
    pub(crate) json_log: bool,

    /// JSON log file; setting it also turns the JSON log on
    #[arg(
        short = 'l',
        long,
        env = "SENTRYPEER_JSON_LOG_FILE",
        value_name = "JSON_LOG_FILE"
    )]
    pub(crate) json_log_file: Option<OsString>,

    /// Turn peer-to-peer mode on
    #[arg(short = 'p', long, visible_alias = "p2p", env = "SENTRYPEER_PEER_TO_PEER",
        value_parser = FalseyValueParser::new())]
    pub(crate) peer_to_peer: bool,

    /// Bootstrap peer: host, host:port or a libp2p multiaddr
    #[arg(
        short = 'b',
        long,
        env = "SENTRYPEER_BOOTSTRAP_NODE",
        value_name = "BOOTSTRAP_NODE"
    )]
    pub(crate) bootstrap_node: Option<OsString>,

    /// OAuth2 client id for the webhook's bearer token
    #[arg(
        short = 'i',
        long,
        env = "SENTRYPEER_OAUTH2_CLIENT_ID",
        value_name = "CLIENT_ID"
    )]
    pub(crate) oauth2_client_id: Option<OsString>,

    /// OAuth2 client secret for the webhook's bearer token
    #[arg(
        short = 'c',
        long,
        env = "SENTRYPEER_OAUTH2_CLIENT_SECRET",
        value_name = "CLIENT_SECRET"
    )]
    pub(crate) oauth2_client_secret: Option<OsString>,

    /// Turn the HTTP API on
    #[arg(short = 'a', long, env = "SENTRYPEER_API", value_parser = FalseyValueParser::new())]
    pub(crate) api: bool,

    /// POST every event's JSON to this URL
    #[arg(
        short = 'w',
        long,
        env = "SENTRYPEER_WEBHOOK_URL",
        value_name = "WEBHOOK_URL"
    )]
    pub(crate) webhook_url: Option<OsString>,

    /// Reply to SIP requests (responsive mode)
    #[arg(short = 'r', long, env = "SENTRYPEER_SIP_RESPONSIVE",
        value_parser = FalseyValueParser::new())]
    pub(crate) sip_responsive: bool,

    /// No SIP listeners at all (API / P2P node only)
    #[arg(short = 'R', long, env = "SENTRYPEER_SIP_DISABLE", value_parser = FalseyValueParser::new())]
    pub(crate) sip_disable: bool,

    /// No TLS listener, and the portable (non-io_uring) engine
    #[arg(short = 'N', long, env = "SENTRYPEER_TLS_DISABLE", value_parser = FalseyValueParser::new())]
    pub(crate) tls_disable: bool,

    /// TLS certificate (PEM)
    #[arg(
        short = 't',
        long,
        env = "SENTRYPEER_CERT",
        value_name = "TLS_CERT_FILE"
    )]
    pub(crate) cert: Option<OsString>,

    /// TLS private key (PEM)
    #[arg(short = 'k', long, env = "SENTRYPEER_KEY", value_name = "TLS_KEY_FILE")]
    pub(crate) key: Option<OsString>,

    /// TLS listen address
    #[arg(
        short = 'z',
        long,
        visible_alias = "tls-listen",
        env = "SENTRYPEER_TLS_LISTEN_ADDRESS",
        value_name = "TLS_LISTEN_ADDRESS"
    )]
    pub(crate) tls_listen_address: Option<OsString>,

    /// TOML config file [default: ~/.config/sentrypeer/default-config.toml if it exists]
    #[arg(
        short = 'g',
        long,
        env = "SENTRYPEER_CONFIG_FILE",
        value_name = "CONFIG_FILE",
        global = true
    )]
    pub(crate) config_file: Option<OsString>,

    /// Log one syslog line per event
    #[arg(short = 's', long, env = "SENTRYPEER_SYSLOG", value_parser = FalseyValueParser::new())]
    pub(crate) syslog: bool,

    /// Verbose
    #[arg(short = 'v', long, env = "SENTRYPEER_VERBOSE", value_parser = FalseyValueParser::new(),
        global = true)]
    pub(crate) verbose: bool,

    /// Debug
    #[arg(short = 'd', long, env = "SENTRYPEER_DEBUG", value_parser = FalseyValueParser::new(),
        global = true)]
    pub(crate) debug: bool,

    /// UDP+TCP SIP listen address (repeatable; env: comma-separated)
    #[arg(
        long,
        env = "SENTRYPEER_SIP_LISTEN_ADDRESS",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub(crate) sip_listen: Vec<OsString>,

    /// Never report, store or answer a source in this network: CIDR or bare IP (repeatable; env:
    /// comma-separated)
    #[arg(
        long,
        env = "SENTRYPEER_IGNORE_IP",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub(crate) ignore_ip: Vec<OsString>,

    /// HTTP API listen address
    #[arg(long, env = "SENTRYPEER_API_LISTEN_ADDRESS", value_name = "ADDR")]
    pub(crate) api_listen: Option<OsString>,

    /// P2P listen address
    #[arg(long, env = "SENTRYPEER_P2P_LISTEN_ADDRESS", value_name = "ADDR")]
    pub(crate) p2p_listen: Option<OsString>,

    /// Sensor cores (executors), pinned [default: all online cores]
    #[arg(long, env = "SENTRYPEER_CORES", value_name = "N")]
    pub(crate) cores: Option<OsString>,

    /// OAuth2 token endpoint
    #[arg(long, env = "SENTRYPEER_OAUTH2_TOKEN_URL", value_name = "URL")]
    pub(crate) oauth2_token_url: Option<OsString>,

    /// OAuth2 token audience
    #[arg(long, env = "SENTRYPEER_OAUTH2_AUDIENCE", value_name = "AUD")]
    pub(crate) oauth2_audience: Option<OsString>,

    /// Receive buffer asked of the kernel per UDP socket, in bytes
    #[arg(long, env = "SENTRYPEER_UDP_RCVBUF", value_name = "BYTES")]
    pub(crate) udp_rcvbuf: Option<OsString>,

    /// Idle timeout of a TCP/TLS connection, in seconds
    #[arg(long, env = "SENTRYPEER_TCP_IDLE_TIMEOUT", value_name = "SECS")]
    pub(crate) tcp_idle_timeout: Option<OsString>,

    /// Open TCP/TLS connections allowed from one source IP (per core)
    #[arg(long, env = "SENTRYPEER_TCP_CONNECTIONS_PER_IP", value_name = "N")]
    pub(crate) tcp_connections_per_ip: Option<OsString>,

    /// Open TCP/TLS connections allowed per core
    #[arg(long, env = "SENTRYPEER_TCP_CONNECTIONS_PER_CORE", value_name = "N")]
    pub(crate) tcp_connections_per_core: Option<OsString>,

    /// Replies per second per source IP in responsive mode
    #[arg(long, env = "SENTRYPEER_REPLY_RATE", value_name = "PER_SEC")]
    pub(crate) reply_rate: Option<OsString>,

    /// Reply burst per source IP in responsive mode
    #[arg(long, env = "SENTRYPEER_REPLY_BURST", value_name = "N")]
    pub(crate) reply_burst: Option<OsString>,

    /// Server header of replies in responsive mode
    #[arg(long, env = "SENTRYPEER_SERVER_HEADER", value_name = "TEXT")]
    pub(crate) server_header: Option<OsString>,

    /// Challenge REGISTER/INVITE with a stateless 401 Digest nonce; implies -r
    #[arg(long, env = "SENTRYPEER_SIP_CHALLENGE", value_parser = FalseyValueParser::new())]
    pub(crate) sip_challenge: bool,

    /// Realm of the --sip-challenge Digest challenge [default: asterisk]
    #[arg(long, env = "SENTRYPEER_SIP_REALM", value_name = "REALM")]
    pub(crate) sip_realm: Option<OsString>,

    /// MMDB file giving each source IP's country (GeoLite2/DB-IP/IPinfo Lite Country); reopened
    /// on SIGHUP
    #[arg(long, env = "SENTRYPEER_GEOIP_DB", value_name = "FILE")]
    pub(crate) geoip_db: Option<OsString>,

    /// MMDB file giving each source IP's autonomous system (GeoLite2/DB-IP/IPinfo Lite ASN);
    /// reopened on SIGHUP
    #[arg(long, env = "SENTRYPEER_ASN_DB", value_name = "FILE")]
    pub(crate) asn_db: Option<OsString>,

    /// Syslog line, /ip-addresses feeds and P2P sharing carry verified sources only
    #[arg(long, env = "SENTRYPEER_VERIFIED_ONLY", value_parser = FalseyValueParser::new())]
    pub(crate) verified_only: bool,

    /// Most events per database write transaction
    #[arg(long, env = "SENTRYPEER_WRITER_BATCH", value_name = "N")]
    pub(crate) writer_batch: Option<OsString>,

    /// Longest wait before a partial batch is committed, in milliseconds
    #[arg(long, env = "SENTRYPEER_WRITER_INTERVAL_MS", value_name = "MS")]
    pub(crate) writer_interval_ms: Option<OsString>,

    /// Commit to the database without fsync (faster; a crash may lose the last commits)
    #[arg(long, env = "SENTRYPEER_NO_SYNC", value_parser = FalseyValueParser::new())]
    pub(crate) no_sync: bool,

    /// Delete raw events older than this many days (aggregates stay) [default: keep all]
    #[arg(long, env = "SENTRYPEER_RETENTION_DAYS", value_name = "N")]
    pub(crate) retention_days: Option<OsString>,

    /// Bearer token the HTTP API requires, and top sends [default: none]
    #[arg(
        long,
        env = "SENTRYPEER_API_TOKEN",
        value_name = "TOKEN",
        global = true
    )]
    pub(crate) api_token: Option<OsString>,

    /// Events per webhook request, as a JSON array [default: one object per request]
    #[arg(long, env = "SENTRYPEER_WEBHOOK_BATCH", value_name = "N")]
    pub(crate) webhook_batch: Option<OsString>,

    /// NATS server to publish events to (JetStream), or to ingest them from with --nats-ingest
    /// (repeatable; env: comma-separated)
    #[arg(
        long,
        env = "SENTRYPEER_NATS_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub(crate) nats_url: Vec<OsString>,

    /// Subject prefix: each node publishes on PREFIX.<node id>; the stream holds PREFIX.>
    #[arg(long, env = "SENTRYPEER_NATS_SUBJECT", value_name = "PREFIX")]
    pub(crate) nats_subject: Option<OsString>,

    /// JetStream stream the events go to (created when missing)
    #[arg(long, env = "SENTRYPEER_NATS_STREAM", value_name = "NAME")]
    pub(crate) nats_stream: Option<OsString>,

    /// NATS credentials file (user JWT and NKey seed)
    #[arg(long, env = "SENTRYPEER_NATS_CREDS", value_name = "FILE")]
    pub(crate) nats_creds: Option<OsString>,

    /// CA certificate(s) (PEM) trusted for TLS to the NATS server, instead of the system roots;
    /// setting it requires TLS
    #[arg(long, env = "SENTRYPEER_NATS_CA", value_name = "FILE")]
    pub(crate) nats_ca: Option<OsString>,

    /// Hub: store the events of the whole fleet from the NATS stream (this node then does not
    /// publish its own)
    #[arg(long, env = "SENTRYPEER_NATS_INGEST", value_parser = FalseyValueParser::new())]
    pub(crate) nats_ingest: bool,

    /// Test hook: pretend the io_uring probe failed
    #[arg(long, hide = true, env = "SENTRYPEER_DANGER_FORCE_PORTABLE_FALLBACK",
        value_parser = FalseyValueParser::new())]
    pub(crate) danger_force_portable_fallback: bool,

    /// Test hook: the unix datagram socket syslog lines go to [default: /dev/log]
    #[arg(
        long,
        hide = true,
        env = "SENTRYPEER_SYSLOG_SOCKET",
        value_name = "PATH"
    )]
    pub(crate) syslog_socket: Option<OsString>,

    #[command(subcommand)]
    pub(crate) command: Option<CliCommand>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CliCommand {
    /// Print counts from the database and exit
    Stats,
    /// Write every stored event to a file or stdout and exit
    Export {
        /// Output format
        #[arg(long, value_enum)]
        format: CliExportFormat,
        /// Output file [default: stdout]
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<OsString>,
    },
    /// Show a running sensor live in the terminal from its HTTP API (--api URL; q quits)
    Top {
        /// The sensor's HTTP API
        #[arg(long, value_name = "URL", default_value = super::defaults::TOP_API_URL)]
        api: String,
        /// Test hook: panic after the first screen is drawn (the terminal must be restored)
        #[arg(long, hide = true)]
        danger_panic_after_first_draw: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum CliExportFormat {
    Jsonl,
    Csv,
    Sqlite,
}

/// The clap command: the derive definition plus the defaults shown by `-h`.
///
/// The defaults are only shown; `resolve` applies them, after the config file.
pub(crate) fn command() -> clap::Command {
    let shown_defaults: [(&str, String); 17] = [
        ("db_file", defaults::DB_FILE.to_owned()),
        ("json_log_file", defaults::JSON_LOG_FILE.to_owned()),
        ("bootstrap_node", defaults::BOOTSTRAP_NODE.to_owned()),
        ("cert", defaults::TLS_CERT_FILE.to_owned()),
        ("key", defaults::TLS_KEY_FILE.to_owned()),
        (
            "tls_listen_address",
            defaults::TLS_LISTEN_ADDRESS.to_owned(),
        ),
        ("sip_listen", defaults::SIP_LISTEN_ADDRESS.to_owned()),
        ("api_listen", defaults::API_LISTEN_ADDRESS.to_owned()),
        ("p2p_listen", defaults::P2P_LISTEN_ADDRESS.to_owned()),
        ("oauth2_token_url", defaults::OAUTH2_TOKEN_URL.to_owned()),
        ("oauth2_audience", defaults::OAUTH2_AUDIENCE.to_owned()),
        ("udp_rcvbuf", limits::UDP_RCVBUF_BYTES_DEFAULT.to_string()),
        (
            "tcp_idle_timeout",
            limits::TCP_IDLE_TIMEOUT.as_secs().to_string(),
        ),
        ("server_header", defaults::SERVER_HEADER.to_owned()),
        (
            "writer_interval_ms",
            limits::WRITER_BATCH_INTERVAL.as_millis().to_string(),
        ),
        ("nats_subject", defaults::NATS_SUBJECT_PREFIX.to_owned()),
        ("nats_stream", defaults::NATS_STREAM.to_owned()),
    ];
    let numeric_defaults: [(&str, String); 5] = [
        (
            "tcp_connections_per_ip",
            limits::TCP_CONNECTIONS_PER_IP_MAX.to_string(),
        ),
        (
            "tcp_connections_per_core",
            limits::TCP_CONNECTIONS_PER_SHARD_MAX.to_string(),
        ),
        ("reply_rate", limits::REPLY_RATE_PER_SECOND.to_string()),
        ("reply_burst", limits::REPLY_BURST.to_string()),
        (
            "writer_batch",
            limits::WRITER_BATCH_EVENTS_DEFAULT.to_string(),
        ),
    ];
    let mut cmd = Cli::command().mut_args(|arg| arg.hide_env_values(true));
    for (id, value) in shown_defaults.into_iter().chain(numeric_defaults) {
        cmd = cmd.mut_arg(id, |arg| arg.default_value(value));
    }
    cmd
}
