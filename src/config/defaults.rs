//! Default values of the text settings (numeric defaults are in [`super::limits`]).
//!
//! `cli` shows them in `-h`; `resolve` applies them when neither the command line, the
//! environment nor the config file gives a value.

/// `-f`: the database file.
pub const DB_FILE: &str = "./sentrypeer.db";

/// `-l`: the JSON log file.
pub const JSON_LOG_FILE: &str = "./sentrypeer_json.log";

/// `--syslog-socket` (hidden): the unix datagram socket syslog lines are sent to.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// `-b`: the P2P bootstrap peer.
pub const BOOTSTRAP_NODE: &str = "bootstrap.sentrypeer.org:4222";

/// Port added to a bootstrap node given as a bare host (by `config` and by the P2P node).
pub const BOOTSTRAP_PORT: u16 = 4222;

/// `-t`: the TLS certificate (PEM).
pub const TLS_CERT_FILE: &str = "./cert.pem";

/// `-k`: the TLS private key (PEM).
pub const TLS_KEY_FILE: &str = "./key.pem";

/// `-z`: the TLS listen address.
pub const TLS_LISTEN_ADDRESS: &str = "0.0.0.0:5061";

/// `--sip-listen`: the UDP+TCP SIP listen address.
pub const SIP_LISTEN_ADDRESS: &str = "0.0.0.0:5060";

/// `--api-listen`: the HTTP API listen address.
pub const API_LISTEN_ADDRESS: &str = "0.0.0.0:8082";

/// The API `sentrypeer top` asks: the default API port on this host.
pub const TOP_API_URL: &str = "http://127.0.0.1:8082";

/// `--p2p-listen`: the P2P listen address.
pub const P2P_LISTEN_ADDRESS: &str = "0.0.0.0:4222";

/// `--oauth2-token-url`: the OAuth2 token endpoint.
pub const OAUTH2_TOKEN_URL: &str = "https://authz.sentrypeer.com/oauth/token";

/// `--oauth2-audience`: the OAuth2 token audience.
pub const OAUTH2_AUDIENCE: &str = "https://sentrypeer.com/api";

/// `--server-header`: the `Server` header of replies (the original's value).
pub const SERVER_HEADER: &str = "FPBX-16.0.33(18.13.0)";

/// Realm of the `--sip-challenge` Digest challenge: Asterisk's default, as the Server header
/// imitates an Asterisk-based PBX.
pub const SIP_REALM: &str = "asterisk";

/// `--nats-subject`: the subject prefix; each node publishes on `<prefix>.<node id>`.
pub const NATS_SUBJECT_PREFIX: &str = "sentrypeer.events";

/// `--nats-stream`: the JetStream stream holding `<prefix>.>`.
pub const NATS_STREAM: &str = "SENTRYPEER";

/// The config file read when none is named, relative to `$HOME`, and only if it exists.
pub const CONFIG_FILE_IN_HOME: &str = ".config/sentrypeer/default-config.toml";
