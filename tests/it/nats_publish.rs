//! The NATS JetStream publisher against a real `nats-server -js` on loopback (see
//! `support::nats`), read back with an async-nats client in the test.

use std::collections::HashSet;
use std::path::Path;
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
    let total = 3_000;
    thread::scope(|scope| {
        scope.spawn(|| send(&node, "flood", total, 1_000));
        wait_until("some events acknowledged", DEADLINE, || {
            node.metric("sentrypeer_nats_acknowledged_total") >= 300
        });
        server.kill();
        wait_until("the publisher to see the server gone", DEADLINE, || {
            node.metric("sentrypeer_nats_connected") == 0
        });
        // Capture does not wait for NATS: events keep being committed while it is down.
        let committed = node.metric("sentrypeer_writer_events_committed_total");
        node.wait_committed(committed + 300);
        assert!(node.metric("sentrypeer_nats_backlog_events") >= 300);
        server.restart();
    });
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
