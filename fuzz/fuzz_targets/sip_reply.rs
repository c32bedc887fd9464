//! `sip::reply::build_reply` for every input that scans as a request.
//!
//! Input: the last byte picks the `Server` value and the To tag (typical, empty, the longest
//! allowed, or holding CR/LF); all bytes are the request.
//!
//! Invariants: `None` for `ACK`, when Via, From, To, Call-ID or CSeq is missing or blank, or when
//! the reply would be over twice the request (then the buffer is empty); otherwise the reply is at most `REPLY_BYTES_MAX` bytes and twice the
//! request's, is `out[..len]`, starts with `SIP/2.0 200 OK\r\n`, ends with the only blank line, holds CR and LF
//! only as CRLF line ends, has exactly one line per header written (no value can add a header),
//! and scans as `NotRequest::Response`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentrypeer::config::limits::{REPLY_BYTES_MAX, SERVER_HEADER_BYTES_MAX};
use sentrypeer::sip::{NotRequest, build_reply, scan};

const SERVERS: [&[u8]; 4] = [
    b"FPBX-16.0.33(18.13.0)",
    b"",
    &[b'x'; SERVER_HEADER_BYTES_MAX],
    b"Evil\r\nX-Injected: 1\r\n\r\n",
];
const TO_TAGS: [&[u8]; 3] = [b"as5f2e8d1c", b"", b"t\r\n\r\nX: y"];

fn present(value: Option<&[u8]>) -> bool {
    value.is_some_and(|value| !value.is_empty())
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = scan(data) else {
        return;
    };
    let pick = usize::from(data.last().copied().unwrap_or(0));
    let server = SERVERS[pick % SERVERS.len()];
    let to_tag = TO_TAGS[(pick / SERVERS.len()) % TO_TAGS.len()];
    let mut out = Vec::with_capacity(REPLY_BYTES_MAX);
    let Some(reply) = build_reply(&request, server, to_tag, &mut out) else {
        assert!(out.is_empty(), "no reply but bytes left in the buffer");
        return;
    };
    assert_ne!(request.method, b"ACK", "answered an ACK");
    assert!(present(request.from) && present(request.to));
    assert!(present(request.call_id) && present(request.cseq));
    assert!(request.via_count > 0);

    assert_eq!(reply.len, out.len());
    assert!(reply.len <= REPLY_BYTES_MAX, "reply over REPLY_BYTES_MAX");
    assert!(reply.len <= 2 * data.len(), "reply over twice the request");
    assert!(out.capacity() == REPLY_BYTES_MAX, "the reply buffer grew");
    assert!(out.starts_with(b"SIP/2.0 200 OK\r\n"));
    assert!(out.ends_with(b"\r\n\r\n"));
    let blank = out.windows(4).position(|w| w == b"\r\n\r\n");
    assert_eq!(blank, Some(out.len() - 4), "a blank line before the end");

    // CR and LF appear only as CRLF, one per line: status, Vias, 7 more headers, blank line.
    let mut line_ends = 0;
    for (index, &byte) in out.iter().enumerate() {
        match byte {
            b'\r' => {
                assert_eq!(out.get(index + 1), Some(&b'\n'), "bare CR");
                line_ends += 1;
            }
            b'\n' => assert_eq!(out[index - 1], b'\r', "bare LF"),
            _ => {}
        }
    }
    assert_eq!(line_ends, 1 + request.via_count + 7 + 1, "header count");

    assert_eq!(scan(&out), Err(NotRequest::Response));
});
