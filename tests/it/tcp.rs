//! TCP: framing (pipelined, split, Content-Length bodies), idle timeout, connection caps,
//! oversize messages and replies down the same connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use sentrypeer::config::limits::SIP_MESSAGE_BYTES_MAX;
use sentrypeer::event::Transport;

use crate::engine::{DEADLINE, Engine, options, start};

pub(crate) fn connect(address: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&address, DEADLINE).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Reads until the peer closes; returns how long that took (fails after the deadline).
pub(crate) fn wait_closed(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return started.elapsed(),
            Err(e) => panic!("not closed before the deadline: {e}"),
        }
    }
}

fn tcp_event_fields(engine: Engine) {
    let harness = start(engine, |_| {});
    let mut stream = connect(harness.tcp());
    let message = options("tcp-1");
    stream.write_all(message.as_bytes()).unwrap();
    let event = harness.next_event();
    assert_eq!(event.transport, Transport::Tcp);
    assert_eq!(event.source, stream.local_addr().unwrap());
    assert_eq!(event.destination, harness.tcp());
    assert_eq!(event.message(), message.as_bytes());
    assert_eq!(event.called_number(), Some(&b"100"[..]));
    assert_eq!(event.user_agent(), Some(&b"friendly-scanner"[..]));
}

fn tcp_destination_is_local_address(engine: Engine) {
    let harness = start(engine, |c| c.listen = vec!["0.0.0.0:0".parse().unwrap()]);
    let target = std::net::SocketAddr::from(([127, 0, 0, 2], harness.tcp().port()));
    connect(target)
        .write_all(options("tcp-dest").as_bytes())
        .unwrap();
    assert_eq!(harness.next_event().destination, target);
}

fn tcp_ipv6_loopback(engine: Engine) {
    let harness = start(engine, |c| c.listen = vec!["[::1]:0".parse().unwrap()]);
    let mut stream = connect(harness.tcp());
    stream.write_all(options("tcp-v6").as_bytes()).unwrap();
    let event = harness.next_event();
    assert_eq!(event.source, stream.local_addr().unwrap());
    assert_eq!(event.destination, harness.tcp());
    assert!(event.destination.is_ipv6());
}

fn tcp_pipelined_messages_are_two_events(engine: Engine) {
    let harness = start(engine, |_| {});
    let both = options("pipe-1") + &options("pipe-2");
    connect(harness.tcp()).write_all(both.as_bytes()).unwrap();
    assert_eq!(harness.next_event().message(), options("pipe-1").as_bytes());
    assert_eq!(harness.next_event().message(), options("pipe-2").as_bytes());
}

fn tcp_split_over_three_writes_is_one_event(engine: Engine) {
    let harness = start(engine, |_| {});
    let message = options("split-1");
    let mut stream = connect(harness.tcp());
    stream.set_nodelay(true).unwrap();
    let bytes = message.as_bytes();
    for part in [&bytes[..10], &bytes[10..150], &bytes[150..]] {
        stream.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(harness.next_event().message(), bytes);
    harness.assert_no_event_before_marker();
}

fn tcp_content_length_body_not_a_message(engine: Engine) {
    let harness = start(engine, |_| {});
    // The body looks like a request line; Content-Length says it belongs to the first message.
    let body = "OPTIONS sip:999@x SIP/2.0\r\n\r\n";
    let first = format!(
        "MESSAGE sip:200@127.0.0.1 SIP/2.0\r\nTo: <sip:200@127.0.0.1>\r\nCall-ID: body\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let stream_bytes = first.clone() + &options("after-body");
    connect(harness.tcp())
        .write_all(stream_bytes.as_bytes())
        .unwrap();
    let event = harness.next_event();
    assert_eq!(event.message(), first.as_bytes());
    assert_eq!(event.called_number(), Some(&b"200"[..]));
    assert_eq!(
        harness.next_event().message(),
        options("after-body").as_bytes()
    );
    harness.assert_no_event_before_marker();
}

fn tcp_slow_loris_closed_at_idle_timeout(engine: Engine) {
    let idle = Duration::from_millis(500);
    let harness = start(engine, |c| c.tcp_idle_timeout = idle);
    let mut stream = connect(harness.tcp());
    let dribble = stream.try_clone().unwrap();
    let started = Instant::now();
    // One byte every 100 ms never completes a message.
    let writer = std::thread::spawn(move || {
        let mut dribble = dribble;
        for byte in b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: x\r\n"
            .iter()
            .cycle()
            .take(50)
        {
            if dribble.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    wait_closed(&mut stream);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= idle && elapsed < idle * 6,
        "closed after {elapsed:?}"
    );
    writer.join().unwrap();
    harness.wait_totals("idle timeout counted", |t| t.connections_idle_timeouts == 1);
    harness.assert_no_event_before_marker();
}

fn tcp_idle_deadline_moves_with_messages(engine: Engine) {
    let idle = Duration::from_millis(600);
    let harness = start(engine, |c| c.tcp_idle_timeout = idle);
    let mut stream = connect(harness.tcp());
    // A client talking every 300 ms (pacing, not a wait): 900 ms in all, past the 600 ms
    // idle timeout, and each message still arrives on the same connection.
    for i in 0..4 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        stream
            .write_all(options(&format!("alive-{i}")).as_bytes())
            .unwrap();
        harness.next_event();
    }
    assert_eq!(harness.totals().connections_idle_timeouts, 0);
    wait_closed(&mut stream);
}

fn tcp_connections_capped_per_ip(engine: Engine) {
    let harness = start(engine, |c| c.tcp_connections_per_ip_max = 2);
    let _first = connect(harness.tcp());
    let _second = connect(harness.tcp());
    harness.wait_totals("two open", |t| t.connections_open() == 2);
    let mut third = connect(harness.tcp());
    assert!(wait_closed(&mut third) < DEADLINE);
    harness.wait_totals("refused by the cap", |t| t.connections_refused_limit == 1);
    drop(_first);
    harness.wait_totals("one closed", |t| t.connections_open() == 1);
    let mut again = connect(harness.tcp());
    again.write_all(options("after-cap").as_bytes()).unwrap();
    assert_eq!(
        harness.next_event().message(),
        options("after-cap").as_bytes()
    );
}

fn tcp_connections_capped_per_shard(engine: Engine) {
    let harness = start(engine, |c| c.tcp_connections_per_shard_max = 1);
    let _first = connect(harness.tcp());
    harness.wait_totals("one open", |t| t.connections_open() == 1);
    let mut second = connect(harness.tcp());
    wait_closed(&mut second);
    harness.wait_totals("refused by the cap", |t| t.connections_refused_limit == 1);
}

fn tcp_oversize_message_closes(engine: Engine) {
    let harness = start(engine, |_| {});
    let mut stream = connect(harness.tcp());
    let header = "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nX-Pad: ";
    let mut bytes = header.as_bytes().to_vec();
    bytes.resize(SIP_MESSAGE_BYTES_MAX + 1024, b'a');
    // The sensor may close while we still write; only the close matters.
    let _ = stream.write_all(&bytes);
    wait_closed(&mut stream);
    harness.wait_totals("oversize counted", |t| t.messages_oversize == 1);
    harness.assert_no_event_before_marker();
}

fn tcp_reply_down_the_connection(engine: Engine) {
    let harness = start(engine, |c| c.responsive = true);
    let mut stream = connect(harness.tcp());
    stream
        .write_all((options("tcp-r1") + &options("tcp-r2")).as_bytes())
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut replies = String::new();
    stream.read_to_string(&mut replies).unwrap();
    assert_eq!(
        replies.matches("SIP/2.0 200 OK\r\n").count(),
        2,
        "{replies}"
    );
    assert!(replies.contains("Call-ID: tcp-r1\r\n") && replies.contains("Call-ID: tcp-r2\r\n"));
    assert!(replies.ends_with("\r\n\r\n"));
    let ack = options("tcp-ack").replace("OPTIONS", "ACK");
    let mut stream = connect(harness.tcp());
    stream.write_all(ack.as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut nothing = String::new();
    stream.read_to_string(&mut nothing).unwrap();
    assert_eq!(nothing, "", "no reply to ACK");
}

fn tcp_keepalives_counted_not_events(engine: Engine) {
    let harness = start(engine, |_| {});
    let mut stream = connect(harness.tcp());
    stream.write_all(b"\r\n\r\n").unwrap();
    harness.wait_totals("a keep-alive counted", |t| t.non_requests_keepalive == 1);
    stream.write_all(options("after-ping").as_bytes()).unwrap();
    assert_eq!(
        harness.next_event().message(),
        options("after-ping").as_bytes()
    );
    harness.assert_no_event_before_marker();
}

both_engines!(
    tcp_keepalives_counted_not_events,
    tcp_event_fields,
    tcp_destination_is_local_address,
    tcp_ipv6_loopback,
    tcp_pipelined_messages_are_two_events,
    tcp_split_over_three_writes_is_one_event,
    tcp_content_length_body_not_a_message,
    tcp_slow_loris_closed_at_idle_timeout,
    tcp_idle_deadline_moves_with_messages,
    tcp_connections_capped_per_ip,
    tcp_connections_capped_per_shard,
    tcp_oversize_message_closes,
    tcp_reply_down_the_connection,
);
