//! The ingest floor (a benchmark, not a test): a UDP receiver like `sentrypeer-loadgen sink` that
//! also does, on its one thread and with no hand-off, the least per-event work the sensor's
//! contract asks for with `-j`, using the sensor's own code: scan the request, build its
//! [`Event`], encode its store record with zstd and a dictionary trained on the first events
//! ([`Packer`], [`Trainer`]), render its JSON-log line ([`write_json`]), and per batch (8,192 events or
//! 50 ms, the writer's defaults) one LMDB transaction that appends the records, adds the batch's
//! per-IP and per-number sums to their aggregates and commits with fsync, then one write of the
//! batch's log lines (with the sensor's page-cache trim, [`LogCacheTrim`]). It leaves out what
//! the sensor adds to that minimum: the threads and their hand-offs, the newest-first indexes,
//! the dashboard, metrics and the API. Its CPU per stored event is a floor for the sensor's on
//! this machine; `perf/ingest.sh --floor` runs it beside the sink and the sensor in each sweep.
//! The report splits the time by stage (wall time while busy, per stored event).
//!
//! ```text
//! ingest_floor --listen ADDR [--duration S] [--idle S] [--dir DIR] [--json]
//! ```
//! Prints `ingest_floor listening on ADDR` on stderr once bound, and its report on stdout when
//! the duration ended or no datagram came for `--idle` seconds after the first (default 1).
//! Its CPU is the whole process's, less the one-off dictionary training (reported apart).
//!
//! Never: listens on anything but a loopback address, answers, keeps its store (the directory
//! it made is removed; `--dir` must be a new or empty directory, which is left empty).

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, PutFlags, WithoutTls};
use sentrypeer::config::limits::{WRITER_BATCH_EVENTS_DEFAULT, WRITER_BATCH_INTERVAL};
use sentrypeer::event::json::write_json;
use sentrypeer::event::timestamp::now_ns;
use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport, display_ip};
use sentrypeer::sensor::udp_batch::RecvBatch;
use sentrypeer::sip;
use sentrypeer::store::codec::{self, Packer};
use sentrypeer::store::dictionary::{Trained, Trainer};
use sentrypeer::store::log_cache::LogCacheTrim;
use sentrypeer::worker_thread::WorkerThread;
use serde::Serialize;
use uuid::Uuid;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The sink's receive buffer (`sentrypeer-loadgen sink`'s default).
const RCVBUF_BYTES: usize = 8 << 20;
/// The LMDB map: far more than a few seconds of flood need.
const MAP_BYTES: usize = 16 << 30;
/// How long an idle receive waits before it checks the stop conditions.
const WAKE_INTERVAL: Duration = Duration::from_millis(50);

struct Plan {
    listen: SocketAddr,
    duration: Duration,
    idle: Duration,
    dir: Option<PathBuf>,
    json: bool,
}

#[derive(Serialize)]
struct Report {
    listen: String,
    received: u64,
    /// Events committed to the store (and written to the log).
    stored: u64,
    /// Datagrams that were not SIP requests (not stored, as in the sensor).
    not_requests: u64,
    commits: u64,
    /// From the first to the last datagram.
    duration_s: f64,
    rate: f64,
    wall_s: f64,
    /// User plus system CPU of the process while receiving, less `training_cpu_s`.
    cpu_s: f64,
    /// The dictionary training thread's own CPU (left out of `cpu_s`).
    training_cpu_s: f64,
    cpu_us_per_stored_event: f64,
    /// Wall time per stored event in each stage while busy (us); the rest of `cpu_s` is the
    /// loop, the idle receives and their waits.
    stage_us_per_stored_event: BTreeMap<&'static str, f64>,
    db_bytes: u64,
    log_bytes: u64,
    rss_peak_kib: u64,
    stopped_by: &'static str,
}

fn parse_args() -> Result<Plan> {
    let mut plan = Plan {
        listen: "127.0.0.1:0".parse()?,
        duration: Duration::from_secs(3600),
        idle: Duration::from_secs(1),
        dir: None,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => plan.listen = value()?.parse()?,
            "--duration" => plan.duration = Duration::from_secs_f64(value()?.parse()?),
            "--idle" => plan.idle = Duration::from_secs_f64(value()?.parse()?),
            "--dir" => plan.dir = Some(PathBuf::from(value()?)),
            "--json" => plan.json = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !plan.listen.ip().is_loopback() {
        return Err("--listen must be a loopback address".into());
    }
    Ok(plan)
}

/// The sensor's own UDP socket (non-blocking, SO_REUSEPORT, IP_PKTINFO) with the sink's receive
/// buffer.
fn bind(listen: SocketAddr) -> Result<UdpSocket> {
    Ok(sentrypeer::sensor::socket::bind_udp(listen, RCVBUF_BYTES)?.into())
}

/// Waits until `fd` is readable or `timeout` passed.
fn wait_readable(fd: libc::c_int, timeout: Duration) {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd, count 1.
    unsafe { libc::poll(&raw mut poll, 1, timeout.as_millis() as libc::c_int) };
}

fn cpu_s(clock: libc::clockid_t) -> f64 {
    // SAFETY: timespec is plain data; clock_gettime fills it.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a live timespec.
    unsafe { libc::clock_gettime(clock, &raw mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

/// Peak RSS in KiB (`ru_maxrss`, which counts the forking parent's pages before `exec` too).
fn rss_peak_kib() -> u64 {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a live rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) } != 0 {
        return 0;
    }
    u64::try_from(usage.ru_maxrss).unwrap_or(0)
}

/// Count, first and last sighting (UTC ns), as 24 little-endian bytes in the store.
#[derive(Clone, Copy)]
struct Sightings {
    count: u64,
    first: u64,
    last: u64,
}

impl Sightings {
    fn once(timestamp_ns: u64) -> Self {
        Self {
            count: 1,
            first: timestamp_ns,
            last: timestamp_ns,
        }
    }

    fn merge(self, other: Self) -> Self {
        Self {
            count: self.count + other.count,
            first: self.first.min(other.first),
            last: self.last.max(other.last),
        }
    }

    fn to_bytes(self) -> [u8; 24] {
        let mut out = [0; 24];
        for (chunk, value) in out
            .chunks_exact_mut(8)
            .zip([self.count, self.first, self.last])
        {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let value = |i: usize| {
            let chunk = bytes.get(i * 8..i * 8 + 8)?;
            Some(u64::from_le_bytes(chunk.try_into().ok()?))
        };
        Some(Self {
            count: value(0)?,
            first: value(1)?,
            last: value(2)?,
        })
    }
}

type Table = Database<'static, Bytes, Bytes>;

struct Tables {
    env: Env<WithoutTls>,
    events: Table,
    ips: Table,
    numbers: Table,
}

fn open_tables(path: &std::path::Path) -> Result<Tables> {
    let mut builder = EnvOpenOptions::new().read_txn_without_tls();
    builder.map_size(MAP_BYTES).max_dbs(3);
    // SAFETY: the file is new and only this process, through LMDB, touches it.
    let env = unsafe { builder.flags(EnvFlags::NO_SUB_DIR).open(path)? };
    let txn = env.write_txn()?;
    let created = env.create_databases_and_commit(txn, |opener, txn| {
        Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit([
            opener.create_database::<Bytes, Bytes>(txn, Some("events"))?,
            opener.create_database::<Bytes, Bytes>(txn, Some("ips"))?,
            opener.create_database::<Bytes, Bytes>(txn, Some("numbers"))?,
        ]))
    })?;
    let CommitOrAbort::Commit([events, ips, numbers]) = created else {
        return Err("the tables were not created".into());
    };
    Ok(Tables {
        env,
        events,
        ips,
        numbers,
    })
}

/// Adds `batch` to the aggregates of `table`, in key order.
fn bump(
    table: Table,
    txn: &mut heed::RwTxn<'_>,
    batch: HashMap<&[u8], Sightings, foldhash::fast::RandomState>,
) -> Result<()> {
    let mut keys: Vec<_> = batch.into_iter().collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (key, seen) in keys {
        let merged = match table.get(txn, key)?.and_then(Sightings::from_bytes) {
            Some(old) => old.merge(seen),
            None => seen,
        };
        table.put(txn, key, &merged.to_bytes())?;
    }
    Ok(())
}

/// Wall time spent in each stage while busy (a receive that found nothing and the waits are
/// left out).
#[derive(Default)]
struct Stages {
    /// `recvmmsg` calls that returned datagrams.
    receive: Duration,
    /// Scanning each datagram and building its event (one allocation).
    scan_event: Duration,
    /// The JSON-log lines, rendered into the batch's buffer.
    json: Duration,
    /// The store records (zstd with the dictionary).
    encode: Duration,
    /// The LMDB transaction: records appended, aggregates added, commit with fsync.
    store: Duration,
    /// The batch's log lines written to the file, and the page-cache trim.
    log_write: Duration,
    /// Dropping the batch's events.
    free: Duration,
}

impl Stages {
    fn per_event_us(&self, events: u64) -> BTreeMap<&'static str, f64> {
        let per_event = |stage: Duration| {
            if events == 0 {
                return 0.0;
            }
            (stage.as_secs_f64() * 1e6 / events as f64 * 1000.0).round() / 1000.0
        };
        BTreeMap::from([
            ("receive", per_event(self.receive)),
            ("scan_event", per_event(self.scan_event)),
            ("json", per_event(self.json)),
            ("encode", per_event(self.encode)),
            ("store", per_event(self.store)),
            ("log_write", per_event(self.log_write)),
            ("free", per_event(self.free)),
        ])
    }
}

/// One batch: its events and their encoded records and log lines.
struct Batch {
    events: Vec<Event>,
    records: Vec<u8>,
    ends: Vec<usize>,
    log: Vec<u8>,
    started: Option<Instant>,
}

struct Floor {
    tables: Tables,
    log: File,
    log_trim: LogCacheTrim,
    packer: Packer,
    next_key: u64,
    batch: Batch,
    /// Samples the first events for the dictionary (the sensor's sampling and bounds).
    trainer: Trainer,
    training: Option<WorkerThread<(Trained, f64)>>,
    training_cpu_s: f64,
    stored: u64,
    commits: u64,
    stages: Stages,
}

impl Floor {
    /// Renders the log lines of the batch's events from `from` on.
    fn render(&mut self, from: usize) -> Result<()> {
        for event in self.batch.events.get(from..).unwrap_or_default() {
            write_json(event, &mut self.batch.log)?;
            self.batch.log.push(b'\n');
        }
        Ok(())
    }

    /// Encodes the store records of the batch's events from `from` on; samples the first
    /// events for the dictionary as the sensor's encoder does, and trains it beside the ingest
    /// (the encoder waits for it), its CPU apart.
    fn encode(&mut self, from: usize) -> Result<()> {
        let events = self.batch.events.get(from..).unwrap_or_default();
        for event in events {
            let start = self.batch.records.len();
            if self.packer.encode(event, &mut self.batch.records).is_err() {
                self.batch.records.truncate(start);
                codec::encode(event, &mut self.batch.records);
            }
            self.batch.ends.push(self.batch.records.len());
        }
        if self.trainer.sample(events) {
            let mut trainer = std::mem::replace(&mut self.trainer, Trainer::finished());
            self.training = Some(WorkerThread::spawn("dictionary", move || {
                let trained = trainer.train();
                (trained, cpu_s(libc::CLOCK_THREAD_CPUTIME_ID))
            })?);
        }
        Ok(())
    }

    fn commit_if_due(&mut self, now: Instant) -> Result<()> {
        if self
            .batch
            .started
            .is_some_and(|started| now.duration_since(started) >= WRITER_BATCH_INTERVAL)
        {
            self.commit()?;
        }
        if self
            .training
            .as_ref()
            .is_some_and(WorkerThread::is_finished)
            && let Some(training) = self.training.take()
        {
            let (trained, cpu) = training.join().ok_or("training panicked")?;
            self.training_cpu_s = cpu;
            if let Trained::Dictionary(dictionary) = trained {
                self.packer = Packer::with_dictionary(1, &dictionary)?;
            }
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let batch = &mut self.batch;
        if batch.events.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let tables = &self.tables;
        let mut txn = tables.env.write_txn()?;
        let mut ips: HashMap<[u8; 16], Sightings, foldhash::fast::RandomState> = HashMap::default();
        let mut numbers: HashMap<&[u8], Sightings, foldhash::fast::RandomState> =
            HashMap::default();
        let mut start = 0;
        for (event, &end) in batch.events.iter().zip(&batch.ends) {
            let seen = Sightings::once(event.timestamp_ns);
            let ip = match display_ip(event.source) {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            ips.entry(ip)
                .and_modify(|old| *old = old.merge(seen))
                .or_insert(seen);
            if let Some(number) = event.called_number() {
                numbers
                    .entry(number)
                    .and_modify(|old| *old = old.merge(seen))
                    .or_insert(seen);
            }
            let record = batch.records.get(start..end).unwrap_or_default();
            tables.events.put_with_flags(
                &mut txn,
                PutFlags::APPEND,
                &self.next_key.to_be_bytes(),
                record,
            )?;
            self.next_key += 1;
            start = end;
        }
        bump(
            tables.ips,
            &mut txn,
            ips.iter().map(|(key, seen)| (&key[..], *seen)).collect(),
        )?;
        bump(tables.numbers, &mut txn, numbers)?;
        txn.commit()?;
        let committed = Instant::now();
        self.log.write_all(&batch.log)?;
        self.log_trim.after_flush(&self.log);
        let written = Instant::now();
        self.stored += batch.events.len() as u64;
        self.commits += 1;
        batch.events.clear();
        let stages = &mut self.stages;
        stages.store += committed.duration_since(started);
        stages.log_write += written.duration_since(committed);
        stages.free += written.elapsed();
        batch.records.clear();
        batch.ends.clear();
        batch.log.clear();
        batch.started = None;
        Ok(())
    }
}

/// Turns received datagrams into events, as a shard does (UDP, passive).
struct Scanner {
    listen: SocketAddr,
    node_id: Uuid,
    scratch_called: Vec<u8>,
    scratch_agent: Vec<u8>,
    not_requests: u64,
}

impl Scanner {
    fn events(&mut self, batch: &RecvBatch, count: usize, out: &mut Vec<Event>) {
        let timestamp_ns = now_ns();
        for index in 0..count {
            let Some(datagram) = batch.datagram(index) else {
                continue;
            };
            let Ok(request) = sip::scan(datagram.bytes) else {
                self.not_requests += 1;
                continue;
            };
            let destination_ip = datagram.destination_ip.unwrap_or(self.listen.ip());
            out.push(Event::new(&EventParts {
                timestamp_ns,
                uuid: Uuid::new_v4(),
                node_id: self.node_id,
                transport: Transport::Udp,
                collected_method: CollectedMethod::Passive,
                source: datagram.source.unwrap_or(self.listen),
                destination: SocketAddr::new(destination_ip, self.listen.port()),
                method: request.method,
                called_number: request.called_number(&mut self.scratch_called),
                user_agent: request.user_agent_value(&mut self.scratch_agent),
                message: datagram.bytes,
                source_verified: false,
                auth_username: request.auth_username(),
            }));
        }
    }
}

impl Floor {
    fn open(db_path: &std::path::Path, log_path: &std::path::Path) -> Result<Self> {
        Ok(Self {
            tables: open_tables(db_path)?,
            log: File::options().create(true).append(true).open(log_path)?,
            log_trim: LogCacheTrim::default(),
            packer: Packer::new()?,
            next_key: 1,
            batch: Batch {
                events: Vec::with_capacity(WRITER_BATCH_EVENTS_DEFAULT),
                records: Vec::with_capacity(WRITER_BATCH_EVENTS_DEFAULT * 256),
                ends: Vec::with_capacity(WRITER_BATCH_EVENTS_DEFAULT),
                log: Vec::with_capacity(WRITER_BATCH_EVENTS_DEFAULT * 1200),
                started: None,
            },
            trainer: Trainer::new(),
            training: None,
            training_cpu_s: 0.0,
            stored: 0,
            commits: 0,
            stages: Stages::default(),
        })
    }

    /// Takes the `count` datagrams of `received` (returned at `received_at`): events, log
    /// lines, records; commits when the batch is full.
    fn ingest(
        &mut self,
        scanner: &mut Scanner,
        received: &RecvBatch,
        count: usize,
        received_at: Instant,
    ) -> Result<()> {
        let from = self.batch.events.len();
        scanner.events(received, count, &mut self.batch.events);
        let scanned = Instant::now();
        self.render(from)?;
        let rendered = Instant::now();
        self.encode(from)?;
        let encoded = Instant::now();
        self.stages.scan_event += scanned.duration_since(received_at);
        self.stages.json += rendered.duration_since(scanned);
        self.stages.encode += encoded.duration_since(rendered);
        if self.batch.events.len() > from {
            self.batch.started.get_or_insert(received_at);
        }
        if self.batch.events.len() >= WRITER_BATCH_EVENTS_DEFAULT {
            self.commit()?;
        }
        Ok(())
    }

    /// How long an idle receive may wait: until the batch's interval ends.
    fn wait_bound(&self) -> Duration {
        let wait = self.batch.started.map_or(WAKE_INTERVAL, |started| {
            (started + WRITER_BATCH_INTERVAL).saturating_duration_since(Instant::now())
        });
        wait.max(Duration::from_millis(1))
    }

    /// Commits what is left and waits for the training thread.
    fn finish(&mut self) -> Result<()> {
        self.commit()?;
        if let Some(training) = self.training.take() {
            self.training_cpu_s = training.join().ok_or("training panicked")?.1;
        }
        Ok(())
    }
}

/// What the receive loop saw.
struct Receipt {
    received: u64,
    first: Option<Instant>,
    last: Instant,
    stopped_by: &'static str,
}

/// Receives and ingests until `plan`'s duration ended or it was idle for `plan.idle`.
fn receive(
    plan: &Plan,
    socket: &UdpSocket,
    floor: &mut Floor,
    scanner: &mut Scanner,
    start: Instant,
) -> Result<Receipt> {
    let mut batch = RecvBatch::new();
    let fd = socket.as_raw_fd();
    let mut receipt = Receipt {
        received: 0,
        first: None,
        last: start,
        stopped_by: "duration",
    };
    loop {
        floor.commit_if_due(Instant::now())?;
        let before = Instant::now();
        match batch.recv(fd) {
            Ok(count) => {
                let now = Instant::now();
                floor.stages.receive += now.duration_since(before);
                receipt.last = now;
                receipt.first.get_or_insert(now);
                receipt.received += count as u64;
                floor.ingest(scanner, &batch, count, now)?;
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                wait_readable(fd, floor.wait_bound());
            }
            Err(error) => return Err(error.into()),
        }
        let now = Instant::now();
        if now.duration_since(start) >= plan.duration {
            return Ok(receipt);
        }
        if receipt.first.is_some() && now.duration_since(receipt.last) >= plan.idle {
            receipt.stopped_by = "idle";
            return Ok(receipt);
        }
    }
}

fn run(plan: &Plan) -> Result<Report> {
    let socket = bind(plan.listen)?;
    let listen = socket.local_addr()?;
    let dir = match &plan.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("ingest-floor-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let (db_path, log_path) = (dir.join("db"), dir.join("json.log"));
    let mut floor = Floor::open(&db_path, &log_path)?;
    let mut scanner = Scanner {
        listen,
        node_id: Uuid::new_v4(),
        scratch_called: Vec::new(),
        scratch_agent: Vec::new(),
        not_requests: 0,
    };
    eprintln!("ingest_floor listening on {listen}");
    let start = Instant::now();
    let cpu_start = cpu_s(libc::CLOCK_PROCESS_CPUTIME_ID);
    let receipt = receive(plan, &socket, &mut floor, &mut scanner, start)?;
    floor.finish()?;
    let cpu = cpu_s(libc::CLOCK_PROCESS_CPUTIME_ID) - cpu_start - floor.training_cpu_s;
    let duration_s = receipt.first.map_or(0.0, |first| {
        receipt.last.duration_since(first).as_secs_f64()
    });
    let per_second = |count: u64, seconds: f64| {
        if seconds > 0.0 {
            count as f64 / seconds
        } else {
            0.0
        }
    };
    let report = Report {
        listen: listen.to_string(),
        received: receipt.received,
        stored: floor.stored,
        not_requests: scanner.not_requests,
        commits: floor.commits,
        duration_s,
        rate: per_second(receipt.received, duration_s),
        wall_s: start.elapsed().as_secs_f64(),
        cpu_s: cpu,
        training_cpu_s: floor.training_cpu_s,
        cpu_us_per_stored_event: per_second(1_000_000, per_second(floor.stored, cpu)),
        stage_us_per_stored_event: floor.stages.per_event_us(floor.stored),
        db_bytes: std::fs::metadata(&db_path)?.len(),
        log_bytes: std::fs::metadata(&log_path)?.len(),
        rss_peak_kib: rss_peak_kib(),
        stopped_by: receipt.stopped_by,
    };
    drop(floor);
    for path in [&db_path, &log_path, &dir.join("db-lock")] {
        let _ = std::fs::remove_file(path);
    }
    if plan.dir.is_none() {
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(report)
}

fn main() -> Result<()> {
    let plan = parse_args()?;
    let report = run(&plan)?;
    if plan.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "ingest_floor on {}: received {}, stored {} in {} commits, {:.0}/s; cpu {:.3} s \
             ({:.2} us per stored event; dictionary training {:.3} s apart), db {} B, log {} B; \
             us per stored event by stage: {:?}",
            report.listen,
            report.received,
            report.stored,
            report.commits,
            report.rate,
            report.cpu_s,
            report.cpu_us_per_stored_event,
            report.training_cpu_s,
            report.db_bytes,
            report.log_bytes,
            report.stage_us_per_stored_event
        );
    }
    Ok(())
}
