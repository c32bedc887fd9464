//! The real `sentrypeer` binary as a child process for the fault and abuse tests: start on free
//! loopback ports with every path in a tempdir, wait for the API, read `/metrics` and the REST
//! routes, export and count the store, send SIP over UDP; and the store settings that the
//! in-process tests share.
//!
//! Never: a fixed sleep as a wait (every wait polls a condition against a deadline), traffic to a
//! non-loopback address.

/// Forged UDP sources through a raw socket.
pub(crate) mod forge;
/// A real `nats-server -js` on loopback: start, kill, restart on the same store.
pub(crate) mod nats;
/// What a test needs from its machine, and the one policy when it is missing.
pub(crate) mod require;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A store in `dir` for in-process tests: no fsync, batches of at most `batch_events_max`
/// events committed within 5 ms, nothing pruned.
pub(crate) fn store_config(dir: &Path, batch_events_max: usize) -> sentrypeer::config::StoreConfig {
    sentrypeer::config::StoreConfig {
        db_file: dir.join("sentrypeer.db"),
        batch_events_max,
        batch_interval: Duration::from_millis(5),
        no_sync: true,
        retention_days: None,
    }
}

/// Longest wait for anything in these tests.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// Serializes the CPU-heavy floods of these tests so that, run with the rest of the suite,
/// they do not pile up on a small machine and starve the timing-sensitive tests of other areas.
pub(crate) fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Polls `condition` every 20 ms until it holds; fails the test with `what` after `limit`.
pub(crate) fn wait_until(what: &str, limit: Duration, condition: impl FnMut() -> bool) {
    wait_until_explained(limit, condition, || format!("timed out waiting for {what}"));
}

/// [`wait_until`] that fails with `explain()`: the state the wait stopped in.
pub(crate) fn wait_until_explained(
    limit: Duration,
    mut condition: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + limit;
    while !condition() {
        if Instant::now() >= deadline {
            panic!("{}", explain());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port free for both UDP and TCP when asked (SIP listens on both).
pub(crate) fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("local addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port");
}

/// The nodes run at a lower CPU priority: their floods must not starve the timing-sensitive
/// tests of other areas that run in parallel on a small machine (their own waits are generous).
pub(crate) const NICE: [&str; 3] = ["nice", "-n", "10"];

/// How to start a node; `Launch::new(dir)` puts every path under `dir`.
pub(crate) struct Launch {
    pub(crate) dir: PathBuf,
    pub(crate) db: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) cwd: PathBuf,
    /// Run through this command first ([`NICE`] by default; e.g. `setpriv ...`).
    pub(crate) prefix: Vec<String>,
    /// The binary to run (the built one by default; a copy another user can reach, see
    /// `abuse_unprivileged_user`).
    pub(crate) binary: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) sip_port: Option<u16>,
}

impl Launch {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            db: dir.join("sentrypeer.db"),
            log: dir.join("sentrypeer.json"),
            cwd: dir.to_owned(),
            prefix: NICE.iter().map(|s| (*s).to_owned()).collect(),
            binary: PathBuf::from(env!("CARGO_BIN_EXE_sentrypeer")),
            args: Vec::new(),
            sip_port: None,
        }
    }

    pub(crate) fn arg(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Starts the node and waits until its API answers (the API starts last).
    pub(crate) fn start(&self) -> Node {
        let mut last = String::new();
        for _ in 0..3 {
            match self.try_start() {
                Ok(node) => return node,
                // Another test took a port between our probe and the bind: try other ports.
                Err(stderr) if stderr.contains("in use") => last = stderr,
                Err(stderr) => panic!("sentrypeer did not start; stderr: {stderr}"),
            }
        }
        panic!("sentrypeer did not start; stderr: {last}");
    }

    fn try_start(&self) -> Result<Node, String> {
        let sip = SocketAddr::from(([127, 0, 0, 1], self.sip_port.unwrap_or_else(free_port)));
        let tls = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = match self.prefix.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .arg("-f")
            .arg(&self.db)
            .arg("-l")
            .arg(&self.log)
            .args(["--sip-listen", &sip.to_string()])
            .args(["-z", &tls.to_string()])
            .args(["-a", "--api-listen", &api.to_string()])
            .arg("--cert")
            .arg(self.dir.join("cert.pem"))
            .arg("--key")
            .arg(self.dir.join("key.pem"))
            .args(["--cores", "1"])
            .args(&self.args)
            .env_clear()
            .env("HOME", &self.dir)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn sentrypeer");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stderr.take().expect("stderr"), Arc::clone(&stderr)),
            collect(child.stdout.take().expect("stdout"), Arc::clone(&stdout)),
        ];
        let mut node = Node {
            child,
            stderr,
            stdout,
            sip,
            tls,
            api,
            exited: None,
            readers,
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = node.child.try_wait().expect("try_wait") {
                node.exited = Some(status);
                node.join_readers();
                return Err(node.stderr());
            }
            if node.try_get("/health-check").is_some() {
                return Ok(node);
            }
            assert!(
                Instant::now() < deadline,
                "API not up within {DEADLINE:?}; stderr: {}",
                node.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

pub(crate) fn collect(
    pipe: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut text = into.lock().unwrap_or_else(|p| p.into_inner());
            text.push_str(&line);
            text.push('\n');
        }
    })
}

/// A running `sentrypeer`; killed on drop.
pub(crate) struct Node {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    pub(crate) sip: SocketAddr,
    pub(crate) tls: SocketAddr,
    pub(crate) api: SocketAddr,
    exited: Option<ExitStatus>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Waits for the last output of an exited process.
    fn join_readers(&mut self) {
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fails the test if the process has exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("sentrypeer exited ({status}); stderr: {}", self.stderr());
        }
    }

    pub(crate) fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal})");
    }

    /// SIGKILL and reap.
    pub(crate) fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM; returns the exit status (within the deadline) and stderr.
    pub(crate) fn stop(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM; stderr: {}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        };
        self.join_readers();
        (status, self.stderr())
    }

    /// Resident memory of the process in KiB (`VmRSS`).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line")
    }

    /// `GET path` on the API: status and body, `None` if the API does not answer.
    pub(crate) fn try_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.api, path, None)
    }

    pub(crate) fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .unwrap_or_else(|| panic!("GET {path} failed; stderr: {}", self.stderr()))
    }

    /// An unlabelled counter or gauge from `/metrics`.
    pub(crate) fn metric(&self, name: &str) -> u64 {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        metric_value(&body, name).unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
    }

    /// `seen_count` by IP from `GET /ip-addresses`.
    pub(crate) fn ip_counts(&self) -> HashMap<String, u64> {
        let (status, body) = self.get("/ip-addresses");
        assert_eq!(status, 200, "{body}");
        let value: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
        let mut counts = HashMap::new();
        for item in value["ip_addresses"].as_array().into_iter().flatten() {
            let ip = item["ip_address"].as_str().expect("ip_address").to_owned();
            let count = match &item["seen_count"] {
                serde_json::Value::String(s) => s.parse().expect("seen_count"),
                other => other.as_u64().expect("seen_count"),
            };
            counts.insert(ip, count);
        }
        counts
    }

    /// Waits until the writer has committed at least `count` events in this run.
    pub(crate) fn wait_committed(&self, count: u64) {
        wait_until(&format!("{count} events committed"), DEADLINE, || {
            self.metric("sentrypeer_writer_events_committed_total") >= count
        });
    }
}

pub(crate) fn metric_value(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .map(|v| v as u64)
}

/// A minimal HTTP/1.1 GET with `Connection: close` (bodies plain or chunked).
pub(crate) fn http_get(api: SocketAddr, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&api, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// An OPTIONS request with a unique Call-ID `tag`; `pad` bytes of varied body make it bigger.
pub(crate) fn sip_request(tag: &str, pad: usize) -> Vec<u8> {
    let body: String = (0..pad)
        .map(|i| {
            let x = (i as u64 + 1)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(tag.len() as u64 * 31 + tag.bytes().map(u64::from).sum::<u64>());
            char::from(b'a' + ((x >> 29) % 26) as u8)
        })
        .collect();
    format!(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-{tag}\r\n\
         From: <sip:scanner@127.0.0.1>;tag={tag}\r\n\
         To: <sip:100@127.0.0.1>\r\n\
         Call-ID: {tag}@fault\r\n\
         CSeq: 1 OPTIONS\r\n\
         User-Agent: friendly-scanner\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {pad}\r\n\r\n{body}"
    )
    .into_bytes()
}

/// A UDP socket bound on `ip` (any 127.x address).
pub(crate) fn udp_from(ip: [u8; 4]) -> UdpSocket {
    UdpSocket::bind(SocketAddr::from((ip, 0))).expect("bind udp client")
}

/// Sends `count` requests to `target` from one socket, paced at about `rate` per second.
pub(crate) fn send_paced(
    socket: &UdpSocket,
    target: SocketAddr,
    prefix: &str,
    count: usize,
    rate: u32,
    pad: usize,
) {
    let started = Instant::now();
    for i in 0..count {
        let due = started + Duration::from_secs_f64(i as f64 / f64::from(rate));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let _ = socket.send_to(&sip_request(&format!("{prefix}-{i}"), pad), target);
    }
}

/// `sentrypeer-loadgen`, built beside `sentrypeer` by the README's `cargo test --workspace`;
/// `None` after the require policy when it is not built.
pub(crate) fn loadgen_binary() -> Option<PathBuf> {
    let binary = Path::new(env!("CARGO_BIN_EXE_sentrypeer")).with_file_name("sentrypeer-loadgen");
    let built = binary.is_file();
    require::require(
        built,
        &format!(
            "{} is not built (the README's `cargo test --workspace` builds it; or \
             `cargo build -p sentrypeer-loadgen`)",
            binary.display()
        ),
    );
    built.then_some(binary)
}

/// Runs a `sentrypeer` subcommand to completion; returns (status, stdout, stderr).
pub(crate) fn run_command(home: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sentrypeer"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .current_dir(home)
        .stdin(Stdio::null())
        .output()
        .expect("run sentrypeer");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The stored events as `(event_uuid, source_ip)` pairs via `sentrypeer export --format jsonl`.
pub(crate) fn export(home: &Path, db: &Path) -> Vec<(String, String)> {
    let db = db.to_str().expect("utf-8 path");
    let (status, stdout, stderr) = run_command(home, &["export", "--format", "jsonl", "-f", db]);
    assert!(status.success(), "export failed: {stderr}");
    stdout
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("export line");
            (
                value["event_uuid"].as_str().expect("event_uuid").to_owned(),
                value["source_ip"].as_str().expect("source_ip").to_owned(),
            )
        })
        .collect()
}

/// `events: N` from `sentrypeer stats`.
pub(crate) fn stats_events(home: &Path, db: &Path) -> u64 {
    let db = db.to_str().expect("utf-8 path");
    let (status, stdout, stderr) = run_command(home, &["stats", "-f", db]);
    assert!(status.success(), "stats failed: {stderr}");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("events: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `events:` line in {stdout}"))
}

/// The event UUIDs of the complete lines of a JSON log (a torn last line is skipped).
pub(crate) fn log_uuids(path: &Path) -> HashSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| v["event_uuid"].as_str().map(str::to_owned))
        .collect()
}
