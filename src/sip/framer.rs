//! Stream framing for SIP over TCP/TLS (RFC 3261 18.3): bytes in, whole messages out.
//!
//! A message is its start line and headers through the first blank line, plus `Content-Length`
//! body bytes (no Content-Length on a stream means no body). CR/LF between messages are keep-alive
//! pings (RFC 5626): skipped and counted. Use: feed each read with [`Framer::handle_bytes`], then
//! call [`Framer::poll_message`] until it returns `Ok(None)`; a returned slice is valid until the
//! next call. After an error the framer keeps returning it: the caller closes the connection.
//!
//! Never: holds more than `message_bytes_max` bytes of one message (a longer one is
//! [`FrameError::Oversize`]), copies buffered bytes more than a constant number of times (the
//! buffer is compacted only when the consumed prefix is at least as long as the rest, or when it
//! would otherwise grow), searches the same bytes for the blank line twice, panics on any input.
//! Memory: at most `message_bytes_max` plus the largest chunk handed to `handle_bytes`.

use crate::config::limits::SIP_HEADERS_COUNT_MAX;
use crate::sip::scanner::{HeaderLines, Known, blank_line_end, line_at, parse_content_length};

/// Why a stream cannot be framed; the connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A message (headers without their blank line, or headers plus body) exceeds the maximum.
    Oversize,
    /// A `Content-Length` that is not a decimal u32.
    BadContentLength,
}

/// Reassembles SIP messages from a byte stream.
#[derive(Debug)]
pub struct Framer {
    buffer: Vec<u8>,
    /// First byte not yet handed out.
    head_index: usize,
    /// Length of the message last handed out; dropped at the next call.
    returned_bytes: usize,
    /// Bytes of the head message already searched for the blank line.
    searched_bytes: usize,
    /// Total length of the head message once its headers are complete.
    message_bytes: Option<usize>,
    message_bytes_max: usize,
    keepalive_count: u64,
    /// The last bytes skipped were keep-alive CR/LF and no message has started since.
    in_keepalive: bool,
    error: Option<FrameError>,
}

impl Framer {
    /// A framer that refuses messages longer than `message_bytes_max` (at most
    /// [`crate::config::limits::SIP_MESSAGE_BYTES_MAX`] in the sensor). Allocates nothing until
    /// bytes arrive.
    pub fn new(message_bytes_max: usize) -> Self {
        Self {
            buffer: Vec::new(),
            head_index: 0,
            returned_bytes: 0,
            searched_bytes: 0,
            message_bytes: None,
            message_bytes_max,
            keepalive_count: 0,
            in_keepalive: false,
            error: None,
        }
    }

    /// Appends bytes read from the stream. Fails at once when the message at the head cannot fit
    /// in the maximum.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        self.release_returned();
        self.compact(bytes.len());
        self.buffer.extend_from_slice(bytes);
        self.frame_head()
            .map(|_| ())
            .inspect_err(|&error| self.error = Some(error))
    }

    /// The next whole message, if one is buffered. The slice is valid until the next call.
    pub fn poll_message(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        self.release_returned();
        let message_bytes = match self.frame_head() {
            Ok(Some(message_bytes)) => message_bytes,
            Ok(None) => return Ok(None),
            Err(error) => {
                self.error = Some(error);
                return Err(error);
            }
        };
        let end_index = self.head_index + message_bytes;
        if end_index > self.buffer.len() {
            return Ok(None);
        }
        self.returned_bytes = message_bytes;
        Ok(self.buffer.get(self.head_index..end_index))
    }

    /// Keep-alive pings skipped so far: each run of CR/LF between messages counts once.
    pub fn keepalives(&self) -> u64 {
        self.keepalive_count
    }

    /// Bytes received but not yet handed out (a partial message, or messages not yet polled).
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len() - self.head_index - self.returned_bytes
    }

    /// Drops the message handed out by the last `poll_message`.
    fn release_returned(&mut self) {
        if self.returned_bytes > 0 {
            self.head_index += self.returned_bytes;
            self.returned_bytes = 0;
            self.message_bytes = None;
            self.searched_bytes = 0;
        }
        if self.head_index == self.buffer.len() {
            self.buffer.clear();
            self.head_index = 0;
        }
    }

    /// Moves the live bytes to the front when that is cheap relative to what was consumed, or
    /// when the buffer would otherwise have to grow. Each byte is moved an amortized constant
    /// number of times.
    fn compact(&mut self, incoming_bytes: usize) {
        let live_bytes = self.buffer.len() - self.head_index;
        let would_grow = self.buffer.len() + incoming_bytes > self.buffer.capacity();
        if self.head_index > 0 && (self.head_index >= live_bytes || would_grow) {
            self.buffer.drain(..self.head_index);
            self.head_index = 0;
        }
    }

    /// Skips keep-alive CR/LF at the head.
    fn skip_keepalives(&mut self) {
        let live = self.buffer.get(self.head_index..).unwrap_or_default();
        let skipped = live
            .iter()
            .take_while(|&&byte| byte == b'\r' || byte == b'\n')
            .count();
        if skipped > 0 && !self.in_keepalive {
            self.keepalive_count += 1;
            self.in_keepalive = true;
        }
        self.head_index += skipped;
        if skipped < live.len() {
            self.in_keepalive = false;
        }
    }

    /// The total length of the message at the head once its headers are complete.
    fn frame_head(&mut self) -> Result<Option<usize>, FrameError> {
        if let Some(message_bytes) = self.message_bytes {
            return Ok(Some(message_bytes));
        }
        self.skip_keepalives();
        let live = self.buffer.get(self.head_index..).unwrap_or_default();
        if live.is_empty() {
            return Ok(None);
        }
        let Some(header_bytes) = blank_line_end(live, self.searched_bytes) else {
            if live.len() >= self.message_bytes_max {
                return Err(FrameError::Oversize);
            }
            // A blank line may straddle the next chunk: re-read the last two bytes.
            self.searched_bytes = live.len().saturating_sub(2);
            return Ok(None);
        };
        if header_bytes > self.message_bytes_max {
            return Err(FrameError::Oversize);
        }
        let body_bytes = body_bytes(live.get(..header_bytes).unwrap_or_default())?;
        let message_bytes = header_bytes.saturating_add(body_bytes);
        if message_bytes > self.message_bytes_max {
            return Err(FrameError::Oversize);
        }
        self.message_bytes = Some(message_bytes);
        Ok(Some(message_bytes))
    }
}

/// The body length named by the first Content-Length among the first `SIP_HEADERS_COUNT_MAX`
/// header lines; 0 when there is none.
fn body_bytes(head: &[u8]) -> Result<usize, FrameError> {
    let headers_index = line_at(head, 0).1;
    let mut headers = HeaderLines::new(head, headers_index).take(SIP_HEADERS_COUNT_MAX);
    let content_length = headers.find_map(|header| match header.known() {
        Some((Known::ContentLength, value)) => Some(value),
        _ => None,
    });
    match content_length {
        Some(value) => parse_content_length(value)
            .map(|length| usize::try_from(length).unwrap_or(usize::MAX))
            .ok_or(FrameError::BadContentLength),
        None => Ok(0),
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
    use crate::config::limits::SIP_MESSAGE_BYTES_MAX;
    use crate::sip::scanner::tests::corpus_file;

    /// Messages whose Content-Length matches their body, framed back to back.
    const PIPELINE_FILES: &[&str] = &[
        "valid/sipvicious_options.sip",
        "valid/invite_sdp.sip",
        "valid/lf_only.sip",
        "valid/compact_headers.sip",
        "valid/folded_lines.sip",
        "valid/nmap_options.sip",
        "malformed/response_200.sip",
        "attack/header_flood.sip",
    ];

    fn pipeline() -> (Vec<u8>, Vec<&'static [u8]>) {
        let messages: Vec<&[u8]> = PIPELINE_FILES
            .iter()
            .map(|path| corpus_file(path))
            .collect();
        (messages.concat(), messages)
    }

    /// Feeds `chunks` in order, polling after each; returns every message handed out.
    fn frame_chunks<'a>(
        framer: &mut Framer,
        chunks: impl Iterator<Item = &'a [u8]>,
    ) -> Vec<Vec<u8>> {
        let mut messages = Vec::new();
        for chunk in chunks {
            framer.handle_bytes(chunk).unwrap();
            while let Some(message) = framer.poll_message().unwrap() {
                messages.push(message.to_vec());
            }
        }
        messages
    }

    #[test]
    fn framer_pipelined_messages() {
        let (stream, want) = pipeline();
        let mut framer = Framer::new(SIP_MESSAGE_BYTES_MAX);
        let got = frame_chunks(&mut framer, std::iter::once(stream.as_slice()));
        assert_eq!(got, want);
        assert_eq!(framer.buffered_bytes(), 0);
        assert_eq!(framer.keepalives(), 0);
    }

    #[test]
    fn framer_body_not_confused_with_next_message() {
        let body = b"INVITE sip:x@y SIP/2.0\r\n\r\n";
        let first = [
            b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 26\r\n\r\n".as_slice(),
            body,
        ]
        .concat();
        let second = b"OPTIONS sip:c@d SIP/2.0\r\nl:0\r\n\r\n".as_slice();
        let mut framer = Framer::new(1024);
        let got = frame_chunks(&mut framer, [first.as_slice(), second].into_iter());
        assert_eq!(got, [first.as_slice(), second]);
    }

    #[test]
    fn framer_split_at_every_byte() {
        let (stream, want) = pipeline();
        for split_index in 0..=stream.len() {
            let mut framer = Framer::new(SIP_MESSAGE_BYTES_MAX);
            let (left, right) = stream.split_at(split_index);
            let got = frame_chunks(&mut framer, [left, right].into_iter());
            assert_eq!(got, want, "split at {split_index}");
            assert_eq!(framer.buffered_bytes(), 0);
        }
    }

    #[test]
    fn framer_one_byte_at_a_time() {
        let (stream, want) = pipeline();
        let mut framer = Framer::new(SIP_MESSAGE_BYTES_MAX);
        let got = frame_chunks(&mut framer, stream.chunks(1));
        assert_eq!(got, want);
        let big = corpus_file("valid/invite_60k.sip");
        let got = frame_chunks(&mut framer, big.chunks(1));
        assert_eq!(got, [big]);
    }

    /// xorshift64*: chunk sizes from a seed that every assertion message names.
    fn next_random(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn framer_random_chunks_from_seeds() {
        let (mut stream, mut want) = pipeline();
        let big = corpus_file("valid/invite_60k.sip");
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(big);
        want.push(big);
        for seed in 1..=64u64 {
            let mut state = seed;
            let mut chunks = Vec::new();
            let mut rest = stream.as_slice();
            while !rest.is_empty() {
                let size = usize::try_from(next_random(&mut state) % 3000).unwrap() + 1;
                let (chunk, after) = rest.split_at(size.min(rest.len()));
                chunks.push(chunk);
                rest = after;
            }
            let mut framer = Framer::new(SIP_MESSAGE_BYTES_MAX);
            let got = frame_chunks(&mut framer, chunks.into_iter());
            assert_eq!(got, want, "seed {seed}");
            assert_eq!(framer.keepalives(), 1, "seed {seed}");
        }
    }

    #[test]
    fn framer_keepalives_skipped_and_counted() {
        let message = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n".as_slice();
        let stream = [b"\r\n\r\n".as_slice(), message, b"\r\n", message, b"\n"].concat();
        for split_index in 0..=stream.len() {
            let mut framer = Framer::new(1024);
            let (left, right) = stream.split_at(split_index);
            let got = frame_chunks(&mut framer, [left, right].into_iter());
            assert_eq!(got, [message, message], "split at {split_index}");
            assert_eq!(framer.keepalives(), 3, "split at {split_index}");
            assert_eq!(framer.buffered_bytes(), 0);
        }
    }

    #[test]
    fn framer_missing_content_length_means_no_body() {
        let mut framer = Framer::new(1024);
        framer
            .handle_bytes(b"OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:1@b>\r\n\r\nGARBAGE")
            .unwrap();
        assert_eq!(
            framer.poll_message().unwrap(),
            Some(&b"OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:1@b>\r\n\r\n"[..])
        );
        assert_eq!(framer.poll_message().unwrap(), None);
        assert_eq!(framer.buffered_bytes(), 7);
    }

    #[test]
    fn framer_bad_content_length_is_sticky() {
        for value in ["abc", "-1", "4294967296", ""] {
            let mut framer = Framer::new(1024);
            let message = format!("OPTIONS sip:a@b SIP/2.0\r\ncontent-length: {value}\r\n\r\n");
            assert_eq!(
                framer.handle_bytes(message.as_bytes()),
                Err(FrameError::BadContentLength)
            );
            assert_eq!(framer.poll_message(), Err(FrameError::BadContentLength));
            assert_eq!(framer.handle_bytes(b"x"), Err(FrameError::BadContentLength));
        }
    }

    fn message_of_bytes(total_bytes: usize) -> Vec<u8> {
        let head = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: ";
        let head_bytes = head.len() + 5 + 4;
        let body_bytes = total_bytes - head_bytes;
        let mut message = head.to_vec();
        message.extend_from_slice(format!("{body_bytes:05}\r\n\r\n").as_bytes());
        message.resize(total_bytes, b'b');
        message
    }

    #[test]
    fn framer_limit_with_body_at_and_over() {
        let limit = 4096;
        let at_limit = message_of_bytes(limit);
        let mut framer = Framer::new(limit);
        let got = frame_chunks(&mut framer, at_limit.chunks(100));
        assert_eq!(got, [at_limit]);
        let over_limit = message_of_bytes(limit + 1);
        let mut framer = Framer::new(limit);
        // Refused as soon as the headers are complete, before the body is buffered.
        assert_eq!(
            framer.handle_bytes(&over_limit[..64]),
            Err(FrameError::Oversize)
        );
        assert_eq!(framer.poll_message(), Err(FrameError::Oversize));
    }

    #[test]
    fn framer_limit_without_blank_line_at_and_over() {
        let limit = 256;
        let mut headers = b"OPTIONS sip:a@b SIP/2.0\r\nX: ".to_vec();
        headers.resize(limit - 4, b'x');
        headers.extend_from_slice(b"\r\n\r\n");
        let mut framer = Framer::new(limit);
        let got = frame_chunks(&mut framer, headers.chunks(7));
        assert_eq!(got, [headers.clone()]);
        let mut framer = Framer::new(limit);
        framer.handle_bytes(&headers[..limit - 1]).unwrap();
        assert_eq!(framer.poll_message(), Ok(None));
        assert_eq!(framer.handle_bytes(b"x"), Err(FrameError::Oversize));
        assert!(framer.buffered_bytes() <= limit);
    }

    #[test]
    fn framer_buffer_stays_bounded_while_streaming() {
        let message = corpus_file("valid/sipvicious_options.sip");
        let mut framer = Framer::new(1024);
        let mut count = 0;
        for _ in 0..2000 {
            count += frame_chunks(&mut framer, message.chunks(37)).len();
            assert!(framer.buffered_bytes() < 1024);
            assert!(framer.buffer.capacity() <= 2 * 1024);
        }
        assert_eq!(count, 2000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Frames plus keep-alives plus the remainder add up to the input, for any chunking and
        /// any bytes (errors aside).
        #[test]
        fn framer_frames_add_up(
            bytes in proptest::collection::vec(
                prop_oneof![
                    Just(b"\r\n".to_vec()),
                    Just(b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nabc".to_vec()),
                    Just(b"INVITE sip:a SIP/2.0\nX: y\n\n".to_vec()),
                    proptest::collection::vec(any::<u8>(), 0..16),
                ],
                0..16,
            ).prop_map(|parts| parts.concat()),
            chunk_bytes in 1usize..64,
        ) {
            let mut framer = Framer::new(256);
            let mut framed_bytes = 0;
            let mut result = Ok(());
            'outer: for chunk in bytes.chunks(chunk_bytes) {
                result = framer.handle_bytes(chunk);
                if result.is_err() {
                    break;
                }
                loop {
                    match framer.poll_message() {
                        Ok(Some(message)) => {
                            prop_assert!(message.len() <= 256);
                            prop_assert!(!message.starts_with(b"\r") && !message.starts_with(b"\n"));
                            framed_bytes += message.len();
                        }
                        Ok(None) => break,
                        Err(error) => {
                            result = Err(error);
                            break 'outer;
                        }
                    }
                }
            }
            if result.is_ok() {
                let skipped = bytes.len() - framed_bytes - framer.buffered_bytes();
                let line_breaks = bytes.iter().filter(|&&b| b == b'\r' || b == b'\n').count();
                prop_assert!(skipped <= line_breaks);
                prop_assert!(framer.buffered_bytes() <= 256);
            }
        }
    }
}
