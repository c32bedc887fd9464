//! Real SIP clients prove their source (issue 18): sipsak answering a `--sip-challenge` 401 with
//! Digest credentials, sipvicious' svcrack brute-forcing an extension, an INVITE answered in `-r`
//! mode followed by its ACK, and the real binary end to end (API, JSON log, `/metrics`).
//! Loopback only; a missing tool is a `SKIP`, or a failure under `CI=true`.
//!
//! Stale tags and nonces are not tested here: one can only be made from outside by waiting out
//! `PROOF_TOKEN_FRESH_S` (an hour). `src/sensor/proof_tests.rs` drives the clock for them.
//!
//! Events taken straight from the in-process sensor carry the shard's per-request proof: a
//! request without a tag or nonce of ours is unverified even after its IP was verified (the store
//! marks such later events verified; the end-to-end test sees the store's view).

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sentrypeer::event::Event;
use serde_json::Value;
use uuid::Uuid;

use crate::clients::wait_exit;
use crate::engine::{DEADLINE, Engine, Harness, options, start, udp_client};
use crate::support::require::require_tool;
use crate::support::{Launch, Node, wait_until};

/// The passwords svcrack tries; the sensor's 403 says each is wrong.
const PASSWORDS: [&str; 3] = ["alpha", "bravo", "charlie"];

/// `command` started with its stdout into the file `out` and its stderr into `err`.
fn spawn_logged(command: &mut Command, out: &Path, err: &Path) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(File::create(out).unwrap())
        .stderr(File::create(err).unwrap())
        .spawn()
        .unwrap()
}

/// sipsak registering user 100 with password `secret` (usrloc mode, every packet printed).
fn sipsak_register(sipsak: &Path, port: u16) -> Command {
    let mut command = Command::new(sipsak);
    command.args([
        "-U",
        "-u",
        "100",
        "-a",
        "secret",
        "-vvv",
        "-s",
        &format!("sip:100@127.0.0.1:{port}"),
    ]);
    command
}

/// Runs sipsak's digest registration against `port` to its end, checking that it saw our 401,
/// answered it with credentials and got a 403 (so exited non-zero).
fn sipsak_digest_exchange(sipsak: &Path, port: u16, dir: &Path) {
    let (out, err) = (dir.join("sipsak.out"), dir.join("sipsak.err"));
    let child = spawn_logged(&mut sipsak_register(sipsak, port), &out, &err);
    let code = wait_exit(child, DEADLINE);
    // The packets sent and received go to stdout; the last answer, with the error, to stderr.
    let (stdout, stderr) = (read(&out), read(&err));
    assert!(
        matches!(code, Some(c) if c != 0),
        "{code:?}: {stdout}{stderr}"
    );
    assert_in_order(
        &stdout,
        &[
            "SIP/2.0 401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"asterisk\", nonce=\"",
            "Authorization: Digest username=\"100\"",
        ],
    );
    assert_in_order(
        &stderr,
        &["SIP/2.0 403 Forbidden", "didn't received '200 OK'"],
    );
}

/// The text of the file at `path` (empty if there is none).
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Fails unless each of `needles` occurs in `text` after the previous one.
fn assert_in_order(text: &str, needles: &[&str]) {
    let mut rest = text;
    for needle in needles {
        let at = rest
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} (in this order) in:\n{text}"));
        rest = &rest[at + needle.len()..];
    }
}

/// Every event up to a marker sent now (all earlier input has reached the socket).
fn events_until_marker(harness: &Harness) -> Vec<Event> {
    let marker = options(&format!("marker-{}", Uuid::new_v4()));
    udp_client("127.0.0.1:0")
        .send_to(marker.as_bytes(), harness.udp())
        .unwrap();
    let mut events = Vec::new();
    loop {
        let event = harness.next_event();
        if event.message() == marker.as_bytes() {
            return events;
        }
        events.push(event);
    }
}

fn challenge(config: &mut sentrypeer::config::SensorConfig) {
    // As the config layer resolves it: --sip-challenge implies -r.
    config.sip_challenge = true;
    config.responsive = true;
}

fn verified_sipsak_digest_answer_verifies(engine: Engine) {
    let Some(tool) = require_tool("sipsak") else {
        return;
    };
    let harness = start(engine, challenge);
    sipsak_digest_exchange(&tool, harness.udp().port(), harness.dir.path());
    let events = events_until_marker(&harness);
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.method(), e.source_verified, e.auth_username()))
        .collect();
    assert_eq!(
        summary,
        [
            (&b"REGISTER"[..], false, None),
            (&b"REGISTER"[..], true, Some(&b"100"[..])),
        ]
    );
    assert_eq!(events[0].auth_username_text(), "NOT_FOUND");
    assert!(events[1].user_agent_text().contains("sipsak"));
    let totals = harness.totals();
    assert_eq!(
        (
            totals.challenges_sent,
            totals.proofs_nonce,
            totals.proofs_tag
        ),
        (1, 1, 0),
        "{totals:?}"
    );
    assert_eq!(
        (totals.proofs_rejected_foreign, totals.proofs_rejected_stale),
        (0, 0),
        "{totals:?}"
    );
}

/// svcrack brute-forcing extension 100 with [`PASSWORDS`]: bound to loopback, told its own
/// address (so it looks up no host name), its own wait for answers bounded. Returns the command
/// and the file for its log (stderr).
fn svcrack(svcrack: &Path, port: u16, dir: &Path) -> (Command, PathBuf) {
    let words = dir.join("words.txt");
    std::fs::write(&words, PASSWORDS.join("\n") + "\n").unwrap();
    let mut command = Command::new(svcrack);
    command
        .args(["-u", "100", "-d"])
        .arg(&words)
        .args([
            "-p",
            &port.to_string(),
            "-b",
            "127.0.0.1",
            "-x",
            "127.0.0.1",
        ])
        .args(["-v", "--maximumtime", "5", "127.0.0.1"]);
    (command, dir.join("svcrack.err"))
}

/// Waits until `log` contains `needle` (or the child exits, or the deadline passes), then kills
/// the child; returns the log.
fn kill_once_logged(mut child: Child, log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    while !read(log).contains(needle)
        && child.try_wait().unwrap().is_none()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    read(log)
}

fn verified_svcrack_user_name_recorded_source_verified(engine: Engine) {
    let Some(tool) = require_tool("svcrack") else {
        return;
    };
    let harness = start(engine, challenge);
    let (mut command, log) = svcrack(&tool, harness.udp().port(), harness.dir.path());
    let child = spawn_logged(&mut command, &log.with_extension("out"), &log);
    // After the last password svcrack waits 10 s for more answers: stop it once it says so.
    let output = kill_once_logged(child, &log, "no more passwords");
    assert!(output.contains("no more passwords"), "{output}");
    // A 200 would be "The password for 100 is ..."; anything but 401/403 "an unknown response".
    assert!(!output.contains("password for"), "{output}");
    assert!(!output.contains("unknown response"), "{output}");
    let events = events_until_marker(&harness);
    let (answers, probes): (Vec<_>, Vec<_>) =
        events.iter().partition(|e| e.auth_username().is_some());
    // Each password once, each with a fresh nonce of ours: every answer proves the source.
    assert_eq!(answers.len(), PASSWORDS.len(), "{events:?}");
    for answer in &answers {
        assert_eq!(answer.auth_username_text(), "100");
        assert!(answer.source_verified, "{}", answer.message_text());
    }
    // Before each password a REGISTER without credentials fetches a challenge.
    assert!(probes.len() >= PASSWORDS.len(), "{events:?}");
    assert!(events.iter().all(|e| e.method() == b"REGISTER"));
    assert!(!events[0].source_verified);
    assert!(probes.iter().all(|e| !e.source_verified));
    let totals = harness.totals();
    assert_eq!(totals.proofs_nonce, PASSWORDS.len() as u64, "{totals:?}");
    assert_eq!(totals.challenges_sent, probes.len() as u64, "{totals:?}");
    assert_eq!(totals.proofs_rejected_foreign, 0, "{totals:?}");
}

/// A `method` request from `from` (its Via and Contact) with the To header value `to`.
fn request(method: &str, from: SocketAddr, to: &str, call_id: &str) -> String {
    format!(
        "{method} sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-{method}-{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         To: {to}\r\n\
         From: \"caller\" <sip:200@127.0.0.1>;tag=caller-{call_id}\r\n\
         User-Agent: verified-clients-test\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:200@{from}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The next datagram on `socket` as text, failing the test after [`DEADLINE`].
fn recv_reply(socket: &UdpSocket) -> String {
    let deadline = Instant::now() + DEADLINE;
    let mut buffer = [0u8; 4096];
    loop {
        if let Ok((len, _)) = socket.recv_from(&mut buffer) {
            return String::from_utf8_lossy(&buffer[..len]).into_owned();
        }
        assert!(Instant::now() < deadline, "no reply before the deadline");
    }
}

/// The value of the To header of `reply`.
fn to_header(reply: &str) -> &str {
    reply
        .lines()
        .find_map(|line| line.strip_prefix("To: "))
        .unwrap_or_else(|| panic!("no To in {reply}"))
}

/// `to` with the last hex digit of its tag changed.
fn altered_tag(to: &str) -> String {
    let mut altered = to.to_owned();
    let last = altered.pop().unwrap();
    altered.push(if last == '0' { '1' } else { '0' });
    altered
}

/// Sends `message` from `socket` and returns its event.
fn event_of(harness: &Harness, socket: &UdpSocket, message: &str) -> Event {
    socket.send_to(message.as_bytes(), harness.udp()).unwrap();
    let event = harness.next_event();
    assert_eq!(event.message(), message.as_bytes());
    event
}

fn verified_invite_then_ack_verifies(engine: Engine) {
    let harness = start(engine, |c| c.responsive = true);
    let caller = udp_client("127.0.0.1:0");
    let from = caller.local_addr().unwrap();
    let invite = request("INVITE", from, "<sip:100@127.0.0.1>", "call-1");
    assert!(!event_of(&harness, &caller, &invite).source_verified);
    let reply = recv_reply(&caller);
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    let to = to_header(&reply);
    let tag = to.rsplit_once(";tag=").unwrap().1;
    assert_eq!(tag.len(), sentrypeer::sip::proof::TOKEN_BYTES, "{to}");
    // One hex digit off: not ours. Counted as foreign, proves nothing.
    let forged = request("ACK", from, &altered_tag(to), "call-1");
    assert!(!event_of(&harness, &caller, &forged).source_verified);
    // Our tag from another IP: made for 127.0.0.1 only.
    let other = udp_client("127.0.0.2:0");
    let elsewhere = request("ACK", other.local_addr().unwrap(), to, "call-1");
    assert!(!event_of(&harness, &other, &elsewhere).source_verified);
    let totals = harness.totals();
    assert_eq!(
        (totals.proofs_tag, totals.proofs_rejected_foreign),
        (0, 2),
        "{totals:?}"
    );
    // The real ACK, then the BYE of the call: each carries our tag back from its IP.
    let ack = request("ACK", from, to, "call-1");
    assert!(event_of(&harness, &caller, &ack).source_verified);
    let bye = request("BYE", from, to, "call-1");
    assert!(event_of(&harness, &caller, &bye).source_verified);
    assert!(recv_reply(&caller).starts_with("SIP/2.0 200 OK\r\n"));
    let totals = harness.totals();
    assert_eq!(
        (totals.proofs_tag, totals.proofs_rejected_foreign),
        (2, 2),
        "{totals:?}"
    );
    assert_eq!(totals.proofs_rejected_stale, 0, "{totals:?}");
}

both_engines!(
    verified_sipsak_digest_answer_verifies,
    verified_svcrack_user_name_recorded_source_verified,
    verified_invite_then_ack_verifies,
);

/// The JSON log's lines as values (waits until it has `count` lines).
fn json_log(path: &Path, count: usize) -> Vec<Value> {
    let read = || -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    };
    wait_until(&format!("{count} JSON log lines"), DEADLINE, || {
        read().len() >= count
    });
    read()
}

/// `GET path` on `node` as JSON, expecting 200.
fn get_json(node: &Node, path: &str) -> Value {
    let (status, body) = node.get(path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

#[test]
fn verified_sipsak_end_to_end_on_the_binary() {
    let Some(tool) = require_tool("sipsak") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch::new(dir.path()).arg(&["-r", "--sip-challenge", "-j"]);
    let node = launch.start();
    sipsak_digest_exchange(&tool, node.sip.port(), dir.path());
    // 404 until the writer has committed the first event.
    wait_until("127.0.0.1 verified", DEADLINE, || {
        let (status, body) = node.get("/ip-addresses/127.0.0.1");
        status == 200 && serde_json::from_str::<Value>(&body).unwrap()["verified"] == true
    });
    let found = get_json(&node, "/ip-addresses/127.0.0.1");
    assert_eq!(found["bad_actor_found"], "127.0.0.1", "{found}");
    let verified_at = found["verified_at"].as_str().unwrap_or_default();
    assert!(
        sentrypeer::event::timestamp::parse_timestamp(verified_at).is_some(),
        "{found}"
    );
    let listed = get_json(&node, "/ip-addresses?verified=true");
    assert_eq!(
        listed["ip_addresses"][0]["ip_address"], "127.0.0.1",
        "{listed}"
    );
    assert_eq!(listed["ip_addresses_total"], 1, "{listed}");
    let lines = json_log(&launch.log, 2);
    let keys: Vec<_> = lines
        .iter()
        .map(|l| (&l["sip_method"], &l["source_verified"], &l["auth_username"]))
        .collect();
    assert_eq!(
        keys,
        [
            (&"REGISTER".into(), &false.into(), &"NOT_FOUND".into()),
            (&"REGISTER".into(), &true.into(), &"100".into()),
        ]
    );
    assert_eq!(node.metric("sentrypeer_store_verified_ips"), 1);
    assert_eq!(node.metric("sentrypeer_sip_challenges_sent_total"), 1);
    assert_eq!(
        node.metric("sentrypeer_sip_source_proofs_total{kind=\"nonce\"}"),
        1
    );
}
