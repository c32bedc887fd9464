//! The live progress line of `sentrypeer-loadgen` in a real terminal (tmux): it appears and is
//! redrawn while a run goes on, and not one byte of it when stderr is a file or a pipe; `--json`
//! on stdout is the same with or without a terminal. Traffic goes to a plain UDP socket on
//! 127.0.0.1 only, bounded by `--count` (and `--duration` as a ceiling).

mod tmux;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tmux::Tmux;

const DEADLINE: Duration = Duration::from_secs(60);

/// The `tmux` executable on `PATH`. Missing: under `CI=true` the test fails, elsewhere it is
/// skipped with a `SKIP` line (the policy of the main crate's `tests/it/support/require.rs`).
fn require_tmux() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join("tmux"))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        let why = "`tmux` is not on PATH (.ci/run installs it)";
        let test = std::thread::current().name().unwrap_or("?").to_owned();
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: {why} (CI=true: what a test needs must be there)"
        );
        eprintln!("SKIP {test}: {why}");
    }
    found
}

/// `text` as one single-quoted `sh` word.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A `sentrypeer-loadgen udp ... --json` line at about 1000 messages/s for 2 s.
fn loadgen_line(port: u16) -> String {
    let binary = env!("CARGO_BIN_EXE_sentrypeer-loadgen");
    format!(
        "{} udp --target 127.0.0.1:{port} --count 2000 --rate 1000 --duration 30 --seed 7 \
         --source-sockets 1 --json",
        sh_quote(binary)
    )
}

/// The fields of a `--json` report that do not depend on timing.
fn stable_fields(json: &str) -> Value {
    assert_eq!(json.lines().count(), 1, "one JSON line: {json:?}");
    assert!(!json.contains('\x1b'), "no escape sequence: {json:?}");
    let value: Value = serde_json::from_str(json).expect("JSON report");
    let mut keys: Vec<&String> = value.as_object().expect("object").keys().collect();
    keys.sort();
    serde_json::json!({
        "keys": keys,
        "mode": value["mode"],
        "target": value["target"],
        "sent": value["sent"],
        "malformed": value["malformed"],
        "errors": value["errors"],
        "replies": value["replies"],
        "rate_requested": value["rate_requested"],
        "sockets": value["sockets"],
        "sources": value["sources"],
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Runs `command` in the terminal to its end; returns the final screen.
fn run_in_terminal(tmux: &Path, dir: &Path, command: &str) -> String {
    let session = Tmux::start(tmux, dir, command);
    assert_eq!(session.wait_exit(DEADLINE), 0, "{command}");
    session.screen()
}

#[test]
fn live_line_in_a_terminal_only() {
    let Some(tmux) = require_tmux() else {
        return;
    };
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    let port = receiver.local_addr().expect("local addr").port();
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let line = loadgen_line(port);

    // stderr the terminal (stdout to a file): the line appears with a rate and is redrawn.
    let session = Tmux::start(&tmux, dir, &format!("{line} > tty.json"));
    let live = |screen: &str| {
        screen
            .lines()
            .find(|row| row.contains(" of 2000, ") && row.contains("/s, errors 0, "))
            .map(str::to_owned)
    };
    let first = session.wait_screen("the live line", DEADLINE, |screen| {
        live(screen).is_some_and(|row| row.contains(" s left"))
    });
    let first = live(&first).unwrap_or_default();
    let redrawn = session.wait_screen("the live line to move on", DEADLINE, |screen| {
        live(screen).is_some_and(|row| row != first)
    });
    assert!(
        session.wait_exit(DEADLINE) == 0,
        "loadgen failed: {redrawn}"
    );
    let last = session.screen();
    assert!(
        last.contains("sent 2000 of 2000, "),
        "final state stays: {last}"
    );
    drop(session);

    // stderr a file, then a pipe (stdout still a file, the terminal still there): no progress.
    let screen = run_in_terminal(&tmux, dir, &format!("{line} > file.json 2> file.err"));
    assert!(live(&screen).is_none(), "{screen}");
    let screen = run_in_terminal(
        &tmux,
        dir,
        &format!("{line} 2>&1 > pipe.json | cat > pipe.err"),
    );
    assert!(live(&screen).is_none(), "{screen}");
    assert_eq!(read(&dir.join("file.err")), "", "stderr a file");
    assert_eq!(read(&dir.join("pipe.err")), "", "stderr a pipe");

    // Without any terminal: the same report.
    let output = Command::new(env!("CARGO_BIN_EXE_sentrypeer-loadgen"))
        .args(["udp", "--target", &format!("127.0.0.1:{port}")])
        .args(["--count", "2000", "--rate", "1000", "--duration", "30"])
        .args(["--seed", "7", "--source-sockets", "1", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run loadgen");
    assert!(output.status.success());
    assert!(output.stderr.is_empty(), "stderr a pipe: nothing");
    let plain = stable_fields(&String::from_utf8(output.stdout).expect("utf-8"));
    assert_eq!(plain["sent"], 2000);
    for name in ["tty.json", "file.json", "pipe.json"] {
        assert_eq!(stable_fields(&read(&dir.join(name))), plain, "{name}");
    }
}
