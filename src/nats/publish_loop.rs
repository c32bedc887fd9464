//! The `nats-publisher` loop: reads committed events after its cursor, publishes them to
//! JetStream with many acknowledgements awaited at once, and moves the cursor over the
//! acknowledged prefix only. The decisions are in `publish_policy.rs`.
//!
//! Never: wait without a bound (connects, publishes and acknowledgements time out, back-offs are
//! capped), hold more than `in_flight_max` unacknowledged publishes, or skip an event that could
//! still be published (only oversize ones, counted and logged).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Subject;
use async_nats::connection::State;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::{Client, ConnectOptions, ServerAddr};
use bytes::{BufMut, BytesMut};
use uuid::Uuid;

use super::connect;
use super::publish_metrics::PublisherMetrics;
use super::publish_policy::{backoff_delay, is_own};
use super::publisher::{PublisherOptions, Signals};
use crate::config::{NatsConfig, limits};
use crate::event::Event;
use crate::event::json::write_json;
use crate::store::{CommitCursor, CommitWatch, Store, StoreError};
use crate::webhook::failure_log_due;

/// One publish awaiting its acknowledgement, or an event passed over (`None`).
type Pending = (u64, Option<PublishAckFuture>);

/// How one round of publishes ended.
enum Round {
    /// Every event of the round was acknowledged (or passed over).
    Done,
    /// A publish or an acknowledgement failed; the unacknowledged rest is published again.
    Failed(String),
    Stopped,
}

pub(crate) struct Publisher {
    nats: NatsConfig,
    store: Store,
    commits: Arc<CommitWatch>,
    metrics: Arc<PublisherMetrics>,
    stop: Arc<Signals>,
    options: PublisherOptions,
    /// Connections lost before the current round began.
    round_disconnects: u64,
    node_id: Uuid,
    /// `<prefix>.<node id>`, built once (a clone shares its bytes).
    subject: Subject,
    /// The last event acknowledged, skipped or pruned.
    cursor: CommitCursor,
    /// Consecutive failed rounds (0: the last one succeeded).
    failures: u32,
    failure_logged_at: Option<Instant>,
    /// Whether the stream was looked up (or created) since the last failed round.
    stream_checked: bool,
}

impl Publisher {
    pub(crate) fn new(
        nats: &NatsConfig,
        store: Store,
        commits: Arc<CommitWatch>,
        metrics: Arc<PublisherMetrics>,
        stop: Arc<Signals>,
        options: PublisherOptions,
        cursor: CommitCursor,
    ) -> Self {
        let node_id = store.node_id();
        Self {
            subject: Subject::from(connect::node_subject(&nats.subject_prefix, node_id)),
            nats: nats.clone(),
            store,
            commits,
            metrics,
            stop,
            options,
            round_disconnects: 0,
            node_id,
            cursor,
            failures: 0,
            failure_logged_at: None,
            stream_checked: false,
        }
    }

    /// Runs until stopped, or until the writer has finished and everything is acknowledged.
    pub(crate) async fn run(mut self, options: ConnectOptions, addrs: Vec<ServerAddr>) {
        let client = match options.connect(addrs).await {
            Ok(client) => client,
            Err(error) => {
                self.log(&format!("cannot start the NATS client: {error}"));
                return;
            }
        };
        let ack_pending_max = self.options.in_flight_max.max(1).saturating_mul(2);
        let context = connect::jetstream_context(client.clone(), ack_pending_max);
        while !self.stop.is_stopped() {
            if !self.connected(&client) {
                self.pause(limits::NATS_IDLE_WAIT).await;
                continue;
            }
            if !self.stream_checked {
                self.check_stream(&context).await;
            }
            // Read `finished` before the store: a commit after this read is then seen below.
            let finished = self.commits.is_finished();
            let events = match self.read_after_cursor() {
                Ok(events) => events,
                Err(error) => {
                    self.back_off(&format!("cannot read the store: {error}"))
                        .await;
                    continue;
                }
            };
            if events.is_empty() {
                self.persist_cursor_if_due();
                if finished {
                    break;
                }
                self.wait_for_commits().await;
                continue;
            }
            match self.publish_round(&context, events).await {
                Round::Done => self.recovered(),
                Round::Failed(reason) => {
                    self.stream_checked = false;
                    self.back_off(&reason).await;
                }
                Round::Stopped => break,
            }
        }
        self.persist_cursor();
        self.metrics.connected.set(0);
        // No drain: it could wait on a frozen server, and what was not acknowledged is published
        // again by the next run anyway.
        drop(context);
        drop(client);
    }

    fn connected(&self, client: &Client) -> bool {
        let connected = client.connection_state() == State::Connected;
        self.metrics.connected.set(u64::from(connected));
        connected
    }

    /// Looks the stream up or creates it. A failure only logs: through a leaf node the JetStream
    /// API of the hub's account is out of reach while publishing to its stream works, so the
    /// acknowledgements decide (a missing stream fails the round and this runs again).
    async fn check_stream(&mut self, context: &jetstream::Context) {
        self.stream_checked = true;
        if let Err(error) = connect::ensure_stream(context, &self.nats).await {
            self.log(&format!("{error}; publishing anyway"));
        }
    }

    /// Up to [`limits::NATS_READ_EVENTS_MAX`] events after the cursor; moves the cursor over
    /// events that no longer exist (retention), counting them as pruned.
    fn read_after_cursor(&mut self) -> Result<Vec<(u64, Event)>, StoreError> {
        let read = self
            .cursor
            .read_after(&self.store, limits::NATS_READ_EVENTS_MAX)?;
        if read.pruned > 0 {
            self.metrics.pruned_total.add(read.pruned);
            self.log(&format!(
                "{} events were removed from the store before they were published",
                read.pruned
            ));
            self.persist_cursor_if_due();
        }
        Ok(read.events)
    }

    /// Publishes `events` in order, then the events after them as long as the store has more,
    /// with up to `in_flight_max` acknowledgements awaited at once (the next read happens while
    /// they are awaited: the window never empties between reads); the cursor follows the
    /// acknowledged prefix. Ends once the store has nothing after the last one sent and every
    /// acknowledgement is in.
    async fn publish_round(
        &mut self,
        context: &jetstream::Context,
        mut events: Vec<(u64, Event)>,
    ) -> Round {
        self.round_disconnects = self.stop.disconnects();
        let in_flight_max = self.options.in_flight_max.max(1);
        let mut pending: VecDeque<Pending> = VecDeque::with_capacity(in_flight_max);
        let mut body = BytesMut::new();
        while let Some(&(last_key, _)) = events.last() {
            if let Some(round) = self
                .publish_events(context, &events, &mut pending, &mut body)
                .await
            {
                return round;
            }
            // A read error ends the round here; the next read from the cursor reports it.
            events = self.read_more(last_key).unwrap_or_default();
        }
        while !pending.is_empty() {
            if let Err(reason) = self.settle_front(&mut pending).await {
                return self.abandon(pending, reason);
            }
        }
        Round::Done
    }

    /// Publishes `events` into the window `pending`; `Some` when the round ends early.
    async fn publish_events(
        &mut self,
        context: &jetstream::Context,
        events: &[(u64, Event)],
        pending: &mut VecDeque<Pending>,
        body: &mut BytesMut,
    ) -> Option<Round> {
        let in_flight_max = self.options.in_flight_max.max(1);
        for (key, event) in events {
            if self.stop.is_stopped() {
                return Some(self.drain(std::mem::take(pending)).await);
            }
            while pending.len() >= in_flight_max {
                if let Err(reason) = self.settle_front(pending).await {
                    return Some(self.abandon(std::mem::take(pending), reason));
                }
            }
            if !is_own(event.node_id, self.node_id) {
                pending.push_back((*key, None));
                continue;
            }
            match self.publish(context, event, body).await {
                Ok(ack) => pending.push_back((*key, Some(ack))),
                Err((PublishErrorKind::MaxPayloadExceeded, reason)) => {
                    self.skipped(event, &reason);
                    pending.push_back((*key, None));
                }
                Err((_, reason)) => {
                    self.metrics.retried_total.inc();
                    return Some(self.abandon(std::mem::take(pending), reason));
                }
            }
        }
        None
    }

    /// Up to [`limits::NATS_READ_EVENTS_MAX`] events after `key`, the last one sent in this
    /// round. Events pruned after the round began are passed over uncounted when the cursor
    /// moves past them (only the read from the cursor counts pruned events).
    fn read_more(&self, key: u64) -> Result<Vec<(u64, Event)>, StoreError> {
        self.store
            .read()?
            .events_after(key, limits::NATS_READ_EVENTS_MAX)
    }

    /// Sends one event; the acknowledgement is awaited later. The JSON is rendered into `body`'s
    /// spare room and split off without a copy (the chunk is freed once its messages are sent).
    async fn publish(
        &self,
        context: &jetstream::Context,
        event: &Event,
        body: &mut BytesMut,
    ) -> Result<PublishAckFuture, (PublishErrorKind, String)> {
        if body.capacity() - body.len() < limits::NATS_RENDER_BYTES_MIN {
            body.reserve(limits::NATS_RENDER_CHUNK_BYTES);
        }
        // Writing into a BytesMut cannot fail.
        let _ = write_json(event, &mut body.writer());
        let payload = body.split().freeze();
        let mut id = Uuid::encode_buffer();
        let message = PublishMessage::build()
            .payload(payload)
            .message_id(event.uuid.hyphenated().encode_lower(&mut id));
        let sent = context.send_publish(self.subject.clone(), message).await;
        self.metrics.published_total.inc();
        sent.map_err(|error| (error.kind(), format!("publish failed: {error}")))
    }

    /// Awaits the oldest pending acknowledgement and moves the cursor over it; fails at once when
    /// the connection it was sent on is lost (its acknowledgement will not come).
    async fn settle_front(&mut self, pending: &mut VecDeque<Pending>) -> Result<(), String> {
        let Some((key, ack)) = pending.pop_front() else {
            return Ok(());
        };
        if let Some(ack) = ack {
            let lost = self.stop.disconnected.notified();
            tokio::pin!(lost);
            lost.as_mut().enable();
            // An acknowledgement already received still counts after a loss.
            let already_lost = self.stop.disconnects() != self.round_disconnects;
            let acked = tokio::select! {
                biased;
                acked = ack => acked.map_err(|error| format!("no acknowledgement: {error}")),
                () = lost, if !already_lost => Err("the connection was lost".to_owned()),
                () = std::future::ready(()), if already_lost => {
                    Err("the connection was lost".to_owned())
                }
            };
            match acked {
                Ok(ack) => {
                    self.metrics.acknowledged_total.inc();
                    if ack.duplicate {
                        self.metrics.duplicates_total.inc();
                    }
                }
                Err(reason) => {
                    self.metrics.retried_total.inc();
                    return Err(reason);
                }
            }
        }
        self.advance(key);
        Ok(())
    }

    /// Gives up on the round: the unacknowledged publishes will be sent again.
    fn abandon(&self, pending: VecDeque<Pending>, reason: String) -> Round {
        let unacknowledged = pending.iter().filter(|(_, ack)| ack.is_some()).count();
        self.metrics.retried_total.add(unacknowledged as u64);
        Round::Failed(reason)
    }

    /// On stop: the pending acknowledgements get up to [`limits::NATS_STOP_DRAIN_TIMEOUT`].
    async fn drain(&mut self, mut pending: VecDeque<Pending>) -> Round {
        let deadline = tokio::time::Instant::now() + limits::NATS_STOP_DRAIN_TIMEOUT;
        while !pending.is_empty() {
            let settled = tokio::time::timeout_at(deadline, self.settle_front(&mut pending));
            if !matches!(settled.await, Ok(Ok(()))) {
                break;
            }
        }
        Round::Stopped
    }

    fn skipped(&self, event: &Event, reason: &str) {
        self.metrics.skipped_total.inc();
        self.log(&format!(
            "skipped event {}: its JSON exceeds the server's max_payload ({reason})",
            event.uuid.hyphenated()
        ));
    }

    fn advance(&mut self, key: u64) {
        let result = self.cursor.advance(&self.store, key, Instant::now());
        self.cursor_written(result);
    }

    fn persist_cursor_if_due(&mut self) {
        let result = self.cursor.persist_if_due(&self.store, Instant::now());
        self.cursor_written(result);
    }

    fn persist_cursor(&mut self) {
        let result = self.cursor.persist(&self.store, Instant::now());
        self.cursor_written(result);
    }

    fn cursor_written(&mut self, result: Result<(), StoreError>) {
        self.metrics.cursor.set(self.cursor.value());
        if let Err(error) = result {
            self.log(&format!("cannot store the cursor: {error}"));
        }
    }

    /// Waits (off the runtime's thread) for a commit past the cursor, at most
    /// [`limits::NATS_IDLE_WAIT`].
    async fn wait_for_commits(&self) {
        let commits = Arc::clone(&self.commits);
        let cursor = self.cursor.value();
        let waited = tokio::task::spawn_blocking(move || {
            commits.wait_past(cursor, limits::NATS_IDLE_WAIT);
        });
        let _ = waited.await;
    }

    /// Counts and logs a failure, then waits out the back-off (or until stopped).
    async fn back_off(&mut self, reason: &str) {
        self.failures = self.failures.saturating_add(1);
        let delay = backoff_delay(
            self.failures,
            self.options.backoff_initial,
            self.options.backoff_max,
            fastrand::u64(..),
        );
        let now = Instant::now();
        let since_logged = self.failure_logged_at.map(|at| now.duration_since(at));
        if failure_log_due(self.failures, since_logged) {
            self.log(&format!(
                "{reason}; retrying in {} ms ({} failed attempts in a row)",
                delay.as_millis(),
                self.failures
            ));
            self.failure_logged_at = Some(now);
        }
        self.persist_cursor_if_due();
        self.pause(delay).await;
    }

    /// Sleeps for `delay` unless a stop comes first.
    async fn pause(&self, delay: Duration) {
        if self.stop.is_stopped() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.stop.notify.notified() => {}
        }
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            self.log(&format!(
                "publishing again after {} failed attempts",
                self.failures
            ));
        }
        self.failures = 0;
        self.failure_logged_at = None;
    }

    fn log(&self, text: &str) {
        eprintln!("sentrypeer: nats: {text}");
        if let Some(lines) = &self.options.log_lines {
            let _: Result<(), _> = lines.try_send(text.to_owned());
        }
    }
}
