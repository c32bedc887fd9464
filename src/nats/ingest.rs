//! The hub (`--nats-ingest`): a durable JetStream pull consumer on `<prefix>.>` whose valid
//! events go into this node's writer channel, like a P2P peer's, keeping their UUID, node id
//! and timestamp.
//!
//! Acknowledgement only after commit. The writer is not changed and never waits for this worker:
//! 1. a message is decoded ([`super::ingest_decode`]); an invalid one, or one whose source is in
//!    `--ignore-ip`, is acknowledged at once and counted (it will never be stored);
//! 2. if its UUID is already in the store's UUID index (`Reader::has_foreign_uuid`: every event
//!    of another node is indexed in the transaction that stores it), it is a duplicate:
//!    acknowledged, not sent; if a message with the same UUID is in flight, it is a duplicate
//!    too, not sent, and waits with that one;
//! 3. otherwise the event is `try_send` to the writer channel (a full channel keeps it here and
//!    offers it again on the next tick: nothing is dropped) and the message's acknowledger waits
//!    in `sent`;
//! 4. on every tick ([`NATS_INGEST_POLL_INTERVAL`]) where the writer's [`CommitWatch`] moved (one
//!    mutex read; the writer publishes once per batch), and at least every
//!    [`NATS_INGEST_RECHECK_INTERVAL`] (a batch of duplicates publishes no new key), one read
//!    transaction looks up the UUIDs in `sent` (on a tick, the oldest ones up to the first not
//!    yet stored; every one at the re-check); each one found is committed (by us, or by a copy
//!    of the same event that came first), and only then is its message acknowledged.
//!
//! So an acknowledged message's event is on disk; a message whose event is not (the hub
//! stopped or crashed before the commit, an acknowledgement lost with the connection) is
//! delivered again after [`NATS_INGEST_ACK_WAIT`] or at the next start, and the UUID index makes
//! the repeat a no-op. Messages in flight (received, not acknowledged) are bounded by
//! [`NATS_INGEST_IN_FLIGHT_MAX`], also the consumer's `max_ack_pending`.
//!
//! The consumer is durable (`sentrypeer-hub-<node id>`), so a restarted hub resumes where it
//! was, and a new hub starts from the stream's first message. Connect, consumer and pull
//! failures are counted and retried after a back-off, forever.
//!
//! Never: acknowledges a valid event before it is committed, drops a valid event, blocks the
//! writer or a shard (its own thread and current-thread tokio runtime), or holds more than
//! `NATS_INGEST_IN_FLIGHT_MAX` messages.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{self, Message};
use crossbeam_channel::{Sender, TrySendError};
use futures_lite::StreamExt;
use tokio::sync::watch;
use uuid::Uuid;

use super::connect::{self, NatsSetupError};
use super::ingest_decode::{DecodeContext, decode_event};
use super::ingest_metrics::IngestMetrics;
use crate::config::NatsConfig;
use crate::config::limits::{
    IO_ERROR_LOG_INTERVAL, NATS_INGEST_ACK_WAIT, NATS_INGEST_BACKOFF_INITIAL,
    NATS_INGEST_BACKOFF_MAX, NATS_INGEST_EVENT_AGE_MAX, NATS_INGEST_IN_FLIGHT_MAX,
    NATS_INGEST_POLL_INTERVAL, NATS_INGEST_PULL_BATCH, NATS_INGEST_RECHECK_INTERVAL,
};
use crate::event::Event;
use crate::event::timestamp::now_ns;
use crate::ignore::IgnoreList;
use crate::store::{CommitWatch, Store};
use crate::worker_thread::WorkerThread;

/// What the hub needs besides the NATS settings.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// `--ignore-ip`: fleet events from these sources are dropped and counted.
    pub ignore_ip: IgnoreList,
    /// `--retention-days`: older events are stale (they would be pruned at once).
    pub retention_days: Option<u32>,
}

/// Why the hub did not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Setup(#[from] NatsSetupError),
    #[error("nats ingest: cannot start its runtime or thread: {0}")]
    Spawn(std::io::Error),
}

/// The running hub worker.
#[derive(Debug)]
pub struct IngestHandle {
    thread: WorkerThread,
    stop: watch::Sender<bool>,
    metrics: Arc<IngestMetrics>,
}

impl IngestHandle {
    pub fn metrics(&self) -> Arc<IngestMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Stops pulling and ends the thread; messages not yet acknowledged are delivered again to
    /// the next start.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        self.thread.join();
    }
}

/// Starts the hub worker on its own thread (`nats-ingest`). Returns at once: the server is
/// dialled in the background. A credentials file that cannot be read fails here.
pub fn start(
    config: &NatsConfig,
    store: Store,
    events: Sender<Event>,
    commits: Arc<CommitWatch>,
    settings: IngestSettings,
) -> Result<IngestHandle, IngestError> {
    connect::connect_options(config, "check")?;
    connect::server_addrs(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(IngestError::Spawn)?;
    let metrics = Arc::new(IngestMetrics::default());
    let (stop, stop_rx) = watch::channel(false);
    let worker = Worker {
        config: config.clone(),
        durable: format!("sentrypeer-hub-{}", store.node_id().hyphenated()),
        store,
        events,
        commits,
        settings,
        metrics: Arc::clone(&metrics),
        stop: stop_rx,
        unsent: VecDeque::new(),
        sent: Vec::new(),
        in_flight_uuids: HashSet::new(),
        seen_key: 0,
        checked_at: Instant::now(),
        error_logged_at: None,
    };
    let thread = WorkerThread::spawn("nats-ingest", move || runtime.block_on(worker.run()))
        .map_err(IngestError::Spawn)?;
    Ok(IngestHandle {
        thread,
        stop,
        metrics,
    })
}

/// A message whose event is in the writer channel (or committed), awaiting its commit.
struct Sent {
    uuid: Uuid,
    acker: Acker,
    /// Another message in flight carries the same event; this one was not sent.
    duplicate: bool,
}

struct Worker {
    config: NatsConfig,
    durable: String,
    store: Store,
    events: Sender<Event>,
    commits: Arc<CommitWatch>,
    settings: IngestSettings,
    metrics: Arc<IngestMetrics>,
    stop: watch::Receiver<bool>,
    /// Events the full writer channel refused, oldest first, with their acknowledgers.
    unsent: VecDeque<(Event, Acker)>,
    sent: Vec<Sent>,
    /// The UUIDs of `unsent` and `sent`.
    in_flight_uuids: HashSet<Uuid>,
    /// The commit watch's key at the last look-up.
    seen_key: u64,
    checked_at: Instant,
    error_logged_at: Option<Instant>,
}

/// How a consume loop ended.
enum Ended {
    Stopped,
    Failed(String),
}

impl Worker {
    async fn run(mut self) {
        let client = match connect::connect(&self.config, "sentrypeer-hub").await {
            Ok(client) => client,
            Err(error) => {
                eprintln!("sentrypeer: nats ingest: {error}");
                return;
            }
        };
        let context = connect::jetstream_context(client, 1);
        let mut backoff = NATS_INGEST_BACKOFF_INITIAL;
        while !*self.stop.borrow() {
            // A stop does not wait for a JetStream request to a server that is down.
            let mut stop = self.stop.clone();
            let opened = tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => break,
                opened = self.open(&context) => opened,
            };
            let ended = match opened {
                Ok(messages) => {
                    backoff = NATS_INGEST_BACKOFF_INITIAL;
                    self.consume(messages).await
                }
                Err(problem) => Ended::Failed(problem),
            };
            let Ended::Failed(problem) = ended else {
                break;
            };
            self.metrics.consumer_errors_total.inc();
            self.report(&problem, backoff);
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => break,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(NATS_INGEST_BACKOFF_MAX);
        }
        // Acknowledge what is already committed; the rest is delivered again next time.
        self.settle(true).await;
    }

    /// The stream (created when missing), the durable consumer, and its message stream.
    async fn open(&self, context: &jetstream::Context) -> Result<pull::Stream, String> {
        let stream = connect::ensure_stream(context, &self.config)
            .await
            .map_err(|error| error.to_string())?;
        let consumer = stream
            .get_or_create_consumer(
                &self.durable,
                pull::Config {
                    durable_name: Some(self.durable.clone()),
                    filter_subject: connect::stream_subjects(&self.config.subject_prefix),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: NATS_INGEST_ACK_WAIT,
                    max_ack_pending: i64::try_from(NATS_INGEST_IN_FLIGHT_MAX).unwrap_or(i64::MAX),
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| format!("consumer {}: {error}", self.durable))?;
        consumer
            .stream()
            .max_messages_per_batch(NATS_INGEST_PULL_BATCH)
            .messages()
            .await
            .map_err(|error| format!("pull: {error}"))
    }

    /// Takes messages while fewer than the cap are in flight, and acknowledges committed ones.
    async fn consume(&mut self, mut messages: pull::Stream) -> Ended {
        let mut tick = tokio::time::interval(NATS_INGEST_POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = self.stop.clone();
        loop {
            let room = self.in_flight() < NATS_INGEST_IN_FLIGHT_MAX;
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return Ended::Stopped,
                _ = tick.tick() => self.on_tick().await,
                next = messages.next(), if room => match next {
                    Some(Ok(message)) => self.accept(message).await,
                    Some(Err(error)) => return Ended::Failed(format!("pull: {error}")),
                    None => return Ended::Failed("the message stream ended".into()),
                },
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.unsent.len() + self.sent.len()
    }

    /// Offers refused events again; looks for commits when the watch moved or a re-check is due.
    async fn on_tick(&mut self) {
        if self.in_flight() == 0 {
            return;
        }
        self.send_unsent();
        let full = self.checked_at.elapsed() >= NATS_INGEST_RECHECK_INTERVAL;
        if full || self.commits.last_key() != self.seen_key {
            self.settle(full).await;
        }
    }

    /// One received message: rejected, ignored, duplicate (each acknowledged now) or sent.
    async fn accept(&mut self, message: Message) {
        self.metrics.received_total.inc();
        let now = now_ns();
        let context = DecodeContext {
            own_node_id: self.store.node_id(),
            now_ns: now,
            oldest_ns: now.saturating_sub(self.age_max_ns()),
        };
        let event = match decode_event(&message.payload, &context) {
            Ok(event) => event,
            Err(reason) => {
                self.metrics.rejected_total[reason.index()].inc();
                return self.ack(&message.split().1).await;
            }
        };
        if self.settings.ignore_ip.contains(event.source.ip()) {
            self.metrics.ignored_source_total.inc();
            return self.ack(&message.split().1).await;
        }
        if self.in_flight_uuids.contains(&event.uuid) {
            self.sent.push(Sent {
                uuid: event.uuid,
                acker: message.split().1,
                duplicate: true,
            });
            self.metrics.in_flight.set(self.in_flight() as u64);
            return;
        }
        if self.is_stored(&[event.uuid]).first() == Some(&true) {
            self.metrics.duplicate_total.inc();
            return self.ack(&message.split().1).await;
        }
        self.in_flight_uuids.insert(event.uuid);
        self.unsent.push_back((event, message.split().1));
        self.send_unsent();
        self.metrics.in_flight.set(self.in_flight() as u64);
    }

    /// Events older than this are stale: a year, or the retention if shorter.
    fn age_max_ns(&self) -> u64 {
        let year = u64::try_from(NATS_INGEST_EVENT_AGE_MAX.as_nanos()).unwrap_or(u64::MAX);
        let retention = self.settings.retention_days.map_or(u64::MAX, |days| {
            u64::from(days).saturating_mul(86_400_000_000_000)
        });
        year.min(retention)
    }

    /// Sends refused events, oldest first, until the channel is full again.
    fn send_unsent(&mut self) {
        while let Some((event, acker)) = self.unsent.pop_front() {
            let uuid = event.uuid;
            match self.events.try_send(event) {
                Ok(()) => self.sent.push(Sent {
                    uuid,
                    acker,
                    duplicate: false,
                }),
                Err(TrySendError::Full(event) | TrySendError::Disconnected(event)) => {
                    self.metrics.channel_full_total.inc();
                    self.unsent.push_front((event, acker));
                    return;
                }
            }
        }
    }

    /// Acknowledges sent messages whose events are committed: with `full`, every one; else the
    /// committed prefix of `sent` (the writer commits in channel order, so one look-up past
    /// the last commit ends the scan instead of all of `sent` on every tick; what waits out of
    /// order is found by the next full scan, at most [`NATS_INGEST_RECHECK_INTERVAL`] later).
    async fn settle(&mut self, full: bool) {
        self.seen_key = self.commits.last_key();
        if full {
            self.checked_at = Instant::now();
        }
        if self.sent.is_empty() {
            return;
        }
        let done: Vec<Sent> = if full {
            let uuids: Vec<Uuid> = self.sent.iter().map(|sent| sent.uuid).collect();
            let mut flags = self.is_stored(&uuids).into_iter();
            let (done, waiting) = std::mem::take(&mut self.sent)
                .into_iter()
                .partition(|_| flags.next().unwrap_or(false));
            self.sent = waiting;
            done
        } else {
            let committed = self.stored_prefix();
            self.sent.drain(..committed).collect()
        };
        for sent in &done {
            self.in_flight_uuids.remove(&sent.uuid);
            let counter = if sent.duplicate {
                &self.metrics.duplicate_total
            } else {
                &self.metrics.stored_total
            };
            counter.inc();
            self.ack(&sent.acker).await;
        }
        self.metrics.in_flight.set(self.in_flight() as u64);
    }

    /// How many of `sent`, from the oldest, the store holds (one read transaction).
    fn stored_prefix(&self) -> usize {
        let Ok(reader) = self.store.read() else {
            return 0;
        };
        self.sent
            .iter()
            .take_while(|sent| reader.has_foreign_uuid(&sent.uuid).unwrap_or(false))
            .count()
    }

    /// For each UUID, whether the store holds it (false when the store cannot be read: the
    /// message then waits and is looked up again).
    fn is_stored(&self, uuids: &[Uuid]) -> Vec<bool> {
        let Ok(reader) = self.store.read() else {
            return vec![false; uuids.len()];
        };
        uuids
            .iter()
            .map(|uuid| reader.has_foreign_uuid(uuid).unwrap_or(false))
            .collect()
    }

    async fn ack(&self, acker: &Acker) {
        match acker.ack().await {
            Ok(()) => self.metrics.acked_total.inc(),
            Err(_) => self.metrics.ack_errors_total.inc(),
        }
    }

    /// One line per failure, at most one per [`IO_ERROR_LOG_INTERVAL`].
    fn report(&mut self, problem: &str, backoff: Duration) {
        let now = Instant::now();
        if self
            .error_logged_at
            .is_some_and(|at| now.duration_since(at) < IO_ERROR_LOG_INTERVAL)
        {
            return;
        }
        self.error_logged_at = Some(now);
        eprintln!(
            "sentrypeer: nats ingest: {problem}; retrying in {} ms",
            backoff.as_millis()
        );
    }
}
