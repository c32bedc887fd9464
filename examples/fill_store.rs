//! Fills a store through the public writer API; then either exits, serves the HTTP API on it, or
//! times that API while a writer thread keeps ingesting in-process. It can also time an API
//! served by another process (the `sentrypeer` binary) on a store it filled earlier, without
//! opening the store. Used by `perf/api.sh` (`--fill-only`, then `--time-api`) and
//! `tests/schemathesis.sh --example` (`--serve`).
//!
//! ```text
//! fill_store --db FILE [--events N] [--ips N] [--numbers N]
//!            --fill-only                             fill, then exit
//!          | [--serve ADDR] [--seconds S]            fill, serve until killed or S seconds
//!          | --bench OUT.json [--ingest-rate N]      fill, serve, time it while a thread feeds
//!                                                    the writer N events/s, write JSON
//! fill_store --time-api ADDR --ips N --numbers N --bench OUT.json
//!                                                    time the API at ADDR, write JSON; look-ups
//!                                                    use keys a fill with these --ips/--numbers
//!                                                    stored
//! ```
//! When serving, prints `listening on ADDR` once the API is up.

use std::error::Error;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use hdrhistogram::Histogram;
use sentrypeer::api;
use sentrypeer::config::{ApiConfig, OutputConfig, StoreConfig};
use sentrypeer::event::Event;
use sentrypeer::event::timestamp::now_ns;
use sentrypeer::metrics::Render;
use sentrypeer::store::{CommitWatch, Store, spawn_writer};
#[path = "support/fill_events.rs"]
mod fill_events;
use fill_events::{event, number, source_ip};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

struct Args {
    db: PathBuf,
    events: u64,
    ips: u64,
    numbers: u64,
    fill_only: bool,
    serve: SocketAddr,
    seconds: Option<u64>,
    bench: Option<PathBuf>,
    ingest_rate: u64,
    time_api: Option<SocketAddr>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        db: PathBuf::new(),
        events: 1_000,
        ips: 100,
        numbers: 100,
        fill_only: false,
        serve: "127.0.0.1:0".parse()?,
        seconds: None,
        bench: None,
        ingest_rate: 0,
        time_api: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--fill-only" {
            args.fill_only = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--db" => args.db = value.into(),
            "--events" => args.events = value.parse()?,
            "--ips" => args.ips = value.parse()?,
            "--numbers" => args.numbers = value.parse()?,
            "--serve" => args.serve = value.parse()?,
            "--seconds" => args.seconds = Some(value.parse()?),
            "--bench" => args.bench = Some(value.into()),
            "--ingest-rate" => args.ingest_rate = value.parse()?,
            "--time-api" => args.time_api = Some(value.parse()?),
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    if args.time_api.is_some() {
        if args.bench.is_none() || !args.db.as_os_str().is_empty() || args.fill_only {
            return Err(
                "--time-api ADDR needs --bench OUT.json and takes no --db or --fill-only".into(),
            );
        }
    } else if args.db.as_os_str().is_empty() {
        return Err("--db FILE is required".into());
    }
    if args.fill_only && args.bench.is_some() {
        return Err("--fill-only and --bench exclude each other".into());
    }
    Ok(args)
}

/// Sends `args.events` events through the writer and waits until all are committed; returns the
/// seconds that took.
fn fill(sender: &Sender<Event>, commits: &CommitWatch, args: &Args) -> Result<f64> {
    let started = Instant::now();
    let base_ns = now_ns().saturating_sub(args.events * 1_000);
    let first_key = commits.last_key();
    for index in 0..args.events {
        sender.send(event(
            index,
            args.ips,
            args.numbers,
            base_ns + index * 1_000,
        ))?;
    }
    while commits.last_key() < first_key + args.events {
        commits.wait_past(commits.last_key(), Duration::from_secs(1));
    }
    let fill_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "filled {} events ({} IPs, {} numbers) in {fill_seconds:.1} s",
        args.events, args.ips, args.numbers
    );
    Ok(fill_seconds)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if let Some(addr) = args.time_api {
        return time_api(addr, &args);
    }
    let store_config = StoreConfig {
        db_file: args.db.clone(),
        batch_events_max: 4_096,
        batch_interval: Duration::from_millis(20),
        no_sync: true,
        retention_days: None,
    };
    let store = Store::open(&store_config)?;
    let (sender, receiver) = crossbeam_channel::bounded(65_536);
    let outputs = OutputConfig {
        json_log_file: None,
        syslog: false,
        syslog_socket: sentrypeer::config::defaults::SYSLOG_SOCKET.into(),
        verified_only: false,
    };
    let writer = spawn_writer(store.clone(), receiver, &outputs, &store_config)?;
    let fill_seconds = fill(&sender, &writer.commits(), &args)?;
    if args.fill_only {
        drop(sender);
        writer.join();
        return Ok(());
    }
    let config = ApiConfig {
        enabled: true,
        listen: args.serve,
        token: None,
        verified_only: false,
    };
    let renders: Vec<Arc<dyn Render>> = vec![writer.metrics()];
    let server = api::start(&config, store, renders)?;
    println!("listening on {}", server.local_addr());
    std::io::stdout().flush()?;

    let stop = Arc::new(AtomicBool::new(false));
    let ingested = Arc::new(AtomicU64::new(0));
    let plan = args_copy(&args);
    let feeder = (args.ingest_rate > 0).then(|| {
        let (stop, ingested, sender) = (Arc::clone(&stop), Arc::clone(&ingested), sender.clone());
        std::thread::spawn(move || ingest(&sender, &plan, &stop, &ingested))
    });
    if let Some(out) = &args.bench {
        let report = bench(server.local_addr(), &args, fill_seconds, &ingested)?;
        std::fs::write(out, report)?;
        eprintln!("wrote {}", out.display());
    } else {
        let deadline = args
            .seconds
            .map(|s| Instant::now() + Duration::from_secs(s));
        while deadline.is_none_or(|d| Instant::now() < d) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    server.stop();
    drop(sender);
    writer.join();
    Ok(())
}

/// What the feeder thread needs from the arguments.
#[derive(Clone, Copy)]
struct Ingest {
    events: u64,
    ips: u64,
    numbers: u64,
    rate: u64,
}

fn args_copy(args: &Args) -> Ingest {
    Ingest {
        events: args.events,
        ips: args.ips,
        numbers: args.numbers,
        rate: args.ingest_rate,
    }
}

/// Feeds `rate` events per second (in 10 ms slices) until `stop`.
fn ingest(sender: &Sender<Event>, args: &Ingest, stop: &AtomicBool, ingested: &AtomicU64) {
    let per_slice = (args.rate / 100).max(1);
    let mut index = args.events;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..per_slice {
            if sender
                .try_send(event(index, args.ips, args.numbers, now_ns()))
                .is_ok()
            {
                ingested.fetch_add(1, Ordering::Relaxed);
            }
            index += 1;
        }
        next += Duration::from_millis(10);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Times `count` GETs of `paths(i)`; returns (p50, p99, max) in microseconds.
fn time_gets(
    agent: &ureq::Agent,
    base: &str,
    count: u64,
    path: impl Fn(u64) -> String,
    expect: u16,
) -> Result<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new(3)?;
    for index in 0..count {
        let url = format!("{base}{}", path(index));
        let started = Instant::now();
        let mut response = agent.get(&url).call()?;
        let body = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_vec()?;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if response.status().as_u16() != expect || body.is_empty() {
            return Err(
                format!("{url}: status {} ({} bytes)", response.status(), body.len()).into(),
            );
        }
        histogram.record(micros.max(1))?;
    }
    Ok(histogram)
}

/// Look-ups timed per route.
const LOOKUPS: u64 = 2_000;

fn summary(histogram: &Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "count": histogram.len(),
        "p50_us": histogram.value_at_quantile(0.5),
        "p99_us": histogram.value_at_quantile(0.99),
        "max_us": histogram.max(),
    })
}

/// Times the API at `addr` (served by another process) and writes the report to `--bench`.
fn time_api(addr: SocketAddr, args: &Args) -> Result<()> {
    let timings = time_routes(addr, args.ips, args.numbers, || ())?;
    let mut report = serde_json::json!({
        "api": addr.to_string(),
        "keys": {
            "source_ips": args.ips,
            "called_numbers": args.numbers,
        },
        "timing_seconds": timings.seconds,
    });
    if let Some(object) = report.as_object_mut() {
        object.extend(timings.routes);
    }
    let out = args
        .bench
        .as_ref()
        .ok_or("--time-api needs --bench OUT.json")?;
    std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// In-process run: times the API this process serves while the feeder thread counts into
/// `ingested`; returns the report.
fn bench(addr: SocketAddr, args: &Args, fill_seconds: f64, ingested: &AtomicU64) -> Result<String> {
    let mut ingest_before = 0;
    let timings = time_routes(addr, args.ips, args.numbers, || {
        ingest_before = ingested.load(Ordering::Relaxed);
    })?;
    let ingested_during = ingested.load(Ordering::Relaxed) - ingest_before;
    let seconds = timings.seconds;
    let mut report = serde_json::json!({
        "store": {
            "events": args.events,
            "source_ips": args.ips,
            "called_numbers": args.numbers,
            "fill_seconds": fill_seconds,
        },
        "ingest_during_bench": {
            "how": "a second thread feeding the writer channel (in-process, not UDP)",
            "rate_per_second_asked": args.ingest_rate,
            "events_ingested": ingested_during,
            "seconds": seconds,
            "events_per_second": ingested_during as f64 / seconds,
        },
    });
    if let Some(object) = report.as_object_mut() {
        object.extend(timings.routes);
    }
    Ok(serde_json::to_string_pretty(&report)?)
}

/// Per-route summaries (plus `client`) and how long the timed requests took.
struct Timings {
    routes: serde_json::Map<String, serde_json::Value>,
    seconds: f64,
}

/// Warms up one keep-alive connection to `addr`, calls `at_start`, then times look-ups of keys
/// that a fill with `ips` source IPs and `numbers` called numbers stored, the full lists, the
/// nftables list and `/events?limit=100`.
fn time_routes(
    addr: SocketAddr,
    ips: u64,
    numbers: u64,
    at_start: impl FnOnce(),
) -> Result<Timings> {
    // Timeouts per phase, none on resolving: with a resolve timeout (which `timeout_global`
    // sets) ureq resolves on a new thread for every request, even an IP literal on a pooled
    // connection, and the timing measured that thread's start-up (about half the p50 and most
    // of the p99 tail on these 2-core machines) rather than the API.
    let limit = Some(Duration::from_secs(60));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_connect(limit)
        .timeout_send_request(limit)
        .timeout_recv_response(limit)
        .timeout_recv_body(limit)
        .build()
        .into();
    let base = format!("http://{addr}");
    let mix = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11;
    // Warm up the connection and the page cache.
    time_gets(
        &agent,
        &base,
        20,
        |i| format!("/ip-addresses/{}", source_ip(mix(i) % ips)),
        200,
    )?;
    at_start();
    let started = Instant::now();
    let ip = time_gets(
        &agent,
        &base,
        LOOKUPS,
        |i| format!("/ip-addresses/{}", source_ip(mix(i) % ips)),
        200,
    )?;
    let number_lookup = time_gets(
        &agent,
        &base,
        LOOKUPS,
        |i| format!("/numbers/{}", number(mix(i) % numbers)),
        200,
    )?;
    let ip_list = time_gets(&agent, &base, 10, |_| "/ip-addresses".into(), 200)?;
    let number_list = time_gets(&agent, &base, 10, |_| "/numbers".into(), 200)?;
    let nftables = time_gets(
        &agent,
        &base,
        3,
        |_| "/ip-addresses?format=nftables".into(),
        200,
    )?;
    let events = time_gets(&agent, &base, 10, |_| "/events?limit=100".into(), 200)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut routes = serde_json::Map::new();
    for (name, value) in [
        (
            "client",
            "ureq 3, one keep-alive connection, sequential requests, loopback".into(),
        ),
        ("ip_lookup", summary(&ip)),
        ("number_lookup", summary(&number_lookup)),
        ("ip_list_full", summary(&ip_list)),
        ("number_list_full", summary(&number_list)),
        ("ip_list_nftables", summary(&nftables)),
        ("events_100", summary(&events)),
    ] {
        routes.insert(name.to_owned(), value);
    }
    Ok(Timings { routes, seconds })
}
