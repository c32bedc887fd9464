//! The production libp2p behaviour, built in one place: gossipsub (configuration, message id,
//! validation mode, peer scoring, topic), Kademlia, identify and connection limits; the transport
//! and swarm settings; and the peer-discovery reactions (bootstrap connected, identify received,
//! Kademlia routing updated). The node (`node.rs`) and the scale benchmark
//! (`examples/p2p_scale.rs`) both call these, so the benchmark measures the production settings.
//!
//! Never: keeps a setting anywhere else, does I/O other than dials through the swarm passed in.

use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, connection_limits, identify, kad, swarm, tcp,
};

use super::{IDENTIFY_PROTOCOL, KAD_PROTOCOL, P2pError, TOPIC};
use crate::config::limits::{
    P2P_CONNECTIONS_INCOMING_MAX, P2P_CONNECTIONS_PENDING_INCOMING_MAX,
    P2P_CONNECTIONS_PER_PEER_MAX, P2P_DISCOVERED_PEERS_DIALED_MAX, P2P_IDLE_CONNECTION_TIMEOUT,
    P2P_TRANSMIT_BYTES_MAX,
};

/// The node's behaviours.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
}

pub(super) fn transport_error(error: impl std::fmt::Display) -> P2pError {
    P2pError::Transport(error.to_string())
}

/// The events topic.
pub fn topic() -> IdentTopic {
    IdentTopic::new(TOPIC)
}

/// The TCP transport settings (noise and yamux use their defaults).
pub fn tcp_config() -> tcp::Config {
    tcp::Config::default().nodelay(true)
}

/// The swarm settings.
pub fn swarm_config(config: swarm::Config) -> swarm::Config {
    config.with_idle_connection_timeout(P2P_IDLE_CONNECTION_TIMEOUT)
}

/// Gossipsub's configuration: libp2p's defaults (mesh 6, flood publish, message id = source +
/// sequence number) with strict signing, application validation and the size cap.
pub fn gossipsub_config() -> Result<gossipsub::Config, P2pError> {
    gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(P2P_TRANSMIT_BYTES_MAX)
        .heartbeat_interval(Duration::from_secs(1))
        .build()
        .map_err(transport_error)
}

fn score_params(
    topic: &IdentTopic,
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let topic_params = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        // P1: a little credit for staying in the mesh (at most 36 after an hour).
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 3600.0,
        // P2: credit for first deliveries.
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.5,
        first_message_deliveries_cap: 100.0,
        // P3/P3b off: honeypot traffic is bursty and often quiet, silence is not misbehaviour.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // P4: each rejected message costs 10 x (invalid count)^2, decaying 10 % a second, so a
        // few invalid messages take a sender below the graylist threshold.
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.9,
        ..gossipsub::TopicScoreParams::default()
    };
    let mut params = gossipsub::PeerScoreParams::default();
    params.topics.insert(topic.hash(), topic_params);
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    };
    (params, thresholds)
}

/// The behaviour, subscribed to [`topic`]. `instrument` sees the gossipsub behaviour right after
/// it is made (the node passes it through; the benchmark attaches libp2p's metrics).
pub fn build(
    keypair: &Keypair,
    instrument: impl FnOnce(gossipsub::Behaviour) -> gossipsub::Behaviour,
) -> Result<Behaviour, P2pError> {
    let peer_id = PeerId::from(keypair.public());
    let topic = topic();
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(keypair.clone()),
        gossipsub_config()?,
    )
    .map_err(transport_error)?;
    let mut gossipsub = instrument(gossipsub);
    let (params, thresholds) = score_params(&topic);
    gossipsub
        .with_peer_score(params, thresholds)
        .map_err(transport_error)?;
    gossipsub.subscribe(&topic).map_err(transport_error)?;
    let mut kad = kad::Behaviour::with_config(
        peer_id,
        kad::store::MemoryStore::new(peer_id),
        kad::Config::new(StreamProtocol::new(KAD_PROTOCOL)),
    );
    kad.set_mode(Some(kad::Mode::Server));
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), keypair.public())
            .with_agent_version(format!("sentrypeer/{}", env!("CARGO_PKG_VERSION"))),
    );
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established_incoming(Some(P2P_CONNECTIONS_INCOMING_MAX))
            .with_max_pending_incoming(Some(P2P_CONNECTIONS_PENDING_INCOMING_MAX))
            .with_max_established_per_peer(Some(P2P_CONNECTIONS_PER_PEER_MAX)),
    );
    Ok(Behaviour {
        limits,
        identify,
        kad,
        gossipsub,
    })
}

/// The bootstrap peer is connected: Kademlia learns it and bootstraps through it (true when the
/// bootstrap query started).
pub fn on_bootstrap_connected(
    swarm: &mut Swarm<Behaviour>,
    peer: PeerId,
    address: Multiaddr,
) -> bool {
    let kad = &mut swarm.behaviour_mut().kad;
    kad.add_address(&peer, address);
    kad.bootstrap().is_ok()
}

/// A peer identified itself: when it speaks our Kademlia protocol, Kademlia learns its listen
/// addresses.
pub fn on_identify(swarm: &mut Swarm<Behaviour>, peer: PeerId, info: identify::Info) {
    let kad_protocol = StreamProtocol::new(KAD_PROTOCOL);
    if info.protocols.contains(&kad_protocol) {
        let kad = &mut swarm.behaviour_mut().kad;
        for address in info.listen_addrs {
            kad.add_address(&peer, address);
        }
    }
}

/// Kademlia added a peer: dial it when it is new, not connected and we have fewer than
/// [`P2P_DISCOVERED_PEERS_DIALED_MAX`] connected peers (true when dialled).
pub fn on_routing_updated(swarm: &mut Swarm<Behaviour>, peer: PeerId, is_new_peer: bool) -> bool {
    let connected = swarm.connected_peers().count();
    if is_new_peer && !swarm.is_connected(&peer) && connected < P2P_DISCOVERED_PEERS_DIALED_MAX {
        return swarm.dial(peer).is_ok();
    }
    false
}
