//! Peer to peer: a libp2p node that shares committed local events and stores validated peer
//! events through the writer.
//!
//! Never: stores or forwards an unvalidated entry; re-publishes a peer's event as ours.
