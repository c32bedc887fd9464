//! Response bodies: the JSON objects of compat.md §5 and the text, nftables and ipset formats.
//!
//! Pure: items in, a body out. serde_json does all JSON escaping.
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

use serde::Serialize;

use crate::config::limits::{API_IPSET_ELEMENTS_MAX, API_LIST_ITEM_BYTES_TYPICAL};
use crate::event::Event;
use crate::event::json::write_json;
use crate::event::timestamp::{TimestampText, format_timestamp, timestamp_text};
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

/// An IP address as a JSON string, formatted on the stack first: `Display` writes an IPv4
/// address in seven pieces, and serde_json would start an escaping pass for each.
struct IpText(IpAddr);

/// The longest IP text: `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
const IP_TEXT_BYTES_MAX: usize = 45;

impl Serialize for IpText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = arrayvec::ArrayString::<IP_TEXT_BYTES_MAX>::new();
        let written = match self.0 {
            // Dotted decimal, the octets through itoa: `Display` pads each through `fmt`.
            IpAddr::V4(v4) => v4.octets().iter().enumerate().try_for_each(|(at, octet)| {
                if at > 0 {
                    text.try_push('.').map_err(|_| std::fmt::Error)?;
                }
                text.try_push_str(itoa::Buffer::new().format(*octet))
                    .map_err(|_| std::fmt::Error)
            }),
            IpAddr::V6(_) => write!(text, "{}", self.0),
        };
        match written {
            Ok(()) => serializer.serialize_str(&text),
            Err(_) => serializer.collect_str(&self.0),
        }
    }
}

/// A count as a JSON string (compat.md §5 keeps the original's quoted counts).
struct CountText(u64);

impl Serialize for CountText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(itoa::Buffer::new().format(self.0))
    }
}

#[derive(Serialize)]
struct IpItem {
    ip_address: IpText,
    seen_last: TimestampText,
    seen_count: CountText,
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
    seen_count: CountText,
}

/// The items of a list, each rendered on the fly.
struct IpItems<'a>(&'a [IpSeen]);
struct NumberItems<'a>(&'a [NumberSeen]);

impl Serialize for IpItems<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&IpItem {
                ip_address: IpText(item.ip),
                seen_last: timestamp_text(item.last_seen_ns),
                seen_count: CountText(item.count),
                verified: item.verified_ns.is_some(),
                source_country: item.source.map(|tag| country_text(tag.country)),
                source_asn: item.source.map(|tag| asn_text(tag.asn)),
            })?;
        }
        seq.end()
    }
}

impl Serialize for NumberItems<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&NumberItem {
                called_number: &item.number,
                seen_last: timestamp_text(item.last_seen_ns),
                seen_count: CountText(item.count),
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct IpList<'a> {
    ip_addresses_total: u64,
    ip_addresses: IpItems<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<&'a str>,
}

#[derive(Serialize)]
struct NumberList<'a> {
    called_numbers_total: u64,
    called_numbers: NumberItems<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<&'a str>,
}

/// A list body as bytes: serde_json writes only UTF-8, and the response takes bytes, so the
/// 10 MB of a 100k-entry list are not checked again.
fn to_json(value: &impl Serialize, items: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + items * API_LIST_ITEM_BYTES_TYPICAL);
    // Serialising into a Vec only fails for non-string map keys, which these types do not have.
    let _ = serde_json::to_writer(&mut out, value);
    out
}

/// The `/ip-addresses` body; `next` only when another page follows.
pub fn ip_list_json(total: u64, items: &[IpSeen], next: Option<&PageCursor>) -> Vec<u8> {
    let next = next.map(PageCursor::to_hex);
    let list = IpList {
        ip_addresses_total: total,
        ip_addresses: IpItems(items),
        next: next.as_deref(),
    };
    to_json(&list, items.len())
}

/// The `/numbers` body; `next` only when another page follows.
pub fn number_list_json(total: u64, items: &[NumberSeen], next: Option<&PageCursor>) -> Vec<u8> {
    let next = next.map(PageCursor::to_hex);
    let list = NumberList {
        called_numbers_total: total,
        called_numbers: NumberItems(items),
        next: next.as_deref(),
    };
    to_json(&list, items.len())
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
        let _ = write_json(event, out);
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
