//! A real `nats-server` with JetStream (or a leaf node without) for the NATS tests: a free loopback port, a temporary
//! store directory, optional extra configuration (TLS, accounts), ready when its `/healthz`
//! (monitoring port) answers ok; frozen (SIGSTOP) and thawed, killed (SIGKILL) and restarted on
//! the same port and store; killed on drop.
//!
//! Never: a fixed sleep as a wait (readiness is polled against a deadline), a port or address off
//! loopback, a silently skipped test (a missing `nats-server` goes through `require`).

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::require::require_tool;
use super::{DEADLINE, http_get};

/// A running (or killed, to be restarted) `nats-server -js`.
pub(crate) struct NatsServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    monitor_port: u16,
    /// `-js` and a store directory; off for a leaf node that only relays.
    jetstream: bool,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts `nats-server -js` on free loopback ports with `extra_config` appended to its
    /// configuration file (a `tls {}` block, `operator`/`resolver` lines, ...); waits until it is
    /// ready. `None` (after the `require` policy) when `nats-server` is not on `PATH`.
    pub(crate) fn start(extra_config: &str) -> Option<Self> {
        Self::start_with(extra_config, true)
    }

    /// A server without JetStream (a leaf node that relays to a hub given in `extra_config`).
    pub(crate) fn start_leaf(extra_config: &str) -> Option<Self> {
        Self::start_with(extra_config, false)
    }

    fn start_with(extra_config: &str, jetstream: bool) -> Option<Self> {
        let binary = require_tool("nats-server")?;
        let dir = tempfile::tempdir().expect("nats tempdir");
        std::fs::create_dir_all(dir.path().join("store")).expect("nats store dir");
        let mut server = Self {
            binary,
            dir,
            port: 0,
            monitor_port: 0,
            jetstream,
            child: None,
        };
        let mut last_log = String::new();
        for _ in 0..3 {
            server.port = free_tcp_port();
            server.monitor_port = free_tcp_port();
            server.write_config(extra_config);
            match server.spawn_and_wait() {
                Ok(()) => return Some(server),
                // Another test took a port between the probe and the bind: try other ports.
                Err(log) if log.contains("address already in use") => last_log = log,
                Err(log) => panic!("nats-server did not start; its log:\n{log}"),
            }
        }
        panic!("nats-server did not start; its log:\n{last_log}");
    }

    /// `nats://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The temporary directory (config, log, store): a test puts its certificates here.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far (for failure messages).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Kills the server at once (SIGKILL: no flush, no goodbye to clients).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen process dies of SIGKILL too; SIGCONT first keeps its exit prompt.
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            let _ = libc::pid_t::try_from(child.id())
                .map(|pid| unsafe { libc::kill(pid, libc::SIGCONT) });
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: a server that accepts bytes and answers
    /// nothing, the slowest a server can be.
    pub(crate) fn freeze(&self, frozen: bool) {
        let child = self.child.as_ref().expect("nats-server running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal})");
    }

    /// Starts the server again on the same port and store directory; waits until it is ready.
    pub(crate) fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.spawn_and_wait() {
            panic!("nats-server did not restart; its log:\n{log}");
        }
    }

    fn write_config(&self, extra_config: &str) {
        let store = self.dir.path().join("store");
        let log = self.dir.path().join("nats.log");
        let jetstream = if self.jetstream {
            format!("jetstream {{\n  store_dir: \"{}\"\n}}\n", store.display())
        } else {
            String::new()
        };
        let text = format!(
            "listen: \"127.0.0.1:{}\"\nhttp: \"127.0.0.1:{}\"\nlog_file: \"{}\"\n\
             {jetstream}{extra_config}\n",
            self.port,
            self.monitor_port,
            log.display(),
        );
        let mut file =
            std::fs::File::create(self.dir.path().join("nats.conf")).expect("nats config");
        file.write_all(text.as_bytes()).expect("write nats config");
    }

    /// Spawns the server and polls `/healthz` until it answers ok (JetStream included); the log
    /// as the error when it exits or the deadline passes.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let mut command = Command::new(&self.binary);
        if self.jetstream {
            command.arg("-js");
        }
        let child = command
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let monitor = SocketAddr::from(([127, 0, 0, 1], self.monitor_port));
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("exited with {status}\n{}", self.log()));
            }
            if let Some((200, body)) = http_get(monitor, "/healthz", None)
                && body.contains("ok")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("not ready within {DEADLINE:?}\n{}", self.log()));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback TCP port free at the time of asking.
fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    listener.local_addr().expect("local addr").port()
}
