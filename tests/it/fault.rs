//! Faults under the real binary (issue 9): kill -9 mid-flood, a full disk, the JSON log rotated,
//! deleted or its directory gone, a missing syslog socket.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Instant;

use crate::support::require::{require, require_tool};
use crate::support::{
    DEADLINE, Launch, export, log_uuids, send_paced, stats_events, udp_from, wait_until,
};

/// kill -9 while a few thousand datagrams a second arrive, then a restart on the same store:
/// the store opens, every event in the JSON log is in the store, and the per-IP aggregates
/// equal a recount of the exported events.
#[test]
fn fault_kill9_during_udp_flood_keeps_log_within_store() {
    let _heavy = crate::support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let launch = Launch::new(dir.path());
    let node = launch.start();
    let target = node.sip;
    // 8 sources x 300/s for 2 s = 4,800 datagrams.
    let senders: Vec<_> = (0..8u8)
        .map(|i| {
            thread::spawn(move || {
                let socket = udp_from([127, 0, 0, 10 + i]);
                send_paced(&socket, target, &format!("kill9-{i}"), 600, 300, 0);
            })
        })
        .collect();
    // Kill mid-flood, once events are being committed.
    wait_until("events committed before the kill", DEADLINE, || {
        node.metric("sentrypeer_writer_events_committed_total") >= 600
    });
    node.kill9();
    for sender in senders {
        sender.join().expect("sender");
    }

    let logged = log_uuids(&launch.log);
    assert!(
        !logged.is_empty(),
        "nothing in the JSON log before the kill"
    );
    let node = launch.start();
    let stored = export(dir.path(), &launch.db);
    let stored_uuids: HashSet<&str> = stored.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(
        stored_uuids.len(),
        stored.len(),
        "duplicate UUIDs in the export"
    );
    let missing: Vec<_> = logged
        .iter()
        .filter(|u| !stored_uuids.contains(u.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} logged events are not in the store, e.g. {:?}",
        missing.len(),
        logged.len(),
        missing.first()
    );
    assert_eq!(stats_events(dir.path(), &launch.db), stored.len() as u64);
    let mut recount: HashMap<String, u64> = HashMap::new();
    for (_, ip) in &stored {
        *recount.entry(ip.clone()).or_default() += 1;
    }
    assert_eq!(
        node.ip_counts(),
        recount,
        "aggregates differ from a recount"
    );
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
}

/// kill -9 in a flood large enough that the dashboard's recent-event rings wait in memory
/// between writes (batches of over `DASHBOARD_RECENT_DEFER_BATCH_MIN` events), then a restart:
/// each source IP's detail view lists its newest stored events, newest first, as the export
/// has them (the events after the rings' last write are added back when the writer starts).
#[test]
fn fault_kill9_during_flood_keeps_dashboard_rings() {
    let _heavy = crate::support::heavy();
    let Some(loadgen) = crate::support::loadgen_binary() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // Small batches, so that several commit within one ring-write interval.
    let launch = Launch::new(dir.path()).arg(&["--writer-batch", "1100"]);
    let node = launch.start();
    let mut flood = Command::new(loadgen)
        .args(["udp", "--target", &node.sip.to_string()])
        .args(["--sources", "127.0.2.0/24", "--source-sockets", "8"])
        .args(["--rate", "40000", "--duration", "30", "--seed", "3"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sentrypeer-loadgen");
    // Kill right after a commit that left the rings waiting: batches went up since the last
    // look and ring writes did not.
    let mut last = (0, 0);
    wait_until("a commit that left the rings waiting", DEADLINE, || {
        let metrics = node.get("/metrics").1;
        let read = |name| crate::support::metric_value(&metrics, name).unwrap_or(0);
        let now = (
            read("sentrypeer_writer_batches_total"),
            read("sentrypeer_writer_dashboard_ring_flushes_total"),
        );
        let waiting = now.0 >= 5 && now.0 > last.0 && now.1 == last.1;
        last = now;
        waiting
    });
    node.kill9();
    let _ = flood.kill();
    let _ = flood.wait();

    let node = launch.start();
    // Export order is key order: each IP's newest 20, newest first.
    let mut newest: HashMap<String, Vec<String>> = HashMap::new();
    for (uuid, ip) in export(dir.path(), &launch.db).into_iter().rev() {
        let listed = newest.entry(ip).or_default();
        if listed.len() < sentrypeer::config::limits::DASHBOARD_RECENT_EVENTS_MAX {
            listed.push(uuid);
        }
    }
    assert!(
        newest.len() >= 2,
        "the flood came from {} IPs",
        newest.len()
    );
    let detail = |ip: &str| -> Vec<String> {
        let (status, body) = node.get(&format!("/dashboard/api/ip/{ip}"));
        assert_eq!(status, 200, "{ip}: {body}");
        let value: serde_json::Value = serde_json::from_str(&body).expect("detail JSON");
        value["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|event| event["event_uuid"].as_str().expect("event_uuid").to_owned())
            .collect()
    };
    // The writer adds the rings' tail back right after it starts.
    let deadline = Instant::now() + DEADLINE;
    while let Some((ip, uuids)) = newest.iter().find(|(ip, uuids)| detail(ip) != **uuids) {
        let listed = detail(ip);
        assert!(
            Instant::now() < deadline,
            "{ip}'s recent events: {listed:?}, the store's newest: {uuids:?}"
        );
        thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
}

/// Mounts a tmpfs of `size` at `dir` with `mount` from `PATH`; `None` after the require policy
/// when `mount` or `umount` is missing or mounting is not allowed (it needs CAP_SYS_ADMIN).
fn mount_tmpfs(dir: &Path, size: &str) -> Option<TmpfsGuard> {
    let mount = require_tool("mount")?;
    let umount = require_tool("umount")?;
    std::fs::create_dir_all(dir).expect("mount point");
    let output = Command::new(&mount)
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()
        .expect("run mount");
    let why = format!(
        "cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    require(output.status.success(), &why).then(|| TmpfsGuard {
        dir: dir.to_owned(),
        mount,
        umount,
    })
}

/// A mounted tmpfs; unmounted on drop (lazily, in case a process still holds files there).
struct TmpfsGuard {
    dir: PathBuf,
    mount: PathBuf,
    umount: PathBuf,
}

impl TmpfsGuard {
    fn resize(&self, size: &str) {
        let status = Command::new(&self.mount)
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {size}");
    }
}

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        let _ = Command::new(&self.umount).arg("-l").arg(&self.dir).status();
    }
}

/// The store and the JSON log on a 1 MiB tmpfs: when it fills, error lines (not a crash), the
/// sensor keeps capturing; when space returns, storing resumes and the store is intact.
#[test]
fn fault_disk_full_keeps_capturing_and_recovers() {
    let _heavy = crate::support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let small = dir.path().join("small");
    let Some(tmpfs) = mount_tmpfs(&small, "1m") else {
        return;
    };
    let mut launch = Launch::new(dir.path());
    launch.db = small.join("sentrypeer.db");
    launch.log = small.join("sentrypeer.json");
    let mut node = launch.start();
    let source = udp_from([127, 0, 0, 20]);
    // ~2.3 KiB events that compress badly: a few hundred fill 1 MiB.
    let mut sent = 0usize;
    let deadline = Instant::now() + DEADLINE;
    while node.metric("sentrypeer_writer_commit_errors_total") == 0 {
        assert!(
            Instant::now() < deadline,
            "no commit error after {sent} events; stderr: {}",
            node.stderr()
        );
        send_paced(
            &source,
            node.sip,
            &format!("full-{sent}"),
            250,
            2_500,
            2_000,
        );
        sent += 250;
    }
    // The counter moves just before the line is printed.
    wait_until("the commit error line", DEADLINE, || {
        node.stderr()
            .contains("sentrypeer: cannot commit events to")
    });
    node.assert_running();
    // Capture goes on while the disk is full.
    let seen = node.metric("sentrypeer_events_total");
    send_paced(&source, node.sip, "full-more", 200, 5_000, 100);
    wait_until("events captured while full", DEADLINE, || {
        node.metric("sentrypeer_events_total") >= seen + 200
    });
    node.assert_running();

    tmpfs.resize("64m");
    let committed = node.metric("sentrypeer_writer_events_committed_total");
    send_paced(&source, node.sip, "full-after", 100, 5_000, 100);
    wait_until("storing resumes", DEADLINE, || {
        node.metric("sentrypeer_writer_events_committed_total") >= committed + 100
    });
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
    let stored = export(dir.path(), &launch.db);
    assert_eq!(stats_events(dir.path(), &launch.db), stored.len() as u64);
    let logged = log_uuids(&launch.log);
    let stored: HashSet<String> = stored.into_iter().map(|(u, _)| u).collect();
    assert!(logged.iter().all(|u| stored.contains(u)), "log ⊄ store");
    assert!(stored.len() >= 100, "only {} events stored", stored.len());
}

/// Rotation: rename + SIGHUP gives a fresh file at the configured path; unlink + SIGHUP too;
/// with the directory removed, one error line and events are still stored.
#[test]
fn fault_json_log_rotated_deleted_and_dir_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("log dir");
    let mut launch = Launch::new(dir.path());
    launch.log = logs.join("sentrypeer.json");
    let node = launch.start();
    let source = udp_from([127, 0, 0, 21]);
    let lines = |path: &Path| log_uuids(path).len();

    send_paced(&source, node.sip, "rot-a", 5, 1_000, 0);
    wait_until("5 lines", DEADLINE, || lines(&launch.log) == 5);

    // Renamed then SIGHUP: new lines go to a fresh file at the configured path.
    let rotated = logs.join("sentrypeer.json.1");
    std::fs::rename(&launch.log, &rotated).expect("rename");
    node.signal(libc::SIGHUP);
    // The idle writer reopens within its wake interval: the fresh file appears.
    wait_until("fresh file after SIGHUP", DEADLINE, || launch.log.exists());
    send_paced(&source, node.sip, "rot-b", 5, 1_000, 0);
    wait_until("new lines in the fresh file", DEADLINE, || {
        lines(&launch.log) == 5
    });
    assert_eq!(lines(&rotated), 5);

    // Deleted then SIGHUP: recreated.
    std::fs::remove_file(&launch.log).expect("unlink");
    node.signal(libc::SIGHUP);
    wait_until("recreated after SIGHUP", DEADLINE, || launch.log.exists());
    send_paced(&source, node.sip, "rot-d", 5, 1_000, 0);
    wait_until("recreated after unlink", DEADLINE, || {
        lines(&launch.log) == 5
    });

    // Directory gone: an error line, capture and storing go on.
    std::fs::remove_dir_all(&logs).expect("remove log dir");
    node.signal(libc::SIGHUP);
    let committed = node.metric("sentrypeer_writer_events_committed_total");
    send_paced(&source, node.sip, "rot-e", 5, 1_000, 0);
    node.wait_committed(committed + 5);
    wait_until("error line for the missing directory", DEADLINE, || {
        node.stderr().contains("sentrypeer: cannot open JSON log")
    });
    send_paced(&source, node.sip, "rot-f", 5, 1_000, 0);
    node.wait_committed(committed + 10);
    assert!(node.metric("sentrypeer_writer_json_log_errors_total") >= 1);
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
    let errors = stderr.matches("cannot open JSON log").count();
    assert_eq!(errors, 1, "one error line per interval: {stderr}");
    assert!(!logs.exists(), "the log directory was recreated");
    assert_eq!(stats_events(dir.path(), &launch.db), 25);
}

/// `-s` with a syslog socket that does not exist (`--syslog-socket`): one error line, events
/// still stored and logged.
#[test]
fn fault_syslog_socket_missing_reports_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-dir").join("log");
    let launch = Launch::new(dir.path()).arg(&[
        "-s",
        "--syslog-socket",
        missing.to_str().expect("utf-8 path"),
    ]);
    let node = launch.start();
    let source = udp_from([127, 0, 0, 22]);
    for round in 0..3 {
        send_paced(&source, node.sip, &format!("syslog-{round}"), 5, 1_000, 0);
        node.wait_committed(5 * (round + 1));
    }
    assert!(node.metric("sentrypeer_writer_syslog_errors_total") >= 1);
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("cannot connect to syslog").count(),
        1,
        "{stderr}"
    );
    assert_eq!(log_uuids(&launch.log).len(), 15);
    assert_eq!(stats_events(dir.path(), &launch.db), 15);
}
