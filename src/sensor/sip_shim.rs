//! TEMPORARY stand-in for the `sip` API agreed with the `h/sip` branch (scan, framer, reply), so the
//! sensor can be tested before that branch lands. Deleted once `crate::sip` implements it.
//!
//! Never: used outside `sensor`; grows features beyond the agreed API.

#![allow(unreachable_pub, dead_code)]

use memchr::memmem;

pub use crate::sip::NotRequest;

const VIAS_MAX: usize = crate::config::limits::SIP_VIA_COUNT_MAX;

#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a [u8],
    pub request_uri: &'a [u8],
    pub to: Option<&'a [u8]>,
    pub from: Option<&'a [u8]>,
    pub call_id: Option<&'a [u8]>,
    pub cseq: Option<&'a [u8]>,
    pub vias: [&'a [u8]; VIAS_MAX],
    pub via_count: usize,
    pub user_agent: Option<&'a [u8]>,
    pub content_length: Option<u32>,
    pub header_bytes: usize,
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if first.is_ascii_whitespace() {
            bytes = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = bytes {
        if last.is_ascii_whitespace() {
            bytes = rest;
        } else {
            break;
        }
    }
    bytes
}

fn user_part(uri: &[u8]) -> Option<&[u8]> {
    let uri = trim(uri);
    let uri = match memchr::memchr(b'<', uri) {
        Some(i) => {
            let rest = uri.get(i + 1..)?;
            rest.get(..memchr::memchr(b'>', rest)?)?
        }
        None => uri,
    };
    let colon = memchr::memchr(b':', uri)?;
    let scheme = uri.get(..colon)?;
    let rest = uri.get(colon + 1..)?;
    if scheme.eq_ignore_ascii_case(b"tel") {
        let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
        return rest.get(..end).filter(|u| !u.is_empty());
    }
    let at = memchr::memchr(b'@', rest)?;
    let user = rest.get(..at)?;
    let end = memchr::memchr(b';', user).unwrap_or(user.len());
    user.get(..end).filter(|u| !u.is_empty())
}

impl<'a> Request<'a> {
    pub fn called_number<'b>(&self, scratch: &'b mut Vec<u8>) -> Option<&'b [u8]> {
        let user = self
            .to
            .and_then(user_part)
            .or_else(|| user_part(self.request_uri))?;
        scratch.clear();
        let mut i = 0;
        while let Some(&b) = user.get(i) {
            let hex = |c: u8| (c as char).to_digit(16);
            if b == b'%'
                && let (Some(h), Some(l)) = (
                    user.get(i + 1).and_then(|c| hex(*c)),
                    user.get(i + 2).and_then(|c| hex(*c)),
                )
            {
                scratch.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            scratch.push(b);
            i += 1;
        }
        Some(scratch.as_slice())
    }

    pub fn user_agent_value<'b>(&self, scratch: &'b mut Vec<u8>) -> Option<&'b [u8]> {
        let value = trim(self.user_agent?);
        if value.is_empty() {
            return None;
        }
        scratch.clear();
        scratch.extend_from_slice(value);
        Some(scratch.as_slice())
    }
}

fn header_end(message: &[u8]) -> Option<usize> {
    let crlf = memmem::find(message, b"\r\n\r\n").map(|i| i + 4);
    let lf = memmem::find(message, b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub fn scan(message: &[u8]) -> Result<Request<'_>, NotRequest> {
    if message.is_empty() {
        return Err(NotRequest::Empty);
    }
    if message.iter().all(|b| *b == b'\r' || *b == b'\n') {
        return Err(NotRequest::KeepAlive);
    }
    if message.starts_with(b"SIP/2.0 ") {
        return Err(NotRequest::Response);
    }
    let line_end = memchr::memchr(b'\n', message).ok_or(NotRequest::Garbage)?;
    let line = trim(message.get(..line_end).ok_or(NotRequest::Garbage)?);
    let mut parts = line.split(|b| *b == b' ');
    let method = parts.next().ok_or(NotRequest::Garbage)?;
    let uri = parts.next().ok_or(NotRequest::Garbage)?;
    let version = parts.next().ok_or(NotRequest::Garbage)?;
    let token_ok = |b: &u8| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b);
    if method.is_empty() || !method.iter().all(token_ok) || uri.is_empty() || version != b"SIP/2.0"
    {
        return Err(NotRequest::Garbage);
    }
    let header_bytes = header_end(message).unwrap_or(message.len());
    let mut request = Request {
        method,
        request_uri: uri,
        to: None,
        from: None,
        call_id: None,
        cseq: None,
        vias: [&[]; VIAS_MAX],
        via_count: 0,
        user_agent: None,
        content_length: None,
        header_bytes,
    };
    let headers = message.get(line_end + 1..header_bytes).unwrap_or_default();
    for raw in headers.split(|b| *b == b'\n') {
        let Some(colon) = memchr::memchr(b':', raw) else {
            continue;
        };
        let name = trim(raw.get(..colon).unwrap_or_default()).to_ascii_lowercase();
        let value = trim(raw.get(colon + 1..).unwrap_or_default());
        match name.as_slice() {
            b"to" | b"t" => request.to = request.to.or(Some(value)),
            b"from" | b"f" => request.from = request.from.or(Some(value)),
            b"call-id" | b"i" => request.call_id = request.call_id.or(Some(value)),
            b"cseq" => request.cseq = request.cseq.or(Some(value)),
            b"user-agent" => request.user_agent = request.user_agent.or(Some(value)),
            b"content-length" | b"l" => {
                request.content_length =
                    std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            b"via" | b"v" => {
                if let Some(slot) = request.vias.get_mut(request.via_count) {
                    *slot = value;
                    request.via_count += 1;
                }
            }
            _ => {}
        }
    }
    Ok(request)
}

pub mod framer {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FrameError {
        Oversize,
    }

    pub struct Framer {
        buffer: Vec<u8>,
        consumed: usize,
        max: usize,
    }

    impl Framer {
        pub fn new(message_bytes_max: usize) -> Self {
            Self {
                buffer: Vec::new(),
                consumed: 0,
                max: message_bytes_max,
            }
        }

        pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
            if self.consumed > 0 {
                self.buffer.drain(..self.consumed);
                self.consumed = 0;
            }
            self.buffer.extend_from_slice(bytes);
            Ok(())
        }

        pub fn poll_message(&mut self) -> Result<Option<&[u8]>, FrameError> {
            let pending = self.buffer.get(self.consumed..).unwrap_or_default();
            let skip = pending
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            let start = self.consumed + skip;
            let pending = self.buffer.get(start..).unwrap_or_default();
            let Some(header) = super::header_end(pending) else {
                if pending.len() > self.max {
                    return Err(FrameError::Oversize);
                }
                self.consumed = start;
                return Ok(None);
            };
            let body = super::scan(pending.get(..header).unwrap_or_default())
                .ok()
                .and_then(|r| r.content_length)
                .unwrap_or(0) as usize;
            let total = header + body;
            if total > self.max {
                return Err(FrameError::Oversize);
            }
            if pending.len() < total {
                self.consumed = start;
                return Ok(None);
            }
            self.consumed = start + total;
            Ok(self.buffer.get(start..start + total))
        }
    }
}

pub mod reply {
    use super::Request;

    #[derive(Debug, Clone, Copy)]
    pub struct Reply {
        pub len: usize,
    }

    pub fn build_reply(
        request: &Request<'_>,
        server: &[u8],
        to_tag: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Reply> {
        if request.method == b"ACK" {
            return None;
        }
        let (to, from, call_id, cseq) =
            (request.to?, request.from?, request.call_id?, request.cseq?);
        let start = out.len();
        out.extend_from_slice(b"SIP/2.0 200 OK\r\n");
        for via in request.vias.iter().take(request.via_count) {
            out.extend_from_slice(b"Via: ");
            out.extend_from_slice(via);
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in [(&b"From: "[..], from), (b"To: ", to)] {
            out.extend_from_slice(name);
            out.extend_from_slice(value);
            if name == b"To: " && memchr::memmem::find(value, b";tag=").is_none() {
                out.extend_from_slice(b";tag=");
                out.extend_from_slice(to_tag);
            }
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in [
            (&b"Call-ID: "[..], call_id),
            (b"CSeq: ", cseq),
            (b"Server: ", server),
        ] {
            out.extend_from_slice(name);
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(
            b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\nContent-Length: 0\r\n\r\n",
        );
        Some(Reply {
            len: out.len() - start,
        })
    }
}
