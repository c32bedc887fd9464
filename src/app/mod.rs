//! Start-up and shutdown: parse the config, open the store, start the writer, the outputs, the
//! API, P2P and the sensor shards, then wait for SIGINT/SIGTERM and stop them in reverse order.
//!
//! The order of side effects is the design's: the store opens first (it owns the node id), the
//! writer starts before anything can send it an event, the sensor starts last and stops first,
//! and the writer drains the channel before the process exits.
//!
//! Never: holds business logic of a part; prints a secret.

mod progress;
mod run;
mod status;

use std::error::Error;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Command, Config};
use crate::store::commands;

/// The binary's entry point.
pub fn main() -> ExitCode {
    let config = match config::load() {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    let outcome = match &config.command {
        Command::Run => run::run(&config),
        Command::Stats => command_stats(&config),
        Command::Export { format, output } => {
            command_export(&config, *format, output.as_deref()).map_err(Into::into)
        }
        Command::Top {
            api_url,
            panic_after_first_draw,
        } => {
            let options = crate::top::Options {
                api_url: api_url.clone(),
                token: config.api.token.clone(),
                panic_after_first_draw: *panic_after_first_draw,
            };
            crate::top::run(&options)
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error.as_ref()),
    }
}

/// `sentrypeer export`, with a progress bar on stderr when [`progress::export_bar_wanted`].
fn command_export(
    config: &Config,
    format: config::ExportFormat,
    output: Option<&Path>,
) -> Result<(), crate::store::StoreError> {
    let mut stdout = std::io::stdout().lock();
    let wanted = progress::export_bar_wanted(
        std::io::stderr().is_terminal(),
        stdout.is_terminal(),
        output.is_some(),
    );
    let mut bar = wanted.then(progress::ExportBar::new);
    let tell: &mut dyn commands::ExportProgress = match &mut bar {
        Some(bar) => bar,
        None => &mut (),
    };
    commands::export_with_progress(&config.store, format, output, &mut stdout, tell)?;
    stdout.flush()?;
    Ok(())
}

fn command_stats(config: &Config) -> Result<(), Box<dyn Error>> {
    let mut stdout = std::io::stdout().lock();
    commands::stats(&config.store, &mut stdout)?;
    stdout.flush()?;
    Ok(())
}

/// Prints `sentrypeer: <error>: <source>...` on one line and returns exit code 1.
fn fail(error: &dyn Error) -> ExitCode {
    let mut line = format!("sentrypeer: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // thiserror messages often already embed their source; do not repeat it.
        if !line.ends_with(&text) {
            line.push_str(&format!(": {text}"));
        }
        source = cause.source();
    }
    eprintln!("{}", line.replace('\n', " "));
    ExitCode::FAILURE
}
