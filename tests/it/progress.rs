//! `sentrypeer export`'s progress bar in a real terminal (tmux): drawn on stderr when it is the
//! terminal (data to a file, by redirection or `--output`), with the events done of the store's
//! count; not one byte of it when stderr is a file or a pipe; the exported bytes the same in
//! every case as without any terminal.

#[path = "../../loadgen/tests/tmux/mod.rs"]
mod tmux;

use std::path::Path;
use std::process::{Command, Stdio};

use sentrypeer::config::OutputConfig;
use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
use sentrypeer::store::{Store, spawn_writer};
use tmux::Tmux;
use uuid::Uuid;

use crate::support::require::require_tool;
use crate::support::{DEADLINE, store_config};

/// Events in the exported store: enough for the bar to be drawn a few times while a debug
/// build exports (about 25,000/s here), few enough to fill in a few seconds.
const EVENTS: u32 = 40_000;

/// [`EVENTS`] as the bar writes it.
const EVENTS_TEXT: &str = "40,000";

fn event(index: u32) -> Event {
    let message = format!(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nCall-ID: progress-{index}\r\n\
         User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
    );
    Event::new(&EventParts {
        timestamp_ns: 1_700_000_000_000_000_000 + u64::from(index) * 1_000,
        uuid: Uuid::new_v4(),
        node_id: Uuid::from_u128(7),
        transport: Transport::Udp,
        collected_method: CollectedMethod::Passive,
        source: format!(
            "10.{}.{}.{}:5060",
            index >> 16,
            (index >> 8) & 0xff,
            index & 0xff
        )
        .parse()
        .expect("source"),
        destination: "127.0.0.1:5060".parse().expect("destination"),
        method: b"OPTIONS",
        called_number: Some(b"100"),
        user_agent: Some(b"friendly-scanner"),
        message: message.as_bytes(),
        source_verified: false,
        auth_username: None,
    })
}

/// A store in `dir` holding [`EVENTS`] events, written through the real writer.
fn fill_store(dir: &Path) -> std::path::PathBuf {
    let config = store_config(dir, 4096);
    let store = Store::open(&config).expect("open store");
    let outputs = OutputConfig {
        json_log_file: None,
        syslog: false,
        syslog_socket: sentrypeer::config::defaults::SYSLOG_SOCKET.into(),
        verified_only: false,
    };
    let (sender, receiver) = crossbeam_channel::bounded(4096);
    let writer = spawn_writer(store, receiver, &outputs, &config).expect("writer");
    for index in 0..EVENTS {
        sender.send(event(index)).expect("writer alive");
    }
    drop(sender);
    writer.join();
    config.db_file
}

/// `text` as one single-quoted `sh` word.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A row of the bar: `[###...] 12,288/40,000 events, 25,000/s, ETA 1s`.
fn bar_row(screen: &str) -> Option<&str> {
    screen
        .lines()
        .find(|row| row.starts_with('[') && row.contains(" events, ") && row.contains("/s, ETA"))
}

/// Runs `command` in a terminal to its end; returns the final screen.
fn run_in_terminal(tmux: &Path, dir: &Path, command: &str) -> String {
    let session = Tmux::start(tmux, dir, command);
    assert_eq!(session.wait_exit(DEADLINE), 0, "{command}");
    session.screen()
}

#[test]
fn progress_export_bar_in_a_terminal_only() {
    let Some(tmux) = require_tool("tmux") else {
        return;
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let db = fill_store(dir);
    let db = db.to_str().expect("utf-8 path");

    // Without a terminal: the reference bytes, and nothing on stderr.
    let output = Command::new(env!("CARGO_BIN_EXE_sentrypeer"))
        .args(["export", "--format", "jsonl", "-f", db])
        .current_dir(dir)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .output()
        .expect("run export");
    assert!(output.status.success(), "{output:?}");
    assert!(output.stderr.is_empty(), "stderr a pipe: nothing");
    let plain = output.stdout;
    assert_eq!(
        plain.iter().filter(|byte| **byte == b'\n').count(),
        EVENTS as usize
    );

    let export = format!(
        "HOME={} {} export --format jsonl -f {}",
        sh_quote(dir.to_str().expect("utf-8 dir")),
        sh_quote(env!("CARGO_BIN_EXE_sentrypeer")),
        sh_quote(db)
    );
    let done = format!("{EVENTS_TEXT}/{EVENTS_TEXT} events, ");
    // stderr the terminal, data redirected: the bar counts up to the store's count and stays.
    let session = Tmux::start(&tmux, dir, &format!("{export} > tty.jsonl"));
    session.wait_screen("the export bar", DEADLINE, |screen| {
        bar_row(screen).is_some_and(|row| row.contains(&format!("/{EVENTS_TEXT} events, ")))
    });
    assert_eq!(session.wait_exit(DEADLINE), 0, "export failed");
    let last = session.screen();
    assert!(
        bar_row(&last).is_some_and(|row| row.contains(&done)),
        "{last}"
    );
    drop(session);
    assert!(
        read(&dir.join("tty.jsonl")) == plain,
        "data unchanged, stderr a terminal"
    );

    // The data to --output, stdout and stderr the terminal: the bar too.
    let screen = run_in_terminal(&tmux, dir, &format!("{export} -o out.jsonl"));
    assert!(
        bar_row(&screen).is_some_and(|row| row.contains(&done)),
        "{screen}"
    );
    assert!(
        read(&dir.join("out.jsonl")) == plain,
        "data unchanged, --output"
    );

    // stderr a file, then a pipe (the terminal still there): no bar, not one byte.
    let screen = run_in_terminal(&tmux, dir, &format!("{export} > file.jsonl 2> file.err"));
    assert!(bar_row(&screen).is_none(), "{screen}");
    let screen = run_in_terminal(
        &tmux,
        dir,
        &format!("{export} 2>&1 > pipe.jsonl | cat > pipe.err"),
    );
    assert!(bar_row(&screen).is_none(), "{screen}");
    assert!(read(&dir.join("file.err")).is_empty(), "stderr a file");
    assert!(read(&dir.join("pipe.err")).is_empty(), "stderr a pipe");
    for name in ["file.jsonl", "pipe.jsonl"] {
        assert!(read(&dir.join(name)) == plain, "data unchanged: {name}");
    }
}
