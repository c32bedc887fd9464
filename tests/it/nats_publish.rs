//! The NATS JetStream publisher against a real `nats-server -js` on loopback (see
//! `support::nats`), read back with an async-nats client in the test.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use futures_lite::StreamExt;
use sentrypeer::config::NatsConfig;
use sentrypeer::nats::connect;

use crate::support::nats::NatsServer;
use crate::support::{DEADLINE, Launch, Node, export, send_paced, udp_from, wait_until};

/// A current-thread runtime for the test's own NATS client.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn nats_config(server: &NatsServer) -> NatsConfig {
    NatsConfig {
        urls: vec![server.url()],
        subject_prefix: "test.events".into(),
        stream: "TEST".into(),
        creds: None,
        ca: None,
        ingest: false,
    }
}

/// One message read back from the stream.
#[derive(Debug)]
struct Stored {
    subject: String,
    msg_id: String,
    event_uuid: String,
    created_by_node_id: String,
}

/// Every message of `config.stream`, read with an ephemeral pull consumer.
fn read_stream(config: &NatsConfig) -> Vec<Stored> {
    runtime().block_on(async {
        let client = connect::connect(config, "test-reader")
            .await
            .expect("connect");
        let context = jetstream::new(client);
        let total = stream_messages(&context, &config.stream).await;
        let stream = context.get_stream(&config.stream).await.expect("stream");
        let consumer = stream
            .create_consumer(pull::Config {
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut stored = Vec::new();
        while (stored.len() as u64) < total {
            let mut batch = consumer
                .fetch()
                .max_messages(500)
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .expect("fetch");
            while let Some(message) = batch.next().await {
                stored.push(parse_stored(&message.expect("message")));
            }
        }
        stored
    })
}

fn parse_stored(message: &async_nats::Message) -> Stored {
    let value: serde_json::Value =
        serde_json::from_slice(&message.payload).expect("payload is JSON");
    let msg_id = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get("Nats-Msg-Id"))
        .map(|id| id.as_str().to_owned())
        .expect("Nats-Msg-Id header");
    Stored {
        subject: message.subject.to_string(),
        msg_id,
        event_uuid: value["event_uuid"].as_str().expect("event_uuid").to_owned(),
        created_by_node_id: value["created_by_node_id"]
            .as_str()
            .expect("created_by_node_id")
            .to_owned(),
    }
}

/// The stream holds exactly the events of the sensor's store at `db`: each once, with its
/// `Nats-Msg-Id` and on `<prefix>.<node id>`.
fn assert_stream_matches_store(config: &NatsConfig, dir: &Path, db: &Path, expected: usize) {
    let stored = read_stream(config);
    let exported: HashSet<String> = export(dir, db).into_iter().map(|(uuid, _)| uuid).collect();
    assert_eq!(exported.len(), expected, "events in the store");
    assert_eq!(stored.len(), expected, "messages in the stream");
    let mut seen = HashSet::new();
    for message in &stored {
        assert_eq!(message.msg_id, message.event_uuid, "{message:?}");
        let subject = format!("{}.{}", config.subject_prefix, message.created_by_node_id);
        assert_eq!(message.subject, subject, "{message:?}");
        assert!(
            seen.insert(message.event_uuid.clone()),
            "twice: {message:?}"
        );
    }
    assert_eq!(seen, exported);
}

/// A sensor publishing to `config` (one core, files under `dir`).
fn sensor(dir: &Path, config: &NatsConfig) -> Node {
    let mut args: Vec<&str> = Vec::new();
    for url in &config.urls {
        args.extend(["--nats-url", url]);
    }
    args.extend(["--nats-subject", &config.subject_prefix]);
    args.extend(["--nats-stream", &config.stream]);
    if let Some(ca) = &config.ca {
        args.extend(["--nats-ca", ca.to_str().expect("utf-8 path")]);
    }
    if let Some(creds) = &config.creds {
        args.extend(["--nats-creds", creds.to_str().expect("utf-8 path")]);
    }
    Launch::new(dir).arg(&args).start()
}

/// Sends `count` SIP requests over UDP to the sensor at `rate` per second.
fn send(node: &Node, prefix: &str, count: usize, rate: u32) {
    send_paced(&udp_from([127, 0, 0, 1]), node.sip, prefix, count, rate, 0);
}

/// Waits until JetStream has acknowledged every committed event.
fn wait_published(node: &Node, count: u64) {
    node.wait_committed(count);
    wait_until("the NATS backlog to empty", DEADLINE, || {
        node.metric("sentrypeer_nats_backlog_events") == 0
    });
}

/// Messages in the stream, by the server's own count.
async fn stream_messages(context: &jetstream::Context, name: &str) -> u64 {
    let mut stream = context.get_stream(name).await.expect("stream");
    stream.info().await.expect("stream info").state.messages
}

/// The harness: the stream made by `connect::ensure_stream` survives a kill and restart on the
/// same store, and the server still de-duplicates by `Nats-Msg-Id` afterwards.
#[test]
fn nats_harness_restart_keeps_the_stream() {
    let Some(mut server) = NatsServer::start("") else {
        return;
    };
    let config = nats_config(&server);
    let rt = runtime();
    let publish = |context: &jetstream::Context, id: &str| {
        let context = context.clone();
        let id = id.to_owned();
        async move {
            let publish = jetstream::message::PublishMessage::build()
                .payload("{}".into())
                .message_id(id);
            let ack = context
                .send_publish("test.events.node", publish)
                .await
                .expect("publish");
            ack.await.expect("ack")
        }
    };
    rt.block_on(async {
        let client = connect::connect(&config, "harness").await.expect("connect");
        let context = connect::jetstream_context(client, 16);
        let stream = connect::ensure_stream(&context, &config)
            .await
            .expect("stream");
        assert_eq!(stream.cached_info().config.subjects, vec!["test.events.>"]);
        for id in ["a", "b", "c"] {
            assert!(!publish(&context, id).await.duplicate);
        }
        assert_eq!(stream_messages(&context, "TEST").await, 3);
    });
    server.kill();
    server.restart();
    rt.block_on(async {
        let client = connect::connect(&config, "harness").await.expect("connect");
        let context = connect::jetstream_context(client, 16);
        connect::ensure_stream(&context, &config)
            .await
            .expect("stream after restart");
        assert_eq!(
            stream_messages(&context, "TEST").await,
            3,
            "{}",
            server.log()
        );
        assert!(publish(&context, "b").await.duplicate);
        assert_eq!(stream_messages(&context, "TEST").await, 3);
    });
    assert!(server.dir().join("store").join("jetstream").is_dir());
}

/// Every event sent to the sensor is in the stream exactly once, with `Nats-Msg-Id` = its
/// `event_uuid`, on `<prefix>.<node id>`; the metrics count it.
#[test]
fn nats_publish_every_event_exactly_once() {
    let Some(server) = NatsServer::start("") else {
        return;
    };
    let config = nats_config(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = sensor(dir.path(), &config);
    send(&node, "once", 500, 2_000);
    wait_published(&node, 500);
    assert_eq!(node.metric("sentrypeer_nats_published_total"), 500);
    assert_eq!(node.metric("sentrypeer_nats_acknowledged_total"), 500);
    assert_eq!(node.metric("sentrypeer_nats_duplicates_total"), 0);
    assert_eq!(node.metric("sentrypeer_nats_publish_retried_total"), 0);
    assert_eq!(node.metric("sentrypeer_nats_connected"), 1);
    let db = dir.path().join("sentrypeer.db");
    drop(node);
    assert_stream_matches_store(&config, dir.path(), &db, 500);
}

/// `nats-server` killed during a flood and restarted on the same store: capture goes on while
/// it is down, and afterwards the stream holds every event exactly once.
#[test]
fn nats_publish_server_killed_during_flood() {
    let Some(mut server) = NatsServer::start("") else {
        return;
    };
    let config = nats_config(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = sensor(dir.path(), &config);
    let (flood, while_down) = (1_500, 500);
    thread::scope(|scope| {
        scope.spawn(|| send(&node, "flood", flood, 1_000));
        wait_until("some events acknowledged", DEADLINE, || {
            node.metric("sentrypeer_nats_acknowledged_total") >= 300
        });
        server.kill();
        wait_until("the publisher to see the server gone", DEADLINE, || {
            node.metric("sentrypeer_nats_connected") == 0
        });
        send(&node, "down", while_down, 2_000);
    });
    let total = flood + while_down;
    // Capture does not wait for NATS: every event is committed while it is down.
    node.wait_committed(total as u64);
    assert!(node.metric("sentrypeer_nats_backlog_events") >= while_down as u64);
    server.restart();
    wait_published(&node, total as u64);
    assert_eq!(node.metric("sentrypeer_nats_connected"), 1);
    let acknowledged = node.metric("sentrypeer_nats_acknowledged_total");
    assert!(acknowledged >= total as u64, "{acknowledged}");
    let db = dir.path().join("sentrypeer.db");
    drop(node);
    assert_stream_matches_store(&config, dir.path(), &db, total);
}

/// A sensor started while the server is down captures as usual and catches up once it is up.
#[test]
fn nats_publish_catches_up_when_the_server_comes() {
    let Some(mut server) = NatsServer::start("") else {
        return;
    };
    let config = nats_config(&server);
    server.kill();
    let dir = tempfile::tempdir().expect("tempdir");
    let node = sensor(dir.path(), &config);
    send(&node, "late", 200, 2_000);
    node.wait_committed(200);
    assert_eq!(node.metric("sentrypeer_nats_connected"), 0);
    assert_eq!(node.metric("sentrypeer_nats_backlog_events"), 200);
    assert_eq!(node.metric("sentrypeer_nats_acknowledged_total"), 0);
    server.restart();
    wait_published(&node, 200);
    assert_eq!(node.metric("sentrypeer_nats_acknowledged_total"), 200);
    let db = dir.path().join("sentrypeer.db");
    drop(node);
    assert_stream_matches_store(&config, dir.path(), &db, 200);
}

/// A CA and a server certificate for 127.0.0.1 signed by it, written to `dir`: returns the
/// `tls {}` block for nats-server and the CA file.
fn tls_files(dir: &Path) -> (String, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sentrypeer test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("server params");
    let server_cert = server_params
        .signed_by(&server_key, &ca)
        .expect("server certificate");
    let (ca_file, cert_file, key_file) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server-key.pem"),
    );
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    std::fs::write(&cert_file, server_cert.pem()).expect("write certificate");
    std::fs::write(&key_file, server_key.serialize_pem()).expect("write key");
    let block = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
        cert_file.display(),
        key_file.display()
    );
    (block, ca_file)
}

/// Whether a client with `config` can reach the stream within 2 s.
fn stream_reachable(config: &NatsConfig) -> bool {
    runtime().block_on(async {
        let Ok(client) = connect::connect(config, "test-probe").await else {
            return false;
        };
        let context = jetstream::new(client);
        let probe = tokio::time::timeout(Duration::from_secs(2), context.get_stream("TEST"));
        matches!(probe.await, Ok(Ok(_)))
    })
}

/// TLS to the server with `--nats-ca`: the sensor publishes through it; a client that trusts only
/// the system roots does not get through.
#[test]
fn nats_publish_over_tls_with_nats_ca() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (block, ca_file) = tls_files(certs.path());
    let Some(server) = NatsServer::start(&block) else {
        return;
    };
    let mut config = nats_config(&server);
    config.ca = Some(ca_file);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = sensor(dir.path(), &config);
    send(&node, "tls", 50, 2_000);
    wait_published(&node, 50);
    assert_eq!(node.metric("sentrypeer_nats_acknowledged_total"), 50);
    let db = dir.path().join("sentrypeer.db");
    drop(node);
    assert_stream_matches_store(&config, dir.path(), &db, 50);
    let system_roots = NatsConfig {
        ca: None,
        ..config.clone()
    };
    assert!(!stream_reachable(&system_roots), "{}", server.log());
}

/// A credentials file: an operator-signed account (with JetStream) and a user it signed, with a
/// nonce to sign (not a bearer token); nats-server trusts the operator key and preloads the
/// account. Returns the extra server configuration and the file.
fn creds_files(dir: &Path) -> (String, PathBuf) {
    use nats_io_jwt::{Account, KeyPair, OperatorLimits, Token, User};
    let operator = KeyPair::new_operator();
    let account = KeyPair::new_account();
    let user = KeyPair::new_user();
    let account_claims: Account = Account::builder()
        .limits(Some(OperatorLimits::default()))
        .try_into()
        .expect("account claims");
    let account_jwt = Token::new(account.public_key())
        .name("SENSORS")
        .claims(account_claims)
        .sign(&operator);
    let user_claims: User = User::builder()
        .bearer_token(false)
        .try_into()
        .expect("user claims");
    let user_jwt = Token::new(user.public_key())
        .name("sensor")
        .claims(user_claims)
        .sign(&account);
    // JetStream in operator mode needs a system account.
    let system = KeyPair::new_account();
    let system_claims: Account = Account::builder().try_into().expect("system claims");
    let system_jwt = Token::new(system.public_key())
        .name("SYS")
        .claims(system_claims)
        .sign(&operator);
    let seed = user.seed().expect("user seed");
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    );
    let creds_file = dir.join("sensor.creds");
    std::fs::write(&creds_file, creds).expect("write creds");
    let block = format!(
        "trusted_keys: [\"{}\"]\nsystem_account: {}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {}: \"{account_jwt}\"\n  {}: \"{system_jwt}\"\n}}\n",
        operator.public_key(),
        system.public_key(),
        account.public_key(),
        system.public_key()
    );
    (block, creds_file)
}

/// `--nats-creds`: the sensor authenticates with a user JWT and signs the server's nonce with
/// its NKey seed; without the file the server refuses the client.
#[test]
fn nats_publish_with_nats_creds() {
    let keys = tempfile::tempdir().expect("tempdir");
    let (block, creds_file) = creds_files(keys.path());
    let Some(server) = NatsServer::start(&block) else {
        return;
    };
    let mut config = nats_config(&server);
    config.creds = Some(creds_file);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = sensor(dir.path(), &config);
    send(&node, "creds", 50, 2_000);
    wait_published(&node, 50);
    assert_eq!(node.metric("sentrypeer_nats_acknowledged_total"), 50);
    let db = dir.path().join("sentrypeer.db");
    drop(node);
    assert_stream_matches_store(&config, dir.path(), &db, 50);
    let anonymous = NatsConfig {
        creds: None,
        ..config.clone()
    };
    assert!(!stream_reachable(&anonymous), "{}", server.log());
}

/// The fleet section's leaf-node set-up: the sensor publishes to a leaf `nats-server` without
/// JetStream on its host, which dials out to the hub's server; the events land in the hub's
/// stream, each once.
#[test]
fn nats_publish_through_a_leaf_node() {
    let leaf_port = crate::support::free_port();
    let hub_config = format!("leafnodes {{\n  listen: \"127.0.0.1:{leaf_port}\"\n}}\n");
    let Some(hub) = NatsServer::start(&hub_config) else {
        return;
    };
    let remote = format!(
        "leafnodes {{\n  remotes = [\n    {{ urls: [\"nats-leaf://127.0.0.1:{leaf_port}\"] }}\n  ]\n}}\n"
    );
    let Some(leaf) = NatsServer::start_leaf(&remote) else {
        return;
    };
    // The hub makes the stream (as `--nats-ingest` does): nats-server keeps the JetStream API
    // of an account from crossing a leaf connection, only the publishes and their
    // acknowledgements do.
    let hub_config = nats_config(&hub);
    runtime().block_on(async {
        let client = connect::connect(&hub_config, "hub").await.expect("connect");
        let context = connect::jetstream_context(client, 16);
        connect::ensure_stream(&context, &hub_config)
            .await
            .expect("stream on the hub");
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let node = sensor(dir.path(), &nats_config(&leaf));
    send(&node, "leaf", 100, 2_000);
    wait_published(&node, 100);
    let db = dir.path().join("sentrypeer.db");
    drop(node);
    assert_stream_matches_store(&hub_config, dir.path(), &db, 100);
}

/// A server that stops answering (frozen with SIGSTOP) slows nothing: every event is committed
/// at once, the unacknowledged publishes time out and are retried, the sensor stops promptly,
/// and once the server answers again the next run publishes the rest: each event once.
#[test]
fn nats_publish_frozen_server_does_not_slow_capture() {
    let Some(server) = NatsServer::start("") else {
        return;
    };
    let config = nats_config(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = sensor(dir.path(), &config);
    send(&node, "before", 50, 2_000);
    wait_published(&node, 50);
    server.freeze(true);
    send(&node, "frozen", 1_000, 2_000);
    node.wait_committed(1_050);
    wait_until(
        "publishes to the frozen server to time out",
        DEADLINE,
        || node.metric("sentrypeer_nats_publish_retried_total") > 0,
    );
    assert!(node.metric("sentrypeer_nats_backlog_events") > 0);
    // Nor does it hold up a stop (`Node::stop` fails the test after its deadline).
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
    let node = sensor(dir.path(), &config);
    server.freeze(false);
    wait_published(&node, 0);
    let db = dir.path().join("sentrypeer.db");
    drop(node);
    assert_stream_matches_store(&config, dir.path(), &db, 1_050);
}

/// The cursor survives a restart of the sensor: the second run publishes only its own events.
#[test]
fn nats_publish_cursor_survives_a_restart() {
    let Some(server) = NatsServer::start("") else {
        return;
    };
    let config = nats_config(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = sensor(dir.path(), &config);
    send(&node, "first", 100, 2_000);
    wait_published(&node, 100);
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
    let node = sensor(dir.path(), &config);
    send(&node, "second", 50, 2_000);
    wait_published(&node, 50);
    assert_eq!(node.metric("sentrypeer_nats_published_total"), 50);
    assert_eq!(node.metric("sentrypeer_nats_acknowledged_total"), 50);
    let db = dir.path().join("sentrypeer.db");
    drop(node);
    assert_stream_matches_store(&config, dir.path(), &db, 150);
}
