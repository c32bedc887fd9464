//! Builds the scanner traffic: sipvicious-style OPTIONS, REGISTER and INVITE (with an SDP body
//! of realistic size), plus on request a share of malformed packets and SIP responses.
//!
//! Pure: the caller owns the output buffer and passes the local address of the socket the bytes
//! will leave from; [`MessageFactory::write_next`] appends exactly one message and returns a
//! [`Written`] descriptor. Every request gets a unique Call-ID (which carries the stream id and
//! sequence number, see [`call_id_parts`]), branch and tag.
//!
//! Never: does I/O, reads a clock, or writes a Content-Length that differs from the body.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::rng::Rng;

/// The SIP request methods a scanner sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Options,
    Register,
    Invite,
}

impl Method {
    const ALL: [Self; 3] = [Self::Options, Self::Register, Self::Invite];

    /// The method token on the wire.
    pub fn token(self) -> &'static str {
        match self {
            Self::Options => "OPTIONS",
            Self::Register => "REGISTER",
            Self::Invite => "INVITE",
        }
    }
}

/// The transport named in the Via header; stream transports never get unframeable junk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    fn via_token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }
}

/// What one written message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A well-formed request: an event for the sensor, and a reply in responsive mode.
    Request(Method),
    /// A SIP response (not an event).
    Response,
    /// Headers and Content-Length framing intact, but the start line is not a SIP request line.
    BadStartLine,
    /// Random binary bytes (datagrams only).
    Noise,
    /// A CRLF CRLF keep-alive (datagrams only).
    KeepAlive,
    /// A request cut short inside its headers (datagrams only).
    Truncated,
}

impl Kind {
    /// True for a well-formed request.
    pub fn is_request(self) -> bool {
        matches!(self, Self::Request(_))
    }
}

/// Relative weights of OPTIONS, REGISTER and INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 3],
}

/// A `--mix` that could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixError(pub &'static str);

impl fmt::Display for MixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for MixError {}

impl Default for Mix {
    fn default() -> Self {
        Self { weights: [1, 1, 1] }
    }
}

impl Mix {
    /// Parses `options,register,invite` (equal weights) or `options=8,invite=1` (weights).
    pub fn parse(text: &str) -> Result<Self, MixError> {
        let mut weights = [0_u32; 3];
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (name, weight) = match item.split_once(['=', ':']) {
                Some((name, weight)) => {
                    let weight = weight
                        .trim()
                        .parse::<u32>()
                        .map_err(|_| MixError("mix weight must be a whole number"))?;
                    (name.trim(), weight)
                }
                None => (item, 1),
            };
            let index = match name.to_ascii_lowercase().as_str() {
                "options" => 0,
                "register" => 1,
                "invite" => 2,
                _ => return Err(MixError("mix items are options, register and invite")),
            };
            weights[index] = weights[index].saturating_add(weight);
        }
        if weights.iter().all(|weight| *weight == 0) {
            return Err(MixError(
                "mix needs at least one method with a weight above 0",
            ));
        }
        Ok(Self { weights })
    }

    fn pick(&self, rng: &mut Rng) -> Method {
        let total: u32 = self.weights.iter().fold(0, |sum, w| sum.saturating_add(*w));
        let mut roll = rng.below(total);
        for (method, weight) in Method::ALL.iter().zip(self.weights) {
            if roll < weight {
                return *method;
            }
            roll -= weight;
        }
        Method::Options
    }
}

/// Everything a [`MessageFactory`] needs, fixed for the run.
#[derive(Debug, Clone)]
pub struct FactoryConfig {
    pub transport: Transport,
    pub target: SocketAddr,
    pub mix: Mix,
    /// Share of non-request messages, in parts per million.
    pub malformed_ppm: u32,
    pub seed: u64,
    /// Identifies the sending stream (connection) inside the Call-ID.
    pub stream_id: u16,
    /// INVITEs dial one of this many distinct numbers (the same pool in every stream);
    /// 0: a fresh random number each time.
    pub number_pool: u32,
}

/// Describes the message just appended.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub kind: Kind,
    /// Sequence number inside this factory, also encoded in the Call-ID.
    pub seq: u64,
}

/// Writes one message after another; the state is the PRNG and the sequence number.
///
/// Text that does not change per message (hosts, ports) is rendered once and cached, and
/// numbers are written with [`put_hex`] and [`put_decimal`]: about 0.15 us a message instead of
/// 1.1 us with `write!`, which matters when one core generates and sends a flood.
#[derive(Debug)]
pub struct MessageFactory {
    config: FactoryConfig,
    rng: Rng,
    seq: u64,
    body: Vec<u8>,
    number: Vec<u8>,
    /// The target as a URI host (IPv6 in brackets).
    target_host: Vec<u8>,
    /// Cache for the last `local` address: its URI host, its bare IP and `host:port`.
    local: Option<SocketAddr>,
    local_host: Vec<u8>,
    local_ip: Vec<u8>,
    local_host_port: Vec<u8>,
}

/// The random choices of one message, drawn before writing.
struct Draw {
    user_agent: &'static str,
    extension: &'static str,
    tag: u32,
    branch: u32,
    salt: u32,
}

/// Percent (0..=100, fractions allowed) to parts per million.
pub fn percent_to_ppm(percent: f64) -> Option<u32> {
    if !(0.0..=100.0).contains(&percent) {
        return None;
    }
    Some((percent * 10_000.0).round() as u32)
}

const USER_AGENTS: [&str; 12] = [
    "friendly-scanner",
    "friendly-scanner",
    "friendly-scanner",
    "sipcli/v1.8",
    "VaxSIPUserAgent/3.1",
    "pplsip",
    "sipvicious",
    "Asterisk PBX 1.6.0.26",
    "Cisco-SIPGateway/IOS-12.x",
    "PolycomSoundPointIP-SPIP_550-UA/3.3.2.0413",
    "Z 3.15.40006 rv2.8.20",
    "eyeBeam release 1011d stamp 40820",
];

/// Seeds the pool's number generators apart from the message streams'.
const NUMBER_POOL_SALT: u64 = 0x6E75_6D62_6572_7321;

const EXTENSIONS: [&str; 8] = ["100", "101", "200", "1000", "1001", "2000", "8001", "admin"];

/// Appends each part (anything that is `AsRef<[u8]>`) to `out`.
macro_rules! cat {
    ($out:expr, $($part:expr),+ $(,)?) => {{
        $( $out.extend_from_slice(AsRef::<[u8]>::as_ref(&$part)); )+
    }};
}

/// An IP as it appears in a SIP URI host (IPv6 in brackets).
fn uri_host(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(ip) => ip.to_string().into_bytes(),
        IpAddr::V6(ip) => format!("[{ip}]").into_bytes(),
    }
}

/// Appends the low `digits` hex digits of `value`, zero-padded.
fn put_hex(out: &mut Vec<u8>, value: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..digits).rev() {
        out.push(HEX[((value >> (shift * 4)) & 0xF) as usize]);
    }
}

/// Appends `value` in decimal.
fn put_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0_u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

fn put_digits(out: &mut Vec<u8>, rng: &mut Rng, count: u32) {
    for _ in 0..count {
        out.push(b'0' + rng.below(10) as u8);
    }
}

/// A called number as scanners dial them: international prefixes, short extensions, dial-out.
fn put_called_number(out: &mut Vec<u8>, rng: &mut Rng) {
    let (prefix, digits) = match rng.below(8) {
        0 => ("00972", 9),
        1 => ("+44", 10),
        2 => (*rng.pick(&EXTENSIONS), 0),
        3 => ("9011972", 9),
        4 => ("01144", 10),
        5 => ("0046", 9),
        6 => ("+1", 10),
        _ => ("900441", 9),
    };
    out.extend_from_slice(prefix.as_bytes());
    put_digits(out, rng, digits);
}

/// Splits a Call-ID written by [`MessageFactory`] into (stream id, sequence number).
pub fn call_id_parts(value: &[u8]) -> Option<(u16, u64)> {
    let local = value.split(|byte| *byte == b'@').next()?;
    if local.len() != 24 {
        return None;
    }
    let text = std::str::from_utf8(local).ok()?;
    let stream_id = u16::from_str_radix(text.get(8..12)?, 16).ok()?;
    let seq = u64::from_str_radix(text.get(12..24)?, 16).ok()?;
    Some((stream_id, seq))
}

impl MessageFactory {
    /// A factory for one sending stream.
    pub fn new(config: FactoryConfig) -> Self {
        let rng = Rng::new(config.seed ^ u64::from(config.stream_id).wrapping_mul(0x9E37));
        let target_host = uri_host(config.target.ip());
        Self {
            config,
            rng,
            seq: 0,
            body: Vec::with_capacity(1024),
            number: Vec::with_capacity(32),
            target_host,
            local: None,
            local_host: Vec::new(),
            local_ip: Vec::new(),
            local_host_port: Vec::new(),
        }
    }

    /// Appends one message, sent from `local`, to `out`.
    pub fn write_next(&mut self, local: SocketAddr, out: &mut Vec<u8>) -> Written {
        if self.local != Some(local) {
            self.local = Some(local);
            self.local_host = uri_host(local.ip());
            self.local_ip = local.ip().to_string().into_bytes();
            self.local_host_port = local.to_string().into_bytes();
        }
        let seq = self.seq;
        self.seq += 1;
        let malformed =
            self.config.malformed_ppm > 0 && self.rng.below(1_000_000) < self.config.malformed_ppm;
        let kind = if malformed {
            self.pick_malformed()
        } else {
            Kind::Request(self.config.mix.pick(&mut self.rng))
        };
        match kind {
            Kind::Request(method) => self.write_request(method, seq, out),
            Kind::Response => self.write_response(seq, out),
            Kind::BadStartLine => self.write_bad_start_line(seq, out),
            Kind::Noise => {
                let len = 16 + self.rng.below(240);
                for _ in 0..len {
                    out.push(self.rng.next_u32() as u8);
                }
            }
            Kind::KeepAlive => out.extend_from_slice(b"\r\n\r\n"),
            Kind::Truncated => {
                let start = out.len();
                self.write_request(Method::Options, seq, out);
                let full = out.len() - start;
                let keep = 8 + self.rng.below(u32::try_from(full / 2).unwrap_or(64)) as usize;
                out.truncate(start + keep.min(full - 4));
            }
        }
        Written { kind, seq }
    }

    fn pick_malformed(&mut self) -> Kind {
        let datagram = self.config.transport == Transport::Udp;
        match (self.rng.below(if datagram { 5 } else { 2 }), datagram) {
            (0, _) => Kind::Response,
            (1, _) => Kind::BadStartLine,
            (2, _) => Kind::Noise,
            (3, _) => Kind::KeepAlive,
            _ => Kind::Truncated,
        }
    }

    fn draw(&mut self) -> Draw {
        Draw {
            user_agent: self.rng.pick::<&str>(&USER_AGENTS),
            extension: self.rng.pick::<&str>(&EXTENSIONS),
            tag: self.rng.next_u32(),
            branch: self.rng.next_u32(),
            salt: self.rng.next_u32(),
        }
    }

    fn put_call_id(&self, draw: &Draw, seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"Call-ID: ");
        put_hex(out, u64::from(draw.salt), 8);
        put_hex(out, u64::from(self.config.stream_id), 4);
        put_hex(out, seq, 12);
        cat!(out, b"@", self.local_host, b"\r\n");
    }

    fn put_via(&self, draw: &Draw, seq: u64, out: &mut Vec<u8>) {
        let transport = self.config.transport.via_token();
        cat!(
            out,
            b"Via: SIP/2.0/",
            transport,
            b" ",
            self.local_host_port,
            b";branch=z9hG4bK-"
        );
        put_hex(out, u64::from(draw.branch), 8);
        put_hex(out, seq, 12);
        out.extend_from_slice(b";rport\r\n");
    }

    /// The To and From headers (From without its tag): sipvicious names itself in OPTIONS;
    /// an INVITE is addressed to the called number.
    fn put_to_from(&self, method: Method, extension: &str, out: &mut Vec<u8>) {
        let target = &self.target_host;
        let (display, to_user): (&[u8], &[u8]) = match method {
            Method::Options => (b"\"sipvicious\"", extension.as_bytes()),
            Method::Register => (b"", extension.as_bytes()),
            Method::Invite => (b"", &self.number),
        };
        cat!(
            out,
            b"To: ",
            display,
            b"<sip:",
            to_user,
            b"@",
            target,
            b">\r\nFrom: "
        );
        if method == Method::Invite {
            cat!(out, b"\"", extension, b"\" ");
        } else {
            out.extend_from_slice(display);
        }
        cat!(out, b"<sip:", extension, b"@", target, b">");
    }

    fn write_request(&mut self, method: Method, seq: u64, out: &mut Vec<u8>) {
        let draw = self.draw();
        if method == Method::Invite {
            self.number.clear();
            if self.config.number_pool == 0 {
                put_called_number(&mut self.number, &mut self.rng);
            } else {
                // Pool entry i is always the same number: derived from i alone.
                let index = u64::from(self.rng.below(self.config.number_pool));
                let mut pick =
                    Rng::new(index.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ NUMBER_POOL_SALT);
                put_called_number(&mut self.number, &mut pick);
            }
        }
        let (token, target, extension) = (method.token(), &self.target_host, draw.extension);
        cat!(out, token, b" sip:");
        match method {
            Method::Options => cat!(out, extension, b"@"),
            Method::Register => {}
            Method::Invite => cat!(out, self.number, b"@"),
        }
        cat!(out, target, b" SIP/2.0\r\n");
        self.put_via(&draw, seq, out);
        out.extend_from_slice(b"Max-Forwards: 70\r\n");
        self.put_to_from(method, extension, out);
        out.extend_from_slice(b";tag=");
        put_hex(out, u64::from(draw.tag), 8);
        cat!(out, b"\r\nUser-Agent: ", draw.user_agent, b"\r\n");
        self.put_call_id(&draw, seq, out);
        cat!(
            out,
            b"Contact: <sip:",
            extension,
            b"@",
            self.local_host_port,
            b">\r\n"
        );
        cat!(out, b"CSeq: 1 ", token, b"\r\n");
        match method {
            Method::Options => {
                out.extend_from_slice(b"Accept: application/sdp\r\nContent-Length: 0\r\n\r\n");
            }
            Method::Register => {
                out.extend_from_slice(
                    b"Expires: 3600\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER\r\n\
                      Content-Length: 0\r\n\r\n",
                );
            }
            Method::Invite => self.put_invite_tail(out),
        }
    }

    fn put_invite_tail(&mut self, out: &mut Vec<u8>) {
        let session = 1_000_000 + u64::from(self.rng.below(8_000_000));
        let rtp_port = 10_000 + 2 * u64::from(self.rng.below(10_000));
        let family: &[u8] = if self.local.is_some_and(|local| local.is_ipv6()) {
            b"IP6"
        } else {
            b"IP4"
        };
        let body = &mut self.body;
        body.clear();
        body.extend_from_slice(b"v=0\r\no=- ");
        put_decimal(body, session);
        body.push(b' ');
        put_decimal(body, session);
        cat!(
            body,
            b" IN ",
            family,
            b" ",
            self.local_ip,
            b"\r\ns=SIP Call\r\n"
        );
        cat!(
            body,
            b"c=IN ",
            family,
            b" ",
            self.local_ip,
            b"\r\nt=0 0\r\nm=audio "
        );
        put_decimal(body, rtp_port);
        body.extend_from_slice(
            b" RTP/AVP 0 8 18 3 4 97 98 101\r\n\
              a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:18 G729/8000\r\n\
              a=fmtp:18 annexb=no\r\na=rtpmap:3 GSM/8000\r\na=rtpmap:4 G723/8000\r\n\
              a=rtpmap:97 iLBC/8000\r\na=fmtp:97 mode=30\r\na=rtpmap:98 speex/8000\r\n\
              a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n\
              a=sendrecv\r\n",
        );
        out.extend_from_slice(
            b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n\
              Supported: replaces, timer\r\nContent-Type: application/sdp\r\nContent-Length: ",
        );
        put_decimal(out, body.len() as u64);
        cat!(out, b"\r\n\r\n", body);
    }

    fn write_response(&mut self, seq: u64, out: &mut Vec<u8>) {
        const STATUS: [&str; 5] = [
            "100 Trying",
            "200 OK",
            "401 Unauthorized",
            "404 Not Found",
            "486 Busy Here",
        ];
        let status = *self.rng.pick(&STATUS);
        let tag_to = self.rng.next_u32();
        let draw = self.draw();
        let (target, extension) = (&self.target_host, draw.extension);
        cat!(out, b"SIP/2.0 ", status, b"\r\n");
        self.put_via(&draw, seq, out);
        cat!(out, b"From: <sip:", extension, b"@", target, b">;tag=");
        put_hex(out, u64::from(draw.tag), 8);
        cat!(out, b"\r\nTo: <sip:", extension, b"@", target, b">;tag=");
        put_hex(out, u64::from(tag_to), 8);
        out.extend_from_slice(b"\r\n");
        self.put_call_id(&draw, seq, out);
        cat!(
            out,
            b"CSeq: 1 INVITE\r\nServer: ",
            draw.user_agent,
            b"\r\nContent-Length: 0\r\n\r\n"
        );
    }

    fn write_bad_start_line(&mut self, seq: u64, out: &mut Vec<u8>) {
        let variant = self.rng.below(3);
        let draw = self.draw();
        let target = &self.target_host;
        match variant {
            0 => cat!(out, b"OPTIONS sip:100@", target, b"\r\n"),
            1 => out.extend_from_slice(b"INVITE  SIP/2.0\r\n"),
            _ => cat!(out, b"GET / HTTP/1.1\r\nHost: ", target, b"\r\n"),
        }
        self.put_via(&draw, seq, out);
        self.put_call_id(&draw, seq, out);
        out.extend_from_slice(b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factory(transport: Transport, malformed_ppm: u32, mix: Mix) -> MessageFactory {
        MessageFactory::new(FactoryConfig {
            transport,
            target: "127.0.0.1:5060".parse().unwrap(),
            mix,
            malformed_ppm,
            seed: 1,
            stream_id: 3,
            number_pool: 0,
        })
    }

    fn local() -> SocketAddr {
        "127.0.0.9:40000".parse().unwrap()
    }

    /// The distinct request-URI users of `count` INVITEs from a factory with `pool`.
    fn invite_numbers(
        pool: u32,
        stream_id: u16,
        count: usize,
    ) -> std::collections::BTreeSet<String> {
        let mut factory = MessageFactory::new(FactoryConfig {
            transport: Transport::Udp,
            target: "127.0.0.1:5060".parse().unwrap(),
            mix: Mix::parse("invite").unwrap(),
            malformed_ppm: 0,
            seed: u64::from(stream_id) + 7,
            stream_id,
            number_pool: pool,
        });
        (0..count)
            .map(|_| {
                let mut out = Vec::new();
                let _ = factory.write_next(local(), &mut out);
                let (start, _, _) = parse(&out);
                let uri = start.strip_prefix("INVITE sip:").unwrap();
                uri.split('@').next().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn number_pool_bounds_the_called_numbers_across_streams() {
        let first = invite_numbers(5, 1, 500);
        assert_eq!(first.len(), 5, "{first:?}");
        // Another stream (other seed) dials the same pool.
        assert_eq!(invite_numbers(5, 2, 500), first);
        // Without a pool nearly every INVITE dials a new number.
        assert!(invite_numbers(0, 1, 500).len() > 400);
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack
            .windows(needle.len())
            .position(|window| window == needle)
    }

    /// Splits a message into (start line, header lines, body), checking CRLF everywhere.
    fn parse(message: &[u8]) -> (String, Vec<String>, Vec<u8>) {
        let end = find(message, b"\r\n\r\n").expect("headers end with CRLF CRLF");
        let head = std::str::from_utf8(&message[..end]).unwrap();
        for line in head.split("\r\n") {
            assert!(
                !line.contains('\n') && !line.contains('\r'),
                "bare LF or CR in {line:?}"
            );
        }
        let mut lines = head.split("\r\n").map(str::to_owned);
        let start = lines.next().unwrap();
        (start, lines.collect(), message[end + 4..].to_vec())
    }

    fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
        headers.iter().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    #[test]
    fn message_requests_are_well_formed() {
        let mut factory = factory(Transport::Udp, 0, Mix::default());
        let mut seen = [false; 3];
        let mut call_ids = std::collections::HashSet::new();
        for expected_seq in 0..300 {
            let mut out = Vec::new();
            let written = factory.write_next(local(), &mut out);
            assert_eq!(written.seq, expected_seq);
            let Kind::Request(method) = written.kind else {
                panic!("malformed at share 0")
            };
            seen[method as usize] = true;
            let (start, headers, body) = parse(&out);
            let parts: Vec<&str> = start.split(' ').collect();
            assert_eq!(parts.len(), 3, "request line {start:?}");
            assert_eq!(parts[0], method.token());
            assert!(parts[1].starts_with("sip:"));
            assert_eq!(parts[2], "SIP/2.0");
            let length: usize = header(&headers, "Content-Length").unwrap().parse().unwrap();
            assert_eq!(length, body.len());
            for name in [
                "Via",
                "From",
                "To",
                "CSeq",
                "Max-Forwards",
                "User-Agent",
                "Contact",
            ] {
                assert!(
                    header(&headers, name).is_some(),
                    "{name} missing in {start}"
                );
            }
            let call_id = header(&headers, "Call-ID").unwrap().to_owned();
            assert_eq!(call_id_parts(call_id.as_bytes()), Some((3, expected_seq)));
            assert!(call_ids.insert(call_id), "Call-ID repeated");
            if method == Method::Invite {
                assert!(
                    (800..=1100).contains(&out.len()),
                    "INVITE is {} bytes",
                    out.len()
                );
                assert!(body.starts_with(b"v=0\r\n"));
                assert_eq!(header(&headers, "Content-Type"), Some("application/sdp"));
                let called = parts[1]
                    .trim_start_matches("sip:")
                    .split('@')
                    .next()
                    .unwrap();
                let to = header(&headers, "To").unwrap();
                assert!(
                    to.starts_with(&format!("<sip:{called}@")),
                    "{to} vs {called}"
                );
                assert!(called.len() >= 3, "{called}");
            }
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn message_ipv6_hosts_are_bracketed() {
        let mut factory = MessageFactory::new(FactoryConfig {
            transport: Transport::Tcp,
            target: "[::1]:5060".parse().unwrap(),
            mix: Mix::parse("options").unwrap(),
            malformed_ppm: 0,
            seed: 5,
            stream_id: 0,
            number_pool: 0,
        });
        let mut out = Vec::new();
        let _ = factory.write_next("[::1]:40000".parse().unwrap(), &mut out);
        let (start, headers, _) = parse(&out);
        assert!(start.ends_with("@[::1] SIP/2.0"), "{start}");
        assert!(
            header(&headers, "Via")
                .unwrap()
                .starts_with("SIP/2.0/TCP [::1]:40000;")
        );
    }

    #[test]
    fn message_stream_malformed_keeps_framing() {
        let mut factory = factory(Transport::Tls, 1_000_000, Mix::default());
        for _ in 0..200 {
            let mut out = Vec::new();
            let written = factory.write_next(local(), &mut out);
            assert!(matches!(written.kind, Kind::Response | Kind::BadStartLine));
            let (_, headers, body) = parse(&out);
            let length: usize = header(&headers, "Content-Length").unwrap().parse().unwrap();
            assert_eq!(length, body.len());
        }
    }

    #[test]
    fn message_malformed_share_is_respected() {
        let mut factory = factory(Transport::Udp, 250_000, Mix::default());
        let mut malformed = 0;
        let mut kinds = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let mut out = Vec::new();
            let written = factory.write_next(local(), &mut out);
            if !written.kind.is_request() {
                malformed += 1;
                kinds.insert(format!("{:?}", written.kind));
            }
        }
        assert!(
            (2_000..3_000).contains(&malformed),
            "{malformed} malformed of 10000"
        );
        assert_eq!(kinds.len(), 5, "{kinds:?}");
    }

    #[test]
    fn mix_parse_accepts_lists_and_weights() {
        assert_eq!(Mix::parse("options,register,invite"), Ok(Mix::default()));
        assert_eq!(Mix::parse("invite"), Ok(Mix { weights: [0, 0, 1] }));
        assert_eq!(
            Mix::parse("OPTIONS=8, invite:2"),
            Ok(Mix { weights: [8, 0, 2] })
        );
        assert!(Mix::parse("bye").is_err());
        assert!(Mix::parse("").is_err());
        assert!(Mix::parse("options=0").is_err());
        assert!(Mix::parse("options=x").is_err());
    }

    #[test]
    fn mix_only_invite_gives_invites() {
        let mut factory = factory(Transport::Udp, 0, Mix::parse("invite").unwrap());
        for _ in 0..50 {
            let mut out = Vec::new();
            let written = factory.write_next(local(), &mut out);
            assert_eq!(written.kind, Kind::Request(Method::Invite));
        }
    }

    #[test]
    fn call_id_parts_rejects_foreign_ids() {
        assert_eq!(call_id_parts(b"abc@host"), None);
        assert_eq!(call_id_parts(b"zzzzzzzz0001000000000005@h"), Some((1, 5)));
        assert_eq!(call_id_parts(b"zzzzzzzz00g1000000000005@h"), None);
    }

    #[test]
    fn percent_to_ppm_bounds() {
        assert_eq!(percent_to_ppm(0.0), Some(0));
        assert_eq!(percent_to_ppm(2.5), Some(25_000));
        assert_eq!(percent_to_ppm(100.0), Some(1_000_000));
        assert_eq!(percent_to_ppm(100.1), None);
        assert_eq!(percent_to_ppm(-1.0), None);
    }
}
