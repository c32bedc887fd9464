//! A probe (a benchmark, not a test): what other zstd parameters would cost and save on the
//! store's record tails. Reads a JSON log written by the sensor, rebuilds each event's record
//! tail ([`Event::tail`]), trains a dictionary on the first ones with the encoder's [`Trainer`], then
//! compresses every tail with the encoder's settings (level 1, magicless, the dictionary) and
//! with each variant, seven rounds, on one thread; prints the fastest and the median round in ns
//! per tail and the mean compressed tail in bytes.
//!
//! ```text
//! zstd_params JSON_LOG
//! ```
//! Never: writes a file.

use std::error::Error;
use std::time::Instant;

use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
use sentrypeer::store::codec::Packer;
use sentrypeer::store::dictionary::{Trained, Trainer};
use uuid::Uuid;
use zstd::zstd_safe::{CCtx, CParameter, DictAttachPref, ParamSwitch, Strategy};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const ROUNDS: usize = 7;

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: zstd_params JSON_LOG")?;
    let events = read_events(&std::fs::read_to_string(path)?)?;
    let Trained::Dictionary(dictionary) = Trainer::new().offer(&events) else {
        return Err("no dictionary trained on these events".into());
    };
    let raw: usize = events.iter().map(|event| event.tail().len()).sum();
    println!(
        "{} events, tails {:.1} bytes on average, dictionary {} bytes",
        events.len(),
        raw as f64 / events.len() as f64,
        dictionary.len()
    );
    let variants = variants();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut sizes = vec![0.0; variants.len()];
    for _ in 0..ROUNDS {
        for (index, (_, extra)) in variants.iter().enumerate() {
            let (ns, bytes) = compress_all(&events, &dictionary, extra)?;
            times[index].push(ns);
            sizes[index] = bytes;
        }
    }
    for ((name, _), (mut rounds, bytes)) in variants.iter().zip(times.into_iter().zip(sizes)) {
        rounds.sort_by(f64::total_cmp);
        let whole: Vec<u32> = rounds.iter().map(|ns| *ns as u32).collect();
        println!(
            "{name:24} min {:6.0} median {:6.0} ns/event ({ROUNDS} rounds: {whole:?}) {bytes:6.1} bytes/tail",
            rounds[0],
            rounds[ROUNDS / 2],
        );
    }
    Ok(())
}

/// The events of a JSON log; only the tail's fields matter here.
fn read_events(log: &str) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    for line in log.lines() {
        let value: serde_json::Value = serde_json::from_str(line)?;
        let text = |key: &str| -> Result<Vec<u8>> {
            Ok(value[key]
                .as_str()
                .ok_or("a text field is missing")?
                .as_bytes()
                .to_vec())
        };
        let (method, called, agent) = (
            text("sip_method")?,
            text("called_number")?,
            text("sip_user_agent")?,
        );
        let message = text("sip_message")?;
        events.push(Event::new(&EventParts {
            timestamp_ns: 1,
            uuid: Uuid::from_u128(1),
            node_id: Uuid::from_u128(2),
            transport: Transport::Udp,
            collected_method: CollectedMethod::Passive,
            source: "127.0.0.1:5060".parse()?,
            destination: "127.0.0.1:5060".parse()?,
            method: &method,
            called_number: Some(&called),
            user_agent: Some(&agent),
            message: &message,
            source_verified: false,
            auth_username: None,
        }));
    }
    Ok(events)
}

/// Each variant: its name and the parameters set after the encoder's own.
fn variants() -> Vec<(&'static str, Vec<CParameter>)> {
    vec![
        ("level 1 (the encoder's)", vec![]),
        (
            "level 1, force attach",
            vec![CParameter::ForceAttachDict(DictAttachPref::ForceAttach)],
        ),
        (
            "level 1, force copy",
            vec![CParameter::ForceAttachDict(DictAttachPref::ForceCopy)],
        ),
        (
            "level 1, literals raw",
            vec![CParameter::LiteralCompressionMode(ParamSwitch::Disable)],
        ),
        ("level 1, minmatch 7", vec![CParameter::MinMatch(7)]),
        ("level 1, minmatch 5", vec![CParameter::MinMatch(5)]),
        ("level 1, hashlog 10", vec![CParameter::HashLog(10)]),
        ("level 1, windowlog 14", vec![CParameter::WindowLog(14)]),
        ("level 2", vec![CParameter::CompressionLevel(2)]),
        ("level 3", vec![CParameter::CompressionLevel(3)]),
        ("level -1", vec![CParameter::CompressionLevel(-1)]),
        ("level -3", vec![CParameter::CompressionLevel(-3)]),
        ("level -7", vec![CParameter::CompressionLevel(-7)]),
        ("dfast", vec![CParameter::Strategy(Strategy::ZSTD_dfast)]),
    ]
}

/// Compresses every tail once (after 1,000 to warm up): ns per tail, mean compressed bytes.
fn compress_all(events: &[Event], dictionary: &[u8], extra: &[CParameter]) -> Result<(f64, f64)> {
    let mut context = CCtx::try_create().ok_or("no zstd context")?;
    for parameter in Packer::PARAMETERS.iter().chain(extra) {
        context.set_parameter(*parameter).map_err(zstd_error)?;
    }
    context.load_dictionary(dictionary).map_err(zstd_error)?;
    let mut frame = Vec::with_capacity(4096);
    for event in events.iter().take(1_000) {
        frame.clear();
        context
            .compress2(&mut frame, event.tail())
            .map_err(zstd_error)?;
    }
    let mut total = 0;
    let started = Instant::now();
    for event in events {
        frame.clear();
        total += context
            .compress2(&mut frame, event.tail())
            .map_err(zstd_error)?;
    }
    let count = events.len() as f64;
    Ok((
        started.elapsed().as_nanos() as f64 / count,
        total as f64 / count,
    ))
}

fn zstd_error(code: usize) -> Box<dyn Error> {
    zstd::zstd_safe::get_error_name(code).into()
}
