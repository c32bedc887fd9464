//! The hot-path SIP request scanner: one pass over the start line and the header lines, keeping
//! borrowed slices of the few headers an event and a reply need.
//!
//! Brief overview: [`scan`] classifies a message ([`Request`] or a [`NotRequest`] kind), walking
//! header lines with `memchr` (one call per line, no allocation, no per-message setup). A line is
//! recorded only if it starts with a known name: the first letter picks the candidate, which is
//! compared with the line's first 16 bytes as one masked word; other lines cost one byte test.
//! [`Request::called_number`] and [`Request::user_agent_value`] then turn the raw slices into event
//! fields in a caller-owned scratch buffer. [`unfold_into`] joins folded header lines.
//!
//! Rules (compat.md §2): a request line is `METHOD SP Request-URI SP SIP/2.0` (method = RFC 3261
//! token characters, `SIP/2.0` case-insensitive, runs of SP/HTAB accepted); leading CR/LF are
//! skipped (RFC 3261 7.5); header names are case-insensitive with compact forms; lines end in CRLF
//! or a bare LF; a line starting with SP/HTAB continues the previous header; the headers end at the
//! first blank line or at the end of the input; at most `SIP_HEADERS_COUNT_MAX` header lines are
//! looked at. The first To/From/Call-ID/CSeq/User-Agent/Content-Length wins, and the first
//! Authorization or Proxy-Authorization (no compact form); every Via line is kept (up to
//! `SIP_VIA_COUNT_MAX`). [`Request::to_tag`] reads the To header's `tag` parameter.
//!
//! Never: allocates (the scratch buffers are the caller's), panics on any input, returns a slice
//! outside the input, looks at more than `SIP_HEADERS_COUNT_MAX` header lines.

use std::ops::Range;

use memchr::{memchr, memchr2};

use crate::config::limits::{SIP_HEADERS_COUNT_MAX, SIP_VIA_COUNT_MAX};

/// Why a message is not an event. Each kind has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRequest {
    /// Zero bytes.
    Empty,
    /// Only CR/LF (a keep-alive ping).
    KeepAlive,
    /// A SIP response (`SIP/2.0 <code> ...`).
    Response,
    /// Anything else: not a request line.
    Garbage,
}

/// A borrowed view of a SIP request: every slice lies inside the scanned input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a [u8],
    pub request_uri: &'a [u8],
    pub to: Option<&'a [u8]>,
    pub from: Option<&'a [u8]>,
    pub call_id: Option<&'a [u8]>,
    pub cseq: Option<&'a [u8]>,
    /// The first `via_count` entries are the Via header values, in order.
    pub vias: [&'a [u8]; SIP_VIA_COUNT_MAX],
    pub via_count: usize,
    /// The first User-Agent value, raw (may be blank or folded).
    pub user_agent: Option<&'a [u8]>,
    pub content_length: Option<u32>,
    /// The first Authorization or Proxy-Authorization value, raw (see [`crate::sip::auth`]).
    pub authorization: Option<&'a [u8]>,
    /// Bytes of the start line and headers, including the blank line.
    pub header_bytes: usize,
    /// Bytes of the whole scanned message (a reply is at most twice this).
    pub message_bytes: usize,
}

/// The headers the scanner records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    To,
    From,
    CallId,
    CSeq,
    Via,
    UserAgent,
    ContentLength,
    /// `Authorization` or `Proxy-Authorization` (no compact form).
    Authorization,
}

/// Scans one message (a datagram or one framed stream message).
pub fn scan(message: &[u8]) -> Result<Request<'_>, NotRequest> {
    if message.is_empty() {
        return Err(NotRequest::Empty);
    }
    let Some(start_index) = message.iter().position(|&byte| !is_line_break(byte)) else {
        return Err(NotRequest::KeepAlive);
    };
    let (line, headers_index) = line_at(message, start_index);
    let (method, request_uri) = parse_request_line(line)?;
    let mut request = Request {
        method,
        request_uri,
        to: None,
        from: None,
        call_id: None,
        cseq: None,
        vias: [&[]; SIP_VIA_COUNT_MAX],
        via_count: 0,
        user_agent: None,
        content_length: None,
        authorization: None,
        header_bytes: message.len(),
        message_bytes: message.len(),
    };
    let mut lines = HeaderLines::new(message, headers_index);
    let mut header_count = 0;
    for header in lines.by_ref() {
        header_count += 1;
        record_header(&mut request, header);
        if header_count >= SIP_HEADERS_COUNT_MAX {
            break;
        }
    }
    request.header_bytes = lines.headers_end().unwrap_or(message.len());
    Ok(request)
}

fn record_header<'a>(request: &mut Request<'a>, header: Header<'a>) {
    let Some((known, value)) = header.known() else {
        return;
    };
    match known {
        Known::To => {
            request.to.get_or_insert(value);
        }
        Known::From => {
            request.from.get_or_insert(value);
        }
        Known::CallId => {
            request.call_id.get_or_insert(value);
        }
        Known::CSeq => {
            request.cseq.get_or_insert(value);
        }
        Known::UserAgent => {
            request.user_agent.get_or_insert(value);
        }
        Known::Authorization => {
            request.authorization.get_or_insert(value);
        }
        Known::Via => {
            if let Some(slot) = request.vias.get_mut(request.via_count) {
                *slot = value;
                request.via_count += 1;
            }
        }
        Known::ContentLength => {
            if request.content_length.is_none() {
                request.content_length = parse_content_length(value);
            }
        }
    }
}

/// A Content-Length value: 1 to 10 ASCII digits that fit a u32; anything else is `None`.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u32> {
    if value.is_empty() || value.len() > 10 {
        return None;
    }
    value.iter().try_fold(0u32, |total, &byte| {
        let digit = char::from(byte).to_digit(10)?;
        total.checked_mul(10)?.checked_add(digit)
    })
}

/// Splits the start line into method and Request-URI, or says why it is not a request.
/// Byte loops over the (short) line: method = token bytes, then SP/HTAB, the Request-URI (no
/// control bytes or spaces), SP/HTAB, `SIP/2.0` (any case), optional SP/HTAB.
fn parse_request_line(line: &[u8]) -> Result<(&[u8], &[u8]), NotRequest> {
    let line = skip_spaces(line);
    if line
        .get(..7)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"SIP/2.0"))
        && line.get(7).is_none_or(|&byte| is_space(byte))
    {
        return Err(classify_response(line));
    }
    let method_len = line
        .iter()
        .position(|&byte| !is_token_byte(byte))
        .unwrap_or(line.len());
    let (method, rest) = line
        .split_at_checked(method_len)
        .ok_or(NotRequest::Garbage)?;
    if method.is_empty() || !rest.first().is_some_and(|&byte| is_space(byte)) {
        return Err(NotRequest::Garbage);
    }
    let rest = skip_spaces(rest);
    let uri_len = rest
        .iter()
        .position(|&byte| byte <= b' ' || byte == 0x7f)
        .unwrap_or(rest.len());
    let (request_uri, rest) = rest.split_at_checked(uri_len).ok_or(NotRequest::Garbage)?;
    if request_uri.is_empty() || !rest.first().is_some_and(|&byte| is_space(byte)) {
        return Err(NotRequest::Garbage);
    }
    let rest = skip_spaces(rest);
    let version_len = rest
        .iter()
        .position(|&byte| is_space(byte))
        .unwrap_or(rest.len());
    let (version, rest) = rest
        .split_at_checked(version_len)
        .ok_or(NotRequest::Garbage)?;
    if version.eq_ignore_ascii_case(b"SIP/2.0") && skip_spaces(rest).is_empty() {
        Ok((method, request_uri))
    } else {
        Err(NotRequest::Garbage)
    }
}

/// A start line beginning with the `SIP/2.0` token: a response if a 3-digit status follows.
fn classify_response(line: &[u8]) -> NotRequest {
    let mut tokens = line
        .split(|&byte| is_space(byte))
        .filter(|token| !token.is_empty());
    let is_status = tokens
        .nth(1)
        .is_some_and(|code| code.len() == 3 && code.iter().all(u8::is_ascii_digit));
    if is_status {
        NotRequest::Response
    } else {
        NotRequest::Garbage
    }
}

fn skip_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&byte| !is_space(byte))
        .unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// RFC 3261 `token` characters, as a table indexed by byte. (Indexing in a const block is
/// checked at compile time.)
#[allow(clippy::indexing_slicing)]
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut index = 0;
    while index < table.len() {
        #[allow(clippy::cast_possible_truncation)] // index < 256
        let byte = index as u8;
        let is_mark = matches!(
            byte,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        );
        table[index] = byte.is_ascii_alphanumeric() || is_mark;
        index += 1;
    }
    table
};

fn is_token_byte(byte: u8) -> bool {
    TOKEN_BYTES.get(usize::from(byte)).copied().unwrap_or(false)
}

fn is_space(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn is_line_break(byte: u8) -> bool {
    byte == b'\r' || byte == b'\n'
}

fn is_whitespace(byte: u8) -> bool {
    is_space(byte) || is_line_break(byte)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&byte| !is_whitespace(byte))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&byte| !is_whitespace(byte))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// The line starting at `index` without its CR/LF, and the index of the next line.
pub(crate) fn line_at(bytes: &[u8], index: usize) -> (&[u8], usize) {
    let rest = bytes.get(index..).unwrap_or_default();
    let (line, next_index) = match memchr(b'\n', rest) {
        Some(lf_index) => (
            rest.get(..lf_index).unwrap_or_default(),
            index + lf_index + 1,
        ),
        None => (rest, bytes.len()),
    };
    (line.strip_suffix(b"\r").unwrap_or(line), next_index)
}

/// One logical header line (continuation lines included, final CR/LF excluded), and the input
/// from the line's start (for a one-load name compare).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    line: &'a [u8],
    tail: &'a [u8],
}

impl<'a> Header<'a> {
    /// The header if it is one we record, with its value trimmed of SP, HTAB, CR and LF. A name
    /// matches when the line starts with it (any case), then optional SP/HTAB, then `:`; that is
    /// exactly "the bytes before the first colon, trailing SP/HTAB trimmed, equal the name".
    #[inline]
    pub(crate) fn known(&self) -> Option<(Known, &'a [u8])> {
        let (known, name_len) = match_name(self.line, self.tail)?;
        let after_name = self.line.get(name_len..)?;
        let spaces = after_name
            .iter()
            .take_while(|&&byte| is_space(byte))
            .count();
        match after_name.get(spaces..)?.split_first() {
            Some((b':', value)) => Some((known, trim(value))),
            _ => None,
        }
    }
}

/// The known header name the line starts with (any case), and its length. Dispatches on the
/// first letter (and the second for `c`); a full name is compared as one masked 128-bit word.
/// When a full name matches, its compact form cannot (the compact letter is followed by the
/// full name's second letter, not by `:` or a space), so the longest match is the only one.
fn match_name(line: &[u8], tail: &[u8]) -> Option<(Known, usize)> {
    let first = *line.first()?;
    let word = || load_word(tail);
    let full_or_compact = |known: Known, folded: Folded| {
        Some(if folded.matches(word()) {
            (known, folded.len)
        } else {
            (known, 1)
        })
    };
    match first | 0x20 {
        b't' => full_or_compact(Known::To, FOLDED_TO),
        b'f' => full_or_compact(Known::From, FOLDED_FROM),
        b'v' => full_or_compact(Known::Via, FOLDED_VIA),
        b'i' => Some((Known::CallId, 1)),
        b'l' => Some((Known::ContentLength, 1)),
        b'u' => FOLDED_USER_AGENT
            .matches(word())
            .then_some((Known::UserAgent, FOLDED_USER_AGENT.len)),
        b'a' => FOLDED_AUTHORIZATION
            .matches(word())
            .then_some((Known::Authorization, FOLDED_AUTHORIZATION.len)),
        // 19 bytes: the first 15 as one word, then the rest.
        b'p' => (FOLDED_PROXY_AUTHORIZA.matches(word())
            && line
                .get(FOLDED_PROXY_AUTHORIZA.len..PROXY_AUTHORIZATION_LEN)
                .is_some_and(|rest| rest.eq_ignore_ascii_case(b"tion")))
        .then_some((Known::Authorization, PROXY_AUTHORIZATION_LEN)),
        b'c' => {
            let (known, folded) = match line.get(1)? | 0x20 {
                b's' => (Known::CSeq, FOLDED_CSEQ),
                b'a' => (Known::CallId, FOLDED_CALL_ID),
                b'o' => (Known::ContentLength, FOLDED_CONTENT_LENGTH),
                _ => return None,
            };
            folded.matches(word()).then_some((known, folded.len))
        }
        _ => None,
    }
}

/// Up to 16 bytes from the start of `bytes` as a little-endian word (zero-padded).
fn load_word(bytes: &[u8]) -> u128 {
    if let Some(chunk) = bytes.first_chunk::<16>() {
        return u128::from_le_bytes(*chunk);
    }
    let mut word = [0u8; 16];
    for (slot, &byte) in word.iter_mut().zip(bytes) {
        *slot = byte;
    }
    u128::from_le_bytes(word)
}

/// A lower-case header name as a little-endian word, 0x20 at each letter's byte and a mask of
/// its length. For a letter `l`, `byte | 0x20 == l` holds only for `l` and its capital, so
/// `(word | letters) & mask == lower` is an exact case-insensitive prefix compare (other bytes,
/// such as `-`, compare as they are).
#[derive(Debug, Clone, Copy)]
struct Folded {
    lower: u128,
    letters: u128,
    mask: u128,
    len: usize,
}

impl Folded {
    fn matches(self, word: u128) -> bool {
        (word | self.letters) & self.mask == self.lower
    }
}

const fn folded(name: &[u8]) -> Folded {
    assert!(!name.is_empty() && name.len() < 16);
    let mut folded = Folded {
        lower: 0,
        letters: 0,
        mask: 0,
        len: name.len(),
    };
    let mut shift = 0;
    let mut rest = name;
    while let [byte, tail @ ..] = rest {
        folded.lower |= (*byte as u128) << shift;
        folded.mask |= 0xff << shift;
        if byte.is_ascii_lowercase() {
            folded.letters |= 0x20 << shift;
        }
        shift += 8;
        rest = tail;
    }
    folded
}

const FOLDED_TO: Folded = folded(b"to");
const FOLDED_FROM: Folded = folded(b"from");
const FOLDED_VIA: Folded = folded(b"via");
const FOLDED_CSEQ: Folded = folded(b"cseq");
const FOLDED_CALL_ID: Folded = folded(b"call-id");
const FOLDED_USER_AGENT: Folded = folded(b"user-agent");
const FOLDED_CONTENT_LENGTH: Folded = folded(b"content-length");
const FOLDED_AUTHORIZATION: Folded = folded(b"authorization");
const FOLDED_PROXY_AUTHORIZA: Folded = folded(b"proxy-authoriza");
const PROXY_AUTHORIZATION_LEN: usize = b"proxy-authorization".len();

/// Iterates the logical header lines from `index` to the blank line (or the end of the input).
#[derive(Debug, Clone)]
pub(crate) struct HeaderLines<'a> {
    bytes: &'a [u8],
    index: usize,
    /// Set once the blank line (or the end of the input) was reached: the end of the headers.
    end_index: Option<usize>,
}

impl<'a> HeaderLines<'a> {
    pub(crate) fn new(bytes: &'a [u8], index: usize) -> Self {
        Self {
            bytes,
            index,
            end_index: None,
        }
    }

    /// The offset after the blank line, or the input length if there is none.
    /// Finds it by searching when the iteration stopped early.
    pub(crate) fn headers_end(&self) -> Option<usize> {
        self.end_index.or_else(|| {
            let line = line_at(self.bytes, self.index).0;
            if self.index < self.bytes.len() && line.is_empty() {
                return Some(line_at(self.bytes, self.index).1);
            }
            let from_index = self.index.saturating_sub(1);
            Some(blank_line_end(self.bytes, from_index).unwrap_or(self.bytes.len()))
        })
    }
}

impl<'a> Iterator for HeaderLines<'a> {
    type Item = Header<'a>;

    #[inline]
    fn next(&mut self) -> Option<Header<'a>> {
        if self.end_index.is_some() {
            return None;
        }
        if self.index >= self.bytes.len() {
            self.end_index = Some(self.bytes.len());
            return None;
        }
        let start_index = self.index;
        let (first_line, mut next_index) = line_at(self.bytes, start_index);
        if first_line.is_empty() {
            self.end_index = Some(next_index);
            return None;
        }
        let mut end_index = start_index + first_line.len();
        while self.bytes.get(next_index).copied().is_some_and(is_space) {
            let (line, after_index) = line_at(self.bytes, next_index);
            end_index = next_index + line.len();
            next_index = after_index;
        }
        self.index = next_index;
        let tail = self.bytes.get(start_index..).unwrap_or_default();
        let line = tail.get(..end_index - start_index).unwrap_or_default();
        Some(Header { line, tail })
    }
}

/// The offset just after the first blank line (`LF LF` or `LF CR LF`) whose LF is at or after
/// `from_index`, found with `memchr`.
pub(crate) fn blank_line_end(bytes: &[u8], from_index: usize) -> Option<usize> {
    let mut index = from_index;
    loop {
        let lf_index = index + memchr(b'\n', bytes.get(index..)?)?;
        match (bytes.get(lf_index + 1), bytes.get(lf_index + 2)) {
            (Some(b'\n'), _) => return Some(lf_index + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf_index + 3),
            _ => index = lf_index + 1,
        }
    }
}

/// Appends `value` to `out` with every whitespace run that holds a CR or LF (a fold, or a stray
/// line break) replaced by one space. Other bytes are copied as they are.
pub fn unfold_into(value: &[u8], out: &mut Vec<u8>) {
    let mut rest = value;
    while let Some(break_index) = memchr2(b'\r', b'\n', rest) {
        let (before, after) = rest.split_at_checked(break_index).unwrap_or((rest, &[]));
        let kept = before
            .iter()
            .rposition(|&byte| !is_space(byte))
            .map_or(0, |i| i + 1);
        out.extend_from_slice(before.get(..kept).unwrap_or_default());
        out.push(b' ');
        let skipped = after
            .iter()
            .take_while(|&&byte| is_whitespace(byte))
            .count();
        rest = after.get(skipped..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
}

/// The length [`unfold_into`] would append.
pub fn unfolded_len(value: &[u8]) -> usize {
    let mut rest = value;
    let mut len = 0;
    while let Some(break_index) = memchr2(b'\r', b'\n', rest) {
        let (before, after) = rest.split_at_checked(break_index).unwrap_or((rest, &[]));
        len += before
            .iter()
            .rposition(|&byte| !is_space(byte))
            .map_or(0, |i| i + 1)
            + 1;
        let skipped = after
            .iter()
            .take_while(|&&byte| is_whitespace(byte))
            .count();
        rest = after.get(skipped..).unwrap_or_default();
    }
    len + rest.len()
}

impl<'a> Request<'a> {
    /// The recorded Via values, in order.
    pub fn vias(&self) -> &[&'a [u8]] {
        self.vias.get(..self.via_count).unwrap_or_default()
    }

    /// The called number (compat.md §2): the user part of the To URI (for `tel:` the number), cut
    /// at the first `;`, percent-decoded; else the Request-URI's user part; else `None` (the caller
    /// records `NOT_FOUND`). `scratch` is cleared and holds the result.
    pub fn called_number<'b>(&self, scratch: &'b mut Vec<u8>) -> Option<&'b [u8]> {
        scratch.clear();
        if let Some(to) = self.to
            && write_uri_user(to, scratch)
        {
            return Some(scratch.as_slice());
        }
        scratch.clear();
        if write_uri_user(self.request_uri, scratch) {
            return Some(scratch.as_slice());
        }
        None
    }

    /// The value of the To header's `tag` parameter (not a URI parameter inside `<...>`), trimmed;
    /// `None` if there is no To, no tag or a blank one.
    pub fn to_tag(&self) -> Option<&'a [u8]> {
        tag_param(self.to?).filter(|tag| !tag.is_empty())
    }

    /// The first User-Agent value, unfolded and trimmed; `None` if absent or blank.
    pub fn user_agent_value<'b>(&self, scratch: &'b mut Vec<u8>) -> Option<&'b [u8]> {
        scratch.clear();
        unfold_into(trim(self.user_agent?), scratch);
        if scratch.is_empty() {
            None
        } else {
            Some(scratch.as_slice())
        }
    }
}

/// The value of the `tag` header parameter of a To (or From) value, trimmed (empty for a bare
/// `;tag`): after the `>` of a name-addr, or after the URI of a bare addr-spec; a `tag` inside
/// `<...>` is a URI parameter and does not count.
pub(crate) fn tag_param(to: &[u8]) -> Option<&[u8]> {
    let params = match angle_index(to) {
        Some(open_index) => {
            let rest = to.get(open_index..).unwrap_or_default();
            memchr(b'>', rest).and_then(|close_index| rest.get(close_index + 1..))
        }
        None => memchr(b';', to).and_then(|semicolon_index| to.get(semicolon_index..)),
    };
    params?.split(|&byte| byte == b';').find_map(|param| {
        let (name, value) = match memchr(b'=', param) {
            Some(equals_index) => (param.get(..equals_index)?, param.get(equals_index + 1..)?),
            None => (param, &[][..]),
        };
        name.trim_ascii()
            .eq_ignore_ascii_case(b"tag")
            .then(|| trim(value))
    })
}

/// Writes the percent-decoded user part of a To value or URI into `out` (which is empty);
/// false if it has none.
fn write_uri_user(value: &[u8], out: &mut Vec<u8>) -> bool {
    if memchr2(b'\r', b'\n', value).is_some() {
        unfold_into(value, out);
        let Some(range) = uri_user_range(out) else {
            out.clear();
            return false;
        };
        percent_decode_in_place(out, range);
    } else {
        let Some(user) = uri_user_range(value).and_then(|range| value.get(range)) else {
            return false;
        };
        out.extend_from_slice(user);
        percent_decode_in_place(out, 0..user.len());
    }
    true
}

/// The range of the URI inside a To value: between `<` and `>` (a `<` inside a quoted display
/// name does not count), or the whole trimmed value for a bare URI.
pub(crate) fn uri_range(value: &[u8]) -> Range<usize> {
    match angle_index(value) {
        Some(open_index) => {
            let start = open_index + 1;
            let rest = value.get(start..).unwrap_or_default();
            let end = start + memchr(b'>', rest).unwrap_or(rest.len());
            trim_range(value, start..end)
        }
        None => trim_range(value, 0..value.len()),
    }
}

/// The index of the first `<` outside a quoted string (quotes may hold `\"` escapes).
pub(crate) fn angle_index(value: &[u8]) -> Option<usize> {
    let mut index = 0;
    let mut quoted = false;
    while let Some(&byte) = value.get(index) {
        match (quoted, byte) {
            (true, b'\\') => index += 1,
            (true, b'"') | (false, b'"') => quoted = !quoted,
            (false, b'<') => return Some(index),
            _ => {}
        }
        index += 1;
    }
    None
}

fn trim_range(bytes: &[u8], range: Range<usize>) -> Range<usize> {
    let slice = bytes.get(range.clone()).unwrap_or_default();
    let start = slice
        .iter()
        .position(|&byte| !is_whitespace(byte))
        .unwrap_or(slice.len());
    let end = slice
        .iter()
        .rposition(|&byte| !is_whitespace(byte))
        .map_or(start, |i| i + 1);
    range.start + start..range.start + end
}

/// The range of the user part of the URI in a To value (or a bare URI): for `sip:`/`sips:` the
/// bytes before `@`, cut at the first `;` or `:` (user parameters, password); for `tel:` the
/// number, cut at the first `;`. `None` if empty, without `@`, or another scheme.
fn uri_user_range(value: &[u8]) -> Option<Range<usize>> {
    let uri = uri_range(value);
    let uri_bytes = value.get(uri.clone())?;
    let colon_index = memchr(b':', uri_bytes)?;
    let scheme = uri_bytes.get(..colon_index)?;
    let user_start = uri.start + colon_index + 1;
    let rest = value.get(user_start..uri.end)?;
    let user_len = if scheme.eq_ignore_ascii_case(b"tel") {
        memchr(b';', rest).unwrap_or(rest.len())
    } else if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        let userinfo = rest.get(..memchr(b'@', rest)?)?;
        memchr2(b';', b':', userinfo).unwrap_or(userinfo.len())
    } else {
        return None;
    };
    (user_len > 0).then_some(user_start..user_start + user_len)
}

/// Decodes `%XX` escapes of `buffer[range]` into the front of `buffer` and truncates it there;
/// an invalid escape is kept as it is. Decoding never grows, so writing trails reading.
fn percent_decode_in_place(buffer: &mut Vec<u8>, range: Range<usize>) {
    let mut read_index = range.start;
    let mut write_index = 0;
    while read_index < range.end {
        let Some(&byte) = buffer.get(read_index) else {
            break;
        };
        let escaped = match (byte, buffer.get(read_index + 1), buffer.get(read_index + 2)) {
            (b'%', Some(&high), Some(&low)) if read_index + 2 < range.end => hex_value(high)
                .zip(hex_value(low))
                .map(|(high, low)| high << 4 | low),
            _ => None,
        };
        let (decoded, consumed) = escaped.map_or((byte, 1), |decoded| (decoded, 3));
        debug_assert!(write_index <= read_index);
        if let Some(slot) = buffer.get_mut(write_index) {
            *slot = decoded;
        }
        write_index += 1;
        read_index += consumed;
    }
    buffer.truncate(write_index);
}

fn hex_value(byte: u8) -> Option<u8> {
    let digit = char::from(byte).to_digit(16)?;
    u8::try_from(digit).ok()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every corpus file, by path under `tests/corpus`.
    pub(crate) const CORPUS: &[(&str, &[u8])] = &[
        corpus!("valid/sipvicious_options.sip"),
        corpus!("valid/sipvicious_register.sip"),
        corpus!("valid/invite_sdp.sip"),
        corpus!("valid/nmap_options.sip"),
        corpus!("valid/sipsak_options.sip"),
        corpus!("valid/compact_headers.sip"),
        corpus!("valid/lowercase_names.sip"),
        corpus!("valid/lf_only.sip"),
        corpus!("valid/folded_lines.sip"),
        corpus!("valid/tel_to.sip"),
        corpus!("valid/percent_to.sip"),
        corpus!("valid/quoted_name_to.sip"),
        corpus!("valid/bare_to_params.sip"),
        corpus!("valid/to_no_user.sip"),
        corpus!("valid/no_user_anywhere.sip"),
        corpus!("valid/ua_missing.sip"),
        corpus!("valid/ua_blank.sip"),
        corpus!("valid/ua_duplicate.sip"),
        corpus!("valid/hcolon_spaces.sip"),
        corpus!("valid/many_vias.sip"),
        corpus!("valid/invite_60k.sip"),
        corpus!("valid/leading_crlf.sip"),
        corpus!("valid/lowercase_version.sip"),
        corpus!("valid/sipsak_register_auth.sip"),
        corpus!("valid/svcrack_register_auth.sip"),
        corpus!("malformed/empty.sip"),
        corpus!("malformed/keepalive_crlf.sip"),
        corpus!("malformed/response_200.sip"),
        corpus!("malformed/binary_noise.sip"),
        corpus!("malformed/http_get.sip"),
        corpus!("malformed/two_tokens.sip"),
        corpus!("malformed/bad_method_chars.sip"),
        corpus!("malformed/bad_content_length.sip"),
        corpus!("malformed/no_blank_line.sip"),
        corpus!("malformed/request_line_only.sip"),
        corpus!("attack/toll_fraud_invite.sip"),
        corpus!("attack/header_flood.sip"),
        corpus!("attack/via_flood.sip"),
        corpus!("attack/crlf_injection_ua.sip"),
        corpus!("attack/nul_bytes.sip"),
        corpus!("attack/long_to.sip"),
    ];

    macro_rules! corpus {
        ($path:literal) => {
            (
                $path,
                include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/", $path)),
            )
        };
    }
    use corpus;

    pub(crate) fn corpus_file(path: &str) -> &'static [u8] {
        CORPUS
            .iter()
            .find(|(name, _)| *name == path)
            .map(|(_, bytes)| *bytes)
            .unwrap()
    }

    /// What a corpus file must scan to.
    struct Expected {
        method: &'static [u8],
        called_number: Option<&'static [u8]>,
        user_agent: Option<&'static [u8]>,
        via_count: usize,
        content_length: Option<u32>,
    }

    const fn request(
        method: &'static [u8],
        called_number: Option<&'static [u8]>,
        user_agent: Option<&'static [u8]>,
        via_count: usize,
        content_length: Option<u32>,
    ) -> Result<Expected, NotRequest> {
        Ok(Expected {
            method,
            called_number,
            user_agent,
            via_count,
            content_length,
        })
    }

    // compat.md §2 rule -> corpus case(s):
    // - request line `METHOD SP Request-URI SP SIP/2.0` is an event: every valid/* file;
    //   liberal whitespace and lower-case `sip/2.0`: valid/lowercase_version
    // - a SIP response is not an event: malformed/response_200
    // - an empty datagram: malformed/empty; a CRLF keep-alive: malformed/keepalive_crlf
    // - binary noise / not SIP: malformed/binary_noise, http_get, two_tokens, bad_method_chars
    // - leading CRLF before the request line skipped: valid/leading_crlf
    // - header names case-insensitive: valid/lowercase_names, valid/lowercase_version (SIPS:)
    // - compact forms t f i v l (m ignored): valid/compact_headers, valid/many_vias (v)
    // - LF-only line endings: valid/lf_only
    // - folded lines joined with one space: valid/folded_lines (To, User-Agent, Via)
    // - HCOLON with spaces/tabs before the colon: valid/hcolon_spaces
    // - sip_method as received: every request row
    // - called_number = user part of To URI: valid/sipvicious_*, nmap_options, compact_headers
    // - `tel:` To: valid/tel_to; `sips:`: valid/lowercase_version
    // - cut at first `;`: valid/bare_to_params (user params), tel_to (tel params)
    // - percent-decoded (invalid escapes kept): valid/percent_to
    // - To `name <uri>;params`: valid/lowercase_version, toll_fraud_invite;
    //   `"quoted name" <uri>` with escapes and `<` inside: valid/quoted_name_to;
    //   bare `uri;params`: valid/bare_to_params, valid/sipsak_options
    // - To without user part -> Request-URI user: valid/to_no_user; neither -> NOT_FOUND (None):
    //   valid/no_user_anywhere, nmap R-URI `sip:nm` is never needed since To has a user
    // - no To header -> Request-URI user: malformed/request_line_only, attack/header_flood
    // - User-Agent first value trimmed: valid/ua_duplicate; absent: valid/ua_missing;
    //   blank: valid/ua_blank; stray CR unfolded: attack/crlf_injection_ua
    // - Via kept in order, several per line: valid/many_vias; capped at SIP_VIA_COUNT_MAX:
    //   attack/via_flood
    // - Content-Length parsed, garbage -> None: malformed/bad_content_length
    // - headers end at end of input without a blank line: malformed/no_blank_line
    // - SIP_HEADERS_COUNT_MAX: attack/header_flood (To and User-Agent after the limit unseen)
    // - 60 KiB INVITE not truncated: valid/invite_60k
    // - Authorization (first line, before Via) recorded: valid/sipsak_register_auth;
    //   after the others: valid/svcrack_register_auth (both real retries after a 401)
    #[rustfmt::skip]
    fn expected(path: &str) -> Result<Expected, NotRequest> {
        match path {
            "valid/sipvicious_options.sip" => request(b"OPTIONS", Some(b"100"), Some(b"friendly-scanner"), 1, Some(0)),
            "valid/sipvicious_register.sip" => request(b"REGISTER", Some(b"1001"), Some(b"friendly-scanner"), 1, Some(0)),
            "valid/invite_sdp.sip" => request(b"INVITE", Some(b"900441614960000"), Some(b"Z 5.4.12 v2.10.13.2"), 1, Some(205)),
            "valid/nmap_options.sip" => request(b"OPTIONS", Some(b"nm2"), None, 1, Some(0)),
            "valid/sipsak_options.sip" => request(b"OPTIONS", Some(b"sipsak"), Some(b"sipsak 0.9.8.1"), 1, Some(0)),
            "valid/compact_headers.sip" => request(b"OPTIONS", Some(b"2001"), Some(b"pplsip"), 1, Some(0)),
            "valid/lowercase_names.sip" => request(b"OPTIONS", Some(b"3001"), Some(b"sipcli/v1.8"), 1, Some(0)),
            "valid/lf_only.sip" => request(b"OPTIONS", Some(b"4001"), Some(b"lf-scanner"), 1, Some(0)),
            "valid/folded_lines.sip" => request(b"OPTIONS", Some(b"5001"), Some(b"Folded Agent/1.0"), 1, Some(0)),
            "valid/tel_to.sip" => request(b"INVITE", Some(b"+442079460000"), Some(b"tel-dialer"), 1, Some(0)),
            "valid/percent_to.sip" => request(b"INVITE", Some(b"+442079%zz46%"), Some(b"pct"), 1, Some(0)),
            "valid/quoted_name_to.sip" => request(b"OPTIONS", Some(b"6001"), Some(b"quoted"), 1, Some(0)),
            "valid/bare_to_params.sip" => request(b"OPTIONS", Some(b"7001"), Some(b"bare"), 1, Some(0)),
            "valid/to_no_user.sip" => request(b"OPTIONS", Some(b"8000"), Some(b"nouser"), 1, Some(0)),
            "valid/no_user_anywhere.sip" => request(b"OPTIONS", None, Some(b"none"), 1, Some(0)),
            "valid/ua_missing.sip" => request(b"OPTIONS", Some(b"100"), None, 1, Some(0)),
            "valid/ua_blank.sip" => request(b"OPTIONS", Some(b"100"), None, 1, Some(0)),
            "valid/ua_duplicate.sip" => request(b"OPTIONS", Some(b"100"), Some(b"first-agent 1.0"), 1, Some(0)),
            "valid/hcolon_spaces.sip" => request(b"OPTIONS", Some(b"1200"), Some(b"spaced agent"), 1, Some(0)),
            "valid/many_vias.sip" => request(b"OPTIONS", Some(b"1300"), None, 3, Some(0)),
            "valid/invite_60k.sip" => request(b"INVITE", Some(b"0046812345678"), Some(b"big-sender"), 1, Some(60_666)),
            "valid/leading_crlf.sip" => request(b"OPTIONS", Some(b"1400"), None, 1, Some(0)),
            "valid/lowercase_version.sip" => request(b"OPTIONS", Some(b"1501"), None, 1, Some(0)),
            "valid/sipsak_register_auth.sip" => request(b"REGISTER", Some(b"100"), Some(b"sipsak 0.9.8.1"), 1, Some(0)),
            "valid/svcrack_register_auth.sip" => request(b"REGISTER", Some(b"100"), Some(b"friendly-scanner"), 1, Some(0)),
            "malformed/empty.sip" => Err(NotRequest::Empty),
            "malformed/keepalive_crlf.sip" => Err(NotRequest::KeepAlive),
            "malformed/response_200.sip" => Err(NotRequest::Response),
            "malformed/binary_noise.sip" | "malformed/http_get.sip" | "malformed/two_tokens.sip"
            | "malformed/bad_method_chars.sip" => Err(NotRequest::Garbage),
            "malformed/bad_content_length.sip" => request(b"OPTIONS", Some(b"1600"), None, 1, None),
            "malformed/no_blank_line.sip" => request(b"OPTIONS", Some(b"1700"), Some(b"cut"), 1, None),
            "malformed/request_line_only.sip" => request(b"OPTIONS", Some(b"1800"), None, 0, None),
            "attack/toll_fraud_invite.sip" => request(b"INVITE", Some(b"0090972595096037"), Some(b"Cisco-SIPGateway/IOS-12.x"), 1, Some(0)),
            "attack/header_flood.sip" => request(b"OPTIONS", Some(b"1900"), None, 1, None),
            "attack/via_flood.sip" => request(b"OPTIONS", Some(b"2100"), None, SIP_VIA_COUNT_MAX, Some(0)),
            "attack/crlf_injection_ua.sip" => request(b"OPTIONS", Some(b"2200"), Some(b"evil Injected: yes"), 1, Some(0)),
            "attack/nul_bytes.sip" => request(b"OPTIONS", Some(b"23\x0000"), Some(b"nul\x00agent"), 1, Some(0)),
            "attack/long_to.sip" => request(b"OPTIONS", Some("9".repeat(4000).leak().as_bytes()), None, 1, Some(0)),
            _ => panic!("no expectation for {path}"),
        }
    }

    /// True if `inner` lies inside `outer` (pointer range check).
    pub(crate) fn inside(outer: &[u8], inner: &[u8]) -> bool {
        let outer_start = outer.as_ptr() as usize;
        let inner_start = inner.as_ptr() as usize;
        inner.is_empty() && inner_start == 0
            || inner_start >= outer_start && inner_start + inner.len() <= outer_start + outer.len()
    }

    pub(crate) fn assert_inside(message: &[u8], request: &Request<'_>) {
        let optional = [
            request.to,
            request.from,
            request.call_id,
            request.cseq,
            request.user_agent,
            request.authorization,
            request.to_tag(),
        ];
        let slices = [request.method, request.request_uri]
            .into_iter()
            .chain(optional.into_iter().flatten());
        for slice in slices.chain(request.vias().iter().copied()) {
            assert!(inside(message, slice), "slice {slice:?} outside the input");
        }
        assert!(request.header_bytes <= message.len());
        assert_eq!(request.message_bytes, message.len());
        assert!(request.via_count <= SIP_VIA_COUNT_MAX);
    }

    #[test]
    fn scanner_corpus_table() {
        let mut scratch = Vec::new();
        for &(path, bytes) in CORPUS {
            let result = scan(bytes);
            match (expected(path), result) {
                (Err(want), Err(got)) => assert_eq!(want, got, "{path}"),
                (Ok(want), Ok(got)) => {
                    assert_inside(bytes, &got);
                    assert_eq!(got.method, want.method, "{path}");
                    assert_eq!(
                        got.called_number(&mut scratch),
                        want.called_number,
                        "{path}"
                    );
                    assert_eq!(
                        got.user_agent_value(&mut scratch),
                        want.user_agent,
                        "{path}"
                    );
                    assert_eq!(got.via_count, want.via_count, "{path}");
                    assert_eq!(got.content_length, want.content_length, "{path}");
                    let body_bytes = usize::try_from(got.content_length.unwrap_or(0)).unwrap();
                    if got.content_length.is_some() {
                        assert_eq!(got.header_bytes + body_bytes, bytes.len(), "{path}");
                    } else {
                        assert_eq!(got.header_bytes, bytes.len(), "{path}");
                    }
                }
                (want, got) => panic!("{path}: want {:?}, got {got:?}", want.map(|w| w.method)),
            }
        }
    }

    #[test]
    fn scanner_headers_of_sipvicious_options() {
        let request = scan(corpus_file("valid/sipvicious_options.sip")).unwrap();
        assert_eq!(request.request_uri, b"sip:100@203.0.113.7");
        assert_eq!(request.to, Some(&b"\"sipvicious\"<sip:100@1.1.1.1>"[..]));
        assert_eq!(
            request.from,
            Some(&b"\"sipvicious\"<sip:100@1.1.1.1>;tag=6633623736373630313363340131353938393034313838"[..])
        );
        assert_eq!(request.call_id, Some(&b"480722356891476308232318"[..]));
        assert_eq!(request.cseq, Some(&b"1 OPTIONS"[..]));
        assert_eq!(
            request.vias(),
            [&b"SIP/2.0/UDP 198.51.100.23:5060;branch=z9hG4bK-2873104421;rport"[..]]
        );
    }

    #[test]
    fn scanner_vias_in_order() {
        let request = scan(corpus_file("valid/many_vias.sip")).unwrap();
        let vias = request.vias();
        assert!(vias[0].starts_with(b"SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKa, SIP/2.0/UDP"));
        assert_eq!(vias[1], b"SIP/2.0/TCP 198.51.100.3:5060;branch=z9hG4bKc");
        assert_eq!(vias[2], b"SIP/2.0/UDP 198.51.100.4:5060;branch=z9hG4bKd");
        let flood = scan(corpus_file("attack/via_flood.sip")).unwrap();
        assert_eq!(
            flood.vias()[15],
            b"SIP/2.0/UDP 198.51.100.15:5060;branch=z9hG4bK15"
        );
    }

    #[test]
    fn scanner_authorization_first_of_either_name() {
        let request = scan(corpus_file("valid/sipsak_register_auth.sip")).unwrap();
        let value = request.authorization.unwrap();
        assert!(value.starts_with(b"Digest username=\"100\", uri="));
        assert!(value.ends_with(b"response=\"6dda1d135285e4e384e0e97a362289ec\""));
        assert_eq!(
            scan(corpus_file("valid/sipvicious_register.sip"))
                .unwrap()
                .authorization,
            None
        );
        let both = b"INVITE sip:1@h SIP/2.0\r\nproxy-authorization :  Digest a=1\r\n\
Authorization: Digest b=2\r\n\r\n";
        assert_eq!(scan(both).unwrap().authorization, Some(&b"Digest a=1"[..]));
        let folded = b"INVITE sip:1@h SIP/2.0\r\nAuthorization: Digest\r\n username=\"7\"\r\n\r\n";
        assert_eq!(
            scan(folded).unwrap().authorization,
            Some(&b"Digest\r\n username=\"7\""[..])
        );
    }

    #[rustfmt::skip]
    const TO_TAG_CASES: &[(&[u8], Option<&[u8]>)] = &[
        (b"<sip:a@b>;tag=1", Some(b"1")), (b"<sip:a@b> ; TAG = ab12 ;x=y", Some(b"ab12")),
        (b"<sip:a@b;tag=1>", None), (b"<sip:a@b;tag=1>;tag=2", Some(b"2")),
        (b"sip:a@b;tag=3", Some(b"3")), (b"sip:a@b", None), (b"\"x;tag=1\" <sip:a@b>", None),
        (b"<sip:a@b>;tagx=1", None), (b"<sip:a@b", None), (b"<sip:a@b>;tag", None),
        (b"<sip:a@b>;tag=", None), (b"<sip:a@b>;tag=\r\n 5", Some(b"5")),
        (b"<sip:a@b>;tag=6;tag=7", Some(b"6")), (b"<sip:a@b>;x=tag=8", None),
    ];

    #[test]
    fn scanner_to_tag_forms() {
        for &(to, want) in TO_TAG_CASES {
            let request = Request {
                to: Some(to),
                ..scan(b"ACK sip:h SIP/2.0").unwrap()
            };
            assert_eq!(request.to_tag(), want, "{}", to.escape_ascii());
        }
        assert_eq!(scan(b"ACK sip:h SIP/2.0").unwrap().to_tag(), None);
        let ack = b"ACK sip:1@h SIP/2.0\r\nTo: \"1\" <sip:1@h>;tag=0123abcd\r\n\r\n";
        assert_eq!(scan(ack).unwrap().to_tag(), Some(&b"0123abcd"[..]));
    }

    #[test]
    fn scanner_folded_via_raw() {
        let request = scan(corpus_file("valid/folded_lines.sip")).unwrap();
        assert_eq!(
            request.vias(),
            [&b"SIP/2.0/UDP 198.51.100.9:5060\r\n ;branch=z9hG4bKfold"[..]]
        );
        let mut scratch = Vec::new();
        unfold_into(request.vias()[0], &mut scratch);
        assert_eq!(
            scratch,
            b"SIP/2.0/UDP 198.51.100.9:5060 ;branch=z9hG4bKfold"
        );
    }

    type LineCase = (&'static [u8], Result<&'static [u8], NotRequest>);

    #[rustfmt::skip]
    const LINE_CASES: &[LineCase] = &[
        (b"OPTIONS sip:a SIP/2.0", Ok(b"OPTIONS")),
        (b"options sip:a Sip/2.0\r\n", Ok(b"options")),
        (b"X-CUSTOM.1! sip:a SIP/2.0\r\n\r\n", Ok(b"X-CUSTOM.1!")),
        (b"OPTIONS sip:a SIP/2.1\r\n", Err(NotRequest::Garbage)),
        (b"OPTIONS sip:a SIP/2.0 extra\r\n", Err(NotRequest::Garbage)),
        (b"OPTIONS\r\n", Err(NotRequest::Garbage)),
        (b" \r\n", Err(NotRequest::Garbage)),
        (b"OPT\x00 sip:a SIP/2.0\r\n", Err(NotRequest::Garbage)),
        (b"OPTIONS sip:\x01 SIP/2.0\r\n", Err(NotRequest::Garbage)),
        (b"SIP/2.0 180 Ringing\r\n", Err(NotRequest::Response)),
        (b"sip/2.0 404\r\n", Err(NotRequest::Response)),
        (b"SIP/2.0 OK\r\n", Err(NotRequest::Garbage)),
        (b"\n", Err(NotRequest::KeepAlive)),
        (b"\r\n\r\nINVITE sip:1@h SIP/2.0\r\n", Ok(b"INVITE")),
        (b"", Err(NotRequest::Empty)),
    ];

    #[test]
    fn scanner_request_lines() {
        for &(line, want) in LINE_CASES {
            assert_eq!(
                scan(line).map(|request| request.method),
                want,
                "{:?}",
                line.escape_ascii().to_string()
            );
        }
    }

    #[rustfmt::skip]
    const TO_CASES: &[(&[u8], Option<&[u8]>)] = &[
        (b"<sip:100@h>", Some(b"100")),
        (b"Name <sip:100@h>;tag=1", Some(b"100")),
        (b"\"a<b>\\\"c\" <sips:200@h;user=phone>", Some(b"200")),
        (b"sip:300@h;tag=x", Some(b"300")),
        (b"SIP:400:secret@h", Some(b"400")),
        (b"<tel:+1-555;ext=1>", Some(b"+1-555")),
        (b"tel:+44", Some(b"+44")),
        (b"<sip:%41%4a%4A%g1%4@h>", Some(b"AJJ%g1%4")),
        (b"<sip:h>", None),
        (b"<sip:@h>", None),
        (b"<mailto:x@h>", None),
        (b"<sip:;p@h>", None),
        (b"\"unterminated <sip:1@h>", None),
        (b"< sip:500@h >", Some(b"500")),
        (b"<sip:600@h", Some(b"600")),
        (b"", None),
        (b"<>", None),
        (b"<tel:>", None),
        (b"\"Folded\"\r\n <sip:700@h>", Some(b"700")),
    ];

    #[test]
    fn scanner_called_number_forms() {
        let mut scratch = Vec::new();
        for &(to, want) in TO_CASES {
            let request = Request {
                to: Some(to),
                ..scan(b"OPTIONS sip:h SIP/2.0").unwrap()
            };
            assert_eq!(
                request.called_number(&mut scratch),
                want,
                "{}",
                to.escape_ascii()
            );
        }
    }

    #[test]
    fn scanner_called_number_falls_back_to_request_uri() {
        let mut scratch = Vec::new();
        let request = scan(b"INVITE sip:%2B1@h;x=y SIP/2.0\r\nTo: <sip:h>\r\n\r\n").unwrap();
        assert_eq!(request.called_number(&mut scratch), Some(&b"+1"[..]));
        let request = scan(b"INVITE sip:h SIP/2.0\r\nTo: <sip:h>\r\n\r\n").unwrap();
        assert_eq!(request.called_number(&mut scratch), None);
    }

    #[test]
    fn scanner_scratch_reused_without_growth() {
        let mut scratch = Vec::with_capacity(64);
        let pointer = scratch.as_ptr();
        let request = scan(corpus_file("valid/sipvicious_options.sip")).unwrap();
        for _ in 0..3 {
            assert_eq!(request.called_number(&mut scratch), Some(&b"100"[..]));
            assert_eq!(
                request.user_agent_value(&mut scratch),
                Some(&b"friendly-scanner"[..])
            );
        }
        assert_eq!(scratch.as_ptr(), pointer);
    }

    #[rustfmt::skip]
    const NAME_CASES: &[(&[u8], Option<Known>)] = &[
        (b"To: x", Some(Known::To)), (b"tO :x", Some(Known::To)), (b"t\t: x", Some(Known::To)),
        (b"T:x", Some(Known::To)), (b"Tox: x", None), (b"T o: x", None), (b"To\r\n : x", None),
        (b"FROM: x", Some(Known::From)), (b"f: x", Some(Known::From)), (b"Fro: x", None),
        (b"VIA: x", Some(Known::Via)), (b"v: x", Some(Known::Via)), (b"Via-X: x", None),
        (b"I: x", Some(Known::CallId)), (b"cALL-iD: x", Some(Known::CallId)), (b"Call_ID: x", None),
        (b"Call\rID: x", None), (b"CSeq: x", Some(Known::CSeq)), (b"CSeqs: x", None),
        (b"L: x", Some(Known::ContentLength)), (b"content-LENGTH   : x", Some(Known::ContentLength)),
        (b"Content-Lengthy: x", None), (b"Content-Type: x", None), (b"Contact: x", None),
        (b"m: x", None), (b"User-Agent: x", Some(Known::UserAgent)), (b"User-Agent2: x", None),
        (b"To", None), (b"t", None), (b"", None), (b"\x14o: x", None), (b"4o: x", None),
        (b"Authorization: x", Some(Known::Authorization)), (b"AUTHORIZATION\t: x", Some(Known::Authorization)),
        (b"Proxy-Authorization: x", Some(Known::Authorization)), (b"pROXY-aUTHORIZATION:x", Some(Known::Authorization)),
        (b"Proxy-Authorizatio: x", None), (b"Proxy-Authorizationx: x", None), (b"Proxy-Authorizatiom: x", None),
        (b"Proxy_Authorization: x", None), (b"Authorizatio: x", None), (b"Authorization2: x", None),
        (b"a: x", None), (b"p: x", None), (b"Proxy-Authenticate: x", None), (b"Proxy-Require: x", None),
        (b"Proxy-Authoriza", None), (b"Proxy-Authorization", None),
    ];

    #[test]
    fn scanner_header_names() {
        for &(line, want) in NAME_CASES {
            // Both with the rest of a message after the line and with the line at the very end.
            let mut padded = line.to_vec();
            padded.extend_from_slice(b"\r\nMax-Forwards: 70\r\n\r\n");
            for tail in [line, padded.as_slice()] {
                let header = Header { line, tail };
                assert_eq!(
                    header.known().map(|(known, _)| known),
                    want,
                    "{}",
                    line.escape_ascii()
                );
            }
        }
    }

    #[rustfmt::skip]
    const CONTENT_LENGTH_CASES: &[(&[u8], Option<u32>)] = &[
        (b"0", Some(0)), (b"4294967295", Some(u32::MAX)), (b"4294967296", None),
        (b"00000000001", None), (b"12a", None), (b"", None), (b"-1", None), (b"+1", None),
    ];

    #[test]
    fn scanner_content_length_values() {
        for &(value, want) in CONTENT_LENGTH_CASES {
            assert_eq!(
                parse_content_length(value),
                want,
                "{}",
                value.escape_ascii()
            );
        }
    }

    #[test]
    fn scanner_unfold_rules() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\n b", b"a b"),
            (b"a  \r\n\t\t b", b"a b"),
            (b"a\n\tb\r\n c", b"a b c"),
            (b"a\rb", b"a b"),
            (b"a  b", b"a  b"),
            (b"", b""),
        ];
        for &(value, want) in cases {
            let mut out = Vec::new();
            unfold_into(value, &mut out);
            assert_eq!(out, want, "{}", value.escape_ascii());
            assert_eq!(unfolded_len(value), want.len());
        }
    }

    #[test]
    fn scanner_header_limit_at_and_over() {
        let build = |extra: usize| {
            let mut message = b"OPTIONS sip:1@h SIP/2.0\r\n".to_vec();
            for index in 0..extra {
                message.extend_from_slice(format!("X-{index}: a\r\n").as_bytes());
            }
            message.extend_from_slice(b"To: <sip:2@h>\r\n\r\nbody");
            message
        };
        let at_limit = build(SIP_HEADERS_COUNT_MAX - 1);
        let request = scan(&at_limit).unwrap();
        assert_eq!(request.to, Some(&b"<sip:2@h>"[..]));
        assert_eq!(request.header_bytes, at_limit.len() - 4);
        let over_limit = build(SIP_HEADERS_COUNT_MAX);
        let request = scan(&over_limit).unwrap();
        assert_eq!(request.to, None);
        assert_eq!(request.header_bytes, over_limit.len() - 4);
    }

    #[test]
    fn scanner_header_bytes_after_limit_blank_line_next() {
        let mut message = b"OPTIONS sip:1@h SIP/2.0\r\n".to_vec();
        for _ in 0..SIP_HEADERS_COUNT_MAX {
            message.extend_from_slice(b"X: a\r\n");
        }
        let headers_end = message.len() + 2;
        message.extend_from_slice(b"\r\n\r\n");
        assert_eq!(scan(&message).unwrap().header_bytes, headers_end);
    }

    /// A simple line-splitting scanner: the oracle for [`scan`] and the field helpers.
    mod naive {
        use super::super::{NotRequest, SIP_HEADERS_COUNT_MAX, SIP_VIA_COUNT_MAX};

        #[derive(Debug, PartialEq, Eq)]
        pub(super) struct Fields {
            pub(super) method: Vec<u8>,
            pub(super) request_uri: Vec<u8>,
            pub(super) to: Option<Vec<u8>>,
            pub(super) from: Option<Vec<u8>>,
            pub(super) call_id: Option<Vec<u8>>,
            pub(super) cseq: Option<Vec<u8>>,
            pub(super) vias: Vec<Vec<u8>>,
            pub(super) user_agent: Option<Vec<u8>>,
            pub(super) content_length: Option<u32>,
            pub(super) authorization: Option<Vec<u8>>,
            pub(super) header_bytes: usize,
        }

        /// Lines as (start, content end without CR, next line start).
        fn lines(message: &[u8], from: usize) -> Vec<(usize, usize, usize)> {
            let mut result = Vec::new();
            let mut start = from;
            while start < message.len() {
                let lf = (start..message.len()).find(|&i| message[i] == b'\n');
                let (end, next) = lf.map_or((message.len(), message.len()), |i| (i, i + 1));
                let end = if end > start && message[end - 1] == b'\r' {
                    end - 1
                } else {
                    end
                };
                result.push((start, end, next));
                start = next;
            }
            result
        }

        fn trim(bytes: &[u8], set: &[u8]) -> Vec<u8> {
            let mut v = bytes.to_vec();
            while v.first().is_some_and(|b| set.contains(b)) {
                v.remove(0);
            }
            while v.last().is_some_and(|b| set.contains(b)) {
                v.pop();
            }
            v
        }

        pub(super) fn scan(message: &[u8]) -> Result<Fields, NotRequest> {
            if message.is_empty() {
                return Err(NotRequest::Empty);
            }
            let Some(first) = message.iter().position(|b| *b != b'\r' && *b != b'\n') else {
                return Err(NotRequest::KeepAlive);
            };
            let all = lines(message, first);
            let mut fields = request_line(message, all[0])?;
            let (headers, end_found) = logical_headers(message, &all);
            fields.header_bytes = end_found.unwrap_or(message.len());
            for (s, e) in headers {
                header(&mut fields, &message[s..e]);
            }
            Ok(fields)
        }

        /// The request line's fields, or why the message is not a request.
        fn request_line(
            message: &[u8],
            (s, e, _): (usize, usize, usize),
        ) -> Result<Fields, NotRequest> {
            let text: Vec<&[u8]> = message[s..e]
                .split(|b| *b == b' ' || *b == b'\t')
                .filter(|t| !t.is_empty())
                .collect();
            if text
                .first()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"SIP/2.0"))
            {
                let code = text
                    .get(1)
                    .is_some_and(|c| c.len() == 3 && c.iter().all(u8::is_ascii_digit));
                return Err(if code {
                    NotRequest::Response
                } else {
                    NotRequest::Garbage
                });
            }
            let token_ok = |t: &[u8]| {
                t.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b))
            };
            let uri_ok = |t: &[u8]| t.iter().all(|b| *b > 32 && *b != 127);
            if text.len() != 3
                || !text[2].eq_ignore_ascii_case(b"SIP/2.0")
                || !token_ok(text[0])
                || !uri_ok(text[1])
            {
                return Err(NotRequest::Garbage);
            }
            Ok(Fields {
                method: text[0].to_vec(),
                request_uri: text[1].to_vec(),
                to: None,
                from: None,
                call_id: None,
                cseq: None,
                vias: Vec::new(),
                user_agent: None,
                content_length: None,
                authorization: None,
                header_bytes: message.len(),
            })
        }

        /// The lines after the request line grouped into logical (unfolded) headers, at most
        /// `SIP_HEADERS_COUNT_MAX`, and where the blank line after them ends.
        fn logical_headers(
            message: &[u8],
            all: &[(usize, usize, usize)],
        ) -> (Vec<(usize, usize)>, Option<usize>) {
            let mut headers: Vec<(usize, usize)> = Vec::new();
            let mut index = 1;
            let mut end_found = None;
            while index < all.len() {
                let (s, e, next) = all[index];
                if s == e {
                    end_found = Some(next);
                    break;
                }
                let mut end = e;
                index += 1;
                while index < all.len() && matches!(message[all[index].0], b' ' | b'\t') {
                    end = all[index].1;
                    index += 1;
                }
                headers.push((s, end));
            }
            if headers.len() > SIP_HEADERS_COUNT_MAX {
                // The blank line search after the limit: the first empty line after the last header seen.
                let last_end = headers[SIP_HEADERS_COUNT_MAX - 1].1;
                headers.truncate(SIP_HEADERS_COUNT_MAX);
                end_found = all
                    .iter()
                    .find(|(s, e, _)| *s > last_end && s == e)
                    .map(|(_, _, n)| *n);
            }
            (headers, end_found)
        }

        /// Records one logical header line in `fields` (the first of each kind; Vias up to
        /// `SIP_VIA_COUNT_MAX`).
        fn header(fields: &mut Fields, line: &[u8]) {
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                return;
            };
            let name = trim(&line[..colon], b" \t").to_ascii_lowercase();
            let value = trim(&line[colon + 1..], b" \t\r\n");
            let slot = match name.as_slice() {
                b"to" | b"t" => &mut fields.to,
                b"from" | b"f" => &mut fields.from,
                b"call-id" | b"i" => &mut fields.call_id,
                b"cseq" => &mut fields.cseq,
                b"user-agent" => &mut fields.user_agent,
                b"authorization" | b"proxy-authorization" => &mut fields.authorization,
                b"via" | b"v" => {
                    if fields.vias.len() < SIP_VIA_COUNT_MAX {
                        fields.vias.push(value);
                    }
                    return;
                }
                b"content-length" | b"l" => {
                    if fields.content_length.is_none() {
                        fields.content_length = std::str::from_utf8(&value)
                            .ok()
                            .filter(|t| {
                                !t.is_empty()
                                    && t.len() <= 10
                                    && t.bytes().all(|b| b.is_ascii_digit())
                            })
                            .and_then(|t| t.parse().ok());
                    }
                    return;
                }
                _ => return,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }

        pub(super) fn unfold(value: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut index = 0;
            while index < value.len() {
                let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
                if ws(value[index]) {
                    let run_end = (index..value.len())
                        .find(|&i| !ws(value[i]))
                        .unwrap_or(value.len());
                    let run = &value[index..run_end];
                    if run.iter().any(|b| *b == b'\r' || *b == b'\n') {
                        out.push(b' ');
                    } else {
                        out.extend_from_slice(run);
                    }
                    index = run_end;
                } else {
                    out.push(value[index]);
                    index += 1;
                }
            }
            out
        }

        fn decode(bytes: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (bytes[i], hex) {
                    (b'%', Some(v)) => {
                        out.push(v);
                        i += 3;
                    }
                    (b, _) => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            out
        }

        fn user(value: &[u8]) -> Option<Vec<u8>> {
            let value = unfold(value);
            // Blank out quoted strings, then look for '<'.
            let mut masked = value.clone();
            let mut quoted = false;
            let mut i = 0;
            while i < masked.len() {
                let b = value[i];
                if quoted {
                    masked[i] = b'x';
                    if b == b'\\' && i + 1 < masked.len() {
                        masked[i + 1] = b'x';
                        i += 1;
                    } else if b == b'"' {
                        quoted = false;
                    }
                } else if b == b'"' {
                    quoted = true;
                }
                i += 1;
            }
            let uri = match masked.iter().position(|b| *b == b'<') {
                Some(open) => {
                    let rest = &value[open + 1..];
                    let close = rest.iter().position(|b| *b == b'>').unwrap_or(rest.len());
                    trim(&rest[..close], b" \t\r\n")
                }
                None => trim(&value, b" \t\r\n"),
            };
            let colon = uri.iter().position(|b| *b == b':')?;
            let scheme = uri[..colon].to_ascii_lowercase();
            let rest = &uri[colon + 1..];
            let user: &[u8] = match scheme.as_slice() {
                b"tel" => rest.split(|b| *b == b';').next()?,
                b"sip" | b"sips" => {
                    let at = rest.iter().position(|b| *b == b'@')?;
                    rest[..at].split(|b| *b == b';' || *b == b':').next()?
                }
                _ => return None,
            };
            (!user.is_empty()).then(|| decode(user))
        }

        pub(super) fn called_number(fields: &Fields) -> Option<Vec<u8>> {
            fields
                .to
                .as_deref()
                .and_then(user)
                .or_else(|| user(&fields.request_uri))
        }

        pub(super) fn user_agent(fields: &Fields) -> Option<Vec<u8>> {
            let value = unfold(&trim(fields.user_agent.as_deref()?, b" \t\r\n"));
            (!value.is_empty()).then_some(value)
        }
    }

    fn to_fields(request: &Request<'_>) -> naive::Fields {
        naive::Fields {
            method: request.method.to_vec(),
            request_uri: request.request_uri.to_vec(),
            to: request.to.map(<[u8]>::to_vec),
            from: request.from.map(<[u8]>::to_vec),
            call_id: request.call_id.map(<[u8]>::to_vec),
            cseq: request.cseq.map(<[u8]>::to_vec),
            vias: request.vias().iter().map(|via| via.to_vec()).collect(),
            user_agent: request.user_agent.map(<[u8]>::to_vec),
            content_length: request.content_length,
            authorization: request.authorization.map(<[u8]>::to_vec),
            header_bytes: request.header_bytes,
        }
    }

    fn check_against_naive(message: &[u8]) {
        let fast = scan(message);
        let slow = naive::scan(message);
        match (fast, slow) {
            (Ok(request), Ok(fields)) => {
                assert_inside(message, &request);
                assert_eq!(to_fields(&request), fields, "{}", message.escape_ascii());
                let mut scratch = Vec::new();
                assert_eq!(
                    request.called_number(&mut scratch).map(<[u8]>::to_vec),
                    naive::called_number(&fields),
                    "{}",
                    message.escape_ascii()
                );
                assert_eq!(
                    request.user_agent_value(&mut scratch).map(<[u8]>::to_vec),
                    naive::user_agent(&fields)
                );
            }
            (Err(fast), Err(slow)) => assert_eq!(fast, slow, "{}", message.escape_ascii()),
            (fast, slow) => panic!("fast {fast:?} naive {slow:?} on {}", message.escape_ascii()),
        }
    }

    #[test]
    fn scanner_matches_naive_on_corpus() {
        for &(_, bytes) in CORPUS {
            check_against_naive(bytes);
        }
    }

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("To"),
            Just("t"),
            Just("TO"),
            Just("From"),
            Just("f"),
            Just("Call-ID"),
            Just("i"),
            Just("CSeq"),
            Just("cseq"),
            Just("Via"),
            Just("v"),
            Just("VIA"),
            Just("User-Agent"),
            Just("user-agent"),
            Just("Content-Length"),
            Just("l"),
            Just("m"),
            Just("Contact"),
            Just("X-Other"),
            Just("Max-Forwards"),
            Just("Authorization"),
            Just("proxy-authorization"),
            Just("Proxy-Authorization"),
            Just("Proxy-Authorizatio"),
            Just("Authorizations"),
            Just("Proxy-Authenticate"),
            Just(""),
        ]
        .prop_map(str::to_owned)
    }

    fn uri() -> impl Strategy<Value = String> {
        let user = "[0-9a-zA-Z+%;:.-]{0,12}";
        prop_oneof![
            (
                prop_oneof![Just("sip"), Just("SIPS"), Just("Sip")],
                user,
                "[a-z0-9.]{1,8}",
                "(;[a-z]{1,4}=[a-z0-9]{1,4})?"
            )
                .prop_map(|(scheme, user, host, params)| format!("{scheme}:{user}@{host}{params}")),
            ("[a-z0-9.]{1,8}").prop_map(|host| format!("sip:{host}")),
            ("[+0-9-]{0,12}", "(;[a-z]{1,4}=[a-z0-9]{1,4})?")
                .prop_map(|(n, p)| format!("tel:{n}{p}")),
        ]
    }

    fn header_value() -> impl Strategy<Value = String> {
        prop_oneof![
            uri().prop_map(|uri| format!("<{uri}>")),
            (uri(), "[a-zA-Z ]{0,8}").prop_map(|(uri, name)| format!("{name} <{uri}>;tag=1")),
            (uri(), "[a-zA-Z <>@:]{0,8}").prop_map(|(uri, name)| format!("\"{name}\\\"\" <{uri}>")),
            uri(),
            "[0-9]{0,11}",
            "[ -~]{0,24}",
            ("[a-z0-9]{0,6}", "[a-z0-9]{0,8}")
                .prop_map(|(user, nonce)| format!("Digest username=\"{user}\", nonce={nonce}")),
        ]
    }

    prop_compose! {
        fn header_line()(
            name in header_name(),
            before_colon in "[ \t]{0,2}",
            after_colon in "[ \t]{0,2}",
            value in header_value(),
            fold_at in proptest::option::of(0usize..32),
            fold in prop_oneof![Just("\r\n "), Just("\n\t"), Just("\r\n  \t")],
            eol in prop_oneof![Just("\r\n"), Just("\n")],
        ) -> Vec<u8> {
            let mut value = value.into_bytes();
            if let Some(at) = fold_at {
                let at = at.min(value.len());
                value.splice(at..at, fold.bytes());
            }
            let mut line = format!("{name}{before_colon}:{after_colon}").into_bytes();
            line.extend_from_slice(&value);
            line.extend_from_slice(eol.as_bytes());
            line
        }
    }

    prop_compose! {
        fn generated_request()(
            leading in "(\r\n){0,2}",
            method in "[A-Za-z]{1,9}",
            request_uri in uri(),
            separator in "[ \t]{1,2}",
            version in prop_oneof![Just("SIP/2.0"), Just("sip/2.0"), Just("SIP/2.1")],
            headers in proptest::collection::vec(header_line(), 0..24),
            blank in prop_oneof![Just(""), Just("\r\n"), Just("\n")],
            body in proptest::collection::vec(any::<u8>(), 0..32),
        ) -> Vec<u8> {
            let mut message = format!("{leading}{method}{separator}{request_uri} {version}\r\n").into_bytes();
            for header in headers {
                message.extend_from_slice(&header);
            }
            message.extend_from_slice(blank.as_bytes());
            if !blank.is_empty() {
                message.extend_from_slice(&body);
            }
            message
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn scanner_matches_naive_on_generated(
            message in generated_request(),
            prefix in 0usize..64,
            suffix in 0usize..64,
        ) {
            // Pad before and after so the message sits at every alignment inside a larger buffer.
            let mut buffer = vec![b'\n'; prefix];
            buffer.extend_from_slice(&message);
            buffer.extend(std::iter::repeat_n(b'x', suffix));
            check_against_naive(&buffer[prefix..prefix + message.len()]);
        }

        #[test]
        fn scanner_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(request) = scan(&bytes) {
                assert_inside(&bytes, &request);
                let mut scratch = Vec::new();
                let _ = request.called_number(&mut scratch);
                let _ = request.user_agent_value(&mut scratch);
            }
        }

        #[test]
        fn scanner_never_panics_on_mutated_corpus(
            file_index in 0usize..CORPUS.len(),
            mutations in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = CORPUS[file_index].1.to_vec();
            if bytes.len() > 4096 {
                bytes.truncate(4096);
            }
            for (position, byte) in mutations {
                if !bytes.is_empty() {
                    let index = position % bytes.len();
                    bytes[index] = byte;
                }
            }
            bytes.truncate(cut % (bytes.len() + 1));
            check_against_naive(&bytes);
        }
    }
}
