//! The `--nats-*` settings merged and validated into [`NatsConfig`]; no I/O (the caller checks
//! that the credentials and CA files can be read).
//!
//! Never: accept a NATS option without `--nats-url` (it would silently do nothing), or echo a
//! URL's user and password in an error.

use std::ffi::OsString;
use std::path::PathBuf;
use std::str::FromStr;

use super::Sources;
use crate::config::{ConfigError, NatsConfig, defaults, limits};

/// `None` when no `--nats-url` is given (and no other NATS option either).
pub(super) fn resolve_nats(sources: &Sources<'_>) -> Result<Option<NatsConfig>, ConfigError> {
    let (cli, file) = (sources.cli, sources.file);
    let urls = sources.list(
        "nats_url",
        "SENTRYPEER_NATS_URL",
        &cli.nats_url,
        file.nats_url.as_ref(),
    )?;
    let subject = sources.text(
        "nats_subject",
        "SENTRYPEER_NATS_SUBJECT",
        cli.nats_subject.as_ref(),
        file.nats_subject.as_ref(),
    )?;
    let stream = sources.text(
        "nats_stream",
        "SENTRYPEER_NATS_STREAM",
        cli.nats_stream.as_ref(),
        file.nats_stream.as_ref(),
    )?;
    let path =
        |key: &'static str, env_name: &str, cli_value, file_value: Option<&String>| match sources
            .raw(key, env_name, cli_value, file_value.map(OsString::from))
        {
            Some(raw) if raw.is_empty() => Err(ConfigError::Invalid {
                key,
                problem: "must not be empty".into(),
            }),
            raw => Ok(raw.map(PathBuf::from)),
        };
    let creds = path(
        "nats_creds",
        "SENTRYPEER_NATS_CREDS",
        cli.nats_creds.as_ref(),
        file.nats_creds.as_ref(),
    )?;
    let ca = path(
        "nats_ca",
        "SENTRYPEER_NATS_CA",
        cli.nats_ca.as_ref(),
        file.nats_ca.as_ref(),
    )?;
    let ingest = sources.flag("nats_ingest", cli.nats_ingest, file.nats_ingest);
    let Some(urls) = urls else {
        let given = [
            ("nats_subject", subject.is_some()),
            ("nats_stream", stream.is_some()),
            ("nats_creds", creds.is_some()),
            ("nats_ca", ca.is_some()),
            ("nats_ingest", ingest),
        ];
        return match given.iter().find(|(_, given)| *given) {
            Some((key, _)) => Err(ConfigError::Invalid {
                key: "nats_url",
                problem: format!("required with {key}"),
            }),
            None => Ok(None),
        };
    };
    let subject = subject.unwrap_or_else(|| defaults::NATS_SUBJECT_PREFIX.to_owned());
    let stream = stream.unwrap_or_else(|| defaults::NATS_STREAM.to_owned());
    Ok(Some(NatsConfig {
        urls: check_urls(urls)?,
        subject_prefix: check_subject_prefix(subject)?,
        stream: check_stream_name(stream)?,
        creds,
        ca,
        ingest,
    }))
}

/// Each URL parses as a NATS server address with scheme `nats` or `tls` (none means `nats`) and
/// a host; at most [`limits::NATS_URLS_MAX`], none twice.
fn check_urls(urls: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let key = "nats_url";
    let invalid = |problem: String| ConfigError::Invalid { key, problem };
    if urls.is_empty() {
        return Err(invalid("no URL given".into()));
    }
    if urls.len() > limits::NATS_URLS_MAX {
        return Err(invalid(format!(
            "{} URLs given, at most {} allowed",
            urls.len(),
            limits::NATS_URLS_MAX
        )));
    }
    let mut checked: Vec<String> = Vec::with_capacity(urls.len());
    for url in urls {
        let url = url.trim().to_owned();
        // Shown without any user and password.
        let shown = url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host);
        let parsed = async_nats::ServerAddr::from_str(&url)
            .map_err(|_| invalid(format!("\"{shown}\" is not a NATS server URL")))?;
        let scheme = parsed.clone().into_inner().scheme().to_owned();
        if scheme != "nats" && scheme != "tls" {
            return Err(invalid(format!(
                "\"{shown}\": only nats:// and tls:// are supported"
            )));
        }
        if parsed.host().is_empty() {
            return Err(invalid(format!("\"{shown}\" has no host")));
        }
        if checked.contains(&url) {
            return Err(invalid(format!("\"{shown}\" given twice")));
        }
        checked.push(url);
    }
    Ok(checked)
}

/// A subject prefix is dot-separated tokens, each non-empty printable ASCII without spaces and
/// without the wildcards `*` and `>`.
pub(crate) fn check_subject_prefix(text: String) -> Result<String, ConfigError> {
    let problem = if text.is_empty() {
        Some("must not be empty".to_owned())
    } else if text.len() > limits::NATS_SUBJECT_PREFIX_BYTES_MAX {
        Some(format!(
            "longer than {} bytes",
            limits::NATS_SUBJECT_PREFIX_BYTES_MAX
        ))
    } else if !text.bytes().all(|byte| (0x21..0x7f).contains(&byte)) {
        Some(format!(
            "\"{text}\": only printable ASCII without spaces is allowed"
        ))
    } else if text.split('.').any(|token| matches!(token, "" | "*" | ">"))
        || text.contains(['*', '>'])
    {
        Some(format!(
            "\"{text}\": tokens must be non-empty and without the wildcards * and >"
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::Invalid {
            key: "nats_subject",
            problem,
        }),
        None => Ok(text),
    }
}

/// A JetStream stream name: printable ASCII without spaces, `.`, `*`, `>`, `/` or `\`.
pub(crate) fn check_stream_name(text: String) -> Result<String, ConfigError> {
    let problem = if text.is_empty() {
        Some("must not be empty".to_owned())
    } else if text.len() > limits::NATS_STREAM_NAME_BYTES_MAX {
        Some(format!(
            "longer than {} bytes",
            limits::NATS_STREAM_NAME_BYTES_MAX
        ))
    } else if !text
        .bytes()
        .all(|byte| (0x21..0x7f).contains(&byte) && !b".*>/\\".contains(&byte))
    {
        Some(format!(
            "\"{text}\": only printable ASCII without spaces, '.', '*', '>', '/' or '\\' is allowed"
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::Invalid {
            key: "nats_stream",
            problem,
        }),
        None => Ok(text),
    }
}
