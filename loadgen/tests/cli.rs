//! End-to-end tests of the `sentrypeer-loadgen` binary on loopback: generator to sink, TCP and
//! TLS to counting listeners, responsive mode, and the refusals.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sentrypeer-loadgen"))
}

/// Waits for `child` to exit within the deadline (killing it otherwise) and returns its output.
fn finish(child: Child) -> Output {
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || sender.send(child.wait_with_output()));
    match receiver.recv_timeout(DEADLINE) {
        Ok(output) => output.expect("child output"),
        Err(_) => {
            // SAFETY: sending SIGKILL to our own child process id.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("process {pid} did not finish within {DEADLINE:?}");
        }
    }
}

fn run(args: &[&str]) -> Output {
    let child = loadgen()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn loadgen");
    finish(child)
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// Starts a sink and returns it with the port it listens on (read from its stderr).
fn start_sink(args: &[&str]) -> (Child, u16) {
    let mut child = loadgen()
        .arg("sink")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sink");
    let stderr = child.stderr.take().expect("stderr");
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stderr).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(DEADLINE)
        .expect("sink announces its address");
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok());
    (child, port.unwrap_or_else(|| panic!("no port in {line:?}")))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// An oracle framer: splits a stream into messages by CRLF CRLF plus Content-Length.
fn frame_all(mut stream: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    while !stream.is_empty() {
        let head_end = find(stream, b"\r\n\r\n").expect("complete head") + 4;
        let head = String::from_utf8_lossy(&stream[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| {
                value.trim().parse().expect("numeric Content-Length")
            });
        messages.push(stream[..head_end + length].to_vec());
        stream = &stream[head_end + length..];
    }
    messages
}

fn call_id(message: &[u8]) -> String {
    String::from_utf8_lossy(message)
        .lines()
        .find_map(|line| line.strip_prefix("Call-ID: ").map(str::to_owned))
        .expect("Call-ID header")
}

fn ok_reply(message: &[u8]) -> Vec<u8> {
    format!(
        "SIP/2.0 200 OK\r\nCall-ID: {}\r\nContent-Length: 0\r\n\r\n",
        call_id(message)
    )
    .into_bytes()
}

#[test]
fn udp_to_sink_count_matches() {
    let (sink, port) = start_sink(&["--listen", "127.0.0.1:0", "--json", "--count", "10000"]);
    let target = format!("127.0.0.1:{port}");
    let sent = json(&run(&[
        "udp",
        "--target",
        &target,
        "--count",
        "10000",
        "--rate",
        "20000",
        "--json",
        "--malformed-share",
        "10",
    ]));
    assert_eq!(sent["sent"], 10_000);
    assert_eq!(sent["errors"], 0);
    assert!(sent["malformed"].as_u64().unwrap() > 500);
    let received = json(&finish(sink));
    assert_eq!(received["received"], 10_000);
    assert_eq!(received["bytes"], sent["bytes"]);
    assert_eq!(received["stopped_by"], "count");
}

#[test]
fn udp_sources_bind_across_range() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(DEADLINE)).unwrap();
    let target = receiver.local_addr().unwrap().to_string();
    let report = json(&run(&[
        "udp",
        "--target",
        &target,
        "--count",
        "64",
        "--batch",
        "1",
        "--sources",
        "127.0.0.0/16",
        "--source-sockets",
        "8",
        "--json",
    ]));
    assert_eq!(report["sources"], 8);
    let mut peers = std::collections::HashSet::new();
    let mut buffer = [0_u8; 2048];
    for _ in 0..64 {
        let (_, peer) = receiver.recv_from(&mut buffer).unwrap();
        peers.insert(peer.ip());
    }
    assert_eq!(peers.len(), 8, "{peers:?}");
    assert!(peers.iter().all(|ip| ip.to_string().starts_with("127.0.")));
}

#[test]
fn udp_responsive_records_latency() {
    let responder = UdpSocket::bind("127.0.0.1:0").unwrap();
    responder
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let target = responder.local_addr().unwrap().to_string();
    let echo = thread::spawn(move || {
        let mut buffer = [0_u8; 4096];
        for _ in 0..500 {
            let (len, peer) = responder.recv_from(&mut buffer).unwrap();
            responder.send_to(&ok_reply(&buffer[..len]), peer).unwrap();
        }
    });
    let report = json(&run(&[
        "udp",
        "--target",
        &target,
        "--count",
        "500",
        "--rate",
        "5000",
        "--responsive",
        "--json",
    ]));
    echo.join().unwrap();
    assert_eq!(report["replies"], 500);
    assert_eq!(report["latency_us"]["count"], 500);
    assert!(report["latency_us"]["p50"].as_u64().unwrap() > 0);
}

/// Accepts `connections` connections, reads each to EOF, optionally answers every message,
/// and returns all messages received.
fn stream_listener<S: Read + Write + Send + 'static>(
    listener: TcpListener,
    connections: usize,
    wrap: impl Fn(std::net::TcpStream) -> S + Send + Sync + 'static,
    answer: bool,
) -> thread::JoinHandle<Vec<Vec<u8>>> {
    let wrap = Arc::new(wrap);
    thread::spawn(move || {
        let handles: Vec<_> = (0..connections)
            .map(|_| {
                let (socket, _) = listener.accept().unwrap();
                socket.set_read_timeout(Some(DEADLINE)).unwrap();
                let wrap = Arc::clone(&wrap);
                thread::spawn(move || {
                    let mut stream = wrap(socket);
                    let mut bytes = Vec::new();
                    let mut chunk = [0_u8; 16 * 1024];
                    let mut answered = 0;
                    loop {
                        let len = match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(len) => len,
                        };
                        bytes.extend_from_slice(&chunk[..len]);
                        if answer {
                            let complete = frame_complete(&bytes);
                            // Like the sensor: requests get a reply, anything else none.
                            for message in complete[answered..].iter().filter(|m| is_request(m)) {
                                if stream.write_all(&ok_reply(message)).is_err() {
                                    break;
                                }
                            }
                            answered = complete.len();
                        }
                    }
                    frame_all(&bytes)
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    })
}

/// Frames the complete messages at the start of a partial stream.
fn frame_complete(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut end = 0;
    let mut rest = stream;
    while let Some(head_end) = find(rest, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| value.trim().parse().unwrap());
        if rest.len() < head_end + 4 + length {
            break;
        }
        end += head_end + 4 + length;
        rest = &stream[end..];
    }
    frame_all(&stream[..end])
}

fn is_request(message: &[u8]) -> bool {
    let line_end = find(message, b"\r\n").unwrap_or(message.len());
    let parts: Vec<&[u8]> = message[..line_end].split(|byte| *byte == b' ').collect();
    parts.len() == 3 && parts[2] == b"SIP/2.0" && parts.iter().all(|part| !part.is_empty())
}

fn assert_requests(messages: &[Vec<u8>]) {
    for message in messages {
        let start = String::from_utf8_lossy(&message[..message.len().min(16)]).to_string();
        assert!(
            ["OPTIONS ", "REGISTER ", "INVITE "]
                .iter()
                .any(|method| start.starts_with(method)),
            "unexpected start {start:?}"
        );
    }
}

#[test]
fn tcp_framed_messages_counted() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = stream_listener(listener, 4, |socket| socket, false);
    let report = json(&run(&[
        "tcp",
        "--target",
        &target,
        "--count",
        "2000",
        "--connections",
        "4",
        "--rate",
        "20000",
        "--json",
    ]));
    let messages = server.join().unwrap();
    assert_eq!(report["sent"], 2000);
    assert_eq!(report["errors"], 0);
    assert_eq!(messages.len(), 2000);
    assert_requests(&messages);
    let bytes: usize = messages.iter().map(Vec::len).sum();
    assert_eq!(report["bytes"], bytes as u64);
}

#[test]
fn tcp_responsive_matches_replies() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = stream_listener(listener, 2, |socket| socket, true);
    let report = json(&run(&[
        "tcp",
        "--target",
        &target,
        "--count",
        "600",
        "--connections",
        "2",
        "--responsive",
        "--json",
    ]));
    assert_eq!(server.join().unwrap().len(), 600);
    assert_eq!(report["replies"], 600);
    assert_eq!(report["latency_us"]["count"], 600);
}

#[test]
fn tls_framed_messages_counted() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let wrap = move |socket| {
        let connection = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
        rustls::StreamOwned::new(connection, socket)
    };
    let server = stream_listener(listener, 2, wrap, true);
    let report = json(&run(&[
        "tls",
        "--target",
        &target,
        "--count",
        "300",
        "--connections",
        "2",
        "--responsive",
        "--malformed-share",
        "20",
        "--json",
    ]));
    let messages = server.join().unwrap();
    assert_eq!(messages.len(), 300);
    assert_eq!(report["sent"], 300);
    let malformed = report["malformed"].as_u64().unwrap();
    assert!(malformed > 20, "{malformed}");
    let requests = messages
        .iter()
        .filter(|message| is_request(message))
        .count() as u64;
    assert_eq!(requests, 300 - malformed);
    assert_eq!(report["replies"], requests);
    assert_eq!(report["latency_us"]["count"], requests);
}

#[test]
fn refuses_non_loopback_target() {
    let output = run(&["udp", "--target", "192.0.2.7:5060", "--count", "1"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    let output = run(&[
        "tcp",
        "--target",
        "127.0.0.1:5060",
        "--count",
        "1",
        "--sources",
        "10.0.0.0/8",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("refusing --sources"));
}

#[test]
fn refuses_unbounded_run() {
    for mode in ["udp", "tcp", "tls"] {
        let output = run(&[mode, "--target", "127.0.0.1:5060", "--rate", "10"]);
        assert_eq!(output.status.code(), Some(2), "{mode}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("refusing to run unbounded"), "{stderr}");
    }
}

#[test]
fn sink_stops_on_sigterm_and_reports() {
    let (sink, port) = start_sink(&["--listen", "127.0.0.1:0", "--json", "--idle", "0"]);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..10 {
        sender
            .send_to(b"OPTIONS sip:100@x SIP/2.0\r\n\r\n", ("127.0.0.1", port))
            .unwrap();
    }
    // SAFETY: sending SIGTERM to our own child process id.
    unsafe { libc::kill(sink.id() as i32, libc::SIGTERM) };
    let report = json(&finish(sink));
    assert_eq!(report["stopped_by"], "signal");
    assert!(report["received"].as_u64().unwrap() <= 10);
}

#[test]
fn sink_stops_when_idle() {
    let (sink, port) = start_sink(&["--listen", "127.0.0.1:0", "--json", "--idle", "0.2"]);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"x", ("127.0.0.1", port)).unwrap();
    let report = json(&finish(sink));
    assert_eq!(report["stopped_by"], "idle");
    assert_eq!(report["received"], 1);
    assert_eq!(report["bytes"], 1);
}

#[test]
fn udp_duration_bounds_the_run() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = receiver.local_addr().unwrap().to_string();
    let report = json(&run(&[
        "udp",
        "--target",
        &target,
        "--duration",
        "0.3",
        "--rate",
        "1000",
        "--json",
    ]));
    let sent = report["sent"].as_u64().unwrap();
    // Paced at 1000/s for 0.3 s: never more than the messages due by the deadline.
    assert!((1..=300).contains(&sent), "{sent}");
    assert!(report["duration_s"].as_f64().unwrap() >= 0.29);
}

#[test]
fn tcp_peer_that_stops_reading_is_bounded() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let (release, released) = mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        // Never read; keep the connection open until the generator has given up.
        let _ = released.recv_timeout(DEADLINE);
        drop(socket);
    });
    let output = run(&[
        "tcp",
        "--target",
        &target,
        "--count",
        "200000",
        "--connections",
        "1",
        "--reply-wait",
        "0.3",
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let (sent, errors) = (
        report["sent"].as_u64().unwrap(),
        report["errors"].as_u64().unwrap(),
    );
    assert!(errors > 0, "{report}");
    assert_eq!(sent + errors, 200_000);
    assert!(String::from_utf8_lossy(&output.stderr).contains("peer stopped reading"));
    release.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn udp_source_per_message_covers_range_and_gets_replies() {
    let responder = UdpSocket::bind("127.0.0.1:0").unwrap();
    responder
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let target = responder.local_addr().unwrap().to_string();
    let echo = thread::spawn(move || {
        let mut peers = std::collections::HashSet::new();
        let mut buffer = [0_u8; 4096];
        for _ in 0..300 {
            let (len, peer) = responder.recv_from(&mut buffer).unwrap();
            let text = String::from_utf8_lossy(&buffer[..len]).to_string();
            assert!(text.contains("Call-ID: "), "{text}");
            assert!(
                text.contains(&format!("@{}\r\n", peer.ip())),
                "Call-ID host is the source"
            );
            peers.insert(peer.ip());
            responder.send_to(&ok_reply(&buffer[..len]), peer).unwrap();
        }
        peers
    });
    let report = json(&run(&[
        "udp",
        "--target",
        &target,
        "--count",
        "300",
        "--batch",
        "16",
        "--rate",
        "5000",
        "--sources",
        "127.0.3.0/24",
        "--source-per-message",
        "--responsive",
        "--json",
    ]));
    let peers = echo.join().unwrap();
    assert_eq!(peers.len(), 255);
    assert!(
        peers
            .iter()
            .all(|ip| ip.to_string().starts_with("127.0.3."))
    );
    assert_eq!(report["sources"], 255);
    assert_eq!(report["sent"], 300);
    assert_eq!(report["replies"], 300);
    let output = run(&[
        "tcp",
        "--target",
        &target,
        "--count",
        "1",
        "--sources",
        "127.0.0.0/24",
        "--source-per-message",
    ]);
    assert_eq!(output.status.code(), Some(2));
}
