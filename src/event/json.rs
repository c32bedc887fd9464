//! The JSON-log object of compat.md §3: one compact line per event.
//!
//! sonic-rs's serde serializer does the escaping (quotes, backslashes, control characters) with
//! SIMD: the SIP message is most of a line, and it escapes a CR LF every few dozen bytes.
//! serde_json escapes byte by byte, and simd-json falls back to its byte loop for the rest of a
//! string at its first escape; sonic-rs goes back to SIMD after each one (docs/benchmarks.md,
//! "The JSON line"). Invalid UTF-8 in the message or fields is replaced before
//! serialising. `source_country`, `source_asn` and `source_as_org` (strings, `NOT_FOUND` on a
//! miss) are written only for an enriched event (a database was configured when it was stored);
//! otherwise the line is byte for byte what it was before enrichment existed. A property test checks
//! every line byte for byte against serde_json's, and that serde_json reads every field back.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Serialize;
use sonic_rs::writer::WriteExt;
use uuid::Uuid;

use super::timestamp::{TimestampText, timestamp_text};
use super::{Enrichment, Event};

/// The application name written into every event.
pub const APP_NAME: &str = "sentrypeer";

/// The borrowed JSON-log object; field order is the order of compat.md §3, then the keys added
/// in §8 (`source_verified`, `auth_username`, then the enrichment's, only when enriched).
#[derive(Serialize)]
struct JsonEvent<'a> {
    app_name: &'static str,
    app_version: &'static str,
    event_timestamp: TimestampText,
    event_uuid: Uuid,
    created_by_node_id: Uuid,
    collected_method: &'static str,
    transport_type: &'static str,
    source_ip: IpAddr,
    destination_ip: IpAddr,
    called_number: Cow<'a, str>,
    sip_method: Cow<'a, str>,
    sip_user_agent: Cow<'a, str>,
    sip_message: Cow<'a, str>,
    source_port: u16,
    destination_port: u16,
    source_verified: bool,
    auth_username: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_country: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_asn: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_as_org: Option<&'a str>,
}

impl<'a> JsonEvent<'a> {
    fn new(event: &'a Event) -> Self {
        Self {
            app_name: APP_NAME,
            app_version: env!("CARGO_PKG_VERSION"),
            event_timestamp: timestamp_text(event.timestamp_ns),
            event_uuid: event.uuid,
            created_by_node_id: event.node_id,
            collected_method: event.collected_method.as_str(),
            transport_type: event.transport.as_str(),
            source_ip: super::display_ip(event.source),
            destination_ip: super::display_ip(event.destination),
            called_number: event.called_number_text(),
            sip_method: event.method_text(),
            sip_user_agent: event.user_agent_text(),
            sip_message: event.message_text(),
            source_port: event.source.port(),
            destination_port: event.destination.port(),
            source_verified: event.source_verified,
            auth_username: event.auth_username_text(),
            source_country: event.enrichment.as_deref().map(Enrichment::country_text),
            source_asn: event.enrichment.as_deref().map(Enrichment::asn_text),
            source_as_org: event.enrichment.as_deref().map(Enrichment::as_org_text),
        }
    }
}

/// Appends the event's JSON object (no trailing newline) to `out`: a `Vec<u8>`, or a
/// `BytesMut`'s writer (sonic-rs writes into the spare room of either).
pub fn write_json(event: &Event, out: impl WriteExt) -> std::io::Result<()> {
    sonic_rs::to_writer(out, &JsonEvent::new(event)).map_err(std::io::Error::other)
}

/// The event's JSON object as a string (no trailing newline).
pub fn to_json(event: &Event) -> String {
    let mut out = Vec::with_capacity(512 + event.message().len());
    // Writing into a Vec cannot fail, and every field is valid UTF-8 after replacement.
    let _ = write_json(event, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use uuid::Uuid;

    use super::*;
    use crate::event::{CollectedMethod, EventParts, Transport};

    fn hostile() -> Event {
        let source: SocketAddr = "[2001:db8::1]:5070".parse().unwrap();
        Event::new(&EventParts {
            timestamp_ns: 5,
            uuid: Uuid::from_u128(0xabc),
            node_id: Uuid::from_u128(0xdef),
            transport: Transport::Tls,
            collected_method: CollectedMethod::Responsive,
            source,
            destination: "10.1.2.3:5061".parse().unwrap(),
            method: b"INV\"ITE",
            called_number: Some(b"00\\44\x00\xff"),
            user_agent: Some(b"ua\r\n\t\x1b"),
            message: b"INVITE \xc3\x28 \"quoted\" \\ \x00 end",
            source_verified: false,
            auth_username: None,
        })
    }

    #[test]
    fn json_hostile_roundtrip() {
        let event = hostile();
        let text = to_json(&event);
        assert!(!text.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let object = value.as_object().unwrap();
        assert_eq!(object.len(), 17);
        assert_eq!(object["app_name"], "sentrypeer");
        assert_eq!(object["event_timestamp"], "1970-01-01 00:00:00.000000005");
        assert_eq!(object["event_uuid"], "00000000-0000-0000-0000-000000000abc");
        assert_eq!(object["collected_method"], "responsive");
        assert_eq!(object["transport_type"], "TLS");
        assert_eq!(object["source_ip"], "2001:db8::1");
        assert_eq!(object["destination_ip"], "10.1.2.3");
        assert_eq!(object["sip_method"], "INV\"ITE");
        assert_eq!(object["called_number"], "00\\44\u{0}\u{fffd}");
        assert_eq!(object["sip_user_agent"], "ua\r\n\t\u{1b}");
        assert_eq!(
            object["sip_message"],
            "INVITE \u{fffd}( \"quoted\" \\ \u{0} end"
        );
        assert_eq!(object["source_port"], 5070);
        assert_eq!(object["destination_port"], 5061);
        assert_eq!(object["source_verified"], false);
        assert_eq!(object["auth_username"], "NOT_FOUND");
        let mut parts = event.parts();
        parts.source_verified = true;
        parts.auth_username = Some(b"1\"00\x01\xff");
        let text = to_json(&Event::new(&parts));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["source_verified"], true);
        assert_eq!(value["auth_username"], "1\"00\u{1}\u{fffd}");
    }

    #[test]
    fn json_not_found_fields() {
        let event = hostile();
        let mut parts = event.parts();
        parts.called_number = None;
        parts.user_agent = None;
        let value: serde_json::Value = serde_json::from_str(&to_json(&Event::new(&parts))).unwrap();
        assert_eq!(value["called_number"], "NOT_FOUND");
        assert_eq!(value["sip_user_agent"], "NOT_FOUND");
    }

    /// Without enrichment the line is exactly what it was before enrichment existed.
    #[test]
    fn json_without_enrichment_unchanged() {
        let event = Event::new(&EventParts {
            timestamp_ns: 1_764_326_400_000_000_123,
            uuid: Uuid::from_u128(1),
            node_id: Uuid::from_u128(2),
            transport: Transport::Udp,
            collected_method: CollectedMethod::Passive,
            source: "203.0.113.5:5070".parse().unwrap(),
            destination: "127.0.0.1:5060".parse().unwrap(),
            method: b"OPTIONS",
            called_number: Some(b"100"),
            user_agent: None,
            message: b"OPTIONS sip:100@x SIP/2.0\r\n\r\n",
            source_verified: false,
            auth_username: None,
        });
        let expected = format!(
            "{{\"app_name\":\"sentrypeer\",\"app_version\":\"{}\",\
             \"event_timestamp\":\"2025-11-28 10:40:00.000000123\",\
             \"event_uuid\":\"00000000-0000-0000-0000-000000000001\",\
             \"created_by_node_id\":\"00000000-0000-0000-0000-000000000002\",\
             \"collected_method\":\"passive\",\"transport_type\":\"UDP\",\
             \"source_ip\":\"203.0.113.5\",\"destination_ip\":\"127.0.0.1\",\
             \"called_number\":\"100\",\"sip_method\":\"OPTIONS\",\
             \"sip_user_agent\":\"NOT_FOUND\",\
             \"sip_message\":\"OPTIONS sip:100@x SIP/2.0\\r\\n\\r\\n\",\
             \"source_port\":5070,\"destination_port\":5060,\"source_verified\":false,\
             \"auth_username\":\"NOT_FOUND\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(to_json(&event), expected);
        // Enriched: the same line with the three keys appended, misses as NOT_FOUND.
        let mut enriched = event.clone();
        enriched.enrichment = Some(Box::new(Enrichment {
            country: Some(*b"NL"),
            asn: Some(64_500),
            as_org: Some("Test \"Net\"".into()),
        }));
        let tail = r#","source_country":"NL","source_asn":"64500","source_as_org":"Test \"Net\""}"#;
        assert_eq!(
            to_json(&enriched),
            format!("{}{tail}", expected.trim_end_matches('}'))
        );
        enriched.enrichment = Some(Box::default());
        let value: serde_json::Value = serde_json::from_str(&to_json(&enriched)).unwrap();
        for key in ["source_country", "source_asn", "source_as_org"] {
            assert_eq!(value[key], "NOT_FOUND", "{key}");
        }
    }

    proptest::proptest! {
        /// Any bytes in the text fields: one line, byte for byte what serde_json writes for the
        /// same object (the oracle), and serde_json reads every field back as the lossy UTF-8
        /// text of the input.
        #[test]
        fn json_reads_back_any_bytes(
            message in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            agent in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            number in proptest::collection::vec(proptest::num::u8::ANY, 1..20),
            method in proptest::collection::vec(proptest::num::u8::ANY, 1..12),
        ) {
            let event = hostile();
            let mut parts = event.parts();
            parts.message = &message;
            parts.user_agent = Some(&agent);
            parts.called_number = Some(&number);
            parts.method = &method;
            let event = Event::new(&parts);
            let text = to_json(&event);
            proptest::prop_assert!(!text.contains('\n') && !text.contains('\r'));
            let oracle = serde_json::to_string(&JsonEvent::new(&event)).unwrap();
            proptest::prop_assert_eq!(&text, &oracle);
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            let lossy = |bytes: &[u8]| Some(String::from_utf8_lossy(bytes).into_owned());
            let field = |name: &str| value[name].as_str().map(str::to_owned);
            proptest::prop_assert_eq!(field("sip_message"), lossy(&message));
            proptest::prop_assert_eq!(field("sip_user_agent"), lossy(&agent));
            proptest::prop_assert_eq!(field("called_number"), lossy(&number));
            proptest::prop_assert_eq!(field("sip_method"), lossy(&method));
        }
    }
}
