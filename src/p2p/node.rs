//! The I/O shell: the libp2p swarm on its own thread and current-thread tokio runtime, and the
//! store reader thread that feeds it committed local events.
//!
//! The node loop reacts to swarm events (`handle_*`), reader batches (into the [`Outbox`]) and
//! a 100 ms tick (`poll_publish`, `poll_bootstrap`). Received messages are rate limited per
//! forwarding peer, validated by [`entry::parse_message`], reported to gossipsub
//! (Accept/Reject/Ignore, so invalid senders lose peer score), de-duplicated by UUID and sent to
//! the writer with `try_send`.
//!
//! Never: blocks on the writer channel, waits on the bootstrap peer, holds a store read
//! transaction across a channel send or a cursor write.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, PublishError};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad, noise, yamux};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::behaviour::{self, Behaviour, BehaviourEvent, transport_error};
use super::entry;
use super::outbox::Outbox;
use super::{CURSOR, P2pError, P2pMetrics, Shared};
use crate::config::defaults::BOOTSTRAP_PORT;
use crate::config::limits::{
    P2P_BOOTSTRAP_BACKOFF_MAX, P2P_BOOTSTRAP_BACKOFF_MIN, P2P_COALESCE_WINDOW,
    P2P_CURSOR_SAVE_INTERVAL, P2P_LISTEN_TIMEOUT, P2P_PEER_MESSAGES_BURST,
    P2P_PEER_MESSAGES_PER_SECOND, P2P_PENDING_ENTRIES_MAX, P2P_PUBLISH_MESSAGES_BURST,
    P2P_PUBLISH_MESSAGES_PER_SECOND, P2P_READ_BATCH_EVENTS, P2P_READER_WAIT, P2P_RECENT_UUIDS,
    P2P_TICK,
};
use crate::event::Event;
use crate::event::timestamp::now_ns;
use crate::ignore::IgnoreList;
use crate::store::{CommitWatch, Store};
use crate::token_bucket::{Rate, TokenBucket};

/// What the node thread needs.
pub(super) struct Settings {
    pub(super) keypair: Keypair,
    pub(super) listen: SocketAddr,
    pub(super) bootstrap: Option<Multiaddr>,
    pub(super) own_node_id: Uuid,
    pub(super) read_key: u64,
    pub(super) debug: bool,
    /// Received entries naming a source in it are dropped and counted.
    pub(super) ignore_ip: IgnoreList,
    /// `--verified-only`: only events from verified sources are published.
    pub(super) verified_only: bool,
}

/// Committed events read by the reader: the last key read and the local events among them.
pub(super) struct ReadBatch {
    last_key: u64,
    events: Vec<(u64, Event)>,
}

/// `-b` text -> multiaddr: a multiaddr (with or without `/p2p/<id>`), `host:port` or `host`.
pub(super) fn parse_bootstrap(text: &str) -> Result<Option<Multiaddr>, P2pError> {
    let text = text.trim();
    let invalid = || P2pError::Bootstrap(text.to_owned());
    if text.is_empty() {
        return Ok(None);
    }
    if text.starts_with('/') {
        return text.parse::<Multiaddr>().map(Some).map_err(|_| invalid());
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(Some(socket_multiaddr(address)));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| invalid())?),
        None => (text, BOOTSTRAP_PORT),
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Some(socket_multiaddr(SocketAddr::new(ip, port))));
    }
    let hostname_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !hostname_ok {
        return Err(invalid());
    }
    Ok(Some(
        Multiaddr::empty()
            .with(Protocol::Dns(host.to_owned().into()))
            .with(Protocol::Tcp(port)),
    ))
}

fn socket_multiaddr(address: SocketAddr) -> Multiaddr {
    let ip = match address.ip() {
        IpAddr::V4(v4) => Protocol::Ip4(v4),
        IpAddr::V6(v6) => Protocol::Ip6(v6),
    };
    Multiaddr::empty()
        .with(ip)
        .with(Protocol::Tcp(address.port()))
}

fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// The swarm; without DNS resolution (IP bootstrap addresses only) when the system resolver
/// configuration cannot be read.
fn build_swarm(keypair: &Keypair, debug: bool) -> Result<Swarm<Behaviour>, P2pError> {
    let behaviour = behaviour::build(keypair, |gossipsub| gossipsub)?;
    let tcp = behaviour::tcp_config;
    let with_dns = libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
        .with_tokio()
        .with_tcp(tcp(), noise::Config::new, yamux::Config::default)
        .map_err(transport_error)?
        .with_dns();
    let swarm = match with_dns {
        Ok(builder) => builder
            .with_behaviour(|_| behaviour)
            .map_err(transport_error)?
            .with_swarm_config(behaviour::swarm_config)
            .build(),
        Err(error) => {
            if debug {
                eprintln!("sentrypeer: p2p without DNS (resolver configuration: {error})");
            }
            libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
                .with_tokio()
                .with_tcp(tcp(), noise::Config::new, yamux::Config::default)
                .map_err(transport_error)?
                .with_behaviour(|_| behaviour)
                .map_err(transport_error)?
                .with_swarm_config(behaviour::swarm_config)
                .build()
        }
    };
    Ok(swarm)
}

/// The node thread's body: builds the runtime and swarm, binds, reports readiness, runs.
pub(super) fn run(
    settings: Settings,
    events: crossbeam_channel::Sender<Event>,
    batches: mpsc::Receiver<ReadBatch>,
    stop: oneshot::Receiver<()>,
    ready: SyncSender<Result<(), P2pError>>,
    metrics: Arc<P2pMetrics>,
    shared: Arc<Shared>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(transport_error(error)));
            return;
        }
    };
    runtime.block_on(async move {
        let topic = behaviour::topic();
        let started = build_swarm(&settings.keypair, settings.debug);
        let swarm = match started {
            Ok(mut swarm) => match listen(&mut swarm, settings.listen, &shared).await {
                Ok(()) => swarm,
                Err(error) => {
                    let _ = ready.send(Err(error));
                    return;
                }
            },
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let mut node = Node::new(swarm, topic, settings, events, metrics, shared);
        node.run(batches, stop).await;
    });
}

/// Binds `address` and waits (up to [`P2P_LISTEN_TIMEOUT`]) for the first listen address.
async fn listen(
    swarm: &mut Swarm<Behaviour>,
    address: SocketAddr,
    shared: &Shared,
) -> Result<(), P2pError> {
    let listen_error = |reason: String| P2pError::Listen {
        address: address.to_string(),
        reason,
    };
    swarm
        .listen_on(socket_multiaddr(address))
        .map_err(|error| listen_error(error.to_string()))?;
    let deadline = tokio::time::Instant::now() + P2P_LISTEN_TIMEOUT;
    loop {
        let Ok(event) = tokio::time::timeout_at(deadline, swarm.select_next_some()).await else {
            return Err(listen_error("no listen address".to_owned()));
        };
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                push_listen_addr(shared, &address, swarm.local_peer_id());
                return Ok(());
            }
            SwarmEvent::ListenerError { error, .. } => {
                return Err(listen_error(error.to_string()));
            }
            SwarmEvent::ListenerClosed { reason, .. } => {
                let reason = reason.err().map_or("closed".to_owned(), |e| e.to_string());
                return Err(listen_error(reason));
            }
            _ => {}
        }
    }
}

fn push_listen_addr(shared: &Shared, address: &Multiaddr, peer: &PeerId) {
    let text = address.clone().with(Protocol::P2p(*peer)).to_string();
    let mut addrs = shared
        .listen_addrs
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if !addrs.contains(&text) {
        addrs.push(text);
    }
}

struct Bootstrap {
    address: Multiaddr,
    /// From the multiaddr, or learned on the first connection.
    peer: Option<PeerId>,
    dialing: Option<ConnectionId>,
    connected: bool,
    backoff: Duration,
    next_dial: Instant,
}

/// Recently received event UUIDs (bounded, oldest forgotten first).
#[derive(Default)]
struct RecentUuids {
    set: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl RecentUuids {
    /// Inserts; false when already present.
    fn insert(&mut self, uuid: Uuid) -> bool {
        if !self.set.insert(uuid) {
            return false;
        }
        self.order.push_back(uuid);
        if self.order.len() > P2P_RECENT_UUIDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

struct Node {
    swarm: Swarm<Behaviour>,
    topic: IdentTopic,
    own_node_id: Uuid,
    debug: bool,
    ignore_ip: IgnoreList,
    verified_only: bool,
    events: crossbeam_channel::Sender<Event>,
    metrics: Arc<P2pMetrics>,
    shared: Arc<Shared>,
    outbox: Outbox,
    /// The zero of the buckets' clock (`clock_ns`).
    started: Instant,
    publish_bucket: TokenBucket,
    /// Receive budget per forwarding peer; an entry lives while the peer is connected.
    peer_buckets: HashMap<PeerId, TokenBucket>,
    recent: RecentUuids,
    bootstrap: Option<Bootstrap>,
}

/// Messages this node publishes.
const PUBLISH_RATE: Rate = Rate::new(P2P_PUBLISH_MESSAGES_PER_SECOND, P2P_PUBLISH_MESSAGES_BURST);

/// Messages received per forwarding peer.
const PEER_RATE: Rate = Rate::new(P2P_PEER_MESSAGES_PER_SECOND, P2P_PEER_MESSAGES_BURST);

impl Node {
    fn new(
        swarm: Swarm<Behaviour>,
        topic: IdentTopic,
        settings: Settings,
        events: crossbeam_channel::Sender<Event>,
        metrics: Arc<P2pMetrics>,
        shared: Arc<Shared>,
    ) -> Self {
        let bootstrap = settings.bootstrap.map(|address| Bootstrap {
            peer: peer_of(&address),
            address,
            dialing: None,
            connected: false,
            backoff: P2P_BOOTSTRAP_BACKOFF_MIN,
            next_dial: Instant::now(),
        });
        Self {
            swarm,
            topic,
            own_node_id: settings.own_node_id,
            debug: settings.debug,
            ignore_ip: settings.ignore_ip,
            verified_only: settings.verified_only,
            events,
            metrics,
            shared,
            outbox: Outbox::new(P2P_COALESCE_WINDOW, settings.read_key),
            started: Instant::now(),
            publish_bucket: TokenBucket::full(PUBLISH_RATE, 0),
            peer_buckets: HashMap::new(),
            recent: RecentUuids::default(),
            bootstrap,
        }
    }

    /// Nanoseconds since the node started: the token buckets' monotonic clock.
    fn clock_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    async fn run(
        &mut self,
        mut batches: mpsc::Receiver<ReadBatch>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut tick = tokio::time::interval(P2P_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reader_open = true;
        loop {
            let room = self.outbox.len() < P2P_PENDING_ENTRIES_MAX;
            tokio::select! {
                _ = &mut stop => break,
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
                batch = batches.recv(), if reader_open && room => match batch {
                    Some(batch) => self.handle_batch(batch),
                    None => reader_open = false,
                },
                _ = tick.tick() => {
                    if self.shared.stop.load(Ordering::Acquire) {
                        break;
                    }
                    self.poll_bootstrap();
                    self.poll_publish();
                }
            }
        }
        self.shared
            .published_through
            .store(self.outbox.published_through(), Ordering::Release);
    }

    fn handle_batch(&mut self, batch: ReadBatch) {
        let now = now_ns();
        let skipped = self.outbox.skipped();
        for (key, event) in &batch.events {
            if self.verified_only && !event.source_verified {
                self.metrics.unverified_not_shared_total.inc();
                continue;
            }
            self.outbox.handle_event(*key, event, now);
        }
        self.outbox.handle_skip(batch.last_key);
        self.metrics
            .unshareable_total
            .add(self.outbox.skipped().saturating_sub(skipped));
        self.metrics.pending_entries.set(self.outbox.len() as u64);
    }

    fn poll_publish(&mut self) {
        let clock_ns = self.clock_ns();
        self.publish_bucket.refill(PUBLISH_RATE, clock_ns);
        let wall = now_ns();
        while self.publish_bucket.has_token() {
            let Some(batch) = self.outbox.poll_message(wall) else {
                break;
            };
            let bytes = batch.payload.len() as u64;
            match self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(self.topic.clone(), batch.payload)
            {
                Ok(_) => {
                    self.outbox.commit(batch.entries);
                    let _ = self.publish_bucket.take();
                    self.metrics.messages_out_total.inc();
                    self.metrics.entries_out_total.add(batch.entries as u64);
                    self.metrics.entries_out_events_total.add(batch.events);
                    self.metrics.bytes_out_total.add(bytes);
                }
                // No peers on the topic yet (or all busy): keep the entries for later.
                Err(PublishError::NoPeersSubscribedToTopic | PublishError::AllQueuesFull(_)) => {
                    break;
                }
                Err(error) => {
                    self.metrics.publish_errors_total.inc();
                    if self.debug {
                        eprintln!("sentrypeer: p2p publish failed: {error}");
                    }
                    if matches!(
                        error,
                        PublishError::MessageTooLarge | PublishError::Duplicate
                    ) {
                        // Cannot succeed later either: drop these entries.
                        self.outbox.commit(batch.entries);
                    } else {
                        break;
                    }
                }
            }
        }
        self.metrics.pending_entries.set(self.outbox.len() as u64);
        self.shared
            .published_through
            .store(self.outbox.published_through(), Ordering::Release);
    }

    fn poll_bootstrap(&mut self) {
        let Some(bootstrap) = &mut self.bootstrap else {
            return;
        };
        let now = Instant::now();
        if bootstrap.connected || bootstrap.dialing.is_some() || now < bootstrap.next_dial {
            return;
        }
        let options: DialOpts = bootstrap.address.clone().into();
        let id = options.connection_id();
        if self.debug {
            eprintln!("sentrypeer: p2p dialing bootstrap {}", bootstrap.address);
        }
        match self.swarm.dial(options) {
            Ok(()) => bootstrap.dialing = Some(id),
            Err(error) => {
                if self.debug {
                    eprintln!("sentrypeer: p2p bootstrap dial failed: {error}");
                }
                self.metrics.bootstrap_failures_total.inc();
                bootstrap.next_dial = now + bootstrap.backoff;
                bootstrap.backoff = (bootstrap.backoff * 2).min(P2P_BOOTSTRAP_BACKOFF_MAX);
            }
        }
    }

    fn update_peer_gauges(&mut self) {
        self.metrics
            .peers
            .set(self.swarm.connected_peers().count() as u64);
        let topic = self.topic.hash();
        let on_topic = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&topic))
            .count();
        self.metrics.topic_peers.set(on_topic as u64);
    }

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                if self.debug {
                    eprintln!("sentrypeer: p2p listening on {address}");
                }
                push_listen_addr(&self.shared, &address, self.swarm.local_peer_id());
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let text = address
                    .with(Protocol::P2p(*self.swarm.local_peer_id()))
                    .to_string();
                self.shared
                    .listen_addrs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|a| *a != text);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                if self.debug {
                    eprintln!(
                        "sentrypeer: p2p connected to {peer_id} at {}",
                        endpoint.get_remote_address()
                    );
                }
                self.handle_connected(peer_id, connection_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => self.handle_disconnected(peer_id, num_established),
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => self.handle_dial_failed(connection_id, &error),
            SwarmEvent::Behaviour(event) => self.handle_behaviour_event(event),
            _ => {}
        }
    }

    /// A connection is up; when it is the bootstrap peer's, Kademlia bootstraps through it.
    fn handle_connected(&mut self, peer_id: PeerId, connection_id: ConnectionId) {
        if let Some(bootstrap) = &mut self.bootstrap
            && (bootstrap.dialing == Some(connection_id) || bootstrap.peer == Some(peer_id))
        {
            bootstrap.dialing = None;
            bootstrap.connected = true;
            bootstrap.peer = Some(peer_id);
            bootstrap.backoff = P2P_BOOTSTRAP_BACKOFF_MIN;
            let address = bootstrap.address.clone();
            if behaviour::on_bootstrap_connected(&mut self.swarm, peer_id, address) && self.debug {
                eprintln!("sentrypeer: p2p bootstrap connected, kademlia bootstrap started");
            }
        }
        self.update_peer_gauges();
    }

    /// A connection closed; with the peer's last one go its receive budget and, for the
    /// bootstrap peer, the connection (redialled after the back-off).
    fn handle_disconnected(&mut self, peer_id: PeerId, num_established: u32) {
        if num_established == 0 {
            self.peer_buckets.remove(&peer_id);
            if let Some(bootstrap) = &mut self.bootstrap
                && bootstrap.peer == Some(peer_id)
            {
                bootstrap.connected = false;
                bootstrap.next_dial = Instant::now() + bootstrap.backoff;
            }
            if self.debug {
                eprintln!("sentrypeer: p2p disconnected from {peer_id}");
            }
        }
        self.update_peer_gauges();
    }

    /// An outgoing dial failed; a failed bootstrap dial backs off.
    fn handle_dial_failed(&mut self, connection_id: ConnectionId, error: &DialError) {
        if let Some(bootstrap) = &mut self.bootstrap
            && bootstrap.dialing == Some(connection_id)
        {
            if self.debug {
                eprintln!(
                    "sentrypeer: p2p bootstrap {} unreachable ({error}); retry in {:?}",
                    bootstrap.address, bootstrap.backoff
                );
            }
            self.metrics.bootstrap_failures_total.inc();
            bootstrap.dialing = None;
            bootstrap.next_dial = Instant::now() + bootstrap.backoff;
            bootstrap.backoff = (bootstrap.backoff * 2).min(P2P_BOOTSTRAP_BACKOFF_MAX);
        }
    }

    fn handle_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.handle_message(propagation_source, &message_id, &message.data),
            BehaviourEvent::Gossipsub(
                gossipsub::Event::Subscribed { .. } | gossipsub::Event::Unsubscribed { .. },
            ) => self.update_peer_gauges(),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                behaviour::on_identify(&mut self.swarm, peer_id, info);
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, is_new_peer, ..
            }) if behaviour::on_routing_updated(&mut self.swarm, peer, is_new_peer)
                && self.debug =>
            {
                eprintln!("sentrypeer: p2p discovered {peer}, dialing");
            }
            _ => {}
        }
    }

    fn handle_message(&mut self, source: PeerId, id: &gossipsub::MessageId, data: &[u8]) {
        self.metrics.bytes_in_total.add(data.len() as u64);
        let clock_ns = self.clock_ns();
        let allowed = self
            .peer_buckets
            .entry(source)
            .or_insert_with(|| TokenBucket::full(PEER_RATE, clock_ns))
            .try_take(PEER_RATE, clock_ns);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        if !allowed {
            self.metrics.rate_limited_total.inc();
            gossipsub.report_message_validation_result(id, &source, MessageAcceptance::Ignore);
            return;
        }
        match entry::parse_message(data, self.own_node_id, now_ns()) {
            Err(reason) => {
                if let Some(counter) = self.metrics.rejected.get(reason.index()) {
                    counter.inc();
                }
                if self.debug {
                    eprintln!(
                        "sentrypeer: p2p rejected a message from {source}: {}",
                        reason.as_str()
                    );
                }
                gossipsub.report_message_validation_result(id, &source, MessageAcceptance::Reject);
            }
            Ok(entries) => {
                gossipsub.report_message_validation_result(id, &source, MessageAcceptance::Accept);
                self.metrics.messages_in_total.inc();
                for valid in entries {
                    if self.ignore_ip.contains(valid.source_ip) {
                        self.metrics.ignored_sources_total.inc();
                        continue;
                    }
                    self.metrics.entries_in_total.inc();
                    self.metrics.entries_in_events_total.add(valid.count);
                    if !self.recent.insert(valid.uuid) {
                        self.metrics.duplicates_total.inc();
                        continue;
                    }
                    if self.events.try_send(valid.to_event()).is_err() {
                        self.metrics.events_dropped_total.inc();
                    }
                }
            }
        }
    }
}

/// The reader thread: waits for commits, reads events after the cursor and hands the local
/// ones to the node; saves the `p2p` cursor (what the node has published) once a second.
pub(super) fn read_store(
    store: Store,
    commits: Arc<CommitWatch>,
    batches: mpsc::Sender<ReadBatch>,
    shared: Arc<Shared>,
    mut read_key: u64,
) {
    let own = store.node_id();
    let mut saved = shared.published_through.load(Ordering::Acquire);
    let mut last_save = Instant::now();
    let mut error_reported = false;
    while !shared.stop.load(Ordering::Acquire) {
        let last = commits.wait_past(read_key, P2P_READER_WAIT);
        if last > read_key {
            // The read transaction ends with this statement.
            let read = store
                .read()
                .and_then(|reader| reader.events_after(read_key, P2P_READ_BATCH_EVENTS));
            match read {
                Ok(events) => {
                    let last_key = events.last().map_or(last, |(key, _)| *key);
                    let events: Vec<(u64, Event)> = events
                        .into_iter()
                        .filter(|(_, e)| e.node_id == own)
                        .collect();
                    if batches
                        .blocking_send(ReadBatch { last_key, events })
                        .is_err()
                    {
                        break;
                    }
                    read_key = last_key;
                }
                Err(error) => {
                    if !error_reported {
                        eprintln!("sentrypeer: p2p cannot read the store: {error}");
                        error_reported = true;
                    }
                    std::thread::sleep(P2P_READER_WAIT);
                }
            }
        }
        if last_save.elapsed() >= P2P_CURSOR_SAVE_INTERVAL {
            last_save = Instant::now();
            save_cursor(&store, &shared, &mut saved);
        }
    }
    save_cursor(&store, &shared, &mut saved);
}

fn save_cursor(store: &Store, shared: &Shared, saved: &mut u64) {
    let through = shared.published_through.load(Ordering::Acquire);
    if through != *saved && store.set_cursor(CURSOR, through).is_ok() {
        *saved = through;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_forms() {
        let parse = |t: &str| parse_bootstrap(t).unwrap().map(|a| a.to_string());
        assert_eq!(parse(""), None);
        assert_eq!(
            parse("127.0.0.1:4000").as_deref(),
            Some("/ip4/127.0.0.1/tcp/4000")
        );
        assert_eq!(parse("[::1]:4000").as_deref(), Some("/ip6/::1/tcp/4000"));
        assert_eq!(
            parse("bootstrap.sentrypeer.org").as_deref(),
            Some("/dns/bootstrap.sentrypeer.org/tcp/4222")
        );
        assert_eq!(
            parse("node.example:9").as_deref(),
            Some("/dns/node.example/tcp/9")
        );
        let with_id =
            "/ip4/127.0.0.1/tcp/4000/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        assert_eq!(parse(with_id).as_deref(), Some(with_id));
        assert!(peer_of(&with_id.parse().unwrap()).is_some());
        assert!(parse_bootstrap("bad host:1").is_err());
        assert!(parse_bootstrap("host:notaport").is_err());
        assert!(parse_bootstrap("/nonsense").is_err());
    }

    #[test]
    fn bucket_limits_rate() {
        let mut bucket = TokenBucket::full(PEER_RATE, 0);
        let allowed = (0..P2P_PEER_MESSAGES_BURST * 2)
            .filter(|_| bucket.try_take(PEER_RATE, 0))
            .count();
        assert_eq!(allowed, P2P_PEER_MESSAGES_BURST as usize);
        let second_ns = 1_000_000_000;
        let allowed = (0..P2P_PEER_MESSAGES_PER_SECOND * 2)
            .filter(|_| bucket.try_take(PEER_RATE, second_ns))
            .count();
        assert_eq!(allowed, P2P_PEER_MESSAGES_PER_SECOND as usize);
    }

    #[test]
    fn recent_uuids_bounded() {
        let mut recent = RecentUuids::default();
        assert!(recent.insert(Uuid::from_u128(1)));
        assert!(!recent.insert(Uuid::from_u128(1)));
        for i in 2..(P2P_RECENT_UUIDS as u128 + 10) {
            recent.insert(Uuid::from_u128(i));
        }
        assert!(recent.set.len() <= P2P_RECENT_UUIDS);
        assert!(recent.insert(Uuid::from_u128(1)), "oldest forgotten");
    }
}
