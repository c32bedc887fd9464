//! UDP: events with the right fields, per-packet destination addresses, IPv6, large datagrams,
//! non-requests, responsive replies, the reply rate limit and silent mode.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sentrypeer::event::{CollectedMethod, Transport};

use crate::engine::{DEADLINE, Engine, Harness, options, start, udp_client};

fn udp_event_fields(engine: Engine) {
    let harness = start(engine, |_| {});
    let client = udp_client("127.0.0.1:0");
    let message = options("fields-1");
    client.send_to(message.as_bytes(), harness.udp()).unwrap();
    let event = harness.next_event();
    assert_eq!(event.transport, Transport::Udp);
    assert_eq!(event.collected_method, CollectedMethod::Passive);
    assert_eq!(event.node_id, harness.node_id);
    assert_eq!(event.source, client.local_addr().unwrap());
    assert_eq!(event.destination, harness.udp());
    assert_eq!(event.method(), b"OPTIONS");
    assert_eq!(event.called_number(), Some(&b"100"[..]));
    assert_eq!(event.user_agent(), Some(&b"friendly-scanner"[..]));
    assert_eq!(event.message(), message.as_bytes());
    assert_eq!(event.uuid.get_version_num(), 4);
    let now = sentrypeer::event::timestamp::now_ns();
    assert!(event.timestamp_ns <= now && now - event.timestamp_ns < 60_000_000_000);
    harness.wait_totals("counters", |t| t.events == 1 && t.datagrams_received == 1);
}

fn udp_destination_is_per_packet(engine: Engine) {
    let harness = start(engine, |c| c.listen = vec!["0.0.0.0:0".parse().unwrap()]);
    let port = harness.udp().port();
    let client = udp_client("127.0.0.1:0");
    for last in [1u8, 2] {
        let target = SocketAddr::from(([127, 0, 0, last], port));
        client
            .send_to(options(&format!("dest-{last}")).as_bytes(), target)
            .unwrap();
        let event = harness.next_event();
        assert_eq!(event.destination, target, "never the wildcard");
    }
}

fn udp_ipv6_loopback(engine: Engine) {
    let harness = start(engine, |c| c.listen = vec!["[::1]:0".parse().unwrap()]);
    let client = udp_client("[::1]:0");
    client
        .send_to(options("v6").as_bytes(), harness.udp())
        .unwrap();
    let event = harness.next_event();
    assert_eq!(event.source, client.local_addr().unwrap());
    assert_eq!(
        event.destination.ip(),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
    );
    assert_eq!(event.destination.port(), harness.udp().port());
}

fn udp_large_invite_intact(engine: Engine) {
    let harness = start(engine, |_| {});
    let body = "a=x-padding:".to_owned() + &"0123456789".repeat(6 * 1024);
    let message = format!(
        "INVITE sip:0044123@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-big\r\n\
         To: <sip:0044123@127.0.0.1>\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nCall-ID: big\r\n\
         CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert!(message.len() > 60 * 1024 && message.len() <= 65_507);
    udp_client("127.0.0.1:0")
        .send_to(message.as_bytes(), harness.udp())
        .unwrap();
    let event = harness.next_event();
    assert_eq!(event.message().len(), message.len());
    assert_eq!(event.message(), message.as_bytes());
    assert_eq!(event.called_number(), Some(&b"0044123"[..]));
}

fn udp_non_requests_counted_not_events(engine: Engine) {
    let harness = start(engine, |c| c.responsive = true);
    let client = udp_client("127.0.0.1:0");
    let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x\r\nCall-ID: r\r\nCSeq: 1 OPTIONS\r\n\r\n";
    for datagram in [
        &b""[..],
        b"\r\n\r\n",
        response.as_bytes(),
        b"\x16\x03\x01\x00\xff garbage",
    ] {
        client.send_to(datagram, harness.udp()).unwrap();
    }
    harness.wait_totals("four non-requests", |t| {
        t.non_requests_empty == 1
            && t.non_requests_keepalive == 1
            && t.non_requests_response == 1
            && t.non_requests_garbage == 1
    });
    assert_marker_next(&harness, &client, "after-non-requests");
}

/// Proves by ordering, not by waiting, that nothing `client` sent before was answered or
/// became an event: the sensor handles one source's datagrams in order, so the marker
/// request sent now must get the next reply and be the next event.
fn assert_marker_next(harness: &Harness, client: &UdpSocket, call_id: &str) {
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    client
        .send_to(options(call_id).as_bytes(), harness.udp())
        .unwrap();
    let mut buffer = [0u8; 4096];
    let started = Instant::now();
    let (count, from) = recv_from(client, &mut buffer).unwrap_or_else(|error| {
        panic!(
            "no reply to the marker after {:?}: {error}; {:?}",
            started.elapsed(),
            harness.totals()
        )
    });
    assert_eq!(from, harness.udp());
    let reply = String::from_utf8_lossy(&buffer[..count]);
    assert!(
        reply.contains(&format!("\r\nCall-ID: {call_id}\r\n")),
        "a reply to something else: {reply}"
    );
    assert_eq!(
        harness.next_event().message_text(),
        options(call_id),
        "an event before the marker's"
    );
}

/// `UdpSocket::recv_from`, retried when interrupted: blocking receives in this suite have
/// failed with EINTR (os error 4) under the io_uring engine.
fn recv_from(client: &UdpSocket, buffer: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    loop {
        match client.recv_from(buffer) {
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Sends `message` and returns the reply, if any, within the client's read timeout.
fn exchange(client: &UdpSocket, target: SocketAddr, message: &str) -> Option<String> {
    client.send_to(message.as_bytes(), target).unwrap();
    let mut buffer = [0u8; 4096];
    let (count, from) = recv_from(client, &mut buffer).ok()?;
    assert_eq!(
        from, target,
        "the reply comes from the address the request was sent to"
    );
    Some(String::from_utf8_lossy(&buffer[..count]).into_owned())
}

fn udp_responsive_reply_echoes_headers(engine: Engine) {
    let harness = start(engine, |c| c.responsive = true);
    let client = udp_client("127.0.0.1:0");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let reply = exchange(&client, harness.udp(), &options("echo-1")).expect("a reply");
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    assert!(reply.contains("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-echo-1;rport\r\n"));
    assert!(reply.contains("From: \"scanner\" <sip:100@127.0.0.1>;tag=abcecho-1\r\n"));
    assert!(
        reply.contains("To: \"100\" <sip:100@127.0.0.1>;tag="),
        "{reply}"
    );
    assert!(reply.contains("Call-ID: echo-1\r\n"));
    assert!(reply.contains("CSeq: 1 OPTIONS\r\n"));
    assert!(reply.contains("Server: FPBX-16.0.33(18.13.0)\r\n"));
    assert!(reply.ends_with("\r\n\r\n"));
    let event = harness.next_event();
    assert_eq!(event.collected_method, CollectedMethod::Responsive);
    harness.wait_totals("one reply", |t| t.replies_sent == 1);
}

fn udp_responsive_no_reply_to_ack(engine: Engine) {
    let harness = start(engine, |c| c.responsive = true);
    let client = udp_client("127.0.0.1:0");
    let ack = options("ack-1").replace("OPTIONS", "ACK");
    client.send_to(ack.as_bytes(), harness.udp()).unwrap();
    assert_eq!(
        harness.next_event().method(),
        b"ACK",
        "an ACK is still an event"
    );
    assert_marker_next(&harness, &client, "after-ack");
    harness.wait_totals("the ACK's reply skipped", |t| {
        t.replies_skipped == 1 && t.replies_sent == 1
    });
}

fn udp_reply_rate_limited(engine: Engine) {
    let (rate, burst) = (10u32, 20u32);
    let harness = start(engine, |c| {
        c.responsive = true;
        c.reply_rate_per_second = rate;
        c.reply_burst = burst;
    });
    let client = udp_client("127.0.0.1:0");
    client.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let (mut sent, mut replies) = (0u64, 0u64);
    let mut buffer = [0u8; 4096];
    // About 1,000 requests/s from one source for 1.5 s.
    while started.elapsed() < Duration::from_millis(1_500) {
        client
            .send_to(options(&format!("flood-{sent}")).as_bytes(), harness.udp())
            .unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(1));
        while recv_from(&client, &mut buffer).is_ok() {
            replies += 1;
        }
    }
    harness.wait_totals("every request an event, answered or not", |t| {
        t.events == sent && t.replies_sent + t.replies_rate_limited + t.replies_skipped == sent
    });
    // Every reply the sensor counted as sent is now on its way: read until all have arrived.
    let replies_sent = harness.totals().replies_sent;
    client.set_nonblocking(false).unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    while replies < replies_sent && recv_from(&client, &mut buffer).is_ok() {
        replies += 1;
    }
    client.set_nonblocking(true).unwrap();
    while recv_from(&client, &mut buffer).is_ok() {
        replies += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let budget = f64::from(burst) + f64::from(rate) * seconds;
    assert!(sent > 500, "sent only {sent}");
    assert!((replies as f64) <= budget, "{replies} replies > {budget}");
    assert!(replies >= u64::from(burst), "{replies} replies < burst");
    let totals = harness.totals();
    assert_eq!(totals.replies_sent, replies);
    assert_eq!(totals.replies_rate_limited, sent - replies);
}

fn udp_silent_never_answers(engine: Engine) {
    let harness = start(engine, |_| {});
    let client = udp_client("127.0.0.1:0");
    // No reply ever comes, so no marker reply can prove its absence. Instead: the sensor is
    // done with a datagram (reply included) before it reads the next one from that source, so
    // once the second request is an event, a reply to the first would be waiting.
    for call_id in ["silent-1", "silent-2"] {
        client
            .send_to(options(call_id).as_bytes(), harness.udp())
            .unwrap();
    }
    for call_id in ["silent-1", "silent-2"] {
        let event = harness.next_event();
        assert_eq!(event.message_text(), options(call_id));
        assert_eq!(event.collected_method, CollectedMethod::Passive);
    }
    client.set_nonblocking(true).unwrap();
    let mut buffer = [0u8; 4096];
    assert!(
        matches!(
            recv_from(&client, &mut buffer),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        ),
        "a reply in silent mode"
    );
    let totals = harness.totals();
    assert_eq!(
        (
            totals.replies_sent,
            totals.replies_rate_limited,
            totals.replies_skipped
        ),
        (0, 0, 0)
    );
}

both_engines!(
    udp_event_fields,
    udp_destination_is_per_packet,
    udp_ipv6_loopback,
    udp_large_invite_intact,
    udp_non_requests_counted_not_events,
    udp_responsive_reply_echoes_headers,
    udp_responsive_no_reply_to_ack,
    udp_reply_rate_limited,
    udp_silent_never_answers,
);
