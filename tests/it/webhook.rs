//! The webhook worker against a real HTTP server on 127.0.0.1 (a tiny std::net server started
//! by each test that records every request and answers as the test says), with a real store
//! and writer in a tempdir. Tests that depend on the worker's time (token lifetime, back-off
//! during an outage) give it a [`TestClock`] and move that clock instead of sleeping.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use sentrypeer::config::{OutputConfig, Secret, StoreConfig, WebhookConfig};
use sentrypeer::event::json::to_json;
use sentrypeer::event::timestamp::now_ns;
use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
use sentrypeer::metrics::Render;
use sentrypeer::store::writer::spawn_writer_with;
use sentrypeer::store::{CommitWatch, Store, WriterHandle, WriterOptions};
use sentrypeer::webhook::{self, WebhookClock, WebhookHandle, WebhookOptions};
use tempfile::TempDir;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(30);

/// The tests' back-off cap (see [`options`]).
const BACKOFF_MAX: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// The test HTTP server.

/// One request as the server saw it, and the status it answered.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    status: u16,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    pub(crate) fn uuids(&self) -> Vec<String> {
        let value = self.json();
        let objects = match value.as_array() {
            Some(array) => array.clone(),
            None => vec![value],
        };
        objects
            .iter()
            .map(|o| o["event_uuid"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// What to answer: status, body, and a delay before answering.
pub(crate) struct Reply {
    status: u16,
    body: String,
    delay: Duration,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Self {
            status,
            body: String::new(),
            delay: Duration::ZERO,
        }
    }
}

type Handler = Box<dyn Fn(&Request, &[Request]) -> Reply + Send + Sync>;

struct Shared {
    requests: Mutex<Vec<Request>>,
    changed: Condvar,
    handler: Mutex<Handler>,
    open: AtomicBool,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

pub(crate) struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on 127.0.0.1 (port 0) and answers with `handler(request, earlier requests)`.
    pub(crate) fn start(
        handler: impl Fn(&Request, &[Request]) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            handler: Mutex::new(Box::new(handler)),
            open: AtomicBool::new(true),
            connections: Mutex::new(Vec::new()),
        });
        Self::listen("127.0.0.1:0".parse().unwrap(), shared)
    }

    fn listen(addr: SocketAddr, shared: Arc<Shared>) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        shared.open.store(true, Ordering::SeqCst);
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if !accept_shared.open.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let conn_shared = Arc::clone(&accept_shared);
                let handle = std::thread::spawn(move || serve(stream, &conn_shared));
                accept_shared.connections.lock().unwrap().push(handle);
            }
        });
        Self {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set_handler(&self, handler: impl Fn(&Request, &[Request]) -> Reply + Send + Sync + 'static) {
        *self.shared.handler.lock().unwrap() = Box::new(handler);
    }

    /// Stops listening and closes every connection (the endpoint is down).
    fn shut_down(&mut self) {
        self.shared.open.store(false, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            accept.join().unwrap();
        }
        let connections = std::mem::take(&mut *self.shared.connections.lock().unwrap());
        for connection in connections {
            connection.join().unwrap();
        }
    }

    /// Listens again on the same address, keeping the recorded requests.
    fn restart(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match TcpListener::bind(self.addr) {
                Ok(probe) => {
                    drop(probe);
                    break;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(error) => panic!("cannot listen again on {}: {error}", self.addr),
            }
        }
        let mut again = Self::listen(self.addr, Arc::clone(&self.shared));
        self.accept = again.accept.take();
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `condition` holds for the recorded requests.
    pub(crate) fn wait_for(&self, what: &str, condition: impl Fn(&[Request]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        let mut requests = self.shared.requests.lock().unwrap();
        while !condition(&requests) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}");
            requests = self.shared.changed.wait_timeout(requests, left).unwrap().0;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.shut_down();
        }
    }
}

/// Serves one keep-alive connection until the client closes it or the server shuts down.
fn serve(stream: TcpStream, shared: &Shared) {
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let Some(mut request) = read_request(&mut reader, shared) else {
            return;
        };
        let reply = {
            let requests = shared.requests.lock().unwrap();
            (shared.handler.lock().unwrap())(&request, &requests)
        };
        std::thread::sleep(reply.delay);
        request.status = reply.status;
        let head = format!(
            "HTTP/1.1 {} Test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            reply.status,
            reply.body.len()
        );
        // Record before answering: the worker may act on the answer at once.
        shared.requests.lock().unwrap().push(request);
        shared.changed.notify_all();
        if writer.write_all(head.as_bytes()).is_err()
            || writer.write_all(reply.body.as_bytes()).is_err()
        {
            return;
        }
    }
}

/// Reads one request; `None` when the connection closed or the server shut down.
fn read_request(reader: &mut BufReader<TcpStream>, shared: &Shared) -> Option<Request> {
    let mut line = String::new();
    let mut lines = Vec::new();
    loop {
        if !shared.open.load(Ordering::SeqCst) {
            return None;
        }
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) if line.ends_with('\n') => {
                let done = line == "\r\n";
                lines.push(std::mem::take(&mut line));
                if done {
                    break;
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
    let mut start = lines[0].split_whitespace();
    let method = start.next().unwrap().to_owned();
    let path = start.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines[1..lines.len() - 1]
        .iter()
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
        status: 0,
    };
    assert!(
        request.header("transfer-encoding").is_none(),
        "the test server reads Content-Length bodies only"
    );
    let length: usize = request
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; length];
    let mut filled = 0;
    while filled < length {
        match reader.read(&mut body[filled..]) {
            Ok(0) => return None,
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if !shared.open.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    request.body = body;
    Some(request)
}

// ---------------------------------------------------------------------------------------------
// The store, its writer and the worker.

fn event_at(index: u32, timestamp_ns: u64) -> Event {
    let message = format!(
        "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-{index}\r\n\
         Call-ID: {index}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: \"quoted\\agent\"\r\nContent-Length: 0\r\n\r\n"
    );
    let source: SocketAddr = format!("10.0.{}.{}:5060", index % 7, index % 250)
        .parse()
        .unwrap();
    Event::new(&EventParts {
        timestamp_ns,
        uuid: Uuid::new_v4(),
        node_id: Uuid::from_u128(7),
        transport: Transport::Udp,
        collected_method: CollectedMethod::Passive,
        source,
        destination: "127.0.0.1:5060".parse().unwrap(),
        method: b"OPTIONS",
        called_number: Some(format!("0044{index}").as_bytes()),
        user_agent: Some(b"\"quoted\\agent\""),
        message: message.as_bytes(),
        source_verified: false,
        auth_username: None,
    })
}

fn event(index: u32) -> Event {
    event_at(index, now_ns())
}

struct Rig {
    store: Store,
    sender: Option<Sender<Event>>,
    writer: Option<WriterHandle>,
    commits: Arc<CommitWatch>,
    /// Last: removed after the writer and the store handle are gone.
    _dir: TempDir,
}

impl Rig {
    fn new() -> Self {
        Self::with(None, WriterOptions::default())
    }

    fn with(retention_days: Option<u32>, options: WriterOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            retention_days,
            ..crate::support::store_config(dir.path(), 64)
        };
        let store = Store::open(&config).unwrap();
        let (sender, receiver) = crossbeam_channel::bounded(65_536);
        let outputs = OutputConfig {
            json_log_file: None,
            syslog: false,
            syslog_socket: sentrypeer::config::defaults::SYSLOG_SOCKET.into(),
            verified_only: false,
        };
        let writer =
            spawn_writer_with(store.clone(), receiver, &outputs, &config, options).unwrap();
        let commits = writer.commits();
        Self {
            _dir: dir,
            store,
            sender: Some(sender),
            writer: Some(writer),
            commits,
        }
    }

    /// Hands events to the writer as a shard would (never waiting); all must fit.
    fn send(&self, events: &[Event]) {
        let sender = self.sender.as_ref().unwrap();
        for event in events {
            sender
                .try_send(event.clone())
                .expect("the writer channel never fills");
        }
    }

    /// Sends and waits until they are committed.
    fn commit(&self, events: &[Event]) {
        let before = self.store.read().unwrap().last_key().unwrap();
        self.send(events);
        let target = before + events.len() as u64;
        let deadline = Instant::now() + DEADLINE;
        while self.commits.last_key() < target {
            assert!(Instant::now() < deadline, "timed out waiting for commits");
            self.commits
                .wait_past(self.commits.last_key(), Duration::from_millis(100));
        }
    }

    /// Closes the writer's channel and waits for it to end.
    fn finish_writer(&mut self) {
        drop(self.sender.take());
        if let Some(writer) = self.writer.take() {
            writer.join();
        }
    }

    fn cursor(&self) -> u64 {
        self.store
            .read()
            .unwrap()
            .cursor(webhook::CURSOR_NAME)
            .unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.finish_writer();
    }
}

fn hook_config(server: &Server) -> WebhookConfig {
    WebhookConfig {
        url: server.url("/hook"),
        oauth2_client_id: None,
        oauth2_client_secret: None,
        oauth2_token_url: String::new(),
        oauth2_audience: String::new(),
        batch: None,
    }
}

fn oauth_config(server: &Server, secret: &str) -> WebhookConfig {
    WebhookConfig {
        oauth2_client_id: Some("client-1".into()),
        oauth2_client_secret: Some(Secret::new(secret.into())),
        oauth2_token_url: server.url("/token"),
        oauth2_audience: "https://audience.example".into(),
        ..hook_config(server)
    }
}

/// Fast back-off and timeouts for tests; log lines go to the returned receiver.
fn options() -> (WebhookOptions, Receiver<String>) {
    let (sender, receiver) = crossbeam_channel::unbounded();
    let options = WebhookOptions {
        backoff_initial: Duration::from_millis(20),
        backoff_max: BACKOFF_MAX,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        persist_interval: Duration::from_millis(50),
        log_lines: Some(sender),
        ..WebhookOptions::default()
    };
    (options, receiver)
}

fn start(rig: &Rig, config: &WebhookConfig) -> (WebhookHandle, Receiver<String>) {
    let (options, logs) = options();
    let handle =
        webhook::spawn_with(config, rig.store.clone(), Arc::clone(&rig.commits), options).unwrap();
    (handle, logs)
}

/// A clock the test moves: a fixed start plus what [`TestClock::advance`] added. While the
/// worker waits by it (a back-off) it reads it again every millisecond of real time.
#[derive(Debug)]
struct TestClock {
    start: Instant,
    advanced_ns: AtomicU64,
}

impl TestClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            advanced_ns: AtomicU64::new(0),
        })
    }

    fn advance(&self, by: Duration) {
        let by_ns = u64::try_from(by.as_nanos()).unwrap();
        self.advanced_ns.fetch_add(by_ns, Ordering::SeqCst);
    }
}

impl WebhookClock for TestClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.advanced_ns.load(Ordering::SeqCst))
    }

    fn real_wait(&self, left: Duration) -> Duration {
        left.min(Duration::from_millis(1))
    }
}

/// Like [`start`], with the worker reading the time from `clock`.
fn start_clocked(
    rig: &Rig,
    config: &WebhookConfig,
    clock: &Arc<TestClock>,
) -> (WebhookHandle, Receiver<String>) {
    let (options, logs) = options();
    let options = WebhookOptions {
        clock: Arc::clone(clock) as Arc<dyn WebhookClock>,
        ..options
    };
    let handle =
        webhook::spawn_with(config, rig.store.clone(), Arc::clone(&rig.commits), options).unwrap();
    (handle, logs)
}

/// Moves `clock` on by a whole back-off ([`BACKOFF_MAX`]) at every poll until `condition`
/// holds: every back-off the worker starts meanwhile ends at the next poll.
fn drive_until(clock: &TestClock, what: &str, mut condition: impl FnMut() -> bool) {
    wait_until(what, || {
        clock.advance(BACKOFF_MAX);
        condition()
    });
}

fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    crate::support::wait_until(what, DEADLINE, condition);
}

/// The event UUIDs the endpoint accepted (2xx), in arrival order.
fn accepted_uuids(server: &Server) -> Vec<String> {
    server
        .requests_to("/hook")
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .flat_map(Request::uuids)
        .collect()
}

fn uuids_of(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.uuid.hyphenated().to_string())
        .collect()
}

fn accepted_count(requests: &[Request]) -> usize {
    requests
        .iter()
        .filter(|r| r.path == "/hook" && (200..300).contains(&r.status))
        .map(|r| r.uuids().len())
        .sum()
}

fn ok_handler(_: &Request, _: &[Request]) -> Reply {
    Reply::status(200)
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn webhook_posts_exact_json_log_objects() {
    let server = Server::start(|_, earlier| Reply::status([200, 201, 202, 204][earlier.len() % 4]));
    let rig = Rig::new();
    let (worker, _logs) = start(&rig, &hook_config(&server));
    let events: Vec<Event> = (0..20).map(event).collect();
    rig.send(&events);
    server.wait_for("20 events", |r| accepted_count(r) == 20);
    let requests = server.requests_to("/hook");
    assert_eq!(requests.len(), 20);
    for (request, event) in requests.iter().zip(&events) {
        assert_eq!(request.method, "POST");
        assert_eq!(request.body, to_json(event).as_bytes());
        assert_eq!(request.header("content-type"), Some("application/json"));
        let agent = format!("sentrypeer/{}", env!("CARGO_PKG_VERSION"));
        assert_eq!(request.header("user-agent"), Some(agent.as_str()));
        assert_eq!(request.header("authorization"), None);
    }
    let metrics = worker.metrics();
    wait_until("the lag to reach 0", || metrics.lag_events() == 0);
    assert_eq!(metrics.events_delivered_total.get(), 20);
    assert_eq!(metrics.requests_failed_total.get(), 0);
    assert!(metrics.last_success_unix_seconds.get() > 1_700_000_000);
    worker.stop();
    assert_eq!(rig.cursor(), 20);
    let mut text = String::new();
    metrics.render(&mut text);
    assert!(text.contains("sentrypeer_webhook_events_delivered_total 20\n"));
    assert!(text.contains("sentrypeer_webhook_lag_events 0\n"));
}

/// A token server on `/token` handing out `tok-1`, `tok-2`, ... with `expires_in`.
fn token_reply(earlier: &[Request], expires_in: u64) -> Reply {
    let issued = earlier.iter().filter(|r| r.path == "/token").count() + 1;
    Reply {
        status: 200,
        body: format!(
            r#"{{"access_token":"tok-{issued}","expires_in":{expires_in},"token_type":"Bearer"}}"#
        ),
        delay: Duration::ZERO,
    }
}

#[test]
fn webhook_oauth2_token_request_and_bearer() {
    let server = Server::start(|request, earlier| match request.path.as_str() {
        "/token" => token_reply(earlier, 3600),
        _ if request.header("authorization") == Some("Bearer tok-1") => Reply::status(200),
        _ => Reply::status(401),
    });
    let rig = Rig::new();
    let (worker, _logs) = start(&rig, &oauth_config(&server, "the-secret"));
    let events: Vec<Event> = (0..5).map(event).collect();
    rig.send(&events);
    server.wait_for("5 events", |r| accepted_count(r) == 5);
    let tokens = server.requests_to("/token");
    assert_eq!(tokens.len(), 1);
    let token = &tokens[0];
    assert_eq!(token.method, "POST");
    assert_eq!(token.header("content-type"), Some("application/json"));
    let body = token.json();
    assert_eq!(body["client_id"], "client-1");
    assert_eq!(body["client_secret"], "the-secret");
    assert_eq!(body["audience"], "https://audience.example");
    assert_eq!(body["grant_type"], "client_credentials");
    assert_eq!(body.as_object().unwrap().len(), 4);
    let hooks = server.requests_to("/hook");
    assert_eq!(hooks.len(), 5);
    assert!(
        hooks
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer tok-1"))
    );
    assert_eq!(accepted_uuids(&server), uuids_of(&events));
    assert_eq!(worker.metrics().token_refreshes_total.get(), 1);
    worker.stop();
}

#[test]
fn webhook_token_expiry_refreshes_once() {
    let server = Server::start(|request, earlier| match request.path.as_str() {
        "/token" => token_reply(earlier, 2),
        _ => Reply::status(200),
    });
    let rig = Rig::new();
    let clock = TestClock::new();
    let (worker, _logs) = start_clocked(&rig, &oauth_config(&server, "s"), &clock);
    rig.send(&[event(0)]);
    server.wait_for("the first event", |r| accepted_count(r) == 1);
    // The token expires in 2 s and is replaced 10% early: in use until 1.8 s after its fetch.
    clock.advance(Duration::from_millis(1_799));
    rig.send(&[event(1)]);
    server.wait_for("the second event", |r| accepted_count(r) == 2);
    clock.advance(Duration::from_millis(1));
    rig.send(&[event(2), event(3)]);
    server.wait_for("two more events", |r| accepted_count(r) == 4);
    let bearers: Vec<String> = server
        .requests_to("/hook")
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(
        bearers,
        [
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-2",
            "Bearer tok-2"
        ]
    );
    assert_eq!(server.requests_to("/token").len(), 2);
    assert_eq!(worker.metrics().token_refreshes_total.get(), 2);
    worker.stop();
}

#[test]
fn webhook_unauthorized_refreshes_once_then_backs_off() {
    // tok-1 is refused: one refresh, and the event goes through with tok-2.
    let server = Server::start(|request, earlier| match request.path.as_str() {
        "/token" => token_reply(earlier, 3600),
        _ if request.header("authorization") == Some("Bearer tok-1") => Reply::status(401),
        _ => Reply::status(200),
    });
    let rig = Rig::new();
    let (worker, _logs) = start(&rig, &oauth_config(&server, "s"));
    let events: Vec<Event> = (0..3).map(event).collect();
    rig.send(&events);
    server.wait_for("3 events", |r| accepted_count(r) == 3);
    assert_eq!(server.requests_to("/token").len(), 2);
    assert_eq!(server.requests_to("/hook").len(), 4);
    assert_eq!(accepted_uuids(&server), uuids_of(&events));
    let metrics = worker.metrics();
    assert_eq!(metrics.requests_failed_total.get(), 0);
    // Now every token is refused: each attempt refreshes once, then backs off.
    server.set_handler(|request, earlier| match request.path.as_str() {
        "/token" => token_reply(earlier, 3600),
        _ => Reply::status(403),
    });
    rig.send(&[event(3)]);
    wait_until("three failed attempts", || {
        metrics.requests_failed_total.get() >= 3
    });
    worker.stop();
    let failed = metrics.requests_failed_total.get() as usize;
    let refused = server.requests_to("/hook").len() - 4;
    assert_eq!(refused, 2 * failed, "one retry per attempt");
    assert_eq!(
        server.requests_to("/token").len(),
        2 + failed,
        "one refresh per attempt"
    );
    assert_eq!(metrics.events_delivered_total.get(), 3);
    assert_eq!(rig.cursor(), 3);
}

#[test]
fn webhook_outage_during_flood_loses_nothing() {
    let mut server = Server::start(ok_handler);
    let mut rig = Rig::new();
    let clock = TestClock::new();
    let (worker, _logs) = start_clocked(&rig, &hook_config(&server), &clock);
    let events: Vec<Event> = (0..3_000).map(event).collect();
    // A quarter of the events before, during each half of the outage, and after it; the
    // worker's back-off time is driven, the outage lasts a counted number of failed attempts.
    let quarters: Vec<&[Event]> = events.chunks(750).collect();
    let metrics = worker.metrics();
    rig.send(quarters[0]);
    server.wait_for("the first deliveries", |r| accepted_count(r) > 50);
    // Down: not listening, for three failed attempts after the shutdown.
    server.shut_down();
    let failed_before = metrics.requests_failed_total.get();
    rig.send(quarters[1]);
    drive_until(&clock, "three failed connects", || {
        metrics.requests_failed_total.get() >= failed_before + 3
    });
    // Up but answering 503, for three answers.
    server.set_handler(|_, _| Reply::status(503));
    server.restart();
    rig.send(quarters[2]);
    drive_until(&clock, "three 503 answers", || {
        server.requests().iter().filter(|r| r.status == 503).count() >= 3
    });
    server.set_handler(ok_handler);
    rig.send(quarters[3]);
    rig.finish_writer();
    drive_until(&clock, "the worker to deliver everything and end", || {
        worker.is_finished()
    });
    worker.stop();
    let accepted = accepted_uuids(&server);
    let unique: HashSet<&String> = accepted.iter().collect();
    assert_eq!(unique.len(), accepted.len(), "an event was delivered twice");
    assert_eq!(accepted, uuids_of(&events));
    assert!(metrics.requests_failed_total.get() > failed_before);
    assert!(server.requests_to("/hook").iter().any(|r| r.status == 503));
    assert_eq!(metrics.events_delivered_total.get(), 3_000);
    assert_eq!(rig.store.read().unwrap().totals().unwrap().events, 3_000);
    assert_eq!(rig.cursor(), 3_000);
}

#[test]
fn webhook_slow_endpoint_never_slows_capture() {
    let server = Server::start(|_, _| Reply {
        status: 200,
        body: String::new(),
        delay: Duration::from_millis(20),
    });
    let rig = Rig::new();
    let (worker, _logs) = start(&rig, &hook_config(&server));
    let events: Vec<Event> = (0..2_000).map(event).collect();
    rig.commit(&events);
    let metrics = worker.metrics();
    // All 2000 are stored while the endpoint (50 per second at best) has seen few of them.
    assert_eq!(rig.store.read().unwrap().totals().unwrap().events, 2_000);
    assert!(metrics.events_delivered_total.get() < 1_000);
    assert!(metrics.lag_events() > 0);
    server.wait_for("some deliveries", |r| accepted_count(r) >= 5);
    worker.stop();
    let delivered = metrics.events_delivered_total.get();
    assert!(delivered < 2_000);
    assert_eq!(rig.cursor(), delivered);
    assert_eq!(
        accepted_uuids(&server),
        uuids_of(&events[..delivered as usize])
    );
}

#[test]
fn webhook_restart_resumes_from_cursor() {
    let server =
        Server::start(|_, earlier| Reply::status(if earlier.len() < 40 { 200 } else { 503 }));
    let rig = Rig::new();
    let events: Vec<Event> = (0..100).map(event).collect();
    rig.commit(&events);
    let (first, _logs) = start(&rig, &hook_config(&server));
    let metrics = first.metrics();
    wait_until("40 deliveries and a failure", || {
        metrics.requests_failed_total.get() >= 1
    });
    first.stop();
    assert_eq!(metrics.events_delivered_total.get(), 40);
    assert_eq!(rig.cursor(), 40);
    assert_eq!(metrics.lag_events(), 60);
    server.set_handler(ok_handler);
    let (second, _logs) = start(&rig, &hook_config(&server));
    server.wait_for("all 100", |r| accepted_count(r) == 100);
    let second_metrics = second.metrics();
    wait_until("the second worker's count", || {
        second_metrics.events_delivered_total.get() == 60
    });
    second.stop();
    assert_eq!(accepted_uuids(&server), uuids_of(&events));
    assert_eq!(rig.cursor(), 100);
}

#[test]
fn webhook_rejected_event_is_skipped() {
    let events: Vec<Event> = (0..10).map(event).collect();
    let poison = events[4].uuid.hyphenated().to_string();
    let poison_in_handler = poison.clone();
    let server = Server::start(move |request, _| {
        if request.uuids().contains(&poison_in_handler) {
            Reply::status(400)
        } else {
            Reply::status(200)
        }
    });
    let rig = Rig::new();
    let (worker, logs) = start(&rig, &hook_config(&server));
    rig.send(&events);
    server.wait_for("9 events", |r| accepted_count(r) == 9);
    let metrics = worker.metrics();
    wait_until("the skip to be counted", || metrics.lag_events() == 0);
    worker.stop();
    assert_eq!(metrics.events_skipped_total.get(), 1);
    assert_eq!(metrics.events_delivered_total.get(), 9);
    assert_eq!(metrics.requests_failed_total.get(), 0);
    let hooks = server.requests_to("/hook");
    assert_eq!(hooks.iter().filter(|r| r.status == 400).count(), 1);
    let mut expected = uuids_of(&events);
    expected.remove(4);
    assert_eq!(accepted_uuids(&server), expected);
    let lines: Vec<String> = logs.try_iter().collect();
    let skipped: Vec<&String> = lines.iter().filter(|l| l.contains("skipped")).collect();
    assert_eq!(skipped.len(), 1, "{lines:?}");
    assert!(skipped[0].contains(&poison) && skipped[0].contains("400"));
    assert_eq!(rig.cursor(), 10);
}

#[test]
fn webhook_batch_posts_arrays_and_isolates_a_rejected_event() {
    let events: Vec<Event> = (0..10).map(event).collect();
    let poison = events[6].uuid.hyphenated().to_string();
    let poison_in_handler = poison.clone();
    let server = Server::start(move |request, _| {
        if request.uuids().contains(&poison_in_handler) {
            Reply::status(422)
        } else {
            Reply::status(200)
        }
    });
    let rig = Rig::new();
    rig.commit(&events);
    let config = WebhookConfig {
        batch: Some(4),
        ..hook_config(&server)
    };
    let (worker, _logs) = start(&rig, &config);
    server.wait_for("9 events", |r| accepted_count(r) == 9);
    let metrics = worker.metrics();
    wait_until("the lag to reach 0", || metrics.lag_events() == 0);
    worker.stop();
    let hooks = server.requests_to("/hook");
    assert!(hooks.iter().all(|r| r.json().is_array()));
    let sizes: Vec<usize> = hooks.iter().map(|r| r.uuids().len()).collect();
    // [0-3], [4-7] refused, then one by one: 4, 5, 6 (refused), 7; then [8, 9].
    assert_eq!(sizes, [4, 4, 1, 1, 1, 1, 2]);
    let first = hooks[0].json();
    for (object, event) in first.as_array().unwrap().iter().zip(&events) {
        let expected: serde_json::Value = serde_json::from_str(&to_json(event)).unwrap();
        assert_eq!(object, &expected);
    }
    let mut expected = uuids_of(&events);
    expected.remove(6);
    assert_eq!(accepted_uuids(&server), expected);
    assert_eq!(metrics.events_skipped_total.get(), 1);
    assert_eq!(metrics.events_delivered_total.get(), 9);
    assert_eq!(rig.cursor(), 10);
}

#[test]
fn webhook_secrets_never_logged_or_rendered() {
    const SECRET: &str = "S3CRET-client-xyz";
    // The token endpoint fails first (echoing the secret), then issues TOKEN-abc-2, ...;
    // the webhook refuses TOKEN-abc-2 (one refresh), then answers 503 once, then 200.
    let server = Server::start(|request, earlier| {
        let tokens = earlier.iter().filter(|r| r.path == "/token").count();
        let hooks = earlier.iter().filter(|r| r.path == "/hook").count();
        match request.path.as_str() {
            "/token" if tokens == 0 => Reply {
                status: 500,
                body: format!("bad request {}", String::from_utf8_lossy(&request.body)),
                delay: Duration::ZERO,
            },
            "/token" => Reply {
                status: 200,
                body: format!(
                    r#"{{"access_token":"TOKEN-abc-{}","expires_in":3600}}"#,
                    tokens + 1
                ),
                delay: Duration::ZERO,
            },
            _ if request.header("authorization") == Some("Bearer TOKEN-abc-2") => {
                Reply::status(401)
            }
            _ if hooks == 1 => Reply::status(503),
            _ => Reply::status(200),
        }
    });
    let rig = Rig::new();
    let config = oauth_config(&server, SECRET);
    let (worker, logs) = start(&rig, &config);
    rig.send(&[event(0), event(1)]);
    server.wait_for("2 events", |r| accepted_count(r) == 2);
    let metrics = worker.metrics();
    let debug = format!("{worker:?} {config:?}");
    worker.stop();
    assert!(
        server.requests_to("/token")[0]
            .body
            .windows(SECRET.len())
            .any(|w| w == SECRET.as_bytes())
    );
    let lines: Vec<String> = logs.try_iter().collect();
    assert!(lines.len() >= 2, "the failures were logged: {lines:?}");
    let mut rendered = String::new();
    metrics.render(&mut rendered);
    for text in lines.iter().chain([&rendered, &debug]) {
        assert!(!text.contains(SECRET), "secret in {text:?}");
        assert!(!text.contains("TOKEN-abc"), "token in {text:?}");
    }
    assert!(metrics.requests_failed_total.get() >= 2);
    assert_eq!(metrics.token_refreshes_total.get(), 2);
}

#[test]
fn webhook_counts_events_pruned_before_delivery() {
    let options = WriterOptions {
        prune_interval: Duration::from_millis(20),
        ..WriterOptions::default()
    };
    let rig = Rig::with(Some(1), options);
    // Two days old: retention (1 day) removes them before the worker starts.
    let old_ns = now_ns() - 2 * 86_400 * 1_000_000_000;
    let old: Vec<Event> = (0..50).map(|i| event_at(i, old_ns)).collect();
    rig.commit(&old);
    wait_until("retention to remove the old events", || {
        rig.store.read().unwrap().totals().unwrap().events == 0
    });
    let server = Server::start(ok_handler);
    let (worker, logs) = start(&rig, &hook_config(&server));
    let metrics = worker.metrics();
    wait_until("the pruned events to be counted", || {
        metrics.events_pruned_total.get() == 50
    });
    let fresh: Vec<Event> = (50..60).map(event).collect();
    rig.send(&fresh);
    server.wait_for("10 events", |r| accepted_count(r) == 10);
    wait_until("the lag to reach 0", || metrics.lag_events() == 0);
    worker.stop();
    assert_eq!(accepted_uuids(&server), uuids_of(&fresh));
    assert_eq!(metrics.events_pruned_total.get(), 50);
    assert_eq!(rig.cursor(), 60);
    let lines: Vec<String> = logs.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("50 events were removed")),
        "{lines:?}"
    );
}

#[test]
fn webhook_ends_when_writer_finishes_and_all_delivered() {
    let server = Server::start(ok_handler);
    let mut rig = Rig::new();
    let (worker, _logs) = start(&rig, &hook_config(&server));
    let events: Vec<Event> = (0..30).map(event).collect();
    rig.send(&events);
    rig.finish_writer();
    let started = Instant::now();
    wait_until("the worker to end", || worker.is_finished());
    assert!(started.elapsed() < DEADLINE);
    worker.join();
    assert_eq!(accepted_uuids(&server), uuids_of(&events));
    assert_eq!(rig.cursor(), 30);
}

#[test]
fn webhook_stop_is_prompt_during_back_off() {
    let server = Server::start(|_, _| Reply::status(503));
    let rig = Rig::new();
    let (options, _logs) = options();
    let options = WebhookOptions {
        backoff_initial: Duration::from_secs(30),
        backoff_max: Duration::from_secs(60),
        ..options
    };
    let worker = webhook::spawn_with(
        &hook_config(&server),
        rig.store.clone(),
        Arc::clone(&rig.commits),
        options,
    )
    .unwrap();
    rig.send(&[event(0)]);
    let metrics = worker.metrics();
    wait_until("a failed attempt", || {
        metrics.requests_failed_total.get() == 1
    });
    let stopping = Instant::now();
    worker.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stop waited for the back-off"
    );
    assert_eq!(rig.cursor(), 0);
}

#[test]
fn webhook_timeout_is_a_failed_attempt() {
    // The first answer comes after the worker's 500 ms request timeout.
    let first = AtomicBool::new(true);
    let server = Server::start(move |_, _| Reply {
        status: 200,
        body: String::new(),
        delay: if first.swap(false, Ordering::SeqCst) {
            Duration::from_millis(1_500)
        } else {
            Duration::ZERO
        },
    });
    let rig = Rig::new();
    let (options, logs) = options();
    let options = WebhookOptions {
        request_timeout: Duration::from_millis(500),
        ..options
    };
    let worker = webhook::spawn_with(
        &hook_config(&server),
        rig.store.clone(),
        Arc::clone(&rig.commits),
        options,
    )
    .unwrap();
    let events: Vec<Event> = (0..3).map(event).collect();
    rig.send(&events);
    let metrics = worker.metrics();
    wait_until("3 deliveries", || metrics.events_delivered_total.get() == 3);
    worker.stop();
    assert_eq!(metrics.requests_failed_total.get(), 1);
    // At least once: the endpoint took the timed-out request too (recorded when it answered).
    let mut expected = uuids_of(&events);
    expected.extend(uuids_of(&events[..1]));
    server.wait_for("the late request", |r| accepted_count(r) == 4);
    assert_eq!(accepted_uuids(&server), expected);
    let lines: Vec<String> = logs.try_iter().collect();
    assert!(lines.iter().any(|l| l.contains("timeout")), "{lines:?}");
    assert_eq!(rig.cursor(), 3);
}
