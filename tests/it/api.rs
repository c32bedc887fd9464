//! The HTTP API, in-process: a tempdir store fed through the writer, the API on 127.0.0.1:0,
//! requests with ureq (status codes are not errors), raw TCP for hostile input, and `curl`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use sentrypeer::api::{self, ApiHandle, ApiOptions};
use sentrypeer::config::{ApiConfig, OutputConfig, Secret, StoreConfig};
use sentrypeer::event::timestamp::{format_timestamp, parse_timestamp};
use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
use sentrypeer::metrics::{Counter, Render};
use sentrypeer::store::{CommitWatch, Store, WriterHandle, spawn_writer};
use serde_json::Value;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(20);
const BASE_NS: u64 = 1_764_326_400_000_000_000;
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A store with a running writer and the API on it.
struct Fixture {
    _dir: tempfile::TempDir,
    sender: Option<Sender<Event>>,
    writer: Option<WriterHandle>,
    commits: Arc<CommitWatch>,
    api: Option<ApiHandle>,
    base: String,
    agent: ureq::Agent,
}

struct TestCounter(Counter);

impl Render for TestCounter {
    fn render(&self, out: &mut String) {
        sentrypeer::metrics::write_counter(out, "test_things_total", "Things.", self.0.get());
    }
}

impl Fixture {
    fn start(token: Option<&str>, options: ApiOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = store_config(dir.path());
        let store = Store::open(&config).unwrap();
        let (sender, receiver) = crossbeam_channel::bounded(4096);
        let outputs = OutputConfig {
            json_log_file: None,
            syslog: false,
            syslog_socket: sentrypeer::config::defaults::SYSLOG_SOCKET.into(),
            verified_only: false,
        };
        let writer = spawn_writer(store.clone(), receiver, &outputs, &config).unwrap();
        let commits = writer.commits();
        let api_config = ApiConfig {
            enabled: true,
            listen: "127.0.0.1:0".parse().unwrap(),
            token: token.map(|t| Secret::new(t.to_owned())),
            verified_only: false,
        };
        let counter = TestCounter(Counter::default());
        counter.0.add(3);
        let renders: Vec<Arc<dyn Render>> = vec![Arc::new(counter), writer.metrics()];
        let api = api::start_with(&api_config, store, renders, options).unwrap();
        let base = format!("http://{}", api.local_addr());
        Self {
            _dir: dir,
            sender: Some(sender),
            writer: Some(writer),
            commits,
            api: Some(api),
            base,
            agent: agent(),
        }
    }

    fn new() -> Self {
        Self::start(None, ApiOptions::default())
    }

    fn addr(&self) -> SocketAddr {
        self.api.as_ref().unwrap().local_addr()
    }

    /// Sends `events` and waits until the writer committed them all.
    fn feed(&self, events: &[Event]) {
        let before = self.commits.last_key();
        for event in events {
            self.sender.as_ref().unwrap().send(event.clone()).unwrap();
        }
        let target = before + events.len() as u64;
        let deadline = Instant::now() + DEADLINE;
        while self.commits.last_key() < target {
            assert!(Instant::now() < deadline, "events not committed in time");
            self.commits
                .wait_past(self.commits.last_key(), Duration::from_millis(100));
        }
    }

    fn get(&self, path: &str) -> Reply {
        Reply::from(
            self.agent
                .get(format!("{}{path}", self.base))
                .call()
                .unwrap(),
        )
    }

    fn get_with_token(&self, path: &str, token: &str) -> Reply {
        let request = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {token}"));
        Reply::from(request.call().unwrap())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(api) = self.api.take() {
            api.stop();
        }
        self.sender.take();
        if let Some(writer) = self.writer.take() {
            writer.join();
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(DEADLINE))
        .build()
        .into()
}

fn store_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        batch_interval: Duration::from_millis(2),
        ..crate::support::store_config(dir, 256)
    }
}

/// A response read whole.
struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: String,
}

impl From<ureq::http::Response<ureq::Body>> for Reply {
    fn from(mut response: ureq::http::Response<ureq::Body>) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        Self {
            status,
            headers,
            body,
        }
    }
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Status, the compat headers and the content type.
    fn check(&self, status: u16, content_type: &str) -> &Self {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.header("content-type"), content_type);
        assert_eq!(self.header("access-control-allow-origin"), "*");
        assert_eq!(self.header("x-powered-by"), "SentryPeer");
        assert_eq!(self.header("x-sentrypeer-version"), VERSION);
        self
    }

    fn check_json(&self, status: u16, body: Value) {
        self.check(status, "application/json");
        assert_eq!(self.json(), body);
    }
}

fn event(source: &str, number: Option<&str>, timestamp_ns: u64) -> Event {
    let message = b"OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    event_with_message(source, number, timestamp_ns, message)
}

fn event_with_message(
    source: &str,
    number: Option<&str>,
    timestamp_ns: u64,
    message: &[u8],
) -> Event {
    Event::new(&EventParts {
        timestamp_ns,
        uuid: Uuid::new_v4(),
        node_id: Uuid::from_u128(7),
        transport: Transport::Udp,
        collected_method: CollectedMethod::Passive,
        source: source.parse().unwrap(),
        destination: "127.0.0.1:5060".parse().unwrap(),
        method: b"OPTIONS",
        called_number: number.map(str::as_bytes),
        user_agent: Some(b"friendly-scanner"),
        message,
        source_verified: false,
        auth_username: None,
    })
}

/// Three sources (one IPv6), numbers incl. a leading-zero one and NOT_FOUND.
fn sample_events() -> Vec<Event> {
    vec![
        event("10.0.0.1:5060", Some("0044123"), BASE_NS),
        event("10.0.0.1:5061", Some("+4420"), BASE_NS + 1_000),
        event("[2001:db8::7]:5060", None, BASE_NS + 2_000),
        event("192.0.2.9:5060", Some("100"), BASE_NS + 3_000),
    ]
}

fn not_found() -> Value {
    serde_json::json!({"error": "The requested resource could not be found."})
}

#[test]
fn api_empty_store_none_yet() {
    let fixture = Fixture::new();
    fixture
        .get("/ip-addresses")
        .check_json(404, serde_json::json!({"message": "No bad actors found"}));
    fixture.get("/numbers").check_json(
        404,
        serde_json::json!({"message": "No phone numbers found"}),
    );
    fixture
        .get("/ip-addresses/10.0.0.1")
        .check_json(404, serde_json::json!({"message": "No bad actor found"}));
    fixture
        .get("/numbers/123")
        .check_json(404, serde_json::json!({"message": "No phone number found"}));
    let events = fixture.get("/events");
    events.check(200, "application/json");
    assert_eq!(
        events.json(),
        serde_json::json!({"events_total": 0, "events": []})
    );
    let text = fixture.get("/ip-addresses?format=text");
    text.check(200, "text/plain; charset=utf-8");
    assert_eq!(text.body, "");
}

#[test]
fn api_compat_table() {
    let fixture = Fixture::new();
    fixture.feed(&sample_events());
    fixture
        .get("/")
        .check_json(200, serde_json::json!({"status": "OK"}));
    fixture.get("/health-check").check_json(
        200,
        serde_json::json!({"status": "OK", "message": "Hello from SentryPeer!", "version": VERSION}),
    );
    check_compat_lists(&fixture);
    check_compat_lookups(&fixture);
    // The query is ignored for matching.
    fixture
        .get("/?x=1")
        .check_json(200, serde_json::json!({"status": "OK"}));
}

/// `/ip-addresses` and `/numbers` over the sample events: order, totals, item fields.
fn check_compat_lists(fixture: &Fixture) {
    let ips = fixture.get("/ip-addresses");
    ips.check(200, "application/json");
    let body = ips.json();
    assert_eq!(body["ip_addresses_total"], 3);
    assert!(body.get("next").is_none());
    let list = body["ip_addresses"].as_array().unwrap();
    let order: Vec<&str> = list
        .iter()
        .map(|i| i["ip_address"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["192.0.2.9", "2001:db8::7", "10.0.0.1"]);
    assert_eq!(list[2]["seen_count"], "2");
    assert_eq!(list[2]["seen_last"], format_timestamp(BASE_NS + 1_000));
    assert_eq!(list[0]["seen_count"], "1");
    assert_eq!(list[0].as_object().unwrap().len(), 4);
    assert_eq!(list[0]["verified"], false);

    let numbers = fixture.get("/numbers");
    numbers.check(200, "application/json");
    let body = numbers.json();
    assert_eq!(body["called_numbers_total"], 3);
    let order: Vec<&str> = body["called_numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["called_number"].as_str().unwrap())
        .collect();
    // NOT_FOUND is never listed; a leading zero is kept.
    assert_eq!(order, ["100", "+4420", "0044123"]);
    assert_eq!(body["called_numbers"][0]["seen_count"], "1");
    assert_eq!(
        body["called_numbers"][2]["seen_last"],
        format_timestamp(BASE_NS)
    );
}

/// One IP address or number looked up: found, not found, invalid.
fn check_compat_lookups(fixture: &Fixture) {
    fixture.get("/ip-addresses/10.0.0.1").check_json(
        200,
        serde_json::json!({"bad_actor_found": "10.0.0.1", "verified": false, "verified_at": null}),
    );
    fixture
        .get("/ip-addresses/2001:db8::7")
        .check_json(
            200,
            serde_json::json!({"bad_actor_found": "2001:db8::7", "verified": false, "verified_at": null}),
        );
    fixture
        .get("/ip-addresses/10.9.9.9")
        .check_json(404, serde_json::json!({"message": "No bad actor found"}));
    fixture.get("/ip-addresses/10.0.0").check_json(
        400,
        serde_json::json!({"error": "The request data was invalid"}),
    );
    fixture.get("/ip-addresses/not-an-ip").check_json(
        400,
        serde_json::json!({"error": "The request data was invalid"}),
    );
    fixture
        .get("/numbers/0044123")
        .check_json(200, serde_json::json!({"phone_number_found": "0044123"}));
    fixture
        .get("/numbers/%2B4420")
        .check_json(200, serde_json::json!({"phone_number_found": "+4420"}));
    fixture
        .get("/numbers/999")
        .check_json(404, serde_json::json!({"message": "No phone number found"}));
    fixture.get("/numbers/12ab").check_json(404, not_found());
    fixture
        .get("/numbers/NOT_FOUND")
        .check_json(404, not_found());
    fixture.get("/nope").check_json(404, not_found());
    fixture.get("/ip-addresses/").check_json(404, not_found());
}

#[test]
fn api_formats() {
    let fixture = Fixture::new();
    fixture.feed(&sample_events());
    let text = fixture.get("/ip-addresses?format=text");
    text.check(200, "text/plain; charset=utf-8");
    assert_eq!(text.body, "192.0.2.9\n2001:db8::7\n10.0.0.1\n");
    let numbers = fixture.get("/numbers?format=text");
    numbers.check(200, "text/plain; charset=utf-8");
    assert_eq!(numbers.body, "100\n+4420\n0044123\n");
    let json = fixture.get("/ip-addresses?format=json");
    json.check(200, "application/json");

    let ipset = fixture.get("/ip-addresses?format=ipset");
    ipset.check(200, "text/plain; charset=utf-8");
    let parsed = parse_ipset(&ipset.body);
    assert_eq!(
        parsed,
        HashSet::from([
            ("sentrypeer_v4".to_owned(), "192.0.2.9".parse().unwrap()),
            ("sentrypeer_v4".to_owned(), "10.0.0.1".parse().unwrap()),
            ("sentrypeer_v6".to_owned(), "2001:db8::7".parse().unwrap()),
        ])
    );

    let nft = fixture.get("/ip-addresses?format=nftables");
    nft.check(200, "text/plain; charset=utf-8");
    assert!(nft.body.contains("table inet sentrypeer {"));
    assert!(nft.body.contains("\t10.0.0.1\n") || nft.body.contains("\t10.0.0.1,\n"));
    assert!(nft.body.contains("\t2001:db8::7\n"));
    nft_check(&nft.body);

    for bad in [
        "/ip-addresses?format=xml",
        "/numbers?format=nftables",
        "/numbers?format=ipset",
        "/ip-addresses?format=",
    ] {
        let reply = fixture.get(bad);
        reply.check(400, "application/json");
        assert_eq!(
            reply.json()["error"],
            "The request data was invalid",
            "{bad}"
        );
    }
}

#[test]
fn api_nftables_empty_sets_are_valid() {
    let fixture = Fixture::new();
    let empty = fixture.get("/ip-addresses?format=nftables");
    empty.check(200, "text/plain; charset=utf-8");
    assert!(!empty.body.contains("add element"));
    nft_check(&empty.body);
    // Only IPv6 sources: the IPv4 set stays empty.
    fixture.feed(&[event("[2001:db8::1]:5060", None, BASE_NS)]);
    let v6_only = fixture.get("/ip-addresses?format=nftables");
    assert!(v6_only.body.contains("bad_actors_v6 {\n\t2001:db8::1\n}"));
    nft_check(&v6_only.body);
    // The checker is not a rubber stamp.
    let broken = v6_only.body.replace("2001:db8::1", "2001:db8::zz");
    assert!(!nft_accepts(&broken).unwrap_or(false) || nft_unavailable());
}

/// `nft -c -f`: a dry run by the `nft` on `PATH` (needs CAP_NET_ADMIN). Where it cannot check,
/// the require policy applies (under `CI=true` the test fails) and a syntax parse of our own output
/// shape runs instead.
fn nft_check(script: &str) {
    match nft_accepts(script) {
        Some(true) => {}
        Some(false) => panic!("nft rejected the script:\n{script}"),
        None => {
            crate::support::require::missing(
                "nft -c cannot check here (not on PATH, or no CAP_NET_ADMIN); only a parse ran",
            );
            parse_nftables(script);
        }
    }
}

fn nft_unavailable() -> bool {
    nft_accepts("table inet sentrypeer_probe {\n}\n").is_none()
}

/// Some(accepted) when nft could check; None when nft is missing or lacks privileges.
fn nft_accepts(script: &str) -> Option<bool> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentrypeer.nft");
    std::fs::write(&path, script).unwrap();
    let output = Command::new("nft")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .ok()?;
    if output.status.success() {
        return Some(true);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("Operation not permitted") || stderr.contains("netlink") {
        return None;
    }
    eprintln!("nft: {stderr}");
    Some(false)
}

/// The shape `render::nftables` writes: declarations, flushes, element blocks of IP literals.
fn parse_nftables(script: &str) {
    let mut lines = script.lines().filter(|l| !l.starts_with('#'));
    let head: Vec<&str> = lines.by_ref().take(9).collect();
    assert_eq!(
        head,
        [
            "table inet sentrypeer {",
            "\tset bad_actors_v4 {",
            "\t\ttype ipv4_addr",
            "\t}",
            "\tset bad_actors_v6 {",
            "\t\ttype ipv6_addr",
            "\t}",
            "}",
            "flush set inet sentrypeer bad_actors_v4",
        ]
    );
    assert_eq!(
        lines.next(),
        Some("flush set inet sentrypeer bad_actors_v6")
    );
    let mut open: Option<bool> = None;
    for line in lines {
        match open {
            None => {
                let v4 = line == "add element inet sentrypeer bad_actors_v4 {";
                let v6 = line == "add element inet sentrypeer bad_actors_v6 {";
                assert!(v4 || v6, "unexpected line {line:?}");
                open = Some(v4);
            }
            Some(_) if line == "}" => open = None,
            Some(v4) => {
                let ip: IpAddr = line
                    .trim_start_matches('\t')
                    .trim_end_matches(',')
                    .parse()
                    .unwrap();
                assert_eq!(ip.is_ipv4(), v4);
            }
        }
    }
    assert!(open.is_none());
}

/// Parses an `ipset restore` script: `create` lines first, then `add <set> <ip> -exist`.
fn parse_ipset(script: &str) -> HashSet<(String, IpAddr)> {
    let mut sets = HashSet::new();
    let mut members = HashSet::new();
    for line in script.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [
                "create",
                name,
                "hash:ip",
                "family",
                family,
                "maxelem",
                max,
                "-exist",
            ] => {
                assert!(max.parse::<u64>().unwrap() >= 100_000);
                let expected = if name.ends_with("v4") {
                    "inet"
                } else {
                    "inet6"
                };
                assert_eq!(*family, expected);
                sets.insert((*name).to_owned());
            }
            ["add", name, ip, "-exist"] => {
                assert!(sets.contains(*name), "add before create: {line}");
                let ip: IpAddr = ip.parse().unwrap();
                assert_eq!(ip.is_ipv4(), name.ends_with("v4"));
                members.insert(((*name).to_owned(), ip));
            }
            _ => panic!("unexpected ipset line {line:?}"),
        }
    }
    assert_eq!(
        sets,
        HashSet::from(["sentrypeer_v4".to_owned(), "sentrypeer_v6".to_owned()])
    );
    members
}

#[test]
fn api_events_newest_first() {
    let fixture = Fixture::new();
    fixture.feed(&sample_events());
    let reply = fixture.get("/events");
    reply.check(200, "application/json");
    let body = reply.json();
    assert_eq!(body["events_total"], 4);
    let stamps: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_timestamp"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..4)
        .rev()
        .map(|i| format_timestamp(BASE_NS + i * 1_000))
        .collect();
    assert_eq!(stamps, expected);
    assert_eq!(body["events"][0]["app_name"], "sentrypeer");
    assert_eq!(body["events"][0]["source_ip"], "192.0.2.9");
    assert_eq!(body["events"][1]["called_number"], "NOT_FOUND");

    let since = format_timestamp(BASE_NS + 2_000).replace(' ', "%20");
    let recent = fixture
        .get(&format!("/events?since={since}&limit=10"))
        .json();
    assert_eq!(recent["events"].as_array().unwrap().len(), 2);
    let one = fixture.get("/events?limit=1").json();
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    fixture
        .get("/events?limit=0")
        .check(400, "application/json");
    fixture
        .get("/events?since=tomorrow")
        .check(400, "application/json");
}

/// Walks every page of `path` (a list route) with `limit`, returning the values in order.
fn walk(fixture: &Fixture, path: &str, list_key: &str, item_key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..1_000 {
        let url = match &next {
            Some(cursor) => format!("{path}&cursor={cursor}"),
            None => path.to_owned(),
        };
        let reply = fixture.get(&url);
        reply.check(200, "application/json");
        let body = reply.json();
        for item in body[list_key].as_array().unwrap() {
            out.push(item[item_key].as_str().unwrap().to_owned());
        }
        match body.get("next").and_then(Value::as_str) {
            Some(cursor) => next = Some(cursor.to_owned()),
            None => return out,
        }
    }
    panic!("paging did not end");
}

#[test]
fn api_paging_each_item_once() {
    let fixture = Fixture::new();
    let events: Vec<Event> = (0..250_u64)
        .map(|i| {
            event(
                &format!("10.1.{}.{}:5060", i / 200, i % 200),
                Some(&format!("0{i}")),
                BASE_NS + i * 1_000,
            )
        })
        .collect();
    fixture.feed(&events);
    let ips = walk(
        &fixture,
        "/ip-addresses?limit=7",
        "ip_addresses",
        "ip_address",
    );
    assert_eq!(ips.len(), 250);
    assert_eq!(ips.iter().collect::<HashSet<_>>().len(), 250);
    assert_eq!(ips[0], "10.1.1.49");
    let numbers = walk(
        &fixture,
        "/numbers?limit=13",
        "called_numbers",
        "called_number",
    );
    assert_eq!(numbers.len(), 250);
    assert_eq!(numbers.iter().collect::<HashSet<_>>().len(), 250);

    // `since` lists only what is new; a poller combining since and paging sees each once.
    let since = format_timestamp(BASE_NS + 200 * 1_000);
    let since_query = format!("/ip-addresses?since={}&limit=9", since.replace(' ', "+"));
    let recent = walk(&fixture, &since_query, "ip_addresses", "ip_address");
    assert_eq!(recent.len(), 50);
    let rfc3339 = "2025-11-28T10:40:00.000200Z";
    assert_eq!(parse_timestamp(rfc3339), Some(BASE_NS + 200 * 1_000));
    let recent = walk(
        &fixture,
        &format!("/numbers?since={rfc3339}&limit=50"),
        "called_numbers",
        "called_number",
    );
    assert_eq!(recent.len(), 50);

    // A text page carries its cursor in a header.
    let text = fixture.get("/ip-addresses?format=text&limit=100");
    assert_eq!(text.body.lines().count(), 100);
    assert!(!text.header("x-sentrypeer-next-cursor").is_empty());
    fixture
        .get("/ip-addresses?cursor=zz")
        .check(400, "application/json");
}

#[test]
fn api_methods_head_options_405() {
    let fixture = Fixture::new();
    fixture.feed(&sample_events());
    let get = fixture.get("/ip-addresses");
    let head = Reply::from(
        fixture
            .agent
            .head(format!("{}/ip-addresses", fixture.base))
            .call()
            .unwrap(),
    );
    head.check(200, "application/json");
    assert_eq!(head.body, "");
    assert_eq!(
        head.header("content-length"),
        get.body.len().to_string().as_str()
    );

    let options = Reply::from(
        fixture
            .agent
            .options(format!("{}/ip-addresses", fixture.base))
            .header("Origin", "https://example.org")
            .header("Access-Control-Request-Method", "GET")
            .call()
            .unwrap(),
    );
    options.check(204, "application/json");
    assert_eq!(
        options.header("access-control-allow-methods"),
        "GET, HEAD, OPTIONS"
    );
    assert!(
        options
            .header("access-control-allow-headers")
            .contains("Authorization")
    );

    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}/ip-addresses", fixture.base))
            .body(())
            .unwrap();
        let reply = Reply::from(fixture.agent.run(request).unwrap());
        reply.check(405, "application/json");
        assert_eq!(reply.header("allow"), "GET, HEAD, OPTIONS", "{method}");
    }
    let raw = raw_request(
        fixture.addr(),
        b"BREW /health-check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
    assert!(
        raw.to_ascii_lowercase()
            .contains("allow: get, head, options")
    );
}

#[test]
fn api_token() {
    let fixture = Fixture::start(Some("s3cret-token"), ApiOptions::default());
    fixture.feed(&sample_events());
    let open = fixture.get("/health-check");
    open.check(200, "application/json");
    for path in [
        "/",
        "/ip-addresses",
        "/numbers/100",
        "/events",
        "/metrics",
        "/nope",
    ] {
        let denied = fixture.get(path);
        denied.check(401, "application/json");
        assert_eq!(denied.header("www-authenticate"), "Bearer");
        assert!(denied.json()["error"].is_string());
        let wrong = fixture.get_with_token(path, "s3cret-tokem");
        assert_eq!(wrong.status, 401, "{path}");
        let short = fixture.get_with_token(path, "s3cret");
        assert_eq!(short.status, 401, "{path}");
    }
    let allowed = fixture.get_with_token("/ip-addresses", "s3cret-token");
    allowed.check(200, "application/json");
    assert_eq!(allowed.json()["ip_addresses_total"], 3);
    fixture
        .get_with_token("/numbers/100", "s3cret-token")
        .check_json(200, serde_json::json!({"phone_number_found": "100"}));
    let basic = Reply::from(
        fixture
            .agent
            .get(format!("{}/", fixture.base))
            .header("Authorization", "Basic s3cret-token")
            .call()
            .unwrap(),
    );
    assert_eq!(basic.status, 401);
}

#[test]
fn api_metrics_text() {
    let fixture = Fixture::new();
    fixture.feed(&sample_events());
    fixture.get("/nope");
    let reply = fixture.get("/metrics");
    reply.check(200, "text/plain; version=0.0.4");
    assert!(reply.body.contains("sentrypeer_test_things_total 3\n"));
    assert!(
        reply
            .body
            .contains("sentrypeer_writer_events_committed_total 4\n")
    );
    assert!(
        reply
            .body
            .contains("sentrypeer_api_responses_total{class=\"4xx\"} 1\n")
    );
    assert!(
        reply
            .body
            .contains("sentrypeer_api_request_microseconds_count")
    );
    let metrics = fixture.api.as_ref().unwrap().metrics();
    assert!(metrics.responses(2) >= 1);
}

/// Writes `request` on a fresh connection and reads until the server closes it (or 10 s).
fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may answer and close before it read everything: ignore write errors.
    let _ = stream.write_all(request);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn api_hostile_input() {
    let fixture = Fixture::new();
    fixture.feed(&sample_events());
    let addr = fixture.addr();

    // A 10 KB URI: 414 (or 431, or closed), never a crash.
    let long = format!(
        "GET /ip-addresses?x={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(10_000)
    );
    let reply = raw_request(addr, long.as_bytes());
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 414") || reply.starts_with("HTTP/1.1 431"),
        "{reply}"
    );
    assert!(reply.starts_with("HTTP/1.1 414"), "expected 414: {reply}");

    // A header flood: 431 or closed.
    let mut flood = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for index in 0..2_000 {
        flood.push_str(&format!("X-Flood-{index}: {}\r\n", "b".repeat(20)));
    }
    flood.push_str("\r\n");
    let reply = raw_request(addr, flood.as_bytes());
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{reply}"
    );
    // Too many (small) headers.
    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for index in 0..200 {
        many.push_str(&format!("X-{index}: 1\r\n"));
    }
    many.push_str("\r\n");
    let reply = raw_request(addr, many.as_bytes());
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{reply}"
    );

    // Bad percent-encoding and non-UTF-8: 400 with a JSON body.
    for target in [
        "/%FF",
        "/numbers/%FF",
        "/ip-addresses/%zz",
        "/ip-addresses?since=%",
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let reply = raw_request(addr, request.as_bytes());
        assert!(reply.starts_with("HTTP/1.1 400"), "{target}: {reply}");
        assert!(reply.contains("The request data was invalid"), "{target}");
    }
    // `..` segments: a clean 404.
    for target in [
        "/../health-check",
        "/ip-addresses/../health-check",
        "/%2e%2e/etc/passwd",
        "/numbers/..",
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let reply = raw_request(addr, request.as_bytes());
        assert!(reply.starts_with("HTTP/1.1 404"), "{target}: {reply}");
    }
    // Garbage instead of HTTP: 400 or closed, and the server still answers afterwards.
    let reply = raw_request(addr, b"\x00\xff\r\n\r\nnot http at all\r\n\r\n");
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 400"),
        "{reply}"
    );
    fixture.get("/health-check").check(200, "application/json");
}

#[test]
fn api_slow_client_is_closed() {
    let options = ApiOptions {
        header_read_timeout: Duration::from_millis(300),
        ..ApiOptions::default()
    };
    let fixture = Fixture::start(None, options);
    for partial in [&b""[..], b"GET /health-check HTTP/1.1\r\nHost: x\r\n"] {
        let mut stream = TcpStream::connect(fixture.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(partial).unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        // Ends when the server closes the connection (EOF, maybe after a 408) or on reset.
        let result = stream.read_to_end(&mut out);
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(5),
            "not closed after the read timeout ({waited:?}, {result:?})"
        );
        assert!(waited >= Duration::from_millis(200), "closed too early");
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
}

#[test]
fn api_connection_cap() {
    let options = ApiOptions {
        connections_max: 2,
        ..ApiOptions::default()
    };
    let fixture = Fixture::start(None, options);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(fixture.addr()).unwrap();
            // A full request on each, so both are certainly accepted and open.
            stream
                .write_all(b"GET /health-check HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buffer = [0_u8; 512];
            let read = stream.read(&mut buffer).unwrap();
            assert!(read > 0);
            stream
        })
        .collect();
    let refused = raw_request(
        fixture.addr(),
        b"GET /health-check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        refused, "",
        "a connection over the cap must be closed at once"
    );
    let metrics = fixture.api.as_ref().unwrap().metrics();
    assert!(metrics.connections_refused_total.get() >= 1);
    drop(held);
    // Once the held connections are gone, new ones are served again.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let reply = raw_request(
            fixture.addr(),
            b"GET /health-check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if reply.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn api_bind_error_is_one_line() {
    let fixture = Fixture::new();
    let store = Store::open(&store_config(fixture._dir.path())).unwrap();
    let config = ApiConfig {
        enabled: true,
        listen: fixture.addr(),
        token: None,
        verified_only: false,
    };
    let error = api::start(&config, store, Vec::new()).unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with("cannot listen on 127.0.0.1:"), "{text}");
    assert!(!text.contains('\n'));
}

#[test]
fn api_curl_smoke() {
    let fixture = Fixture::new();
    fixture.feed(&sample_events());
    let output = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10", "--noproxy", "*"])
        .arg(format!("{}/ip-addresses/10.0.0.1", fixture.base))
        .output()
        .expect("curl is installed (CI installs it)");
    assert!(output.status.success(), "{:?}", output);
    let text = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("content-type: application/json"));
    assert!(text.contains("access-control-allow-origin: *"));
    assert!(text.contains("x-powered-by: sentrypeer"));
    assert!(text.contains(&format!("x-sentrypeer-version: {VERSION}")));
    assert!(
        text.ends_with(
            "{\"bad_actor_found\":\"10.0.0.1\",\"verified\":false,\"verified_at\":null}"
        )
    );
    let head = Command::new("curl")
        .args(["-sS", "-I", "--max-time", "10", "--noproxy", "*"])
        .arg(format!("{}/numbers", fixture.base))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&head.stdout).starts_with("HTTP/1.1 200"));
}

#[test]
fn api_stop_is_graceful() {
    let mut fixture = Fixture::new();
    let addr = fixture.addr();
    fixture.get("/health-check").check(200, "application/json");
    let started = Instant::now();
    fixture.api.take().unwrap().stop();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after stop"
    );
}

#[test]
fn api_stalled_reader_is_closed() {
    let options = ApiOptions {
        write_stall_timeout: Duration::from_millis(300),
        ..ApiOptions::default()
    };
    let fixture = Fixture::start(None, options);
    // 400 events with 64 KiB messages: a ~26 MB /events body, more than loopback buffers hold.
    let message: Vec<u8> = (0..64 * 1024_u32).map(|i| b'a' + (i % 26) as u8).collect();
    let events: Vec<Event> = (0..400_u64)
        .map(|i| event_with_message("10.0.0.1:5060", None, BASE_NS + i, &message))
        .collect();
    fixture.feed(&events);
    let mut stream = TcpStream::connect(fixture.addr()).unwrap();
    stream
        .write_all(b"GET /events?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Never read: the server must give up on this connection.
    let metrics = fixture.api.as_ref().unwrap().metrics();
    let deadline = Instant::now() + DEADLINE;
    while metrics.connections_stalled_total.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "a stalled reader was never closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stream);
    // A client that reads gets the whole body.
    let reply = fixture.get("/events?limit=1000");
    reply.check(200, "application/json");
    assert_eq!(reply.json()["events"].as_array().unwrap().len(), 400);
}
