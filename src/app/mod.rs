//! Start-up and shutdown: parse the config, open the store, start the writer, the outputs, the
//! API, P2P and the sensor shards, then wait for SIGINT/SIGTERM and stop them in reverse order.
//!
//! Never: holds business logic of a part; prints a secret.

use std::process::ExitCode;

/// The binary's entry point.
pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
