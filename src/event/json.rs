//! The JSON-log object of compat.md §3: one compact line per event.
//!
//! simd-json's serde serializer does the escaping (quotes, backslashes, control characters) with
//! SIMD: the SIP message is most of a line, and serde_json's byte-at-a-time escaping was the
//! costliest step of the whole log. Invalid UTF-8 in the message or fields is replaced before
//! serialising. A property test checks that serde_json reads back every field unchanged.

use std::borrow::Cow;
use std::io::Write;
use std::net::IpAddr;

use serde::Serialize;
use uuid::Uuid;

use super::Event;
use super::timestamp::{TimestampText, timestamp_text};

/// The application name written into every event.
pub const APP_NAME: &str = "sentrypeer";

/// The borrowed JSON-log object; field order is the order of compat.md §3, then the keys added
/// in §8 (`source_verified`, `auth_username`).
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
        }
    }
}

/// Appends the event's JSON object (no trailing newline) to `out`.
pub fn write_json(event: &Event, out: &mut impl Write) -> std::io::Result<()> {
    simd_json::serde::to_writer(out, &JsonEvent::new(event)).map_err(std::io::Error::from)
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

    proptest::proptest! {
        /// Any bytes in the text fields: one line, and serde_json reads every field back as the
        /// lossy UTF-8 text of the input.
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
            let text = to_json(&Event::new(&parts));
            proptest::prop_assert!(!text.contains('\n') && !text.contains('\r'));
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
