//! Sensor ingest benchmark (not a test): a flat-out UDP flood on loopback from one `sendmmsg`
//! sender into (a) the sensor on either engine and (b) a bare `recvmmsg` sink, in the same run;
//! and a drain comparison of glommio's `recv_from` against readiness + `recvmmsg` inside a
//! glommio executor. Results go to stdout; docs/benchmarks.md records them.
//!
//! Usage: `cargo run --release --example sensor_ingest -- [flood COUNT | flood-uring COUNT | drain COUNT]`
//! (`flood-uring` skips the portable engine).
//!
//! Never: sends to anything but 127.0.0.1.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sentrypeer::config::limits;
use sentrypeer::config::{EngineChoice, SensorConfig};
use sentrypeer::sensor::udp_batch::RecvBatch;

const PAYLOAD: &[u8] = b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1234567890;rport\r\n\
Max-Forwards: 70\r\nTo: \"100\" <sip:100@127.0.0.1>\r\n\
From: \"sipvicious\" <sip:100@1.1.1.1>;tag=6332643961303439\r\n\
User-Agent: friendly-scanner\r\nCall-ID: 838231456728830101744520\r\nCSeq: 1 OPTIONS\r\n\
Contact: <sip:100@127.0.0.1:5070>\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n";

const SEND_BATCH: usize = 64;

/// `RcvbufErrors` of the `Udp:` line in /proc/net/snmp (system-wide).
fn rcvbuf_errors() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    let index = names
        .split_whitespace()
        .position(|n| n == "RcvbufErrors")
        .unwrap_or(0);
    values
        .split_whitespace()
        .nth(index)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sends `count` copies of the payload to `target` with sendmmsg, as fast as one core can.
fn flood(target: SocketAddr, count: u64) -> Duration {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(target).unwrap();
    let mut iovecs: Vec<libc::iovec> = (0..SEND_BATCH)
        .map(|_| libc::iovec {
            iov_base: PAYLOAD.as_ptr().cast_mut().cast(),
            iov_len: PAYLOAD.len(),
        })
        .collect();
    // SAFETY: all-zero bytes are a valid mmsghdr.
    let mut headers: Vec<libc::mmsghdr> = (0..SEND_BATCH)
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (header, iovec) in headers.iter_mut().zip(iovecs.iter_mut()) {
        header.msg_hdr.msg_iov = iovec;
        header.msg_hdr.msg_iovlen = 1;
    }
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        let batch = (count - sent).min(SEND_BATCH as u64) as u32;
        // SAFETY: the headers point at iovecs over the static payload; the socket is connected.
        let result = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), batch, 0) };
        if result > 0 {
            sent += result as u64;
        }
    }
    started.elapsed()
}

struct Outcome {
    label: String,
    sent: u64,
    send_seconds: f64,
    received: u64,
    events: u64,
    app_drops: u64,
    kernel_drops: u64,
    /// CPU of the receiving thread(s) (shards or sink), user + system.
    cpu_seconds: f64,
}

fn print(outcome: &Outcome) {
    println!(
        "{:<22} sent {:>9} in {:>6.3}s ({:>8.0}/s)  received {:>9}  events {:>9}  app drops {:>7}  kernel drops {:>9}  loss {:>6.2}%  receiver CPU {:.2} us/datagram",
        outcome.label,
        outcome.sent,
        outcome.send_seconds,
        outcome.sent as f64 / outcome.send_seconds,
        outcome.received,
        outcome.events,
        outcome.app_drops,
        outcome.kernel_drops,
        100.0 * (outcome.sent - outcome.events.min(outcome.sent)) as f64 / outcome.sent as f64,
        outcome.cpu_seconds * 1e6 / outcome.received.max(1) as f64,
    );
}

/// Waits until `value` stops moving for 300 ms.
fn settle(value: impl Fn() -> u64) -> u64 {
    let mut last = value();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = value();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// CPU seconds (user + system) of this process's threads whose name starts with `prefix`.
fn threads_cpu_seconds(prefix: &str) -> f64 {
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
        for index in [11, 12] {
            ticks += fields
                .get(index)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ticks as f64 / ticks_per_second
}

fn run_sensor(engine: EngineChoice, count: u64) -> Outcome {
    let dir = std::env::temp_dir();
    let config = SensorConfig {
        enabled: true,
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        tls_listen: None,
        tls_cert: dir.join("unused-cert.pem"),
        tls_key: dir.join("unused-key.pem"),
        responsive: false,
        cores: 1,
        engine,
        force_probe_failure: false,
        udp_rcvbuf_bytes: limits::UDP_RCVBUF_BYTES_DEFAULT,
        tcp_idle_timeout: limits::TCP_IDLE_TIMEOUT,
        tls_handshake_timeout: limits::TLS_HANDSHAKE_TIMEOUT,
        tcp_connections_per_ip_max: limits::TCP_CONNECTIONS_PER_IP_MAX,
        tcp_connections_per_shard_max: limits::TCP_CONNECTIONS_PER_SHARD_MAX,
        reply_rate_per_second: limits::REPLY_RATE_PER_SECOND,
        reply_burst: limits::REPLY_BURST,
        server_header: "FPBX-16.0.33(18.13.0)".to_owned(),
        ignore_ip: Default::default(),
        sip_challenge: false,
        sip_realm: "asterisk".to_owned(),
    };
    let (sender, receiver) = crossbeam_channel::bounded(limits::EVENT_CHANNEL_CAPACITY);
    let sensor = sentrypeer::sensor::start(
        &config,
        &sentrypeer::sensor::Identity::ephemeral(uuid::Uuid::new_v4()),
        sender,
        false,
    )
    .unwrap();
    let label = format!("sensor {:?}", sensor.engine());
    let events = Arc::new(AtomicU64::new(0));
    let consumer = {
        let events = Arc::clone(&events);
        std::thread::spawn(move || {
            for _event in receiver {
                events.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let before = rcvbuf_errors();
    let send = flood(sensor.udp_addrs()[0], count);
    let metrics = sensor.metrics();
    settle(|| metrics.totals().datagrams_received);
    let totals = metrics.totals();
    let cpu_seconds = threads_cpu_seconds("sensor-");
    sensor.stop();
    consumer.join().unwrap();
    Outcome {
        label,
        sent: count,
        send_seconds: send.as_secs_f64(),
        received: totals.datagrams_received,
        events: events.load(Ordering::Relaxed),
        app_drops: totals.events_dropped,
        kernel_drops: rcvbuf_errors() - before,
        cpu_seconds,
    }
}

fn bind_receiver(receive_buffer_bytes: usize) -> UdpSocket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    let wanted = receive_buffer_bytes as libc::c_int;
    // SAFETY: setsockopt reads the int we pass (SO_RCVBUFFORCE needs CAP_NET_ADMIN; else ignored).
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const wanted).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.set_nonblocking(true).unwrap();
    socket.into()
}

fn run_sink(count: u64) -> Outcome {
    let socket = bind_receiver(limits::UDP_RCVBUF_BYTES_DEFAULT);
    let target = socket.local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sink = {
        let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("bare-sink".to_owned())
            .spawn(move || {
                let mut batch = RecvBatch::new();
                let mut poll = libc::pollfd {
                    fd: socket.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                while !stop.load(Ordering::Relaxed) {
                    match batch.recv(socket.as_raw_fd()) {
                        Ok(n) => {
                            received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        // SAFETY: one valid pollfd.
                        Err(_) => unsafe {
                            libc::poll(&mut poll, 1, 20);
                        },
                    }
                }
            })
            .unwrap()
    };
    let before = rcvbuf_errors();
    let send = flood(target, count);
    let total = settle(|| received.load(Ordering::Relaxed));
    let cpu_seconds = threads_cpu_seconds("bare-sink");
    stop.store(true, Ordering::Relaxed);
    sink.join().unwrap();
    Outcome {
        label: "bare recvmmsg sink".to_owned(),
        sent: count,
        send_seconds: send.as_secs_f64(),
        received: total,
        events: total,
        app_drops: 0,
        kernel_drops: rcvbuf_errors() - before,
        cpu_seconds,
    }
}

/// Pre-fills a socket with up to `count` datagrams; returns it and how many are queued.
fn prefill(count: u64) -> (UdpSocket, u64) {
    let socket = bind_receiver(1 << 30);
    let before = rcvbuf_errors();
    flood(socket.local_addr().unwrap(), count);
    let dropped = rcvbuf_errors() - before;
    (socket, count.saturating_sub(dropped))
}

/// Drains `queued` datagrams inside a glommio executor, with glommio's own `recv_from` or with
/// readiness (peek) + recvmmsg on the raw fd; returns datagrams per second.
fn drain(socket: UdpSocket, queued: u64, use_recvmmsg: bool) -> f64 {
    let executor = glommio::LocalExecutorBuilder::default().make().unwrap();
    executor.run(async move {
        // SAFETY: we own the fd and hand it to glommio.
        let socket = unsafe { glommio::net::UdpSocket::from_raw_fd(socket.into_raw_fd()) };
        let started = Instant::now();
        let mut taken = 0u64;
        if use_recvmmsg {
            let mut batch = RecvBatch::new();
            let mut peek = [0u8; 1];
            while taken < queued {
                match batch.recv(socket.as_raw_fd()) {
                    Ok(n) => taken += n as u64,
                    Err(_) => {
                        let _ = socket.peek_from(&mut peek).await;
                    }
                }
            }
        } else {
            let mut buffer = vec![0u8; limits::UDP_DATAGRAM_BYTES_MAX];
            while taken < queued {
                socket.recv_from(&mut buffer).await.unwrap();
                taken += 1;
            }
        }
        taken as f64 / started.elapsed().as_secs_f64()
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("flood", String::as_str);
    let count: u64 = args
        .get(2)
        .and_then(|c| c.parse().ok())
        .unwrap_or(2_000_000);
    match mode {
        "drain" => {
            for round in 1..=3 {
                let (socket, queued) = prefill(count);
                let glommio = drain(socket, queued, false);
                let (socket, queued) = prefill(count);
                let batched = drain(socket, queued, true);
                println!(
                    "round {round}: {queued} queued; glommio recv_from {glommio:>10.0}/s; peek+recvmmsg {batched:>10.0}/s; ratio {:.2}",
                    batched / glommio
                );
            }
        }
        _ => {
            for round in 1..=3 {
                println!("round {round}");
                print(&run_sink(count));
                print(&run_sensor(EngineChoice::Auto, count));
                if mode != "flood-uring" {
                    print(&run_sensor(EngineChoice::Portable, count));
                }
            }
        }
    }
}
