//! `load_from` end to end: command line, environment, config file, defaults, validation.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// Loads with `args` (without the program name) and exactly the environment `env`.
fn load_with(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, OsString> = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), OsString::from(value)))
        .collect();
    let lookup = move |name: &str| env.get(name).cloned();
    let args = std::iter::once("sentrypeer").chain(args.iter().copied());
    load_from(args, &lookup)
}

fn load_ok(args: &[&str], env: &[(&str, &str)]) -> Config {
    match load_with(args, env) {
        Ok(config) => config,
        Err(error) => panic!("load failed for {args:?} {env:?}: {error}"),
    }
}

fn load_err(args: &[&str], env: &[(&str, &str)]) -> String {
    match load_with(args, env) {
        Ok(config) => panic!("load succeeded for {args:?} {env:?}: {config:?}"),
        Err(error) => error.to_string(),
    }
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn config_defaults() {
    let config = load_ok(&[], &[]);
    assert_eq!(config.command, Command::Run);
    assert!(config.sensor.enabled);
    assert_eq!(config.sensor.listen, vec![addr("0.0.0.0:5060")]);
    assert_eq!(config.sensor.tls_listen, Some(addr("0.0.0.0:5061")));
    assert_eq!(config.sensor.tls_cert, PathBuf::from("./cert.pem"));
    assert_eq!(config.sensor.tls_key, PathBuf::from("./key.pem"));
    assert!(!config.sensor.responsive);
    assert!(config.sensor.cores >= 1);
    assert_eq!(config.sensor.cores, cores_online());
    assert_eq!(config.sensor.engine, EngineChoice::Auto);
    assert!(!config.sensor.force_probe_failure);
    assert_eq!(
        config.sensor.udp_rcvbuf_bytes,
        limits::UDP_RCVBUF_BYTES_DEFAULT
    );
    assert_eq!(config.sensor.tcp_idle_timeout, Duration::from_secs(30));
    assert_eq!(
        config.sensor.tls_handshake_timeout,
        limits::TLS_HANDSHAKE_TIMEOUT
    );
    assert_eq!(config.sensor.tcp_connections_per_ip_max, 64);
    assert_eq!(config.sensor.tcp_connections_per_shard_max, 10_000);
    assert_eq!(config.sensor.reply_rate_per_second, 10);
    assert_eq!(config.sensor.reply_burst, 20);
    assert_eq!(config.sensor.server_header, "FPBX-16.0.33(18.13.0)");
    assert_eq!(config.store.db_file, PathBuf::from("./sentrypeer.db"));
    assert_eq!(config.store.batch_events_max, 8_192);
    assert_eq!(config.store.batch_interval, Duration::from_millis(50));
    assert!(!config.store.no_sync);
    assert_eq!(config.store.retention_days, None);
    assert_eq!(
        config.output,
        OutputConfig {
            json_log_file: None,
            syslog: false,
            syslog_socket: PathBuf::from("/dev/log"),
            verified_only: false,
        }
    );
    assert!(!config.api.enabled);
    assert_eq!(config.api.listen, addr("0.0.0.0:8082"));
    assert_eq!(config.api.token, None);
    assert_eq!(config.webhook, None);
    assert_eq!(config.nats, None);
    assert!(!config.p2p.enabled);
    assert_eq!(config.p2p.listen, addr("0.0.0.0:4222"));
    assert_eq!(config.p2p.bootstrap, "bootstrap.sentrypeer.org:4222");
    assert!(!config.verbose);
    assert!(!config.debug);
}

/// Every presence-based boolean env var, with a check that it turned its feature on.
type FeatureCheck = fn(&Config) -> bool;
const BOOLEAN_ENV: [(&str, &str, FeatureCheck); 11] = [
    ("SENTRYPEER_JSON_LOG", "-j", |c| {
        c.output.json_log_file.is_some()
    }),
    ("SENTRYPEER_PEER_TO_PEER", "-p", |c| c.p2p.enabled),
    ("SENTRYPEER_API", "-a", |c| c.api.enabled),
    ("SENTRYPEER_SIP_RESPONSIVE", "-r", |c| c.sensor.responsive),
    ("SENTRYPEER_SIP_DISABLE", "-R", |c| !c.sensor.enabled),
    ("SENTRYPEER_TLS_DISABLE", "-N", |c| {
        c.sensor.tls_listen.is_none() && c.sensor.engine == EngineChoice::Portable
    }),
    ("SENTRYPEER_SYSLOG", "-s", |c| c.output.syslog),
    ("SENTRYPEER_VERBOSE", "-v", |c| c.verbose),
    ("SENTRYPEER_DEBUG", "-d", |c| c.debug),
    ("SENTRYPEER_NO_SYNC", "--no-sync", |c| c.store.no_sync),
    (
        "SENTRYPEER_DANGER_FORCE_PORTABLE_FALLBACK",
        "--danger-force-portable-fallback",
        |c| c.sensor.force_probe_failure,
    ),
];

#[test]
fn config_default_p2p_addresses_use_the_bootstrap_port() {
    let port = format!(":{}", defaults::BOOTSTRAP_PORT);
    assert!(defaults::BOOTSTRAP_NODE.ends_with(&port));
    assert!(defaults::P2P_LISTEN_ADDRESS.ends_with(&port));
}

#[test]
fn config_boolean_off_by_default() {
    let config = load_ok(&[], &[]);
    for (name, _, check) in BOOLEAN_ENV {
        assert!(!check(&config), "{name} on by default");
    }
}

#[test]
fn config_boolean_env_presence_turns_on() {
    for (name, _, check) in BOOLEAN_ENV {
        for value in ["1", "0", "", "false", "no", "anything"] {
            let config = load_ok(&[], &[(name, value)]);
            assert!(
                check(&config),
                "{name}={value:?} did not turn its feature on"
            );
        }
    }
}

#[test]
fn config_boolean_flag_turns_on() {
    for (name, flag, check) in BOOLEAN_ENV {
        assert!(
            check(&load_ok(&[flag], &[])),
            "{flag} ({name}) did not turn its feature on"
        );
    }
}

#[test]
fn config_boolean_file_key_turns_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = [
        ("json_log", 0),
        ("peer_to_peer", 1),
        ("api", 2),
        ("sip_responsive", 3),
        ("sip_disable", 4),
        ("tls_disable", 5),
        ("syslog", 6),
        ("verbose", 7),
        ("debug", 8),
        ("no_sync", 9),
        ("danger_force_portable_fallback", 10),
    ];
    for (key, index) in keys {
        let (name, _, check) = BOOLEAN_ENV[index];
        let on = write_file(dir.path(), "on.toml", &format!("{key} = true\n"));
        assert!(
            check(&load_ok(&["-g", path_str(&on)], &[])),
            "{key} = true ({name})"
        );
        let off = write_file(dir.path(), "off.toml", &format!("{key} = false\n"));
        assert!(
            !check(&load_ok(&["-g", path_str(&off)], &[])),
            "{key} = false ({name})"
        );
        // A `false` in the file does not turn off a flag.
        let (_, flag, _) = BOOLEAN_ENV[index];
        assert!(
            check(&load_ok(&["-g", path_str(&off), flag], &[])),
            "{flag} over {key} = false"
        );
    }
}

#[test]
fn config_p2p_file_alias() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(dir.path(), "c.toml", "p2p = true\n");
    assert!(load_ok(&["-g", path_str(&file)], &[]).p2p.enabled);
}

#[test]
fn config_short_flags_bundle() {
    let config = load_ok(&["-ras"], &[]);
    assert!(config.sensor.responsive && config.api.enabled && config.output.syslog);
    let config = load_ok(&["-jar"], &[]);
    assert!(config.output.json_log_file.is_some());
    assert!(config.api.enabled && config.sensor.responsive);
    let config = load_ok(&["-NRvd"], &[]);
    assert!(config.sensor.tls_listen.is_none() && !config.sensor.enabled);
    assert!(config.verbose && config.debug);
}

#[test]
fn config_precedence_cli_over_env_over_file_over_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(
        dir.path(),
        "c.toml",
        "db_file = \"file.db\"\ncores = 3\napi_listen = \"127.0.0.3:3\"\n",
    );
    let g = path_str(&file);
    let env = [
        ("SENTRYPEER_DB_FILE", "env.db"),
        ("SENTRYPEER_CORES", "2"),
        ("SENTRYPEER_API_LISTEN_ADDRESS", "127.0.0.2:2"),
    ];
    let cli = [
        "-g",
        g,
        "-f",
        "cli.db",
        "--cores",
        "1",
        "--api-listen",
        "127.0.0.1:1",
    ];
    let config = load_ok(&cli, &env);
    assert_eq!(config.store.db_file, PathBuf::from("cli.db"));
    assert_eq!(config.sensor.cores, 1);
    assert_eq!(config.api.listen, addr("127.0.0.1:1"));
    let config = load_ok(&["-g", g], &env);
    assert_eq!(config.store.db_file, PathBuf::from("env.db"));
    assert_eq!(config.sensor.cores, 2);
    assert_eq!(config.api.listen, addr("127.0.0.2:2"));
    let config = load_ok(&["-g", g], &[]);
    assert_eq!(config.store.db_file, PathBuf::from("file.db"));
    assert_eq!(config.sensor.cores, 3);
    assert_eq!(config.api.listen, addr("127.0.0.3:3"));
}

#[test]
fn config_env_empty_value_ignored_for_valued_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(dir.path(), "c.toml", "db_file = \"file.db\"\n");
    let config = load_ok(&["-g", path_str(&file)], &[("SENTRYPEER_DB_FILE", "")]);
    assert_eq!(config.store.db_file, PathBuf::from("file.db"));
    let config = load_ok(
        &[],
        &[
            ("SENTRYPEER_CORES", ""),
            ("SENTRYPEER_SIP_LISTEN_ADDRESS", ""),
        ],
    );
    assert_eq!(config.sensor.listen, vec![addr("0.0.0.0:5060")]);
}

#[test]
fn config_env_every_valued_setting() {
    let env = [
        ("SENTRYPEER_DB_FILE", "e.db"),
        ("SENTRYPEER_JSON_LOG_FILE", "e.log"),
        ("SENTRYPEER_BOOTSTRAP_NODE", "peer.example.org:5000"),
        ("SENTRYPEER_OAUTH2_CLIENT_ID", "id"),
        ("SENTRYPEER_OAUTH2_CLIENT_SECRET", "secret"),
        ("SENTRYPEER_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
        ("SENTRYPEER_CERT", "e-cert.pem"),
        ("SENTRYPEER_KEY", "e-key.pem"),
        ("SENTRYPEER_TLS_LISTEN_ADDRESS", "[::1]:5061"),
        (
            "SENTRYPEER_SIP_LISTEN_ADDRESS",
            "127.0.0.1:5060, [::1]:5060",
        ),
        ("SENTRYPEER_API_LISTEN_ADDRESS", "127.0.0.1:8082"),
        ("SENTRYPEER_P2P_LISTEN_ADDRESS", "127.0.0.1:4222"),
        ("SENTRYPEER_CORES", "1"),
        ("SENTRYPEER_OAUTH2_TOKEN_URL", "https://127.0.0.1/token"),
        ("SENTRYPEER_OAUTH2_AUDIENCE", "aud"),
        ("SENTRYPEER_UDP_RCVBUF", "65536"),
        ("SENTRYPEER_TCP_IDLE_TIMEOUT", "5"),
        ("SENTRYPEER_TCP_CONNECTIONS_PER_IP", "4"),
        ("SENTRYPEER_TCP_CONNECTIONS_PER_CORE", "100"),
        ("SENTRYPEER_REPLY_RATE", "3"),
        ("SENTRYPEER_REPLY_BURST", "6"),
        ("SENTRYPEER_SERVER_HEADER", "Asterisk PBX"),
        ("SENTRYPEER_WRITER_BATCH", "8"),
        ("SENTRYPEER_WRITER_INTERVAL_MS", "7"),
        ("SENTRYPEER_RETENTION_DAYS", "30"),
        ("SENTRYPEER_API_TOKEN", "token"),
        ("SENTRYPEER_WEBHOOK_BATCH", "10"),
    ];
    let c = load_ok(&[], &env);
    assert_eq!(c.store.db_file, PathBuf::from("e.db"));
    assert_eq!(c.output.json_log_file, Some(PathBuf::from("e.log")));
    assert_eq!(c.p2p.bootstrap, "peer.example.org:5000");
    assert_eq!(c.sensor.tls_cert, PathBuf::from("e-cert.pem"));
    assert_eq!(c.sensor.tls_key, PathBuf::from("e-key.pem"));
    assert_eq!(c.sensor.tls_listen, Some(addr("[::1]:5061")));
    assert_eq!(
        c.sensor.listen,
        vec![addr("127.0.0.1:5060"), addr("[::1]:5060")]
    );
    assert_eq!(c.api.listen, addr("127.0.0.1:8082"));
    assert_eq!(c.p2p.listen, addr("127.0.0.1:4222"));
    assert_eq!(c.sensor.cores, 1);
    assert_eq!(c.sensor.udp_rcvbuf_bytes, 65_536);
    assert_eq!(c.sensor.tcp_idle_timeout, Duration::from_secs(5));
    assert_eq!(c.sensor.tcp_connections_per_ip_max, 4);
    assert_eq!(c.sensor.tcp_connections_per_shard_max, 100);
    assert_eq!(
        (c.sensor.reply_rate_per_second, c.sensor.reply_burst),
        (3, 6)
    );
    assert_eq!(c.sensor.server_header, "Asterisk PBX");
    assert_eq!(c.store.batch_events_max, 8);
    assert_eq!(c.store.batch_interval, Duration::from_millis(7));
    assert_eq!(c.store.retention_days, Some(30));
    assert_eq!(c.api.token.as_ref().map(Secret::expose), Some("token"));
    let webhook = c.webhook.expect("webhook on");
    assert_eq!(webhook.url, "http://127.0.0.1:9/hook");
    assert_eq!(webhook.oauth2_client_id.as_deref(), Some("id"));
    assert_eq!(
        webhook.oauth2_client_secret.as_ref().map(Secret::expose),
        Some("secret")
    );
    assert_eq!(webhook.oauth2_token_url, "https://127.0.0.1/token");
    assert_eq!(webhook.oauth2_audience, "aud");
    assert_eq!(webhook.batch, Some(10));
}

#[test]
fn config_file_every_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = r#"
db_file = "f.db"
json_log_file = "f.log"
bootstrap_node = "/dns4/peer.example.org/tcp/4222"
oauth2_client_id = "id"
oauth2_client_secret = "secret"
webhook_url = "https://127.0.0.1/hook"
cert = "f-cert.pem"
key = "f-key.pem"
tls_listen_address = "127.0.0.1:5061"
sip_listen = ["127.0.0.1:5060", "127.0.0.2:5060"]
ignore_ip = "192.0.2.1"
api_listen = "127.0.0.1:8082"
p2p_listen = "127.0.0.1:4222"
cores = 1
oauth2_token_url = "https://127.0.0.1/token"
oauth2_audience = "aud"
udp_rcvbuf = 4096
tcp_idle_timeout = 9
tcp_connections_per_ip = 2
tcp_connections_per_core = 3
reply_rate = 4
reply_burst = 5
server_header = "X"
writer_batch = 6
writer_interval_ms = 7
retention_days = 8
api_token = "token"
webhook_batch = 9
"#;
    let file = write_file(dir.path(), "c.toml", text);
    let c = load_ok(&["-g", path_str(&file)], &[]);
    assert_eq!(c.store.db_file, PathBuf::from("f.db"));
    assert_eq!(c.output.json_log_file, Some(PathBuf::from("f.log")));
    assert_eq!(c.p2p.bootstrap, "/dns4/peer.example.org/tcp/4222");
    assert_eq!(c.sensor.tls_cert, PathBuf::from("f-cert.pem"));
    assert_eq!(c.sensor.tls_key, PathBuf::from("f-key.pem"));
    assert_eq!(c.sensor.tls_listen, Some(addr("127.0.0.1:5061")));
    assert_eq!(
        c.sensor.listen,
        vec![addr("127.0.0.1:5060"), addr("127.0.0.2:5060")]
    );
    assert_eq!(ignored(&c), ["192.0.2.1/32"]);
    assert_eq!(c.sensor.cores, 1);
    assert_eq!(c.sensor.udp_rcvbuf_bytes, 4_096);
    assert_eq!(c.sensor.tcp_idle_timeout, Duration::from_secs(9));
    assert_eq!(c.sensor.tcp_connections_per_ip_max, 2);
    assert_eq!(c.sensor.tcp_connections_per_shard_max, 3);
    assert_eq!(
        (c.sensor.reply_rate_per_second, c.sensor.reply_burst),
        (4, 5)
    );
    assert_eq!(c.sensor.server_header, "X");
    assert_eq!(c.store.batch_events_max, 6);
    assert_eq!(c.store.batch_interval, Duration::from_millis(7));
    assert_eq!(c.store.retention_days, Some(8));
    assert_eq!(c.api.token.as_ref().map(Secret::expose), Some("token"));
    let webhook = c.webhook.expect("webhook on");
    assert_eq!(
        webhook.oauth2_client_secret.as_ref().map(Secret::expose),
        Some("secret")
    );
    assert_eq!(webhook.batch, Some(9));
}

#[test]
fn config_sip_listen_repeatable_and_comma_separated() {
    let args = [
        "--sip-listen",
        "127.0.0.1:5060",
        "--sip-listen",
        "[::1]:5070",
    ];
    let config = load_ok(&args, &[("SENTRYPEER_SIP_LISTEN_ADDRESS", "127.0.0.9:9")]);
    assert_eq!(
        config.sensor.listen,
        vec![addr("127.0.0.1:5060"), addr("[::1]:5070")]
    );
    let config = load_ok(&["--sip-listen", "127.0.0.1:1,127.0.0.1:2"], &[]);
    assert_eq!(
        config.sensor.listen,
        vec![addr("127.0.0.1:1"), addr("127.0.0.1:2")]
    );
}

#[test]
fn config_sip_listen_errors() {
    let error = load_err(&["--sip-listen", "x"], &[]);
    assert_eq!(error, "invalid listen address \"x\" for sip_listen");
    let error = load_err(&[], &[("SENTRYPEER_SIP_LISTEN_ADDRESS", "127.0.0.1:1,,")]);
    assert_eq!(error, "invalid listen address \"\" for sip_listen");
    let error = load_err(
        &["--sip-listen", "127.0.0.1:1", "--sip-listen", "127.0.0.1:1"],
        &[],
    );
    assert!(error.contains("given twice"), "{error}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(dir.path(), "c.toml", "sip_listen = []\n");
    let error = load_err(&["-g", path_str(&file)], &[]);
    assert_eq!(error, "invalid sip_listen: no listen address given");
}

fn ignored(config: &Config) -> Vec<String> {
    assert_eq!(config.sensor.ignore_ip, config.p2p.ignore_ip);
    let nets = config.sensor.ignore_ip.nets().iter();
    nets.map(ToString::to_string).collect()
}

#[test]
fn config_ignore_ip_empty_by_default() {
    let config = load_ok(&[], &[]);
    assert!(config.sensor.ignore_ip.is_empty());
    assert!(config.p2p.ignore_ip.is_empty());
}

#[test]
fn config_ignore_ip_repeatable_bare_ips_and_ipv6() {
    let args = [
        "--ignore-ip",
        "192.0.2.0/24",
        "--ignore-ip",
        "198.51.100.7",
        "--ignore-ip",
        "2001:db8::/32,2001:db8:1::9",
    ];
    let config = load_ok(&args, &[]);
    assert_eq!(
        ignored(&config),
        [
            "192.0.2.0/24",
            "198.51.100.7/32",
            "2001:db8::/32",
            "2001:db8:1::9/128"
        ]
    );
    assert!(
        config
            .sensor
            .ignore_ip
            .contains("192.0.2.200".parse().unwrap())
    );
    assert!(
        !config
            .sensor
            .ignore_ip
            .contains("192.0.3.1".parse().unwrap())
    );
}

#[test]
fn config_ignore_ip_env_comma_list_and_file_string_or_array() {
    let env = [("SENTRYPEER_IGNORE_IP", "10.0.0.0/8, 127.0.0.77 ,::1")];
    let config = load_ok(&[], &env);
    assert_eq!(ignored(&config), ["10.0.0.0/8", "127.0.0.77/32", "::1/128"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let one = write_file(dir.path(), "one.toml", "ignore_ip = \"10.1.0.0/16\"\n");
    let config = load_ok(&["-g", path_str(&one)], &[]);
    assert_eq!(ignored(&config), ["10.1.0.0/16"]);
    let many = write_file(
        dir.path(),
        "many.toml",
        "ignore_ip = [\"10.2.0.0/16\", \"fd00::/8\"]\n",
    );
    let config = load_ok(&["-g", path_str(&many)], &[]);
    assert_eq!(ignored(&config), ["10.2.0.0/16", "fd00::/8"]);
    let empty = write_file(dir.path(), "empty.toml", "ignore_ip = []\n");
    assert!(ignored(&load_ok(&["-g", path_str(&empty)], &[])).is_empty());
}

#[test]
fn config_ignore_ip_precedence_cli_over_env_over_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(dir.path(), "c.toml", "ignore_ip = [\"10.3.0.0/16\"]\n");
    let g = path_str(&file);
    let env = [("SENTRYPEER_IGNORE_IP", "10.2.0.0/16")];
    let config = load_ok(&["-g", g, "--ignore-ip", "10.1.0.0/16"], &env);
    assert_eq!(ignored(&config), ["10.1.0.0/16"]);
    assert_eq!(ignored(&load_ok(&["-g", g], &env)), ["10.2.0.0/16"]);
    // An empty environment value is unset: the file's list holds.
    let empty_env = [("SENTRYPEER_IGNORE_IP", "")];
    assert_eq!(ignored(&load_ok(&["-g", g], &empty_env)), ["10.3.0.0/16"]);
}

#[test]
fn config_ignore_ip_errors_name_the_value() {
    for bad in ["x", "10.0.0.0/33", "::/129", "10.0.0.1/", "host.example"] {
        let error = load_err(&["--ignore-ip", bad], &[]);
        assert_eq!(error, format!("invalid CIDR \"{bad}\" for ignore_ip"));
    }
    let error = load_err(&[], &[("SENTRYPEER_IGNORE_IP", "10.0.0.0/8,,")]);
    assert_eq!(error, "invalid CIDR \"\" for ignore_ip");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(
        dir.path(),
        "c.toml",
        "ignore_ip = [\"10.0.0.0/8\", \"y\"]\n",
    );
    let error = load_err(&["-g", path_str(&file)], &[]);
    assert_eq!(error, "invalid CIDR \"y\" for ignore_ip");
}

#[test]
fn config_ignore_ip_bounded() {
    let at_max: Vec<String> = (0..limits::IGNORE_IP_ENTRIES_MAX)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let env_value = at_max.join(",");
    let config = load_ok(&[], &[("SENTRYPEER_IGNORE_IP", &env_value)]);
    assert_eq!(
        config.sensor.ignore_ip.nets().len(),
        limits::IGNORE_IP_ENTRIES_MAX
    );
    let over = format!("{env_value},192.0.2.1");
    let error = load_err(&[], &[("SENTRYPEER_IGNORE_IP", &over)]);
    assert_eq!(
        error,
        format!(
            "invalid ignore_ip: {} entries given, at most {} allowed",
            limits::IGNORE_IP_ENTRIES_MAX + 1,
            limits::IGNORE_IP_ENTRIES_MAX
        )
    );
}

#[test]
fn config_address_errors_name_the_setting() {
    let cases = [
        (&["-z", "nope"][..], "tls_listen_address"),
        (&["--api-listen", "127.0.0.1"][..], "api_listen"),
        (&["--p2p-listen", "host:4222"][..], "p2p_listen"),
    ];
    for (args, key) in cases {
        let error = load_err(args, &[]);
        assert_eq!(
            error,
            format!("invalid listen address \"{}\" for {key}", args[1])
        );
    }
    let error = load_err(&[], &[("SENTRYPEER_API_LISTEN_ADDRESS", "::1:80")]);
    assert_eq!(error, "invalid listen address \"::1:80\" for api_listen");
}

#[test]
fn config_tls_disable_portable_and_no_tls() {
    let config = load_ok(&["-N", "-z", "127.0.0.1:5061"], &[]);
    assert_eq!(config.sensor.tls_listen, None);
    assert_eq!(config.sensor.engine, EngineChoice::Portable);
}

#[test]
fn config_json_log_file_turns_json_log_on() {
    let on = |config: Config| config.output.json_log_file;
    assert_eq!(
        on(load_ok(&["-l", "a.log"], &[])),
        Some(PathBuf::from("a.log"))
    );
    let env = [("SENTRYPEER_JSON_LOG_FILE", "b.log")];
    assert_eq!(on(load_ok(&[], &env)), Some(PathBuf::from("b.log")));
    assert_eq!(
        on(load_ok(&["-j"], &[])),
        Some(PathBuf::from("./sentrypeer_json.log"))
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(dir.path(), "c.toml", "json_log_file = \"c.log\"\n");
    assert_eq!(
        on(load_ok(&["-g", path_str(&file)], &[])),
        Some(PathBuf::from("c.log"))
    );
}

#[test]
fn config_json_log_file_directory_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing").join("x.log");
    let error = load_err(&["-l", path_str(&missing)], &[]);
    assert!(error.starts_with("invalid json_log_file \""), "{error}");
    assert!(error.ends_with("does not exist"), "{error}");
    let error = load_err(&["-l", path_str(dir.path())], &[]);
    assert!(error.ends_with("is a directory"), "{error}");
    let fine = dir.path().join("x.log");
    let config = load_ok(&["-l", path_str(&fine)], &[]);
    assert_eq!(config.output.json_log_file, Some(fine.clone()));
    assert!(!fine.exists(), "config must not create the log file");
    // Not checked by the subcommands, which do not write it.
    let config = load_ok(&["-l", path_str(&missing), "stats"], &[]);
    assert_eq!(config.command, Command::Stats);
    // Not checked while the JSON log is off.
    let env = [("SENTRYPEER_JSON_LOG_FILE", "")];
    assert_eq!(load_ok(&[], &env).output.json_log_file, None);
}

#[test]
fn config_numbers_at_and_over_their_bounds() {
    let cases: [(&str, u64, u64); 11] = [
        ("--cores", 1, limits::SENSOR_CORES_MAX as u64),
        ("--udp-rcvbuf", 1, limits::UDP_RCVBUF_BYTES_MAX as u64),
        (
            "--tcp-idle-timeout",
            1,
            limits::TCP_IDLE_TIMEOUT_MAX.as_secs(),
        ),
        (
            "--tcp-connections-per-ip",
            1,
            limits::TCP_CONNECTIONS_PER_SHARD_MAX as u64,
        ),
        (
            "--tcp-connections-per-core",
            1,
            limits::TCP_CONNECTIONS_PER_SHARD_MAX as u64,
        ),
        (
            "--reply-rate",
            1,
            u64::from(limits::REPLY_RATE_PER_SECOND_MAX),
        ),
        ("--reply-burst", 1, u64::from(limits::REPLY_BURST_MAX)),
        ("--writer-batch", 1, limits::WRITER_BATCH_EVENTS_MAX as u64),
        ("--writer-interval-ms", 1, 10_000),
        ("--retention-days", 1, u64::from(limits::RETENTION_DAYS_MAX)),
        (
            "--webhook-batch",
            1,
            limits::WEBHOOK_BATCH_EVENTS_MAX as u64,
        ),
    ];
    for (flag, min, max) in cases {
        let key = flag.trim_start_matches("--").replace('-', "_");
        for ok in [min, max] {
            let value = ok.to_string();
            load_ok(&[flag, &value, "-w", "http://127.0.0.1/"], &[]);
        }
        for bad in [min - 1, max + 1] {
            let value = bad.to_string();
            let error = load_err(&[flag, &value, "-w", "http://127.0.0.1/"], &[]);
            assert_eq!(
                error,
                format!("{key} {bad} is out of range ({min} to {max})")
            );
        }
        let error = load_err(&[flag, "ten"], &[]);
        assert_eq!(error, format!("invalid number \"ten\" for {key}"));
        let error = load_err(&[flag, "-1"], &[]);
        assert!(
            error.contains(&key) || error.contains("unexpected argument"),
            "{error}"
        );
    }
}

#[test]
fn config_numbers_from_file_and_env_checked() {
    let error = load_err(&[], &[("SENTRYPEER_CORES", "0")]);
    assert_eq!(
        error,
        format!(
            "cores 0 is out of range (1 to {})",
            limits::SENSOR_CORES_MAX
        )
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(dir.path(), "c.toml", "writer_batch = 65537\n");
    let error = load_err(&["-g", path_str(&file)], &[]);
    assert_eq!(error, "writer_batch 65537 is out of range (1 to 65536)");
    let file = write_file(dir.path(), "c.toml", "cores = -2\n");
    assert_eq!(
        load_err(&["-g", path_str(&file)], &[]),
        "invalid number \"-2\" for cores"
    );
}

#[test]
fn config_connections_per_ip_follows_per_core() {
    let config = load_ok(&["--tcp-connections-per-core", "10"], &[]);
    assert_eq!(config.sensor.tcp_connections_per_ip_max, 10);
    let error = load_err(
        &[
            "--tcp-connections-per-core",
            "10",
            "--tcp-connections-per-ip",
            "11",
        ],
        &[],
    );
    assert_eq!(error, "tcp_connections_per_ip 11 is out of range (1 to 10)");
}

#[test]
fn config_server_header_checked() {
    assert!(load_err(&["--server-header", "a\r\nX-Evil: 1"], &[]).contains("printable ASCII"));
    assert!(load_err(&["--server-header", " "], &[]).contains("must not be empty"));
    let long = "x".repeat(limits::SERVER_HEADER_BYTES_MAX + 1);
    assert!(load_err(&["--server-header", &long], &[]).contains("longer than"));
    let exact = "x".repeat(limits::SERVER_HEADER_BYTES_MAX);
    assert_eq!(
        load_ok(&["--server-header", &exact], &[])
            .sensor
            .server_header,
        exact
    );
}

#[test]
fn config_bootstrap_forms() {
    let cases = [
        ("peer.example.org", "peer.example.org:4222"),
        ("peer.example.org:5000", "peer.example.org:5000"),
        ("192.0.2.1", "192.0.2.1:4222"),
        ("192.0.2.1:1", "192.0.2.1:1"),
        ("::1", "[::1]:4222"),
        ("[::1]:5", "[::1]:5"),
        ("/ip4/192.0.2.1/tcp/4222", "/ip4/192.0.2.1/tcp/4222"),
    ];
    for (given, stored) in cases {
        assert_eq!(
            load_ok(&["-b", given], &[]).p2p.bootstrap,
            stored,
            "{given}"
        );
    }
    for bad in ["", "host:0", "host:99999", "ho st", "/", "a:b:c", "host:"] {
        let error = load_err(&["-b", bad], &[]);
        assert!(
            error.starts_with("invalid bootstrap_node: "),
            "{bad}: {error}"
        );
    }
}

#[test]
fn config_webhook_checked() {
    let error = load_err(&["-w", "ftp://example.org/"], &[]);
    assert_eq!(
        error,
        "invalid webhook_url: \"ftp://example.org/\" must start with http:// or https://"
    );
    assert!(load_err(&["-w", "http://"], &[]).contains("has no host"));
    let error = load_err(&["-w", "http://127.0.0.1/", "-i", "id"], &[]);
    assert_eq!(
        error,
        "invalid oauth2_client_secret: required with oauth2_client_id"
    );
    let error = load_err(&["-w", "http://127.0.0.1/", "-c", "s3cr3t-value"], &[]);
    assert_eq!(
        error,
        "invalid oauth2_client_id: required with oauth2_client_secret"
    );
    assert!(!error.contains("s3cr3t-value"));
    // Without -w, the OAuth2 settings are unused and the webhook stays off.
    assert_eq!(load_ok(&["-i", "id"], &[]).webhook, None);
    let error = load_err(&["--oauth2-token-url", "token"], &[]);
    assert!(error.starts_with("invalid oauth2_token_url: "), "{error}");
}

#[test]
fn config_secrets_redacted_in_debug() {
    let args = [
        "-w",
        "http://127.0.0.1/",
        "-i",
        "id",
        "-c",
        "client-s3cret",
        "--api-token",
        "api-t0ken",
    ];
    let config = load_ok(&args, &[]);
    let shown = format!("{config:?} {config:#?}");
    assert!(!shown.contains("client-s3cret"), "{shown}");
    assert!(!shown.contains("api-t0ken"), "{shown}");
    assert!(shown.contains("<redacted>"));
    assert!(load_err(&["--api-token", ""], &[]).contains("api_token: must not be empty"));
}

#[test]
fn config_file_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    let error = load_with(&["-g", path_str(&missing)], &[]).expect_err("missing file");
    assert!(
        matches!(error, ConfigError::ConfigFileRead { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(path_str(&missing)), "{error}");
    let env = [("SENTRYPEER_CONFIG_FILE", path_str(&missing))];
    assert!(load_err(&[], &env).contains(path_str(&missing)));

    let invalid = write_file(dir.path(), "invalid.toml", "db_file = [\n");
    let error = load_err(&["-g", path_str(&invalid)], &[]);
    assert!(error.starts_with(&format!(
        "invalid config file \"{}\": line",
        path_str(&invalid)
    )));
    assert!(!error.contains('\n'), "{error}");

    let unknown = write_file(
        dir.path(),
        "unknown.toml",
        "api = true\nsip_udp_port = 5060\n",
    );
    let error = load_err(&["-g", path_str(&unknown)], &[]);
    assert!(
        error.contains(path_str(&unknown)) && error.contains("sip_udp_port"),
        "{error}"
    );
}

#[test]
fn config_default_file_in_home_only_if_present() {
    let home = tempfile::tempdir().expect("tempdir");
    let home_str = path_str(home.path());
    assert_eq!(
        load_ok(&[], &[("HOME", home_str)]).store.db_file,
        PathBuf::from("./sentrypeer.db")
    );
    let dir = home.path().join(".config/sentrypeer");
    std::fs::create_dir_all(&dir).expect("mkdir");
    write_file(&dir, "default-config.toml", "db_file = \"home.db\"\n");
    assert_eq!(
        load_ok(&[], &[("HOME", home_str)]).store.db_file,
        PathBuf::from("home.db")
    );
    // A named file replaces the default one.
    let other = write_file(home.path(), "other.toml", "");
    let config = load_ok(&["-g", path_str(&other)], &[("HOME", home_str)]);
    assert_eq!(config.store.db_file, PathBuf::from("./sentrypeer.db"));
    // The default file is checked like any other once it exists.
    write_file(&dir, "default-config.toml", "nope = 1\n");
    assert!(load_err(&[], &[("HOME", home_str)]).contains("nope"));
}

#[test]
fn config_subcommands() {
    assert_eq!(load_ok(&["stats"], &[]).command, Command::Stats);
    let config = load_ok(
        &["export", "--format", "csv", "-f", "x.db", "-o", "out.csv"],
        &[],
    );
    let expected = Command::Export {
        format: ExportFormat::Csv,
        output: Some(PathBuf::from("out.csv")),
    };
    assert_eq!(config.command, expected);
    assert_eq!(config.store.db_file, PathBuf::from("x.db"));
    let config = load_ok(&["-f", "y.db", "export", "--format", "sqlite"], &[]);
    assert_eq!(
        config.command,
        Command::Export {
            format: ExportFormat::Sqlite,
            output: None
        }
    );
    assert_eq!(config.store.db_file, PathBuf::from("y.db"));
    let config = load_ok(&["stats"], &[("SENTRYPEER_DB_FILE", "env.db")]);
    assert_eq!(config.store.db_file, PathBuf::from("env.db"));
    let config = load_ok(&["export", "--format", "jsonl"], &[]);
    assert_eq!(
        config.command,
        Command::Export {
            format: ExportFormat::Jsonl,
            output: None
        }
    );
    assert!(matches!(
        load_with(&["export", "--format", "xml"], &[]),
        Err(ConfigError::Usage(_))
    ));
    assert!(matches!(
        load_with(&["export"], &[]),
        Err(ConfigError::Usage(_))
    ));
}

#[test]
fn config_usage_help_version_are_clap_errors() {
    use clap::error::ErrorKind;
    let kind = |args: &[&str]| match load_with(args, &[]) {
        Err(ConfigError::Usage(error)) => error.kind(),
        other => panic!("{args:?}: {other:?}"),
    };
    assert_eq!(kind(&["-h"]), ErrorKind::DisplayHelp);
    assert_eq!(kind(&["-V"]), ErrorKind::DisplayVersion);
    assert_eq!(kind(&["--bogus"]), ErrorKind::UnknownArgument);
    assert_eq!(kind(&["-x"]), ErrorKind::UnknownArgument);
    assert_eq!(kind(&["-f"]), ErrorKind::InvalidValue);
}

#[test]
fn config_not_unicode_env_value() {
    use std::os::unix::ffi::OsStringExt;
    let lookup = |name: &str| {
        (name == "SENTRYPEER_BOOTSTRAP_NODE").then(|| OsString::from_vec(vec![0x66, 0xff]))
    };
    let error = load_from(["sentrypeer"], &lookup).expect_err("not unicode");
    assert_eq!(
        error.to_string(),
        "the value of bootstrap_node is not valid UTF-8"
    );
}

#[test]
fn command_definition_is_valid() {
    command().debug_assert();
    let help = command().render_help().to_string();
    assert!(
        help.starts_with("Protect your SIP Servers from bad actors\n"),
        "{help}"
    );
    assert!(!help.contains("danger"), "hidden flag shown: {help}");
}

#[test]
fn config_syslog_socket_sources_and_hidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(dir.path(), "c.toml", "syslog_socket = \"/f/log\"\n");
    let socket = |config: Config| config.output.syslog_socket;
    assert_eq!(socket(load_ok(&[], &[])), PathBuf::from("/dev/log"));
    assert_eq!(
        socket(load_ok(&["-g", path_str(&file)], &[])),
        PathBuf::from("/f/log")
    );
    let env = [("SENTRYPEER_SYSLOG_SOCKET", "/e/log")];
    assert_eq!(
        socket(load_ok(&["-g", path_str(&file)], &env)),
        PathBuf::from("/e/log")
    );
    assert_eq!(
        socket(load_ok(&["--syslog-socket", "/c/log"], &env)),
        PathBuf::from("/c/log")
    );
    let help = command().render_long_help().to_string();
    assert!(
        !help.contains("syslog-socket"),
        "hidden option shown: {help}"
    );
    assert!(!help.contains("SYSLOG_SOCKET"), "hidden env shown: {help}");
}

#[test]
fn config_sip_challenge_implies_responsive_and_realm_defaults() {
    let config = load_ok(&[], &[]);
    assert!(!config.sensor.sip_challenge && !config.sensor.responsive);
    assert_eq!(config.sensor.sip_realm, "asterisk");
    let config = load_ok(&["--sip-challenge", "--sip-realm", "pbx.example.com"], &[]);
    assert!(config.sensor.sip_challenge && config.sensor.responsive);
    assert_eq!(config.sensor.sip_realm, "pbx.example.com");
    let config = load_ok(&[], &[("SENTRYPEER_SIP_CHALLENGE", "")]);
    assert!(config.sensor.sip_challenge && config.sensor.responsive);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(
        dir.path(),
        "c.toml",
        "sip_challenge = true\nsip_realm = \"corp\"\n",
    );
    let config = load_ok(&["-g", path_str(&file)], &[]);
    assert!(config.sensor.sip_challenge && config.sensor.responsive);
    assert_eq!(config.sensor.sip_realm, "corp");
}

#[test]
fn config_sip_realm_rejects_what_cannot_be_quoted() {
    let long = "r".repeat(limits::SIP_REALM_BYTES_MAX + 1);
    for bad in ["", " ", "a\"b", "a\\b", "caf\u{e9}", long.as_str()] {
        let error = load_err(&["--sip-realm", bad], &[]);
        assert!(error.starts_with("invalid sip_realm: "), "{bad:?}: {error}");
    }
}

#[test]
fn config_verified_only_reaches_every_part_that_acts() {
    let config = load_ok(&[], &[]);
    assert!(!config.output.verified_only && !config.api.verified_only);
    assert!(!config.p2p.verified_only);
    for config in [
        load_ok(&["--verified-only"], &[]),
        load_ok(&[], &[("SENTRYPEER_VERIFIED_ONLY", "0")]),
    ] {
        assert!(config.output.verified_only && config.api.verified_only);
        assert!(config.p2p.verified_only);
    }
}

#[test]
fn config_top_subcommand_url_and_token() {
    let top = |url: &str| Command::Top {
        api_url: url.to_owned(),
        panic_after_first_draw: false,
    };
    let config = load_ok(&["top"], &[]);
    assert_eq!(config.command, top(defaults::TOP_API_URL));
    assert_eq!(config.api.token, None);
    let config = load_ok(&["top", "--api", "http://127.0.0.1:9"], &[]);
    assert_eq!(config.command, top("http://127.0.0.1:9"));
    // The token follows the API's rules: flag (before or after `top`) > env > config file.
    let secret = |text: &str| Some(Secret::new(text.to_owned()));
    let config = load_ok(
        &["top", "--api-token", "flag"],
        &[("SENTRYPEER_API_TOKEN", "env")],
    );
    assert_eq!(config.api.token, secret("flag"));
    let config = load_ok(&["--api-token", "flag", "top"], &[]);
    assert_eq!(config.api.token, secret("flag"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(dir.path(), "c.toml", "api_token = \"file\"\n");
    let config = load_ok(&["top", "-g", path_str(&file)], &[]);
    assert_eq!(config.api.token, secret("file"));
    let config = load_ok(
        &["top", "-g", path_str(&file)],
        &[("SENTRYPEER_API_TOKEN", "env")],
    );
    assert_eq!(config.api.token, secret("env"));
    let error = load_err(&["top", "--api", "127.0.0.1:8082"], &[]);
    assert!(error.contains("must start with http://"), "{error}");
}

#[test]
fn config_enrichment_databases_sources_and_checks() {
    let config = load_ok(&[], &[]);
    assert_eq!(config.enrich, EnrichConfig::default());
    assert!(!config.enrich.enabled());
    let dir = tempfile::tempdir().expect("tempdir");
    let country = write_file(dir.path(), "c.mmdb", "x");
    let asn = write_file(dir.path(), "a.mmdb", "x");
    let (country_text, asn_text) = (path_str(&country), path_str(&asn));
    let config = load_ok(
        &["--geoip-db", country_text],
        &[("SENTRYPEER_ASN_DB", asn_text)],
    );
    assert_eq!(config.enrich.geoip_db.as_deref(), Some(country.as_path()));
    assert_eq!(config.enrich.asn_db.as_deref(), Some(asn.as_path()));
    assert!(config.enrich.enabled());
    let file = write_file(
        dir.path(),
        "e.toml",
        &format!("geoip_db = \"{asn_text}\"\nasn_db = \"{country_text}\"\n"),
    );
    let config = load_ok(
        &["-g", path_str(&file)],
        &[("SENTRYPEER_GEOIP_DB", country_text)],
    );
    assert_eq!(config.enrich.geoip_db.as_deref(), Some(country.as_path()));
    assert_eq!(config.enrich.asn_db.as_deref(), Some(country.as_path()));
    let missing = dir.path().join("missing.mmdb");
    let error = load_err(&["--asn-db", path_str(&missing)], &[]);
    assert!(error.starts_with("cannot read asn_db \""), "{error}");
    assert!(!error.contains('\n'), "{error}");
    let error = load_err(&["--geoip-db", path_str(dir.path())], &[]);
    assert!(error.ends_with("is a directory"), "{error}");
    assert_eq!(
        load_err(&["--geoip-db", ""], &[]),
        "invalid geoip_db: must not be empty"
    );
    // Only the sensor opens them: `stats` does not check them.
    let config = load_ok(&["--geoip-db", path_str(&missing), "stats"], &[]);
    assert_eq!(config.command, Command::Stats);
}

mod nats;
