//! The hot-path SIP request scanner (placeholder interface; implemented by the foundation issue).

use crate::config::limits::SIP_VIA_COUNT_MAX;

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
    /// Bytes of the start line and headers, including the blank line.
    pub header_bytes: usize,
}

/// Scans one message (a datagram or one framed stream message).
pub fn scan(message: &[u8]) -> Result<Request<'_>, NotRequest> {
    let _ = message;
    Err(NotRequest::Garbage)
}
