//! `sip::framer::Framer` fed the input in chunks.
//!
//! Input: byte 0 seeds the chunk sizes (1 to 2^(b0 % 12) bytes each), byte 1 picks the maximum
//! message size (the sensor's, or a small one from 16 to 1032 bytes to reach the oversize paths);
//! the rest is the stream.
//!
//! Invariants: each framed message is the next input bytes after a run of keep-alive CR/LF, so the
//! framed messages plus the skipped CR/LF plus the buffered remainder equal the bytes fed so far;
//! no message is empty or exceeds the maximum; after an error the framer keeps returning it; and
//! the result (messages, error, keep-alive count, remainder) does not depend on the chunking: it
//! equals framing the whole stream in one call.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentrypeer::config::limits::SIP_MESSAGE_BYTES_MAX;
use sentrypeer::sip::{FrameError, Framer, scan};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<Vec<u8>>,
    error: Option<FrameError>,
    keepalives: u64,
    buffered: usize,
}

fn is_break(byte: u8) -> bool {
    byte == b'\r' || byte == b'\n'
}

/// Feeds `stream` in the chunks `sizes` gives, polling after each, checking the accounting.
fn frame(stream: &[u8], max: usize, mut sizes: impl FnMut() -> usize) -> Outcome {
    let mut framer = Framer::new(max);
    let mut messages = Vec::new();
    let mut error = None;
    // Input bytes accounted for: framed, or skipped as keep-alive before a framed message.
    let mut accounted = 0;
    let mut fed = 0;
    'stream: while fed < stream.len() {
        let chunk_len = sizes().clamp(1, stream.len() - fed);
        let chunk = &stream[fed..fed + chunk_len];
        fed += chunk_len;
        if let Err(e) = framer.handle_bytes(chunk) {
            error = Some(e);
            break;
        }
        loop {
            match framer.poll_message() {
                Ok(Some(message)) => {
                    assert!(!message.is_empty(), "empty message");
                    assert!(message.len() <= max, "message over the maximum");
                    assert!(
                        !is_break(message[0]),
                        "message starts with a keep-alive byte"
                    );
                    let skipped = stream[accounted..]
                        .iter()
                        .take_while(|&&b| is_break(b))
                        .count();
                    let start = accounted + skipped;
                    let end = start + message.len();
                    assert!(end <= fed, "message beyond the bytes fed");
                    assert_eq!(
                        message,
                        &stream[start..end],
                        "message is not the next input"
                    );
                    let _ = scan(message);
                    messages.push(message.to_vec());
                    accounted = end;
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'stream;
                }
            }
        }
        let buffered = framer.buffered_bytes();
        assert!(buffered <= fed - accounted, "more buffered than fed");
        assert!(
            stream[accounted..fed - buffered]
                .iter()
                .all(|&b| is_break(b)),
            "bytes dropped that are not keep-alive CR/LF"
        );
    }
    if let Some(e) = error {
        assert_eq!(framer.handle_bytes(b"OPTIONS"), Err(e), "error not sticky");
        assert_eq!(framer.poll_message(), Err(e), "error not sticky");
    }
    Outcome {
        messages,
        error,
        keepalives: framer.keepalives(),
        buffered: if error.is_some() {
            0
        } else {
            framer.buffered_bytes()
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let [seed, max_pick, stream @ ..] = data else {
        return;
    };
    let max = if *max_pick < 128 {
        SIP_MESSAGE_BYTES_MAX
    } else {
        16 + usize::from(*max_pick - 128) * 8
    };
    let chunk_max = 1usize << (seed % 12);
    let mut state = u32::from(*seed) | 0x9e37_0000;
    let chunked = frame(stream, max, || {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + state as usize % chunk_max
    });
    let whole = frame(stream, max, || usize::MAX);
    assert_eq!(chunked, whole, "framing depends on the chunking");
});
