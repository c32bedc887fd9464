//! Real scanners and SIP tools against the sensor: sipsak (OPTIONS) and sipvicious' svmap, found
//! on `PATH` (missing: `SKIP`, or a failure under `CI=true`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sentrypeer::event::Transport;

use crate::engine::{DEADLINE, Engine, start};
use crate::support::require::require_tool;

/// Waits for the child to exit (killing it at the deadline) and returns its exit code.
pub(crate) fn wait_exit(mut child: Child, deadline: Duration) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sipsak(sipsak: &Path, port: u16) -> Command {
    let mut command = Command::new(sipsak);
    command
        .arg("-s")
        .arg(format!("sip:100@127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn clients_sipsak_options_is_an_event(engine: Engine) {
    let Some(tool) = require_tool("sipsak") else {
        return;
    };
    let harness = start(engine, |_| {});
    let child = sipsak(&tool, harness.udp().port()).spawn().unwrap();
    let event = harness.next_event();
    assert_eq!(event.method(), b"OPTIONS");
    assert_eq!(event.transport, Transport::Udp);
    assert_eq!(event.called_number(), Some(&b"100"[..]));
    assert!(
        event.user_agent_text().contains("sipsak"),
        "{}",
        event.user_agent_text()
    );
    // Silent mode: sipsak never gets an answer, so it does not succeed.
    assert_ne!(wait_exit(child, Duration::from_secs(2)), Some(0));
}

fn clients_sipsak_gets_200_ok_when_responsive(engine: Engine) {
    let Some(tool) = require_tool("sipsak") else {
        return;
    };
    let harness = start(engine, |c| c.responsive = true);
    let child = sipsak(&tool, harness.udp().port()).spawn().unwrap();
    assert_eq!(wait_exit(child, DEADLINE), Some(0), "sipsak saw no 200 OK");
    assert_eq!(harness.next_event().method(), b"OPTIONS");
    harness.wait_totals("one reply", |t| t.replies_sent >= 1);
}

fn clients_svmap_scan_is_an_event(engine: Engine) {
    let Some(svmap) = require_tool("svmap") else {
        return;
    };
    let harness = start(engine, |c| c.responsive = true);
    let output_path = harness.dir.path().join("svmap.txt");
    let child = Command::new(svmap)
        .args(["127.0.0.1", "-p", &harness.udp().port().to_string()])
        .stdout(std::fs::File::create(&output_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let event = harness.next_event();
    assert_eq!(event.method(), b"OPTIONS");
    assert_eq!(event.user_agent(), Some(&b"friendly-scanner"[..]));
    assert_eq!(wait_exit(child, DEADLINE), Some(0));
    // svmap lists the device it found by our Server header.
    let output = std::fs::read_to_string(&output_path).unwrap();
    assert!(output.contains("FPBX-16.0.33"), "{output}");
}

both_engines!(
    clients_sipsak_options_is_an_event,
    clients_sipsak_gets_200_ok_when_responsive,
    clients_svmap_scan_is_an_event,
);
