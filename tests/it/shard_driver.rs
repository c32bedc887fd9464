//! The shard driver's policy on real loopback sockets, on both engines: the gather pause keeps
//! receive calls well below one per datagram in a paced stream, a stop right after a burst still
//! turns every datagram the kernel accepted into an event, and a stalled reply write is cut at the
//! write timeout.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sentrypeer::config::limits;
use sentrypeer::metrics::Render;

use crate::engine::{DEADLINE, Engine, options, start, udp_client};

/// Datagrams in the paced stream, and the gap between two of them: 400 x 150 us = 60 ms, about
/// 7 datagrams per 1 ms gather pause.
const PACED_DATAGRAMS: u64 = 400;
const PACED_GAP: Duration = Duration::from_micros(150);

/// Datagrams in the burst before a stop: more than a debug-build shard handles in the 50 ms a stop
/// takes to reach it (so the drain has work), fewer than the 64 MiB receive buffer asked for holds
/// (about 50,000 of these requests on loopback). Any the kernel drops anyway (a buffer clamped by
/// `net.core.rmem_max` without CAP_NET_ADMIN) are read from /proc/net/udp and accounted for.
const BURST_DATAGRAMS: u64 = 20_000;
const BURST_RCVBUF_BYTES: usize = 64 << 20;

fn shard_driver_gather_pause_batches_a_paced_stream(engine: Engine) {
    // Timing-sensitive and CPU-heavy: never beside the suite's other floods.
    let _heavy = crate::support::heavy();
    let harness = start(engine, |_| {});
    let client = udp_client("127.0.0.1:0");
    let message = options("paced");
    let (calls_before, empty_before) = {
        let totals = harness.totals();
        (totals.udp_receive_calls, totals.udp_receive_calls_empty)
    };
    let started = Instant::now();
    for index in 0..PACED_DATAGRAMS {
        // Pacing (not a wait for a condition): spin until this datagram's send time.
        let due = started + PACED_GAP * u32::try_from(index).unwrap();
        while Instant::now() < due {
            std::thread::yield_now();
        }
        client.send_to(message.as_bytes(), harness.udp()).unwrap();
    }
    harness.wait_totals("every paced datagram", |t| {
        t.datagrams_received == PACED_DATAGRAMS
    });
    let calls = harness.totals().udp_receive_calls - calls_before;
    let empty = harness.totals().udp_receive_calls_empty - empty_before;
    eprintln!(
        "{engine:?}: {calls} receive calls ({empty} empty) for {PACED_DATAGRAMS} paced datagrams"
    );
    // With the pause: about one call per 1 ms of stream, and a call finds the queue empty only
    // when the sender stalls for longer than the pause. Without it: one call that takes each
    // datagram and one that finds the queue empty, about 2 per datagram.
    assert!(
        calls * 2 < PACED_DATAGRAMS,
        "{calls} receive calls for {PACED_DATAGRAMS} paced datagrams (gather pause missing?)"
    );
    assert!(
        empty * 20 < PACED_DATAGRAMS,
        "{empty} receive calls found the queue empty for {PACED_DATAGRAMS} paced datagrams"
    );
    let mut text = String::new();
    harness.sensor().metrics().render(&mut text);
    let line = format!(
        "sentrypeer_sip_udp_receive_calls_total {}\n",
        calls + calls_before
    );
    assert!(text.contains(&line), "{text}");
}

/// Datagrams the kernel dropped at the UDP sockets bound to `port` (the last column of
/// /proc/net/udp, summed over the shards' sockets).
fn kernel_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    let port_hex = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let local = columns.get(1)?;
            local
                .ends_with(&port_hex)
                .then(|| columns.last()?.parse::<u64>().ok())?
        })
        .sum()
}

fn shard_driver_stop_right_after_a_burst_keeps_every_datagram(engine: Engine) {
    // Timing-sensitive and CPU-heavy: never beside the suite's other floods.
    let _heavy = crate::support::heavy();
    let mut harness = start(engine, |c| c.udp_rcvbuf_bytes = BURST_RCVBUF_BYTES);
    let target = harness.udp();
    let client = udp_client("127.0.0.1:0");
    for index in 0..BURST_DATAGRAMS {
        let message = options(&format!("burst-{index}"));
        client.send_to(message.as_bytes(), target).unwrap();
    }
    // Loopback queues (or drops) each datagram within send_to: the count is final now.
    let dropped = kernel_drops(target.port());
    let received_before_stop = harness.totals().datagrams_received;
    harness.sensor.take().unwrap().stop();
    let events = harness.events.try_iter().count() as u64;
    eprintln!(
        "{engine:?}: {BURST_DATAGRAMS} sent, {dropped} dropped by the kernel, \
         {received_before_stop} received before stop(), {events} events"
    );
    assert!(
        dropped < BURST_DATAGRAMS / 2,
        "the kernel dropped {dropped}"
    );
    assert_eq!(events, BURST_DATAGRAMS - dropped, "datagrams lost at stop");
}

/// A client that sends requests in responsive mode but never reads the replies: once the
/// kernel's buffers are full the reply write stalls, and the connection is closed at the write
/// timeout (the idle timeout's value) and counted as such, not as idle.
fn shard_driver_unread_replies_cut_at_write_timeout(engine: Engine) {
    // Timing-sensitive and CPU-heavy: never beside the suite's other floods.
    let _heavy = crate::support::heavy();
    let harness = start(engine, |c| {
        c.responsive = true;
        c.reply_rate_per_second = limits::REPLY_RATE_PER_SECOND_MAX;
        c.reply_burst = limits::REPLY_BURST_MAX;
        c.tcp_idle_timeout = Duration::from_secs(1);
    });
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // A small receive window, so that unread replies back up after a few kilobytes.
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&harness.tcp().into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_write_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let request = options("unread");
    let deadline = Instant::now() + DEADLINE;
    while harness.totals().connections_write_timeouts == 0 {
        assert!(
            Instant::now() < deadline,
            "no write timeout: {:?}",
            harness.totals()
        );
        // Fails (timed out, or reset once the sensor closed) when the buffers are full.
        let _ = stream.write_all(request.as_bytes());
    }
    let totals = harness.totals();
    assert_eq!(totals.connections_idle_timeouts, 0);
    assert!(totals.replies_sent > 0);
    harness.wait_totals("the connection closed", |t| t.connections_open() == 0);
}

both_engines!(
    shard_driver_gather_pause_batches_a_paced_stream,
    shard_driver_stop_right_after_a_burst_keeps_every_datagram,
    shard_driver_unread_replies_cut_at_write_timeout,
);
