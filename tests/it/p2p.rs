//! Several P2P nodes in one process on 127.0.0.1 (port 0), each with its own tempdir store and
//! writer; a raw libp2p gossipsub swarm plays the hostile peer. Every wait has a deadline.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, noise, tcp, yamux};
use sentrypeer::config::limits::P2P_MESSAGE_BYTES_MAX;
use sentrypeer::config::{OutputConfig, P2pConfig};
use sentrypeer::event::timestamp::{format_timestamp, now_ns};
use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
use sentrypeer::ignore::{IgnoreList, parse_cidr};
use sentrypeer::p2p::entry::{WireEntry, WireMessage};
use sentrypeer::p2p::{self, EntryError, P2pHandle, TOPIC};
use sentrypeer::store::{Store, WriterHandle, spawn_writer};
use tempfile::TempDir;
use uuid::Uuid;

const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

pub(crate) struct Node {
    store: Store,
    sender: Option<Sender<Event>>,
    writer: Option<WriterHandle>,
    p2p: Option<P2pHandle>,
    _dir: TempDir,
}

impl Node {
    pub(crate) fn start(listen: SocketAddr, bootstrap: &str) -> Self {
        Self::start_ignoring(listen, bootstrap, IgnoreList::default())
    }

    /// [`Node::start`] with an `--ignore-ip` list.
    fn start_ignoring(listen: SocketAddr, bootstrap: &str, ignore_ip: IgnoreList) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::support::store_config(dir.path(), 256);
        let store = Store::open(&config).unwrap();
        let (sender, receiver) = crossbeam_channel::bounded(65_536);
        let outputs = OutputConfig {
            json_log_file: None,
            syslog: false,
            syslog_socket: sentrypeer::config::defaults::SYSLOG_SOCKET.into(),
            verified_only: false,
        };
        let writer = spawn_writer(store.clone(), receiver, &outputs, &config).unwrap();
        let p2p_config = P2pConfig {
            enabled: true,
            listen,
            bootstrap: bootstrap.to_owned(),
            ignore_ip,
            verified_only: false,
        };
        let p2p = p2p::start(
            &p2p_config,
            store.clone(),
            sender.clone(),
            writer.commits(),
            false,
        )
        .unwrap();
        Self {
            store,
            sender: Some(sender),
            writer: Some(writer),
            p2p: Some(p2p),
            _dir: dir,
        }
    }

    /// Stops the P2P node and starts a new one on the same store and writer.
    fn restart_p2p(&mut self, bootstrap: &str) {
        if let Some(p2p) = self.p2p.take() {
            p2p.stop();
        }
        let config = P2pConfig {
            enabled: true,
            listen: "127.0.0.1:0".parse().unwrap(),
            bootstrap: bootstrap.to_owned(),
            ignore_ip: Default::default(),
            verified_only: false,
        };
        let commits = self.writer.as_ref().unwrap().commits();
        let sender = self.sender.clone().unwrap();
        self.p2p = Some(p2p::start(&config, self.store.clone(), sender, commits, false).unwrap());
    }

    fn cursor(&self) -> u64 {
        self.store.read().unwrap().cursor(p2p::CURSOR).unwrap()
    }

    fn any_port() -> Self {
        Self::start("127.0.0.1:0".parse().unwrap(), "")
    }

    fn p2p(&self) -> &P2pHandle {
        self.p2p.as_ref().unwrap()
    }

    fn address(&self) -> String {
        self.p2p()
            .listen_addrs()
            .into_iter()
            .next()
            .expect("a listen address")
    }

    fn feed(&self, event: Event) {
        self.sender.as_ref().unwrap().send(event).unwrap();
    }

    fn node_id(&self) -> Uuid {
        self.store.node_id()
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        let reader = self.store.read().unwrap();
        reader
            .events_after(0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    fn count_uuid(&self, uuid: Uuid) -> usize {
        self.events().iter().filter(|e| e.uuid == uuid).count()
    }

    pub(crate) fn topic_peers(&self) -> u64 {
        self.p2p().metrics().topic_peers.get()
    }

    /// Waits until this peer and the `node` binary (dialled as the bootstrap) see each other on
    /// the topic. A minute: on a loaded 2-core CI machine, among the NATS and kamailio tests, 30 s
    /// once did not suffice (twice in three runs); the failure says where it stopped.
    pub(crate) fn wait_on_topic_with(&self, node: &crate::support::Node) {
        let topic = "sentrypeer_p2p_topic_peers";
        crate::support::wait_until_explained(
            Duration::from_secs(60),
            || self.topic_peers() >= 1 && node.metric(topic) >= 1,
            || {
                format!(
                    "the peer and the binary not on the topic within 60 s: this peer's connected \
                     peers {}, topic peers {}, bootstrap failures {}; the binary's peers {}, \
                     topic peers {}; its stderr:\n{}",
                    self.p2p().metrics().peers.get(),
                    self.topic_peers(),
                    self.p2p().metrics().bootstrap_failures_total.get(),
                    node.metric("sentrypeer_p2p_peers"),
                    node.metric(topic),
                    node.stderr()
                )
            },
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(p2p) = self.p2p.take() {
            p2p.stop();
        }
        self.sender.take();
        if let Some(writer) = self.writer.take() {
            writer.join();
        }
    }
}

fn local_event(node: Uuid, ip: IpAddr, number: &str) -> Event {
    let message = format!("INVITE sip:{number}@192.0.2.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n");
    Event::new(&EventParts {
        timestamp_ns: now_ns(),
        uuid: Uuid::new_v4(),
        node_id: node,
        transport: Transport::Udp,
        collected_method: CollectedMethod::Responsive,
        source: SocketAddr::new(ip, 5060),
        destination: "192.0.2.1:5060".parse().unwrap(),
        method: b"INVITE",
        called_number: Some(number.as_bytes()),
        user_agent: Some(b"friendly-scanner"),
        message: message.as_bytes(),
        source_verified: false,
        auth_username: None,
    })
}

/// Slack on every wait: the whole suite runs in parallel on 2-core CI machines, where libp2p's
/// heartbeats and handshakes can be starved for seconds. The spec's propagation time is measured
/// by `perf/p2p.sh`, not here.
const WAIT_SLACK: u32 = 3;

fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + deadline * WAIT_SLACK;
    while !condition() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn p2p_three_nodes_share_events() {
    let a = Node::any_port();
    let b = Node::start("127.0.0.1:0".parse().unwrap(), &a.address());
    let c = Node::start("127.0.0.1:0".parse().unwrap(), &a.address());
    assert_ne!(a.p2p().peer_id(), b.p2p().peer_id());
    assert!(a.address().contains("/tcp/") && !a.address().contains("/tcp/0/"));
    wait_for("peers on the topic", CONNECT_DEADLINE, || {
        a.topic_peers() >= 2 && b.topic_peers() >= 1 && c.topic_peers() >= 1
    });
    let event = local_event(c.node_id(), "203.0.113.9".parse().unwrap(), "0044123");
    let uuid = event.uuid;
    let fed = Instant::now();
    c.feed(event);
    wait_for("the event on A and B", Duration::from_secs(5), || {
        a.count_uuid(uuid) == 1 && b.count_uuid(uuid) == 1
    });
    eprintln!("propagation to A and B: {:?}", fed.elapsed());
    for node in [&a, &b] {
        let stored: Vec<Event> = node
            .events()
            .into_iter()
            .filter(|e| e.uuid == uuid)
            .collect();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].node_id, c.node_id());
        assert_eq!(stored[0].called_number(), Some(&b"0044123"[..]));
        assert_eq!(stored[0].collected_method, CollectedMethod::Responsive);
    }
    assert_no_echo(&a, &b, &c, uuid);
}

/// Proves by ordering, not by time, that nobody re-published C's event `uuid`: each node then
/// publishes a marker of its own, and every node waits for the other two markers. A node's
/// reader and outbox publish in store order, and gossipsub delivers one peer's messages in
/// order on every route, so an echo of `uuid` would have been handled (counted as a duplicate
/// or an own-id rejection, or re-published) before the markers arrive.
fn assert_no_echo(a: &Node, b: &Node, c: &Node, uuid: Uuid) {
    let nodes = [a, b, c];
    let markers: Vec<Uuid> = nodes
        .iter()
        .zip(1u8..)
        .map(|(node, i)| {
            let marker = local_event(node.node_id(), IpAddr::from([198, 51, 100, i]), "7777");
            let uuid = marker.uuid;
            node.feed(marker);
            uuid
        })
        .collect();
    let all_markers = || {
        nodes
            .iter()
            .all(|node| markers.iter().all(|m| node.count_uuid(*m) == 1))
    };
    // An echo shows as a duplicate or as a rejection (C refuses its own event): stop at one.
    let echo_seen = || {
        nodes.iter().any(|node| {
            let metrics = node.p2p().metrics();
            metrics.duplicates_total.get() > 0 || metrics.rejected_total() > 0
        })
    };
    wait_for(
        "every marker on every node",
        Duration::from_secs(10),
        || echo_seen() || all_markers(),
    );
    for (node, name) in nodes.iter().zip(["A", "B", "C"]) {
        assert_eq!(node.count_uuid(uuid), 1, "{name} stored C's event twice");
        let metrics = node.p2p().metrics();
        assert_eq!(metrics.duplicates_total.get(), 0, "{name} saw an echo");
        assert_eq!(metrics.rejected_total(), 0, "{name} rejected an echo");
    }
    assert!(all_markers());
    // A and B published only their markers; C its event and its marker.
    for (node, published) in [(a, 1), (b, 1), (c, 2)] {
        let metrics = node.p2p().metrics();
        assert_eq!(metrics.entries_out_total.get(), published);
        assert_eq!(metrics.messages_out_total.get(), published);
    }
    let mut text = String::new();
    sentrypeer::metrics::Render::render(&*a.p2p().metrics(), &mut text);
    // C's event and the markers of B and C.
    assert!(
        text.contains("sentrypeer_p2p_entries_in_total 3\n"),
        "{text}"
    );
    assert!(text.contains("sentrypeer_p2p_messages_rejected_total{reason=\"future\"} 0\n"));
}

#[test]
fn p2p_unreachable_bootstrap_does_not_delay_and_joins_later() {
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let b = Node::start("127.0.0.1:0".parse().unwrap(), &format!("127.0.0.1:{port}"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "start-up waited on the bootstrap"
    );
    let event = local_event(b.node_id(), "198.51.100.7".parse().unwrap(), "100");
    let uuid = event.uuid;
    let fed = Instant::now();
    b.feed(event);
    wait_for("the local event stored", Duration::from_secs(2), || {
        b.count_uuid(uuid) == 1
    });
    assert!(fed.elapsed() < Duration::from_secs(2));
    // Let a few dials fail, then bring the bootstrap node up on that port.
    wait_for("failed bootstrap dials", Duration::from_secs(10), || {
        b.p2p().metrics().bootstrap_failures_total.get() >= 2
    });
    let a = Node::start(SocketAddr::from(([127, 0, 0, 1], port)), "");
    wait_for("B's pending event on A", Duration::from_secs(20), || {
        a.count_uuid(uuid) == 1
    });
    assert_eq!(a.events()[0].node_id, b.node_id());
}

#[test]
fn p2p_listen_address_in_use_is_an_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&crate::support::store_config(dir.path(), 16)).unwrap();
    let (sender, _receiver) = crossbeam_channel::bounded(16);
    let config = P2pConfig {
        enabled: true,
        listen: taken.local_addr().unwrap(),
        bootstrap: String::new(),
        ignore_ip: Default::default(),
        verified_only: false,
    };
    let commits = std::sync::Arc::new(sentrypeer::store::CommitWatch::default());
    let started = Instant::now();
    let result = p2p::start(&config, store.clone(), sender, commits, false);
    assert!(
        matches!(result, Err(p2p::P2pError::Listen { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let key = dir.path().join("sentrypeer.db.p2p.key");
    assert!(key.exists(), "the node key is kept beside the store");
}

#[test]
fn p2p_pending_entries_survive_a_restart() {
    let mut x = Node::any_port();
    let fed: Vec<Event> = (1..=3u8)
        .map(|i| local_event(x.node_id(), IpAddr::from([192, 0, 2, i]), "77"))
        .collect();
    let uuids: Vec<Uuid> = fed.iter().map(|e| e.uuid).collect();
    for event in fed {
        x.feed(event);
    }
    wait_for("local events stored", Duration::from_secs(2), || {
        uuids.iter().all(|u| x.count_uuid(*u) == 1)
    });
    let metrics = x.p2p().metrics();
    wait_for("entries pending (no peers)", Duration::from_secs(5), || {
        metrics.pending_entries.get() == 3
    });
    // Nothing was published, so the saved cursor stays before the events.
    x.restart_p2p("");
    assert_eq!(x.cursor(), 0, "cursor advanced past unpublished events");
    let y = Node::any_port();
    x.restart_p2p(&y.address());
    wait_for("the pending events on Y", Duration::from_secs(15), || {
        uuids.iter().all(|u| y.count_uuid(*u) == 1)
    });
    let last = x.store.read().unwrap().last_key().unwrap();
    wait_for("the cursor saved", Duration::from_secs(5), || {
        x.cursor() == last
    });
}

/// A raw gossipsub swarm: connects to `target`, waits for its subscription, publishes
/// `payloads` in order and keeps the connection up until `done()` (at most 15 s).
fn hostile_publish(target: &str, payloads: Vec<Vec<u8>>, done: &dyn Fn() -> bool) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let config = gossipsub::ConfigBuilder::default()
            .max_transmit_size(1 << 20)
            .validation_mode(gossipsub::ValidationMode::Permissive)
            .heartbeat_interval(Duration::from_millis(200))
            .build()
            .unwrap();
        let behaviour: gossipsub::Behaviour = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(keypair.clone()),
            config,
        )
        .unwrap();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| behaviour)
            .unwrap()
            .build();
        let topic = IdentTopic::new(TOPIC);
        swarm.dial(target.parse::<Multiaddr>().unwrap()).unwrap();
        let deadline = tokio::time::Instant::now() + CONNECT_DEADLINE;
        loop {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .expect("the victim's subscription");
            if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { .. }) = event {
                break;
            }
        }
        let mut published = 0;
        for (i, payload) in payloads.into_iter().enumerate() {
            if swarm
                .behaviour_mut()
                .publish(topic.clone(), payload)
                .is_ok()
            {
                published += 1;
            }
            if i % 100 == 99 {
                // Keep the swarm moving so the sends drain.
                let _ =
                    tokio::time::timeout(Duration::from_millis(1), swarm.select_next_some()).await;
            }
        }
        // Keep the connection up until the victim shows the effect (or a deadline passes).
        let linger = tokio::time::Instant::now() + CONNECT_DEADLINE;
        while !done() && tokio::time::Instant::now() < linger {
            let step = tokio::time::Instant::now() + Duration::from_millis(20);
            while tokio::time::timeout_at(step, swarm.select_next_some())
                .await
                .is_ok()
            {}
        }
        published
    })
}

fn wire_entry(node: Uuid, ip: &str, timestamp_ns: u64) -> WireEntry {
    WireEntry {
        event_uuid: Uuid::new_v4().to_string(),
        created_by_node_id: node.to_string(),
        event_timestamp: format_timestamp(timestamp_ns),
        collected_method: "passive".into(),
        transport_type: "UDP".into(),
        source_ip: ip.into(),
        destination_ip: "192.0.2.1".into(),
        called_number: "999".into(),
        sip_method: "REGISTER".into(),
        sip_user_agent: "hostile".into(),
        sip_message: None,
        count: 1,
        source_verified: false,
    }
}

fn wire(entries: Vec<WireEntry>) -> Vec<u8> {
    serde_json::to_vec(&WireMessage { v: 1, entries }).unwrap()
}

/// Entries naming a source in the receiver's `--ignore-ip` list are dropped and counted; the
/// other entry of the same message is stored. Absence by order: the kept entry comes after the
/// ignored ones in the message, so once it is stored they would have been too.
#[test]
fn p2p_entries_naming_an_ignored_source_dropped() {
    let ignore = IgnoreList::new(
        ["192.0.2.0/24", "2001:db8::/32"]
            .map(parse_cidr)
            .into_iter()
            .flatten(),
    );
    let a = Node::start_ignoring("127.0.0.1:0".parse().unwrap(), "", ignore);
    let metrics = a.p2p().metrics();
    let hostile_node = Uuid::new_v4();
    let now = now_ns();
    let kept = wire_entry(hostile_node, "203.0.113.9", now);
    let kept_uuid: Uuid = kept.event_uuid.parse().unwrap();
    let entries = vec![
        wire_entry(hostile_node, "192.0.2.9", now),
        wire_entry(hostile_node, "2001:db8::9", now),
        kept,
    ];
    let published = hostile_publish(&a.address(), vec![wire(entries)], &|| {
        metrics.entries_in_total.get() >= 1
    });
    assert_eq!(published, 1);
    wait_for("the kept entry", Duration::from_secs(10), || {
        a.count_uuid(kept_uuid) == 1
    });
    let sources: Vec<IpAddr> = a.events().iter().map(|e| e.source.ip()).collect();
    assert_eq!(sources, ["203.0.113.9".parse::<IpAddr>().unwrap()]);
    assert_eq!(metrics.ignored_sources_total.get(), 2);
    assert_eq!(metrics.entries_in_total.get(), 1);
    let mut text = String::new();
    sentrypeer::metrics::Render::render(&*metrics, &mut text);
    assert!(
        text.contains("sentrypeer_p2p_ignored_source_total 2\n"),
        "{text}"
    );
}

#[test]
fn p2p_hostile_peer_rejected_honest_events_arrive() {
    let a = Node::any_port();
    let c = Node::start("127.0.0.1:0".parse().unwrap(), &a.address());
    let metrics = a.p2p().metrics();
    let target = a.address();
    let hostile_node = Uuid::new_v4();
    let now = now_ns();
    hostile_invalid_messages_rejected(&a, hostile_node, now);

    // The same valid entry delivered twice (two messages): stored once.
    let twice = wire_entry(hostile_node, "192.0.2.77", now);
    let twice_uuid: Uuid = twice.event_uuid.parse().unwrap();
    let payload = wire(vec![twice]);
    let messages_before = metrics.messages_in_total.get();
    assert_eq!(
        hostile_publish(&target, vec![payload.clone(), payload], &|| {
            metrics.messages_in_total.get() >= messages_before + 2
        }),
        2
    );
    wait_for("the valid entry", Duration::from_secs(5), || {
        a.count_uuid(twice_uuid) == 1
    });

    // A flood of valid messages: over the per-peer rate they are ignored and counted.
    let flood: Vec<Vec<u8>> = (0..3_000)
        .map(|_| wire(vec![wire_entry(hostile_node, "192.0.2.88", now)]))
        .collect();
    hostile_publish(&target, flood, &|| metrics.rate_limited_total.get() > 0);
    assert!(
        metrics.rate_limited_total.get() > 0,
        "the flood was not rate limited"
    );

    // The honest node still gets through.
    wait_for("C on the topic", CONNECT_DEADLINE, || c.topic_peers() >= 1);
    let honest = local_event(c.node_id(), "203.0.113.50".parse().unwrap(), "4242");
    let honest_uuid = honest.uuid;
    c.feed(honest);
    wait_for("the honest event", Duration::from_secs(10), || {
        a.count_uuid(honest_uuid) == 1
    });
    assert_flood_stored_clean(&a);
    assert_eq!(a.count_uuid(twice_uuid), 1);
    assert!(metrics.rejected_total() >= 5);
}

/// Each kind of invalid message from a hostile peer is rejected and counted on `a`.
fn hostile_invalid_messages_rejected(a: &Node, hostile_node: Uuid, now: u64) {
    let metrics = a.p2p().metrics();
    let target = a.address();
    // One fresh identity per kind, so graylisting after rejections does not hide the next kind.
    assert_eq!(
        hostile_publish(&target, vec![b"{not json".to_vec()], &|| {
            metrics.rejected(EntryError::Malformed) == 1
        }),
        1
    );
    let own = wire(vec![wire_entry(a.node_id(), "192.0.2.66", now)]);
    assert_eq!(
        hostile_publish(&target, vec![own], &|| {
            metrics.rejected(EntryError::OwnNodeId) == 1
        }),
        1
    );
    let future = wire(vec![wire_entry(
        hostile_node,
        "192.0.2.66",
        now + 3_600_000_000_000,
    )]);
    assert_eq!(
        hostile_publish(&target, vec![future], &|| {
            metrics.rejected(EntryError::Future) == 1
        }),
        1
    );
    let mut big = wire_entry(hostile_node, "192.0.2.66", now);
    big.sip_message = Some("x".repeat(3_000));
    assert_eq!(
        hostile_publish(&target, vec![wire(vec![big])], &|| {
            metrics.rejected(EntryError::EntryTooLarge) == 1
        }),
        1
    );
    // Over P2P_MESSAGE_BYTES_MAX but under gossipsub's frame cap.
    let mut padded = wire_entry(hostile_node, "192.0.2.66", now);
    padded.sip_message = Some(String::new());
    let base = wire(vec![padded.clone()]).len();
    padded.sip_message = Some("z".repeat(P2P_MESSAGE_BYTES_MAX + 200 - base));
    assert_eq!(
        hostile_publish(&target, vec![wire(vec![padded])], &|| {
            metrics.rejected(EntryError::MessageTooLarge) == 1
        }),
        1
    );
    // Beyond gossipsub's frame cap: dropped by the victim's codec. This absence is checked
    // after a bounded linger, not by ordering: a valid marker published after the frame on the
    // same connection never arrives either (tried: the codec error ends that stream).
    let mut huge = wire_entry(hostile_node, "192.0.2.66", now);
    huge.sip_message = Some("y".repeat(70_000));
    let bytes_before = metrics.bytes_in_total.get();
    let until = Instant::now() + Duration::from_millis(1_500);
    hostile_publish(&target, vec![wire(vec![huge])], &|| Instant::now() > until);
    assert_eq!(
        metrics.bytes_in_total.get(),
        bytes_before,
        "an over-cap frame reached the app"
    );
    wait_for("rejections counted", Duration::from_secs(5), || {
        metrics.rejected(EntryError::Malformed) == 1
            && metrics.rejected(EntryError::OwnNodeId) == 1
            && metrics.rejected(EntryError::Future) == 1
            && metrics.rejected(EntryError::EntryTooLarge) == 1
            && metrics.rejected(EntryError::MessageTooLarge) == 1
    });
}

/// After the hostile flood: A stored fewer than the flood and nothing invalid.
fn assert_flood_stored_clean(a: &Node) {
    let metrics = a.p2p().metrics();
    // Every hostile connection is closed (so no more of its messages can come), and every
    // entry A handed to its writer is stored: then the store is final for the checks below.
    wait_for(
        "the flood settled in A's store",
        Duration::from_secs(10),
        || {
            let handed = metrics.entries_in_total.get()
                - metrics.duplicates_total.get()
                - metrics.events_dropped_total.get();
            metrics.peers.get() == 1 && a.events().len() as u64 == handed
        },
    );
    let stored = a.events();
    let flood_stored = stored
        .iter()
        .filter(|e| e.source.ip() == "192.0.2.88".parse::<IpAddr>().unwrap())
        .count();
    assert!(flood_stored < 3_000, "the flood was rate limited");
    for event in &stored {
        assert_ne!(
            event.node_id,
            a.node_id(),
            "an entry with A's own id was stored"
        );
        assert!(event.timestamp_ns <= now_ns(), "a future event was stored");
        assert_ne!(
            event.source.ip(),
            "192.0.2.66".parse::<IpAddr>().unwrap(),
            "an invalid entry was stored"
        );
        assert!(event.message().len() <= 1024);
    }
}

#[test]
fn p2p_bandwidth_bounded_by_coalescing() {
    let x = Node::any_port();
    let y = Node::start("127.0.0.1:0".parse().unwrap(), &x.address());
    wait_for("peers on the topic", CONNECT_DEADLINE, || {
        x.topic_peers() >= 1 && y.topic_peers() >= 1
    });
    let ips: Vec<IpAddr> = (0..50u8)
        .map(|i| IpAddr::from([198, 51, 100, i + 1]))
        .collect();
    let numbers = ["100", "200", "0044", "999"];
    let total = 20_000;
    let start = Instant::now();
    for i in 0..total {
        let ip = ips[i % ips.len()];
        let number = numbers[(i / ips.len()) % numbers.len()];
        x.feed(local_event(x.node_id(), ip, number));
        if i % 200 == 199 {
            // 2,000 events a second for 10 s.
            let due = start + Duration::from_millis(i.div_ceil(2) as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let expected: HashSet<(IpAddr, Vec<u8>)> = ips
        .iter()
        .flat_map(|ip| numbers.iter().map(|n| (*ip, n.as_bytes().to_vec())))
        .collect();
    let metrics = x.p2p().metrics();
    wait_for("all events published", Duration::from_secs(20), || {
        metrics.entries_out_events_total.get() == total as u64
    });
    wait_for(
        "every (IP, number) pair on Y",
        Duration::from_secs(10),
        || {
            let seen: HashSet<(IpAddr, Vec<u8>)> = y
                .events()
                .iter()
                .filter(|e| e.node_id == x.node_id())
                .map(|e| {
                    (
                        e.source.ip(),
                        e.called_number().unwrap_or_default().to_vec(),
                    )
                })
                .collect();
            seen == expected
        },
    );
    let y_metrics = y.p2p().metrics();
    wait_for("Y counted every event", Duration::from_secs(5), || {
        y_metrics.entries_in_events_total.get() == total as u64
    });
    let messages = metrics.messages_out_total.get();
    let bytes = metrics.bytes_out_total.get();
    eprintln!(
        "bandwidth: {total} events -> {messages} messages, {} entries, {bytes} bytes",
        metrics.entries_out_total.get()
    );
    assert!(messages < 1_000, "{messages} messages");
    assert!(bytes < 2_000_000, "{bytes} bytes");
}

/// Measurement for `perf/p2p.sh` (not a correctness test): propagation time of single events
/// and bytes per shared event, unique and repeated traffic.
#[test]
#[ignore = "measurement; run by perf/p2p.sh"]
fn p2p_bench_propagation_and_bytes() {
    let x = Node::any_port();
    let y = Node::start("127.0.0.1:0".parse().unwrap(), &x.address());
    wait_for("peers on the topic", CONNECT_DEADLINE, || {
        x.topic_peers() >= 1 && y.topic_peers() >= 1
    });
    let mut times = Vec::new();
    for i in 0..10u8 {
        let event = local_event(x.node_id(), IpAddr::from([203, 0, 113, i]), "1");
        let uuid = event.uuid;
        let fed = Instant::now();
        x.feed(event);
        wait_for("propagation", Duration::from_secs(10), || {
            y.count_uuid(uuid) == 1
        });
        times.push(fed.elapsed());
    }
    times.sort();
    println!(
        "propagation single event: min {:?} median {:?} max {:?} (includes the {:?} coalescing window)",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1],
        sentrypeer::config::limits::P2P_COALESCE_WINDOW
    );
    let metrics = x.p2p().metrics();
    let runs: [(&str, usize, usize); 2] = [
        ("unique sources", 5_000, 5_000),
        ("repeated (50 sources)", 20_000, 50),
    ];
    for (name, events, sources) in runs {
        let bytes_before = metrics.bytes_out_total.get();
        let messages_before = metrics.messages_out_total.get();
        let published_before = metrics.entries_out_events_total.get();
        let start = Instant::now();
        for i in 0..events {
            let ip = IpAddr::from([
                10,
                (i % sources / 65_536) as u8,
                (i % sources / 256 % 256) as u8,
                (i % sources % 256) as u8,
            ]);
            x.feed(local_event(x.node_id(), ip, "100"));
        }
        wait_for("all published", Duration::from_secs(60), || {
            metrics.entries_out_events_total.get() - published_before == events as u64
        });
        let bytes = metrics.bytes_out_total.get() - bytes_before;
        let messages = metrics.messages_out_total.get() - messages_before;
        println!(
            "{name}: {events} events in {:?}: {messages} messages, {bytes} payload bytes, {:.1} bytes/event",
            start.elapsed(),
            bytes as f64 / events as f64
        );
    }
}
