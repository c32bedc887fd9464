//! The webhook: a worker thread that POSTs committed events after its cursor, advancing the
//! cursor only when the endpoint accepts them (at-least-once, in order).
//!
//! Data flow: the writer commits events and publishes the last key on its [`CommitWatch`]; the
//! `webhook` thread ([`spawn`]) waits on that watch, reads the events after its cursor from the
//! store ([`Reader::events_after`](crate::store::Reader::events_after)), renders each as the
//! JSON-log object ([`crate::event::json`]) and POSTs it (or a JSON array of up to
//! `WebhookConfig::batch` of them) with a keep-alive ureq agent. The cursor (`meta` key
//! `cursor/webhook`) moves on 200/201/202/204, and on other 4xx, which skip the event (counted
//! and logged, so one poison event cannot block the stream). Failures (connect error, timeout,
//! 5xx, 408, 429, 401/403 after one token refresh) back off exponentially with jitter and retry
//! the same events. With OAuth2 client credentials the bearer token is cached until shortly
//! before it expires and fetched again once on a 401/403. Main types: [`WebhookHandle`],
//! [`WebhookMetrics`], [`WebhookOptions`]; `policy.rs` and `oauth.rs` are the pure decisions.
//!
//! Time: the worker reads the time only from the [`WebhookClock`] in its options
//! ([`SystemClock`] by default, so production waits in real time). Back-off waits, token
//! lifetimes and the cursor-persist and failure-log intervals follow that clock; a test passes a
//! clock it moves and drives them without sleeping. See `clock.rs` for what stays in real time.
//!
//! Never: retries without a bound on the wait (back-off capped at
//! [`limits::WEBHOOK_BACKOFF_MAX`], one request in flight), blocks the writer or a shard (it only
//! reads the store and writes its cursor in a tiny transaction at most once per
//! [`limits::WEBHOOK_CURSOR_PERSIST_INTERVAL`] or [`limits::WEBHOOK_CURSOR_PERSIST_EVENTS`]),
//! logs or renders a secret (client secret, token) or a response body.
//!
//! Limits: [`limits::WEBHOOK_CONNECT_TIMEOUT`], [`limits::WEBHOOK_REQUEST_TIMEOUT`],
//! [`limits::WEBHOOK_BACKOFF_INITIAL`], [`limits::WEBHOOK_BACKOFF_MAX`],
//! [`limits::WEBHOOK_READ_EVENTS_MAX`], [`limits::WEBHOOK_BATCH_EVENTS_MAX`],
//! [`limits::WEBHOOK_IDLE_WAIT`], [`limits::WEBHOOK_TOKEN_EARLY_MAX`],
//! [`limits::WEBHOOK_RESPONSE_BYTES_MAX`].

mod clock;
mod metrics;
mod oauth;
mod policy;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use ureq::Agent;

use crate::config::{WebhookConfig, limits};
use crate::store::{CommitCursor, CommitWatch, PersistPolicy, Store, StoreError};
use crate::worker_thread::WorkerThread;

pub use clock::{SystemClock, WebhookClock};
pub use metrics::WebhookMetrics;
/// The capped, jittered back-off and the failure-log rate (the NATS publisher uses them too).
pub(crate) use policy::{backoff_delay, failure_log_due};
use worker::{Log, OAuth, Shape, StopSignal, Timing, Worker};

/// The store cursor name the webhook keeps.
pub const CURSOR_NAME: &str = worker::CURSOR_NAME;

/// Why the webhook worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook: cannot read its cursor: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the webhook thread: {0}")]
    Spawn(std::io::Error),
}

/// Settings that are not part of the configuration (tests and tools).
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// First back-off wait, and the cap of the doubling.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
    /// Total time of one request (connect, send, answer).
    pub request_timeout: Duration,
    /// Longest time between cursor writes while events are being delivered.
    pub persist_interval: Duration,
    /// Also send every log line here (tests); stderr always gets it.
    pub log_lines: Option<Sender<String>>,
    /// Where the worker reads the time: [`SystemClock`], or a clock a test moves.
    pub clock: Arc<dyn WebhookClock>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        Self {
            backoff_initial: limits::WEBHOOK_BACKOFF_INITIAL,
            backoff_max: limits::WEBHOOK_BACKOFF_MAX,
            connect_timeout: limits::WEBHOOK_CONNECT_TIMEOUT,
            request_timeout: limits::WEBHOOK_REQUEST_TIMEOUT,
            persist_interval: limits::WEBHOOK_CURSOR_PERSIST_INTERVAL,
            log_lines: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The running webhook worker.
#[derive(Debug)]
pub struct WebhookHandle {
    thread: WorkerThread,
    stop: Arc<StopSignal>,
    metrics: Arc<WebhookMetrics>,
}

impl WebhookHandle {
    pub fn metrics(&self) -> Arc<WebhookMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Whether the worker has ended (the writer finished and everything was delivered).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Stops the worker (at once when idle or backing off; an in-flight request may take up
    /// to the request timeout), stores its cursor and joins it. Undelivered events stay in the
    /// store and are sent by the next worker.
    pub fn stop(self) {
        self.stop.stop();
        self.join();
    }

    /// Waits for the worker to end by itself: after the writer has finished and every event is
    /// delivered or skipped. Waits as long as the endpoint is down; prefer [`Self::stop`].
    pub fn join(self) {
        self.thread.join();
    }
}

/// Starts the webhook thread (named `webhook`) with default [`WebhookOptions`].
pub fn spawn(
    config: &WebhookConfig,
    store: Store,
    commits: Arc<CommitWatch>,
) -> Result<WebhookHandle, WebhookError> {
    spawn_with(config, store, commits, WebhookOptions::default())
}

/// Starts the webhook thread with explicit [`WebhookOptions`]. Delivery starts after the
/// stored cursor (0, i.e. the oldest stored event, when never set).
pub fn spawn_with(
    config: &WebhookConfig,
    store: Store,
    commits: Arc<CommitWatch>,
    options: WebhookOptions,
) -> Result<WebhookHandle, WebhookError> {
    let policy = PersistPolicy {
        events: limits::WEBHOOK_CURSOR_PERSIST_EVENTS,
        interval: options.persist_interval,
    };
    let cursor = CommitCursor::load(&store, CURSOR_NAME, policy, options.clock.now())?;
    let metrics = Arc::new(WebhookMetrics::new(Arc::clone(&commits), cursor.value()));
    let stop = Arc::new(StopSignal::default());
    let oauth = match (&config.oauth2_client_id, &config.oauth2_client_secret) {
        (Some(id), Some(secret)) => Some(OAuth {
            client_id: id.clone(),
            client_secret: secret.clone(),
            token_url: config.oauth2_token_url.clone(),
            audience: config.oauth2_audience.clone(),
            token: None,
        }),
        _ => None,
    };
    let shape = match config.batch {
        Some(count) => Shape::Array(count.clamp(1, limits::WEBHOOK_BATCH_EVENTS_MAX)),
        None => Shape::Object,
    };
    let worker = Worker {
        agent: agent(&options),
        url: config.url.clone(),
        oauth,
        shape,
        store,
        commits,
        metrics: Arc::clone(&metrics),
        stop: Arc::clone(&stop),
        log: Log {
            lines: options.log_lines.clone(),
        },
        timing: Timing {
            backoff_initial: options.backoff_initial,
            backoff_max: options.backoff_max,
        },
        clock: Arc::clone(&options.clock),
        cursor,
        failures: 0,
        failure_logged_at: None,
        body: Vec::with_capacity(64 * 1024),
    };
    let thread =
        WorkerThread::spawn("webhook", move || worker.run()).map_err(WebhookError::Spawn)?;
    Ok(WebhookHandle {
        thread,
        stop,
        metrics,
    })
}

/// The keep-alive agent: explicit timeouts, statuses as values, no redirects.
fn agent(options: &WebhookOptions) -> Agent {
    Agent::config_builder()
        .timeout_connect(Some(options.connect_timeout))
        .timeout_global(Some(options.request_timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(format!("sentrypeer/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}
