//! The running node: [`start`] loads the key, binds the listener and starts the node and store
//! reader threads; [`P2pHandle`] stops them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::{CURSOR, P2pError, P2pMetrics, key, node};
use crate::config::P2pConfig;
use crate::config::limits::{P2P_READ_BATCHES_QUEUED, P2P_START_TIMEOUT};
use crate::event::Event;
use crate::store::{CommitWatch, Store};

/// Set to 1 in the store's cursors once P2P has run (so that cursor 0 means "from the start").
const CURSOR_STARTED: &str = "p2p_started";

/// State shared between the handle and the threads.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) listen_addrs: Mutex<Vec<String>>,
    pub(super) stop: AtomicBool,
    /// The store key through which local events are published (for the cursor).
    pub(super) published_through: AtomicU64,
}

/// The running node.
pub struct P2pHandle {
    peer_id: String,
    metrics: Arc<P2pMetrics>,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    node: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for P2pHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pHandle")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl P2pHandle {
    /// This node's libp2p peer id (base58).
    pub fn peer_id(&self) -> String {
        self.peer_id.clone()
    }

    /// The multiaddrs the node listens on (with the real port).
    pub fn listen_addrs(&self) -> Vec<String> {
        self.shared
            .listen_addrs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn metrics(&self) -> Arc<P2pMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Stops the node and the reader and saves the `p2p` cursor.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for thread in [self.node.take(), self.reader.take()].into_iter().flatten() {
            if thread.join().is_err() {
                eprintln!("sentrypeer: a p2p thread panicked");
            }
        }
    }
}

impl Drop for P2pHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the node: loads or creates the key beside the store, binds `config.listen`, then
/// runs in the background (bootstrap, publishing, receiving). Received valid events go to
/// `events` (the writer channel; never blocks: a full channel drops and counts).
pub fn start(
    config: &P2pConfig,
    store: Store,
    events: crossbeam_channel::Sender<Event>,
    commits: Arc<CommitWatch>,
    debug: bool,
) -> Result<P2pHandle, P2pError> {
    let keypair = key::load_or_create(&key::key_path(store.path()))?;
    let bootstrap = node::parse_bootstrap(&config.bootstrap)?;
    let metrics = Arc::new(P2pMetrics::default());
    let shared = Arc::new(Shared::default());
    let cursor = start_cursor(&store)?;
    shared.published_through.store(cursor, Ordering::Release);
    let (batches_tx, batches_rx) = tokio::sync::mpsc::channel(P2P_READ_BATCHES_QUEUED);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let peer_id = libp2p::PeerId::from(keypair.public()).to_string();
    let node_settings = node::Settings {
        keypair,
        listen: config.listen,
        bootstrap,
        own_node_id: store.node_id(),
        read_key: cursor,
        debug,
        ignore_ip: config.ignore_ip.clone(),
        verified_only: config.verified_only,
    };
    let node_metrics = Arc::clone(&metrics);
    let node_shared = Arc::clone(&shared);
    let node = std::thread::Builder::new()
        .name("p2p".into())
        .spawn(move || {
            node::run(
                node_settings,
                events,
                batches_rx,
                stop_rx,
                ready_tx,
                node_metrics,
                node_shared,
            );
        })
        .map_err(P2pError::Spawn)?;
    if let Err(error) = wait_until_listening(&ready_rx, &shared) {
        let _ = stop_tx.send(());
        let _ = node.join();
        return Err(error);
    }
    let reader_shared = Arc::clone(&shared);
    let reader = std::thread::Builder::new()
        .name("p2p-reader".into())
        .spawn(move || node::read_store(store, commits, batches_tx, reader_shared, cursor))
        .map_err(P2pError::Spawn);
    let mut handle = P2pHandle {
        peer_id,
        metrics,
        shared,
        stop: Some(stop_tx),
        node: Some(node),
        reader: None,
    };
    handle.reader = Some(reader?);
    if debug {
        eprintln!("sentrypeer: p2p peer id {}", handle.peer_id);
        for address in handle.listen_addrs() {
            eprintln!("sentrypeer: p2p listening on {address}");
        }
    }
    Ok(handle)
}

/// The `p2p` cursor to publish after: the saved one, or on the first start with `-p` the newest
/// stored event (share what is collected from now on, not the whole history), then saved.
fn start_cursor(store: &Store) -> Result<u64, P2pError> {
    let (cursor, first_start) = {
        let reader = store.read()?;
        if reader.cursor(CURSOR_STARTED)? == 0 {
            (reader.last_key()?, true)
        } else {
            (reader.cursor(CURSOR)?, false)
        }
    };
    if first_start {
        store.set_cursor(CURSOR, cursor)?;
        store.set_cursor(CURSOR_STARTED, 1)?;
    }
    Ok(cursor)
}

/// Waits (up to [`P2P_START_TIMEOUT`]) for the node thread to report that it listens; on a
/// timeout also sets the stop flag. On any error the caller stops and joins the node thread.
fn wait_until_listening(
    ready: &std::sync::mpsc::Receiver<Result<(), P2pError>>,
    shared: &Shared,
) -> Result<(), P2pError> {
    match ready.recv_timeout(P2P_START_TIMEOUT) {
        Ok(result) => result,
        Err(_) => {
            shared.stop.store(true, Ordering::Release);
            Err(P2pError::Startup)
        }
    }
}
