//! Enrichment against small MMDB files that the test writes with `tests/it/support/mmdb.pl`
//! (Debian's libmaxmind-db-writer-perl): 127.0.0.23 is "NL", AS 64500 "Test Net" in GeoLite2
//! shape; 127.0.0.40 is "DE", AS 64501 "Lite Net" in IPinfo Lite shape; 127.0.0.99 is in neither.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sentrypeer::config::EnrichConfig;
use sentrypeer::enrich::Databases;

use crate::support::{DEADLINE, Launch, require, run_command, send_paced, udp_from, wait_until};

const COUNTRY: &str = "127.0.0.23/32\tcountry=NL\n127.0.0.40/32\tcountry_code=de;country=Germany\n";
const ASN: &str = "127.0.0.23/32\tautonomous_system_number=64500;autonomous_system_organization=Test Net\n\
                   127.0.0.40/32\tasn=AS64501;as_name=Lite Net\n";

/// Writes `path` from `records` (lines of mmdb.pl); `None` (after the missing-tool policy) when
/// the Perl writer is not installed.
fn build(path: &Path, database_type: &str, records: &str) -> Option<PathBuf> {
    let probe = Command::new("perl")
        .args(["-MMaxMind::DB::Writer::Tree", "-e", "1"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        require::missing("perl with MaxMind::DB::Writer (libmaxmind-db-writer-perl) is missing");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/mmdb.pl");
    let mut child = Command::new("perl")
        .arg(script)
        .arg(path)
        .arg(database_type)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run mmdb.pl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(records.as_bytes())
        .expect("write records");
    assert!(child.wait().expect("mmdb.pl").success(), "mmdb.pl failed");
    Some(path.to_owned())
}

fn databases(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let country = build(&dir.join("country.mmdb"), "GeoLite2-Country", COUNTRY)?;
    let asn = build(&dir.join("asn.mmdb"), "GeoLite2-ASN", ASN)?;
    Some((country, asn))
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

#[test]
fn enrich_lookup_decodes_both_shapes_and_misses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((country, asn)) = databases(dir.path()) else {
        return;
    };
    let config = EnrichConfig {
        geoip_db: Some(country),
        asn_db: Some(asn),
    };
    let found = Databases::open(&config).expect("open");
    let geolite = found.lookup(ip("127.0.0.23"));
    assert_eq!(geolite.country, Some(*b"NL"));
    assert_eq!(geolite.asn, Some(64_500));
    assert_eq!(geolite.as_org.as_deref(), Some("Test Net"));
    // IPv4-mapped IPv6 is looked up as IPv4.
    assert_eq!(found.lookup(ip("::ffff:127.0.0.23")), geolite);
    let lite = found.lookup(ip("127.0.0.40"));
    assert_eq!(lite.country, Some(*b"DE"));
    assert_eq!(lite.asn, Some(64_501));
    assert_eq!(lite.as_org.as_deref(), Some("Lite Net"));
    let miss = found.lookup(ip("127.0.0.99"));
    assert_eq!(miss, sentrypeer::event::Enrichment::default());
    assert_eq!(found.lookup(ip("2001:db8::1")).country, None);
}

fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn from_ip<'a>(lines: &'a [serde_json::Value], source: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|v| v["source_ip"] == source).collect()
}

/// The store through the API: /events and /ip-addresses filtered, /ip-addresses/{ip}, and
/// /numbers refusing the filters.
fn check_store_and_api(node: &crate::support::Node) {
    let (status, body) = node.get("/events?country=nl&limit=100");
    assert_eq!(status, 200, "{body}");
    let events: serde_json::Value = serde_json::from_str(&body).expect("json");
    let events = events["events"].as_array().expect("events");
    assert_eq!(events.len(), 3, "{body}");
    assert!(events.iter().all(|e| e["source_as_org"] == "Test Net"));
    let (status, body) = node.get("/ip-addresses?asn=AS64500");
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    let items = list["ip_addresses"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["ip_address"], "127.0.0.23");
    assert_eq!(items[0]["source_country"], "NL");
    let (_, body) = node.get("/ip-addresses?country=NL&format=text");
    assert_eq!(body, "127.0.0.23\n");
    let (_, body) = node.get("/ip-addresses/127.0.0.99");
    let found: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(found["source_country"], "NOT_FOUND", "{body}");
    assert_eq!(found["source_as_org"], "NOT_FOUND", "{body}");
    let (status, body) = node.get("/numbers?country=NL");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("numbers have no country"), "{body}");
}

#[test]
fn enrich_binary_store_log_api_and_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((country, asn)) = databases(dir.path()) else {
        return;
    };
    let (country, asn) = (
        country.to_str().expect("utf-8"),
        asn.to_str().expect("utf-8"),
    );
    let launch = Launch::new(dir.path()).arg(&["--geoip-db", country, "--asn-db", asn]);
    let mut node = launch.start();
    send_paced(&udp_from([127, 0, 0, 23]), node.sip, "nl", 3, 200, 0);
    send_paced(&udp_from([127, 0, 0, 99]), node.sip, "miss", 2, 200, 0);
    node.wait_committed(5);
    wait_until("5 log lines", DEADLINE, || {
        log_lines(&launch.log).len() >= 5
    });
    let lines = log_lines(&launch.log);
    for line in from_ip(&lines, "127.0.0.23") {
        assert_eq!(line["source_country"], "NL", "{line}");
        assert_eq!(line["source_asn"], "64500", "{line}");
        assert_eq!(line["source_as_org"], "Test Net", "{line}");
    }
    for line in from_ip(&lines, "127.0.0.99") {
        for key in ["source_country", "source_asn", "source_as_org"] {
            assert_eq!(line[key], "NOT_FOUND", "{key}: {line}");
        }
    }
    check_store_and_api(&node);
    // Replace the country file by rename with another mapping, SIGHUP, send more.
    let next = build(
        &dir.path().join("next.mmdb"),
        "GeoLite2-Country",
        "127.0.0.23/32\tcountry=FR\n",
    )
    .expect("built before");
    std::fs::rename(&next, country).expect("rename");
    node.signal(libc::SIGHUP);
    wait_until("a FR event after SIGHUP", DEADLINE, || {
        send_paced(&udp_from([127, 0, 0, 23]), node.sip, "fr", 1, 200, 0);
        log_lines(&launch.log)
            .iter()
            .any(|v| v["source_country"] == "FR")
    });
    node.assert_running();
    let (_, body) = node.get("/ip-addresses/127.0.0.23");
    assert!(body.contains("\"source_country\":\"FR\""), "{body}");
    assert!(body.contains("\"source_as_org\":\"Test Net\""), "{body}");
    // A re-open that fails keeps the old databases and says so in one line.
    std::fs::remove_file(asn).expect("remove asn db");
    node.signal(libc::SIGHUP);
    wait_until("the re-open failure line", DEADLINE, || {
        node.stderr()
            .contains("keeping the databases opened before")
    });
    send_paced(&udp_from([127, 0, 0, 23]), node.sip, "after", 1, 200, 0);
    wait_until("an event after the failed re-open", DEADLINE, || {
        let lines = log_lines(&launch.log);
        lines.iter().filter(|v| v["source_asn"] == "64500").count() > 3
    });
    let (status, stderr) = node.stop();
    assert!(status.success(), "{stderr}");
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cannot open"))
        .collect();
    assert_eq!(failures.len(), 1, "{stderr}");
}

#[test]
fn enrich_without_database_log_has_no_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let launch = Launch::new(dir.path());
    let node = launch.start();
    send_paced(&udp_from([127, 0, 0, 23]), node.sip, "plain", 2, 200, 0);
    node.wait_committed(2);
    wait_until("2 log lines", DEADLINE, || {
        log_lines(&launch.log).len() >= 2
    });
    let text = std::fs::read_to_string(&launch.log).expect("log");
    assert!(
        !text.contains("source_country") && !text.contains("source_asn"),
        "{text}"
    );
    let (_, body) = node.get("/events");
    assert!(!body.contains("source_country"), "{body}");
    let (_, body) = node.get("/ip-addresses/127.0.0.23");
    assert!(!body.contains("source_country"), "{body}");
}

#[test]
fn enrich_missing_file_exits_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.mmdb");
    let (status, _, stderr) = run_command(
        dir.path(),
        &["-R", "--geoip-db", missing.to_str().expect("utf-8")],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("sentrypeer: cannot read geoip_db"),
        "{stderr}"
    );
    // A file that is not an MMDB: also one line, from the open.
    let junk = dir.path().join("junk.mmdb");
    std::fs::write(&junk, b"not a database").expect("write");
    let (status, _, stderr) = run_command(
        dir.path(),
        &["-R", "-f", "db", "--asn-db", junk.to_str().expect("utf-8")],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("sentrypeer: cannot open asn_db"),
        "{stderr}"
    );
}

/// An OPTIONS event collected by `node` from `source`.
fn peer_event(node: uuid::Uuid, index: u64, source: &str) -> sentrypeer::event::Event {
    use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
    Event::new(&EventParts {
        timestamp_ns: 1_764_326_400_000_000_000 + index,
        uuid: uuid::Uuid::new_v4(),
        node_id: node,
        transport: Transport::Udp,
        collected_method: CollectedMethod::Passive,
        source: source.parse().expect("source"),
        destination: "127.0.0.1:5060".parse().expect("destination"),
        method: b"OPTIONS",
        called_number: Some(b"100"),
        user_agent: None,
        message: b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n\r\n",
        source_verified: false,
        auth_username: None,
    })
}

/// Events that come in through the channel from elsewhere (a peer's, with its node id) are
/// enriched by this node's encoder like local ones, and stored with it.
#[test]
fn enrich_peer_events_through_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((country, asn)) = databases(dir.path()) else {
        return;
    };
    let config = EnrichConfig {
        geoip_db: Some(country),
        asn_db: Some(asn),
    };
    let enricher = sentrypeer::enrich::Enricher::open(&config).expect("open");
    let settings = crate::support::store_config(dir.path(), 64);
    let store = sentrypeer::store::Store::open(&settings).expect("store");
    let outputs = sentrypeer::config::OutputConfig {
        json_log_file: None,
        syslog: false,
        syslog_socket: dir.path().join("no-syslog"),
        verified_only: false,
    };
    let options = sentrypeer::store::WriterOptions {
        enricher,
        ..Default::default()
    };
    let (sender, receiver) = crossbeam_channel::bounded(16);
    let writer =
        sentrypeer::store::spawn_writer_with(store.clone(), receiver, &outputs, &settings, options)
            .expect("writer");
    let peer_node = uuid::Uuid::from_u128(0x9999);
    for (index, source) in ["127.0.0.23:5060", "127.0.0.99:5060"].iter().enumerate() {
        let event = peer_event(peer_node, index as u64, source);
        sender.send(event).expect("send");
    }
    drop(sender);
    writer.join();
    let reader = store.read().expect("read");
    let events = reader.recent_events(None, false, 10).expect("events");
    assert_eq!(events.len(), 2);
    let by_source = |ip: &str| {
        events
            .iter()
            .find(|(_, e)| e.source.ip().to_string() == ip)
            .and_then(|(_, e)| e.enrichment.clone())
            .expect("enriched")
    };
    let mapped = by_source("127.0.0.23");
    assert_eq!(mapped.country, Some(*b"NL"));
    assert_eq!(mapped.asn, Some(64_500));
    assert_eq!(mapped.as_org.as_deref(), Some("Test Net"));
    assert_eq!(
        *by_source("127.0.0.99"),
        sentrypeer::event::Enrichment::default()
    );
    assert!(events.iter().all(|(_, e)| e.node_id == peer_node));
    let seen = reader
        .source_ip("127.0.0.23".parse().expect("ip"))
        .expect("lookup")
        .expect("seen");
    assert_eq!(seen.source.and_then(|tag| tag.country), Some(*b"NL"));
    assert_eq!(
        reader.as_org(64_500).expect("as org").as_deref(),
        Some("Test Net")
    );
}
