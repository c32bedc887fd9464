//! The sensor's engines: the shared harness every sensor test uses (each test written once, run on
//! both engines by `both_engines!`), engine choice, fallback and start-up errors.
//!
//! Every harness asserts the engine that actually runs: a `portable` variant runs Portable, an
//! `io_uring` variant runs io_uring. Where io_uring is unavailable the `io_uring` variants are
//! `SKIP`ped with the reason, or fail under `CI=true` (`support::require`).

use std::net::{SocketAddr, UdpSocket};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use sentrypeer::config::limits;
use sentrypeer::config::{EngineChoice, SensorConfig};
use sentrypeer::event::Event;
use sentrypeer::sensor::{self, EngineKind, Sensor, SensorTotals};
use uuid::Uuid;

use crate::support::require::{Missing, decide, missing};

/// Longest wait for anything in these tests.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// The engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    IoUring,
    Portable,
}

/// Runs each named `fn(Engine)` once per engine, as `<name>::io_uring` and `<name>::portable`;
/// the `io_uring` variant only where io_uring serves a sensor ([`io_uring_ready`]).
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn io_uring() {
                if crate::engine::io_uring_ready() {
                    super::$name(crate::engine::Engine::IoUring);
                }
            }
            #[test]
            fn portable() {
                super::$name(crate::engine::Engine::Portable);
            }
        }
    )*};
}

/// A running sensor on loopback with its event receiver; stopped on drop.
pub(crate) struct Harness {
    pub(crate) sensor: Option<Sensor>,
    pub(crate) events: Receiver<Event>,
    pub(crate) node_id: Uuid,
    pub(crate) dir: tempfile::TempDir,
}

/// Settings for tests: one core, loopback port 0, short timeouts, TLS in a temp dir.
pub(crate) fn test_config(engine: Engine, dir: &std::path::Path) -> SensorConfig {
    SensorConfig {
        enabled: true,
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls_cert: dir.join("cert.pem"),
        tls_key: dir.join("key.pem"),
        responsive: false,
        cores: 1,
        engine: match engine {
            Engine::IoUring => EngineChoice::Auto,
            Engine::Portable => EngineChoice::Portable,
        },
        force_probe_failure: false,
        udp_rcvbuf_bytes: limits::UDP_RCVBUF_BYTES_DEFAULT,
        tcp_idle_timeout: Duration::from_secs(5),
        tls_handshake_timeout: Duration::from_secs(5),
        tcp_connections_per_ip_max: limits::TCP_CONNECTIONS_PER_IP_MAX,
        tcp_connections_per_shard_max: limits::TCP_CONNECTIONS_PER_SHARD_MAX,
        reply_rate_per_second: limits::REPLY_RATE_PER_SECOND,
        reply_burst: limits::REPLY_BURST,
        server_header: "FPBX-16.0.33(18.13.0)".to_owned(),
        ignore_ip: Default::default(),
        sip_challenge: false,
        sip_realm: "asterisk".to_owned(),
    }
}

/// Starts a sensor on `engine` with the test settings changed by `tweak`; fails the test unless
/// `engine` is the one that runs.
pub(crate) fn start(engine: Engine, tweak: impl FnOnce(&mut SensorConfig)) -> Harness {
    let harness = start_any(engine, tweak);
    assert_engine(engine, harness.sensor());
    harness
}

/// Fails the test unless `sensor` runs on `engine`.
pub(crate) fn assert_engine(engine: Engine, sensor: &Sensor) {
    let expected = match engine {
        Engine::IoUring => EngineKind::IoUring,
        Engine::Portable => EngineKind::Portable,
    };
    assert_eq!(
        (sensor.engine(), sensor.fallback_reason()),
        (expected, None),
        "asked for the {engine:?} engine; (engine that ran, fallback reason) differ"
    );
}

/// [`start`] without the engine assertion (the fallback tests check the engine themselves).
fn start_any(engine: Engine, tweak: impl FnOnce(&mut SensorConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(engine, dir.path());
    tweak(&mut config);
    let (sender, events) = crossbeam_channel::bounded(limits::EVENT_CHANNEL_CAPACITY);
    let node_id = Uuid::new_v4();
    let sensor = sensor::start(
        &config,
        &sensor::Identity::ephemeral(node_id),
        sender,
        false,
    )
    .unwrap();
    Harness {
        sensor: Some(sensor),
        events,
        node_id,
        dir,
    }
}

impl Harness {
    pub(crate) fn sensor(&self) -> &Sensor {
        self.sensor.as_ref().unwrap()
    }

    pub(crate) fn udp(&self) -> SocketAddr {
        self.sensor().udp_addrs()[0]
    }

    pub(crate) fn tcp(&self) -> SocketAddr {
        self.sensor().tcp_addrs()[0]
    }

    pub(crate) fn tls(&self) -> SocketAddr {
        self.sensor().tls_addr().unwrap()
    }

    /// The next event, failing the test after [`DEADLINE`].
    pub(crate) fn next_event(&self) -> Event {
        self.events
            .recv_timeout(DEADLINE)
            .expect("no event before the deadline")
    }

    /// Proves that nothing sent before is still to become an event, by order rather than by
    /// waiting: a marker datagram sent now must be the next event. Call it once the earlier
    /// input was handled (its event arrived, or a counter showed it was handled): an event from
    /// that input was sent into the channel before the marker was even sent.
    pub(crate) fn assert_no_event_before_marker(&self) {
        let marker = options(&format!("marker-{}", Uuid::new_v4()));
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.send_to(marker.as_bytes(), self.udp()).unwrap();
        let event = self.next_event();
        assert_eq!(
            event.message(),
            marker.as_bytes(),
            "unexpected event before the marker: {}",
            event.message_text()
        );
    }

    pub(crate) fn totals(&self) -> SensorTotals {
        self.sensor().metrics().totals()
    }

    /// Waits until `condition` holds on the summed counters.
    pub(crate) fn wait_totals(&self, what: &str, condition: impl Fn(&SensorTotals) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !condition(&self.totals()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.totals()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(sensor) = self.sensor.take() {
            sensor.stop();
        }
    }
}

/// Whether io_uring serves a sensor here (probed once per run). When it does not, the require
/// policy applies: `SKIP <test>: io_uring unavailable (<reason>)` and `false`, or, under
/// `CI=true`, a failure.
pub(crate) fn io_uring_ready() -> bool {
    static PROBE: OnceLock<Option<String>> = OnceLock::new();
    match PROBE.get_or_init(|| probe_io_uring(|_| {})) {
        None => true,
        Some(reason) => {
            missing(&io_uring_unavailable(reason));
            false
        }
    }
}

/// Starts and stops a sensor on `Auto` (changed by `tweak`): `None` if it ran io_uring, else why
/// not.
fn probe_io_uring(tweak: impl FnOnce(&mut SensorConfig)) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(Engine::IoUring, dir.path());
    config.tls_listen = None;
    tweak(&mut config);
    let (sender, _events) = crossbeam_channel::bounded(16);
    let sensor = sensor::start(
        &config,
        &sensor::Identity::ephemeral(Uuid::new_v4()),
        sender,
        false,
    )
    .unwrap_or_else(|e| panic!("the io_uring probe sensor did not start: {e}"));
    let gap = io_uring_gap(sensor.engine(), sensor.fallback_reason());
    sensor.stop();
    gap
}

/// Why a sensor asked for io_uring does not run it; `None` when it does.
fn io_uring_gap(ran: EngineKind, fallback_reason: Option<&str>) -> Option<String> {
    match ran {
        EngineKind::IoUring => None,
        EngineKind::Portable => Some(fallback_reason.unwrap_or("no reason given").to_owned()),
    }
}

fn io_uring_unavailable(reason: &str) -> String {
    format!("io_uring unavailable ({reason})")
}

/// The unavailable path end to end but for the environment: a real probe forced to fail gives a
/// reason, which skips an `io_uring` variant, or fails it under `CI=true`.
#[test]
fn engine_io_uring_unavailable_skips_or_fails() {
    assert_eq!(io_uring_gap(EngineKind::IoUring, None), None);
    let reason = probe_io_uring(|c| c.force_probe_failure = true).expect("forced failure");
    assert!(reason.contains("forced"), "{reason}");
    let why = io_uring_unavailable(&reason);
    assert_eq!(
        decide(None, "udp::x::io_uring", &why),
        Missing::Skip(format!(
            "SKIP udp::x::io_uring: io_uring unavailable ({reason})"
        ))
    );
    assert!(matches!(
        decide(Some("true"), "udp::x::io_uring", &why),
        Missing::Fail(m) if m.starts_with("udp::x::io_uring: io_uring unavailable (")
    ));
}

/// A scanner-style OPTIONS request.
pub(crate) fn options(call_id: &str) -> String {
    format!(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         To: \"100\" <sip:100@127.0.0.1>\r\n\
         From: \"scanner\" <sip:100@127.0.0.1>;tag=abc{call_id}\r\n\
         User-Agent: friendly-scanner\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:100@127.0.0.1:5070>\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A UDP client on loopback with a receive timeout.
pub(crate) fn udp_client(bind: &str) -> UdpSocket {
    let socket = UdpSocket::bind(bind).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    socket
}

fn engine_fallback_forced_shows_reason(_engine: Engine) {
    let harness = start_any(Engine::IoUring, |c| c.force_probe_failure = true);
    assert_eq!(harness.sensor().engine(), EngineKind::Portable);
    let reason = harness.sensor().fallback_reason().unwrap();
    assert!(reason.contains("forced"), "{reason}");
    // The harness's engine check does not let a fallback pass as io_uring.
    let sensor = std::panic::AssertUnwindSafe(harness.sensor());
    let check = std::panic::catch_unwind(|| assert_engine(Engine::IoUring, &sensor));
    assert!(check.is_err(), "a fallback passed as io_uring");
    // The fallback engine still serves UDP, TCP and TLS.
    assert!(harness.sensor().tls_addr().is_some());
    udp_client("127.0.0.1:0")
        .send_to(options("fallback").as_bytes(), harness.udp())
        .unwrap();
    assert_eq!(harness.next_event().method(), b"OPTIONS");
}

#[test]
fn engine_fallback_forced() {
    engine_fallback_forced_shows_reason(Engine::IoUring);
}

#[test]
fn engine_portable_starts_no_tls_listener() {
    // -N: the config layer sets tls_listen None and engine Portable.
    let harness = start(Engine::Portable, |c| c.tls_listen = None);
    assert_eq!(harness.sensor().engine(), EngineKind::Portable);
    assert_eq!(harness.sensor().fallback_reason(), None);
    assert_eq!(harness.sensor().tls_addr(), None);
    assert!(
        !harness.dir.path().join("cert.pem").exists(),
        "no certificate generated"
    );
}

#[test]
fn engine_auto_picks_io_uring_when_available() {
    if io_uring_ready() {
        let harness = start_any(Engine::IoUring, |_| {});
        assert_eq!(harness.sensor().engine(), EngineKind::IoUring);
        assert_eq!(harness.sensor().fallback_reason(), None);
    }
}

fn engine_bind_failure_is_one_line(engine: Engine) {
    // A socket without SO_REUSEPORT holds the port.
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = holder.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(engine, dir.path());
    config.listen = vec![address];
    let (sender, _events) = crossbeam_channel::bounded(16);
    let error = sensor::start(
        &config,
        &sensor::Identity::ephemeral(Uuid::new_v4()),
        sender,
        false,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        error.starts_with(&format!("cannot bind UDP {address}: ")),
        "{error}"
    );
    assert!(!error.contains('\n'));
    // The same settings start once the port is free, on the engine asked for.
    drop(holder);
    let (sender, _events) = crossbeam_channel::bounded(16);
    let sensor = sensor::start(
        &config,
        &sensor::Identity::ephemeral(Uuid::new_v4()),
        sender,
        false,
    )
    .unwrap();
    assert_engine(engine, &sensor);
    sensor.stop();
}

fn engine_shards_share_the_port(engine: Engine) {
    let harness = start(engine, |c| c.cores = 2);
    assert_eq!(harness.sensor().metrics().shard_count(), 2);
    let client = udp_client("127.0.0.1:0");
    for i in 0..20 {
        // Different source ports spread over the shards; all arrive.
        let client = if i % 2 == 0 {
            &client
        } else {
            &udp_client("127.0.0.1:0")
        };
        client
            .send_to(options(&format!("shard-{i}")).as_bytes(), harness.udp())
            .unwrap();
    }
    for _ in 0..20 {
        harness.next_event();
    }
}

fn engine_stop_drains_and_joins(engine: Engine) {
    let mut harness = start(engine, |_| {});
    let client = udp_client("127.0.0.1:0");
    for i in 0..200 {
        client
            .send_to(options(&format!("drain-{i}")).as_bytes(), harness.udp())
            .unwrap();
    }
    harness.sensor.take().unwrap().stop();
    // Every datagram that reached the socket before stop is an event now.
    let received = harness.events.try_iter().count();
    assert_eq!(received, 200);
}

fn engine_stop_under_flood(engine: Engine) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut harness = start(engine, |_| {});
    let target = harness.udp();
    let flooding = Arc::new(AtomicBool::new(true));
    let flooder = {
        let flooding = Arc::clone(&flooding);
        std::thread::spawn(move || {
            let client = udp_client("127.0.0.1:0");
            let message = options("flood");
            let started = Instant::now();
            while flooding.load(Ordering::Relaxed) && started.elapsed() < DEADLINE * 4 {
                let _ = client.send_to(message.as_bytes(), target);
            }
        })
    };
    harness.wait_totals("the flood arriving", |t| t.datagrams_received > 1_000);
    let sensor = harness.sensor.take().unwrap();
    let (done, stopped) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        sensor.stop();
        let _ = done.send(());
    });
    // Generous: on a loaded 2-core CI machine the pinned shards compete with the flooder.
    let outcome = stopped.recv_timeout(DEADLINE * 3);
    flooding.store(false, Ordering::Relaxed);
    flooder.join().unwrap();
    assert!(outcome.is_ok(), "stop() did not return while flooded");
}

fn engine_metrics_render(engine: Engine) {
    use sentrypeer::metrics::Render;
    let harness = start(engine, |_| {});
    udp_client("127.0.0.1:0")
        .send_to(b"SIP/2.0 200 OK\r\n\r\n", harness.udp())
        .unwrap();
    harness.wait_totals("a response counted", |t| t.non_requests_response == 1);
    let mut text = String::new();
    harness.sensor().metrics().render(&mut text);
    assert!(
        text.contains("sentrypeer_sip_non_requests_total{kind=\"response\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("sentrypeer_events_total 0\n"));
}

both_engines!(
    engine_bind_failure_is_one_line,
    engine_shards_share_the_port,
    engine_stop_drains_and_joins,
    engine_stop_under_flood,
    engine_metrics_render,
);
