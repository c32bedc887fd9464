//! The built `sentrypeer` binary: help, version, usage errors, flags and env vars, config-file
//! errors, secret redaction and shutdown on SIGINT/SIGTERM (compat.md §1).
//!
//! Every run has a clean environment with `HOME` in a tempdir (so a developer's own
//! `~/.config/sentrypeer` is never read) and a deadline.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

/// A fresh home directory to run in.
fn home() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn sentrypeer(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sentrypeer"));
    command
        .args(args)
        .env_clear()
        .env("HOME", home)
        .envs(env.iter().copied())
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Kills the child if a test fails while it runs.
struct Running {
    child: Child,
    stderr_lines: Receiver<String>,
    stderr_seen: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn wait_deadline(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "sentrypeer did not exit within {DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a command that is expected to exit by itself.
fn run(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut child = sentrypeer(home, args, env)
        .spawn()
        .expect("spawn sentrypeer");
    let stdout = read_all(child.stdout.take().expect("stdout"));
    let stderr = read_all(child.stderr.take().expect("stderr"));
    let status = wait_deadline(&mut child);
    Finished {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Starts the sensor with `-d` and waits until it has printed its configuration.
fn start(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut args = args.to_vec();
    args.push("-d");
    let mut child = sentrypeer(home, &args, env)
        .spawn()
        .expect("spawn sentrypeer");
    let stderr = child.stderr.take().expect("stderr");
    let (sender, stderr_lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut running = Running {
        child,
        stderr_lines,
        stderr_seen: String::new(),
    };
    // The configuration's pretty Debug ends with a `}` alone on its line.
    running.wait_for_line(|line| line == "}");
    running
}

impl Running {
    fn wait_for_line(&mut self, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push_str(&line);
                    self.stderr_seen.push('\n');
                    if done(&line) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no expected line within {DEADLINE:?}; stderr: {}",
                        self.stderr_seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "sentrypeer closed stderr early; stderr: {}",
                        self.stderr_seen
                    )
                }
            }
        }
    }

    /// Sends `signal` (e.g. `TERM`) and returns the exit status.
    fn stop_with(&mut self, signal: &str) -> ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {pid} failed");
        wait_deadline(&mut self.child)
    }

    /// The configuration printed by `-d`, after a clean SIGTERM stop.
    fn config_then_stop(mut self) -> String {
        let status = self.stop_with("TERM");
        assert_eq!(status.code(), Some(0), "stderr: {}", self.stderr_seen);
        std::mem::take(&mut self.stderr_seen)
    }
}

/// The `-d` output of a run with these arguments and environment.
fn debug_config(home: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    start(home, args, env).config_then_stop()
}

/// Asserts a start-up error: exit 1, nothing on stdout, one line on stderr starting so.
fn assert_startup_error(finished: &Finished, starts_with: &str) {
    assert_eq!(
        finished.status.code(),
        Some(1),
        "stderr: {}",
        finished.stderr
    );
    assert_eq!(finished.stdout, "");
    assert_eq!(
        finished.stderr.lines().count(),
        1,
        "stderr: {}",
        finished.stderr
    );
    assert!(finished.stderr.ends_with('\n'));
    assert!(
        finished.stderr.starts_with(starts_with),
        "stderr: {}",
        finished.stderr
    );
}

fn write_config(home: &Path, name: &str, text: &str) -> PathBuf {
    let path = home.join(name);
    std::fs::write(&path, text).expect("write config file");
    path
}

#[test]
fn cli_help() {
    let home = home();
    let env = [("SENTRYPEER_OAUTH2_CLIENT_SECRET", "help-s3cret")];
    let finished = run(home.path(), &["-h"], &env);
    assert_eq!(finished.status.code(), Some(0));
    assert_eq!(finished.stderr, "");
    let help = finished.stdout;
    assert_eq!(
        help.lines().next(),
        Some("Protect your SIP Servers from bad actors")
    );
    for short in "fjlpbicawrRNtkzgsvd".chars() {
        assert!(
            help.contains(&format!("  -{short}, --")),
            "-{short} missing from:\n{help}"
        );
    }
    let longs = [
        "--sip-listen <ADDR>",
        "--api-listen <ADDR>",
        "--p2p-listen <ADDR>",
        "--cores <N>",
        "--oauth2-token-url <URL>",
        "--oauth2-audience <AUD>",
    ];
    let env_vars = [
        "SENTRYPEER_DB_FILE",
        "SENTRYPEER_JSON_LOG",
        "SENTRYPEER_JSON_LOG_FILE",
        "SENTRYPEER_PEER_TO_PEER",
        "SENTRYPEER_BOOTSTRAP_NODE",
        "SENTRYPEER_OAUTH2_CLIENT_ID",
        "SENTRYPEER_OAUTH2_CLIENT_SECRET",
        "SENTRYPEER_API",
        "SENTRYPEER_WEBHOOK_URL",
        "SENTRYPEER_SIP_RESPONSIVE",
        "SENTRYPEER_SIP_DISABLE",
        "SENTRYPEER_TLS_DISABLE",
        "SENTRYPEER_CERT",
        "SENTRYPEER_KEY",
        "SENTRYPEER_TLS_LISTEN_ADDRESS",
        "SENTRYPEER_CONFIG_FILE",
        "SENTRYPEER_SYSLOG",
        "SENTRYPEER_VERBOSE",
        "SENTRYPEER_DEBUG",
        "SENTRYPEER_SIP_LISTEN_ADDRESS",
        "SENTRYPEER_API_LISTEN_ADDRESS",
        "SENTRYPEER_P2P_LISTEN_ADDRESS",
        "SENTRYPEER_CORES",
        "SENTRYPEER_OAUTH2_TOKEN_URL",
        "SENTRYPEER_OAUTH2_AUDIENCE",
    ];
    for needle in longs.iter().chain(&env_vars) {
        // Help wraps at 100 columns; compare without line breaks and indentation.
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(needle), "{needle} missing from:\n{help}");
    }
    assert!(
        !help.contains("help-s3cret"),
        "an env value leaked into help"
    );
    assert!(!help.contains("danger"), "hidden option shown");
}

#[test]
fn cli_version() {
    let finished = run(home().path(), &["-V"], &[]);
    assert_eq!(finished.status.code(), Some(0));
    assert_eq!(
        finished.stdout,
        format!("sentrypeer {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(finished.stderr, "");
}

#[test]
fn cli_unknown_option_is_usage_error() {
    for args in [&["--no-such-option"][..], &["-x"][..], &["-jx"][..]] {
        let finished = run(home().path(), args, &[]);
        assert_eq!(
            finished.status.code(),
            Some(2),
            "{args:?}: {}",
            finished.stderr
        );
        assert!(
            finished.stderr.contains("Usage"),
            "{args:?}: {}",
            finished.stderr
        );
        assert_eq!(finished.stdout, "");
    }
}

#[test]
fn cli_bundled_short_flags() {
    let home = home();
    let shown = debug_config(home.path(), &["-ras"], &[]);
    assert!(shown.contains("responsive: true"), "{shown}");
    assert!(shown.contains("syslog: true"), "{shown}");
    assert!(
        shown.contains("api: ApiConfig {\n        enabled: true"),
        "{shown}"
    );
    let shown = debug_config(home.path(), &["-jar"], &[]);
    assert!(shown.contains("json_log_file: Some("), "{shown}");
    assert!(shown.contains("responsive: true"), "{shown}");
}

#[test]
fn cli_boolean_env_vars_by_presence() {
    let home = home();
    let env = [
        ("SENTRYPEER_SYSLOG", "0"),
        ("SENTRYPEER_TLS_DISABLE", ""),
        ("SENTRYPEER_SIP_RESPONSIVE", "false"),
        ("SENTRYPEER_JSON_LOG", "no"),
        ("SENTRYPEER_NO_SYNC", "0"),
    ];
    let shown = debug_config(home.path(), &[], &env);
    assert!(shown.contains("syslog: true"), "{shown}");
    assert!(shown.contains("tls_listen: None"), "{shown}");
    assert!(shown.contains("engine: Portable"), "{shown}");
    assert!(shown.contains("responsive: true"), "{shown}");
    assert!(shown.contains("json_log_file: Some(\n            \"./sentrypeer_json.log\""));
    assert!(shown.contains("no_sync: true"), "{shown}");
    // SENTRYPEER_DEBUG alone is enough to print the configuration.
    let running = start(home.path(), &[], &[("SENTRYPEER_DEBUG", "0")]);
    assert!(running.config_then_stop().contains("debug: true"));
}

#[test]
fn cli_precedence_cli_over_env_over_file() {
    let home = home();
    let file = write_config(home.path(), "c.toml", "db_file = \"file.db\"\ncores = 1\n");
    let g = file.to_str().expect("utf-8 path");
    let env = [("SENTRYPEER_DB_FILE", "env.db")];
    let shown = debug_config(home.path(), &["-g", g, "-f", "cli.db"], &env);
    assert!(shown.contains("db_file: \"cli.db\""), "{shown}");
    assert!(shown.contains("cores: 1,"), "{shown}");
    let shown = debug_config(home.path(), &["-g", g], &env);
    assert!(shown.contains("db_file: \"env.db\""), "{shown}");
    let shown = debug_config(home.path(), &[], &[("SENTRYPEER_CONFIG_FILE", g)]);
    assert!(shown.contains("db_file: \"file.db\""), "{shown}");
}

#[test]
fn cli_default_config_file_in_home() {
    let home = home();
    let dir = home.path().join(".config/sentrypeer");
    std::fs::create_dir_all(&dir).expect("mkdir");
    write_config(&dir, "default-config.toml", "db_file = \"home.db\"\n");
    let shown = debug_config(home.path(), &[], &[]);
    assert!(shown.contains("db_file: \"home.db\""), "{shown}");
}

#[test]
fn cli_missing_config_file() {
    let home = home();
    let missing = home.path().join("missing.toml");
    let missing = missing.to_str().expect("utf-8 path");
    let finished = run(home.path(), &["-g", missing], &[]);
    assert_startup_error(
        &finished,
        &format!("sentrypeer: cannot read config file \"{missing}\": "),
    );
    let finished = run(home.path(), &[], &[("SENTRYPEER_CONFIG_FILE", missing)]);
    assert_startup_error(
        &finished,
        &format!("sentrypeer: cannot read config file \"{missing}\": "),
    );
}

#[test]
fn cli_invalid_config_file() {
    let home = home();
    let file = write_config(home.path(), "bad.toml", "api = yes\n");
    let path = file.to_str().expect("utf-8 path");
    let finished = run(home.path(), &["-g", path], &[]);
    assert_startup_error(
        &finished,
        &format!("sentrypeer: invalid config file \"{path}\": line 1"),
    );
}

#[test]
fn cli_unknown_config_key() {
    let home = home();
    let file = write_config(
        home.path(),
        "unknown.toml",
        "db_file = \"x.db\"\nlisten_port = 5060\n",
    );
    let path = file.to_str().expect("utf-8 path");
    let finished = run(home.path(), &["-g", path], &[]);
    assert_startup_error(
        &finished,
        &format!("sentrypeer: invalid config file \"{path}\": line 2"),
    );
    assert!(
        finished.stderr.contains("listen_port"),
        "{}",
        finished.stderr
    );
}

#[test]
fn cli_unparseable_address() {
    let home = home();
    let finished = run(home.path(), &["--sip-listen", "x"], &[]);
    assert_startup_error(
        &finished,
        "sentrypeer: invalid listen address \"x\" for sip_listen\n",
    );
    let env = [("SENTRYPEER_TLS_LISTEN_ADDRESS", "localhost")];
    let finished = run(home.path(), &[], &env);
    let expected = "sentrypeer: invalid listen address \"localhost\" for tls_listen_address\n";
    assert_startup_error(&finished, expected);
}

#[test]
fn cli_json_log_in_missing_directory() {
    let home = home();
    let log = home.path().join("no-such-dir").join("events.log");
    let log = log.to_str().expect("utf-8 path");
    let finished = run(home.path(), &["-l", log], &[]);
    assert_startup_error(
        &finished,
        &format!("sentrypeer: invalid json_log_file \"{log}\": "),
    );
    assert!(
        finished.stderr.contains("does not exist"),
        "{}",
        finished.stderr
    );
}

#[test]
fn cli_bad_number() {
    let finished = run(home().path(), &["--cores", "0"], &[]);
    assert_startup_error(&finished, "sentrypeer: cores 0 is out of range (1 to ");
    let finished = run(home().path(), &["--writer-batch", "65537"], &[]);
    assert_startup_error(
        &finished,
        "sentrypeer: writer_batch 65537 is out of range (1 to 65536)",
    );
}

#[test]
fn cli_bad_ignore_ip() {
    let finished = run(home().path(), &["--ignore-ip", "10.0.0.0/33"], &[]);
    assert_startup_error(
        &finished,
        "sentrypeer: invalid CIDR \"10.0.0.0/33\" for ignore_ip",
    );
    let env = [("SENTRYPEER_IGNORE_IP", "127.0.0.1,x")];
    let finished = run(home().path(), &[], &env);
    assert_startup_error(&finished, "sentrypeer: invalid CIDR \"x\" for ignore_ip");
}

#[test]
fn cli_sigterm_and_sigint_exit_zero() {
    let home = home();
    for signal in ["TERM", "INT"] {
        let mut running = start(home.path(), &[], &[]);
        let status = running.stop_with(signal);
        assert_eq!(
            status.code(),
            Some(0),
            "SIG{signal}; stderr: {}",
            running.stderr_seen
        );
    }
}

#[test]
fn cli_secrets_never_printed() {
    let home = home();
    let args = [
        "-w",
        "http://127.0.0.1:9/hook",
        "-i",
        "client-id",
        "-c",
        "cli-client-s3cret",
        "--api-token",
        "cli-api-t0ken",
    ];
    let shown = debug_config(home.path(), &args, &[]);
    assert!(shown.contains("client-id"), "{shown}");
    assert!(!shown.contains("cli-client-s3cret"), "{shown}");
    assert!(!shown.contains("cli-api-t0ken"), "{shown}");
    assert!(
        shown.contains("oauth2_client_secret: Some(\n                \"<redacted>\""),
        "{shown}"
    );
    let env = [
        ("SENTRYPEER_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
        ("SENTRYPEER_OAUTH2_CLIENT_ID", "client-id"),
        ("SENTRYPEER_OAUTH2_CLIENT_SECRET", "env-client-s3cret"),
        ("SENTRYPEER_API_TOKEN", "env-api-t0ken"),
    ];
    let shown = debug_config(home.path(), &[], &env);
    assert!(
        !shown.contains("env-client-s3cret") && !shown.contains("env-api-t0ken"),
        "{shown}"
    );
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[test]
fn cli_subcommands_parse() {
    let finished = run(home().path(), &["export", "--format", "xml"], &[]);
    assert_eq!(finished.status.code(), Some(2), "{}", finished.stderr);
    let finished = run(home().path(), &["export", "-h"], &[]);
    assert_eq!(finished.status.code(), Some(0));
    assert!(
        finished.stdout.contains("--format <FORMAT>"),
        "{}",
        finished.stdout
    );
}
