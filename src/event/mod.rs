//! The event record: what a shard hands to the writer for each SIP request it saw.
//!
//! An [`Event`] is owned and compact: fixed-size metadata plus one heap buffer holding the
//! method, called number, user agent, auth user name and raw message back to back (the store
//! record's tail, in its order), addressed by [`Span`]s. It is
//! built once per request (one allocation) and never re-parsed. [`json`] renders it as the
//! JSON-log object of compat.md §3.
//!
//! Never: holds JSON, allocates per header, or panics on odd bytes (fields are bytes; rendering
//! replaces invalid UTF-8).
//!
//! Limits: the message is truncated to [`crate::config::limits::EVENT_MESSAGE_BYTES_MAX`].

pub mod json;
pub mod timestamp;
pub mod validate;

use std::borrow::Cow;
use std::net::SocketAddr;

use uuid::Uuid;

use crate::config::limits::EVENT_MESSAGE_BYTES_MAX;

/// The value recorded when a field is absent (compat.md §2).
pub const NOT_FOUND: &str = "NOT_FOUND";

/// How the message reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The JSON-log spelling: `UDP`, `TCP` or `TLS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }

    /// Parses the JSON-log spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "UDP" => Some(Self::Udp),
            "TCP" => Some(Self::Tcp),
            "TLS" => Some(Self::Tls),
            _ => None,
        }
    }
}

/// Whether the sensor answered scanners (`-r`) when it collected the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollectedMethod {
    Passive,
    Responsive,
}

impl CollectedMethod {
    /// The JSON-log spelling: `passive` or `responsive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passive => "passive",
            Self::Responsive => "responsive",
        }
    }

    /// Parses the JSON-log spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "passive" => Some(Self::Passive),
            "responsive" => Some(Self::Responsive),
            _ => None,
        }
    }
}

/// A byte range inside [`Event`]'s buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// What the MMDB files say of a source IP; each field is `None` on a lookup miss (rendered
/// [`NOT_FOUND`]) or when its database is not configured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Enrichment {
    /// ISO 3166-1 alpha-2 code, upper case (`--geoip-db`).
    pub country: Option<[u8; 2]>,
    /// Autonomous system number (`--asn-db`).
    pub asn: Option<u32>,
    /// Autonomous system organisation (`--asn-db`), at most `EVENT_FIELD_BYTES_MAX` bytes.
    pub as_org: Option<Box<str>>,
}

impl Enrichment {
    /// The country code as text, or [`NOT_FOUND`].
    pub fn country_text(&self) -> &str {
        self.country
            .as_ref()
            .and_then(|code| std::str::from_utf8(code).ok())
            .unwrap_or(NOT_FOUND)
    }

    /// The AS number in decimal, or [`NOT_FOUND`].
    pub fn asn_text(&self) -> Cow<'_, str> {
        self.asn
            .map_or(Cow::Borrowed(NOT_FOUND), |asn| Cow::Owned(asn.to_string()))
    }

    /// The AS organisation, or [`NOT_FOUND`].
    pub fn as_org_text(&self) -> &str {
        self.as_org.as_deref().unwrap_or(NOT_FOUND)
    }
}

/// The borrowed parts an [`Event`] is built from.
#[derive(Debug, Clone, Copy)]
pub struct EventParts<'a> {
    /// UTC nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    pub uuid: Uuid,
    /// The node that collected the event (ours for local events, the peer's for P2P ones).
    pub node_id: Uuid,
    pub transport: Transport,
    pub collected_method: CollectedMethod,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub method: &'a [u8],
    /// Already percent-decoded; `None` records [`NOT_FOUND`].
    pub called_number: Option<&'a [u8]>,
    /// Already trimmed and unfolded; `None` records [`NOT_FOUND`].
    pub user_agent: Option<&'a [u8]>,
    /// The message as received; truncated to `EVENT_MESSAGE_BYTES_MAX`.
    pub message: &'a [u8],
    /// The source proved it receives what is sent to it (see [`Event::source_verified`]).
    pub source_verified: bool,
    /// The `username` of the first `Authorization`/`Proxy-Authorization` header; `None` records
    /// [`NOT_FOUND`].
    pub auth_username: Option<&'a [u8]>,
}

/// One SIP request seen by the sensor (or received from a peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub timestamp_ns: u64,
    pub uuid: Uuid,
    pub node_id: Uuid,
    pub transport: Transport,
    pub collected_method: CollectedMethod,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    /// The source IP was verified when the event was stored: this request proved a two-way
    /// exchange (TCP/TLS handshake, a valid To-tag or nonce of ours), or an earlier one from the
    /// same IP did. The shard sets it for a proof; the writer sets it for an IP verified before.
    pub source_verified: bool,
    /// Country and AS of the source, looked up after the channel (`--geoip-db`, `--asn-db`);
    /// `None` when no database is configured.
    pub enrichment: Option<Box<Enrichment>>,
    /// method | called number | user agent | auth username | message: [`Event::tail`].
    buffer: Box<[u8]>,
    message: Span,
    method: Span,
    called_number: Option<Span>,
    user_agent: Option<Span>,
    auth_username: Option<Span>,
}

impl Event {
    /// Copies the parts into one buffer (the only allocation).
    pub fn new(parts: &EventParts<'_>) -> Self {
        let message = parts
            .message
            .get(..EVENT_MESSAGE_BYTES_MAX)
            .unwrap_or(parts.message);
        let field_cap = EVENT_FIELD_BYTES_MAX;
        let method = parts.method.get(..field_cap).unwrap_or(parts.method);
        let called = parts.called_number.map(|v| v.get(..field_cap).unwrap_or(v));
        let agent = parts.user_agent.map(|v| v.get(..field_cap).unwrap_or(v));
        let auth = parts.auth_username.map(|v| v.get(..field_cap).unwrap_or(v));
        let total = message.len()
            + method.len()
            + called.map_or(0, <[u8]>::len)
            + agent.map_or(0, <[u8]>::len)
            + auth.map_or(0, <[u8]>::len);
        let mut buffer = Vec::with_capacity(total);
        let mut push = |bytes: &[u8]| {
            // Lengths are bounded by the caps above, so they fit in u32.
            let start = buffer.len() as u32;
            buffer.extend_from_slice(bytes);
            Span {
                start,
                len: bytes.len() as u32,
            }
        };
        let method = push(method);
        let called_number = called.map(&mut push);
        let user_agent = agent.map(&mut push);
        let auth_username = auth.map(&mut push);
        let message = push(message);
        Self {
            timestamp_ns: parts.timestamp_ns,
            uuid: parts.uuid,
            node_id: parts.node_id,
            transport: parts.transport,
            collected_method: parts.collected_method,
            source: parts.source,
            destination: parts.destination,
            source_verified: parts.source_verified,
            enrichment: None,
            buffer: buffer.into_boxed_slice(),
            message,
            method,
            called_number,
            user_agent,
            auth_username,
        }
    }

    fn slice(&self, span: Span) -> &[u8] {
        let start = span.start as usize;
        self.buffer
            .get(start..start + span.len as usize)
            .unwrap_or_default()
    }

    /// The method, called number, user agent, auth user name and message, back to back (absent
    /// fields take no bytes): the store record's tail, which the encoder compresses in place.
    pub fn tail(&self) -> &[u8] {
        &self.buffer
    }

    /// The message as received (possibly truncated).
    pub fn message(&self) -> &[u8] {
        self.slice(self.message)
    }

    pub fn method(&self) -> &[u8] {
        self.slice(self.method)
    }

    /// The decoded called number, `None` when not found.
    pub fn called_number(&self) -> Option<&[u8]> {
        self.called_number.map(|s| self.slice(s))
    }

    /// The trimmed user agent, `None` when not found.
    pub fn user_agent(&self) -> Option<&[u8]> {
        self.user_agent.map(|s| self.slice(s))
    }

    /// The user name the request tried, `None` when it sent no credentials.
    pub fn auth_username(&self) -> Option<&[u8]> {
        self.auth_username.map(|s| self.slice(s))
    }

    /// The user name as text, or [`NOT_FOUND`].
    pub fn auth_username_text(&self) -> Cow<'_, str> {
        self.auth_username().map_or(Cow::Borrowed(NOT_FOUND), text)
    }

    /// The method as text (invalid UTF-8 replaced).
    pub fn method_text(&self) -> Cow<'_, str> {
        text(self.method())
    }

    /// The called number as text, or [`NOT_FOUND`].
    pub fn called_number_text(&self) -> Cow<'_, str> {
        self.called_number().map_or(Cow::Borrowed(NOT_FOUND), text)
    }

    /// The user agent as text, or [`NOT_FOUND`].
    pub fn user_agent_text(&self) -> Cow<'_, str> {
        self.user_agent().map_or(Cow::Borrowed(NOT_FOUND), text)
    }

    /// The message as text (invalid UTF-8 replaced).
    pub fn message_text(&self) -> Cow<'_, str> {
        text(self.message())
    }

    /// The borrowed parts, e.g. to re-encode or rebuild the event.
    pub fn parts(&self) -> EventParts<'_> {
        EventParts {
            timestamp_ns: self.timestamp_ns,
            uuid: self.uuid,
            node_id: self.node_id,
            transport: self.transport,
            collected_method: self.collected_method,
            source: self.source,
            destination: self.destination,
            method: self.method(),
            called_number: self.called_number(),
            user_agent: self.user_agent(),
            message: self.message(),
            source_verified: self.source_verified,
            auth_username: self.auth_username(),
        }
    }
}

/// Longest method, called number or user agent kept in an event; longer values are truncated.
const EVENT_FIELD_BYTES_MAX: usize = crate::config::limits::EVENT_FIELD_BYTES_MAX;

/// The bare IP as the JSON log shows it: IPv4-mapped IPv6 as IPv4.
/// `bytes` as text, invalid UTF-8 replaced (the common valid case is checked with the fast
/// validator and borrowed).
fn text(bytes: &[u8]) -> Cow<'_, str> {
    // simdutf8: the whole SIP message is checked for every log line.
    simdutf8::basic::from_utf8(bytes).map_or_else(|_| String::from_utf8_lossy(bytes), Cow::Borrowed)
}

pub fn display_ip(address: SocketAddr) -> std::net::IpAddr {
    match address.ip() {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => std::net::IpAddr::V6(v6),
        },
        ip => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Event {
        Event::new(&EventParts {
            timestamp_ns: 1_700_000_000_000_000_007,
            uuid: Uuid::from_u128(1),
            node_id: Uuid::from_u128(2),
            transport: Transport::Udp,
            collected_method: CollectedMethod::Passive,
            source: "[::ffff:10.0.0.1]:5060".parse().unwrap(),
            destination: "127.0.0.1:5060".parse().unwrap(),
            method: b"OPTIONS",
            called_number: Some(b"100"),
            user_agent: None,
            message: b"OPTIONS sip:100@x SIP/2.0\r\n\r\n",
            source_verified: false,
            auth_username: None,
        })
    }

    #[test]
    fn event_fields_roundtrip() {
        let event = sample();
        assert_eq!(event.method(), b"OPTIONS");
        assert_eq!(event.called_number(), Some(&b"100"[..]));
        assert_eq!(event.user_agent_text(), NOT_FOUND);
        assert_eq!(event.message(), b"OPTIONS sip:100@x SIP/2.0\r\n\r\n");
        assert_eq!(display_ip(event.source).to_string(), "10.0.0.1");
        assert_eq!(Event::new(&event.parts()), event);
    }

    #[test]
    fn event_tail_is_the_fields_in_record_order() {
        let base = sample();
        let mut parts = base.parts();
        parts.user_agent = Some(b"friendly-scanner");
        parts.auth_username = Some(b"1001");
        let event = Event::new(&parts);
        let expected = [
            &b"OPTIONS"[..],
            b"100",
            b"friendly-scanner",
            b"1001",
            b"OPTIONS sip:100@x SIP/2.0\r\n\r\n",
        ]
        .concat();
        assert_eq!(event.tail(), expected.as_slice());
        // Absent fields take no bytes.
        assert_eq!(base.tail(), [&b"OPTIONS100"[..], base.message()].concat());
    }

    #[test]
    fn event_message_capped() {
        let big = vec![b'a'; EVENT_MESSAGE_BYTES_MAX + 1];
        let event = sample();
        let mut parts = event.parts();
        parts.message = &big;
        assert_eq!(Event::new(&parts).message().len(), EVENT_MESSAGE_BYTES_MAX);
        parts.message = &big[..EVENT_MESSAGE_BYTES_MAX];
        assert_eq!(Event::new(&parts).message().len(), EVENT_MESSAGE_BYTES_MAX);
    }
}
