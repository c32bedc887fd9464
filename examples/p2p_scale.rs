//! P2P at scale (not a test; `perf/p2p-scale.sh` runs it): N libp2p nodes in one process on
//! libp2p's in-memory transport (or loopback TCP), each built from the production behaviour (`sentrypeer::p2p::behaviour`: the same
//! gossipsub configuration, message id, validation mode, peer scoring and topic, transport and
//! discovery as `sentrypeer -p`). Every node bootstraps through node 0 as a fleet sharing one
//! `-b` address would; Kademlia finds the rest. Once every mesh holds at least `mesh_n_low`
//! peers and the connection counts have settled, EVENTS real wire messages (one event each, packed by the production `Outbox`) are
//! published from random nodes at RATE per second. Receivers validate them with the production
//! `parse_message` and report Accept, as the node does.
//!
//! Prints one JSON object: delivery ratio, propagation p50/p99/max (publish call to the
//! receiver's gossipsub event), duplicates per message per receiver (gossipsub's own metrics:
//! messages received before minus after its duplicate filter), and bytes per event (libp2p's
//! bandwidth metrics: bytes through all the nodes' substreams, all protocols, during the
//! publishing phase).
//!
//! Usage: `cargo run --release --example p2p_scale -- NODES EVENTS RATE_PER_SECOND [memory|tcp]`
//!
//! Never: listens on or dials anything but 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::identity::Keypair;
use libp2p::metrics::Registry;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, Transport as _, identify, kad, noise, yamux};
use sentrypeer::event::timestamp::now_ns;
use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
use sentrypeer::p2p::behaviour::{self, Behaviour, BehaviourEvent};
use sentrypeer::p2p::outbox::Outbox;
use sentrypeer::p2p::parse_message;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// How long the meshes may take to form.
const MESH_WAIT: Duration = Duration::from_secs(30);
/// How long after the last publish deliveries are waited for.
const DRAIN_WAIT: Duration = Duration::from_secs(15);
/// The first bootstrap back-off of the node (`P2P_BOOTSTRAP_BACKOFF_MIN`).
const BOOTSTRAP_RETRY: Duration = sentrypeer::config::limits::P2P_BOOTSTRAP_BACKOFF_MIN;
/// How long connection counts must stay unchanged before publishing starts.
const SETTLE_QUIET: Duration = Duration::from_secs(5);
/// How long the fleet may take to settle.
const SETTLE_WAIT: Duration = Duration::from_secs(60);
/// How often a node refreshes its connection and mesh counts.
const STATS_TICK: Duration = Duration::from_millis(200);

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A node's counts, read by the controller while it runs.
#[derive(Default)]
struct Live {
    connected: AtomicUsize,
    mesh: AtomicUsize,
}

/// Counters read from a node's Prometheus registry.
#[derive(Default, Clone, Copy)]
struct Counters {
    /// Messages gossipsub received, duplicates included.
    received_all: u64,
    /// Messages that passed its duplicate filter.
    received_first: u64,
    /// Bytes of those messages, duplicates included.
    received_all_bytes: u64,
    /// Bytes written / read on the node's substreams.
    bytes_out: u64,
    bytes_in: u64,
}

enum Command {
    Publish { uuid: Uuid, payload: Vec<u8> },
    Snapshot(oneshot::Sender<Counters>),
    Stop,
}

/// What a node saw: (event UUID, when) for its publishes (with the outcome) and its receipts.
#[derive(Default)]
struct Seen {
    published: Vec<(Uuid, Instant, bool)>,
    received: Vec<(Uuid, Instant)>,
}

struct Node {
    swarm: Swarm<Behaviour>,
    registry: Registry,
    node_id: Uuid,
    bootstrap: Option<(PeerId, Multiaddr)>,
    live: Arc<Live>,
    delivered: Arc<AtomicU64>,
    seen: Seen,
    last_dial: Instant,
}

/// Sums the samples of `name` (exact metric name) whose labels contain `label`.
fn sum_metric(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            let (metric, labels) = key.split_once('{').unwrap_or((key, ""));
            (metric == name && labels.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .sum()
}

fn counters(registry: &Registry) -> Counters {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return Counters::default();
    }
    Counters {
        received_all: sum_metric(&text, "topic_msg_recv_counts_unfiltered_total", ""),
        received_first: sum_metric(&text, "topic_msg_recv_counts_total", ""),
        received_all_bytes: sum_metric(&text, "topic_msg_recv_bytes_unfiltered_total", ""),
        bytes_out: sum_metric(
            &text,
            "libp2p_bandwidth_bytes_total",
            "direction=\"Outbound\"",
        ),
        bytes_in: sum_metric(
            &text,
            "libp2p_bandwidth_bytes_total",
            "direction=\"Inbound\"",
        ),
    }
}

/// Where the nodes talk: libp2p's in-memory transport, or TCP on 127.0.0.1. Both carry the
/// production noise and yamux upgrades.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Memory,
    Tcp,
}

/// A production node with metrics, listening on an ephemeral in-memory or loopback port.
async fn spawn_swarm(wire: Wire) -> Result<(Swarm<Behaviour>, Registry, Multiaddr), Error> {
    let keypair = Keypair::generate_ed25519();
    let mut registry = Registry::default();
    let behaviour = behaviour::build(&keypair, |gossipsub| {
        gossipsub.with_metrics(&mut registry, gossipsub::MetricsConfig::default())
    })?;
    let builder = libp2p::SwarmBuilder::with_existing_identity(keypair).with_tokio();
    let (mut swarm, listen) = match wire {
        Wire::Tcp => {
            let swarm = builder
                .with_tcp(
                    behaviour::tcp_config(),
                    noise::Config::new,
                    yamux::Config::default,
                )?
                .with_bandwidth_metrics(&mut registry)
                .with_behaviour(|_| behaviour)?
                .with_swarm_config(behaviour::swarm_config)
                .build();
            (swarm, SocketAddr::from(([127, 0, 0, 1], 0)).to_multiaddr())
        }
        Wire::Memory => {
            let swarm = builder
                .with_other_transport(|key| {
                    Ok::<_, Error>(
                        MemoryTransport::default()
                            .upgrade(Version::V1Lazy)
                            .authenticate(noise::Config::new(key)?)
                            .multiplex(yamux::Config::default()),
                    )
                })?
                .with_bandwidth_metrics(&mut registry)
                .with_behaviour(|_| behaviour)?
                .with_swarm_config(behaviour::swarm_config)
                .build();
            (swarm, Multiaddr::empty().with(Protocol::Memory(0)))
        }
    };
    swarm.listen_on(listen)?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            let address = address.with(Protocol::P2p(*swarm.local_peer_id()));
            return Ok((swarm, registry, address));
        }
    }
}

trait ToMultiaddr {
    fn to_multiaddr(&self) -> Multiaddr;
}

impl ToMultiaddr for SocketAddr {
    fn to_multiaddr(&self) -> Multiaddr {
        Multiaddr::empty()
            .with(Protocol::from(self.ip()))
            .with(Protocol::Tcp(self.port()))
    }
}

impl Node {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) -> Seen {
        if let Some((_, address)) = &self.bootstrap {
            self.last_dial = Instant::now();
            let _ = self.swarm.dial(address.clone());
        }
        let mut tick = tokio::time::interval(STATS_TICK);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Publish { uuid, payload }) => self.publish(uuid, payload),
                    Some(Command::Snapshot(reply)) => {
                        let _ = reply.send(counters(&self.registry));
                    }
                    Some(Command::Stop) | None => break,
                },
                event = self.swarm.select_next_some() => self.handle(event),
                _ = tick.tick() => {
                    self.redial_bootstrap();
                    self.update_live();
                }
            }
        }
        self.seen
    }

    fn publish(&mut self, uuid: Uuid, payload: Vec<u8>) {
        let at = Instant::now();
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        let ok = gossipsub.publish(behaviour::topic(), payload).is_ok();
        self.seen.published.push((uuid, at, ok));
    }

    /// Dials the bootstrap peer until connected (its pending-incoming limit refuses some of a
    /// fleet that starts at once; the node retries after a back-off too).
    fn redial_bootstrap(&mut self) {
        if let Some((peer, address)) = &self.bootstrap
            && !self.swarm.is_connected(peer)
            && self.last_dial.elapsed() >= BOOTSTRAP_RETRY
        {
            self.last_dial = Instant::now();
            let _ = self.swarm.dial(address.clone());
        }
    }

    fn update_live(&mut self) {
        let topic = behaviour::topic().hash();
        let mesh = self.swarm.behaviour().gossipsub.mesh_peers(&topic).count();
        self.live.mesh.store(mesh, Ordering::Relaxed);
        let connected = self.swarm.connected_peers().count();
        self.live.connected.store(connected, Ordering::Relaxed);
    }

    fn handle(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if let Some((peer, address)) = self.bootstrap.take_if(|(p, _)| *p == peer_id) {
                    behaviour::on_bootstrap_connected(&mut self.swarm, peer, address);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.receive(propagation_source, &message_id, &message.data),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => behaviour::on_identify(&mut self.swarm, peer_id, info),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer,
                is_new_peer,
                ..
            })) => {
                behaviour::on_routing_updated(&mut self.swarm, peer, is_new_peer);
            }
            _ => {}
        }
    }

    fn receive(&mut self, source: PeerId, id: &gossipsub::MessageId, data: &[u8]) {
        let at = Instant::now();
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        match parse_message(data, self.node_id, now_ns()) {
            Ok(entries) => {
                gossipsub.report_message_validation_result(id, &source, MessageAcceptance::Accept);
                for entry in entries {
                    self.seen.received.push((entry.uuid, at));
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                gossipsub.report_message_validation_result(id, &source, MessageAcceptance::Reject);
            }
        }
    }
}

/// One event from `node_id` as the production node would publish it: a wire message made by
/// the `Outbox` (after its coalescing window).
fn wire_message(node_id: Uuid, uuid: Uuid, serial: u32) -> Vec<u8> {
    let now = now_ns();
    let [_, a, b, c] = serial.to_be_bytes();
    let called = format!("0044{serial:07}");
    let event = Event::new(&EventParts {
        timestamp_ns: now,
        uuid,
        node_id,
        transport: Transport::Udp,
        collected_method: CollectedMethod::Passive,
        source: SocketAddr::from(([10, a, b, c], 5060)),
        destination: SocketAddr::from(([198, 51, 100, 1], 5060)),
        method: b"INVITE",
        called_number: Some(called.as_bytes()),
        user_agent: Some(b"friendly-scanner"),
        message: b"INVITE sip:100@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060\r\n\r\n",
        source_verified: false,
        auth_username: None,
    });
    let window = Duration::from_secs(1);
    let mut outbox = Outbox::new(window, 0);
    outbox.handle_event(1, &event, now);
    let later = now + u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
    outbox
        .poll_message(later)
        .map(|b| b.payload)
        .unwrap_or_default()
}

struct Fleet {
    commands: Vec<mpsc::Sender<Command>>,
    tasks: Vec<tokio::task::JoinHandle<Seen>>,
    node_ids: Vec<Uuid>,
    live: Vec<Arc<Live>>,
    delivered: Arc<AtomicU64>,
}

async fn start_fleet(nodes: usize, wire: Wire) -> Result<Fleet, Error> {
    let delivered = Arc::new(AtomicU64::new(0));
    let mut fleet = Fleet {
        commands: Vec::new(),
        tasks: Vec::new(),
        node_ids: Vec::new(),
        live: Vec::new(),
        delivered: Arc::clone(&delivered),
    };
    let mut first: Option<(PeerId, Multiaddr)> = None;
    for _ in 0..nodes {
        let (swarm, registry, address) = spawn_swarm(wire).await?;
        let peer = *swarm.local_peer_id();
        let node_id = Uuid::new_v4();
        let live = Arc::new(Live::default());
        let node = Node {
            swarm,
            registry,
            node_id,
            bootstrap: first.clone(),
            live: Arc::clone(&live),
            delivered: Arc::clone(&delivered),
            seen: Seen::default(),
            last_dial: Instant::now(),
        };
        first.get_or_insert((peer, address));
        let (tx, rx) = mpsc::channel(64);
        fleet.tasks.push(tokio::spawn(node.run(rx)));
        fleet.commands.push(tx);
        fleet.node_ids.push(node_id);
        fleet.live.push(live);
    }
    Ok(fleet)
}

impl Fleet {
    /// Waits until every mesh holds `want` peers (or [`MESH_WAIT`]); the seconds it took.
    async fn wait_mesh(&self, want: usize) -> (f64, bool) {
        let started = Instant::now();
        let mut poll = tokio::time::interval(STATS_TICK);
        while started.elapsed() < MESH_WAIT {
            poll.tick().await;
            if self
                .live
                .iter()
                .all(|l| l.mesh.load(Ordering::Relaxed) >= want)
            {
                return (started.elapsed().as_secs_f64(), true);
            }
        }
        (started.elapsed().as_secs_f64(), false)
    }

    /// Waits until no node's connection count has changed for [`SETTLE_QUIET`] (Kademlia
    /// discovery has stopped dialing), or [`SETTLE_WAIT`]; the seconds it took.
    async fn wait_settled(&self) -> (f64, bool) {
        let started = Instant::now();
        let mut poll = tokio::time::interval(STATS_TICK);
        let mut last: Vec<usize> = Vec::new();
        let mut quiet_since = Instant::now();
        while started.elapsed() < SETTLE_WAIT {
            poll.tick().await;
            let now: Vec<usize> = self
                .live
                .iter()
                .map(|l| l.connected.load(Ordering::Relaxed))
                .collect();
            if now != last {
                last = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= SETTLE_QUIET {
                return (started.elapsed().as_secs_f64(), true);
            }
        }
        (started.elapsed().as_secs_f64(), false)
    }

    async fn snapshot(&self) -> Counters {
        let mut total = Counters::default();
        for commands in &self.commands {
            let (tx, rx) = oneshot::channel();
            if commands.send(Command::Snapshot(tx)).await.is_err() {
                continue;
            }
            let c = rx.await.unwrap_or_default();
            total.received_all += c.received_all;
            total.received_first += c.received_first;
            total.received_all_bytes += c.received_all_bytes;
            total.bytes_out += c.bytes_out;
            total.bytes_in += c.bytes_in;
        }
        total
    }

    /// Publishes `events` from random nodes at `rate` per second, then waits for deliveries.
    async fn publish(&self, events: usize, rate: f64) -> f64 {
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let started = Instant::now();
        for serial in 0..events {
            pace.tick().await;
            let from = fastrand::usize(..self.commands.len());
            let uuid = Uuid::new_v4();
            let payload = wire_message(self.node_ids[from], uuid, serial as u32);
            let _ = self.commands[from]
                .send(Command::Publish { uuid, payload })
                .await;
        }
        let publish_s = started.elapsed().as_secs_f64();
        let want = (events * (self.commands.len() - 1)) as u64;
        let deadline = Instant::now() + DRAIN_WAIT;
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        while self.delivered.load(Ordering::Relaxed) < want && Instant::now() < deadline {
            poll.tick().await;
        }
        publish_s
    }

    async fn stop(self) -> Vec<Seen> {
        for commands in &self.commands {
            let _ = commands.send(Command::Stop).await;
        }
        let mut seen = Vec::new();
        for task in self.tasks {
            seen.push(task.await.unwrap_or_default());
        }
        seen
    }
}

/// Delivery and latency from what the nodes saw: (delivered pairs, published events, latency
/// histogram in microseconds).
fn deliveries(seen: &[Seen]) -> (u64, u64, hdrhistogram::Histogram<u64>) {
    let published: std::collections::HashMap<Uuid, Instant> = seen
        .iter()
        .flat_map(|s| s.published.iter())
        .filter(|(_, _, ok)| *ok)
        .map(|(uuid, at, _)| (*uuid, *at))
        .collect();
    let mut latency_us = hdrhistogram::Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!());
    let mut delivered = 0;
    for node in seen {
        let mut unique = std::collections::HashSet::new();
        for (uuid, at) in &node.received {
            let Some(sent) = published.get(uuid) else {
                continue;
            };
            if unique.insert(*uuid) {
                delivered += 1;
                let us = at.saturating_duration_since(*sent).as_micros();
                let _ = latency_us.record(u64::try_from(us).unwrap_or(u64::MAX).max(1));
            }
        }
    }
    (delivered, published.len() as u64, latency_us)
}

async fn run(
    nodes: usize,
    events: usize,
    rate: f64,
    wire: Wire,
) -> Result<serde_json::Value, Error> {
    let started = Instant::now();
    let fleet = start_fleet(nodes, wire).await?;
    let want = behaviour::gossipsub_config()?.mesh_n_low().min(nodes - 1);
    let (mesh_s, mesh_formed) = fleet.wait_mesh(want).await;
    let (settle_s, settled) = fleet.wait_settled().await;
    let connected: Vec<usize> = fleet
        .live
        .iter()
        .map(|l| l.connected.load(Ordering::Relaxed))
        .collect();
    let mesh: Vec<usize> = fleet
        .live
        .iter()
        .map(|l| l.mesh.load(Ordering::Relaxed))
        .collect();
    let cpu_before_s = cpu_s();
    let before = fleet.snapshot().await;
    let publish_s = fleet.publish(events, rate).await;
    let after = fleet.snapshot().await;
    let seen = fleet.stop().await;
    let (delivered, published, latency_us) = deliveries(&seen);
    let mut report = traffic(&before, &after, events, published, nodes);
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
    let ms = |q: f64| latency_us.value_at_quantile(q) as f64 / 1000.0;
    let expected = (events * (nodes - 1)) as f64;
    let fleet_report = serde_json::json!({
        "nodes": nodes,
        "transport": if wire == Wire::Tcp { "tcp" } else { "memory" },
        "events": events,
        "rate_per_second": rate,
        "published_ok": published,
        "mesh_wait_s": mesh_s,
        "mesh_formed": mesh_formed,
        "mesh_min_wanted": want,
        "settle_wait_s": settle_s,
        "settled": settled,
        "mesh_peers_mean": mean(&mesh),
        "mesh_peers_min": mesh.iter().min(),
        "connected_peers_mean": mean(&connected),
        "connected_peers_min": connected.iter().min(),
        "connected_peers_max": connected.iter().max(),
        "delivery_ratio": delivered as f64 / expected.max(1.0),
        "delivered": delivered,
        "expected": expected,
        "propagation_ms_p50": ms(0.5),
        "propagation_ms_p99": ms(0.99),
        "propagation_ms_max": latency_us.max() as f64 / 1000.0,
        "publish_s": publish_s,
        "total_s": started.elapsed().as_secs_f64(),
        "cpu_s_publishing": cpu_s() - cpu_before_s,
        "cpu_s_total": cpu_s(),
    });
    if let (Some(all), serde_json::Value::Object(more)) = (report.as_object_mut(), fleet_report) {
        all.extend(more);
    }
    Ok(report)
}

/// Duplicates and bytes from the counters before and after publishing.
fn traffic(
    before: &Counters,
    after: &Counters,
    events: usize,
    published: u64,
    nodes: usize,
) -> serde_json::Value {
    let receivers = (nodes - 1) as f64;
    let copies = after.received_all.saturating_sub(before.received_all) as f64;
    let firsts = after.received_first.saturating_sub(before.received_first) as f64;
    let bytes_out = after.bytes_out.saturating_sub(before.bytes_out) as f64;
    let message_bytes = after
        .received_all_bytes
        .saturating_sub(before.received_all_bytes) as f64;
    let events = events.max(1) as f64;
    serde_json::json!({
        "duplicates_per_message_per_receiver":
            (copies - firsts) / (published as f64 * receivers).max(1.0),
        "copies_received": copies,
        "first_copies_received": firsts,
        "wire_bytes_per_event": bytes_out / events,
        "message_copy_bytes_per_event": message_bytes / events,
        "wire_bytes_per_event_per_node": bytes_out / events / nodes as f64,
        "payload_bytes": wire_message(Uuid::new_v4(), Uuid::new_v4(), 1).len(),
    })
}

/// CPU seconds (user + system) this process has used.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line (11 and 12 after the name), in 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let nodes: usize = arg(0, "10").parse()?;
    let events: usize = arg(1, "200").parse()?;
    let rate: f64 = arg(2, "20").parse()?;
    let wire = match arg(3, "memory").as_str() {
        "memory" => Wire::Memory,
        "tcp" => Wire::Tcp,
        _ => return Err("the transport is memory or tcp".into()),
    };
    if nodes < 2 || events == 0 || rate <= 0.0 {
        return Err(
            "usage: p2p_scale NODES(>=2) EVENTS(>=1) RATE_PER_SECOND(>0) [memory|tcp]".into(),
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(nodes, events, rate, wire))?;
    println!("{report}");
    Ok(())
}
