//! Abuse of the real binary (issue 9): connection floods, handshake and header stalls,
//! slow-loris, reply reflection, an unprivileged user, stray files and leaked secrets.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::support::require::{require, require_tool};
use crate::support::{
    DEADLINE, Launch, export, free_port, http_get, send_paced, sip_request, stats_events, udp_from,
    wait_until,
};

/// Raises the soft open-file limit to the hard one (the floods hold thousands of sockets).
fn raise_fd_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit with a valid pointer to a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit), 0);
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= needed,
        "open-file limit {} below the {needed} this test needs",
        limit.rlim_cur
    );
}

/// A TCP connection from `source` (any 127.x address) to `target`; `None` if refused or slow.
fn connect_from(source: [u8; 4], target: SocketAddr) -> Option<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::from((source, 0)).into()).ok()?;
    socket
        .connect_timeout(&target.into(), Duration::from_secs(2))
        .ok()?;
    Some(socket.into())
}

/// True once the peer closed (EOF or reset); the stream is non-blocking.
fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// 1,800 idle connections from 200 addresses: the per-IP cap (8) and the per-core cap (1,000)
/// hold, memory stays bounded and a UDP burst sent meanwhile is stored in full.
#[test]
fn abuse_tcp_connection_flood_caps_hold() {
    let _heavy = crate::support::heavy();
    raise_fd_limit(2_500);
    let dir = tempfile::tempdir().expect("tempdir");
    let launch = Launch::new(dir.path()).arg(&[
        "--tcp-connections-per-ip",
        "8",
        "--tcp-connections-per-core",
        "1000",
    ]);
    let node = launch.start();
    let rss_before = node.rss_kib();
    let mut held = Vec::new();
    let mut attempts = 0u64;
    // Phase 1: 100 addresses x 12 connections; 8 each stay open.
    for host in 1..=100u8 {
        for _ in 0..12 {
            attempts += 1;
            held.extend(connect_from([127, 0, 1, host], node.sip));
        }
    }
    let handled = || {
        node.metric("sentrypeer_connections_accepted_total")
            + node.metric("sentrypeer_connections_refused_limit_total")
    };
    let connected = held.len() as u64;
    wait_until("phase 1 handled", DEADLINE, || handled() >= connected);
    assert_eq!(node.metric("sentrypeer_connections_open"), 800);
    assert_eq!(
        node.metric("sentrypeer_connections_refused_limit_total"),
        connected - 800
    );
    // Phase 2: 100 more addresses x 6; the per-core cap stops at 1,000 open.
    for host in 101..=200u8 {
        for _ in 0..6 {
            attempts += 1;
            held.extend(connect_from([127, 0, 1, host], node.sip));
        }
    }
    let connected = held.len() as u64;
    wait_until("phase 2 handled", DEADLINE, || handled() >= connected);
    assert_eq!(node.metric("sentrypeer_connections_open"), 1_000);
    assert_eq!(
        node.metric("sentrypeer_connections_refused_limit_total"),
        connected - 1_000
    );
    assert!(
        attempts == 1_800 && connected >= 1_750,
        "{connected} connected"
    );

    // UDP capture goes on during the flood.
    let source = udp_from([127, 0, 0, 40]);
    send_paced(&source, node.sip, "flood-udp", 500, 5_000, 0);
    node.wait_committed(500);
    assert_eq!(node.metric("sentrypeer_events_dropped_total"), 0);
    let rss_during = node.rss_kib();
    // Idle connections hold no message buffer: 1,000 of them fit in 64 MiB with room to spare.
    assert!(
        rss_during < rss_before + 64 * 1024,
        "VmRSS grew from {rss_before} KiB to {rss_during} KiB"
    );
    drop(held);
    wait_until("connections closed", DEADLINE, || {
        node.metric("sentrypeer_connections_open") == 0
    });
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(stats_events(dir.path(), &launch.db), 500);
}

/// Stalled TLS handshakes (a ClientHello prefix, or nothing) are cut at the 10 s handshake
/// timeout, and stalled API request heads at the 10 s header read timeout; the API keeps
/// answering meanwhile.
#[test]
fn abuse_tls_handshake_and_api_header_stalls_cut() {
    raise_fd_limit(1_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let launch = Launch::new(dir.path());
    let node = launch.start();
    let started = Instant::now();
    let mut stalled = Vec::new();
    // A TLS record header and the start of a ClientHello, then nothing.
    let hello_prefix = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    for host in 1..=200u8 {
        let mut stream = connect_from([127, 0, 2, host], node.tls).expect("TLS connect");
        if host % 2 == 0 {
            stream.write_all(&hello_prefix).expect("hello prefix");
        }
        stalled.push(("tls", stream));
    }
    for host in 1..=50u8 {
        let mut stream = connect_from([127, 0, 3, host], node.api).expect("API connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .expect("partial head");
        stalled.push(("api", stream));
    }
    for (_, stream) in &stalled {
        stream.set_nonblocking(true).expect("nonblocking");
    }
    assert_eq!(node.get("/health-check").0, 200, "API starved by stalls");
    wait_until("200 TLS connections accepted", DEADLINE, || {
        node.metric("sentrypeer_connections_open") >= 200
    });
    let mut closed_at = Vec::new();
    let deadline = started + Duration::from_secs(20);
    while !stalled.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} stalled connections still open after 20 s",
            stalled.len()
        );
        let now = started.elapsed();
        stalled.retain_mut(|(kind, stream)| {
            if is_closed(stream) {
                closed_at.push((*kind, now));
                false
            } else {
                true
            }
        });
        thread::sleep(Duration::from_millis(100));
    }
    for kind in ["tls", "api"] {
        let times: Vec<_> = closed_at
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, t)| *t)
            .collect();
        let first = times.iter().min().expect("closed");
        let last = times.iter().max().expect("closed");
        assert!(
            *first >= Duration::from_secs(9) && *last <= Duration::from_secs(16),
            "{kind} stalls closed between {first:?} and {last:?}, not at the 10 s timeout"
        );
    }
    assert_eq!(node.metric("sentrypeer_connections_open"), 0);
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
}

/// Slow-loris on SIP TCP: a message dribbled a byte every 200 ms never completes and is cut
/// at `--tcp-idle-timeout 1` (the allowed minimum), bytes do not extend the deadline.
#[test]
fn abuse_sip_tcp_slow_loris_cut_at_idle_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let launch = Launch::new(dir.path()).arg(&["--tcp-idle-timeout", "1"]);
    let node = launch.start();
    let mut streams: Vec<_> = (1..=20u8)
        .map(|host| connect_from([127, 0, 4, host], node.sip).expect("connect"))
        .collect();
    let started = Instant::now();
    let message = sip_request("loris", 0);
    let mut closed = vec![None; streams.len()];
    for byte in message.iter().cycle() {
        let now = started.elapsed();
        assert!(
            now < Duration::from_secs(10),
            "slow-loris not cut: {closed:?}"
        );
        for (stream, closed) in streams.iter_mut().zip(closed.iter_mut()) {
            if closed.is_none() && stream.write_all(&[*byte]).is_err() {
                *closed = Some(now);
            }
            if closed.is_none() {
                stream.set_nonblocking(true).expect("nonblocking");
                if is_closed(stream) {
                    *closed = Some(now);
                }
            }
        }
        if closed.iter().all(Option::is_some) {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    for at in closed.into_iter().flatten() {
        assert!(
            at >= Duration::from_millis(800) && at <= Duration::from_secs(4),
            "closed after {at:?}"
        );
    }
    assert!(node.metric("sentrypeer_connections_idle_timeouts_total") >= 20);
    assert_eq!(node.metric("sentrypeer_events_total"), 0);
}

/// Responsive mode under a reflection attempt: 2,000 OPTIONS in about a second from one
/// socket get at most burst + rate x elapsed replies, and every request is stored.
#[test]
fn abuse_reply_reflection_bounded() {
    let _heavy = crate::support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let launch = Launch::new(dir.path()).arg(&["-r"]);
    let node = launch.start();
    let socket = udp_from([127, 0, 0, 50]);
    let started = Instant::now();
    send_paced(&socket, node.sip, "reflect", 2_000, 2_000, 0);
    // Every request answered, limited or skipped: no reply can come after this point (loopback
    // delivers a reply before its send returns), so the replies are counted, not waited for.
    let handled = || {
        node.metric("sentrypeer_sip_replies_total")
            + node.metric("sentrypeer_sip_replies_rate_limited_total")
            + node.metric("sentrypeer_sip_replies_skipped_total")
    };
    wait_until("every request handled", DEADLINE, || handled() == 2_000);
    let elapsed = started.elapsed().as_secs_f64();
    let replies = node.metric("sentrypeer_sip_replies_total");
    socket
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let mut buf = [0u8; 65_536];
    for _ in 0..replies {
        let n = socket.recv(&mut buf).expect("a counted reply");
        assert!(buf[..n].starts_with(b"SIP/2.0 "), "not a SIP reply");
    }
    socket.set_nonblocking(true).expect("non-blocking");
    let extra = socket.recv(&mut buf);
    assert!(
        matches!(&extra, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "a reply beyond the counted ones: {extra:?}"
    );
    // Defaults: burst 20, 10 per second; 2 of slack for the edges of the window.
    let bound = 20.0 + 10.0 * elapsed + 2.0;
    assert!(
        (replies as f64) <= bound && replies >= 20,
        "{replies} replies in {elapsed:.2} s (bound {bound:.0})"
    );
    node.wait_committed(2_000);
    assert_eq!(node.metric("sentrypeer_events_total"), 2_000);
    assert_eq!(
        node.metric("sentrypeer_sip_replies_rate_limited_total"),
        2_000 - replies
    );
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(stats_events(dir.path(), &launch.db), 2_000);
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(65_534), Some(65_534)).expect("chown to nobody");
}

/// `setpriv`'s arguments that run a program as user and group `nobody`.
const AS_NOBODY: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];

/// The lowest unprivileged port (`net.ipv4.ip_unprivileged_port_start`; 1024 when unreadable).
fn unprivileged_port_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1_024)
}

/// As user `nobody` on ports above 1024: it runs, stores events in a directory that user owns;
/// a privileged port (506) is refused with one clear line; the generated TLS key is mode 0600.
/// Needs root (to become `nobody`), `setpriv`, and port 506 privileged (the last part).
#[test]
fn abuse_unprivileged_user() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !require(root, "needs root to switch to user nobody") {
        return;
    }
    let Some(setpriv) = require_tool("setpriv") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    chown_nobody(dir.path());
    // The build tree may sit in a directory `nobody` cannot enter (a 0700 clone): run a copy.
    let bin_dir = tempfile::tempdir().expect("tempdir");
    chown_nobody(bin_dir.path());
    let binary = bin_dir.path().join("sentrypeer");
    std::fs::copy(env!("CARGO_BIN_EXE_sentrypeer"), &binary).expect("copy the binary");
    let mut launch = Launch::new(dir.path());
    launch.binary = binary.clone();
    launch.prefix = std::iter::once(setpriv.to_str().expect("utf-8 path"))
        .chain(AS_NOBODY)
        .chain(crate::support::NICE)
        .map(str::to_owned)
        .collect();
    let node = launch.start();
    let source = udp_from([127, 0, 0, 60]);
    send_paced(&source, node.sip, "nobody", 10, 1_000, 0);
    node.wait_committed(10);
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
    for name in ["sentrypeer.db", "sentrypeer.json", "cert.pem", "key.pem"] {
        let meta = std::fs::metadata(dir.path().join(name)).expect(name);
        assert_eq!(meta.uid(), 65_534, "{name} not owned by nobody");
    }
    let key_mode = std::fs::metadata(dir.path().join("key.pem"))
        .expect("key")
        .mode();
    assert_eq!(key_mode & 0o777, 0o600, "key mode {key_mode:o}");
    assert_eq!(stats_events(dir.path(), &launch.db), 10);

    // 5060 is above 1024, so not a privileged port on Linux: the refusal is shown on port 506.
    let start = unprivileged_port_start();
    let why = format!(
        "the refusal part needs port 506 privileged (net.ipv4.ip_unprivileged_port_start={start})"
    );
    if !require(start > 506, &why) {
        return;
    }
    let output = std::process::Command::new(&setpriv)
        .args(AS_NOBODY)
        .arg(&binary)
        .arg("-f")
        .arg(&launch.db)
        .args(["--sip-listen", "127.0.0.1:506", "-N", "--cores", "1"])
        .env_clear()
        .env("HOME", dir.path())
        .current_dir(dir.path())
        .output()
        .expect("run as nobody");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // Besides a possible receive-buffer warning, one line says what failed.
    let errors: Vec<_> = stderr
        .lines()
        .filter(|l| !l.contains("receive buffer clamped"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert_eq!(
        errors[0], "sentrypeer: cannot bind UDP 127.0.0.1:506: Permission denied",
        "{stderr}"
    );
}

/// Names of the entries of `dir`, sorted.
#[cfg(feature = "p2p")]
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// With every path configured into one directory and the working directory elsewhere, only
/// the store, its lock, the JSON log, the certificate, its key and the P2P key are written.
#[cfg(feature = "p2p")]
#[test]
fn abuse_no_file_outside_configured_paths() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut launch = Launch::new(dir.path()).arg(&[
        "-p",
        "--p2p-listen",
        &format!("127.0.0.1:{}", free_port()),
        "-b",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    launch.cwd = cwd.path().to_owned();
    let node = launch.start();
    let source = udp_from([127, 0, 0, 70]);
    send_paced(&source, node.sip, "paths", 5, 1_000, 0);
    node.wait_committed(5);
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        entries(cwd.path()),
        Vec::<String>::new(),
        "files in the cwd"
    );
    assert_eq!(
        entries(dir.path()),
        [
            "cert.pem",
            "key.pem",
            "sentrypeer.db",
            "sentrypeer.db-lock",
            "sentrypeer.db.p2p.key",
            "sentrypeer.json"
        ]
    );
}

/// Secrets given on the command line never reach stdout or stderr at run time, with debug and
/// verbose output on, a webhook to a closed port (errors printed) and a rejected API token.
#[test]
fn abuse_secrets_never_printed_at_run_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = free_port();
    let hook = format!("http://127.0.0.1:{closed}/hook");
    let token_url = format!("http://127.0.0.1:{closed}/token");
    let launch = Launch::new(dir.path()).arg(&[
        "-d",
        "-v",
        "-w",
        &hook,
        "-i",
        "client-id",
        "-c",
        "run-client-s3cret",
        "--oauth2-token-url",
        &token_url,
        "--api-token",
        "run-api-t0ken",
    ]);
    // The API needs the token now; the launcher's readiness probe gets 401, which still answers.
    let node = launch.start();
    let source = udp_from([127, 0, 0, 80]);
    send_paced(&source, node.sip, "secret", 5, 1_000, 0);
    let (status, body) = http_get(node.api, "/ip-addresses", Some("wrong-t0ken")).expect("API");
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("run-api-t0ken"));
    let (status, body) = http_get(node.api, "/metrics", Some("run-api-t0ken")).expect("API");
    assert_eq!(status, 200, "{body}");
    wait_until("events committed", DEADLINE, || {
        http_get(node.api, "/metrics", Some("run-api-t0ken"))
            .and_then(|(_, body)| {
                crate::support::metric_value(&body, "sentrypeer_writer_events_committed_total")
            })
            .is_some_and(|n| n >= 5)
    });
    wait_until("a webhook error line", DEADLINE, || {
        node.stderr().contains("sentrypeer: webhook: ")
    });
    let stdout = node.stdout();
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
    for secret in ["run-client-s3cret", "run-api-t0ken"] {
        assert!(!stderr.contains(secret), "{secret} on stderr: {stderr}");
        assert!(!stdout.contains(secret), "{secret} on stdout: {stdout}");
    }
    assert_eq!(export(dir.path(), &launch.db).len(), 5);
}
