//! A command in a real terminal: a private tmux server (its own `-S` socket in the temp dir and
//! a config that sets `remain-on-exit on`), one 160x40 session running the command through
//! `sh -c`; the screen is read with `capture-pane`, waits poll it against a deadline. The shell
//! writes the command's exit status to a file, then holds the pane open (`exec cat`), so the
//! final screen stays as the command left it (tmux's `pane_dead_status` was seen missing for a
//! dead pane under load). Dropping it kills the server and removes its files. Shared by the
//! loadgen's and the main crate's progress tests (`#[path]`).
//!
//! Never: touches the user's tmux server, sleeps as a wait, outlives the test (kill-server on
//! drop).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Pause between two reads of the screen while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A private tmux server with one session.
pub(crate) struct Tmux {
    tmux: PathBuf,
    socket: PathBuf,
    config: PathBuf,
    status: PathBuf,
}

/// A name no other test or run uses: process id, a counter, the clock.
fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!(
        "sentrypeer-test-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Tmux {
    /// Starts `command` (a `sh -c` line) in `cwd` in a new 160x40 session of a private server.
    pub(crate) fn start(tmux: &Path, cwd: &Path, command: &str) -> Self {
        let name = unique_name();
        let config = std::env::temp_dir().join(format!("{name}.conf"));
        std::fs::write(&config, "set-option -g remain-on-exit on\n").expect("tmux config");
        let status = std::env::temp_dir().join(format!("{name}.status"));
        let line = format!(
            "( {command} ); echo $? > '{}'; exec cat > /dev/null",
            status.to_str().expect("utf-8 temp dir")
        );
        let session = Self {
            tmux: tmux.to_owned(),
            socket: std::env::temp_dir().join(format!("{name}.sock")),
            config,
            status,
        };
        let cwd = cwd.to_str().expect("utf-8 cwd");
        let output = session.run(&[
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "40",
            "-c",
            cwd,
            "sh",
            "-c",
            &line,
        ]);
        assert!(
            output.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        session
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.tmux)
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// The screen and its scrollback as text, one line per row (trailing blanks trimmed). The
    /// scrollback too: when a pane dies, tmux may scroll its last screen up.
    pub(crate) fn screen(&self) -> String {
        let output = self.run(&["capture-pane", "-p", "-S", "-"]);
        assert!(
            output.status.success(),
            "tmux capture-pane: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The command's exit status once it ended.
    pub(crate) fn exit_status(&self) -> Option<i32> {
        let text = std::fs::read_to_string(&self.status).ok()?;
        text.trim().parse().ok()
    }

    /// Polls the screen until `condition` holds on it; returns that screen. Fails the test with
    /// `what` and the last screen after `limit`.
    pub(crate) fn wait_screen(
        &self,
        what: &str,
        limit: Duration,
        mut condition: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until the command ended; returns its exit status.
    pub(crate) fn wait_exit(&self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            if Instant::now() >= deadline {
                let panes = self.run(&[
                    "list-panes",
                    "-a",
                    "-F",
                    "#{pane_pid} #{pane_current_command} dead=#{pane_dead}",
                ]);
                panic!(
                    "command did not end; pane: {}; screen:\n{}",
                    String::from_utf8_lossy(&panes.stdout).trim(),
                    self.screen()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.status);
    }
}
