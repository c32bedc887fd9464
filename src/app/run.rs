//! The `run` sequence: start the parts in dependency order, wait for signals, stop in reverse.
//!
//! Start: MMDB files (`--geoip-db`, `--asn-db`) -> store (owns the node id) -> writer -> webhook
//! -> NATS publisher (not on a `--nats-ingest` hub) -> P2P -> NATS hub (`--nats-ingest`) -> sensor
//! -> API. Stop: sensor, P2P and the NATS hub (the producers) -> writer drains and commits ->
//! webhook -> NATS publisher -> API. SIGHUP: the writer reopens the JSON log, this thread the MMDB
//! files.

use std::error::Error;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::status::Status;
use crate::api::{self, ApiHandle};
use crate::config::Config;
use crate::config::limits::{EVENT_CHANNEL_CAPACITY, STATUS_LINE_INTERVAL};
use crate::enrich::Enricher;
use crate::event::Event;
use crate::metrics::Render;
use crate::nats::ingest::{self as nats_ingest, IngestHandle, IngestSettings};
use crate::nats::publisher::{self as nats_publisher, PublisherHandle};
use crate::p2p::{self, P2pHandle};
use crate::sensor::{self, Sensor};
use crate::store::writer::WriterHandle;
use crate::store::{self, Store};
use crate::webhook::{self, WebhookHandle};

/// Everything `run` started, in start order.
struct Parts {
    store: Store,
    events: Sender<Event>,
    writer: WriterHandle,
    webhook: Option<WebhookHandle>,
    nats_publisher: Option<PublisherHandle>,
    p2p: Option<P2pHandle>,
    /// `--nats-ingest`: the fleet's events from JetStream.
    nats_ingest: Option<IngestHandle>,
    sensor: Option<Sensor>,
    api: Option<ApiHandle>,
    /// `--geoip-db`/`--asn-db`, reopened on SIGHUP.
    enricher: Option<Arc<Enricher>>,
}

/// Runs until SIGINT or SIGTERM; SIGHUP reopens the JSON log and the MMDB files.
pub(super) fn run(config: &Config) -> Result<(), Box<dyn Error>> {
    // Handlers first, so that a signal sent once start-up is announced is never missed.
    let signals = signal_channel()?;
    if config.debug {
        eprintln!("sentrypeer: effective configuration: {config:#?}");
    }
    let started = Instant::now();
    let parts = start(config)?;
    let mut status = Status::new(
        &parts.store,
        parts.writer.metrics(),
        parts.sensor.as_ref().map(Sensor::metrics),
        parts.p2p.as_ref().map(P2pHandle::metrics),
    );
    if config.verbose {
        status.print_banner(
            config,
            parts.sensor.as_ref(),
            parts.api.as_ref(),
            started.elapsed(),
        );
    }
    loop {
        match signals.recv_timeout(STATUS_LINE_INTERVAL) {
            Ok(SIGHUP) => {
                parts.writer.reopen_log();
                if let Some(enricher) = &parts.enricher {
                    enricher.reopen_or_report();
                }
            }
            Ok(signal) => {
                if config.debug {
                    eprintln!("sentrypeer: signal {signal} received, stopping");
                }
                break;
            }
            Err(RecvTimeoutError::Timeout) if config.verbose => status.print_line(),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    parts.stop();
    Ok(())
}

/// Starts the parts in dependency order; a failure drops (and so stops) what was started.
fn start(config: &Config) -> Result<Parts, Box<dyn Error>> {
    // Before the store: a database that does not open stops start-up with nothing started.
    let enricher = Enricher::open(&config.enrich)?;
    let store = Store::open(&config.store)?;
    let (events, events_rx) = crossbeam_channel::bounded::<Event>(EVENT_CHANNEL_CAPACITY);
    let writer_options = store::writer::WriterOptions {
        syslog_socket: config.output.syslog_socket.clone(),
        enricher: enricher.clone(),
        ..Default::default()
    };
    let writer = store::writer::spawn_writer_with(
        store.clone(),
        events_rx,
        &config.output,
        &config.store,
        writer_options,
    )?;
    let mut renders: Vec<Arc<dyn Render>> = vec![writer.metrics()];
    let (webhook, nats_publisher) = start_commit_readers(config, &store, &writer, &mut renders)?;
    let p2p = if config.p2p.enabled {
        let commits = writer.commits();
        let handle = p2p::start(
            &config.p2p,
            store.clone(),
            events.clone(),
            commits,
            config.debug,
        )?;
        renders.push(handle.metrics());
        Some(handle)
    } else {
        None
    };
    let nats_ingest = start_nats_ingest(config, &store, &events, &writer)?;
    if let Some(handle) = &nats_ingest {
        renders.push(handle.metrics());
    }
    let sensor = if config.sensor.enabled {
        let identity = sensor::Identity {
            node_id: store.node_id(),
            proof_key: crate::sip::ProofKey::new(store.proof_secret()?),
        };
        let handle = sensor::start(&config.sensor, &identity, events.clone(), config.debug)?;
        renders.push(handle.metrics());
        Some(handle)
    } else {
        None
    };
    let api = if config.api.enabled {
        Some(api::start(&config.api, store.clone(), renders)?)
    } else {
        None
    };
    Ok(Parts {
        store,
        events,
        writer,
        webhook,
        nats_publisher,
        p2p,
        nats_ingest,
        sensor,
        api,
        enricher,
    })
}

/// The NATS hub worker when `--nats-ingest` is set (with `--nats-url`).
fn start_nats_ingest(
    config: &Config,
    store: &Store,
    events: &Sender<Event>,
    writer: &WriterHandle,
) -> Result<Option<IngestHandle>, Box<dyn Error>> {
    let Some(nats) = config.nats.as_ref().filter(|nats| nats.ingest) else {
        return Ok(None);
    };
    let settings = IngestSettings {
        ignore_ip: config.sensor.ignore_ip.clone(),
        retention_days: config.store.retention_days,
    };
    let handle = nats_ingest::start(
        nats,
        store.clone(),
        events.clone(),
        writer.commits(),
        settings,
    )?;
    Ok(Some(handle))
}

/// The workers that read committed events after their own cursor: the webhook, and the NATS
/// publisher (not on a hub: the events it ingested from the stream would go back into it).
fn start_commit_readers(
    config: &Config,
    store: &Store,
    writer: &WriterHandle,
    renders: &mut Vec<Arc<dyn Render>>,
) -> Result<(Option<WebhookHandle>, Option<PublisherHandle>), Box<dyn Error>> {
    let webhook = match &config.webhook {
        Some(settings) => Some(webhook::spawn(settings, store.clone(), writer.commits())?),
        None => None,
    };
    if let Some(handle) = &webhook {
        renders.push(handle.metrics());
    }
    let nats_publisher = match &config.nats {
        Some(settings) if !settings.ingest => Some(nats_publisher::spawn(
            settings,
            store.clone(),
            writer.commits(),
        )?),
        _ => None,
    };
    if let Some(handle) = &nats_publisher {
        renders.push(handle.metrics());
    }
    Ok((webhook, nats_publisher))
}

impl Parts {
    /// Producers first, then the writer drains the channel and commits, then its consumers.
    fn stop(self) {
        if let Some(sensor) = self.sensor {
            sensor.stop();
        }
        if let Some(p2p) = self.p2p {
            p2p.stop();
        }
        if let Some(hub) = self.nats_ingest {
            hub.stop();
        }
        drop(self.events);
        self.writer.join();
        if let Some(webhook) = self.webhook {
            webhook.stop();
        }
        if let Some(publisher) = self.nats_publisher {
            publisher.stop();
        }
        if let Some(api) = self.api {
            api.stop();
        }
    }
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
