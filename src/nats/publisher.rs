//! The NATS publisher's handle: [`spawn`] starts the `nats-publisher` thread (its own
//! current-thread tokio runtime running `publish_loop`), [`PublisherHandle::stop`] ends it.
//!
//! Delivery: every event this node created and committed is published, in store order, on
//! `<prefix>.<node id>` with `Nats-Msg-Id` = its `event_uuid`, up to
//! [`limits::NATS_PUBLISH_IN_FLIGHT_MAX`] awaiting acknowledgement; the cursor (`meta` key
//! `cursor/nats`) moves only over the acknowledged prefix. A failure drops the round's
//! unacknowledged publishes and, after a back-off, publishes again from the cursor: JetStream
//! drops repeats by `Nats-Msg-Id` within its duplicate window (2 minutes by default).
//!
//! Never: publish on a hub (`--nats-ingest`: the app does not start it), make the writer or a
//! shard wait (it only reads the store and writes its cursor), or log a credential.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::Event;
use crossbeam_channel::Sender;
use tokio::sync::Notify;

use super::connect::{self, NatsSetupError};
use super::publish_loop::Publisher;
use super::publish_metrics::PublisherMetrics;
use crate::config::{NatsConfig, limits};
use crate::store::{CommitCursor, CommitWatch, PersistPolicy, Store, StoreError};
use crate::worker_thread::WorkerThread;

/// The store cursor the publisher keeps (`meta` key `cursor/nats`).
pub const CURSOR_NAME: &str = "nats";

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("nats: cannot read the publisher's cursor: {0}")]
    Store(#[from] StoreError),
    #[error("nats: {0}")]
    Setup(#[from] NatsSetupError),
    #[error("cannot start the nats-publisher thread: {0}")]
    Spawn(std::io::Error),
}

/// Settings that are not part of the configuration (tests and tools).
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Publishes awaiting an acknowledgement at most.
    pub in_flight_max: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Longest time between cursor writes while events are being acknowledged.
    pub persist_interval: Duration,
    /// Also send every log line here (tests); stderr always gets it.
    pub log_lines: Option<Sender<String>>,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            in_flight_max: limits::NATS_PUBLISH_IN_FLIGHT_MAX,
            backoff_initial: limits::NATS_BACKOFF_INITIAL,
            backoff_max: limits::NATS_BACKOFF_MAX,
            persist_interval: limits::NATS_CURSOR_PERSIST_INTERVAL,
            log_lines: None,
        }
    }
}

/// What other threads and the client's event callback tell the publisher loop: a stop request
/// (wakes it from a back-off or an idle wait), and each lost connection (ends the wait for
/// acknowledgements that will never come on it).
#[derive(Debug, Default)]
pub(crate) struct Signals {
    stopped: AtomicBool,
    pub(crate) notify: Notify,
    disconnects: AtomicU64,
    pub(crate) disconnected: Notify,
}

impl Signals {
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn connection_lost(&self) {
        self.disconnects.fetch_add(1, Ordering::SeqCst);
        self.disconnected.notify_waiters();
    }

    /// Connections lost so far.
    pub(crate) fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::SeqCst)
    }
}

/// The client's connection events: the `nats_connected` gauge follows them at once (even while
/// the loop waits for an acknowledgement), and server errors are logged.
fn on_event(
    metrics: Arc<PublisherMetrics>,
    signals: Arc<Signals>,
) -> impl Fn(Event) -> std::future::Ready<()> + Send + Sync + 'static {
    move |event| {
        match &event {
            Event::Connected => metrics.connected.set(1),
            Event::Disconnected | Event::Closed => {
                metrics.connected.set(0);
                signals.connection_lost();
            }
            Event::ServerError(_) | Event::ClientError(_) => {
                eprintln!("sentrypeer: nats: {event}");
            }
            _ => {}
        }
        std::future::ready(())
    }
}

/// The running publisher.
#[derive(Debug)]
pub struct PublisherHandle {
    thread: WorkerThread,
    stop: Arc<Signals>,
    metrics: Arc<PublisherMetrics>,
}

impl PublisherHandle {
    pub fn metrics(&self) -> Arc<PublisherMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Whether the thread has ended (the writer finished and everything was acknowledged).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Stops the publisher: the publishes in flight get up to
    /// [`limits::NATS_STOP_DRAIN_TIMEOUT`] to be acknowledged (a publish or acknowledgement
    /// already waiting may take up to [`limits::NATS_ACK_TIMEOUT`]), the cursor is stored, the
    /// thread joined. Unacknowledged events are published by the next run.
    pub fn stop(self) {
        self.stop.stop();
        self.join();
    }

    /// Waits for the thread to end by itself: after the writer has finished and every event is
    /// acknowledged. Waits as long as the server is away; prefer [`Self::stop`].
    pub fn join(self) {
        self.thread.join();
    }
}

/// Starts the `nats-publisher` thread with default [`PublisherOptions`].
pub fn spawn(
    config: &NatsConfig,
    store: Store,
    commits: Arc<CommitWatch>,
) -> Result<PublisherHandle, PublisherError> {
    spawn_with(config, store, commits, PublisherOptions::default())
}

/// Starts the `nats-publisher` thread: publishing starts after the stored cursor (0, the oldest
/// stored event, when never set). Bad credentials are an error here; an unreachable server is
/// not (the client keeps reconnecting and the events wait in the store).
pub fn spawn_with(
    config: &NatsConfig,
    store: Store,
    commits: Arc<CommitWatch>,
    options: PublisherOptions,
) -> Result<PublisherHandle, PublisherError> {
    let policy = PersistPolicy {
        events: limits::NATS_CURSOR_PERSIST_EVENTS,
        interval: options.persist_interval,
    };
    let cursor = CommitCursor::load(&store, CURSOR_NAME, policy, Instant::now())?;
    let node_id = store.node_id();
    let name = format!("sentrypeer-publisher {}", node_id.hyphenated());
    let addrs = connect::server_addrs(config)?;
    let metrics = Arc::new(PublisherMetrics::new(Arc::clone(&commits), cursor.value()));
    let stop = Arc::new(Signals::default());
    let connect_options = connect::connect_options(config, &name)?
        .event_callback(on_event(Arc::clone(&metrics), Arc::clone(&stop)));
    let publisher = Publisher::new(
        config,
        store,
        commits,
        Arc::clone(&metrics),
        Arc::clone(&stop),
        options,
        cursor,
    );
    let thread = WorkerThread::spawn("nats-publisher", move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        match runtime {
            Ok(runtime) => runtime.block_on(publisher.run(connect_options, addrs)),
            Err(error) => eprintln!("sentrypeer: nats: cannot start a runtime: {error}"),
        }
    })
    .map_err(PublisherError::Spawn)?;
    Ok(PublisherHandle {
        thread,
        stop,
        metrics,
    })
}
