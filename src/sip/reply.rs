//! The responsive-mode reply: a well-formed `SIP/2.0 200 OK` that echoes the request's Via (all),
//! From, To (with a tag added if it has none), Call-ID and CSeq (compat.md §2).
//!
//! [`build_reply`] writes into a caller-owned buffer and returns a `#[must_use]` [`Reply`]; the
//! caller sends `out[..reply.len]`. Echoed values are unfolded (every line break becomes a space),
//! so a hostile value cannot add a header or end the reply early.
//!
//! Never: allocates once `out` has `REPLY_BYTES_MAX` capacity, writes more than
//! [`REPLY_BYTES_MAX`] bytes, answers `ACK`, panics on any input.

use crate::config::limits::REPLY_BYTES_MAX;
use crate::sip::scanner::{Request, angle_index, unfold_into, unfolded_len};

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

/// Writes the 200 OK for `request` into `out` (cleared first). `None` for `ACK`, when Via, From,
/// To, Call-ID or CSeq is missing or blank, or when the reply would exceed `REPLY_BYTES_MAX`
/// (then `out` is left empty).
pub fn build_reply(
    request: &Request<'_>,
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
    let mut writer = Writer { out, fits: true };
    writer.bytes(b"SIP/2.0 200 OK\r\n");
    for via in request.vias() {
        writer.header(b"Via: ", via, &[]);
    }
    writer.header(b"From: ", from, &[]);
    if has_tag_param(to) || to_tag.is_empty() {
        writer.header(b"To: ", to, &[]);
    } else {
        writer.header(b"To: ", to, &[b";tag=", to_tag]);
    }
    writer.header(b"Call-ID: ", call_id, &[]);
    writer.header(b"CSeq: ", cseq, &[]);
    writer.header(b"Server: ", server, &[]);
    writer.header(b"Allow: ", ALLOW, &[]);
    writer.bytes(b"Content-Length: 0\r\n\r\n");
    if !writer.fits {
        out.clear();
        return None;
    }
    debug_assert!(out.len() <= REPLY_BYTES_MAX);
    debug_assert!(out.ends_with(b"\r\n\r\n"));
    Some(Reply { len: out.len() })
}

fn present(value: Option<&[u8]>) -> Option<&[u8]> {
    value.filter(|value| !value.is_empty())
}

/// Appends to the reply while it fits in `REPLY_BYTES_MAX`; once something does not fit, writes
/// nothing more.
struct Writer<'o> {
    out: &'o mut Vec<u8>,
    fits: bool,
}

impl Writer<'_> {
    fn reserve(&mut self, bytes: usize) -> bool {
        self.fits = self.fits && self.out.len().saturating_add(bytes) <= REPLY_BYTES_MAX;
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
        if self.out.len().saturating_add(name.len() + value_bytes + 2) > REPLY_BYTES_MAX {
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
}

/// True if the To value carries a `tag` header parameter (after the `>` of a name-addr, or after
/// the URI of a bare addr-spec); a `tag` inside `<...>` is a URI parameter and does not count.
fn has_tag_param(to: &[u8]) -> bool {
    let params = match angle_index(to) {
        Some(open_index) => {
            let rest = to.get(open_index..).unwrap_or_default();
            memchr::memchr(b'>', rest).and_then(|close_index| rest.get(close_index + 1..))
        }
        None => memchr::memchr(b';', to).and_then(|semicolon_index| to.get(semicolon_index..)),
    };
    params
        .unwrap_or_default()
        .split(|&byte| byte == b';')
        .any(|param| {
            let name = param.split(|&byte| byte == b'=').next().unwrap_or_default();
            name.trim_ascii().eq_ignore_ascii_case(b"tag")
        })
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

    fn reply_for(message: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let reply = build_reply(&scan(message).unwrap(), SERVER, b"as7f3c", &mut out)?;
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
            assert_eq!(has_tag_param(to), want, "{}", to.escape_ascii());
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
        let reply = build_reply(&scan(&at_limit).unwrap(), SERVER, b"as7f3c", &mut out).unwrap();
        assert_eq!(reply.len, REPLY_BYTES_MAX);
        let over_limit = message_with_from_bytes(room + 1);
        assert_eq!(
            build_reply(&scan(&over_limit).unwrap(), SERVER, b"as7f3c", &mut out),
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

    proptest! {
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
                && let Some(reply) = build_reply(&request, &server, b"t", &mut out)
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
