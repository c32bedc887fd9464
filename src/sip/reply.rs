//! The responsive-mode replies (compat.md §2): `200 OK`, and for `--sip-challenge` a
//! `401 Unauthorized` Digest challenge or a `403 Forbidden`. Each echoes the request's Via (all),
//! From, To (with a tag added if it has none), Call-ID and CSeq, and names the `Server`.
//!
//! [`build_response`] (and [`build_reply`], its 200 OK) writes into a caller-owned buffer and
//! returns a `#[must_use]` [`Reply`]; the caller sends `out[..reply.len]`. Echoed values are
//! unfolded (every line break becomes a space), so a hostile value cannot add a header or end the
//! reply early; the realm and nonce are written without `"`, `\` and control bytes.
//!
//! Never: allocates once `out` has `REPLY_BYTES_MAX` capacity, writes more than
//! [`REPLY_BYTES_MAX`] bytes or more than twice the request's bytes (no reflection
//! amplification), answers `ACK`, panics on any input.

use crate::config::limits::REPLY_BYTES_MAX;
use crate::sip::scanner::{Request, tag_param, unfold_into, unfolded_len};

/// The methods the reply claims to allow (those of the Asterisk build the default `Server`
/// imitates).
const ALLOW: &[u8] = b"OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INVITE, ACK, BYE, CANCEL, \
UPDATE, PRACK, MESSAGE, REFER";

/// A reply written to the caller's buffer: send its first `len` bytes.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub len: usize,
}

/// The status of a response, with what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<'s> {
    /// `200 OK`, with `Allow`.
    Ok,
    /// `401 Unauthorized` with `WWW-Authenticate: Digest realm="<realm>", nonce="<nonce>",
    /// algorithm=MD5` (`"`, `\` and control bytes of either are left out).
    Unauthorized { realm: &'s [u8], nonce: &'s [u8] },
    /// `403 Forbidden`.
    Forbidden,
}

impl Status<'_> {
    fn status_line(self) -> &'static [u8] {
        match self {
            Self::Ok => b"SIP/2.0 200 OK\r\n",
            Self::Unauthorized { .. } => b"SIP/2.0 401 Unauthorized\r\n",
            Self::Forbidden => b"SIP/2.0 403 Forbidden\r\n",
        }
    }
}

/// Writes the 200 OK for `request` into `out`: [`build_response`] with [`Status::Ok`].
pub fn build_reply(
    request: &Request<'_>,
    server: &[u8],
    to_tag: &[u8],
    out: &mut Vec<u8>,
) -> Option<Reply> {
    build_response(request, Status::Ok, server, to_tag, out)
}

/// Writes the `status` response to `request` into `out` (cleared first). `None` for `ACK`, when
/// Via, From, To, Call-ID or CSeq is missing or blank, or when the response would exceed
/// `REPLY_BYTES_MAX` or twice `request.message_bytes` (then `out` is left empty).
pub fn build_response(
    request: &Request<'_>,
    status: Status<'_>,
    server: &[u8],
    to_tag: &[u8],
    out: &mut Vec<u8>,
) -> Option<Reply> {
    out.clear();
    if request.method == b"ACK" {
        return None;
    }
    let from = present(request.from)?;
    let to = present(request.to)?;
    let call_id = present(request.call_id)?;
    let cseq = present(request.cseq)?;
    if request.vias().is_empty() {
        return None;
    }
    let max_bytes = REPLY_BYTES_MAX.min(request.message_bytes.saturating_mul(2));
    let mut writer = Writer {
        out,
        fits: true,
        max_bytes,
    };
    writer.bytes(status.status_line());
    for via in request.vias() {
        writer.header(b"Via: ", via, &[]);
    }
    writer.header(b"From: ", from, &[]);
    if tag_param(to).is_some() || to_tag.is_empty() {
        writer.header(b"To: ", to, &[]);
    } else {
        writer.header(b"To: ", to, &[b";tag=", to_tag]);
    }
    writer.header(b"Call-ID: ", call_id, &[]);
    writer.header(b"CSeq: ", cseq, &[]);
    writer.header(b"Server: ", server, &[]);
    match status {
        Status::Ok => writer.header(b"Allow: ", ALLOW, &[]),
        Status::Unauthorized { realm, nonce } => writer.challenge(realm, nonce),
        Status::Forbidden => {}
    }
    writer.bytes(b"Content-Length: 0\r\n\r\n");
    if !writer.fits {
        out.clear();
        return None;
    }
    debug_assert!(out.len() <= max_bytes);
    debug_assert!(out.ends_with(b"\r\n\r\n"));
    Some(Reply { len: out.len() })
}

fn present(value: Option<&[u8]>) -> Option<&[u8]> {
    value.filter(|value| !value.is_empty())
}

/// A byte that may stand inside a quoted string we write: printable, not `"` or `\`.
fn quotable(byte: u8) -> bool {
    (b' '..=b'~').contains(&byte) && byte != b'"' && byte != b'\\'
}

/// Appends to the reply while it fits in `max_bytes`; once something does not fit, writes
/// nothing more.
struct Writer<'o> {
    out: &'o mut Vec<u8>,
    fits: bool,
    max_bytes: usize,
}

impl Writer<'_> {
    fn reserve(&mut self, bytes: usize) -> bool {
        self.fits = self.fits && self.out.len().saturating_add(bytes) <= self.max_bytes;
        self.fits
    }

    fn bytes(&mut self, bytes: &[u8]) {
        if self.reserve(bytes.len()) {
            self.out.extend_from_slice(bytes);
        }
    }

    /// `name`, the unfolded `value`, the `suffix` parts unfolded, CRLF.
    fn header(&mut self, name: &[u8], value: &[u8], suffix: &[&[u8]]) {
        let suffix_bytes: usize = suffix.iter().map(|part| part.len()).sum();
        let mut value_bytes = value.len().saturating_add(suffix_bytes);
        if self.out.len().saturating_add(name.len() + value_bytes + 2) > self.max_bytes {
            // Unfolding only shrinks: count exactly before giving up.
            value_bytes =
                unfolded_len(value) + suffix.iter().map(|part| unfolded_len(part)).sum::<usize>();
        }
        if !self.reserve(name.len() + value_bytes + 2) {
            return;
        }
        self.out.extend_from_slice(name);
        unfold_into(value, self.out);
        for part in suffix {
            unfold_into(part, self.out);
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// The `WWW-Authenticate` Digest challenge line.
    fn challenge(&mut self, realm: &[u8], nonce: &[u8]) {
        self.bytes(b"WWW-Authenticate: Digest realm=\"");
        self.quoted(realm);
        self.bytes(b"\", nonce=\"");
        self.quoted(nonce);
        self.bytes(b"\", algorithm=MD5\r\n");
    }

    /// The [`quotable`] bytes of `value`.
    fn quoted(&mut self, value: &[u8]) {
        let kept = value.iter().filter(|&&byte| quotable(byte)).count();
        if self.reserve(kept) {
            self.out
                .extend(value.iter().copied().filter(|&byte| quotable(byte)));
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sip::scanner::tests::{CORPUS, corpus_file};
    use crate::sip::scanner::{NotRequest, scan};

    const SERVER: &[u8] = b"FPBX-16.0.33(18.13.0)";

    /// `request` as if it were long enough for any reply (the 2x rule has its own tests).
    fn unbounded(request: Request<'_>) -> Request<'_> {
        Request {
            message_bytes: REPLY_BYTES_MAX,
            ..request
        }
    }

    fn reply_for(message: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let request = unbounded(scan(message).unwrap());
        let reply = build_reply(&request, SERVER, b"as7f3c", &mut out)?;
        assert_eq!(reply.len, out.len());
        Some(out)
    }

    fn header_lines(reply: &[u8]) -> Vec<&[u8]> {
        reply
            .split(|&byte| byte == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .collect()
    }

    #[test]
    fn reply_echoes_sipvicious_options() {
        let out = reply_for(corpus_file("valid/sipvicious_options.sip")).unwrap();
        let want = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 198.51.100.23:5060;branch=z9hG4bK-2873104421;rport\r\n\
From: \"sipvicious\"<sip:100@1.1.1.1>;tag=6633623736373630313363340131353938393034313838\r\n\
To: \"sipvicious\"<sip:100@1.1.1.1>;tag=as7f3c\r\n\
Call-ID: 480722356891476308232318\r\n\
CSeq: 1 OPTIONS\r\n\
Server: FPBX-16.0.33(18.13.0)\r\n\
Allow: OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, MESSAGE, REFER\r\n\
Content-Length: 0\r\n\r\n";
        assert_eq!(
            out.escape_ascii().to_string(),
            want.escape_ascii().to_string()
        );
        assert_eq!(scan(&out), Err(NotRequest::Response));
    }

    #[test]
    fn reply_echoes_every_via_in_order() {
        let out = reply_for(corpus_file("valid/many_vias.sip")).unwrap();
        let vias: Vec<&[u8]> = header_lines(&out)
            .into_iter()
            .filter(|line| line.starts_with(b"Via: "))
            .collect();
        assert_eq!(vias.len(), 3);
        assert!(vias[0].starts_with(b"Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKa, SIP"));
        assert_eq!(
            vias[2],
            b"Via: SIP/2.0/UDP 198.51.100.4:5060;branch=z9hG4bKd"
        );
    }

    #[test]
    fn reply_keeps_existing_to_tag() {
        let out = reply_for(corpus_file("valid/quoted_name_to.sip")).unwrap();
        let to = header_lines(&out)
            .into_iter()
            .find(|line| line.starts_with(b"To: "))
            .unwrap();
        assert_eq!(
            to,
            b"To: \"quoted \\\"name\\\" <sip:999@x>\" <sip:6001@203.0.113.7>;tag=already"
        );
    }

    #[rustfmt::skip]
    const TAG_CASES: &[(&[u8], bool)] = &[
        (b"<sip:a@b>;tag=1", true), (b"<sip:a@b> ; TAG = 1", true), (b"<sip:a@b;tag=1>", false),
        (b"sip:a@b;tag=1", true), (b"sip:a@b", false), (b"\"x;tag=1\" <sip:a@b>", false),
        (b"<sip:a@b>;tagx=1", false), (b"<sip:a@b", false),
    ];

    #[test]
    fn reply_tag_detection() {
        for &(to, want) in TAG_CASES {
            assert_eq!(tag_param(to).is_some(), want, "{}", to.escape_ascii());
        }
    }

    #[test]
    fn reply_unfolds_folded_and_injected_values() {
        let out = reply_for(corpus_file("valid/folded_lines.sip")).unwrap();
        let lines = header_lines(&out);
        assert!(lines.contains(&&b"Via: SIP/2.0/UDP 198.51.100.9:5060 ;branch=z9hG4bKfold"[..]));
        assert!(lines.contains(&&b"To: \"Folded Name\" <sip:5001@203.0.113.7>;tag=as7f3c"[..]));
        let message = b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\rInjected: 1\r\nFrom: f\r\nTo: t\r\n\
Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let out = reply_for(message).unwrap();
        assert!(
            !out.windows(2)
                .any(|pair| pair[0] == b'\r' && pair[1] != b'\n')
        );
        assert!(header_lines(&out).contains(&&b"Via: x Injected: 1"[..]));
    }

    #[test]
    fn reply_none_for_ack_only() {
        let message = b"ACK sip:a@b SIP/2.0\r\nVia: v\r\nFrom: f\r\nTo: t\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n";
        assert_eq!(reply_for(message), None);
        let lower = b"ack sip:a@b SIP/2.0\r\nVia: v\r\nFrom: f\r\nTo: t\r\nCall-ID: c\r\nCSeq: 1 ack\r\n\r\n";
        assert!(reply_for(lower).is_some());
    }

    #[test]
    fn reply_none_without_required_headers() {
        let full = [
            "Via: v",
            "From: f",
            "To: t",
            "Call-ID: c",
            "CSeq: 1 OPTIONS",
        ];
        for skipped in 0..full.len() {
            let mut message = String::from("OPTIONS sip:a@b SIP/2.0\r\n");
            for (index, header) in full.iter().enumerate() {
                let line = if index == skipped {
                    "X-Skipped: 1"
                } else {
                    header
                };
                message.push_str(line);
                message.push_str("\r\n");
            }
            assert_eq!(
                reply_for(message.as_bytes()),
                None,
                "without {}",
                full[skipped]
            );
            let blank = message.replace(
                full[skipped],
                &full[skipped][..full[skipped].find(':').unwrap() + 1],
            );
            assert_eq!(reply_for(blank.as_bytes()), None, "blank {}", full[skipped]);
        }
        let mut all = String::from("OPTIONS sip:a@b SIP/2.0\r\n");
        all.push_str(&full.join("\r\n"));
        assert!(reply_for(all.as_bytes()).is_some());
    }

    fn message_with_from_bytes(from_bytes: usize) -> Vec<u8> {
        let mut message =
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: v\r\nTo: t\r\nCall-ID: c\r\nCSeq: 1\r\nFrom: "
                .to_vec();
        message.resize(message.len() + from_bytes, b'f');
        message.extend_from_slice(b"\r\n\r\n");
        message
    }

    #[test]
    fn reply_limit_at_and_over() {
        let base = reply_for(&message_with_from_bytes(1)).unwrap().len();
        let room = REPLY_BYTES_MAX - base + 1;
        let mut out = Vec::with_capacity(REPLY_BYTES_MAX);
        let pointer = out.as_ptr();
        let at_limit = message_with_from_bytes(room);
        let request = unbounded(scan(&at_limit).unwrap());
        let reply = build_reply(&request, SERVER, b"as7f3c", &mut out).unwrap();
        assert_eq!(reply.len, REPLY_BYTES_MAX);
        let over_limit = message_with_from_bytes(room + 1);
        assert_eq!(
            build_reply(
                &unbounded(scan(&over_limit).unwrap()),
                SERVER,
                b"as7f3c",
                &mut out
            ),
            None
        );
        assert!(out.is_empty());
        assert_eq!(out.as_ptr(), pointer, "out was reallocated");
    }

    #[test]
    fn reply_for_every_corpus_request_is_a_response() {
        let mut out = Vec::new();
        for &(path, bytes) in CORPUS {
            let Ok(request) = scan(bytes) else { continue };
            if let Some(reply) = build_reply(&request, SERVER, b"t", &mut out) {
                assert_eq!(scan(&out[..reply.len]), Err(NotRequest::Response), "{path}");
                assert!(out.ends_with(b"\r\n\r\n"), "{path}");
                assert_eq!(
                    out.windows(4).filter(|w| w == b"\r\n\r\n").count(),
                    1,
                    "{path}"
                );
            }
        }
    }

    const REALM: &[u8] = b"asterisk";
    const NONCE: &[u8] = b"01c8f2a0d41b9e5a7c3f0e9d2b16";
    const CHALLENGE: Status<'static> = Status::Unauthorized {
        realm: REALM,
        nonce: NONCE,
    };

    fn response_for(message: &[u8], status: Status<'_>) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let reply = build_response(&scan(message).unwrap(), status, SERVER, b"as7f3c", &mut out)?;
        assert_eq!(reply.len, out.len());
        Some(out)
    }

    #[test]
    fn reply_challenge_to_sipvicious_register() {
        let out = response_for(corpus_file("valid/sipvicious_register.sip"), CHALLENGE).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.starts_with("SIP/2.0 401 Unauthorized\r\nVia: "),
            "{text}"
        );
        assert!(text.contains("\r\nCSeq: 1 REGISTER\r\n"), "{text}");
        assert!(
            text.contains("\r\nServer: FPBX-16.0.33(18.13.0)\r\n"),
            "{text}"
        );
        assert!(text.ends_with(
            "\r\nWWW-Authenticate: Digest realm=\"asterisk\", \
             nonce=\"01c8f2a0d41b9e5a7c3f0e9d2b16\", algorithm=MD5\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!text.contains("Allow: "));
        assert_eq!(scan(&out), Err(NotRequest::Response));
        let forbidden = response_for(
            corpus_file("valid/sipvicious_register.sip"),
            Status::Forbidden,
        );
        let text = String::from_utf8(forbidden.unwrap()).unwrap();
        assert!(text.starts_with("SIP/2.0 403 Forbidden\r\nVia: "), "{text}");
        assert!(text.contains(";tag=as7f3c\r\n"), "{text}");
        assert!(text.ends_with("\r\nServer: FPBX-16.0.33(18.13.0)\r\nContent-Length: 0\r\n\r\n"));
    }

    #[test]
    fn reply_challenge_strips_realm_and_nonce() {
        let status = Status::Unauthorized {
            realm: b"a\"b\\c\r\nX: y\x00\x7f\xff",
            nonce: b"n\"\r\n",
        };
        let out = response_for(corpus_file("valid/sipvicious_register.sip"), status).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "\r\nWWW-Authenticate: Digest realm=\"abcX: y\", nonce=\"n\", algorithm=MD5\r\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn reply_never_over_twice_the_request() {
        for status in [Status::Ok, CHALLENGE, Status::Forbidden] {
            let request = scan(corpus_file("valid/sipvicious_options.sip")).unwrap();
            let mut out = Vec::new();
            let full = build_response(&unbounded(request), status, SERVER, b"t", &mut out).unwrap();
            let at = Request {
                message_bytes: full.len.div_ceil(2),
                ..request
            };
            assert_eq!(
                build_response(&at, status, SERVER, b"t", &mut out),
                Some(full)
            );
            let under = Request {
                message_bytes: (full.len - 1) / 2,
                ..request
            };
            assert_eq!(build_response(&under, status, SERVER, b"t", &mut out), None);
            assert!(out.is_empty());
        }
        // A minimal request is not worth a 200 OK (its Allow line alone is 120 bytes).
        let small = b"OPTIONS sip:a@b SIP/2.0\r\nVia: v\r\nFrom: f\r\nTo: t\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(response_for(small, Status::Ok), None);
        assert!(response_for(small, Status::Forbidden).is_some());
    }

    /// The corpus requests that get no reply only because of the 2x rule (with a proof token as
    /// the To-tag): none.
    #[test]
    fn reply_corpus_requests_over_twice() {
        let mut out = Vec::new();
        let mut refused = Vec::new();
        let tag = [b'0'; crate::sip::proof::TOKEN_BYTES];
        for &(path, bytes) in CORPUS {
            let Ok(request) = scan(bytes) else { continue };
            for status in [Status::Ok, CHALLENGE, Status::Forbidden] {
                let full = build_response(&unbounded(request), status, SERVER, &tag, &mut out);
                let real = build_response(&request, status, SERVER, &tag, &mut out);
                if full.is_some() && real.is_none() {
                    refused.push((path, status.status_line()));
                }
            }
        }
        assert_eq!(refused, [], "{refused:?}");
    }

    proptest! {
        #[test]
        fn reply_any_status_within_twice_the_request(
            message in proptest::collection::vec(any::<u8>(), 0..300),
            realm in proptest::collection::vec(any::<u8>(), 0..80),
            pick in 0usize..3,
        ) {
            let mut full = b"INVITE sip:1@h SIP/2.0\r\nVia: v\r\nFrom: f\r\nTo: t\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n".to_vec();
            full.extend_from_slice(&message);
            let statuses = [Status::Ok, Status::Unauthorized { realm: &realm, nonce: NONCE }, Status::Forbidden];
            let mut out = Vec::new();
            if let Ok(request) = scan(&full)
                && let Some(reply) = build_response(&request, statuses[pick], SERVER, b"t", &mut out)
            {
                prop_assert!(reply.len <= 2 * full.len());
                prop_assert!(reply.len <= REPLY_BYTES_MAX);
                prop_assert!(out.ends_with(b"\r\n\r\n"));
                prop_assert_eq!(out.windows(4).filter(|w| w == b"\r\n\r\n").count(), 1);
            } else {
                prop_assert!(out.is_empty());
            }
        }

        #[test]
        fn reply_well_formed_for_any_values(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 5),
            server in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let names = ["Via", "From", "To", "Call-ID", "CSeq"];
            let mut message = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
            for (name, value) in names.iter().zip(&values) {
                message.extend_from_slice(name.as_bytes());
                message.extend_from_slice(b": x");
                message.extend(value.iter().map(|&b| if b == b'\n' { b'\r' } else { b }));
                message.extend_from_slice(b"\r\n");
            }
            let mut out = Vec::new();
            if let Ok(request) = scan(&message)
                && let Some(reply) = build_reply(&unbounded(request), &server, b"t", &mut out)
            {
                prop_assert!(reply.len <= REPLY_BYTES_MAX);
                prop_assert_eq!(out.windows(4).filter(|w| w == b"\r\n\r\n").count(), 1);
                prop_assert!(out.ends_with(b"\r\n\r\n"));
                // Every CR is part of a CRLF and every LF follows a CR.
                for (index, &byte) in out.iter().enumerate() {
                    if byte == b'\r' { prop_assert_eq!(out.get(index + 1), Some(&b'\n')); }
                    if byte == b'\n' { prop_assert_eq!(out[index - 1], b'\r'); }
                }
            }
        }
    }
}
