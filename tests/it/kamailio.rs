//! Kamailio for real: Debian's `kamailio` runs `contrib/kamailio/sentrypeer.cfg` on loopback, its
//! `http_client` asking `/numbers/{n}` of the real `sentrypeer` binary (with `--api-token`), in
//! front of a "carrier" that is a UDP socket of the test.
//!
//! - a number the sensor recorded (an INVITE sent to its SIP port first) is answered 403 and never
//!   reaches the carrier; an unrecorded number is relayed to the carrier, whose 486 comes back;
//! - with the sensor down the look-up fails open: the recorded number is relayed too; an API
//!   that accepts and never answers holds a call for the file's 1 s limit, then lets it through
//!   (without `NEXT_HOP`, the dry run's `480 SentryPeer: allowed`);
//! - a source outside `TRUSTED_SUBNETS` (127.0.0.3 against the default loopback-only list) gets
//!   `403 Not relaying`: the proxy is no open relay to the carrier;
//! - the file's defaults parse (`kamailio -c`) and are the ones an operator would use, and
//!   `docs/integrations.md` shows the file's `route[SENTRYPEER]` unchanged.
//!
//! The settings go in with `-A` defines (API URL and token, listen socket, next hop); Kamailio
//! runs in the foreground in its own process group, which is killed when the test ends, pass or
//! fail. `kamailio` (and its `http_client.so`) missing: `SKIP`, or a failure under `CI=true`.
//!
//! Never: a fixed sleep as a wait, a socket off loopback.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::require::{missing, require_tool};
use crate::support::{DEADLINE, Launch, Node, collect, free_port, http_get, wait_until};

/// The sensor's API token in these tests.
const TOKEN: &str = "kamailio-test-token";
/// The number scanners called (recorded by the sensor).
const RECORDED: &str = "+441632960001";
/// A number nobody called.
const UNRECORDED: &str = "+441632960002";
/// How long one readiness probe waits for Kamailio's answer.
const PROBE_WAIT: Duration = Duration::from_millis(200);

fn cfg_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/kamailio/sentrypeer.cfg")
}

/// `kamailio -c` on the shipped file with `defines`: (success, stdout and stderr).
fn check_cfg(kamailio: &Path, dir: &Path, defines: &[String]) -> (bool, String) {
    let mut command = Command::new(kamailio);
    command
        .arg("-c")
        .arg("-f")
        .arg(cfg_path())
        .arg("-Y")
        .arg(dir);
    for define in defines {
        command.arg("-A").arg(define);
    }
    let output = command
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run kamailio -c");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `kamailio` on `PATH` with its `http_client.so`; `None` after applying the missing policy.
fn require_kamailio(dir: &Path) -> Option<PathBuf> {
    let kamailio = require_tool("kamailio")?;
    let (ok, text) = check_cfg(&kamailio, dir, &[]);
    if !ok && text.contains("http_client") {
        missing("kamailio's http_client.so is missing (Debian: kamailio-utils-modules)");
        return None;
    }
    Some(kamailio)
}

/// A running Kamailio in its own process group; the whole group is killed on drop.
struct Kamailio {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    sip: SocketAddr,
    /// The group was killed (once only: its id could be reused afterwards).
    killed: bool,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.kill_group();
    }
}

impl Kamailio {
    /// Starts Kamailio with the shipped file on a free loopback port and waits until it answers
    /// OPTIONS; `defines` are passed with `-A`.
    fn start(kamailio: &Path, dir: &Path, defines: &[String]) -> Self {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut command = Command::new(kamailio);
            command
                .args(["-DD", "-E", "-m", "16", "-M", "4", "-n", "2"])
                .arg("-f")
                .arg(cfg_path())
                .arg("-Y")
                .arg(dir)
                .arg("-w")
                .arg(dir)
                .arg("-P")
                .arg(dir.join("kamailio.pid"))
                .arg("-A")
                .arg(format!("SIP_LISTEN=udp:127.0.0.1:{port}"));
            for define in defines {
                command.arg("-A").arg(define);
            }
            // SAFETY: prctl(2) only, which is async-signal-safe, between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    // Should this test process die without unwinding, Kamailio's main process
                    // gets SIGTERM and stops the children it forked.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let mut child = command
                .process_group(0)
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn kamailio");
            let stderr = Arc::new(Mutex::new(String::new()));
            let reader = collect(child.stderr.take().expect("stderr"), Arc::clone(&stderr));
            let mut running = Self {
                child,
                stderr,
                reader: Some(reader),
                sip: SocketAddr::from(([127, 0, 0, 1], port)),
                killed: false,
            };
            match running.wait_ready() {
                Ok(()) => return running,
                Err(text) if text.contains("in use") => last = text,
                Err(text) => panic!("kamailio did not start; stderr:\n{text}"),
            }
        }
        panic!("kamailio did not start; stderr:\n{last}");
    }

    /// Polls OPTIONS until Kamailio answers 200; `Err(stderr)` if it exits first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind probe");
        socket.set_read_timeout(Some(PROBE_WAIT)).expect("timeout");
        let deadline = Instant::now() + DEADLINE;
        for probe in 0_u32.. {
            if self.child.try_wait().expect("try_wait").is_some() {
                // All of its stderr: the group is gone, so the pipe is closed.
                self.kill_group();
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Err(self.stderr());
            }
            let tag = format!("probe{probe}");
            let request = request("OPTIONS", "", self.sip, &socket, &tag);
            socket.send_to(request.as_bytes(), self.sip).expect("send");
            if read_status(&socket) == Some(200) {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "kamailio not answering OPTIONS within {DEADLINE:?}; stderr:\n{}",
                self.stderr()
            );
        }
        unreachable!("the probe loop only ends by returning")
    }

    /// SIGKILL to the whole process group (the main process and the children it forked), then
    /// reaps the main process.
    fn kill_group(&mut self) {
        if std::mem::replace(&mut self.killed, true) {
            return;
        }
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group this test created (the child leads it); no
            // memory is involved.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "kamailio never logged {needle:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A SIP request `method sip:{user@}target` from `socket`, with a unique `tag`.
fn request(method: &str, user: &str, target: SocketAddr, socket: &UdpSocket, tag: &str) -> String {
    let local = socket.local_addr().expect("local addr");
    let at = if user.is_empty() { "" } else { "@" };
    format!(
        "{method} sip:{user}{at}{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{tag}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:pbx@{local}>;tag={tag}\r\n\
         To: <sip:{user}{at}{target}>\r\n\
         Call-ID: {tag}@kamailio-test\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:pbx@{local}>\r\n\
         User-Agent: sentrypeer-kamailio-test\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The next SIP response on `socket`: (status code, text); `None` on timeout or a non-response.
fn read_response(socket: &UdpSocket) -> Option<(u16, String)> {
    let mut buffer = [0_u8; 8192];
    let (length, _) = socket.recv_from(&mut buffer).ok()?;
    let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
    let status = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
    Some((status, text))
}

fn read_status(socket: &UdpSocket) -> Option<u16> {
    read_response(socket).map(|(status, _)| status)
}

/// The value of header `name` in a SIP message.
fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message
        .split("\r\n")
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The carrier behind Kamailio: a UDP socket of the test that answers INVITEs 486.
struct Carrier {
    socket: UdpSocket,
    /// The Call-ID of every INVITE it received, in order (retransmissions included).
    invites: Vec<String>,
}

impl Carrier {
    fn new() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind carrier");
        socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Self {
            socket,
            invites: Vec::new(),
        }
    }

    /// Receives until the INVITE of call `tag` arrives (noting others, skipping ACKs), answers
    /// it 486 and returns its request line.
    fn answer_busy(&mut self, tag: &str) -> String {
        let mut buffer = [0_u8; 8192];
        loop {
            let (length, from) = self
                .socket
                .recv_from(&mut buffer)
                .expect("the carrier received no INVITE");
            let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
            if !text.starts_with("INVITE ") {
                continue;
            }
            let call_id = header(&text, "Call-ID").unwrap_or_default().to_owned();
            self.invites.push(call_id.clone());
            if call_id != format!("{tag}@kamailio-test") {
                continue;
            }
            let mut reply = String::from("SIP/2.0 486 Busy Here\r\n");
            for line in text.split("\r\n") {
                match line.split(':').next().unwrap_or_default() {
                    "Via" | "From" | "Call-ID" | "CSeq" => reply.push_str(&format!("{line}\r\n")),
                    "To" => reply.push_str(&format!("{line};tag=carrier\r\n")),
                    _ => {}
                }
            }
            reply.push_str("Content-Length: 0\r\n\r\n");
            self.socket
                .send_to(reply.as_bytes(), from)
                .expect("send 486");
            return text.lines().next().unwrap_or_default().to_owned();
        }
    }
}

/// A call's outcome: the final reply and what the carrier got.
struct Outcome {
    status: u16,
    /// The final reply's status line.
    status_line: String,
    /// The request line of the INVITE the carrier got; empty when nothing was relayed.
    relayed: String,
}

/// Calls `number` through Kamailio (INVITE, then ACK of the final reply); the carrier answers
/// what Kamailio relays.
fn call(kamailio: &Kamailio, number: &str, tag: &str, carrier: &mut Carrier) -> Outcome {
    call_from([127, 0, 0, 1], kamailio, number, tag, carrier)
}

/// [`call`] from the loopback address `ip`.
fn call_from(
    ip: [u8; 4],
    kamailio: &Kamailio,
    number: &str,
    tag: &str,
    carrier: &mut Carrier,
) -> Outcome {
    let caller = UdpSocket::bind(SocketAddr::from((ip, 0))).expect("bind caller");
    caller.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let invite = request("INVITE", number, kamailio.sip, &caller, tag);
    caller
        .send_to(invite.as_bytes(), kamailio.sip)
        .expect("send INVITE");
    let mut relayed = String::new();
    loop {
        let (status, response) = read_response(&caller).unwrap_or_else(|| {
            panic!(
                "no reply to INVITE {number}; stderr:\n{}",
                kamailio.stderr()
            )
        });
        if status >= 200 {
            let to = header(&response, "To").unwrap_or_default();
            let ack = request("ACK", number, kamailio.sip, &caller, tag).replacen(
                &format!("To: <sip:{number}@{}>", kamailio.sip),
                &format!("To: {to}"),
                1,
            );
            caller
                .send_to(ack.as_bytes(), kamailio.sip)
                .expect("send ACK");
            let status_line = response.lines().next().unwrap_or_default().to_owned();
            return Outcome {
                status,
                status_line,
                relayed,
            };
        }
        // 100 Trying: Kamailio relays the INVITE to the carrier.
        if relayed.is_empty() {
            relayed = carrier.answer_busy(tag);
        }
    }
}

/// The sensor records `number`: a real INVITE to its SIP port, then `/numbers/{number}` is 200.
fn record_number(sensor: &Node, number: &str) {
    let scanner = UdpSocket::bind("127.0.0.1:0").expect("bind scanner");
    let invite = request("INVITE", number, sensor.sip, &scanner, "scanner1");
    scanner
        .send_to(invite.as_bytes(), sensor.sip)
        .expect("send to sensor");
    let path = format!("/numbers/{number}");
    wait_until("the sensor to record the number", DEADLINE, || {
        http_get(sensor.api, &path, Some(TOKEN)).is_some_and(|(status, _)| status == 200)
    });
    let unrecorded = http_get(sensor.api, &format!("/numbers/{UNRECORDED}"), Some(TOKEN));
    assert_eq!(unrecorded.map(|(s, _)| s), Some(404));
    let no_token = http_get(sensor.api, &path, None);
    assert_eq!(no_token.map(|(s, _)| s), Some(401), "the token is required");
}

#[test]
fn kamailio_rejects_numbers_the_sensor_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(kamailio) = require_kamailio(dir.path()) else {
        return;
    };
    let sensor = Launch::new(dir.path()).arg(&["--api-token", TOKEN]).start();
    record_number(&sensor, RECORDED);
    let mut carrier = Carrier::new();
    let defines = [
        format!("SENTRYPEER_API=\"http://{}\"", sensor.api),
        format!("SENTRYPEER_API_TOKEN=\"{TOKEN}\""),
        format!(
            "NEXT_HOP=\"sip:{}\"",
            carrier.socket.local_addr().expect("addr")
        ),
    ];
    let proxy = Kamailio::start(&kamailio, dir.path(), &defines);

    let rejected = call(&proxy, RECORDED, "call1", &mut carrier);
    assert_eq!(
        rejected.status_line,
        "SIP/2.0 403 Forbidden",
        "{}",
        proxy.stderr()
    );
    assert!(rejected.relayed.is_empty(), "relayed: {}", rejected.relayed);
    proxy.wait_log(&format!("SentryPeer: {RECORDED} is called by scanners"));

    let allowed = call(&proxy, UNRECORDED, "call2", &mut carrier);
    assert_eq!(
        allowed.status,
        486,
        "the carrier's reply; {}",
        proxy.stderr()
    );
    let expected = format!("INVITE sip:{UNRECORDED}@");
    assert!(
        allowed.relayed.starts_with(&expected),
        "{}",
        allowed.relayed
    );

    // Fail open: with the sensor down, the recorded number goes through (and is logged).
    drop(sensor);
    let open = call(&proxy, RECORDED, "call3", &mut carrier);
    assert_eq!(open.status, 486, "the carrier's reply; {}", proxy.stderr());
    let expected = format!("INVITE sip:{RECORDED}@");
    assert!(open.relayed.starts_with(&expected), "{}", open.relayed);
    // curl's "couldn't connect".
    proxy.wait_log(&format!("SentryPeer: look-up of {RECORDED} answered 7;"));

    // The rejected call never reached the carrier.
    let mut calls = carrier.invites.clone();
    calls.dedup();
    assert_eq!(calls, ["call2@kamailio-test", "call3@kamailio-test"]);
}

#[test]
fn kamailio_cfg_defaults_are_an_operators_and_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(kamailio) = require_kamailio(dir.path()) else {
        return;
    };
    let (ok, text) = check_cfg(&kamailio, dir.path(), &[]);
    assert!(ok && text.contains("config file ok"), "{text}");
    let cfg = std::fs::read_to_string(cfg_path()).expect("read cfg");
    assert!(
        cfg.contains("#!trydef SENTRYPEER_API \"http://127.0.0.1:8082\"\n"),
        "default API URL"
    );
    let route = cfg
        .find("route[SENTRYPEER] {")
        .map(|start| &cfg[start..])
        .and_then(|rest| rest.find("\n}\n").map(|end| &rest[..end + 2]))
        .expect("route[SENTRYPEER] in the cfg");
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/integrations.md"))
            .expect("read docs");
    assert!(
        docs.contains(route),
        "docs/integrations.md must show the cfg's route[SENTRYPEER]:\n{route}"
    );
}

#[test]
fn kamailio_stalled_api_fails_open_after_timeout_and_dry_run_answers_480() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(kamailio) = require_kamailio(dir.path()) else {
        return;
    };
    // An API that accepts connections (the kernel's backlog) and never answers.
    let stalled = TcpListener::bind("127.0.0.1:0").expect("bind stalled API");
    let api = stalled.local_addr().expect("addr");
    // No NEXT_HOP: the dry run answers allowed calls itself.
    let proxy = Kamailio::start(
        &kamailio,
        dir.path(),
        &[format!("SENTRYPEER_API=\"http://{api}\"")],
    );
    let mut carrier = Carrier::new();
    let started = Instant::now();
    let outcome = call(&proxy, RECORDED, "stalled1", &mut carrier);
    let waited = started.elapsed();
    assert_eq!(
        outcome.status_line,
        "SIP/2.0 480 SentryPeer: allowed",
        "{}",
        proxy.stderr()
    );
    assert!(outcome.relayed.is_empty(), "{}", outcome.relayed);
    // SENTRYPEER_TIMEOUT_S (1 s by default) bounds the look-up: the call waited for it, no more.
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // curl's "timed out".
    proxy.wait_log(&format!("SentryPeer: look-up of {RECORDED} answered 28;"));
}

#[test]
fn kamailio_is_not_an_open_relay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(kamailio) = require_kamailio(dir.path()) else {
        return;
    };
    // The defaults: only 127.0.0.1 and ::1 may place calls.
    let proxy = Kamailio::start(&kamailio, dir.path(), &[]);
    let mut carrier = Carrier::new();
    let outcome = call_from(
        [127, 0, 0, 3],
        &proxy,
        UNRECORDED,
        "stranger1",
        &mut carrier,
    );
    assert_eq!(outcome.status_line, "SIP/2.0 403 Not relaying");
    assert!(outcome.relayed.is_empty(), "{}", outcome.relayed);
}
