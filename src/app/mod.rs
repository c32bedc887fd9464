//! Start-up and shutdown: parse the config, open the store, start the writer, the outputs, the
//! API, P2P and the sensor shards, then wait for SIGINT/SIGTERM and stop them in reverse order.
//!
//! Today it parses the config, prints it with `-d` (secrets redacted by [`config::Secret`]) and
//! waits for SIGINT/SIGTERM; the parts are wired in here as they land.
//!
//! Never: holds business logic of a part; prints a secret.

use std::error::Error;
use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::{self, Command, Config};

/// The binary's entry point.
pub fn main() -> ExitCode {
    let config = match config::load() {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    match config.command {
        Command::Run => run(&config),
        Command::Stats | Command::Export { .. } => {
            eprintln!("sentrypeer: this command is not available yet");
            ExitCode::FAILURE
        }
    }
}

/// Runs until SIGINT or SIGTERM.
fn run(config: &Config) -> ExitCode {
    // Handlers first, so that a signal sent once start-up is announced is never missed.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(error) => return fail(&error),
    };
    if config.debug {
        eprintln!("sentrypeer: effective configuration: {config:#?}");
    }
    if let Some(signal) = signals.forever().next()
        && config.debug
    {
        eprintln!("sentrypeer: signal {signal} received, stopping");
    }
    ExitCode::SUCCESS
}

/// Prints `sentrypeer: <error>: <source>...` on one line and returns exit code 1.
fn fail(error: &dyn Error) -> ExitCode {
    let mut line = format!("sentrypeer: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{}", line.replace('\n', " "));
    ExitCode::FAILURE
}
