//! Stand-in for builds without the `p2p` cargo feature: there is no node, and `-p` is refused
//! with one line at start-up.

use std::convert::Infallible;
use std::sync::Arc;

use super::{P2pError, P2pMetrics};
use crate::config::P2pConfig;
use crate::event::Event;
use crate::store::{CommitWatch, Store};

/// Never exists in such a build.
#[derive(Debug)]
pub struct P2pHandle {
    never: Infallible,
}

impl P2pHandle {
    pub fn metrics(&self) -> Arc<P2pMetrics> {
        match self.never {}
    }

    pub fn stop(self) {
        match self.never {}
    }
}

/// Always [`P2pError::NotBuilt`].
pub fn start(
    _config: &P2pConfig,
    _store: Store,
    _events: crossbeam_channel::Sender<Event>,
    _commits: Arc<CommitWatch>,
    _debug: bool,
) -> Result<P2pHandle, P2pError> {
    Err(P2pError::NotBuilt)
}
