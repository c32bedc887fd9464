//! The NATS JetStream publisher against a real `nats-server -js` on loopback (see
//! `support::nats`), read back with an async-nats client in the test.

use async_nats::jetstream;
use sentrypeer::config::NatsConfig;
use sentrypeer::nats::connect;

use crate::support::nats::NatsServer;

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
