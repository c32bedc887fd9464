//! Response bodies: the JSON objects of compat.md §5 and the text, nftables and ipset formats.
//!
//! Pure: items in, a body out. serde_json does all JSON escaping; the list bodies write their
//! literal keys and their digits-only texts (IPs, timestamps, counts) directly, checked byte for
//! byte against serde-derived types by an oracle test.
//!
//! Never: does I/O, writes an nftables or ipset script that a non-IP value could break (only
//! parsed [`IpAddr`]s go in).

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::limits::{API_IPSET_ELEMENTS_MAX, API_LIST_ITEM_BYTES_TYPICAL};
use crate::event::Event;
use crate::event::json::write_json;
use crate::event::timestamp::{format_timestamp, timestamp_text};
use crate::store::{IpSeen, NumberSeen, PageCursor};

/// The version in the `X-SentryPeer-Version` header and `/health-check`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The nftables table and sets that `?format=nftables` fills.
pub const NFT_TABLE: &str = "sentrypeer";
pub const NFT_SET_V4: &str = "bad_actors_v4";
pub const NFT_SET_V6: &str = "bad_actors_v6";

/// The ipset sets that `?format=ipset` fills (capacity: [`API_IPSET_ELEMENTS_MAX`]).
pub const IPSET_V4: &str = "sentrypeer_v4";
pub const IPSET_V6: &str = "sentrypeer_v6";

/// `{"<key>": "<value>"}`.
pub fn object(key: &str, value: &str) -> String {
    let mut map = serde_json::Map::with_capacity(1);
    map.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
    serde_json::Value::Object(map).to_string()
}

/// The `/ip-addresses/{ip}` body of a known IP: the original's `bad_actor_found`, then whether
/// and since when it is verified (`verified_at` is `null` when it is not).
pub fn ip_found(seen: &IpSeen, as_org: Option<&str>) -> String {
    let mut body = serde_json::json!({
        "bad_actor_found": seen.ip.to_string(),
        "verified": seen.verified_ns.is_some(),
        "verified_at": seen.verified_ns.map(format_timestamp),
    });
    if let (Some(tag), Some(object)) = (seen.source, body.as_object_mut()) {
        object.insert("source_country".into(), country_text(tag.country).into());
        object.insert("source_asn".into(), asn_text(tag.asn).into());
        let org = as_org.filter(|_| tag.asn.is_some());
        object.insert(
            "source_as_org".into(),
            org.unwrap_or(crate::event::NOT_FOUND).into(),
        );
    }
    body.to_string()
}

/// A source's country as the JSON log writes it (`NOT_FOUND` on a miss).
fn country_text(country: Option<[u8; 2]>) -> String {
    country
        .and_then(|code| std::str::from_utf8(&code).ok().map(str::to_owned))
        .unwrap_or_else(|| crate::event::NOT_FOUND.to_owned())
}

/// A source's AS number as the JSON log writes it: decimal text, `NOT_FOUND` on a miss.
fn asn_text(asn: Option<u32>) -> String {
    asn.map_or_else(|| crate::event::NOT_FOUND.to_owned(), |asn| asn.to_string())
}

/// The `/health-check` body.
pub fn health_check() -> String {
    serde_json::json!({
        "status": "OK",
        "message": "Hello from SentryPeer!",
        "version": VERSION,
    })
    .to_string()
}

/// Appends an IP address's `Display` text: IPv4 octets through `itoa` (`Display` pads each
/// through `fmt`), IPv6 through `Display`.
fn push_ip_text(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (at, octet) in v4.octets().iter().enumerate() {
                if at > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(*octet).as_bytes());
            }
        }
        // Writing into a Vec cannot fail.
        IpAddr::V6(_) => {
            let _ = write!(FmtBytes(out), "{ip}");
        }
    }
}

/// Appends `text` as a JSON string, escaped by serde_json.
fn push_json_str(out: &mut Vec<u8>, text: &str) {
    // Serialising a `str` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Appends `"seen_last":"…","seen_count":"…"`: a timestamp and a decimal count, whose bytes
/// (digits, `-`, ` `, `:`, `.`) JSON never escapes.
fn push_seen(out: &mut Vec<u8>, last_seen_ns: u64, count: u64) {
    out.extend_from_slice(b"\"seen_last\":\"");
    out.extend_from_slice(timestamp_text(last_seen_ns).as_str().as_bytes());
    out.extend_from_slice(b"\",\"seen_count\":\"");
    out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
    out.push(b'"');
}

/// Appends one `/ip-addresses` item. The keys are literals and the IP, timestamp and count are
/// ASCII that JSON never escapes; the source's country, which comes from an MMDB file, goes
/// through serde_json.
fn push_ip_item(out: &mut Vec<u8>, item: &IpSeen) {
    out.extend_from_slice(b"{\"ip_address\":\"");
    push_ip_text(out, item.ip);
    out.extend_from_slice(b"\",");
    push_seen(out, item.last_seen_ns, item.count);
    out.extend_from_slice(if item.verified_ns.is_some() {
        b",\"verified\":true"
    } else {
        b",\"verified\":false"
    });
    if let Some(tag) = item.source {
        out.extend_from_slice(b",\"source_country\":");
        push_json_str(out, &country_text(tag.country));
        out.extend_from_slice(b",\"source_asn\":");
        push_json_str(out, &asn_text(tag.asn));
    }
    out.push(b'}');
}

/// Appends one `/numbers` item; the number, which an attacker chose, goes through serde_json.
fn push_number_item(out: &mut Vec<u8>, item: &NumberSeen) {
    out.extend_from_slice(b"{\"called_number\":");
    push_json_str(out, &item.number);
    out.push(b',');
    push_seen(out, item.last_seen_ns, item.count);
    out.push(b'}');
}

/// A list body, `{"<total_key>":N,"<items_key>":[…]}` with `"next"` when another page follows,
/// in the key order the serde-derived types of the tests' oracle write. Assembled by hand
/// because serde_json's per-field escaping pass was most of a 100k-entry list's rendering.
/// The keys are this module's literals, which need no escaping.
fn list_json<T>(
    total_key: &'static str,
    items_key: &'static str,
    total: u64,
    items: &[T],
    next: Option<&PageCursor>,
    push_item: fn(&mut Vec<u8>, &T),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + items.len() * API_LIST_ITEM_BYTES_TYPICAL);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(total_key.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(itoa::Buffer::new().format(total).as_bytes());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(items_key.as_bytes());
    out.extend_from_slice(b"\":[");
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        push_item(&mut out, item);
    }
    out.push(b']');
    if let Some(next) = next {
        out.extend_from_slice(b",\"next\":");
        push_json_str(&mut out, &next.to_hex());
    }
    out.push(b'}');
    out
}

/// The `/ip-addresses` body; `next` only when another page follows.
pub fn ip_list_json(total: u64, items: &[IpSeen], next: Option<&PageCursor>) -> Vec<u8> {
    list_json(
        "ip_addresses_total",
        "ip_addresses",
        total,
        items,
        next,
        push_ip_item,
    )
}

/// The `/numbers` body; `next` only when another page follows.
pub fn number_list_json(total: u64, items: &[NumberSeen], next: Option<&PageCursor>) -> Vec<u8> {
    list_json(
        "called_numbers_total",
        "called_numbers",
        total,
        items,
        next,
        push_number_item,
    )
}

/// One value per line (each line ends with `\n`). Line breaks inside a value become spaces, so
/// a line is always one value.
pub fn lines<T: std::fmt::Display>(values: impl Iterator<Item = T>) -> String {
    let mut out = String::new();
    for value in values {
        let start = out.len();
        let _ = write!(out, "{value}");
        if out.get(start..).is_some_and(|s| s.contains(['\n', '\r'])) {
            let cleaned = out
                .get(start..)
                .unwrap_or_default()
                .replace(['\n', '\r'], " ");
            out.truncate(start);
            out.push_str(&cleaned);
        }
        out.push('\n');
    }
    out
}

/// An `nft -f` script: declares table `inet sentrypeer` with sets `bad_actors_v4` and
/// `bad_actors_v6`, flushes them, then adds `ips` (so loading it replaces the sets' contents).
pub fn nftables(ips: &[IpAddr]) -> String {
    let mut out = String::with_capacity(256 + ips.len() * 20);
    let _ = writeln!(
        out,
        "# SentryPeer bad actors: load with `nft -f <this file>`"
    );
    let _ = writeln!(out, "table inet {NFT_TABLE} {{");
    let _ = writeln!(out, "\tset {NFT_SET_V4} {{\n\t\ttype ipv4_addr\n\t}}");
    let _ = writeln!(out, "\tset {NFT_SET_V6} {{\n\t\ttype ipv6_addr\n\t}}");
    let _ = writeln!(out, "}}");
    let _ = writeln!(out, "flush set inet {NFT_TABLE} {NFT_SET_V4}");
    let _ = writeln!(out, "flush set inet {NFT_TABLE} {NFT_SET_V6}");
    for (set, want_v4) in [(NFT_SET_V4, true), (NFT_SET_V6, false)] {
        let mut members = ips.iter().filter(|ip| ip.is_ipv4() == want_v4).peekable();
        if members.peek().is_none() {
            continue;
        }
        let _ = writeln!(out, "add element inet {NFT_TABLE} {set} {{");
        while let Some(ip) = members.next() {
            let comma = if members.peek().is_some() { "," } else { "" };
            let _ = writeln!(out, "\t{ip}{comma}");
        }
        let _ = writeln!(out, "}}");
    }
    out
}

/// An `ipset restore` script: creates `sentrypeer_v4` / `sentrypeer_v6` (`-exist`: no error if
/// they exist) and adds `ips` (`-exist`: no error for a member already there).
pub fn ipset(ips: &[IpAddr]) -> String {
    let mut out = String::with_capacity(128 + ips.len() * 40);
    let _ = writeln!(
        out,
        "create {IPSET_V4} hash:ip family inet maxelem {API_IPSET_ELEMENTS_MAX} -exist"
    );
    let _ = writeln!(
        out,
        "create {IPSET_V6} hash:ip family inet6 maxelem {API_IPSET_ELEMENTS_MAX} -exist"
    );
    for ip in ips {
        let set = if ip.is_ipv4() { IPSET_V4 } else { IPSET_V6 };
        let _ = writeln!(out, "add {set} {ip} -exist");
    }
    out
}

/// The `/events` body: `{"events_total": N, "events": [<JSON-log objects>]}`.
pub fn events_json(total: u64, events: &[(u64, Event)]) -> String {
    let mut out = Vec::with_capacity(64 + events.len() * 1024);
    let _ = write!(
        FmtBytes(&mut out),
        "{{\"events_total\":{total},\"events\":["
    );
    write_events_tail(events, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the events as JSON-log objects separated by commas, then `]}`: the end of a body
/// whose `"events":[` is already written (`/events`, the dashboard's feed and detail views).
pub fn write_events_tail(events: &[(u64, Event)], out: &mut Vec<u8>) {
    for (index, (_, event)) in events.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        // Writing into a Vec cannot fail.
        let _ = write_json(event, &mut *out);
    }
    out.extend_from_slice(b"]}");
}

/// `fmt::Write` into a byte vector.
struct FmtBytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for FmtBytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    /// The list types as serde derives them: the oracle of the hand-assembled bodies.
    mod oracle {
        use serde::Serialize;

        use super::{IpSeen, NumberSeen, PageCursor, asn_text, country_text};
        use crate::event::timestamp::{TimestampText, timestamp_text};

        #[derive(Serialize)]
        struct IpItem {
            ip_address: String,
            seen_last: TimestampText,
            seen_count: String,
            verified: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            source_country: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            source_asn: Option<String>,
        }

        #[derive(Serialize)]
        struct NumberItem<'a> {
            called_number: &'a str,
            seen_last: TimestampText,
            seen_count: String,
        }

        #[derive(Serialize)]
        struct IpList {
            ip_addresses_total: u64,
            ip_addresses: Vec<IpItem>,
            #[serde(skip_serializing_if = "Option::is_none")]
            next: Option<String>,
        }

        #[derive(Serialize)]
        struct NumberList<'a> {
            called_numbers_total: u64,
            called_numbers: Vec<NumberItem<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            next: Option<String>,
        }

        pub(super) fn ip_list(total: u64, items: &[IpSeen], next: Option<&PageCursor>) -> Vec<u8> {
            let list = IpList {
                ip_addresses_total: total,
                ip_addresses: items
                    .iter()
                    .map(|item| IpItem {
                        ip_address: item.ip.to_string(),
                        seen_last: timestamp_text(item.last_seen_ns),
                        seen_count: item.count.to_string(),
                        verified: item.verified_ns.is_some(),
                        source_country: item.source.map(|tag| country_text(tag.country)),
                        source_asn: item.source.map(|tag| asn_text(tag.asn)),
                    })
                    .collect(),
                next: next.map(PageCursor::to_hex),
            };
            serde_json::to_vec(&list).unwrap()
        }

        pub(super) fn number_list(
            total: u64,
            items: &[NumberSeen],
            next: Option<&PageCursor>,
        ) -> Vec<u8> {
            let list = NumberList {
                called_numbers_total: total,
                called_numbers: items
                    .iter()
                    .map(|item| NumberItem {
                        called_number: &item.number,
                        seen_last: timestamp_text(item.last_seen_ns),
                        seen_count: item.count.to_string(),
                    })
                    .collect(),
                next: next.map(PageCursor::to_hex),
            };
            serde_json::to_vec(&list).unwrap()
        }
    }

    fn any_ip_seen() -> impl proptest::strategy::Strategy<Value = IpSeen> {
        use proptest::prelude::*;
        let tag = (
            proptest::option::of(any::<[u8; 2]>()),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(country, asn)| crate::store::SourceTag { country, asn });
        (
            any::<IpAddr>(),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(tag),
        )
            .prop_map(|(ip, last_seen_ns, count, verified_ns, source)| IpSeen {
                ip,
                first_seen_ns: 1,
                last_seen_ns,
                count,
                verified_ns,
                source,
            })
    }

    fn any_number_seen() -> impl proptest::strategy::Strategy<Value = NumberSeen> {
        use proptest::prelude::*;
        (any::<String>(), any::<u64>(), any::<u64>()).prop_map(|(number, last_seen_ns, count)| {
            NumberSeen {
                number,
                first_seen_ns: 1,
                last_seen_ns,
                count,
            }
        })
    }

    proptest::proptest! {
        /// Oracle: the hand-assembled list bodies equal serde_json's rendering of the derived
        /// types, byte for byte, for any items (any IP, count and time, verified or not, any
        /// source tag, any number text), total and cursor.
        #[test]
        fn list_bodies_match_serde(
            ips in proptest::collection::vec(any_ip_seen(), 0..8),
            numbers in proptest::collection::vec(any_number_seen(), 0..8),
            total in proptest::prelude::any::<u64>(),
            next in proptest::option::of("([0-9a-f]{2}){0,40}"),
        ) {
            let next = next.and_then(|hex| PageCursor::from_hex(&hex));
            proptest::prop_assert_eq!(
                String::from_utf8(ip_list_json(total, &ips, next.as_ref())).unwrap(),
                String::from_utf8(oracle::ip_list(total, &ips, next.as_ref())).unwrap()
            );
            proptest::prop_assert_eq!(
                String::from_utf8(number_list_json(total, &numbers, next.as_ref())).unwrap(),
                String::from_utf8(oracle::number_list(total, &numbers, next.as_ref())).unwrap()
            );
        }
    }

    /// Oracle: a list item's IP and count are the `Display` texts, for any address and count
    /// (the longest IPv6 text and IPv4-mapped addresses included).
    fn assert_item_texts(ip: IpAddr, count: u64) {
        let items = [IpSeen {
            ip,
            first_seen_ns: 1,
            last_seen_ns: 2,
            count,
            verified_ns: None,
            source: None,
        }];
        let body: serde_json::Value =
            serde_json::from_slice(&ip_list_json(1, &items, None)).unwrap();
        assert_eq!(body["ip_addresses"][0]["ip_address"], ip.to_string());
        assert_eq!(body["ip_addresses"][0]["seen_count"], count.to_string());
    }

    #[test]
    fn list_item_texts_match_display_at_the_edges() {
        for (ip, count) in [
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", u64::MAX),
            ("::ffff:255.255.255.255", 0),
            ("255.255.255.255", 1),
            ("::", 10),
        ] {
            assert_item_texts(ip.parse().unwrap(), count);
        }
    }

    proptest::proptest! {
        #[test]
        fn list_item_texts_match_display(ip in proptest::prelude::any::<IpAddr>(), count in proptest::prelude::any::<u64>()) {
            assert_item_texts(ip, count);
        }
    }

    #[test]
    fn render_ip_list_types() {
        let items = [IpSeen {
            ip: "10.0.0.1".parse().unwrap(),
            first_seen_ns: 1,
            last_seen_ns: 1_764_326_400_000_000_123,
            count: 42,
            verified_ns: None,
            source: None,
        }];
        let body: serde_json::Value =
            serde_json::from_slice(&ip_list_json(7, &items, None)).unwrap();
        assert_eq!(body["ip_addresses_total"], 7);
        assert_eq!(body["ip_addresses"][0]["ip_address"], "10.0.0.1");
        assert_eq!(
            body["ip_addresses"][0]["seen_last"],
            "2025-11-28 10:40:00.000000123"
        );
        assert_eq!(body["ip_addresses"][0]["seen_count"], "42");
        assert!(body.get("next").is_none());
        let cursor = PageCursor::from_hex("00ff").unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(&ip_list_json(7, &items, Some(&cursor))).unwrap();
        assert_eq!(body["next"], "00ff");
    }

    #[test]
    fn render_number_list_escapes() {
        let items = [NumberSeen {
            number: "12\"3\n".into(),
            first_seen_ns: 1,
            last_seen_ns: 2,
            count: 3,
        }];
        let body: serde_json::Value =
            serde_json::from_slice(&number_list_json(1, &items, None)).unwrap();
        assert_eq!(body["called_numbers"][0]["called_number"], "12\"3\n");
        assert_eq!(body["called_numbers"][0]["seen_count"], "3");
    }

    #[test]
    fn render_lines_one_value_per_line() {
        assert_eq!(lines(["a", "b\nc"].iter()), "a\nb c\n");
        assert_eq!(lines(std::iter::empty::<&str>()), "");
    }

    #[test]
    fn render_nftables_sets() {
        let script = nftables(&ips(&["10.0.0.1", "2001:db8::1", "10.0.0.2"]));
        assert!(script.contains("table inet sentrypeer {"));
        assert!(script.contains("set bad_actors_v4 {\n\t\ttype ipv4_addr\n"));
        assert!(script.contains("set bad_actors_v6 {\n\t\ttype ipv6_addr\n"));
        assert!(
            script.contains(
                "add element inet sentrypeer bad_actors_v4 {\n\t10.0.0.1,\n\t10.0.0.2\n}\n"
            )
        );
        assert!(script.contains("add element inet sentrypeer bad_actors_v6 {\n\t2001:db8::1\n}\n"));
        let empty = nftables(&[]);
        assert!(!empty.contains("add element"));
        assert!(empty.contains("flush set inet sentrypeer bad_actors_v6"));
    }

    #[test]
    fn render_ipset_script() {
        let script = ipset(&ips(&["10.0.0.1", "2001:db8::1"]));
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(
            lines,
            [
                "create sentrypeer_v4 hash:ip family inet maxelem 1048576 -exist",
                "create sentrypeer_v6 hash:ip family inet6 maxelem 1048576 -exist",
                "add sentrypeer_v4 10.0.0.1 -exist",
                "add sentrypeer_v6 2001:db8::1 -exist",
            ]
        );
    }

    #[test]
    fn render_object_and_health() {
        assert_eq!(
            object("message", "No bad actors found"),
            r#"{"message":"No bad actors found"}"#
        );
        let health: serde_json::Value = serde_json::from_str(&health_check()).unwrap();
        assert_eq!(health["version"], VERSION);
    }
}
