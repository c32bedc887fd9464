//! Merging and validation: command line, environment, config file and defaults in, [`Config`]
//! out, with no I/O of its own (the caller reads the file and counts the cores).
//!
//! Valued settings: command line > environment (empty values ignored) > config file > default.
//! Booleans: on when the flag, the environment variable (any value, even empty) or a `true` in
//! the config file says so.

use std::ffi::{OsStr, OsString};
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;

use super::cli::{Cli, CliCommand, CliExportFormat};
use super::file::{FileConfig, OneOrMany};
use super::{
    ApiConfig, Command, Config, ConfigError, EngineChoice, EnrichConfig, ExportFormat,
    OutputConfig, P2pConfig, Secret, SensorConfig, StoreConfig, WebhookConfig, defaults, limits,
};
use crate::ignore::{IgnoreList, parse_cidr};

mod nats;

/// A lookup of one environment variable.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// Everything a configuration is made from.
pub(crate) struct Sources<'a> {
    pub(crate) matches: &'a ArgMatches,
    pub(crate) cli: &'a Cli,
    pub(crate) env: EnvLookup<'a>,
    pub(crate) file: &'a FileConfig,
    /// The default of `--cores`.
    pub(crate) cores_online: usize,
}

/// Builds and validates the whole configuration.
pub(crate) fn resolve(sources: &Sources<'_>) -> Result<Config, ConfigError> {
    Ok(Config {
        command: resolve_command(sources)?,
        sensor: resolve_sensor(sources)?,
        store: resolve_store(sources)?,
        output: resolve_output(sources)?,
        api: resolve_api(sources)?,
        webhook: resolve_webhook(sources)?,
        nats: nats::resolve_nats(sources)?,
        p2p: resolve_p2p(sources)?,
        enrich: resolve_enrich(sources)?,
        verbose: sources.flag("verbose", sources.cli.verbose, sources.file.verbose),
        debug: sources.flag("debug", sources.cli.debug, sources.file.debug),
    })
}

impl Sources<'_> {
    fn on_command_line(&self, id: &str) -> bool {
        self.matches.value_source(id) == Some(ValueSource::CommandLine)
    }

    /// A boolean feature; `id` is the clap id and the snake_case of the env var's suffix.
    fn flag(&self, id: &str, cli_value: bool, file_value: Option<bool>) -> bool {
        let env_name = format!("SENTRYPEER_{}", id.to_ascii_uppercase());
        (cli_value && self.on_command_line(id))
            || (self.env)(&env_name).is_some()
            || file_value == Some(true)
    }

    /// `--verified-only`, read where each part needs it.
    fn verified_only(&self) -> bool {
        self.flag(
            "verified_only",
            self.cli.verified_only,
            self.file.verified_only,
        )
    }

    /// The winning raw value of a valued setting, if any source gives one.
    fn raw(
        &self,
        id: &str,
        env_name: &str,
        cli_value: Option<&OsString>,
        file_value: Option<OsString>,
    ) -> Option<OsString> {
        if let Some(value) = cli_value.filter(|_| self.on_command_line(id)) {
            return Some(value.clone());
        }
        if let Some(value) = (self.env)(env_name).filter(|value| !value.is_empty()) {
            return Some(value);
        }
        file_value
    }

    fn text(
        &self,
        key: &'static str,
        env_name: &str,
        cli_value: Option<&OsString>,
        file_value: Option<&String>,
    ) -> Result<Option<String>, ConfigError> {
        let raw = self.raw(key, env_name, cli_value, file_value.map(OsString::from));
        raw.map(|value| unicode(key, value)).transpose()
    }

    fn path(
        &self,
        key: &'static str,
        env_name: &str,
        cli_value: Option<&OsString>,
        file_value: Option<&String>,
        default: &str,
    ) -> PathBuf {
        let raw = self.raw(key, env_name, cli_value, file_value.map(OsString::from));
        raw.map_or_else(|| PathBuf::from(default), PathBuf::from)
    }

    /// A whole number in `min..=max`; `default` when no source gives one.
    fn number(
        &self,
        key: &'static str,
        cli_value: Option<&OsString>,
        file_value: Option<i64>,
        range: (u64, u64),
    ) -> Result<Option<u64>, ConfigError> {
        let env_name = format!("SENTRYPEER_{}", key.to_ascii_uppercase());
        let file_value = file_value.map(|value| OsString::from(value.to_string()));
        match self.raw(key, &env_name, cli_value, file_value) {
            Some(raw) => parse_number(key, &unicode(key, raw)?, range).map(Some),
            None => Ok(None),
        }
    }

    fn address(
        &self,
        key: &'static str,
        env_name: &str,
        cli_value: Option<&OsString>,
        file_value: Option<&String>,
        default: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let text = self.text(key, env_name, cli_value, file_value)?;
        parse_address(key, text.as_deref().unwrap_or(default))
    }
}

fn unicode(key: &'static str, value: OsString) -> Result<String, ConfigError> {
    value
        .into_string()
        .map_err(|_| ConfigError::NotUnicode { key })
}

fn resolve_command(sources: &Sources<'_>) -> Result<Command, ConfigError> {
    Ok(match &sources.cli.command {
        None => Command::Run,
        Some(CliCommand::Stats) => Command::Stats,
        Some(CliCommand::Export { format, output }) => Command::Export {
            format: match format {
                CliExportFormat::Jsonl => ExportFormat::Jsonl,
                CliExportFormat::Csv => ExportFormat::Csv,
                CliExportFormat::Sqlite => ExportFormat::Sqlite,
            },
            output: output.as_ref().map(PathBuf::from),
        },
        Some(CliCommand::Top {
            api,
            danger_panic_after_first_draw,
        }) => Command::Top {
            api_url: check_url("top --api", Some(api))?,
            panic_after_first_draw: *danger_panic_after_first_draw,
        },
    })
}

fn resolve_sensor(sources: &Sources<'_>) -> Result<SensorConfig, ConfigError> {
    let (cli, file) = (sources.cli, sources.file);
    let tls_disable = sources.flag("tls_disable", cli.tls_disable, file.tls_disable);
    let tls_listen = sources.address(
        "tls_listen_address",
        "SENTRYPEER_TLS_LISTEN_ADDRESS",
        cli.tls_listen_address.as_ref(),
        file.tls_listen_address.as_ref(),
        defaults::TLS_LISTEN_ADDRESS,
    )?;
    let cores_max = limits::SENSOR_CORES_MAX as u64;
    let cores = sources.number("cores", cli.cores.as_ref(), file.cores, (1, cores_max))?;
    let (per_ip, per_core) = resolve_connections(sources)?;
    let sip_challenge = sources.flag("sip_challenge", cli.sip_challenge, file.sip_challenge);
    let (reply_rate_per_second, reply_burst) = resolve_reply_budget(sources)?;
    Ok(SensorConfig {
        enabled: !sources.flag("sip_disable", cli.sip_disable, file.sip_disable),
        listen: resolve_sip_listen(sources)?,
        tls_listen: (!tls_disable).then_some(tls_listen),
        tls_cert: sources.path(
            "cert",
            "SENTRYPEER_CERT",
            cli.cert.as_ref(),
            file.cert.as_ref(),
            defaults::TLS_CERT_FILE,
        ),
        tls_key: sources.path(
            "key",
            "SENTRYPEER_KEY",
            cli.key.as_ref(),
            file.key.as_ref(),
            defaults::TLS_KEY_FILE,
        ),
        responsive: sip_challenge
            || sources.flag("sip_responsive", cli.sip_responsive, file.sip_responsive),
        cores: cores.map_or(
            sources.cores_online.clamp(1, limits::SENSOR_CORES_MAX),
            as_usize,
        ),
        engine: if tls_disable {
            EngineChoice::Portable
        } else {
            EngineChoice::Auto
        },
        force_probe_failure: sources.flag(
            "danger_force_portable_fallback",
            cli.danger_force_portable_fallback,
            file.danger_force_portable_fallback,
        ),
        udp_rcvbuf_bytes: resolve_udp_rcvbuf(sources)?,
        tcp_idle_timeout: resolve_tcp_idle_timeout(sources)?,
        tls_handshake_timeout: limits::TLS_HANDSHAKE_TIMEOUT,
        tcp_connections_per_ip_max: as_usize(per_ip),
        tcp_connections_per_shard_max: as_usize(per_core),
        reply_rate_per_second,
        reply_burst,
        server_header: resolve_server_header(sources)?,
        ignore_ip: resolve_ignore_ip(sources)?,
        sip_challenge,
        sip_realm: resolve_sip_realm(sources)?,
    })
}

/// Receive buffer asked per UDP socket.
fn resolve_udp_rcvbuf(sources: &Sources<'_>) -> Result<usize, ConfigError> {
    let bytes = sources.number(
        "udp_rcvbuf",
        sources.cli.udp_rcvbuf.as_ref(),
        sources.file.udp_rcvbuf,
        (1, limits::UDP_RCVBUF_BYTES_MAX as u64),
    )?;
    Ok(as_usize(number_or(
        bytes,
        limits::UDP_RCVBUF_BYTES_DEFAULT as u64,
    )))
}

/// Idle timeout of a TCP/TLS connection.
fn resolve_tcp_idle_timeout(sources: &Sources<'_>) -> Result<Duration, ConfigError> {
    let seconds = sources.number(
        "tcp_idle_timeout",
        sources.cli.tcp_idle_timeout.as_ref(),
        sources.file.tcp_idle_timeout,
        (1, limits::TCP_IDLE_TIMEOUT_MAX.as_secs()),
    )?;
    Ok(Duration::from_secs(number_or(
        seconds,
        limits::TCP_IDLE_TIMEOUT.as_secs(),
    )))
}

/// `(per source IP, per core)` caps of open TCP/TLS connections.
fn resolve_connections(sources: &Sources<'_>) -> Result<(u64, u64), ConfigError> {
    let (cli, file) = (sources.cli, sources.file);
    let per_core = number_or(
        sources.number(
            "tcp_connections_per_core",
            cli.tcp_connections_per_core.as_ref(),
            file.tcp_connections_per_core,
            (1, limits::TCP_CONNECTIONS_PER_SHARD_MAX as u64),
        )?,
        limits::TCP_CONNECTIONS_PER_SHARD_MAX as u64,
    );
    let per_ip = number_or(
        sources.number(
            "tcp_connections_per_ip",
            cli.tcp_connections_per_ip.as_ref(),
            file.tcp_connections_per_ip,
            (1, per_core),
        )?,
        (limits::TCP_CONNECTIONS_PER_IP_MAX as u64).min(per_core),
    );
    Ok((per_ip, per_core))
}

impl Sources<'_> {
    /// The winning values of a repeatable setting (`key` is the clap id and the file key): every
    /// command-line value, else the environment's comma-separated list, else the file's string or
    /// array; `None` when no source gives one.
    fn list(
        &self,
        key: &'static str,
        env_name: &str,
        cli_values: &[OsString],
        file_values: Option<&OneOrMany>,
    ) -> Result<Option<Vec<String>>, ConfigError> {
        if self.on_command_line(key) {
            let values = cli_values.iter().cloned();
            return values
                .map(|value| unicode(key, value))
                .collect::<Result<_, _>>()
                .map(Some);
        }
        if let Some(value) = (self.env)(env_name).filter(|value| !value.is_empty()) {
            return Ok(Some(
                unicode(key, value)?.split(',').map(str::to_owned).collect(),
            ));
        }
        Ok(file_values.cloned().map(OneOrMany::into_vec))
    }
}

fn resolve_sip_listen(sources: &Sources<'_>) -> Result<Vec<SocketAddr>, ConfigError> {
    let key = "sip_listen";
    let texts = sources
        .list(
            key,
            "SENTRYPEER_SIP_LISTEN_ADDRESS",
            &sources.cli.sip_listen,
            sources.file.sip_listen.as_ref(),
        )?
        .unwrap_or_else(|| vec![defaults::SIP_LISTEN_ADDRESS.to_owned()]);
    if texts.is_empty() {
        return Err(ConfigError::Invalid {
            key,
            problem: "no listen address given".into(),
        });
    }
    let mut listen: Vec<SocketAddr> = Vec::with_capacity(texts.len());
    for text in &texts {
        let address = parse_address(key, text)?;
        if listen.contains(&address) {
            let problem = format!("listen address \"{address}\" given twice");
            return Err(ConfigError::Invalid { key, problem });
        }
        listen.push(address);
    }
    Ok(listen)
}

/// The `--ignore-ip` networks: none by default, at most `IGNORE_IP_ENTRIES_MAX`.
fn resolve_ignore_ip(sources: &Sources<'_>) -> Result<IgnoreList, ConfigError> {
    let key = "ignore_ip";
    let texts = sources.list(
        key,
        "SENTRYPEER_IGNORE_IP",
        &sources.cli.ignore_ip,
        sources.file.ignore_ip.as_ref(),
    )?;
    let texts = texts.unwrap_or_default();
    if texts.len() > limits::IGNORE_IP_ENTRIES_MAX {
        let problem = format!(
            "{} entries given, at most {} allowed",
            texts.len(),
            limits::IGNORE_IP_ENTRIES_MAX
        );
        return Err(ConfigError::Invalid { key, problem });
    }
    let nets = texts.iter().map(|text| {
        parse_cidr(text).ok_or_else(|| ConfigError::InvalidCidr {
            key,
            value: text.clone(),
        })
    });
    Ok(IgnoreList::new(nets.collect::<Result<Vec<_>, _>>()?))
}

fn resolve_reply_budget(sources: &Sources<'_>) -> Result<(u32, u32), ConfigError> {
    let (cli, file) = (sources.cli, sources.file);
    let rate = sources.number(
        "reply_rate",
        cli.reply_rate.as_ref(),
        file.reply_rate,
        (1, u64::from(limits::REPLY_RATE_PER_SECOND_MAX)),
    )?;
    let burst = sources.number(
        "reply_burst",
        cli.reply_burst.as_ref(),
        file.reply_burst,
        (1, u64::from(limits::REPLY_BURST_MAX)),
    )?;
    let rate = number_or(rate, u64::from(limits::REPLY_RATE_PER_SECOND));
    let burst = number_or(burst, u64::from(limits::REPLY_BURST));
    // Both were checked against u32 maxima above.
    Ok((as_u32(rate), as_u32(burst)))
}

/// The `--sip-challenge` realm: printable ASCII without `"` or `\\`, so it can be quoted as is.
fn resolve_sip_realm(sources: &Sources<'_>) -> Result<String, ConfigError> {
    let (cli, file) = (
        sources.cli.sip_realm.as_ref(),
        sources.file.sip_realm.as_ref(),
    );
    let text = sources.text("sip_realm", "SENTRYPEER_SIP_REALM", cli, file)?;
    let text = text.unwrap_or_else(|| defaults::SIP_REALM.to_owned());
    check_header_text("sip_realm", text, limits::SIP_REALM_BYTES_MAX, b"\"\\")
}

fn resolve_server_header(sources: &Sources<'_>) -> Result<String, ConfigError> {
    let (cli, file) = (
        sources.cli.server_header.as_ref(),
        sources.file.server_header.as_ref(),
    );
    let text = sources.text("server_header", "SENTRYPEER_SERVER_HEADER", cli, file)?;
    let text = text.unwrap_or_else(|| defaults::SERVER_HEADER.to_owned());
    check_header_text("server_header", text, limits::SERVER_HEADER_BYTES_MAX, b"")
}

/// A value that goes into a SIP header as is: not blank, at most `bytes_max` bytes, printable
/// ASCII without the `forbidden` bytes.
fn check_header_text(
    key: &'static str,
    text: String,
    bytes_max: usize,
    forbidden: &[u8],
) -> Result<String, ConfigError> {
    let problem = if text.trim().is_empty() {
        Some("must not be empty".to_owned())
    } else if text.len() > bytes_max {
        Some(format!("longer than {bytes_max} bytes"))
    } else if !text
        .bytes()
        .all(|byte| (0x20..0x7f).contains(&byte) && !forbidden.contains(&byte))
    {
        let without: Vec<String> = forbidden
            .iter()
            .map(|b| format!("'{}'", char::from(*b)))
            .collect();
        Some(if without.is_empty() {
            "only printable ASCII is allowed".to_owned()
        } else {
            format!(
                "only printable ASCII without {} is allowed",
                without.join(" or ")
            )
        })
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::Invalid { key, problem }),
        None => Ok(text),
    }
}

fn resolve_store(sources: &Sources<'_>) -> Result<StoreConfig, ConfigError> {
    let (cli, file) = (sources.cli, sources.file);
    let batch = sources.number(
        "writer_batch",
        cli.writer_batch.as_ref(),
        file.writer_batch,
        (1, limits::WRITER_BATCH_EVENTS_MAX as u64),
    )?;
    let interval_ms_max = u64::try_from(limits::WRITER_BATCH_INTERVAL_MAX.as_millis());
    let interval_ms = sources.number(
        "writer_interval_ms",
        cli.writer_interval_ms.as_ref(),
        file.writer_interval_ms,
        (1, interval_ms_max.unwrap_or(u64::MAX)),
    )?;
    let retention_days = sources.number(
        "retention_days",
        cli.retention_days.as_ref(),
        file.retention_days,
        (1, u64::from(limits::RETENTION_DAYS_MAX)),
    )?;
    Ok(StoreConfig {
        db_file: sources.path(
            "db_file",
            "SENTRYPEER_DB_FILE",
            cli.db_file.as_ref(),
            file.db_file.as_ref(),
            defaults::DB_FILE,
        ),
        batch_events_max: batch.map_or(limits::WRITER_BATCH_EVENTS_DEFAULT, as_usize),
        batch_interval: interval_ms.map_or(limits::WRITER_BATCH_INTERVAL, Duration::from_millis),
        no_sync: sources.flag("no_sync", cli.no_sync, file.no_sync),
        retention_days: retention_days.map(as_u32),
    })
}

fn resolve_output(sources: &Sources<'_>) -> Result<OutputConfig, ConfigError> {
    let (cli, file) = (sources.cli, sources.file);
    let named = sources.raw(
        "json_log_file",
        "SENTRYPEER_JSON_LOG_FILE",
        cli.json_log_file.as_ref(),
        file.json_log_file.as_ref().map(OsString::from),
    );
    let json_log = named.is_some() || sources.flag("json_log", cli.json_log, file.json_log);
    if named.as_deref().is_some_and(OsStr::is_empty) {
        let problem = "must not be empty".to_owned();
        return Err(ConfigError::Invalid {
            key: "json_log_file",
            problem,
        });
    }
    let path = named.map_or_else(|| PathBuf::from(defaults::JSON_LOG_FILE), PathBuf::from);
    Ok(OutputConfig {
        json_log_file: json_log.then_some(path),
        syslog: sources.flag("syslog", cli.syslog, file.syslog),
        syslog_socket: sources.path(
            "syslog_socket",
            "SENTRYPEER_SYSLOG_SOCKET",
            cli.syslog_socket.as_ref(),
            file.syslog_socket.as_ref(),
            defaults::SYSLOG_SOCKET,
        ),
        verified_only: sources.verified_only(),
    })
}

fn resolve_api(sources: &Sources<'_>) -> Result<ApiConfig, ConfigError> {
    let (cli, file) = (sources.cli, sources.file);
    let token = sources.text(
        "api_token",
        "SENTRYPEER_API_TOKEN",
        cli.api_token.as_ref(),
        file.api_token.as_ref(),
    )?;
    if token
        .as_deref()
        .is_some_and(|token| token.trim().is_empty())
    {
        let problem = "must not be empty".to_owned();
        return Err(ConfigError::Invalid {
            key: "api_token",
            problem,
        });
    }
    Ok(ApiConfig {
        enabled: sources.flag("api", cli.api, file.api),
        listen: sources.address(
            "api_listen",
            "SENTRYPEER_API_LISTEN_ADDRESS",
            cli.api_listen.as_ref(),
            file.api_listen.as_ref(),
            defaults::API_LISTEN_ADDRESS,
        )?,
        token: token.map(Secret::new),
        verified_only: sources.verified_only(),
    })
}

fn resolve_webhook(sources: &Sources<'_>) -> Result<Option<WebhookConfig>, ConfigError> {
    let (cli, file) = (sources.cli, sources.file);
    let text = |key, env_name, cli_value: &Option<OsString>, file_value: &Option<String>| {
        sources.text(key, env_name, cli_value.as_ref(), file_value.as_ref())
    };
    let url = text(
        "webhook_url",
        "SENTRYPEER_WEBHOOK_URL",
        &cli.webhook_url,
        &file.webhook_url,
    )?;
    let token_url = text(
        "oauth2_token_url",
        "SENTRYPEER_OAUTH2_TOKEN_URL",
        &cli.oauth2_token_url,
        &file.oauth2_token_url,
    )?;
    let token_url = check_url("oauth2_token_url", token_url.as_deref())?;
    let audience = text(
        "oauth2_audience",
        "SENTRYPEER_OAUTH2_AUDIENCE",
        &cli.oauth2_audience,
        &file.oauth2_audience,
    )?;
    let id_env = "SENTRYPEER_OAUTH2_CLIENT_ID";
    let id = text(
        "oauth2_client_id",
        id_env,
        &cli.oauth2_client_id,
        &file.oauth2_client_id,
    )?;
    let secret = text(
        "oauth2_client_secret",
        "SENTRYPEER_OAUTH2_CLIENT_SECRET",
        &cli.oauth2_client_secret,
        &file.oauth2_client_secret,
    )?;
    let batch_max = limits::WEBHOOK_BATCH_EVENTS_MAX as u64;
    let batch = sources.number(
        "webhook_batch",
        cli.webhook_batch.as_ref(),
        file.webhook_batch,
        (1, batch_max),
    )?;
    let Some(url) = url else { return Ok(None) };
    let url = check_url("webhook_url", Some(&url))?;
    match (&id, &secret) {
        (Some(_), None) => Err(ConfigError::Invalid {
            key: "oauth2_client_secret",
            problem: "required with oauth2_client_id".into(),
        }),
        (None, Some(_)) => Err(ConfigError::Invalid {
            key: "oauth2_client_id",
            problem: "required with oauth2_client_secret".into(),
        }),
        _ => Ok(Some(WebhookConfig {
            url,
            oauth2_client_id: id,
            oauth2_client_secret: secret.map(Secret::new),
            oauth2_token_url: token_url,
            oauth2_audience: audience.unwrap_or_else(|| defaults::OAUTH2_AUDIENCE.to_owned()),
            batch: batch.map(as_usize),
        })),
    }
}

fn resolve_p2p(sources: &Sources<'_>) -> Result<P2pConfig, ConfigError> {
    let (cli, file) = (sources.cli, sources.file);
    let bootstrap = sources.text(
        "bootstrap_node",
        "SENTRYPEER_BOOTSTRAP_NODE",
        cli.bootstrap_node.as_ref(),
        file.bootstrap_node.as_ref(),
    )?;
    Ok(P2pConfig {
        enabled: sources.flag("peer_to_peer", cli.peer_to_peer, file.peer_to_peer),
        listen: sources.address(
            "p2p_listen",
            "SENTRYPEER_P2P_LISTEN_ADDRESS",
            cli.p2p_listen.as_ref(),
            file.p2p_listen.as_ref(),
            defaults::P2P_LISTEN_ADDRESS,
        )?,
        bootstrap: parse_bootstrap(bootstrap.as_deref().unwrap_or(defaults::BOOTSTRAP_NODE))?,
        ignore_ip: resolve_ignore_ip(sources)?,
        verified_only: sources.verified_only(),
    })
}

/// `--geoip-db` and `--asn-db`: paths, not empty (whether they can be read is checked by the
/// caller, for the sensor only).
fn resolve_enrich(sources: &Sources<'_>) -> Result<EnrichConfig, ConfigError> {
    let (cli, file) = (sources.cli, sources.file);
    let path = |key: &'static str, env_name: &str, cli_value, file_value: Option<&String>| {
        let raw = sources.raw(key, env_name, cli_value, file_value.map(OsString::from));
        match raw {
            Some(raw) if raw.is_empty() => Err(ConfigError::Invalid {
                key,
                problem: "must not be empty".into(),
            }),
            raw => Ok(raw.map(PathBuf::from)),
        }
    };
    Ok(EnrichConfig {
        geoip_db: path(
            "geoip_db",
            "SENTRYPEER_GEOIP_DB",
            cli.geoip_db.as_ref(),
            file.geoip_db.as_ref(),
        )?,
        asn_db: path(
            "asn_db",
            "SENTRYPEER_ASN_DB",
            cli.asn_db.as_ref(),
            file.asn_db.as_ref(),
        )?,
    })
}

fn number_or(value: Option<u64>, default: u64) -> u64 {
    value.unwrap_or(default)
}

/// Values reaching here were range-checked against `usize` limits.
fn as_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Values reaching here were range-checked against `u32` limits.
fn as_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// A listen address: `IP:PORT`, IPv6 in brackets.
pub(crate) fn parse_address(key: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| ConfigError::InvalidAddress {
            key,
            value: text.to_owned(),
        })
}

/// A whole number in `min..=max`.
pub(crate) fn parse_number(
    key: &'static str,
    text: &str,
    (min, max): (u64, u64),
) -> Result<u64, ConfigError> {
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| ConfigError::InvalidNumber {
            key,
            value: text.to_owned(),
        })?;
    if value < min || value > max {
        return Err(ConfigError::OutOfRange {
            key,
            value,
            min,
            max,
        });
    }
    Ok(value)
}

/// An `http://` or `https://` URL with a host; `None` is the token URL's default.
fn check_url(key: &'static str, text: Option<&str>) -> Result<String, ConfigError> {
    let text = text.unwrap_or(defaults::OAUTH2_TOKEN_URL);
    let lower = text.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let problem = match rest {
        None => "must start with http:// or https://",
        Some(rest) if rest.is_empty() || rest.starts_with('/') => "has no host",
        Some(_) if text.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            "must not contain spaces or control characters"
        }
        Some(_) => return Ok(text.to_owned()),
    };
    Err(ConfigError::Invalid {
        key,
        problem: format!("\"{text}\" {problem}"),
    })
}

/// A bootstrap peer: a multiaddr (`/dns4/host/tcp/4222`, kept as given), `host:port`, or a bare
/// host, which gets the default port.
pub(crate) fn parse_bootstrap(text: &str) -> Result<String, ConfigError> {
    let key = "bootstrap_node";
    let invalid = |problem: &str| ConfigError::Invalid {
        key,
        problem: format!("\"{text}\" {problem}"),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("is not a host, host:port or multiaddr"));
    }
    if trimmed.starts_with('/') {
        let parts = trimmed
            .split('/')
            .skip(1)
            .filter(|part| !part.is_empty())
            .count();
        return if parts >= 2 {
            Ok(trimmed.to_owned())
        } else {
            Err(invalid("is not a multiaddr"))
        };
    }
    if let Ok(ip) = trimmed.parse::<Ipv6Addr>() {
        return Ok(format!("[{ip}]:{}", defaults::BOOTSTRAP_PORT));
    }
    if trimmed.parse::<SocketAddr>().is_ok() {
        return Ok(trimmed.to_owned());
    }
    let (host, port) = match trimmed.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (trimmed, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !host_ok {
        return Err(invalid("is not a host, host:port or multiaddr"));
    }
    match port {
        None => Ok(format!("{host}:{}", defaults::BOOTSTRAP_PORT)),
        Some(port) if port.parse::<u16>().is_ok_and(|port| port != 0) => Ok(trimmed.to_owned()),
        Some(_) => Err(invalid("has an invalid port")),
    }
}
