//! The data plane: per-core shards that move bytes between the kernel and `sip`, build events and
//! `try_send` them to the writer.
//!
//! Never: blocks, parses SIP itself, spawns or queues without a bound, replies to an unsanitized
//! source.
