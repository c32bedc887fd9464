//! Operations: the files in `contrib/` checked by the tools that will read them, against the real
//! binary's output where there is one.
//!
//! - fail2ban: the shipped filter, run by `fail2ban-regex`, finds the right host in every syslog
//!   line the writer sends (and not an address planted in the User-Agent); `fail2ban-client -t`
//!   loads the shipped jail with it (UDP banned too);
//! - systemd: `systemd-analyze verify` accepts the units without a single warning;
//! - nftables: `nft -c` accepts the shipped table, and the table followed by what the API's
//!   `?format=nftables` answers the update service's query (the real binary on a filled store);
//!   the update service's own command lines run (curl, then `nft -c` for `nft`);
//! - logrotate: `logrotate -d` accepts the shipped file, and a forced rotation with its
//!   postrotate signal makes the running binary reopen its JSON log;
//! - the Dockerfile: base images, non-root user, exposed ports;
//! - the docs: the config file example loads, the JSON log field table matches the JSON log.
//!
//! The tools are found on `PATH`; one that is missing, or an `nft -c` without CAP_NET_ADMIN,
//! skips the check with a `SKIP` line, and fails it under `CI=true` (`support::require`). CI
//! installs them all (fail2ban, systemd, nftables, logrotate, curl: see `.ci/run`).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sentrypeer::config::{OutputConfig, StoreConfig};
use sentrypeer::event::timestamp::now_ns;
use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
use sentrypeer::store::{Store, WriterOptions, spawn_writer, spawn_writer_with};
use uuid::Uuid;

use crate::support::require::{require, require_tool};

const DEADLINE: Duration = Duration::from_secs(20);

/// The repository's `contrib/` directory.
fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn store_config(dir: &Path) -> StoreConfig {
    crate::support::store_config(dir, 64)
}

fn syslog_outputs(on: bool) -> OutputConfig {
    OutputConfig {
        json_log_file: None,
        syslog: on,
        syslog_socket: sentrypeer::config::defaults::SYSLOG_SOCKET.into(),
        verified_only: false,
    }
}

/// An OPTIONS event from `source` with `user_agent`.
fn event(source: &str, user_agent: Option<&str>, index: u32) -> Event {
    let source: SocketAddr = source.parse().expect("test address");
    let message = format!(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nCall-ID: ops-{index}\r\nCSeq: 1 OPTIONS\r\n\r\n"
    );
    Event::new(&EventParts {
        timestamp_ns: now_ns(),
        uuid: Uuid::new_v4(),
        node_id: Uuid::from_u128(7),
        transport: Transport::Udp,
        collected_method: CollectedMethod::Passive,
        source,
        destination: "127.0.0.1:5060".parse().expect("test address"),
        method: b"OPTIONS",
        called_number: Some(b"100"),
        user_agent: user_agent.map(str::as_bytes),
        message: message.as_bytes(),
        source_verified: false,
        auth_username: None,
    })
}

/// The running binary, killed if a test fails while it runs.
struct Running {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sentrypeer"));
        command
            .args(args)
            .env_clear()
            .env("HOME", dir)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        let mut child = command.spawn().expect("start sentrypeer");
        let pipe = child.stderr.take().expect("stderr piped");
        let (lines, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, stderr }
    }

    /// Waits for a stderr line containing `needle`; returns it.
    fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stderr line with {needle:?} in time"),
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- fail2ban ----------------------------------------------------------------------------------

/// A syslog datagram (`<13>Mmm dd hh:mm:ss sentrypeer[pid]: msg`) as rsyslog writes it to a
/// file in its traditional format: no priority, the host name after the time stamp.
fn as_file_line(datagram: &str) -> String {
    let rest = datagram
        .strip_prefix("<13>")
        .unwrap_or_else(|| panic!("not priority user.notice: {datagram:?}"));
    let stamp_len = "Nov 28 11:00:00".len();
    let (stamp, tail) = rest.split_at(stamp_len);
    assert!(tail.starts_with(" sentrypeer["), "{datagram:?}");
    format!("{stamp} sensorhost{tail}")
}

/// Runs `fail2ban-regex` with the shipped filter over `lines`; returns the host found in each
/// matched line, in order, and the summary line.
fn fail2ban_hosts(fail2ban_regex: &Path, lines: &[String]) -> (Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    // The filter includes common.conf from its own directory, as in /etc/fail2ban/filter.d.
    let filters = dir.path().join("filter.d");
    std::fs::create_dir(&filters).unwrap();
    let common = ["/etc/fail2ban/filter.d/common.conf"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file())
        .expect("fail2ban is installed but /etc/fail2ban/filter.d/common.conf is missing");
    std::fs::copy(&common, filters.join("common.conf")).unwrap();
    let filter = filters.join("sentrypeer.conf");
    std::fs::copy(contrib("fail2ban/filter.d/sentrypeer.conf"), &filter).unwrap();
    let log = dir.path().join("user.log");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let hosts = run(Command::new(fail2ban_regex)
        .arg("-o")
        .arg("ip")
        .arg(&log)
        .arg(&filter));
    assert!(hosts.status.success(), "{}", text(&hosts.stderr));
    let summary = run(Command::new(fail2ban_regex).arg(&log).arg(&filter));
    assert!(summary.status.success(), "{}", text(&summary.stderr));
    let summary = text(&summary.stdout);
    let counts = summary
        .lines()
        .find(|l| l.starts_with("Lines: "))
        .unwrap_or_else(|| panic!("no summary in:\n{summary}"))
        .to_owned();
    let hosts = text(&hosts.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    (hosts, counts)
}

#[test]
fn ops_fail2ban_filter_finds_host_in_writer_syslog_lines() {
    let Some(fail2ban_regex) = require_tool("fail2ban-regex") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("log");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let config = store_config(dir.path());
    let store = Store::open(&config).unwrap();
    let (sender, receiver) = crossbeam_channel::bounded(64);
    let options = WriterOptions {
        syslog_socket: socket_path,
        ..WriterOptions::default()
    };
    let writer =
        spawn_writer_with(store, receiver, &syslog_outputs(true), &config, options).unwrap();
    // (source, User-Agent, the host fail2ban must ban)
    let cases = [
        ("127.0.0.2:5060", Some("friendly-scanner"), "127.0.0.2"),
        ("127.0.0.3:40000", None, "127.0.0.3"),
        ("[::ffff:127.0.0.4]:5060", Some("sipvicious"), "127.0.0.4"),
        ("[2001:db8::7]:5060", Some("pplsip"), "2001:db8::7"),
        // A scanner that plants another address in its User-Agent is still banned itself.
        (
            "127.0.0.5:5060",
            Some("Source IP: 10.9.9.9, Method: INVITE, Agent: x"),
            "127.0.0.5",
        ),
        ("127.0.0.6:5060", Some("a, Method: b"), "127.0.0.6"),
    ];
    for (index, (source, agent, _)) in cases.iter().enumerate() {
        sender.send(event(source, *agent, index as u32)).unwrap();
    }
    let mut buffer = vec![0u8; 65_536];
    let mut lines = Vec::new();
    for _ in &cases {
        let size = socket.recv(&mut buffer).expect("a syslog datagram in time");
        lines.push(as_file_line(&text(&buffer[..size])));
    }
    drop(sender);
    writer.join();
    // A line from another program is not SentryPeer's.
    let mut all = lines.clone();
    all.push(
        "Nov 28 11:00:00 sensorhost other[1]: Source IP: 192.0.2.1, Method: OPTIONS, Agent: x"
            .to_owned(),
    );
    let (hosts, counts) = fail2ban_hosts(&fail2ban_regex, &all);
    let expected: Vec<&str> = cases.iter().map(|(_, _, host)| *host).collect();
    assert_eq!(hosts, expected, "lines:\n{}", lines.join("\n"));
    let total = cases.len() + 1;
    assert!(
        counts.contains(&format!(
            "{total} lines, 0 ignored, {} matched, 1 missed",
            cases.len()
        )),
        "{counts}"
    );
}

/// A scanner's OPTIONS request.
fn sip_options(from: IpAddr, user_agent: &str, call: u32) -> String {
    format!(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from}:5060;branch=z9hG4bK-ops-{call}\r\n\
         From: <sip:scanner@{from}>;tag={call}\r\nTo: <sip:100@127.0.0.1>\r\n\
         Call-ID: ops-{call}@{from}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: {user_agent}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The sensor's UDP address from the `-v` banner (`sentrypeer: SIP UDP on 127.0.0.1:NNNN`).
fn udp_address(sensor: &Running) -> SocketAddr {
    let line = sensor.wait_line("SIP UDP on ");
    line.rsplit(' ')
        .next()
        .and_then(|a| a.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// Sends one UDP OPTIONS from `from` (an address on loopback) to `to`.
fn send_options(from: IpAddr, to: SocketAddr, user_agent: &str, call: u32) {
    let socket = std::net::UdpSocket::bind(SocketAddr::new(from, 0)).expect("bind a source");
    socket
        .send_to(sip_options(from, user_agent, call).as_bytes(), to)
        .expect("send OPTIONS");
}

#[test]
fn ops_fail2ban_filter_bans_scanners_of_the_real_binary() {
    let Some(fail2ban_regex) = require_tool("fail2ban-regex") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("log");
    let syslog = UnixDatagram::bind(&socket_path).unwrap();
    syslog.set_read_timeout(Some(DEADLINE)).unwrap();
    let db = dir.path().join("sentrypeer.db");
    let sensor = Running::start(
        dir.path(),
        &[
            "-v",
            "-s",
            "--syslog-socket",
            socket_path.to_str().unwrap(),
            "-N",
            "--cores",
            "1",
            "--sip-listen",
            "127.0.0.1:0",
            "-f",
            db.to_str().unwrap(),
        ],
    );
    let target = udp_address(&sensor);
    let cases = [
        ("127.0.0.2", "friendly-scanner"),
        ("127.0.0.3", "sipvicious"),
        ("127.0.0.4", "Source IP: 10.9.9.9, Method: INVITE, Agent: x"),
        ("127.0.0.5", "pplsip"),
    ];
    let mut buffer = vec![0u8; 65_536];
    let mut lines = Vec::new();
    for (call, (source, agent)) in cases.iter().enumerate() {
        send_options(source.parse().unwrap(), target, agent, call as u32);
        let size = syslog.recv(&mut buffer).expect("a syslog datagram in time");
        let datagram = text(&buffer[..size]);
        assert!(
            datagram.contains(&format!(" sentrypeer[{}]: ", sensor.pid())),
            "{datagram}"
        );
        lines.push(as_file_line(&datagram));
    }
    drop(sensor);
    let (hosts, counts) = fail2ban_hosts(&fail2ban_regex, &lines);
    let expected: Vec<&str> = cases.iter().map(|(source, _)| *source).collect();
    assert_eq!(hosts, expected, "lines:\n{}", lines.join("\n"));
    let n = cases.len();
    assert!(
        counts.contains(&format!("{n} lines, 0 ignored, {n} matched, 0 missed")),
        "{counts}"
    );
}

/// Copies `from` into `to` recursively (fail2ban's configuration tree).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn ops_fail2ban_jail_loads_with_filter() {
    let Some(client) = require_tool("fail2ban-client") else {
        return;
    };
    let system = Path::new("/etc/fail2ban");
    assert!(
        system.is_dir(),
        "fail2ban is installed but /etc/fail2ban is missing"
    );
    // The system configuration with only our jail enabled, reading a log in the tempdir.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("fail2ban");
    copy_tree(system, &conf);
    for entry in std::fs::read_dir(conf.join("jail.d")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    std::fs::copy(
        contrib("fail2ban/jail.d/sentrypeer.conf"),
        conf.join("jail.d/sentrypeer.conf"),
    )
    .unwrap();
    std::fs::copy(
        contrib("fail2ban/filter.d/sentrypeer.conf"),
        conf.join("filter.d/sentrypeer.conf"),
    )
    .unwrap();
    let log = dir.path().join("user.log");
    std::fs::write(&log, "").unwrap();
    std::fs::write(
        conf.join("paths-overrides.local"),
        format!("[DEFAULT]\nsyslog_user = {}\n", log.display()),
    )
    .unwrap();
    let test = run(Command::new(&client).arg("-c").arg(&conf).arg("-t"));
    assert!(
        test.status.success(),
        "fail2ban-client -t:\n{}{}",
        text(&test.stdout),
        text(&test.stderr)
    );
    // The jail as fail2ban would start it: our filter, our log, UDP banned too.
    let dump = text(&run(Command::new(&client).arg("-c").arg(&conf).arg("-d")).stdout);
    for wanted in [
        "['add', 'sentrypeer',".to_owned(),
        "Source IP: <HOST>, Method: ".to_owned(),
        "['set', 'sentrypeer', 'maxretry', 1]".to_owned(),
        format!(
            "['set', 'sentrypeer', 'addlogpath', '{}', 'head']",
            log.display()
        ),
        "['protocol', 'tcp,udp']".to_owned(),
        "['start', 'sentrypeer']".to_owned(),
    ] {
        assert!(dump.contains(&wanted), "{wanted} not in:\n{dump}");
    }
}

// ---- systemd -----------------------------------------------------------------------------------

#[test]
fn ops_systemd_units_verify_cleanly() {
    let unit = read(&contrib("sentrypeer.service"));
    for wanted in [
        "ExecStart=/usr/bin/sentrypeer\n",
        "ExecReload=/bin/kill -HUP $MAINPID\n",
        "DynamicUser=yes\n",
        "StateDirectory=sentrypeer\n",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE\n",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
        "EnvironmentFile=-/etc/default/sentrypeer\n",
    ] {
        assert!(unit.contains(wanted), "sentrypeer.service lacks {wanted:?}");
    }
    // The env file names only real variables, and no boolean is set to a value that reads as
    // "off" (presence turns a feature on).
    let variables: Vec<String> = sentrypeer::config::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    for line in read(&contrib("sentrypeer.default")).lines() {
        let setting = line.trim_start_matches('#');
        let Some((name, value)) = setting.split_once('=') else {
            continue;
        };
        if !name.starts_with("SENTRYPEER_") {
            continue;
        }
        assert!(
            variables.iter().any(|v| v == name),
            "{name} is not a sentrypeer variable"
        );
        assert!(!["0", "false", "no", "off"].contains(&value), "{line}");
    }
    let Some(analyze) = require_tool("systemd-analyze") else {
        return;
    };
    // verify wants every ExecStart= program to exist: the unit gets the built binary's path; the
    // update service's programs must be where it names them.
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_sentrypeer");
    std::fs::write(
        dir.path().join("sentrypeer.service"),
        unit.replace("/usr/bin/sentrypeer", binary),
    )
    .unwrap();
    let update = read(&contrib("nftables/sentrypeer-nft-update.service"));
    for program in ["/usr/bin/curl", "/usr/sbin/nft", "/bin/kill"] {
        let why = format!("{program}, which the update service runs, is not installed");
        if !require(Path::new(program).is_file(), &why) {
            return;
        }
    }
    std::fs::write(dir.path().join("sentrypeer-nft-update.service"), update).unwrap();
    std::fs::copy(
        contrib("nftables/sentrypeer-nft-update.timer"),
        dir.path().join("sentrypeer-nft-update.timer"),
    )
    .unwrap();
    let output = run(Command::new(analyze)
        .current_dir(dir.path())
        .args(["verify", "--man=no"])
        .args([
            "sentrypeer.service",
            "sentrypeer-nft-update.service",
            "sentrypeer-nft-update.timer",
        ]));
    // verify exits 0 on unknown keys and bad values, only warning: any output is a failure.
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify:\n{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

/// The unit's `Environment=` lines and the shipped `/etc/default/sentrypeer` start the binary:
/// paths moved into a tempdir, listen addresses moved to loopback port 0.
#[test]
fn ops_unit_environment_starts_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("lib");
    let logs = dir.path().join("log");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    let relocate = |value: &str| {
        value
            .replace("/var/lib/sentrypeer", state.to_str().unwrap())
            .replace("/var/log/sentrypeer", logs.to_str().unwrap())
    };
    let unit = read(&contrib("sentrypeer.service"));
    let default = read(&contrib("sentrypeer.default"));
    // Environment= first, then the env file over it, as systemd does.
    let mut env: Vec<(String, String)> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .chain(default.lines().filter(|l| l.starts_with("SENTRYPEER_")))
        .filter_map(|l| l.split_once('='))
        .map(|(name, value)| (name.to_owned(), relocate(value)))
        .collect();
    assert!(env.len() >= 5, "{env:?}");
    let socket = dir.path().join("syslog");
    for (name, value) in [
        ("SENTRYPEER_SIP_LISTEN_ADDRESS", "127.0.0.1:0"),
        ("SENTRYPEER_TLS_LISTEN_ADDRESS", "127.0.0.1:0"),
        ("SENTRYPEER_API_LISTEN_ADDRESS", "127.0.0.1:0"),
        ("SENTRYPEER_CORES", "1"),
        ("SENTRYPEER_VERBOSE", "1"),
        ("SENTRYPEER_SYSLOG_SOCKET", socket.to_str().unwrap()),
    ] {
        env.push((name.to_owned(), value.to_owned()));
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_sentrypeer"));
    command
        .env_clear()
        .env("HOME", dir.path())
        .envs(env.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .current_dir(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let sensor = Running::spawn(command);
    sensor.wait_line("SIP TLS on 127.0.0.1:");
    sensor.wait_line("API on http://127.0.0.1:");
    let outputs = sensor.wait_line("outputs:");
    assert!(outputs.contains("json log"), "{outputs}");
    assert!(outputs.contains("syslog"), "{outputs}");
    // The database, the generated TLS pair and the JSON log are where the unit keeps them.
    wait_for("the JSON log in the logs directory", || {
        logs.join("sentrypeer_json.log").exists()
    });
    for file in ["sentrypeer.db", "cert.pem", "key.pem"] {
        assert!(
            state.join(file).exists(),
            "{file} not in the state directory"
        );
    }
}

// ---- nftables ----------------------------------------------------------------------------------

/// `nft -c -f` of `script`: `Err(message)` when rejected.
fn nft_check(nft: &Path, script: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("check.nft");
    std::fs::write(&path, script).unwrap();
    let output = run(Command::new(nft).arg("-c").arg("-f").arg(&path));
    if output.status.success() {
        Ok(())
    } else {
        Err(text(&output.stderr))
    }
}

/// The `nft` on `PATH` once it checks an empty table (`nft -c` needs CAP_NET_ADMIN for its
/// netlink cache); `None` after the require policy.
fn require_nft() -> Option<PathBuf> {
    let nft = require_tool("nft")?;
    let probe = nft_check(&nft, "table inet sentrypeer_probe {\n}\n");
    let why = match &probe {
        Ok(()) => String::new(),
        Err(stderr) => format!(
            "nft -c cannot check here (needs CAP_NET_ADMIN): {}",
            stderr.trim()
        ),
    };
    require(probe.is_ok(), &why).then_some(nft)
}

/// Runs the update service's `ExecStart=` command lines with `sh`, as systemd would (the lines
/// use only double quotes and `${VAR}`): against the API at `base`, the runtime directory in a
/// tempdir, the shipped table, and `nft -c` instead of `nft` (nothing is changed on the host).
fn run_update_service_commands(unit: &str, base: &str, curl: &Path, nft: &Path) {
    let runtime = tempfile::tempdir().unwrap();
    let query = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment=SENTRYPEER_NFT_QUERY="))
        .unwrap();
    let table = contrib("nftables/sentrypeer.nft");
    let joined = unit.replace("\\\n", " ");
    let commands: Vec<String> = joined
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .map(|command| {
            command
                .replace("${RUNTIME_DIRECTORY}", runtime.path().to_str().unwrap())
                .replace("${SENTRYPEER_API_URL}", base)
                .replace("${SENTRYPEER_API_TOKEN}", "")
                .replace("${SENTRYPEER_NFT_QUERY}", query)
                .replace("/usr/bin/curl", curl.to_str().unwrap())
                .replace("/usr/sbin/nft -f", &format!("{} -c -f", nft.display()))
                .replace("/etc/sentrypeer/sentrypeer.nft", table.to_str().unwrap())
        })
        .collect();
    assert_eq!(commands.len(), 3, "{commands:?}");
    for command in &commands {
        assert!(!command.contains('$'), "unsubstituted variable: {command}");
        let output = run(Command::new("sh").arg("-c").arg(command));
        assert!(
            output.status.success(),
            "{command}:\n{}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
    }
    let fetched = read(&runtime.path().join("bad-actors.nft"));
    assert!(
        fetched.contains("add element inet sentrypeer bad_actors_v4"),
        "{fetched}"
    );
}

#[test]
fn ops_nftables_table_accepts_api_output() {
    let table = read(&contrib("nftables/sentrypeer.nft"));
    let update = read(&contrib("nftables/sentrypeer-nft-update.service"));
    let query = update
        .lines()
        .find_map(|l| l.strip_prefix("Environment=SENTRYPEER_NFT_QUERY="))
        .expect("the update service sets SENTRYPEER_NFT_QUERY");
    // A store with IPv4 and IPv6 bad actors, filled by the writer.
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let sources = ["192.0.2.1:5060", "192.0.2.2:5060", "[2001:db8::1]:5060"];
    {
        let store = Store::open(&config).unwrap();
        let (sender, receiver) = crossbeam_channel::bounded(16);
        let writer = spawn_writer(store, receiver, &syslog_outputs(false), &config).unwrap();
        for (index, source) in sources.iter().enumerate() {
            sender.send(event(source, None, index as u32)).unwrap();
        }
        drop(sender);
        writer.join();
    }
    // The real binary's API, as the update service asks it (an empty bearer token included).
    let db = config.db_file.to_str().unwrap();
    let sensor = Running::start(
        dir.path(),
        &["-R", "-a", "-v", "--api-listen", "127.0.0.1:0", "-f", db],
    );
    let line = sensor.wait_line("API on http://");
    let base = line
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut response = ureq::get(format!("{base}/ip-addresses?{query}"))
        .header("Authorization", "Bearer ")
        .call()
        .expect("the API answers the update service's query");
    let script = response.body_mut().read_to_string().unwrap();
    for source in sources {
        let ip: IpAddr = source.parse::<SocketAddr>().unwrap().ip();
        assert!(
            script.contains(&format!("\t{ip}")),
            "{ip} missing:\n{script}"
        );
    }
    assert!(script.contains("table inet sentrypeer {"), "{script}");
    let Some(curl) = require_tool("curl") else {
        return;
    };
    let Some(nft) = require_nft() else {
        return;
    };
    run_update_service_commands(&update, &base, &curl, &nft);
    drop(sensor);
    nft_check(&nft, &table)
        .unwrap_or_else(|e| panic!("nft rejected contrib/nftables/sentrypeer.nft:\n{e}"));
    // What the update service loads: the table, then the API's script; and again (idempotent).
    let combined = format!("{table}\n{script}\n{table}\n{script}");
    nft_check(&nft, &combined)
        .unwrap_or_else(|e| panic!("nft rejected the table + API output:\n{e}"));
    // The check can fail: a set declared with other flags than the API's is rejected.
    let conflicting = table.replacen("type ipv4_addr", "type ipv4_addr; flags interval", 1);
    assert!(
        nft_check(&nft, &format!("{conflicting}\n{script}")).is_err(),
        "nft accepted conflicting set declarations"
    );
}

// ---- logrotate ---------------------------------------------------------------------------------

/// The shipped logrotate file for `log`, its postrotate signalling the process `pid`.
fn logrotate_config_for(shipped: &str, log: &Path, pid: u32) -> String {
    let postrotate = format!("\t\tkill -HUP {pid}\n");
    shipped
        .replace(
            "/var/log/sentrypeer/sentrypeer_json.log",
            log.to_str().unwrap(),
        )
        .lines()
        .map(|line| {
            if line.contains("--signal=HUP") {
                postrotate.clone()
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

#[test]
fn ops_logrotate_config_rotates_and_binary_reopens() {
    let Some(logrotate) = require_tool("logrotate") else {
        return;
    };
    let shipped = read(&contrib("logrotate/sentrypeer"));
    assert!(shipped.contains("--signal=HUP"), "postrotate sends SIGHUP");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let debug = run(Command::new(&logrotate)
        .arg("-d")
        .arg("-s")
        .arg(&state)
        .arg(contrib("logrotate/sentrypeer")));
    let report = text(&debug.stderr) + &text(&debug.stdout);
    assert!(debug.status.success(), "logrotate -d:\n{report}");
    assert!(!report.contains("error"), "logrotate -d:\n{report}");
    // The same file for a JSON log in the tempdir, its postrotate signalling the running binary.
    let log = dir.path().join("sentrypeer_json.log");
    let db = dir.path().join("sentrypeer.db");
    let sensor = Running::start(
        dir.path(),
        &[
            "-v",
            "-N",
            "--cores",
            "1",
            "--sip-listen",
            "127.0.0.1:0",
            "-l",
            log.to_str().unwrap(),
            "-f",
            db.to_str().unwrap(),
        ],
    );
    let target = udp_address(&sensor);
    let loopback: IpAddr = "127.0.0.2".parse().unwrap();
    send_options(loopback, target, "before-rotation", 1);
    wait_for("the first event in the JSON log", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("before-rotation"))
    });
    let config_path = dir.path().join("logrotate.conf");
    std::fs::write(
        &config_path,
        logrotate_config_for(&shipped, &log, sensor.pid()),
    )
    .unwrap();
    let forced = run(Command::new(&logrotate)
        .arg("-f")
        .arg("-s")
        .arg(&state)
        .arg(&config_path));
    assert!(
        forced.status.success(),
        "logrotate -f:\n{}",
        text(&forced.stderr)
    );
    // `delaycompress`: the first rotation is kept as is.
    let rotated = dir.path().join("sentrypeer_json.log.1");
    let old = read(&rotated);
    assert_eq!(old.lines().count(), 1, "{old}");
    assert!(old.contains("before-rotation"), "{old}");
    // SIGHUP makes the writer reopen the log by its name: it creates a new file (idle, it
    // wakes at least every 500 ms); the next event goes there, whole.
    wait_for("the JSON log to be reopened after SIGHUP", || log.exists());
    send_options(loopback, target, "after-rotation", 2);
    wait_for("the second event in the new JSON log", || {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.ends_with('\n') && t.contains("after-rotation"))
    });
    let new = read(&log);
    assert_eq!(new.lines().count(), 1, "{new}");
    assert!(!read(&rotated).contains("after-rotation"));
    drop(sensor);
}

// ---- Dockerfile --------------------------------------------------------------------------------

#[test]
fn ops_dockerfile_shape() {
    let dockerfile = read(&contrib("Dockerfile"));
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = instructions
        .iter()
        .copied()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        froms,
        [
            "FROM rust:1.95-bookworm AS builder",
            "FROM debian:bookworm-slim"
        ]
    );
    // The toolchain the repository pins is the builder's.
    assert!(
        read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rust-toolchain.toml"))
            .contains("\"1.95.0\"")
    );
    let last_from = instructions
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .unwrap();
    let runtime = &instructions[last_from..];
    let users: Vec<&str> = runtime
        .iter()
        .filter_map(|l| l.strip_prefix("USER "))
        .collect();
    assert_eq!(users.len(), 1, "one USER in the runtime stage");
    let user = users[0].split(':').next().unwrap();
    assert!(!["root", "0"].contains(&user), "runs as {user}");
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("COPY --from=builder ")),
        "the runtime stage copies the binary from the builder"
    );
    let exposed: Vec<&str> = runtime
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .collect();
    assert_eq!(
        exposed,
        ["5060/udp", "5060/tcp", "5061/tcp", "8082/tcp", "4222/tcp"]
    );
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("ENTRYPOINT [\"/usr/local/bin/sentrypeer\"")),
        "exec-form ENTRYPOINT (signals reach sentrypeer)"
    );
    assert!(
        dockerfile.contains("cargo build --release --locked"),
        "builds from Cargo.lock"
    );
}

// ---- docs ----------------------------------------------------------------------------------------

/// The config file example of docs/operations.md is accepted by the binary: `stats` gets past the
/// configuration and stops at the (missing) store.
#[test]
fn ops_docs_config_example_is_valid() {
    let doc = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"));
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let example = &doc[start..];
    let example = &example[..example.find("```").expect("the block ends")];
    assert!(example.contains("syslog = true"), "{example}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sentrypeer.toml");
    std::fs::write(&file, example).unwrap();
    let db = dir.path().join("none.db");
    let output = run(Command::new(env!("CARGO_BIN_EXE_sentrypeer"))
        .env_clear()
        .env("HOME", dir.path())
        .arg("-g")
        .arg(&file)
        .arg("-f")
        .arg(&db)
        .arg("stats"));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("no store at {}", db.display())),
        "{stderr}"
    );
    // The same file with a typo is refused, naming the key: the check above can fail.
    std::fs::write(&file, example.replace("retention_days", "retention_dayz")).unwrap();
    let output = run(Command::new(env!("CARGO_BIN_EXE_sentrypeer"))
        .env_clear()
        .env("HOME", dir.path())
        .arg("-g")
        .arg(&file)
        .arg("stats"));
    assert!(text(&output.stderr).contains("retention_dayz"));
}

/// The T-Pot/Logstash table of docs/integrations.md names exactly the JSON log's keys, with the
/// right JSON types.
#[test]
fn ops_docs_json_log_table_matches_json_log() {
    let doc = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/integrations.md"));
    let table = &doc[doc.find("| key | type |").expect("the JSON log table")..];
    let rows: Vec<(String, String)> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect();
    let line = sentrypeer::event::json::to_json(&event("[2001:db8::7]:5062", Some("x"), 1));
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line.trim_end()).unwrap();
    assert_eq!(rows.len(), 17, "{rows:?}");
    assert_eq!(object.len(), 17, "{line}");
    for (key, kind) in &rows {
        let value = object
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not a JSON log key: {line}"));
        let documented_number = kind.starts_with("number");
        let documented_boolean = kind.starts_with("boolean");
        assert_eq!(value.is_number(), documented_number, "{key}: {kind}");
        assert_eq!(value.is_boolean(), documented_boolean, "{key}: {kind}");
        assert!(
            value.is_number() || value.is_string() || value.is_boolean(),
            "{key}"
        );
    }
}
