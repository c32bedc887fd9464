//! The operator's allowlist (`--ignore-ip`): a datagram or a TCP/TLS connection from an ignored
//! source is dropped on the shard, unanswered and only counted, while other sources are served
//! (both engines); the real binary keeps an ignored source out of its JSON log and API.
//!
//! Absence is proven by order, never by waiting: once the counter shows the ignored input was
//! handled, a marker from another source must be the next event.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use sentrypeer::ignore::{IgnoreList, parse_cidr};

use crate::engine::{DEADLINE, Engine, options, start, udp_client};
use crate::tcp::wait_closed;

/// The ignored source of these tests.
const IGNORED: [u8; 4] = [127, 0, 0, 77];

fn ignore_77() -> IgnoreList {
    IgnoreList::new(parse_cidr("127.0.0.77/32"))
}

/// A TCP connection to `target` from `source` (port chosen by the kernel).
fn connect_from(source: [u8; 4], target: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect_timeout(&target.into(), DEADLINE).unwrap();
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

fn ignore_udp_source_dropped_unanswered(engine: Engine) {
    let harness = start(engine, |c| {
        c.responsive = true;
        c.ignore_ip = ignore_77();
    });
    let ignored = udp_client("127.0.0.77:0");
    let request = options("ignored-udp");
    ignored.send_to(request.as_bytes(), harness.udp()).unwrap();
    harness.wait_totals("the ignored datagram counted", |t| {
        t.ignored_sources == 1 && t.datagrams_received == 1
    });
    harness.assert_no_event_before_marker();
    // The marker (from 127.0.0.1) was answered; a reply to the ignored request would have been
    // sent before it, and loopback delivers at once: nothing waits on the ignored socket.
    harness.wait_totals("the marker's reply", |t| t.replies_sent == 1);
    ignored.set_nonblocking(true).unwrap();
    let mut buffer = [0u8; 2048];
    let error = ignored.recv_from(&mut buffer).unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::WouldBlock,
        "a reply reached the ignored source"
    );
    let totals = harness.totals();
    assert_eq!(
        (totals.events, totals.ignored_sources),
        (1, 1),
        "{totals:?}"
    );
    // Only the marker's bytes were taken in: the ignored datagram was never scanned.
    assert!(
        totals.bytes_received < 2 * request.len() as u64,
        "{totals:?}"
    );
}

fn ignore_tcp_and_tls_closed_at_accept(engine: Engine) {
    let harness = start(engine, |c| {
        c.responsive = true;
        c.ignore_ip = ignore_77();
    });
    let mut ignored = connect_from(IGNORED, harness.tcp());
    // The write may race the close (then it fails); either way nothing is read or answered.
    let _ = ignored.write_all(options("ignored-tcp").as_bytes());
    wait_closed(&mut ignored);
    let mut ignored_tls = connect_from(IGNORED, harness.tls());
    let mut buffer = [0u8; 64];
    // Closed before any handshake: end of stream (or a reset), never a byte of TLS.
    match ignored_tls.read(&mut buffer) {
        Ok(0) => {}
        Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the ignored TLS connection was served: {other:?}"),
    }
    harness.wait_totals("both connections counted", |t| t.ignored_sources == 2);
    harness.assert_no_event_before_marker();
    // Another source is still served over TCP, and gets its reply.
    let mut served = connect_from([127, 0, 0, 1], harness.tcp());
    served.write_all(options("served-tcp").as_bytes()).unwrap();
    let event = harness.next_event();
    assert_eq!(event.source, served.local_addr().unwrap());
    let mut reply = [0u8; 16];
    served.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..8], b"SIP/2.0 ");
    let totals = harness.totals();
    assert_eq!(totals.connections_accepted, 1, "{totals:?}");
    assert_eq!(
        (totals.events, totals.ignored_sources),
        (2, 2),
        "{totals:?}"
    );
}

both_engines!(
    ignore_udp_source_dropped_unanswered,
    ignore_tcp_and_tls_closed_at_accept
);

/// The real binary with every output (needs P2P for the peer).
#[cfg(feature = "p2p")]
mod binary {

    use super::IGNORED;
    use crate::engine::DEADLINE;
    use crate::p2p::Node as PeerNode;
    use crate::support::{Launch, Node, free_port, sip_request, udp_from, wait_until};
    use crate::webhook::{Reply, Server};

    /// The binary with `--ignore-ip` and every output (`-j`, syslog, webhook, P2P): the ignored
    /// source is in no JSON log line, syslog line, webhook post, peer's store or `/ip-addresses`,
    /// only in the counter; another source, sent after it, is in all of them.
    #[test]
    fn ignore_binary_appears_nowhere_but_the_counter() {
        let dir = tempfile::tempdir().unwrap();
        let syslog_path = dir.path().join("syslog.sock");
        let syslog = std::os::unix::net::UnixDatagram::bind(&syslog_path).unwrap();
        syslog.set_read_timeout(Some(DEADLINE)).unwrap();
        let hook = Server::start(|_, _| Reply::status(200));
        let p2p_listen = format!("127.0.0.1:{}", free_port());
        let node = Launch::new(dir.path())
            .arg(&[
                "-j",
                "--ignore-ip",
                "127.0.0.77",
                "--ignore-ip",
                "10.0.0.0/8",
            ])
            .arg(&["-s", "--syslog-socket", syslog_path.to_str().unwrap()])
            .arg(&[
                "-w",
                &hook.url("/events"),
                "-p",
                "--p2p-listen",
                &p2p_listen,
            ])
            .start();
        let peer = PeerNode::start("127.0.0.1:0".parse().unwrap(), &p2p_listen);
        peer.wait_on_topic_with(&node);
        let ignored = udp_from(IGNORED);
        for i in 0..3 {
            let request = sip_request(&format!("ignored-{i}"), 0);
            ignored.send_to(&request, node.sip).unwrap();
        }
        wait_until("the ignored datagrams counted", DEADLINE, || {
            node.metric("sentrypeer_sip_ignored_source_total") == 3
        });
        let served = udp_from([127, 0, 0, 78]);
        served.send_to(&sip_request("served", 0), node.sip).unwrap();
        // The served event is committed after the ignored datagrams were dropped (one shard, in
        // order), and every output handles it after anything before it.
        node.wait_committed(1);
        assert_served_only(&node, dir.path());
        let mut buffer = [0u8; 4096];
        let len = syslog.recv(&mut buffer).expect("the served syslog line");
        let line = String::from_utf8_lossy(&buffer[..len]);
        assert!(
            line.contains("127.0.0.78") && !line.contains("127.0.0.77"),
            "{line}"
        );
        hook.wait_for("the served event posted", |requests| !requests.is_empty());
        let posted: Vec<String> = hook
            .requests()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        assert_eq!(posted.len(), 1, "{posted:?}");
        assert!(posted[0].contains("127.0.0.78") && !posted[0].contains("127.0.0.77"));
        wait_until("the served event at the peer", DEADLINE, || {
            !peer.events().is_empty()
        });
        let shared: Vec<String> = peer
            .events()
            .iter()
            .map(|e| e.source.ip().to_string())
            .collect();
        assert_eq!(shared, ["127.0.0.78"]);
        assert_eq!(node.metric("sentrypeer_writer_events_committed_total"), 1);
        assert_eq!(node.metric("sentrypeer_sip_ignored_source_total"), 3);
    }

    /// The store, the API and the JSON log hold the served source only.
    fn assert_served_only(node: &Node, dir: &std::path::Path) {
        let counts = node.ip_counts();
        assert_eq!(counts.get("127.0.0.78"), Some(&1), "{counts:?}");
        assert!(!counts.contains_key("127.0.0.77"), "{counts:?}");
        let (status, _) = node.get("/ip-addresses/127.0.0.77");
        assert_eq!(status, 404);
        wait_until("the served event logged", DEADLINE, || {
            std::fs::read_to_string(dir.join("sentrypeer.json"))
                .is_ok_and(|log| log.contains("\"127.0.0.78\""))
        });
        let log = std::fs::read_to_string(dir.join("sentrypeer.json")).unwrap();
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(!log.contains("127.0.0.77"), "{log}");
    }
}
