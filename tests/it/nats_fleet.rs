//! A fleet through a real `nats-server -js`: sensors publish their committed events to
//! JetStream, a hub (`-R --nats-ingest`) gathers them into its own store. Every event a sensor
//! stored is in the hub's store exactly once with its `event_uuid`, `created_by_node_id` and
//! timestamp, through a server killed and restarted during a flood and a hub killed and
//! restarted; garbage and invalid events published on the subject are counted and never stored.
//!
//! Real parts only: the `sentrypeer` binary (SIP over UDP on loopback), `nats-server`, the
//! hub's HTTP API and `sentrypeer export` of its store, an `async-nats` client for the garbage.
//! Every wait polls against a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::nats::NatsServer;
use crate::support::{Launch, Node, run_command, send_paced, udp_from, wait_until};

/// Longest wait for the fleet to converge (three sensors, a hub and a server on two busy cores).
const CONVERGE: Duration = Duration::from_secs(60);

/// `(event_uuid, created_by_node_id, event_timestamp)` of every event in a store, with how
/// often each UUID appears.
type Identities = HashMap<String, (String, String, u32)>;

fn identities(home: &Path, db: &Path) -> Identities {
    let db = db.to_str().expect("utf-8 path");
    let (status, stdout, stderr) = run_command(home, &["export", "--format", "jsonl", "-f", db]);
    assert!(status.success(), "export failed: {stderr}");
    let mut found = Identities::new();
    for line in stdout.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("export line");
        let text = |key: &str| value[key].as_str().expect(key).to_owned();
        let entry = found
            .entry(text("event_uuid"))
            .or_insert_with(|| (text("created_by_node_id"), text("event_timestamp"), 0));
        entry.2 += 1;
    }
    found
}

fn sensor(dir: &Path, nats: &NatsServer) -> Node {
    Launch::new(dir).arg(&["--nats-url", &nats.url()]).start()
}

fn hub_launch(dir: &Path, nats: &NatsServer) -> Launch {
    Launch::new(dir).arg(&["-R", "--nats-ingest", "--nats-url", &nats.url()])
}

fn committed(node: &Node) -> u64 {
    node.metric("sentrypeer_writer_events_committed_total")
}

/// Waits until the hub's store holds exactly the events of the sensors' stores (both read again
/// on every poll: a sensor may still be committing the end of a flood), then checks each is
/// there once with the sensor's node id and timestamp; returns how many.
fn assert_gathered(hub_dir: &Path, sensors: &[(&Path, &Node)], hub: &Node) -> usize {
    let deadline = Instant::now() + CONVERGE;
    let (expected, gathered) = loop {
        let mut expected = Identities::new();
        for (dir, _) in sensors {
            expected.extend(identities(dir, &dir.join("sentrypeer.db")));
        }
        let gathered = identities(hub_dir, &hub_dir.join("sentrypeer.db"));
        let missing = expected
            .keys()
            .filter(|k| !gathered.contains_key(*k))
            .count();
        if missing == 0 && gathered.len() == expected.len() {
            break (expected, gathered);
        }
        assert!(
            Instant::now() < deadline,
            "the hub has {} events, the sensors {} ({missing} missing at the hub); hub stderr: {}",
            gathered.len(),
            expected.len(),
            hub.stderr()
        );
        thread::sleep(Duration::from_millis(100));
    };
    for (uuid, (node, timestamp, count)) in &expected {
        assert_eq!(*count, 1, "{uuid} stored {count} times at its sensor");
        let got = &gathered[uuid];
        assert_eq!((&got.0, &got.1), (node, timestamp), "{uuid}");
        assert_eq!(got.2, 1, "{uuid} stored {} times at the hub", got.2);
    }
    expected.len()
}

/// Sends `count` OPTIONS from 127.0.0.`source` to each sensor and waits until each stored them.
fn send_to(sensors: &[&Node], source: u8, prefix: &str, count: usize, rate: u32) {
    let socket = udp_from([127, 0, 0, source]);
    for (index, node) in sensors.iter().enumerate() {
        let before = committed(node);
        send_paced(
            &socket,
            node.sip,
            &format!("{prefix}-{index}"),
            count,
            rate,
            0,
        );
        wait_until("the sensor stored what was sent", CONVERGE, || {
            committed(node) >= before + count as u64
        });
    }
}

#[test]
fn nats_fleet_three_sensors_one_hub() {
    let Some(nats) = NatsServer::start("") else {
        return;
    };
    let _heavy = crate::support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<_> = ["hub", "s1", "s2", "s3"]
        .iter()
        .map(|name| {
            let path = dir.path().join(name);
            std::fs::create_dir(&path).expect("mkdir");
            path
        })
        .collect();
    let hub = hub_launch(&dirs[0], &nats).start();
    let sensors: Vec<Node> = dirs[1..].iter().map(|d| sensor(d, &nats)).collect();
    let refs: Vec<&Node> = sensors.iter().collect();
    send_to(&refs, 21, "fleet", 150, 2_000);
    let pairs: Vec<(&Path, &Node)> = dirs[1..].iter().map(|d| d.as_path()).zip(refs).collect();
    assert_eq!(assert_gathered(&dirs[0], &pairs, &hub), 450);
    // The hub's API shows the fleet: the source IP with every sensor's events.
    let counts = hub.ip_counts();
    assert_eq!(counts.get("127.0.0.21"), Some(&450), "{counts:?}");
    assert_eq!(hub.metric("sentrypeer_nats_ingest_stored_total"), 450);
    assert_eq!(hub.metric("sentrypeer_nats_ingest_in_flight"), 0);
    publish_garbage(&nats, &dirs[0], &hub);
}

/// Garbage and invalid events on the subject: acknowledged, counted by reason, never stored.
fn publish_garbage(nats: &NatsServer, hub_dir: &Path, hub: &Node) {
    let valid = |uuid: &str| {
        serde_json::json!({
            "event_timestamp": "2026-01-01 00:00:00.000000000",
            "event_uuid": uuid,
            "created_by_node_id": "5f0c2a3e-1b7d-4c1a-9e55-6a8d3f1e2b10",
            "collected_method": "passive",
            "transport_type": "UDP",
            "source_ip": "198.51.100.7",
            "destination_ip": "127.0.0.1",
            "called_number": "100",
            "sip_method": "OPTIONS",
            "sip_user_agent": "NOT_FOUND",
            "sip_message": "OPTIONS sip:100@x SIP/2.0\r\n\r\n",
        })
    };
    let with = |key: &str, value: serde_json::Value| {
        let mut object = valid("0b7e2c1a-8a55-4f2e-b3f1-1d2c3b4a5f60");
        object[key] = value;
        object.to_string().into_bytes()
    };
    let mut missing = valid("1b7e2c1a-8a55-4f2e-b3f1-1d2c3b4a5f60");
    missing.as_object_mut().expect("object").remove("source_ip");
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"\x00\xffnot json at all".to_vec()),
        ("malformed", b"[1,2,3]".to_vec()),
        ("missing", missing.to_string().into_bytes()),
        ("uuid", with("event_uuid", "not-a-uuid".into())),
        ("timestamp", with("event_timestamp", "yesterday".into())),
        (
            "future",
            with("event_timestamp", "2030-01-01 00:00:00.000000000".into()),
        ),
        ("ip", with("source_ip", "999.1.1.1".into())),
        ("enum", with("transport_type", "SCTP".into())),
        ("method", with("sip_method", "IN VITE".into())),
    ];
    let before = hub.metric("sentrypeer_nats_ingest_acked_total");
    publish_all(
        &nats.url(),
        "sentrypeer.events.intruder",
        payloads.iter().map(|(_, p)| p.clone()).collect(),
    );
    let mut wanted: HashMap<&str, u64> = HashMap::new();
    for (reason, _) in &payloads {
        *wanted.entry(reason).or_default() += 1;
    }
    wait_until("every garbage message acknowledged", CONVERGE, || {
        hub.metric("sentrypeer_nats_ingest_acked_total") >= before + payloads.len() as u64
    });
    for (reason, count) in wanted {
        let name = format!("sentrypeer_nats_ingest_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(hub.metric(&name), count, "{reason}");
    }
    let stored = identities(hub_dir, &hub_dir.join("sentrypeer.db"));
    assert_eq!(stored.len(), 450, "garbage was stored");
    assert!(!stored.contains_key("0b7e2c1a-8a55-4f2e-b3f1-1d2c3b4a5f60"));
    assert_eq!(hub.metric("sentrypeer_nats_ingest_stored_total"), 450);
}

/// Publishes each payload to JetStream on `subject` and waits for the stream's acknowledgement
/// (an `async-nats` client on a current-thread runtime).
fn publish_all(url: &str, subject: &'static str, payloads: Vec<Vec<u8>>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connect to nats");
        let jetstream = async_nats::jetstream::new(client);
        for payload in payloads {
            let ack = jetstream
                .publish(subject, payload.into())
                .await
                .expect("publish");
            ack.await.expect("stream acknowledgement");
        }
    });
}

/// The durable consumer's `(num_ack_pending, num_pending)` on the server, `None` while it (or
/// its stream) does not exist.
fn consumer_pending(url: &str, durable: &str) -> Option<(usize, u64)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connect to nats");
        let jetstream = async_nats::jetstream::new(client);
        let stream = jetstream.get_stream("SENTRYPEER").await.ok()?;
        let info = stream.consumer_info(durable).await.ok()?;
        Some((info.num_ack_pending, info.num_pending))
    })
}

/// Floods a sensor from a thread while `during` runs; returns when both are done.
fn flood_during(target: SocketAddr, prefix: &str, count: usize, during: impl FnOnce()) {
    let prefix = prefix.to_owned();
    let flood = thread::spawn(move || {
        let socket = udp_from([127, 0, 0, 22]);
        send_paced(&socket, target, &prefix, count, 1_000, 0);
    });
    during();
    flood.join().expect("flood thread");
}

#[test]
fn nats_fleet_server_killed_during_flood() {
    let Some(mut nats) = NatsServer::start("") else {
        return;
    };
    let _heavy = crate::support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let (hub_dir, sensor_dir) = (dir.path().join("hub"), dir.path().join("s1"));
    std::fs::create_dir(&hub_dir).expect("mkdir");
    std::fs::create_dir(&sensor_dir).expect("mkdir");
    let hub = hub_launch(&hub_dir, &nats).start();
    let node = sensor(&sensor_dir, &nats);
    flood_during(node.sip, "outage", 3_000, || {
        wait_until("the hub got part of the flood", CONVERGE, || {
            hub.metric("sentrypeer_nats_ingest_stored_total") >= 300
        });
        nats.kill();
        wait_until(
            "the sensor stored more while the server was down",
            CONVERGE,
            || committed(&node) >= 1_500,
        );
        nats.restart();
    });
    wait_until("the sensor stored the whole flood", CONVERGE, || {
        committed(&node) >= 2_900
    });
    let total = assert_gathered(&hub_dir, &[(&sensor_dir, &node)], &hub);
    assert!(total >= 2_900, "{total}");
}

#[test]
fn nats_fleet_hub_restarted_resumes() {
    let Some(nats) = NatsServer::start("") else {
        return;
    };
    let _heavy = crate::support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let (hub_dir, sensor_dir) = (dir.path().join("hub"), dir.path().join("s1"));
    std::fs::create_dir(&hub_dir).expect("mkdir");
    std::fs::create_dir(&sensor_dir).expect("mkdir");
    let node = sensor(&sensor_dir, &nats);
    let launch = hub_launch(&hub_dir, &nats);
    let hub = launch.start();
    let mut hub_slot = Some(hub);
    flood_during(node.sip, "hub-down", 2_000, || {
        let hub = hub_slot.take().expect("hub");
        wait_until("the hub got part of the flood", CONVERGE, || {
            hub.metric("sentrypeer_nats_ingest_stored_total") >= 200
        });
        // SIGKILL: whatever was committed and not yet acknowledged comes again.
        hub.kill9();
        wait_until(
            "the sensor stored more while the hub was down",
            CONVERGE,
            || committed(&node) >= 1_200,
        );
        hub_slot = Some(launch.start());
    });
    let hub = hub_slot.expect("hub");
    wait_until("the sensor stored the whole flood", CONVERGE, || {
        committed(&node) >= 1_900
    });
    let total = assert_gathered(&hub_dir, &[(&sensor_dir, &node)], &hub);
    assert!(total >= 1_900, "{total}");
    // The restarted hub took only what it had not stored: the rest came from the durable
    // consumer's position, not from the stream's start.
    let received = hub.metric("sentrypeer_nats_ingest_received_total");
    assert!(
        received < total as u64,
        "received {received} of {total} again"
    );
}

/// A rendered (JSON-log) event of `node`, `index` ns before `now_ns`, from `source`.
fn fleet_event(node: uuid::Uuid, now_ns: u64, index: u64, source: &str) -> Vec<u8> {
    use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport, json::to_json};
    to_json(&Event::new(&EventParts {
        timestamp_ns: now_ns - index,
        uuid: uuid::Uuid::new_v4(),
        node_id: node,
        transport: Transport::Udp,
        collected_method: CollectedMethod::Passive,
        source: format!("{source}:5060").parse().expect("source"),
        destination: "127.0.0.1:5060".parse().expect("destination"),
        method: b"OPTIONS",
        called_number: Some(index.to_string().as_bytes()),
        user_agent: None,
        message: b"OPTIONS sip:1@x SIP/2.0\r\n\r\n",
        source_verified: false,
        auth_username: None,
    }))
    .into_bytes()
}

/// A hub worker in process on `store`, `198.51.100.0/24` ignored, with a commit watch no writer
/// publishes to (the worker then finds commits by its periodic re-check).
fn in_process_hub(
    nats: &NatsServer,
    store: &sentrypeer::store::Store,
    events: crossbeam_channel::Sender<sentrypeer::event::Event>,
) -> sentrypeer::nats::ingest::IngestHandle {
    use sentrypeer::nats::ingest::{self, IngestSettings};
    let nats_config = sentrypeer::config::NatsConfig {
        urls: vec![nats.url()],
        subject_prefix: "sentrypeer.events".into(),
        stream: "SENTRYPEER".into(),
        creds: None,
        ca: None,
        ingest: true,
    };
    let settings = IngestSettings {
        ignore_ip: sentrypeer::ignore::IgnoreList::new(["198.51.100.0/24".parse().expect("net")]),
        retention_days: None,
    };
    let commits = Arc::new(sentrypeer::store::CommitWatch::default());
    ingest::start(&nats_config, store.clone(), events, commits, settings).expect("ingest start")
}

/// The hub's worker in process, against a real server and a real store: messages whose events
/// are handed over but not committed (no writer yet) stay unacknowledged; once a writer commits
/// them they are acknowledged; events published directly (no sensor) are stored once each,
/// copies of them (no `Nats-Msg-Id`, so JetStream keeps them) are skipped as duplicates, an
/// ignored source is dropped, and the server ends with nothing pending on the consumer.
#[test]
fn nats_ingest_in_process_duplicates_and_acks() {
    let Some(nats) = NatsServer::start("") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::support::store_config(dir.path(), 64);
    let store = sentrypeer::store::Store::open(&config).expect("store");
    let (events, receiver) = crossbeam_channel::bounded(256);
    // No writer yet: the events wait in the channel, uncommitted.
    let hub = in_process_hub(&nats, &store, events);
    let metrics = hub.metrics();
    let (node, now) = (uuid::Uuid::new_v4(), sentrypeer::event::timestamp::now_ns());
    let originals: Vec<Vec<u8>> = (0..1_000)
        .map(|i| fleet_event(node, now, i, "203.0.113.9"))
        .collect();
    let durable = format!("sentrypeer-hub-{}", store.node_id().hyphenated());
    wait_until("the hub's durable consumer", CONVERGE, || {
        consumer_pending(&nats.url(), &durable).is_some()
    });
    let subject = "sentrypeer.events.direct";
    // Received and handed over, not committed: not acknowledged.
    publish_all(&nats.url(), subject, originals[..100].to_vec());
    wait_until("100 messages in flight", CONVERGE, || {
        metrics.in_flight.get() == 100
    });
    assert_eq!(
        metrics.acked_total.get(),
        0,
        "acknowledged before the commit"
    );
    assert_eq!(
        consumer_pending(&nats.url(), &durable).map(|(ack_pending, _)| ack_pending),
        Some(100)
    );
    let outputs = sentrypeer::config::OutputConfig {
        json_log_file: None,
        syslog: false,
        syslog_socket: "/nonexistent".into(),
        verified_only: false,
    };
    let writer =
        sentrypeer::store::writer::spawn_writer(store.clone(), receiver, &outputs, &config)
            .expect("writer");
    wait_until(
        "the first 100 acknowledged after their commit",
        CONVERGE,
        || metrics.acked_total.get() == 100,
    );
    let mut payloads = originals[100..].to_vec();
    payloads.extend(originals.iter().step_by(10).cloned());
    payloads.push(fleet_event(node, now, 0, "198.51.100.20"));
    publish_all(&nats.url(), subject, payloads);
    wait_until("every message settled", CONVERGE, || {
        metrics.acked_total.get() >= 1_101
    });
    assert_eq!(metrics.stored_total.get(), 1_000);
    assert_eq!(metrics.duplicate_total.get(), 100);
    assert_eq!(metrics.ignored_source_total.get(), 1);
    assert_eq!((metrics.rejected(), metrics.in_flight.get()), (0, 0));
    let reader = store.read().expect("read");
    assert_eq!(reader.totals().expect("totals").events, 1_000);
    drop(reader);
    wait_until("the server saw every acknowledgement", CONVERGE, || {
        consumer_pending(&nats.url(), &durable) == Some((0, 0))
    });
    hub.stop();
    writer.join();
}

/// A hub whose server is not there: it starts (the server is dialled in the background), its
/// API answers, and SIGTERM ends it at once with success, not after a JetStream request's
/// timeout (5 s).
#[test]
fn nats_fleet_hub_without_server_stops_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = format!("nats://127.0.0.1:{}", crate::support::free_port());
    let hub = Launch::new(dir.path())
        .arg(&["-R", "--nats-ingest", "--nats-url", &nowhere])
        .start();
    assert_eq!(hub.metric("sentrypeer_nats_ingest_received_total"), 0);
    let asked = Instant::now();
    let (status, stderr) = hub.stop();
    assert!(status.success(), "{status}; stderr: {stderr}");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "stop took {:?}; stderr: {stderr}",
        asked.elapsed()
    );
}
