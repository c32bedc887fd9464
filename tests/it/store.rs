//! The store and its writer, in-process: events go into a crossbeam channel as the shards would
//! send them; LMDB lives in a tempdir.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use sentrypeer::config::{ExportFormat, OutputConfig, StoreConfig};
use sentrypeer::event::json::to_json;
use sentrypeer::event::timestamp::now_ns;
use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport, display_ip};
use sentrypeer::store::{
    Store, StoreError, StoreOptions, WriterOptions, commands, spawn_writer, spawn_writer_with,
};
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(20);

fn store_config(dir: &Path) -> StoreConfig {
    crate::support::store_config(dir, 64)
}

fn outputs(json: Option<&Path>) -> OutputConfig {
    OutputConfig {
        json_log_file: json.map(Path::to_path_buf),
        syslog: false,
        syslog_socket: sentrypeer::config::defaults::SYSLOG_SOCKET.into(),
        verified_only: false,
    }
}

fn event_at(index: u32, timestamp_ns: u64) -> Event {
    let source: SocketAddr = if index % 5 == 4 {
        format!("[2001:db8::{:x}]:{}", index % 13, 5060 + index % 7)
            .parse()
            .unwrap()
    } else {
        format!("10.0.{}.{}:5060", index % 3, index % 17)
            .parse()
            .unwrap()
    };
    let called = format!("00441234{}", index % 11);
    let agent = format!("friendly-scanner-{}", index % 4);
    let message = format!(
        "OPTIONS sip:{called}@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-{index}\r\n\
         From: <sip:100@1.1.1.1>;tag={index:x}\r\nTo: <sip:{called}@1.1.1.1>\r\nCall-ID: {}\r\n\
         CSeq: 1 OPTIONS\r\nUser-Agent: {agent}\r\nContent-Length: 0\r\n\r\n",
        u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    );
    Event::new(&EventParts {
        timestamp_ns,
        uuid: Uuid::new_v4(),
        node_id: Uuid::from_u128(7),
        transport: [Transport::Udp, Transport::Tcp, Transport::Tls][index as usize % 3],
        collected_method: CollectedMethod::Passive,
        source,
        destination: "127.0.0.1:5060".parse().unwrap(),
        method: b"OPTIONS",
        called_number: (!index.is_multiple_of(6)).then_some(called.as_bytes()),
        user_agent: (!index.is_multiple_of(7)).then_some(agent.as_bytes()),
        message: message.as_bytes(),
        source_verified: false,
        auth_username: None,
    })
}

fn event(index: u32) -> Event {
    event_at(
        index,
        1_700_000_000_000_000_000 + u64::from(index) * 1_000_000,
    )
}

/// Runs a writer over `events` to completion.
fn write_all(store: &Store, config: &StoreConfig, json: Option<&Path>, events: &[Event]) {
    let (sender, receiver) = crossbeam_channel::bounded(1024);
    let writer = spawn_writer(store.clone(), receiver, &outputs(json), config).unwrap();
    for event in events {
        sender.send(event.clone()).unwrap();
    }
    drop(sender);
    writer.join();
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn all_events(store: &Store) -> Vec<(u64, Event)> {
    store.read().unwrap().events_after(0, usize::MAX).unwrap()
}

#[test]
fn store_events_land_in_store_log_and_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let json = dir.path().join("sentrypeer_json.log");
    let store = Store::open(&config).unwrap();
    let events: Vec<Event> = (0..1_500).map(event).collect();
    let (sender, receiver) = crossbeam_channel::bounded(4096);
    let writer = spawn_writer(store.clone(), receiver, &outputs(Some(&json)), &config).unwrap();
    let commits = writer.commits();
    for event in &events[..700] {
        sender.send(event.clone()).unwrap();
    }
    // Lines are written only after their commit: every logged UUID is already in the store.
    commits.wait_past(0, DEADLINE);
    let logged = std::fs::read_to_string(&json).unwrap_or_default();
    let stored: Vec<Uuid> = all_events(&store).iter().map(|(_, e)| e.uuid).collect();
    // The output thread may be mid-line: only lines ended by a newline are complete.
    let complete = &logged[..logged.rfind('\n').map_or(0, |end| end + 1)];
    for line in complete.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let uuid: Uuid = value["event_uuid"].as_str().unwrap().parse().unwrap();
        assert!(stored.contains(&uuid), "logged before commit: {uuid}");
    }
    for event in &events[700..] {
        sender.send(event.clone()).unwrap();
    }
    drop(sender);
    let metrics = writer.metrics();
    writer.join();
    assert!(commits.is_finished());
    assert_eq!(metrics.events_committed_total.get(), 1_500);
    assert!(metrics.batches_total.get() >= 1_500 / 64);

    let stored = all_events(&store);
    assert_eq!(stored.len(), events.len());
    let keys: Vec<u64> = stored.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, (1..=1_500).collect::<Vec<u64>>());
    assert_eq!(commits.last_key(), 1_500);
    for ((_, got), want) in stored.iter().zip(&events) {
        assert_eq!(got, want);
    }
    let log = std::fs::read_to_string(&json).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), events.len());
    for (line, event) in lines.iter().zip(&events) {
        assert_eq!(*line, to_json(event));
    }
    let mut rendered = String::new();
    sentrypeer::metrics::Render::render(&*metrics, &mut rendered);
    assert!(
        rendered.contains("sentrypeer_writer_events_committed_total 1500\n"),
        "{rendered}"
    );
    assert!(rendered.contains("sentrypeer_writer_commit_microseconds_count"));

    assert_aggregates_match_recount(&store, &events);
}

/// The aggregates, totals and newest-first lists equal a recount from the events.
fn assert_aggregates_match_recount(store: &Store, events: &[Event]) {
    let mut ips: HashMap<IpAddr, (u64, u64, u64)> = HashMap::new();
    let mut numbers: HashMap<String, (u64, u64, u64)> = HashMap::new();
    let count = |entry: &mut (u64, u64, u64), ts: u64| {
        *entry = (entry.0.min(ts), entry.1.max(ts), entry.2 + 1);
    };
    for event in events {
        let ts = event.timestamp_ns;
        count(
            ips.entry(display_ip(event.source))
                .or_insert((u64::MAX, 0, 0)),
            ts,
        );
        if let Some(number) = event.called_number() {
            let number = String::from_utf8_lossy(number).into_owned();
            count(numbers.entry(number).or_insert((u64::MAX, 0, 0)), ts);
        }
    }
    let reader = store.read().unwrap();
    let totals = reader.totals().unwrap();
    assert_eq!(totals.source_ips, ips.len() as u64);
    assert_eq!(totals.called_numbers, numbers.len() as u64);
    for (ip, (first, last, count)) in &ips {
        let seen = reader.source_ip(*ip).unwrap().unwrap();
        assert_eq!(
            (seen.first_seen_ns, seen.last_seen_ns, seen.count),
            (*first, *last, *count)
        );
    }
    for (number, (first, last, count)) in &numbers {
        let seen = reader.called_number(number.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (seen.first_seen_ns, seen.last_seen_ns, seen.count),
            (*first, *last, *count)
        );
    }
    assert_eq!(reader.called_number(b"NOT_FOUND").unwrap(), None);
    // Paging through the list in small pages visits each IP once, newest first.
    let mut cursor = None;
    let mut listed = Vec::new();
    loop {
        let page = reader.source_ips(None, false, 3, cursor.as_ref()).unwrap();
        listed.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed.len(), ips.len());
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].last_seen_ns >= w[1].last_seen_ns)
    );
    let numbers_page = reader.called_numbers(None, usize::MAX, None).unwrap();
    assert_eq!(numbers_page.items.len(), numbers.len());
    assert!(numbers_page.next.is_none());
    // `since` keeps only the recently seen.
    let newest = listed[0].last_seen_ns;
    let recent = reader.source_ips(Some(newest), false, 100, None).unwrap();
    assert!(!recent.items.is_empty());
    assert!(recent.items.iter().all(|seen| seen.last_seen_ns >= newest));
    let recent_events = reader.recent_events(None, false, 10).unwrap();
    assert_eq!(recent_events.len(), 10.min(events.len()));
    assert_eq!(recent_events[0].1, events[events.len() - 1]);
}

#[test]
fn store_restart_keeps_node_id_data_and_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let events: Vec<Event> = (0..200).map(event).collect();
    let node_id = {
        let store = Store::open(&config).unwrap();
        write_all(&store, &config, None, &events);
        store.set_cursor("webhook", 42).unwrap();
        store.node_id()
    };
    let store = Store::open(&config).unwrap();
    assert_eq!(store.node_id(), node_id);
    assert_ne!(node_id, Uuid::nil());
    let reader = store.read().unwrap();
    assert_eq!(reader.totals().unwrap().events, 200);
    assert_eq!(reader.cursor("webhook").unwrap(), 42);
    assert_eq!(reader.cursor("p2p").unwrap(), 0);
    assert_eq!(reader.last_key().unwrap(), 200);
    drop(reader);
    // New events continue the key sequence.
    write_all(&store, &config, None, &[event(1_000)]);
    assert_eq!(all_events(&store).last().unwrap().0, 201);
    assert_aggregates_match_recount(
        &store,
        &[events, vec![all_events(&store).last().unwrap().1.clone()]].concat(),
    );
}

#[test]
fn store_duplicate_uuids_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let store = Store::open(&config).unwrap();
    let original = event(1);
    let (sender, receiver) = crossbeam_channel::bounded(16);
    let writer = spawn_writer(store.clone(), receiver, &outputs(None), &config).unwrap();
    // Twice in one batch, then again in a later batch.
    sender.send(original.clone()).unwrap();
    sender.send(original.clone()).unwrap();
    let commits = writer.commits();
    commits.wait_past(0, DEADLINE);
    sender.send(original.clone()).unwrap();
    sender.send(event(2)).unwrap();
    drop(sender);
    let metrics = writer.metrics();
    writer.join();
    assert_eq!(metrics.events_duplicate_total.get(), 2);
    assert_eq!(metrics.events_committed_total.get(), 2);
    let stored = all_events(&store);
    assert_eq!(stored.len(), 2);
    let reader = store.read().unwrap();
    let ip = display_ip(original.source);
    assert_eq!(reader.source_ip(ip).unwrap().unwrap().count, 1);
}

#[test]
fn store_full_map_grows() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let options = StoreOptions {
        map_bytes_initial: 256 * 1024,
        ..StoreOptions::default()
    };
    let store = Store::open_with(&config, options).unwrap();
    let initial = store.map_bytes();
    let (sender, receiver) = crossbeam_channel::bounded(8192);
    let writer = spawn_writer(store.clone(), receiver, &outputs(None), &config).unwrap();
    let events: Vec<Event> = (0..6_000).map(event).collect();
    // A reader keeps reading while the map grows under it (the resize waits for it).
    let commits = writer.commits();
    let reader_store = store.clone();
    let reader = std::thread::spawn(move || {
        let mut reads = 0u64;
        while !commits.is_finished() {
            let reader = reader_store.read().unwrap();
            let totals = reader.totals().unwrap();
            let page = reader.source_ips(None, false, 10, None).unwrap();
            assert!(page.items.len() as u64 <= totals.source_ips);
            let _ = reader.recent_events(None, false, 5).unwrap();
            drop(reader);
            reader_store.set_cursor("test", totals.events).unwrap();
            reads += 1;
        }
        reads
    });
    for event in &events {
        sender.send(event.clone()).unwrap();
    }
    drop(sender);
    let metrics = writer.metrics();
    writer.join();
    assert!(reader.join().unwrap() > 0);
    assert!(metrics.map_resizes_total.get() >= 1);
    assert!(store.map_bytes() > initial);
    assert_eq!(all_events(&store).len(), 6_000);
    assert_aggregates_match_recount(&store, &events);
}

#[test]
fn store_vanished_log_dir_reports_and_keeps_storing() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let log_dir = dir.path().join("logs");
    std::fs::create_dir(&log_dir).unwrap();
    let json = log_dir.join("sentrypeer_json.log");
    let store = Store::open(&config).unwrap();
    let (sender, receiver) = crossbeam_channel::bounded(64);
    let (lines_tx, lines) = crossbeam_channel::unbounded();
    let options = WriterOptions {
        error_lines: Some(lines_tx),
        ..WriterOptions::default()
    };
    let writer = spawn_writer_with(
        store.clone(),
        receiver,
        &outputs(Some(&json)),
        &config,
        options,
    )
    .unwrap();
    let commits = writer.commits();
    sender.send(event(1)).unwrap();
    commits.wait_past(0, DEADLINE);
    std::fs::remove_dir_all(&log_dir).unwrap();
    writer.reopen_log();
    // The reopen happens between batches; each event is a batch here.
    for index in 2..6 {
        sender.send(event(index)).unwrap();
        commits.wait_past(index as u64 - 1, DEADLINE);
    }
    let line = lines.recv_timeout(DEADLINE).expect("an error line");
    assert!(
        line.starts_with("sentrypeer: cannot open JSON log "),
        "{line}"
    );
    assert!(line.contains("sentrypeer_json.log"), "{line}");
    drop(sender);
    let metrics = writer.metrics();
    writer.join();
    assert!(metrics.json_log_errors_total.get() >= 1);
    assert_eq!(all_events(&store).len(), 5);
    // Once the directory is back, the log resumes.
    std::fs::create_dir(&log_dir).unwrap();
    write_all(&store, &config, Some(&json), &[event(9)]);
    assert_eq!(std::fs::read_to_string(&json).unwrap().lines().count(), 1);
}

#[test]
fn store_retention_prunes_old_events_and_keeps_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = store_config(dir.path());
    config.retention_days = Some(1);
    let store = Store::open(&config).unwrap();
    let day_ns = 86_400 * 1_000_000_000u64;
    let now = now_ns();
    let old: Vec<Event> = (0..2_500)
        .map(|i| event_at(i, now - 3 * day_ns + u64::from(i)))
        .collect();
    let fresh: Vec<Event> = (0..50)
        .map(|i| event_at(5_000 + i, now + u64::from(i)))
        .collect();
    let (sender, receiver) = crossbeam_channel::bounded(4096);
    let options = WriterOptions {
        prune_interval: Duration::from_millis(10),
        ..WriterOptions::default()
    };
    let writer =
        spawn_writer_with(store.clone(), receiver, &outputs(None), &config, options).unwrap();
    for event in old.iter().chain(&fresh) {
        sender.send(event.clone()).unwrap();
    }
    wait_for("retention", || {
        store.read().unwrap().totals().unwrap().events == 50
    });
    drop(sender);
    let metrics = writer.metrics();
    writer.join();
    assert_eq!(metrics.events_pruned_total.get(), 2_500);
    let remaining = all_events(&store);
    assert_eq!(
        remaining.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        fresh
    );
    // Aggregates still count every event.
    let all = [old.clone(), fresh].concat();
    let reader = store.read().unwrap();
    let total: u64 = reader
        .source_ips(None, false, usize::MAX, None)
        .unwrap()
        .items
        .iter()
        .map(|seen| seen.count)
        .sum();
    assert_eq!(total, all.len() as u64);
    drop(reader);
    // A pruned UUID is no longer a duplicate.
    write_all(&store, &config, None, &[old[0].clone()]);
    assert_eq!(store.read().unwrap().totals().unwrap().events, 51);
}

#[test]
fn store_export_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let json = dir.path().join("sentrypeer_json.log");
    let store = Store::open(&config).unwrap();
    let events: Vec<Event> = (0..300).map(event).collect();
    write_all(&store, &config, Some(&json), &events);

    let mut stats = Vec::new();
    commands::stats(&config, &mut stats).unwrap();
    let stats = String::from_utf8(stats).unwrap();
    let lines: Vec<&str> = stats.lines().collect();
    assert_eq!(lines[0], "events: 300");
    assert!(lines[1].starts_with("source_ips: "));
    assert!(lines[2].starts_with("called_numbers: "));
    assert_eq!(lines[3], "first_event: 2023-11-14 22:13:20.000000000");
    assert!(lines[4].starts_with("last_event: 2023-11-14 22:13:20.299"));
    assert!(lines[5].starts_with("store_bytes: "));
    assert_eq!(lines[6], format!("node_id: {}", store.node_id()));
    assert_eq!(lines[7], "verified_ips: 0");

    let mut jsonl = Vec::new();
    commands::export(&config, ExportFormat::Jsonl, None, &mut jsonl).unwrap();
    assert_eq!(
        String::from_utf8(jsonl).unwrap(),
        std::fs::read_to_string(&json).unwrap()
    );

    let mut csv = Vec::new();
    commands::export(&config, ExportFormat::Csv, None, &mut csv).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    assert_eq!(reader.headers().unwrap().get(0), Some("event_timestamp"));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 300);
    assert_eq!(rows[5].get(12), Some(events[5].message_text().as_ref()));

    let sqlite = dir.path().join("export.sqlite");
    let mut sink = Vec::new();
    assert!(matches!(
        commands::export(&config, ExportFormat::Sqlite, None, &mut sink),
        Err(StoreError::SqliteNeedsOutput)
    ));
    commands::export(&config, ExportFormat::Sqlite, Some(&sqlite), &mut sink).unwrap();
    let output = std::process::Command::new("sqlite3")
        .arg(&sqlite)
        .arg("SELECT count(*) FROM honey; SELECT sip_user_agent FROM honey WHERE honey_id = 2;")
        .output()
        .expect("the sqlite3 CLI");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut out_lines = stdout.lines();
    assert_eq!(out_lines.next(), Some("300"));
    assert_eq!(out_lines.next(), Some(events[1].user_agent_text().as_ref()));
    // Never overwrites.
    assert!(matches!(
        commands::export(&config, ExportFormat::Sqlite, Some(&sqlite), &mut sink),
        Err(StoreError::OutputExists(_))
    ));
    // A missing store is an error, not a new file.
    let missing = store_config(&dir.path().join("nowhere"));
    assert!(commands::stats(&missing, &mut Vec::new()).is_err());
}

#[test]
fn store_syslog_line_exact() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let socket_path = dir.path().join("log");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let store = Store::open(&config).unwrap();
    let (sender, receiver) = crossbeam_channel::bounded(16);
    let options = WriterOptions {
        syslog_socket: socket_path,
        ..WriterOptions::default()
    };
    let output = OutputConfig {
        json_log_file: None,
        syslog: true,
        syslog_socket: sentrypeer::config::defaults::SYSLOG_SOCKET.into(),
        verified_only: false,
    };
    let writer = spawn_writer_with(store, receiver, &output, &config, options).unwrap();
    let scanner = Event::new(&EventParts {
        source: "[::ffff:10.0.0.1]:5060".parse().unwrap(),
        method: b"OPTIONS",
        user_agent: Some(b"friendly-scanner"),
        ..event(1).parts()
    });
    let anonymous = Event::new(&EventParts {
        user_agent: None,
        ..event(2).parts()
    });
    sender.send(scanner).unwrap();
    sender.send(anonymous.clone()).unwrap();
    let mut buffer = [0u8; 2048];
    let size = socket.recv(&mut buffer).unwrap();
    let line = std::str::from_utf8(&buffer[..size]).unwrap();
    let expected = format!(
        " sentrypeer[{}]: Source IP: 10.0.0.1, Method: OPTIONS, Agent: friendly-scanner",
        std::process::id()
    );
    assert!(line.starts_with("<13>"), "{line}");
    assert!(line.ends_with(&expected), "{line}");
    // `<13>Mmm dd hh:mm:ss` then the tag.
    assert_eq!(
        line.len(),
        "<13>Nov 28 10:00:00".len() + expected.len(),
        "{line}"
    );
    let size = socket.recv(&mut buffer).unwrap();
    let line = std::str::from_utf8(&buffer[..size]).unwrap();
    let expected = format!(
        "Source IP: {}, Method: OPTIONS, Agent: NOT_FOUND",
        display_ip(anonymous.source)
    );
    assert!(line.ends_with(&expected), "{line}");
    drop(sender);
    writer.join();
}

#[test]
fn store_syslog_missing_socket_reports_once_and_stores() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let store = Store::open(&config).unwrap();
    let (sender, receiver) = crossbeam_channel::bounded(16);
    let (lines_tx, lines) = crossbeam_channel::unbounded();
    let options = WriterOptions {
        syslog_socket: dir.path().join("no-such-socket"),
        error_lines: Some(lines_tx),
        ..WriterOptions::default()
    };
    let output = OutputConfig {
        json_log_file: None,
        syslog: true,
        syslog_socket: sentrypeer::config::defaults::SYSLOG_SOCKET.into(),
        verified_only: false,
    };
    let writer = spawn_writer_with(store.clone(), receiver, &output, &config, options).unwrap();
    let commits = writer.commits();
    for index in 0..3 {
        sender.send(event(index)).unwrap();
        commits.wait_past(u64::from(index), DEADLINE);
    }
    drop(sender);
    writer.join();
    let reported: Vec<String> = lines.try_iter().collect();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert!(
        reported[0].contains("cannot connect to syslog"),
        "{reported:?}"
    );
    assert_eq!(all_events(&store).len(), 3);
}

#[test]
fn store_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    drop(Store::open(&config).unwrap());
    {
        let mut builder = heed::EnvOpenOptions::new();
        builder.max_dbs(8);
        // SAFETY: the test owns the file; no other environment has it open.
        let env = unsafe {
            builder
                .flags(heed::EnvFlags::NO_SUB_DIR)
                .open(&config.db_file)
        }
        .unwrap();
        let txn = env.write_txn().unwrap();
        let committed = env
            .create_databases_and_commit(txn, |opener, txn| {
                let meta = opener
                    .create_database::<heed::types::Bytes, heed::types::Bytes>(txn, Some("meta"))?;
                meta.put(txn, b"schema_version", &2u32.to_be_bytes())?;
                Ok::<_, heed::Error>(heed::CommitOrAbort::<_, ()>::Commit(()))
            })
            .unwrap();
        assert!(matches!(committed, heed::CommitOrAbort::Commit(())));
    }
    let error = Store::open(&config).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::SchemaTooNew {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("newer than this build supports"));
}

#[test]
fn store_commit_watch_and_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let store = Store::open(&config).unwrap();
    // Enough events to train the dictionary; reads before and after it decode alike. Half are
    // this node's own (their records omit the node id), half another node's.
    let local = |i: u32| {
        Event::new(&EventParts {
            node_id: store.node_id(),
            ..event(i).parts()
        })
    };
    let events: Vec<Event> = (0..2_400)
        .map(|i| if i % 2 == 0 { local(i) } else { event(i) })
        .collect();
    let (sender, receiver) = crossbeam_channel::bounded(4096);
    let writer = spawn_writer(store.clone(), receiver, &outputs(None), &config).unwrap();
    let commits = writer.commits();
    assert_eq!(commits.wait_past(0, Duration::from_millis(20)), 0);
    for event in &events {
        sender.send(event.clone()).unwrap();
    }
    wait_for("all commits", || commits.last_key() == 2_400);
    let after = store.read().unwrap().events_after(2_390, 100).unwrap();
    assert_eq!(
        after.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        (2_391..=2_400).collect::<Vec<_>>()
    );
    drop(sender);
    writer.join();
    let stored = all_events(&store);
    assert_eq!(stored.len(), events.len());
    assert!(
        stored
            .iter()
            .zip(&events)
            .all(|((_, got), want)| got == want)
    );
    let bytes_per_event = std::fs::metadata(&config.db_file).unwrap().len() / 2_400;
    assert!(bytes_per_event < 1_000, "{bytes_per_event} bytes per event");
}

/// A local proof verifies its IP from its own timestamp on: later events of that IP are stored
/// and logged verified, earlier ones and other IPs are not; a peer's claim verifies nothing here.
#[test]
fn store_verified_sources() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let json = dir.path().join("sentrypeer_json.log");
    let store = Store::open(&config).unwrap();
    let base = 1_700_000_000_000_000_000u64;
    let at = |ip: &str, offset: u64, proof: bool, node: Uuid| {
        let event = event_at(1, base + offset);
        let mut parts = event.parts();
        parts.source = format!("{ip}:5060").parse().unwrap();
        parts.node_id = node;
        parts.source_verified = proof;
        parts.auth_username = proof.then_some(&b"100"[..]);
        Event::new(&parts)
    };
    let local = store.node_id();
    let peer = Uuid::from_u128(9);
    let first = vec![
        at("10.9.0.1", 5, false, local),
        at("10.9.0.1", 10, true, local),
        at("10.9.0.1", 20, false, local),
        at("10.9.0.2", 30, false, local),
        at("10.9.0.3", 40, true, peer),
    ];
    write_all(&store, &config, Some(&json), &first);
    // A later batch: the IP stays verified.
    write_all(
        &store,
        &config,
        Some(&json),
        &[at("10.9.0.1", 50, false, local)],
    );
    let verified: Vec<bool> = all_events(&store)
        .iter()
        .map(|(_, e)| e.source_verified)
        .collect();
    assert_eq!(verified, [false, true, true, false, true, true]);
    assert_logged_verified(&json, &verified);
    let reader = store.read().unwrap();
    assert_eq!(reader.totals().unwrap().verified_ips, 1);
    let one = reader
        .source_ip("10.9.0.1".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(one.verified_ns, Some(base + 10));
    let peer_ip = reader
        .source_ip("10.9.0.3".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        peer_ip.verified_ns, None,
        "a peer's flag does not verify an IP here"
    );
    let page = reader.source_ips(None, true, 100, None).unwrap();
    let ips: Vec<String> = page.items.iter().map(|s| s.ip.to_string()).collect();
    assert_eq!(ips, ["10.9.0.1"]);
    assert_eq!(
        reader
            .source_ips(None, false, 100, None)
            .unwrap()
            .items
            .len(),
        3
    );
    let recent = reader.recent_events(None, true, 100).unwrap();
    let offsets: Vec<u64> = recent.iter().map(|(_, e)| e.timestamp_ns - base).collect();
    assert_eq!(offsets, [50, 40, 20, 10]);
}

/// The JSON log's `source_verified` values are `verified`; the proof's user name is logged.
fn assert_logged_verified(json: &Path, verified: &[bool]) {
    let log = std::fs::read_to_string(json).unwrap();
    let logged: Vec<(bool, String)> = log
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let name = value["auth_username"].as_str().unwrap().to_owned();
            (value["source_verified"].as_bool().unwrap(), name)
        })
        .collect();
    let logged_verified: Vec<bool> = logged.iter().map(|(v, _)| *v).collect();
    assert_eq!(logged_verified, verified);
    assert_eq!(logged[1].1, "100");
    assert_eq!(logged[0].1, "NOT_FOUND");
}
