//! `sip::scan` on arbitrary bytes.
//!
//! Invariants: every returned slice lies inside the input; `scan` accepts exactly the inputs whose
//! first non-CR/LF line is a request line (checked against a split-based oracle written
//! independently of the scanner's byte loop), with the same method and Request-URI; the
//! `NotRequest` kind matches the input (Empty, KeepAlive, Response); `called_number` and
//! `user_agent_value` never panic and the user agent comes out trimmed with no line break;
//! `unfolded_len` agrees with `unfold_into`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentrypeer::config::limits::SIP_VIA_COUNT_MAX;
use sentrypeer::sip::{NotRequest, Request, scan, unfold_into, unfolded_len};

fn inside(outer: &[u8], inner: &[u8]) -> bool {
    let outer_start = outer.as_ptr() as usize;
    let inner_start = inner.as_ptr() as usize;
    inner.is_empty() && inner_start == 0
        || inner_start >= outer_start && inner_start + inner.len() <= outer_start + outer.len()
}

fn is_space(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&byte)
}

/// The first line after leading CR/LF, without its line end (one CR before the LF is dropped).
fn start_line(data: &[u8]) -> &[u8] {
    let start = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    let rest = &data[start..];
    let line = match rest.iter().position(|&b| b == b'\n') {
        Some(lf) => &rest[..lf],
        None => rest,
    };
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The oracle: `METHOD SP URI SP SIP/2.0` with runs of SP/HTAB anywhere between and around.
fn request_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let words: Vec<&[u8]> = line
        .split(|&b| is_space(b))
        .filter(|w| !w.is_empty())
        .collect();
    let [method, uri, version] = words.as_slice() else {
        return None;
    };
    let method_ok = method.iter().all(|&b| is_token_byte(b));
    let uri_ok = uri.iter().all(|&b| b > b' ' && b != 0x7f);
    (method_ok && uri_ok && version.eq_ignore_ascii_case(b"SIP/2.0")).then_some((*method, *uri))
}

fn is_response_line(line: &[u8]) -> bool {
    let mut words = line.split(|&b| is_space(b)).filter(|w| !w.is_empty());
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case(b"SIP/2.0"))
        && words
            .next()
            .is_some_and(|code| code.len() == 3 && code.iter().all(u8::is_ascii_digit))
}

fn check_request(data: &[u8], request: &Request<'_>) {
    let optional = [
        request.to,
        request.from,
        request.call_id,
        request.cseq,
        request.user_agent,
    ];
    let slices = [request.method, request.request_uri]
        .into_iter()
        .chain(optional.into_iter().flatten())
        .chain(request.vias().iter().copied());
    for slice in slices {
        assert!(inside(data, slice), "slice outside the input");
    }
    assert!(request.header_bytes <= data.len());
    assert!(request.via_count <= SIP_VIA_COUNT_MAX);

    let mut scratch = Vec::new();
    let _ = request.called_number(&mut scratch);
    if let Some(agent) = request.user_agent_value(&mut scratch) {
        assert!(!agent.is_empty());
        assert!(!agent.contains(&b'\r') && !agent.contains(&b'\n'));
        assert!(!agent.first().copied().is_some_and(is_space));
        assert!(!agent.last().copied().is_some_and(is_space));
    }
}

fuzz_target!(|data: &[u8]| {
    let line = start_line(data);
    let expected = request_line(line);
    match scan(data) {
        Ok(request) => {
            let (method, uri) = expected.expect("scan accepted a start line the oracle rejects");
            assert!(std::ptr::eq(request.method, method), "method differs");
            assert!(
                std::ptr::eq(request.request_uri, uri),
                "request URI differs"
            );
            check_request(data, &request);
        }
        Err(kind) => {
            assert!(expected.is_none(), "scan rejected a request line: {kind:?}");
            let all_breaks = data.iter().all(|&b| b == b'\r' || b == b'\n');
            match kind {
                NotRequest::Empty => assert!(data.is_empty()),
                NotRequest::KeepAlive => assert!(!data.is_empty() && all_breaks),
                NotRequest::Response => assert!(is_response_line(line)),
                NotRequest::Garbage => assert!(!all_breaks),
            }
        }
    }

    let mut unfolded = Vec::new();
    unfold_into(data, &mut unfolded);
    assert_eq!(unfolded.len(), unfolded_len(data));
    assert!(!unfolded.contains(&b'\r') && !unfolded.contains(&b'\n'));
});
