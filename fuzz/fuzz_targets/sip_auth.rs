//! The source-proof parts of `sip` (issue 18): `Request::authorization`, `parse_credentials`,
//! `Request::auth_username`, `Request::to_tag`, `ProofKey::check_token` and `build_response` for
//! `401 Unauthorized` and `403 Forbidden`.
//!
//! Input: the whole input is the request (and, as it is, a credentials value); its last byte
//! picks the realm (typical, empty, hostile) and the first 8 bytes, if any, the clock.
//!
//! Invariants: every returned slice lies inside the input; the username is never blank; the
//! To-tag and the nonce (arbitrary bytes) never check `Valid` unless they equal a token we made
//! for that source, kind and bucket; a token made at any time from any source checks `Valid` and,
//! with one byte changed, `Foreign`; a response is at most twice the request and
//! `REPLY_BYTES_MAX`, starts with its status line, ends with the only blank line, holds CR and LF
//! only as CRLF, writes no `"` or `\` inside the realm or nonce, and scans as a response.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use sentrypeer::config::limits::REPLY_BYTES_MAX;
use sentrypeer::sip::auth::parse_credentials;
use sentrypeer::sip::proof::{ProofKey, TokenKind, TokenVerdict};
use sentrypeer::sip::reply::{Status, build_response};
use sentrypeer::sip::{NotRequest, Request, scan};

const REALMS: [&[u8]; 3] = [b"asterisk", b"", b"a\"b\\c\r\nX-Injected: 1\r\n\r\n"];
const SERVER: &[u8] = b"FPBX-16.0.33(18.13.0)";

fn inside(outer: &[u8], inner: &[u8]) -> bool {
    let start = outer.as_ptr() as usize;
    let inner_start = inner.as_ptr() as usize;
    inner.is_empty() || inner_start >= start && inner_start + inner.len() <= start + outer.len()
}

fn check_slices(data: &[u8]) {
    let credentials = parse_credentials(data);
    let fields = [
        credentials.username,
        credentials.realm,
        credentials.nonce,
        credentials.uri,
        credentials.response,
    ];
    for field in fields.into_iter().flatten() {
        assert!(inside(data, field), "a credentials field outside the input");
    }
}

fn check_tokens(key: &ProofKey, request: &Request<'_>, now_s: u64, data: &[u8]) {
    let ip = IpAddr::from([198, 51, 100, data.len().to_le_bytes()[0]]);
    let nonce = request
        .authorization
        .and_then(|value| parse_credentials(value).nonce);
    for (kind, token) in [(TokenKind::Tag, request.to_tag()), (TokenKind::Nonce, nonce)] {
        let Some(token) = token else { continue };
        if key.check_token(kind, ip, token, now_s) == TokenVerdict::Valid {
            let made = key.make_token(kind, ip, now_s);
            assert_eq!(token, made.as_bytes(), "a Valid token we did not make");
        }
    }
    let made = key.make_token(TokenKind::Nonce, ip, now_s);
    assert_eq!(
        key.check_token(TokenKind::Nonce, ip, made.as_bytes(), now_s),
        TokenVerdict::Valid
    );
    assert_eq!(
        key.check_token(TokenKind::Tag, ip, made.as_bytes(), now_s),
        TokenVerdict::Foreign
    );
    let mut changed = made.as_bytes().to_vec();
    let index = usize::from(data.first().copied().unwrap_or(0)) % changed.len();
    changed[index] = changed[index].wrapping_add(data.get(1).copied().unwrap_or(0).max(1));
    assert_eq!(
        key.check_token(TokenKind::Nonce, ip, &changed, now_s),
        TokenVerdict::Foreign
    );
}

fn check_response(request: &Request<'_>, status: Status<'_>, line: &[u8], data: &[u8]) {
    let mut out = Vec::with_capacity(REPLY_BYTES_MAX);
    let Some(reply) = build_response(request, status, SERVER, b"t\r\nX: 1", &mut out) else {
        assert!(out.is_empty(), "no reply but bytes left in the buffer");
        return;
    };
    assert_ne!(request.method, b"ACK", "answered an ACK");
    assert_eq!(reply.len, out.len());
    assert!(reply.len <= 2 * data.len(), "reply over twice the request");
    assert!(reply.len <= REPLY_BYTES_MAX, "reply over REPLY_BYTES_MAX");
    assert!(out.starts_with(line));
    assert!(out.ends_with(b"\r\n\r\n"));
    let blank = out.windows(4).position(|w| w == b"\r\n\r\n");
    assert_eq!(blank, Some(out.len() - 4), "a blank line before the end");
    for (index, &byte) in out.iter().enumerate() {
        match byte {
            b'\r' => assert_eq!(out.get(index + 1), Some(&b'\n'), "bare CR"),
            b'\n' => assert_eq!(out[index - 1], b'\r', "bare LF"),
            _ => {}
        }
    }
    if let Status::Unauthorized { .. } = status {
        let prefix = b"\r\nWWW-Authenticate: Digest realm=\"";
        let start = out
            .windows(prefix.len())
            .position(|w| w == prefix)
            .expect("a challenge line")
            + prefix.len();
        let rest = &out[start..];
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap_or(rest.len());
        let quotes = rest[..line_end].iter().filter(|&&b| b == b'"').count();
        assert_eq!(quotes, 3, "a quote inside the realm or nonce");
        assert!(!rest[..line_end].contains(&b'\\'));
    }
    assert_eq!(scan(&out), Err(NotRequest::Response));
}

fuzz_target!(|data: &[u8]| {
    check_slices(data);
    let Ok(request) = scan(data) else {
        return;
    };
    if let Some(value) = request.authorization {
        assert!(inside(data, value));
        check_slices(value);
    }
    if let Some(username) = request.auth_username() {
        assert!(inside(data, username) && !username.trim_ascii().is_empty());
    }
    if let Some(tag) = request.to_tag() {
        assert!(inside(data, tag) && !tag.is_empty());
    }
    let now_s = data
        .first_chunk::<8>()
        .map_or(1_796_000_000, |bytes| u64::from_le_bytes(*bytes));
    let key = ProofKey::new([7; 32]);
    check_tokens(&key, &request, now_s, data);
    let pick = usize::from(data.last().copied().unwrap_or(0));
    let nonce = key.make_token(TokenKind::Nonce, IpAddr::from([192, 0, 2, 1]), now_s);
    let challenge = Status::Unauthorized {
        realm: REALMS[pick % REALMS.len()],
        nonce: nonce.as_bytes(),
    };
    check_response(&request, challenge, b"SIP/2.0 401 Unauthorized\r\n", data);
    check_response(&request, Status::Forbidden, b"SIP/2.0 403 Forbidden\r\n", data);
});
