//! SIP bytes in, borrowed views out: the scanner, the stream framer and the reply builder.
//!
//! Pure code (quinn-proto style): `&[u8]` in, borrowed views or caller-owned buffers out.
//!
//! Data flow: a UDP datagram, or a stream message from [`Framer::poll_message`] (TCP/TLS bytes in
//! through [`Framer::handle_bytes`]), goes to [`scan`], which returns a [`Request`] of borrowed
//! slices or the [`NotRequest`] kind to count. The event fields come from
//! [`Request::called_number`], [`Request::user_agent_value`] (caller-owned scratch buffers) and
//! [`Request::auth_username`] ([`auth`] parses the Digest credentials); in responsive mode
//! [`build_reply`] writes the 200 OK, or [`build_response`] a 401 challenge or a 403, into a
//! caller-owned buffer. [`proof`] makes and checks the keyed To-tags and nonces that prove a
//! source receives our replies ([`Request::to_tag`], the credentials' `nonce`).
//!
//! Never: does I/O, reads a clock (time is passed in), allocates per header or per message,
//! panics on any input, logs.
//!
//! Limits: `SIP_HEADERS_COUNT_MAX`, `SIP_VIA_COUNT_MAX`, `SIP_MESSAGE_BYTES_MAX`,
//! `REPLY_BYTES_MAX`, `PROOF_*` in [`crate::config::limits`].

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod auth;
pub mod framer;
pub mod proof;
pub mod reply;
pub mod scanner;

pub use auth::{Credentials, parse_credentials};
pub use framer::{FrameError, Framer};
pub use proof::{ProofKey, Token, TokenKind, TokenVerdict};
pub use reply::{Reply, Status, build_reply, build_response};
pub use scanner::{NotRequest, Request, scan, unfold_into, unfolded_len};
