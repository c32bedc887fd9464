//! A real `nats-server` with JetStream for the NATS tests: a free loopback port, a temporary
//! store directory, optional extra configuration (TLS, accounts), ready when its `/healthz`
//! (monitoring port) answers ok; killed (SIGKILL) and restarted on the same port and store; killed
//! on drop.
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
    child: Option<Child>,
}

impl NatsServer {
    /// Starts `nats-server -js` on free loopback ports with `extra_config` appended to its
    /// configuration file (a `tls {}` block, `operator`/`resolver` lines, ...); waits until it is
    /// ready. `None` (after the `require` policy) when `nats-server` is not on `PATH`.
    pub(crate) fn start(extra_config: &str) -> Option<Self> {
        let binary = require_tool("nats-server")?;
        let dir = tempfile::tempdir().expect("nats tempdir");
        std::fs::create_dir_all(dir.path().join("store")).expect("nats store dir");
        let mut server = Self {
            binary,
            dir,
            port: 0,
            monitor_port: 0,
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
            let _ = child.kill();
            let _ = child.wait();
        }
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
        let text = format!(
            "listen: \"127.0.0.1:{}\"\nhttp: \"127.0.0.1:{}\"\nlog_file: \"{}\"\n\
             jetstream {{\n  store_dir: \"{}\"\n}}\n{extra_config}\n",
            self.port,
            self.monitor_port,
            log.display(),
            store.display()
        );
        let mut file =
            std::fs::File::create(self.dir.path().join("nats.conf")).expect("nats config");
        file.write_all(text.as_bytes()).expect("write nats config");
    }

    /// Spawns the server and polls `/healthz` until it answers ok (JetStream included); the log
    /// as the error when it exits or the deadline passes.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let child = Command::new(&self.binary)
            .arg("-js")
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
