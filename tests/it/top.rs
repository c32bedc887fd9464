//! `sentrypeer top` in a real terminal: a private tmux server runs it at 160x50 against the real
//! sensor fed over UDP; the screen is read with `capture-pane` until it shows what was sent. A
//! hostile user agent must not retitle or clear the terminal; after `q` or Ctrl-C the process has
//! ended and the terminal is restored (alternate screen left, cursor shown, tty modes as before).
//! `TOP_PRINT_SCREEN=1 cargo test --test integration top::top_shows -- --nocapture` prints the
//! live screen (the README's capture).
//!
//! Never: a fixed sleep as a wait (every wait polls the screen against a deadline); leaves a tmux
//! server running (each test's server has its own socket and is killed on drop).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::require::require_tool;
use crate::support::{DEADLINE, Launch, free_port, run_command, udp_from};

/// The escape sequences a user agent tries: retitle the window, clear the screen.
const HOSTILE_USER_AGENT: &str = "evil\x1b]0;pwned\x07\x1b[2J";

/// A tmux server of our own (socket in a tempdir) with one 160x50 session; killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts `shell_command` (run by `sh -c`) in a new detached session of a new server whose
    /// socket is `dir/name`.
    fn start(dir: &Path, name: &str, shell_command: &str) -> Self {
        let tmux = Self {
            socket: dir.join(name),
        };
        let args = ["new-session", "-d", "-x", "160", "-y", "50", shell_command];
        let output = tmux.command(&args).output().expect("run tmux");
        assert!(
            output.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        tmux
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("tmux");
        command
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .env("TERM", "xterm-256color");
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let output = self.command(args).output().expect("run tmux");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p"])
    }

    fn display(&self, format: &str) -> String {
        self.run(&["display-message", "-p", format])
            .trim()
            .to_owned()
    }

    fn send(&self, keys: &str) {
        self.run(&["send-keys", keys]);
    }

    /// Polls the screen until `condition` holds; fails with the last screen after the deadline.
    fn wait_screen(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return screen;
            }
            assert!(
                !screen.contains("top-exited"),
                "top ended while waiting for {what}; screen:\n{screen}"
            );
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command(&["kill-server"]).output();
    }
}

/// The shell command of the pane: `top` with a clean environment (plus `env`), then a line with
/// its exit code and whether the tty modes are as before (raw mode off), then the pane stays.
fn top_command(home: &Path, api: &str, env: &str) -> String {
    let binary = env!("CARGO_BIN_EXE_sentrypeer");
    let home = home.display();
    format!(
        "before=$(stty -g); env -i HOME='{home}' TERM=\"$TERM\" {env} '{binary}' top --api {api}; \
         code=$?; if [ \"$before\" = \"$(stty -g)\" ]; then tty=same; else tty=changed; fi; \
         echo \"top-exited code=$code tty=$tty\"; exec cat"
    )
}

/// An INVITE to `number` with `user_agent`.
fn invite(tag: usize, number: &str, user_agent: &str) -> Vec<u8> {
    format!(
        "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-top{tag}\r\n\
         From: <sip:scanner@127.0.0.1>;tag=top{tag}\r\n\
         To: <sip:{number}@127.0.0.1>\r\n\
         Call-ID: top{tag}@it\r\n\
         CSeq: 1 INVITE\r\n\
         User-Agent: {user_agent}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// `sentrypeer-loadgen` (built beside `sentrypeer` by `cargo test --workspace`) sending INVITEs
/// to one called number from 127.0.0.23 at 50/s for at most a minute; killed on drop.
struct Loadgen(std::process::Child);

impl Loadgen {
    fn start(target: SocketAddr) -> Option<Self> {
        let binary = crate::support::loadgen_binary()?;
        let child = Command::new(binary)
            .args([
                "udp",
                "--target",
                &target.to_string(),
                "--sources",
                "127.0.0.23/32",
            ])
            .args(["--source-sockets", "1", "--rate", "50", "--duration", "60"])
            .args(["--mix", "invite", "--numbers", "1", "--seed", "7"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn sentrypeer-loadgen");
        Some(Self(child))
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The loadgen's one called number, as the API lists it (waits for its first INVITE).
fn loadgen_number(node: &crate::support::Node) -> String {
    let mut number = String::new();
    crate::support::wait_until("the loadgen's number in /numbers", DEADLINE, || {
        let (_, body) = node.get("/numbers?format=text");
        number = body
            .lines()
            .find(|n| *n != "2125550199")
            .unwrap_or_default()
            .to_owned();
        !number.is_empty()
    });
    number
}

/// The number pane's first row (the lists are the three `│`-bordered panes after their titles).
fn first_number_row(screen: &str) -> String {
    let mut lines = screen
        .lines()
        .skip_while(|l| !l.contains("Called numbers ("));
    let row = lines.nth(1).unwrap_or_default();
    row.split('│').nth(3).unwrap_or_default().trim().to_owned()
}

/// Bars in the bottom row of the events/s sparkline (one per poll with events).
fn sparkline_bars(screen: &str) -> usize {
    let lines: Vec<&str> = screen.lines().collect();
    let Some(top) = lines.iter().position(|l| l.starts_with("┌Events/s")) else {
        return 0;
    };
    let bottom = lines
        .iter()
        .skip(top)
        .position(|l| l.starts_with('└'))
        .map_or(0, |offset| top + offset);
    let row = lines
        .get(bottom.saturating_sub(1))
        .copied()
        .unwrap_or_default();
    let inside = row.split('│').nth(1).unwrap_or_default();
    inside.chars().filter(|c| "▁▂▃▄▅▆▇█".contains(*c)).count()
}

/// The events rate `top` shows as "now N/s".
fn rate_now(screen: &str) -> f64 {
    screen
        .split("now ")
        .nth(1)
        .and_then(|rest| rest.split("/s").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits for the pane's shell to report that `top` ended with `code`, then checks the terminal
/// is restored; returns the screen.
fn assert_ended_and_restored(tmux: &Tmux, code: i32) -> String {
    let screen = tmux.wait_screen("top to exit", |s| s.contains("top-exited"));
    assert!(
        screen.contains(&format!("top-exited code={code} tty=same")),
        "exit code or tty modes: {screen}"
    );
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "alternate screen left"
    );
    assert_eq!(tmux.display("#{cursor_flag}"), "1", "cursor shown");
    screen
}

#[test]
fn top_shows_live_sensor_and_restores_terminal() {
    if require_tool("tmux").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Launch::new(dir.path()).start();
    let hostile = udp_from([127, 0, 0, 24]);
    for tag in 0..3 {
        let request = invite(1_000 + tag, "2125550199", HOSTILE_USER_AGENT);
        hostile.send_to(&request, node.sip).expect("send");
    }
    let Some(loadgen) = Loadgen::start(node.sip) else {
        return;
    };
    let number = loadgen_number(&node);
    let api = format!("http://{}", node.api);
    let tmux = Tmux::start(dir.path(), "live.sock", &top_command(dir.path(), &api, ""));
    let title_before = tmux.display("#{pane_title}");
    let screen = tmux.wait_screen("source IP, rate, top number and user agents", |s| {
        s.contains("127.0.0.23")
            && rate_now(s) > 0.0
            && sparkline_bars(s) >= 3
            && first_number_row(s).ends_with(number.as_str())
            && s.contains("friendly-scanner")
            && s.contains("]0;pwned")
    });
    drop(loadgen);
    // The hostile user agent is shown as text, its escapes neutralised.
    assert!(
        screen.contains("evil\u{FFFD}]0;pwned\u{FFFD}\u{FFFD}[2J"),
        "{screen}"
    );
    assert_ne!(tmux.display("#{pane_title}"), "pwned", "retitled");
    assert_eq!(tmux.display("#{pane_title}"), title_before);
    // `\x1b[2J` did not clear the screen: every pane is still drawn.
    for pane in [
        "Events/s",
        "Received / stored / dropped",
        "Writer",
        "Backlogs",
        "Source IPs",
    ] {
        assert!(
            screen.contains(pane),
            "{pane} missing after the hostile agent:\n{screen}"
        );
    }
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "1",
        "top runs on the alternate screen"
    );
    if std::env::var_os("TOP_PRINT_SCREEN").is_some() {
        println!("{screen}");
    }
    // `p` pauses, tab moves the focus to the next list.
    tmux.send("p");
    tmux.wait_screen("paused", |s| s.contains("PAUSED (p resumes)"));
    tmux.send("Tab");
    tmux.wait_screen("focus on the numbers", |s| s.contains("▶ Called numbers"));
    tmux.send("q");
    assert_ended_and_restored(&tmux, 0);
}

#[test]
fn top_reports_unreachable_api_and_wrong_token() {
    if require_tool("tmux").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens on this port: the message, retried; `q` still quits.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let tmux = Tmux::start(
        dir.path(),
        "nowhere.sock",
        &top_command(dir.path(), &nowhere, ""),
    );
    tmux.wait_screen("the unreachable message, retried", |s| {
        s.contains("Cannot reach the API") && s.contains("failed 2x")
    });
    tmux.send("q");
    assert_ended_and_restored(&tmux, 0);
    drop(tmux);

    // A sensor with a token, asked with a wrong one: 401 shown; Ctrl-C (a key in raw mode) quits.
    let node = Launch::new(dir.path())
        .arg(&["--api-token", "right-token"])
        .start();
    let api = format!("http://{}", node.api);
    let wrong = "SENTRYPEER_API_TOKEN=wrong-token";
    let tmux = Tmux::start(
        dir.path(),
        "wrong.sock",
        &top_command(dir.path(), &api, wrong),
    );
    tmux.wait_screen("the 401 message", |s| s.contains("401 Unauthorized"));
    tmux.send("C-c");
    assert_ended_and_restored(&tmux, 0);
    drop(tmux);

    // The right token from the environment connects; SIGTERM ends `top` and restores too.
    let right = "SENTRYPEER_API_TOKEN=right-token";
    let tmux = Tmux::start(
        dir.path(),
        "right.sock",
        &top_command(dir.path(), &api, right),
    );
    tmux.wait_screen("connected with the token", |s| s.contains("connected"));
    let shell = tmux.display("#{pane_pid}");
    let children = format!("/proc/{shell}/task/{shell}/children");
    let top: libc::pid_t = std::fs::read_to_string(&children)
        .expect("children of the pane's shell")
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("the pid of top");
    // SAFETY: kill(2) on the `top` process this test started; no memory is involved.
    assert_eq!(unsafe { libc::kill(top, libc::SIGTERM) }, 0);
    assert_ended_and_restored(&tmux, 0);
}

#[test]
fn top_panic_restores_terminal_before_the_message() {
    if require_tool("tmux").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = format!(
        "http://127.0.0.1:{} --danger-panic-after-first-draw",
        free_port()
    );
    let tmux = Tmux::start(
        dir.path(),
        "panic.sock",
        &top_command(dir.path(), &nowhere, "RUST_BACKTRACE=0"),
    );
    // The panic exits with 101; the hook restored the terminal first, so the message is on the
    // normal screen, readable after the alternate screen is gone.
    let screen = assert_ended_and_restored(&tmux, 101);
    assert!(
        screen.contains("test hook: --danger-panic-after-first-draw"),
        "{screen}"
    );
}

#[test]
fn top_refuses_output_that_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let (status, stdout, stderr) = run_command(dir.path(), &["top", "--api", &nowhere]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stdout.is_empty(),
        "no escape sequences into a pipe: {stdout:?}"
    );
    assert!(stderr.contains("must be a terminal"), "{stderr}");
}
