//! The webhook thread: reads committed events after its cursor, POSTs them, advances the cursor.
//! It reads the time only from its [`WebhookClock`]; the decisions are in `policy.rs`.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use ureq::Agent;

use super::WebhookMetrics;
use super::clock::WebhookClock;
use super::oauth::{parse_token_response, token_request_body};
use super::policy::{Verdict, backoff_delay, classify_status, failure_log_due, token_usable_for};
use crate::config::{Secret, limits};
use crate::event::Event;
use crate::event::json::write_json;
use crate::store::{CommitCursor, CommitWatch, Store, StoreError};

/// The store cursor the webhook keeps (`meta` key `cursor/webhook`).
pub(crate) const CURSOR_NAME: &str = "webhook";

/// Asks the worker to stop; wakes it from a back-off at once.
#[derive(Debug, Default)]
pub(crate) struct StopSignal {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl StopSignal {
    pub(crate) fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps for `duration` unless stopped first; true when stopped.
    fn sleep(&self, duration: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, duration, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

/// Waits until `delay` has passed by `clock`, unless `stop` comes first (then at once); true
/// when stopped. With the system clock this is one real wait of `delay`.
fn wait_by(clock: &dyn WebhookClock, stop: &StopSignal, delay: Duration) -> bool {
    let Some(deadline) = clock.now().checked_add(delay) else {
        return stop.sleep(delay);
    };
    loop {
        let left = deadline.saturating_duration_since(clock.now());
        if left.is_zero() {
            return stop.is_stopped();
        }
        if stop.sleep(clock.real_wait(left)) {
            return true;
        }
    }
}

/// Where the worker's log lines go: stderr, and a channel in tests.
#[derive(Debug)]
pub(crate) struct Log {
    pub(crate) lines: Option<Sender<String>>,
}

impl Log {
    fn line(&self, text: &str) {
        eprintln!("sentrypeer: webhook: {text}");
        if let Some(lines) = &self.lines {
            let _ = lines.try_send(text.to_owned());
        }
    }
}

/// The OAuth2 client-credentials settings and the cached token.
pub(crate) struct OAuth {
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    pub(crate) token_url: String,
    pub(crate) audience: String,
    pub(crate) token: Option<Token>,
}

/// An access token and when to stop using it. Never logged.
pub(crate) struct Token {
    value: String,
    replace_at: Instant,
}

/// How events go into a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One JSON object per request (the original's format).
    Object,
    /// A JSON array of up to this many objects per request.
    Array(usize),
}

/// How one request (with its token refresh) ended.
enum Attempt {
    Delivered,
    Rejected(u16),
    Failed(String),
}

/// How a group of events ended.
enum Outcome {
    Delivered,
    Rejected(u16),
    Stopped,
}

/// Timing knobs (see `WebhookOptions`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
}

pub(crate) struct Worker {
    pub(crate) agent: Agent,
    pub(crate) url: String,
    pub(crate) oauth: Option<OAuth>,
    pub(crate) shape: Shape,
    pub(crate) store: Store,
    pub(crate) commits: Arc<CommitWatch>,
    pub(crate) metrics: Arc<WebhookMetrics>,
    pub(crate) stop: Arc<StopSignal>,
    pub(crate) log: Log,
    pub(crate) timing: Timing,
    pub(crate) clock: Arc<dyn WebhookClock>,
    /// The last event delivered, skipped or pruned.
    pub(crate) cursor: CommitCursor,
    /// Consecutive failed attempts (0: the last one succeeded).
    pub(crate) failures: u32,
    pub(crate) failure_logged_at: Option<Instant>,
    pub(crate) body: Vec<u8>,
}

impl Worker {
    /// Runs until stopped, or until the writer has finished and everything is delivered.
    pub(crate) fn run(mut self) {
        while !self.stop.is_stopped() {
            // Read `finished` before the store: a commit after this read is then seen below.
            let finished = self.commits.is_finished();
            match self.read_after_cursor() {
                Ok(events) if events.is_empty() => {
                    self.persist_cursor_if_due();
                    if finished {
                        break;
                    }
                    self.commits
                        .wait_past(self.cursor.value(), limits::WEBHOOK_IDLE_WAIT);
                }
                Ok(events) => self.deliver(&events),
                Err(error) => {
                    let reason = format!("cannot read the store: {error}");
                    if self.back_off(&reason) {
                        break;
                    }
                }
            }
        }
        self.persist_cursor();
    }

    /// Up to [`limits::WEBHOOK_READ_EVENTS_MAX`] events (or one batch, when larger) after the
    /// cursor; moves the cursor over events that no longer exist (retention, or a record that
    /// does not decode), counting them as pruned.
    fn read_after_cursor(&mut self) -> Result<Vec<(u64, Event)>, StoreError> {
        let limit = match self.shape {
            Shape::Object => limits::WEBHOOK_READ_EVENTS_MAX,
            Shape::Array(count) => limits::WEBHOOK_READ_EVENTS_MAX.max(count),
        };
        let read = self.cursor.read_after(&self.store, limit)?;
        if read.pruned > 0 {
            self.metrics.events_pruned_total.add(read.pruned);
            self.log.line(&format!(
                "{} events were removed from the store before they were delivered",
                read.pruned
            ));
            self.persist_cursor_if_due();
        }
        Ok(read.events)
    }

    /// Delivers `events` in order, in groups of the request shape; returns early when stopped.
    fn deliver(&mut self, events: &[(u64, Event)]) {
        let group_events = match self.shape {
            Shape::Object => 1,
            Shape::Array(count) => count.max(1),
        };
        for group in events.chunks(group_events) {
            match self.send_until_done(group) {
                Outcome::Delivered => self.delivered(group),
                Outcome::Rejected(_) if group.len() > 1 => {
                    // Isolate the event(s) the endpoint refuses: resend one per request.
                    for single in group.chunks(1) {
                        match self.send_until_done(single) {
                            Outcome::Delivered => self.delivered(single),
                            Outcome::Rejected(status) => self.skipped(single, status),
                            Outcome::Stopped => return,
                        }
                    }
                }
                Outcome::Rejected(status) => self.skipped(group, status),
                Outcome::Stopped => return,
            }
        }
    }

    fn delivered(&mut self, group: &[(u64, Event)]) {
        self.metrics.events_delivered_total.add(group.len() as u64);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.metrics.last_success_unix_seconds.set(now);
        if let Some((key, _)) = group.last() {
            self.advance(*key);
        }
    }

    fn skipped(&mut self, group: &[(u64, Event)], status: u16) {
        for (key, event) in group {
            self.metrics.events_skipped_total.inc();
            self.log.line(&format!(
                "skipped event {} (store key {key}): the endpoint answered {status}",
                event.uuid.hyphenated()
            ));
            self.advance(*key);
        }
    }

    fn advance(&mut self, key: u64) {
        let result = self.cursor.advance(&self.store, key, self.clock.now());
        self.cursor_written(result);
    }

    fn persist_cursor_if_due(&mut self) {
        let result = self.cursor.persist_if_due(&self.store, self.clock.now());
        self.cursor_written(result);
    }

    fn persist_cursor(&mut self) {
        let result = self.cursor.persist(&self.store, self.clock.now());
        self.cursor_written(result);
    }

    fn cursor_written(&mut self, result: Result<(), StoreError>) {
        self.metrics.cursor.set(self.cursor.value());
        if let Err(error) = result {
            self.log.line(&format!("cannot store the cursor: {error}"));
        }
    }

    /// Sends `group` until the endpoint accepts or rejects it, backing off between failures.
    fn send_until_done(&mut self, group: &[(u64, Event)]) -> Outcome {
        self.render(group);
        loop {
            if self.stop.is_stopped() {
                return Outcome::Stopped;
            }
            match self.attempt() {
                Attempt::Delivered => {
                    self.recovered();
                    return Outcome::Delivered;
                }
                Attempt::Rejected(status) => {
                    self.recovered();
                    return Outcome::Rejected(status);
                }
                Attempt::Failed(reason) => {
                    if self.back_off(&reason) {
                        return Outcome::Stopped;
                    }
                }
            }
        }
    }

    /// Counts and logs a failure, then waits out the back-off; true when stopped meanwhile.
    fn back_off(&mut self, reason: &str) -> bool {
        self.metrics.requests_failed_total.inc();
        self.failures = self.failures.saturating_add(1);
        let delay = backoff_delay(
            self.failures,
            self.timing.backoff_initial,
            self.timing.backoff_max,
            fastrand::u64(..),
        );
        let now = self.clock.now();
        let since_logged = self
            .failure_logged_at
            .map(|at| now.saturating_duration_since(at));
        if failure_log_due(self.failures, since_logged) {
            self.log.line(&format!(
                "{reason}; retrying in {} ms ({} failed attempts in a row)",
                delay.as_millis(),
                self.failures
            ));
            self.failure_logged_at = Some(now);
        }
        self.persist_cursor_if_due();
        self.wait(delay)
    }

    fn wait(&self, delay: Duration) -> bool {
        wait_by(&*self.clock, &self.stop, delay)
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            self.log.line(&format!(
                "delivering again after {} failed attempts",
                self.failures
            ));
        }
        self.failures = 0;
        self.failure_logged_at = None;
    }

    /// Renders the group into `self.body`: one object, or an array.
    fn render(&mut self, group: &[(u64, Event)]) {
        self.body.clear();
        let array = matches!(self.shape, Shape::Array(_));
        if array {
            self.body.push(b'[');
        }
        for (index, (_, event)) in group.iter().enumerate() {
            if index > 0 {
                self.body.push(b',');
            }
            // Writing into a Vec cannot fail.
            let _ = write_json(event, &mut self.body);
        }
        if array {
            self.body.push(b']');
        }
    }

    /// One POST of `self.body`; on 401/403 with OAuth2, one token refresh and one retry.
    fn attempt(&mut self) -> Attempt {
        let mut refreshed = false;
        loop {
            let token = match self.token() {
                Ok(token) => token,
                Err(reason) => return Attempt::Failed(reason),
            };
            let status = match self.post(token.as_deref()) {
                Ok(status) => status,
                Err(error) => return Attempt::Failed(format!("POST failed: {error}")),
            };
            match classify_status(status) {
                Verdict::Delivered => return Attempt::Delivered,
                Verdict::Rejected => return Attempt::Rejected(status),
                Verdict::Unauthorized if !refreshed && self.oauth.is_some() => {
                    if let Some(oauth) = &mut self.oauth {
                        oauth.token = None;
                    }
                    refreshed = true;
                }
                Verdict::Unauthorized | Verdict::Retry => {
                    return Attempt::Failed(format!("the endpoint answered {status}"));
                }
            }
        }
    }

    fn post(&self, token: Option<&str>) -> Result<u16, ureq::Error> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request.send(&self.body[..])?;
        // Read the (small) answer so that the connection can be reused.
        let _ = response
            .body_mut()
            .with_config()
            .limit(limits::WEBHOOK_RESPONSE_BYTES_MAX)
            .read_to_vec();
        Ok(response.status().as_u16())
    }

    /// The bearer token to send (`None` without OAuth2), fetched when missing or due.
    fn token(&mut self) -> Result<Option<String>, String> {
        let Some(oauth) = &mut self.oauth else {
            return Ok(None);
        };
        if let Some(token) = &oauth.token
            && self.clock.now() < token.replace_at
        {
            return Ok(Some(token.value.clone()));
        }
        oauth.token = None;
        let body = token_request_body(
            &oauth.client_id,
            oauth.client_secret.expose(),
            &oauth.audience,
        );
        let fetched_at = self.clock.now();
        let mut response = self
            .agent
            .post(&oauth.token_url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .send(&body)
            .map_err(|error| format!("token request failed: {error}"))?;
        let status = response.status().as_u16();
        // The body is never logged: it may echo what was sent.
        let text = response
            .body_mut()
            .with_config()
            .limit(limits::WEBHOOK_RESPONSE_BYTES_MAX)
            .read_to_vec();
        if !(200..300).contains(&status) {
            return Err(format!("the token endpoint answered {status}"));
        }
        let text = text.map_err(|error| format!("token response unreadable: {error}"))?;
        let parsed = parse_token_response(&text).map_err(|error| error.to_string())?;
        self.metrics.token_refreshes_total.inc();
        let replace_at = fetched_at
            .checked_add(token_usable_for(parsed.expires_in))
            .unwrap_or(fetched_at + limits::WEBHOOK_TOKEN_LIFETIME_DEFAULT);
        let value = parsed.access_token;
        oauth.token = Some(Token {
            value: value.clone(),
            replace_at,
        });
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::webhook::SystemClock;

    /// A clock that moves 10 ms at every reading and never blocks in real time.
    #[derive(Debug)]
    struct SteppingClock {
        start: Instant,
        readings: AtomicU64,
    }

    impl WebhookClock for SteppingClock {
        fn now(&self) -> Instant {
            let readings = self.readings.fetch_add(1, Ordering::SeqCst);
            self.start + Duration::from_millis(10 * readings)
        }

        fn real_wait(&self, _left: Duration) -> Duration {
            Duration::ZERO
        }
    }

    fn stepping() -> SteppingClock {
        SteppingClock {
            start: Instant::now(),
            readings: AtomicU64::new(0),
        }
    }

    #[test]
    fn wait_by_follows_the_clock() {
        let clock = stepping();
        assert!(!wait_by(
            &clock,
            &StopSignal::default(),
            Duration::from_millis(100)
        ));
        // One reading for the deadline, then one per 10 ms until it has passed.
        assert_eq!(clock.readings.load(Ordering::SeqCst), 11);
    }

    #[test]
    fn wait_by_ends_at_once_when_stopped() {
        let stop = StopSignal::default();
        stop.stop();
        let clock = stepping();
        assert!(wait_by(&clock, &stop, Duration::from_secs(3_600)));
        assert_eq!(clock.readings.load(Ordering::SeqCst), 2);
        let started = Instant::now();
        assert!(wait_by(&SystemClock, &stop, Duration::from_secs(3_600)));
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn wait_by_system_clock_waits_the_delay() {
        let started = Instant::now();
        assert!(!wait_by(
            &SystemClock,
            &StopSignal::default(),
            Duration::from_millis(20)
        ));
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
