//! The NATS connection shared by the publisher and the hub: client options from [`NatsConfig`]
//! and the stream the events go to.
//!
//! Never: wait forever (connects, reconnect waits and JetStream requests are bounded by
//! [`limits`]), or show a credential: errors name files, never their contents.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{Client, ConnectOptions, ServerAddr};

use crate::config::{NatsConfig, limits};

/// Why the NATS client or stream could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NatsSetupError {
    #[error("cannot read the NATS credentials file \"{}\": {problem}", .path.display())]
    Creds {
        path: std::path::PathBuf,
        problem: String,
    },
    #[error("invalid NATS server URL: {0}")]
    Url(String),
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("cannot create or look up the JetStream stream \"{stream}\": {problem}")]
    Stream { stream: String, problem: String },
}

/// The client options for `config`: the credentials file, TLS (the `--nats-ca` file, else the
/// system roots; required with `--nats-ca`), `connection_name`, a connect timeout, and
/// reconnects forever with a wait growing by [`limits::NATS_RECONNECT_DELAY_STEP`] per attempt
/// up to [`limits::NATS_RECONNECT_DELAY_MAX`]. The first connect is retried in the background
/// too, so a client is had even while every server is down.
pub fn connect_options(
    config: &NatsConfig,
    connection_name: &str,
) -> Result<ConnectOptions, NatsSetupError> {
    let mut options = ConnectOptions::new()
        .name(connection_name)
        .connection_timeout(limits::NATS_CONNECT_TIMEOUT)
        .request_timeout(Some(limits::NATS_ACK_TIMEOUT))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay);
    if let Some(path) = &config.creds {
        options = with_creds(options, path)?;
    }
    if let Some(ca) = &config.ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(options)
}

/// The wait before reconnect attempt `attempts` (counted from 1).
pub fn reconnect_delay(attempts: usize) -> Duration {
    let step = limits::NATS_RECONNECT_DELAY_STEP;
    let factor = u32::try_from(attempts).unwrap_or(u32::MAX);
    step.saturating_mul(factor)
        .min(limits::NATS_RECONNECT_DELAY_MAX)
}

fn with_creds(options: ConnectOptions, path: &Path) -> Result<ConnectOptions, NatsSetupError> {
    let problem = |problem: String| NatsSetupError::Creds {
        path: path.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|error| problem(error.to_string()))?;
    // The parse error never quotes the file.
    options
        .credentials(&text)
        .map_err(|_| problem("not a NATS credentials file (user JWT and NKey seed)".into()))
}

/// A client for `config.urls` (see [`connect_options`]); returns at once, connecting in the
/// background while no server answers.
pub async fn connect(config: &NatsConfig, connection_name: &str) -> Result<Client, NatsSetupError> {
    let options = connect_options(config, connection_name)?;
    let addrs = server_addrs(config)?;
    options
        .connect(addrs)
        .await
        .map_err(|error| NatsSetupError::Connect(error.to_string()))
}

/// The parsed `config.urls` (checked at start-up, so an error here is unexpected).
pub fn server_addrs(config: &NatsConfig) -> Result<Vec<ServerAddr>, NatsSetupError> {
    config
        .urls
        .iter()
        .map(|url| {
            url.parse::<ServerAddr>().map_err(|_| {
                let shown = url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host);
                NatsSetupError::Url(shown.to_owned())
            })
        })
        .collect()
}

/// A JetStream context whose API requests and publish acknowledgements (awaited or dropped) time
/// out after [`limits::NATS_ACK_TIMEOUT`], with at most `ack_pending_max` publishes awaiting an
/// acknowledgement (a further publish waits for a slot).
pub fn jetstream_context(client: Client, ack_pending_max: usize) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(limits::NATS_ACK_TIMEOUT)
        .ack_timeout(limits::NATS_ACK_TIMEOUT)
        .max_ack_inflight(ack_pending_max.max(1))
        .backpressure_on_inflight(true)
        .build(client)
}

/// The stream settings this node creates when the stream is missing: `<prefix>.>`, file
/// storage, the server's default duplicate window (2 minutes), everything else default.
pub fn stream_config(config: &NatsConfig) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        subjects: vec![stream_subjects(&config.subject_prefix)],
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// `<prefix>.>`: every node's subject.
pub fn stream_subjects(subject_prefix: &str) -> String {
    format!("{subject_prefix}.>")
}

/// `<prefix>.<node id>`: the subject one node publishes on.
pub fn node_subject(subject_prefix: &str, node_id: uuid::Uuid) -> String {
    format!("{subject_prefix}.{}", node_id.hyphenated())
}

/// Looks the stream up, creating it (see [`stream_config`]) when missing. An existing stream is
/// used as it is, whatever its settings (an operator may have made it with other limits).
pub async fn ensure_stream(
    context: &jetstream::Context,
    config: &NatsConfig,
) -> Result<stream::Stream, NatsSetupError> {
    context
        .get_or_create_stream(stream_config(config))
        .await
        .map_err(|error| NatsSetupError::Stream {
            stream: config.stream.clone(),
            problem: error.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_reconnect_delay_grows_and_is_capped() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), limits::NATS_RECONNECT_DELAY_STEP);
        assert_eq!(reconnect_delay(3), limits::NATS_RECONNECT_DELAY_STEP * 3);
        assert_eq!(
            reconnect_delay(usize::MAX),
            limits::NATS_RECONNECT_DELAY_MAX
        );
    }

    #[test]
    fn nats_subjects() {
        let node = uuid::Uuid::from_u128(1);
        assert_eq!(
            node_subject("a.b", node),
            "a.b.00000000-0000-0000-0000-000000000001"
        );
        assert_eq!(stream_subjects("a.b"), "a.b.>");
    }
}
