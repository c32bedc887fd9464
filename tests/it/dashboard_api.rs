//! The dashboard's JSON endpoints on the real binary, fed over real UDP and TCP loopback: totals
//! equal the compat API's, the series' current bucket holds the counts per transport, the top
//! lists, the feed and its cursor, the detail views; and the writer's buckets pruned with time
//! passed in (in-process, on a real store).

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, TcpStream};

use sentrypeer::event::timestamp::now_ns;
use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
use sentrypeer::store::dashboard::{Dimension, Granularity, Horizon};
use sentrypeer::store::{Store, spawn_writer};
use serde_json::Value;

use crate::support::{DEADLINE, Launch, Node, store_config, udp_from, wait_until};

fn request(method: &str, number: &str, agent: &str, tag: &str) -> Vec<u8> {
    format!(
        "{method} sip:{number}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-{tag}\r\n\
         From: <sip:scanner@127.0.0.1>;tag={tag}\r\n\
         To: <sip:{number}@127.0.0.1>\r\n\
         Call-ID: {tag}@dash\r\n\
         CSeq: 1 {method}\r\n\
         User-Agent: {agent}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn get_json(node: &Node, path: &str) -> Value {
    let (status, body) = node.get(path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn top_counts(node: &Node, dimension: &str) -> (HashMap<String, u64>, Value) {
    let body = get_json(node, &format!("/dashboard/api/top?dimension={dimension}"));
    let items = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["key"].as_str().unwrap().to_owned(),
                item["count"].as_u64().unwrap(),
            )
        })
        .collect();
    (items, body)
}

/// 3 UDP sources send 5, 3 and 2 requests; one TCP connection sends 4.
fn feed_node(node: &Node) -> u64 {
    let mut sent = 0;
    for (last, count) in [(11u8, 5), (12, 3), (13, 2)] {
        let socket = udp_from([127, 0, 0, last]);
        for i in 0..count {
            let message = request(
                "OPTIONS",
                "100",
                "friendly-scanner",
                &format!("u{last}-{i}"),
            );
            socket.send_to(&message, node.sip).unwrap();
            sent += 1;
        }
    }
    let mut stream = TcpStream::connect(node.sip).unwrap();
    for i in 0..4 {
        let message = request("REGISTER", "0044123", "sipvicious", &format!("t-{i}"));
        stream.write_all(&message).unwrap();
        sent += 1;
    }
    node.wait_committed(sent);
    drop(stream);
    sent
}

#[test]
fn dashboard_api_matches_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let node = Launch::new(dir.path()).start();
    let sent = feed_node(&node);
    let summary = get_json(&node, "/dashboard/api/summary");
    let ips = node.ip_counts();
    assert_eq!(summary["events"], sent);
    assert_eq!(summary["ip_addresses"], ips.len() as u64);
    assert_eq!(summary["numbers"], 2);
    assert_eq!(summary["events_last_hour"], sent);
    assert_eq!(summary["enrichment"]["country"], false);
    assert!(summary["generated_at"].as_str().unwrap().ends_with('Z'));

    let series = get_json(&node, "/dashboard/api/series?window=1h");
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 60);
    assert_eq!(series["bucket_seconds"], 60);
    let udp: u64 = points.iter().map(|p| p["udp"].as_u64().unwrap()).sum();
    let tcp: u64 = points.iter().map(|p| p["tcp"].as_u64().unwrap()).sum();
    assert_eq!((udp, tcp), (10, 4));
    for (window, count) in [("7d", 168), ("90d", 90)] {
        let series = get_json(&node, &format!("/dashboard/api/series?window={window}"));
        assert_eq!(series["points"].as_array().unwrap().len(), count);
        let last = series["points"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            last["udp"].as_u64().unwrap() + last["tcp"].as_u64().unwrap(),
            sent
        );
    }

    let (by_ip, body) = top_counts(&node, "ip");
    assert_eq!(by_ip, ips, "top IPs equal /ip-addresses");
    assert_eq!(body["items"][0]["key"], "127.0.0.11");
    assert_eq!(
        (body["total"].as_u64(), body["other"].as_u64()),
        (Some(sent), Some(0))
    );
    let (by_agent, _) = top_counts(&node, "user_agent");
    assert_eq!(by_agent["friendly-scanner"], 10);
    assert_eq!(by_agent["sipvicious"], 4);
    let (by_method, _) = top_counts(&node, "method");
    assert_eq!((by_method["OPTIONS"], by_method["REGISTER"]), (10, 4));
    let (by_transport, _) = top_counts(&node, "transport");
    assert_eq!((by_transport["UDP"], by_transport["TCP"]), (10, 4));
    let (by_country, body) = top_counts(&node, "country");
    assert!(by_country.is_empty());
    assert_eq!(body["total"], 0);

    feed_and_details(&node, sent);
}

/// The feed and its cursor, the detail views, the errors and the fold counters.
fn feed_and_details(node: &Node, sent: u64) {
    let feed = get_json(node, "/dashboard/api/feed");
    let events = feed["events"].as_array().unwrap();
    assert_eq!(events.len() as u64, sent.min(20));
    let cursor = feed["cursor"].as_str().unwrap().to_owned();
    let again = get_json(node, &format!("/dashboard/api/feed?after={cursor}"));
    assert_eq!(again["events"].as_array().unwrap().len(), 0);
    assert_eq!(again["cursor"], cursor.as_str());
    udp_from([127, 0, 0, 14])
        .send_to(&request("INVITE", "999", "new-agent", "late"), node.sip)
        .unwrap();
    node.wait_committed(sent + 1);
    let newer = get_json(node, &format!("/dashboard/api/feed?after={cursor}"));
    let newer_events = newer["events"].as_array().unwrap();
    assert_eq!(newer_events.len(), 1);
    assert_eq!(newer_events[0]["sip_user_agent"], "new-agent");
    assert_ne!(newer["cursor"], cursor.as_str());

    let detail = get_json(node, "/dashboard/api/ip/127.0.0.11");
    assert_eq!(detail["count"], 5);
    assert_eq!(detail["events"].as_array().unwrap().len(), 5);
    assert!(
        detail["events"][0]["sip_message"]
            .as_str()
            .is_some_and(|m| m.contains("u11-4"))
    );
    let number = get_json(node, "/dashboard/api/number/0044123");
    assert_eq!(number["count"], 4);
    assert_eq!(number["events"].as_array().unwrap().len(), 4);
    let (status, _) = node.get("/dashboard/api/ip/192.0.2.99");
    assert_eq!(status, 404);
    let (status, _) = node.get("/dashboard/api/top?dimension=colour");
    assert_eq!(status, 400);
    let metrics = node.get("/metrics").1;
    assert!(metrics.contains("sentrypeer_writer_dashboard_keys_folded_total{dimension=\"ip\"} 0"));
}

#[test]
fn dashboard_api_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let node = Launch::new(dir.path())
        .arg(&["--api-token", "s3cret"])
        .start();
    let path = "/dashboard/api/summary";
    let status = crate::support::http_get(node.api, path, None).unwrap().0;
    assert_eq!(status, 401);
    let (status, body) = crate::support::http_get(node.api, path, Some("s3cret")).unwrap();
    assert_eq!(status, 200, "{body}");
}

fn event_at(timestamp_ns: u64, ip: IpAddr) -> Event {
    Event::new(&EventParts {
        timestamp_ns,
        uuid: uuid::Uuid::new_v4(),
        node_id: uuid::Uuid::from_u128(1),
        transport: Transport::Udp,
        collected_method: CollectedMethod::Passive,
        source: std::net::SocketAddr::new(ip, 5060),
        destination: "127.0.0.1:5060".parse().unwrap(),
        method: b"OPTIONS",
        called_number: Some(b"100"),
        user_agent: Some(b"friendly-scanner"),
        message: b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n\r\n",
        source_verified: false,
        auth_username: None,
    })
}

fn bucket_count(store: &Store, granularity: Granularity, horizon_now_s: u64) -> usize {
    let reader = store.read().unwrap();
    reader
        .dashboard_buckets(granularity, Dimension::Transport, 0, horizon_now_s)
        .unwrap()
        .len()
}

#[test]
fn dashboard_buckets_pruned_with_time_passed_in() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path(), 64);
    let store = Store::open(&config).unwrap();
    let (sender, receiver) = crossbeam_channel::bounded(64);
    let outputs = sentrypeer::config::OutputConfig {
        json_log_file: None,
        syslog: false,
        syslog_socket: sentrypeer::config::defaults::SYSLOG_SOCKET.into(),
        verified_only: false,
    };
    let writer = spawn_writer(store.clone(), receiver, &outputs, &config).unwrap();
    let now = now_ns();
    for i in 0..10u8 {
        sender
            .send(event_at(now + u64::from(i), IpAddr::from([10, 0, 0, i])))
            .unwrap();
    }
    wait_until("10 events committed", DEADLINE, || {
        writer.commits().last_key() >= 10
    });
    drop(sender);
    writer.join();
    let now_s = now / 1_000_000_000;
    let far = now_s + 400 * 86_400;
    for granularity in Granularity::ALL {
        assert_eq!(bucket_count(&store, granularity, far), 1, "{granularity:?}");
    }
    let horizon = |offset_s: u64, retention_s: Option<u64>| Horizon {
        now_s: now_s + offset_s,
        retention_s,
    };
    // Still within every keep: nothing goes.
    assert_eq!(store.prune_dashboard(&horizon(60, None)).unwrap(), 0);
    // Three hours on: the minute bucket goes, the hour and day stay.
    let removed = store.prune_dashboard(&horizon(3 * 3_600, None)).unwrap();
    assert_eq!(removed, 5, "transport, ip, number, user agent, method");
    assert_eq!(bucket_count(&store, Granularity::Minute, far), 0);
    assert_eq!(bucket_count(&store, Granularity::Hour, far), 1);
    // Ten days on: the hour goes too.
    store.prune_dashboard(&horizon(10 * 86_400, None)).unwrap();
    assert_eq!(bucket_count(&store, Granularity::Hour, far), 0);
    assert_eq!(bucket_count(&store, Granularity::Day, far), 1);
    // A one-day retention takes the day bucket two days on (the keep alone would not).
    store.prune_dashboard(&horizon(2 * 86_400, None)).unwrap();
    assert_eq!(bucket_count(&store, Granularity::Day, far), 1);
    store
        .prune_dashboard(&horizon(2 * 86_400, Some(86_400)))
        .unwrap();
    assert_eq!(bucket_count(&store, Granularity::Day, far), 0);
}
