//! Reads replies: frames a TCP/TLS byte stream into SIP messages (blank line plus
//! Content-Length) and finds the Call-ID so a reply can be matched to its request.
//!
//! Never: panics on hostile bytes, or buffers more than [`REPLY_BUFFER_BYTES_MAX`].

use crate::message::call_id_parts;

/// Largest amount of unframed reply bytes kept; past it the buffer is dropped and counted.
pub const REPLY_BUFFER_BYTES_MAX: usize = 1 << 20;

/// Turns stream bytes into whole messages.
#[derive(Debug, Default)]
pub struct ReplyFramer {
    buffer: Vec<u8>,
    /// Times the buffer overflowed and was discarded.
    pub overflow_count: u64,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The value of the first header named `long` or `compact` (case-insensitive) in `head`.
pub fn header_value<'a>(head: &'a [u8], long: &[u8], compact: &[u8]) -> Option<&'a [u8]> {
    head.split(|byte| *byte == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|byte| *byte == b':')?;
        let (name, rest) = line.split_at(colon);
        let name = name.trim_ascii();
        (name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(compact))
            .then(|| rest.get(1..).unwrap_or_default().trim_ascii())
    })
}

/// The (stream id, sequence number) of a message whose Call-ID our factory wrote.
pub fn reply_call_id(message: &[u8]) -> Option<(u16, u64)> {
    let head_end = find(message, b"\r\n\r\n").unwrap_or(message.len());
    let head = message.get(..head_end)?;
    call_id_parts(header_value(head, b"call-id", b"i")?)
}

impl ReplyFramer {
    /// Adds bytes read from the stream.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        if self.buffer.len() + bytes.len() > REPLY_BUFFER_BYTES_MAX {
            self.buffer.clear();
            self.overflow_count += 1;
            return;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Takes the next whole message, if one is buffered, and passes it to `visit`.
    pub fn poll_message<T>(&mut self, visit: impl FnOnce(&[u8]) -> T) -> Option<T> {
        let start = self
            .buffer
            .iter()
            .position(|byte| !matches!(byte, b'\r' | b'\n'));
        let Some(start) = start else {
            self.buffer.clear();
            return None;
        };
        let rest = self.buffer.get(start..)?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = rest.get(..head_end)?;
        let body_bytes = header_value(head, b"content-length", b"l")
            .and_then(|value| std::str::from_utf8(value).ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        let total = head_end.checked_add(4)?.checked_add(body_bytes)?;
        let message = rest.get(..total)?;
        let result = visit(message);
        self.buffer.drain(..start + total);
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &[u8] = b"SIP/2.0 200 OK\r\nVia: x\r\nCall-ID: 0000000a0002000000000010@h\r\n\
        Content-Length: 4\r\n\r\nbody";

    #[test]
    fn framer_split_at_every_byte() {
        let stream: Vec<u8> = [REPLY, b"\r\n", REPLY].concat();
        for split in 0..stream.len() {
            let mut framer = ReplyFramer::default();
            let mut found = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                framer.handle_bytes(chunk);
                while let Some(id) = framer.poll_message(reply_call_id) {
                    found.push(id);
                }
            }
            assert_eq!(found, vec![Some((2, 16)); 2], "split at {split}");
        }
    }

    #[test]
    fn framer_compact_headers() {
        let mut framer = ReplyFramer::default();
        framer.handle_bytes(b"SIP/2.0 100 Trying\r\ni: 000000000001000000000001@x\r\nl: 0\r\n\r\n");
        assert_eq!(framer.poll_message(reply_call_id), Some(Some((1, 1))));
        assert_eq!(framer.poll_message(reply_call_id), None);
    }

    #[test]
    fn framer_overflow_discards() {
        let mut framer = ReplyFramer::default();
        framer.handle_bytes(&vec![b'x'; REPLY_BUFFER_BYTES_MAX]);
        framer.handle_bytes(b"y");
        assert_eq!(framer.overflow_count, 1);
        assert_eq!(framer.poll_message(|message| message.len()), None);
    }

    #[test]
    fn framer_hostile_content_length() {
        let mut framer = ReplyFramer::default();
        // An unparseable length counts as 0: the head alone is the message.
        let head = b"SIP/2.0 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        framer.handle_bytes(head);
        assert_eq!(
            framer.poll_message(|message| message.len()),
            Some(head.len())
        );
        // A huge but valid length waits for a body that never comes, without panicking.
        framer.handle_bytes(b"SIP/2.0 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(framer.poll_message(|message| message.len()), None);
    }
}
