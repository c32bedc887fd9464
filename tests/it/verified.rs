//! Forged sources (issue 18): UDP requests whose source addresses are forged through a raw socket
//! get replies that go to an address where nobody listens, so they never become verified. With
//! `--verified-only` they never reach the syslog socket, the default `/ip-addresses` feed or a
//! peer, while a source that completed a TCP handshake does; a real To-tag replayed from a forged
//! address proves nothing. The store and the JSON log keep every event with its flag.
//!
//! Absence is proven by order: the verified marker is sent last, and the syslog line, the feed
//! and the peer each get it after anything sent before it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use crate::p2p::Node as PeerNode;
use crate::support::forge::{Forger, forger};
use crate::support::{DEADLINE, Launch, free_port, metric_value, sip_request, wait_until};

/// Forged sources: 127.0.5.1 to 127.0.5.FORGED_COUNT (nobody listens there).
const FORGED_COUNT: u8 = 4;

fn forged_source(index: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, 5, index), 5060)
}

/// An INVITE from 127.0.0.1 answered in `-r` mode: the reply's To header (with our tag).
fn real_invite_to_header(sensor: SocketAddr) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let invite = String::from_utf8(sip_request("real-invite", 0))
        .unwrap()
        .replace("OPTIONS", "INVITE");
    socket.send_to(invite.as_bytes(), sensor).unwrap();
    let mut buffer = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut buffer).unwrap();
    let reply = String::from_utf8_lossy(&buffer[..len]).into_owned();
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    let to = reply.lines().find(|l| l.starts_with("To: ")).unwrap();
    assert!(to.contains(";tag="), "{reply}");
    to.to_owned()
}

/// Forged requests: an OPTIONS from each forged source, then an ACK from 127.0.5.9 replaying
/// the real To header (its tag was made for 127.0.0.1).
fn send_forged(forger: &Forger, sensor: SocketAddr, real_to: &str) {
    for index in 1..=FORGED_COUNT {
        let request = sip_request(&format!("forged-{index}"), 0);
        forger.send(forged_source(index), sensor, &request);
    }
    let ack = String::from_utf8(sip_request("forged-ack", 0))
        .unwrap()
        .replace("OPTIONS", "ACK")
        .replace("To: <sip:100@127.0.0.1>", real_to);
    forger.send(forged_source(9), sensor, ack.as_bytes());
}

/// The marker: an OPTIONS over TCP from 127.0.0.1 (verified by its handshake), and its reply.
fn send_tcp_marker(sensor: SocketAddr) {
    let mut stream = TcpStream::connect_timeout(&sensor, DEADLINE).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(&sip_request("marker", 0)).unwrap();
    let mut head = [0u8; 8];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"SIP/2.0 ");
}

/// Syslog lines up to and including the first naming 127.0.0.1; none may name another source.
fn assert_syslog_only_verified(syslog: &UnixDatagram) {
    syslog.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buffer = [0u8; 8192];
    loop {
        let len = syslog.recv(&mut buffer).expect("the marker's syslog line");
        let line = String::from_utf8_lossy(&buffer[..len]).into_owned();
        assert!(
            !line.contains("127.0.5."),
            "a forged source reached syslog: {line}"
        );
        if line.contains("127.0.0.1") {
            break;
        }
    }
}

fn feed(node: &crate::support::Node, query: &str) -> Vec<String> {
    let (status, body) = node.get(&format!("/ip-addresses?format=text{query}"));
    assert_eq!(status, 200, "{body}");
    let mut ips: Vec<String> = body.lines().map(str::to_owned).collect();
    ips.sort();
    ips
}

fn assert_feeds(node: &crate::support::Node) {
    assert_eq!(feed(node, ""), ["127.0.0.1"], "--verified-only feed");
    assert_eq!(feed(node, "&verified=true"), ["127.0.0.1"]);
    let all = feed(node, "&verified=false");
    assert_eq!(all.len(), usize::from(FORGED_COUNT) + 2, "{all:?}");
    for index in 1..=FORGED_COUNT {
        let (status, body) = node.get(&format!("/ip-addresses/127.0.5.{index}"));
        assert_eq!(status, 200, "{body}");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["verified"], false, "{body}");
        assert!(value["verified_at"].is_null(), "{body}");
    }
    let (_, body) = node.get("/ip-addresses/127.0.0.1");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["verified"], true, "{body}");
    let (_, events) = node.get("/events?verified=true&limit=1000");
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let sources: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source_ip"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        ["127.0.0.1"],
        "only the TCP marker is a verified event"
    );
}

/// Every event is in the JSON log with its flag: only the TCP marker is verified.
fn assert_json_log(path: &Path) {
    wait_until("every event logged", DEADLINE, || {
        std::fs::read_to_string(path).is_ok_and(|log| log.matches('\n').count() >= 7)
    });
    let log = std::fs::read_to_string(path).unwrap();
    let mut verified = Vec::new();
    for line in log.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let source = value["source_ip"].as_str().unwrap().to_owned();
        let transport = value["transport_type"].as_str().unwrap().to_owned();
        if value["source_verified"] == true {
            verified.push((source, transport));
        }
    }
    assert_eq!(
        verified,
        [("127.0.0.1".to_owned(), "TCP".to_owned())],
        "{log}"
    );
}

#[test]
fn verified_forged_sources_never_verified_nor_acted_on() {
    let Some(forger) = forger() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let syslog_path = dir.path().join("syslog.sock");
    let syslog = UnixDatagram::bind(&syslog_path).unwrap();
    let p2p_port = free_port();
    let p2p_listen = format!("127.0.0.1:{p2p_port}");
    let node = Launch::new(dir.path())
        .arg(&["-r", "-j", "-s", "--verified-only", "-p"])
        .arg(&["--p2p-listen", &p2p_listen, "--syslog-socket"])
        .arg(&[syslog_path.to_str().unwrap()])
        .start();
    let peer = PeerNode::start("127.0.0.1:0".parse().unwrap(), &p2p_listen);
    peer.wait_on_topic_with(&node);
    // The real INVITE (unverified: an INVITE proves nothing by itself), then forged requests.
    let real_to = real_invite_to_header(node.sip);
    send_forged(&forger, node.sip, &real_to);
    let forged = u64::from(FORGED_COUNT) + 1;
    let invite_and_forged = 1 + forged;
    wait_until("the forged datagrams stored", DEADLINE, || {
        node.metric("sentrypeer_writer_events_committed_total") >= invite_and_forged
    });
    send_tcp_marker(node.sip);
    node.wait_committed(2 + forged);
    assert_syslog_only_verified(&syslog);
    assert_feeds(&node);
    assert_json_log(&dir.path().join("sentrypeer.json"));
    wait_until("the marker at the peer", DEADLINE, || {
        peer.events()
            .iter()
            .any(|e| e.source.ip().to_string() == "127.0.0.1")
    });
    let shared: Vec<String> = peer
        .events()
        .iter()
        .map(|e| e.source.ip().to_string())
        .collect();
    assert_eq!(shared, ["127.0.0.1"], "only the verified source is shared");
    assert!(peer.events()[0].source_verified, "the peer gets the flag");
    assert_eq!(
        node.metric("sentrypeer_writer_syslog_unverified_skipped_total"),
        1 + forged
    );
    assert_eq!(
        node.metric("sentrypeer_p2p_unverified_not_shared_total"),
        1 + forged
    );
    assert_eq!(node.metric("sentrypeer_store_verified_ips"), 1);
    let (_, metrics) = node.get("/metrics");
    let foreign = "sentrypeer_sip_source_proofs_rejected_total{reason=\"foreign\"}";
    assert_eq!(metric_value(&metrics, foreign), Some(1), "the replayed tag");
}
