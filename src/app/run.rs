//! The `run` sequence: start the parts in dependency order, wait for signals, stop in reverse.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::status::Status;
use crate::api;
use crate::config::Config;
use crate::config::limits::EVENT_CHANNEL_CAPACITY;
use crate::event::Event;
use crate::metrics::Render;
use crate::store::{self, Store};
use crate::webhook;

/// How often `-v` prints its one-line status.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// Runs until SIGINT or SIGTERM; SIGHUP reopens the JSON log.
pub(super) fn run(config: &Config) -> Result<(), Box<dyn Error>> {
    // Handlers first, so that a signal sent once start-up is announced is never missed.
    let signals = signal_channel()?;
    if config.debug {
        eprintln!("sentrypeer: effective configuration: {config:#?}");
    }
    let started = Instant::now();
    let store = Store::open(&config.store)?;
    let (events, events_rx) = crossbeam_channel::bounded::<Event>(EVENT_CHANNEL_CAPACITY);
    let writer =
        store::writer::spawn_writer(store.clone(), events_rx, &config.output, &config.store)?;
    let mut renders: Vec<Arc<dyn Render>> = vec![writer.metrics()];
    let webhook = match &config.webhook {
        Some(webhook_config) => {
            let handle = webhook::spawn(webhook_config, store.clone(), writer.commits())?;
            renders.push(handle.metrics());
            Some(handle)
        }
        None => None,
    };
    let api = if config.api.enabled {
        let handle = api::start(&config.api, store.clone(), renders.clone())?;
        if config.verbose {
            eprintln!(
                "sentrypeer: API listening on http://{}",
                handle.local_addr()
            );
        }
        Some(handle)
    } else {
        None
    };
    let mut status = Status::new(&store, writer.metrics());
    if config.verbose {
        status.print_banner(config, started.elapsed());
    }
    // The loop that waits: signals, and the -v status line.
    loop {
        match signals.recv_timeout(STATUS_INTERVAL) {
            Ok(SIGHUP) => writer.reopen_log(),
            Ok(signal) => {
                if config.debug {
                    eprintln!("sentrypeer: signal {signal} received, stopping");
                }
                break;
            }
            Err(RecvTimeoutError::Timeout) => {
                if config.verbose {
                    status.print_line();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // Stop in reverse: producers first, then the writer drains, then its consumers.
    drop(events);
    writer.join();
    if let Some(handle) = webhook {
        handle.stop();
    }
    if let Some(handle) = api {
        handle.stop();
    }
    drop(renders);
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP delivered into a channel by a small thread.
fn signal_channel() -> Result<Receiver<i32>, Box<dyn Error>> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let (sender, receiver) = crossbeam_channel::bounded(16);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if sender.send(signal).is_err() {
                    break;
                }
            }
        })?;
    Ok(receiver)
}
