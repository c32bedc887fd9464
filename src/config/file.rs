//! The TOML config file: its keys and their parse, text in, [`FileConfig`] out.
//!
//! Keys are the original's `cert`, `key`, `tls_listen_address`, and the snake_case long name of
//! every other setting. An unknown key is an error that names it. Reading the file is the
//! caller's job.

use serde::Deserialize;

/// Every key the config file may hold; all optional.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) db_file: Option<String>,
    pub(crate) json_log: Option<bool>,
    pub(crate) json_log_file: Option<String>,
    #[serde(alias = "p2p")]
    pub(crate) peer_to_peer: Option<bool>,
    pub(crate) bootstrap_node: Option<String>,
    pub(crate) oauth2_client_id: Option<String>,
    pub(crate) oauth2_client_secret: Option<String>,
    pub(crate) api: Option<bool>,
    pub(crate) webhook_url: Option<String>,
    pub(crate) sip_responsive: Option<bool>,
    pub(crate) sip_disable: Option<bool>,
    pub(crate) tls_disable: Option<bool>,
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) tls_listen_address: Option<String>,
    pub(crate) syslog: Option<bool>,
    pub(crate) verbose: Option<bool>,
    pub(crate) debug: Option<bool>,
    pub(crate) sip_listen: Option<OneOrMany>,
    pub(crate) ignore_ip: Option<OneOrMany>,
    pub(crate) api_listen: Option<String>,
    pub(crate) p2p_listen: Option<String>,
    pub(crate) cores: Option<i64>,
    pub(crate) oauth2_token_url: Option<String>,
    pub(crate) oauth2_audience: Option<String>,
    pub(crate) udp_rcvbuf: Option<i64>,
    pub(crate) tcp_idle_timeout: Option<i64>,
    pub(crate) tcp_connections_per_ip: Option<i64>,
    pub(crate) tcp_connections_per_core: Option<i64>,
    pub(crate) reply_rate: Option<i64>,
    pub(crate) reply_burst: Option<i64>,
    pub(crate) server_header: Option<String>,
    pub(crate) sip_challenge: Option<bool>,
    pub(crate) sip_realm: Option<String>,
    pub(crate) geoip_db: Option<String>,
    pub(crate) asn_db: Option<String>,
    pub(crate) verified_only: Option<bool>,
    pub(crate) writer_batch: Option<i64>,
    pub(crate) writer_interval_ms: Option<i64>,
    pub(crate) no_sync: Option<bool>,
    pub(crate) retention_days: Option<i64>,
    pub(crate) api_token: Option<String>,
    pub(crate) webhook_batch: Option<i64>,
    pub(crate) nats_url: Option<OneOrMany>,
    pub(crate) nats_subject: Option<String>,
    pub(crate) nats_stream: Option<String>,
    pub(crate) nats_creds: Option<String>,
    pub(crate) nats_ca: Option<String>,
    pub(crate) nats_ingest: Option<bool>,
    pub(crate) danger_force_portable_fallback: Option<bool>,
    pub(crate) syslog_socket: Option<String>,
}

/// `sip_listen = "a"` or `sip_listen = ["a", "b"]` (also `ignore_ip`, `nats_url`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}

/// Parses the text of a config file; the error is one line with the position and the problem.
pub(crate) fn parse(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|error| {
        let message = error.message().trim().replace('\n', " ");
        match error.span() {
            Some(span) => {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!("line {line}, column {column}: {message}")
            }
            None => message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_parse_empty() {
        assert_eq!(parse(""), Ok(FileConfig::default()));
    }

    #[test]
    fn file_parse_original_keys() {
        let file = parse("cert = \"c.pem\"\nkey = \"k.pem\"\ntls_listen_address = \"[::]:5061\"\n");
        let file = file.expect("valid file");
        assert_eq!(file.cert.as_deref(), Some("c.pem"));
        assert_eq!(file.key.as_deref(), Some("k.pem"));
        assert_eq!(file.tls_listen_address.as_deref(), Some("[::]:5061"));
    }

    #[test]
    fn file_parse_sip_listen_string_or_array() {
        let one = parse("sip_listen = \"127.0.0.1:5060\"").expect("valid file");
        assert_eq!(
            one.sip_listen.map(OneOrMany::into_vec),
            Some(vec!["127.0.0.1:5060".into()])
        );
        let many = parse("sip_listen = [\"127.0.0.1:5060\", \"[::1]:5060\"]").expect("valid file");
        assert_eq!(
            many.sip_listen.map(OneOrMany::into_vec),
            Some(vec!["127.0.0.1:5060".into(), "[::1]:5060".into()])
        );
    }

    #[test]
    fn file_parse_p2p_alias() {
        assert_eq!(parse("p2p = true").expect("valid").peer_to_peer, Some(true));
        assert_eq!(
            parse("peer_to_peer = true").expect("valid").peer_to_peer,
            Some(true)
        );
    }

    #[test]
    fn file_parse_unknown_key_named() {
        let error = parse("api = true\nbogus_key = 1\n").expect_err("unknown key");
        assert!(error.contains("bogus_key"), "{error}");
        assert!(error.starts_with("line 2, column 1:"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn file_parse_wrong_type_one_line() {
        let error = parse("cores = \"four\"").expect_err("wrong type");
        assert!(error.starts_with("line 1,"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn file_parse_syntax_error_one_line() {
        let error = parse("db_file = \n").expect_err("syntax error");
        assert!(!error.contains('\n'), "{error}");
        assert!(error.starts_with("line 1,"), "{error}");
    }
}
