//! Store benchmarks: writer commit throughput for batches of 1,000 and 4,096 typical scanner
//! events (with and without fsync), the event codec, the dashboard's counting of a flood's batch,
//! and (printed once, not timed by criterion) the database bytes per event after 100k realistic
//! events.
//!
//! Run: `cargo bench -p sentrypeer --bench store_commit`; `STORE_BENCH_SIZE_EVENTS=N` changes the
//! size report's event count (0 skips it); `STORE_BENCH_EXPLORE=1` prints the zstd level and
//! dictionary size grid, and a match-table size and dictionary-attach grid at level 1, instead.
//! Results: `docs/benchmarks.md`, section "Store".

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use sentrypeer::config::{OutputConfig, StoreConfig};
use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
use sentrypeer::store::{Store, codec, spawn_writer};
use uuid::Uuid;

const AGENTS: [&str; 6] = [
    "friendly-scanner",
    "sipvicious",
    "sipcli/v1.8",
    "VaxSIPUserAgent/3.1",
    "PolycomSoundPointIP-SPIP_550-UA/3.3.2.0413",
    "Z 5.4.12 v2.10.17.4",
];

/// A small deterministic generator of realistic scanner traffic.
struct Traffic {
    state: u64,
    node_id: Uuid,
    /// Distinct source IPs and called numbers: a scanner sends many requests (perf.md's API
    /// load has 10 events per IP and per number).
    sources: u64,
}

impl Traffic {
    fn new(seed: u64) -> Self {
        Self {
            state: seed | 1,
            node_id: Uuid::from_u128(0x5e47_1e9e),
            sources: 10_000,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn event(&mut self) -> Event {
        let r = self.next_u64();
        let who = mix(r % self.sources);
        let source: SocketAddr = format!(
            "{}.{}.{}.{}:{}",
            45 + who % 150,
            (who >> 8) % 256,
            (who >> 16) % 64,
            (who >> 24) % 256,
            5060 + (r >> 32) % 1000
        )
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([10, 0, 0, 1], 5060)));
        let agent = AGENTS[(who >> 40) as usize % AGENTS.len()];
        let dialled = mix(r.rotate_left(17) % self.sources);
        let prefix = ["00", "011", "+", "9"][(dialled >> 44) as usize % 4];
        let number = format!("{prefix}{}", dialled % 1_000_000_007);
        let call_id = format!("{:016x}{:016x}", self.next_u64(), self.next_u64());
        let branch = format!("z9hG4bK-{:x}", self.next_u64());
        let tag = format!("{:08x}", self.next_u64() as u32);
        let kind = (r >> 50) % 20;
        let (method, message) = if kind < 12 {
            (
                "OPTIONS",
                options(&number, agent, &call_id, &branch, &tag, source),
            )
        } else if kind < 17 {
            (
                "REGISTER",
                register(&number, agent, &call_id, &branch, &tag, source),
            )
        } else {
            (
                "INVITE",
                invite(&number, agent, &call_id, &branch, &tag, source),
            )
        };
        Event::new(&EventParts {
            timestamp_ns: 1_764_000_000_000_000_000 + (self.next_u64() % 1_000_000_000_000),
            uuid: Uuid::new_v4(),
            node_id: self.node_id,
            transport: Transport::Udp,
            collected_method: CollectedMethod::Passive,
            source,
            destination: SocketAddr::from(([192, 0, 2, 10], 5060)),
            method: method.as_bytes(),
            called_number: Some(number.as_bytes()),
            user_agent: Some(agent.as_bytes()),
            message: message.as_bytes(),
            source_verified: false,
            auth_username: None,
        })
    }
}

/// A fixed bijective scramble (splitmix64's finaliser): pool index -> varied bits.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn options(n: &str, agent: &str, call: &str, branch: &str, tag: &str, src: SocketAddr) -> String {
    format!(
        "OPTIONS sip:{n}@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch={branch};rport\r\n\
         From: \"{agent}\"<sip:100@192.0.2.10>;tag={tag}\r\nTo: \"{agent}\"<sip:{n}@192.0.2.10>\r\n\
         Call-ID: {call}\r\nCSeq: 1 OPTIONS\r\nContact: <sip:100@{src}>\r\nMax-Forwards: 70\r\n\
         User-Agent: {agent}\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n"
    )
}

fn register(n: &str, agent: &str, call: &str, branch: &str, tag: &str, src: SocketAddr) -> String {
    format!(
        "REGISTER sip:192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{n}@192.0.2.10>;tag={tag}\r\nTo: <sip:{n}@192.0.2.10>\r\n\
         Call-ID: {call}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{n}@{src};transport=udp>\r\n\
         Expires: 3600\r\nAllow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
         User-Agent: {agent}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn invite(n: &str, agent: &str, call: &str, branch: &str, tag: &str, src: SocketAddr) -> String {
    let sdp = format!(
        "v=0\r\no=- 3850163124 3850163124 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio 10000 RTP/AVP 0 8 18 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n",
        ip = src.ip()
    );
    format!(
        "INVITE sip:{n}@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"{agent}\"<sip:100@192.0.2.10>;tag={tag}\r\nTo: <sip:{n}@192.0.2.10>\r\n\
         Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{src}>\r\nUser-Agent: {agent}\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn store_config(dir: &std::path::Path, batch: usize, no_sync: bool) -> StoreConfig {
    StoreConfig {
        db_file: dir.join("bench.db"),
        batch_events_max: batch,
        batch_interval: Duration::from_secs(1),
        no_sync,
        retention_days: None,
    }
}

const NO_OUTPUTS: OutputConfig = OutputConfig {
    json_log_file: None,
    syslog: false,
    syslog_socket: std::path::PathBuf::new(),
    verified_only: false,
};

fn bench_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_commit");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    for batch in [1_000usize, 4_096] {
        for no_sync in [false, true] {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
            let config = store_config(dir.path(), batch, no_sync);
            let store = Store::open(&config).unwrap_or_else(|e| panic!("open: {e}"));
            let (sender, receiver) = crossbeam_channel::unbounded();
            let writer = spawn_writer(store.clone(), receiver, &NO_OUTPUTS, &config)
                .unwrap_or_else(|e| panic!("writer: {e}"));
            let commits = writer.commits();
            let mut traffic = Traffic::new(batch as u64 + u64::from(no_sync));
            traffic.node_id = store.node_id();
            // Warm up past the dictionary training (first 1,000 events).
            for _ in 0..2 {
                for _ in 0..1_000 {
                    let _ = sender.send(traffic.event());
                }
            }
            let target = commits.last_key() + 2_000;
            while commits.wait_past(target - 1, Duration::from_secs(10)) < target {}
            group.throughput(Throughput::Elements(batch as u64));
            let sync = if no_sync { "nosync" } else { "fsync" };
            group.bench_function(format!("batch_{batch}/{sync}"), |b| {
                b.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        let events: Vec<Event> = (0..batch).map(|_| traffic.event()).collect();
                        let target = commits.last_key() + batch as u64;
                        let started = Instant::now();
                        for event in events {
                            let _ = sender.send(event);
                        }
                        while commits.wait_past(target - 1, Duration::from_secs(10)) < target {}
                        total += started.elapsed();
                    }
                    total
                });
            });
            drop(sender);
            writer.join();
        }
    }
    for no_sync in [false, true] {
        bench_bare_lmdb(&mut group, 1_000, no_sync);
    }
    group.finish();
}

/// The dashboard's pure part for one 4,096-event batch within one minute from 100,000 distinct
/// sources and numbers (the ingest flood's shape): counting, the roll-up into capped per-bucket
/// deltas, and merging those into stored values.
fn bench_dashboard(c: &mut Criterion) {
    use sentrypeer::store::dashboard::{BatchCounts, Horizon, merge_value};
    let mut group = c.benchmark_group("dashboard");
    group.sample_size(20);
    let mut traffic = Traffic::new(7);
    traffic.sources = 100_000;
    let minute_ns = 1_764_000_000_000_000_000 / 60_000_000_000 * 60_000_000_000;
    let events: Vec<Event> = (0..4_096)
        .map(|i| {
            let mut event = traffic.event();
            event.timestamp_ns = minute_ns + i * 10_000_000;
            event
        })
        .collect();
    let horizon = Horizon::from_ns(minute_ns + 50_000_000_000, None);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("add_4096", |b| {
        b.iter(|| {
            let mut counts = BatchCounts::for_batch(events.len());
            for event in &events {
                counts.add(event);
            }
            black_box(counts);
        });
    });
    group.bench_function("add_roll_up_4096", |b| {
        b.iter(|| {
            let mut counts = BatchCounts::for_batch(events.len());
            for event in &events {
                counts.add(event);
            }
            black_box(counts.roll_up(&horizon));
        });
    });
    let mut stored = Vec::new();
    let mut counts = BatchCounts::for_batch(events.len());
    for event in &events {
        counts.add(event);
    }
    let deltas = counts.roll_up(&horizon);
    let olds: Vec<Vec<Vec<u8>>> = deltas
        .iter()
        .map(|d| {
            d.dimensions
                .iter()
                .map(|delta| {
                    merge_value(None, delta.clone(), &mut stored);
                    stored.clone()
                })
                .collect()
        })
        .collect();
    group.bench_function("merge_values_4096", |b| {
        b.iter(|| {
            for (delta, old) in deltas.iter().zip(&olds) {
                for (dimension, old) in delta.dimensions.iter().zip(old) {
                    black_box(merge_value(Some(old), dimension.clone(), &mut stored));
                }
            }
        });
    });
    group.finish();
}

/// The reference in the same run: bare heed puts of 1,000 sequential 200-byte records per write
/// transaction (performance.md's "LMDB ~485k records/s at 1,000/txn with fsync").
fn bench_bare_lmdb(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    batch: usize,
    no_sync: bool,
) {
    use heed::types::Bytes;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut builder = heed::EnvOpenOptions::new();
    builder.map_size(1 << 32).max_dbs(1);
    let mut flags = heed::EnvFlags::NO_SUB_DIR;
    if no_sync {
        flags |= heed::EnvFlags::NO_SYNC;
    }
    // SAFETY: a fresh file in a tempdir that nothing else opens.
    let env = unsafe { builder.flags(flags).open(dir.path().join("bare.db")) }
        .unwrap_or_else(|e| panic!("open: {e}"));
    let txn = env.write_txn().unwrap_or_else(|e| panic!("txn: {e}"));
    let created = env.create_databases_and_commit(txn, |opener, txn| {
        let db = opener.create_database::<Bytes, Bytes>(txn, Some("bare"))?;
        Ok::<_, heed::Error>(heed::CommitOrAbort::<_, ()>::Commit(db))
    });
    let Ok(heed::CommitOrAbort::Commit(db)) = created else {
        panic!("create")
    };
    let value = [0x5au8; 200];
    let mut key: u64 = 0;
    group.throughput(Throughput::Elements(batch as u64));
    let sync = if no_sync { "nosync" } else { "fsync" };
    group.bench_function(format!("lmdb_bare_{batch}/{sync}"), |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                if key >= 1_000_000 {
                    // Keep the file bounded (untimed): start over.
                    let mut txn = env.write_txn().unwrap_or_else(|e| panic!("txn: {e}"));
                    db.clear(&mut txn).unwrap_or_else(|e| panic!("clear: {e}"));
                    txn.commit().unwrap_or_else(|e| panic!("commit: {e}"));
                    key = 0;
                }
                let started = Instant::now();
                let mut txn = env.write_txn().unwrap_or_else(|e| panic!("txn: {e}"));
                for _ in 0..batch {
                    key += 1;
                    db.put_with_flags(&mut txn, heed::PutFlags::APPEND, &key.to_be_bytes(), &value)
                        .unwrap_or_else(|e| panic!("put: {e}"));
                }
                txn.commit().unwrap_or_else(|e| panic!("commit: {e}"));
                total += started.elapsed();
            }
            total
        })
    });
}

fn bench_codec(c: &mut Criterion) {
    let mut traffic = Traffic::new(99);
    let samples: Vec<Vec<u8>> = (0..1_000)
        .map(|_| codec::dictionary_sample(&traffic.event()))
        .collect();
    let dictionary =
        codec::train_dictionary(&samples, 16 * 1024).unwrap_or_else(|e| panic!("train: {e}"));
    let prepared =
        zstd::zstd_safe::DDict::try_create(&dictionary).unwrap_or_else(|| panic!("dictionary"));
    let mut packer =
        codec::Packer::with_dictionary(1, &dictionary).unwrap_or_else(|e| panic!("packer: {e}"));
    packer.set_local_node(Some(traffic.node_id));
    let mut unpacker = codec::Unpacker::new();
    let context = codec::Context {
        local_node: Some(traffic.node_id),
        dictionary: Some((1, &prepared)),
    };
    let event = traffic.event();
    let mut encoded = Vec::new();
    packer
        .encode(&event, &mut encoded)
        .unwrap_or_else(|e| panic!("encode: {e}"));
    let decoded = codec::decode_with(&encoded, &context, &mut unpacker);
    assert_eq!(decoded.as_ref().ok(), Some(&event));
    let mut raw = Vec::new();
    codec::encode(&event, &mut raw);

    let mut group = c.benchmark_group("store_codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode/raw", |b| {
        b.iter_batched_ref(
            Vec::new,
            |out| codec::encode(black_box(&event), out),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("encode/zstd_dictionary", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            out.clear();
            packer.encode(black_box(&event), &mut out)
        })
    });
    group.bench_function("decode/raw", |b| b.iter(|| codec::decode(black_box(&raw))));
    group.bench_function("decode/zstd_dictionary", |b| {
        b.iter(|| codec::decode_with(black_box(&encoded), &context, &mut unpacker))
    });
    group.finish();
    println!(
        "store_codec: typical {} event, message {} bytes: raw record {} bytes, zstd+dictionary {} bytes",
        event.method_text(),
        event.message().len(),
        raw.len(),
        encoded.len()
    );
}

/// Inserts `STORE_BENCH_SIZE_EVENTS` (default 100k) realistic events and prints the database
/// bytes per event and the sustained ingest rate (batches of 4,096, no fsync).
fn report_size() {
    let count: usize = std::env::var("STORE_BENCH_SIZE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if count == 0 {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let config = store_config(dir.path(), 4_096, true);
    let store = Store::open(&config).unwrap_or_else(|e| panic!("open: {e}"));
    let (sender, receiver) = crossbeam_channel::bounded(65_536);
    let writer = spawn_writer(store.clone(), receiver, &NO_OUTPUTS, &config)
        .unwrap_or_else(|e| panic!("writer: {e}"));
    let mut traffic = Traffic::new(7);
    traffic.sources = (count as u64 / 10).max(1);
    // The sensor's own events (as in production: peers' events are the exception).
    traffic.node_id = store.node_id();
    let events: Vec<Event> = (0..count).map(|_| traffic.event()).collect();
    let message_bytes: usize = events.iter().map(|e| e.message().len()).sum();
    let started = Instant::now();
    for event in events {
        let _ = sender.send(event);
    }
    drop(sender);
    writer.join();
    let elapsed = started.elapsed();
    let file_bytes = std::fs::metadata(&config.db_file)
        .map(|m| m.len())
        .unwrap_or(0);
    let totals = store.read().and_then(|r| r.totals()).unwrap_or_default();
    println!(
        "store_size: {count} events ({} source IPs, {} numbers), mean message {} bytes: \
         file {file_bytes} bytes = {:.0} bytes/event; ingest {:.0} events/s (4,096/txn, no fsync)",
        totals.source_ips,
        totals.called_numbers,
        message_bytes / count.max(1),
        file_bytes as f64 / count.max(1) as f64,
        count as f64 / elapsed.as_secs_f64()
    );
    drop(store);
    print_tables(&config.db_file, count);
}

/// Pages per table (opened directly with heed once the store is closed).
fn print_tables(path: &std::path::Path, count: usize) {
    use heed::types::Bytes;
    let names: Vec<&str> = sentrypeer::store::table_names().collect();
    let mut builder = heed::EnvOpenOptions::new();
    builder.max_dbs(names.len() as u32);
    // SAFETY: the store is closed; only this function has the file open.
    let Ok(env) = (unsafe { builder.flags(heed::EnvFlags::NO_SUB_DIR).open(path) }) else {
        return;
    };
    // (name, entries, pages, bytes) per table, read while the tables are open.
    let mut rows: Vec<(&str, usize, usize, usize)> = Vec::with_capacity(names.len());
    let mut undictionaried = 0;
    let Ok(txn) = env.read_txn() else { return };
    let read = env.open_databases_and_commit(txn, |opener, txn| {
        for &name in &names {
            let Some(db) = opener.open_database::<Bytes, Bytes>(txn, Some(name))? else {
                continue;
            };
            let stat = db.stat(txn)?;
            if name == "events" {
                undictionaried = count_without_dictionary(&db, txn)?;
            }
            let pages = stat.branch_pages + stat.leaf_pages + stat.overflow_pages;
            rows.push((name, stat.entries, pages, pages * stat.page_size as usize));
        }
        Ok::<_, heed::Error>(heed::CommitOrAbort::<(), ()>::Commit(()))
    });
    if read.is_err() {
        return;
    }
    println!("store_size:   events stored before the dictionary arrived: {undictionaried}");
    let mut total = 0;
    for (name, entries, pages, bytes) in rows {
        total += bytes;
        println!(
            "store_size:   {name}: {entries} entries, {pages} pages, {:.1} bytes/event",
            bytes as f64 / count.max(1) as f64
        );
    }
    println!(
        "store_size:   tables total {:.1} bytes/event",
        total as f64 / count.max(1) as f64
    );
    let file_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    println!(
        "store_size:   rest of the file (free pages kept for readers, LMDB meta pages) {:.1} bytes/event",
        file_bytes.saturating_sub(total as u64) as f64 / count.max(1) as f64
    );
}

/// Event records that name no dictionary (`codec::decode_header`).
fn count_without_dictionary(
    db: &heed::Database<'_, heed::types::Bytes, heed::types::Bytes>,
    txn: &heed::RoTxn<'_, heed::WithTls>,
) -> Result<usize, heed::Error> {
    let mut count = 0;
    for entry in db.iter(txn)? {
        let (_, record) = entry?;
        if codec::decode_header(record).map_or(true, |header| header.dictionary_id.is_none()) {
            count += 1;
        }
    }
    Ok(count)
}

fn main() {
    if std::env::var_os("STORE_BENCH_EXPLORE").is_some() {
        explore();
        return;
    }
    report_size();
    let mut criterion = Criterion::default().configure_from_args();
    bench_codec(&mut criterion);
    bench_dashboard(&mut criterion);
    bench_commit(&mut criterion);
    criterion.final_summary();
}

/// `STORE_BENCH_EXPLORE=1`: compressed tail size and time per zstd level and dictionary size.
fn explore() {
    let mut traffic = Traffic::new(5);
    traffic.sources = 10_000;
    let train: Vec<Vec<u8>> = (0..1_000)
        .map(|_| codec::dictionary_sample(&traffic.event()))
        .collect();
    let test: Vec<Vec<u8>> = (0..2_000)
        .map(|_| codec::dictionary_sample(&traffic.event()))
        .collect();
    let raw: usize = test.iter().map(Vec::len).sum();
    println!("explore: mean tail {} bytes", raw / test.len());
    for dict_size in [16 * 1024, 64 * 1024] {
        let dictionary = codec::train_dictionary(&train, dict_size).unwrap();
        for level in [-5, -1, 1, 3, 9] {
            let mut cctx = explore_context(level);
            cctx.load_dictionary(&dictionary).unwrap();
            let (bytes, us) = time_tails(&test, |out, sample| cctx.compress2(out, sample));
            println!(
                "explore: dict {dict_size} level {level}: {bytes} bytes/tail, {us:.1} us/tail"
            );
            let cdict = zstd::zstd_safe::CDict::create(&dictionary, level);
            let (bytes, us) = time_tails(&test, |out, sample| {
                cctx.compress_using_cdict(out, sample, &cdict)
            });
            println!(
                "explore: cdict {dict_size} level {level}: {bytes} bytes/tail, {us:.1} us/tail"
            );
        }
    }
    explore_tables(&train, &test);
    explore_training(&train, &test);
}

/// How long the dictionary's training takes, and what it saves, per number of samples.
fn explore_training(train: &[Vec<u8>], test: &[Vec<u8>]) {
    let mut cctx = explore_context(1);
    let (bytes, us) = time_tails(test, |out, sample| cctx.compress2(out, sample));
    println!("explore: no dictionary level 1: {bytes} bytes/tail, {us:.1} us/tail");
    for samples in [50, 100, 250, 500, 1_000] {
        let started = Instant::now();
        let dictionary =
            codec::train_dictionary(&train[..samples.min(train.len())], 16 * 1024).unwrap();
        let trained_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut cctx = explore_context(1);
        cctx.load_dictionary(&dictionary).unwrap();
        let (bytes, us) = time_tails(test, |out, sample| cctx.compress2(out, sample));
        println!(
            "explore: {samples} samples ({} bytes): trained in {trained_ms:.1} ms, dictionary {} bytes, level 1: {bytes} bytes/tail, {us:.1} us/tail",
            train[..samples.min(train.len())]
                .iter()
                .map(Vec::len)
                .sum::<usize>(),
            dictionary.len()
        );
    }
    // Long samples (four tails each, cut at the sample bound): the training's worst case.
    let long: Vec<Vec<u8>> = train
        .chunks(4)
        .cycle()
        .take(1_000)
        .map(|tails| {
            let mut sample = tails.concat();
            sample.truncate(sentrypeer::config::limits::STORE_DICTIONARY_SAMPLE_BYTES_MAX);
            sample
        })
        .collect();
    let started = Instant::now();
    let dictionary = codec::train_dictionary(&long, 16 * 1024).unwrap();
    println!(
        "explore: 1000 long samples ({} bytes): trained in {:.1} ms, dictionary {} bytes",
        long.iter().map(Vec::len).sum::<usize>(),
        started.elapsed().as_secs_f64() * 1e3,
        dictionary.len()
    );
}

/// Smaller match tables, and the dictionary attached or loaded into each frame's tables.
fn explore_tables(train: &[Vec<u8>], test: &[Vec<u8>]) {
    use zstd::zstd_safe::{CParameter, DictAttachPref};
    let dictionary = codec::train_dictionary(train, 16 * 1024).unwrap();
    for log in [0, 16, 14, 12, 10, 8] {
        for attach in [
            DictAttachPref::DefaultAttach,
            DictAttachPref::ForceAttach,
            DictAttachPref::ForceLoad,
        ] {
            let mut cctx = explore_context(1);
            if log > 0 {
                cctx.set_parameter(CParameter::HashLog(log)).unwrap();
                cctx.set_parameter(CParameter::ChainLog(log)).unwrap();
            }
            cctx.set_parameter(CParameter::ForceAttachDict(attach))
                .unwrap();
            cctx.load_dictionary(&dictionary).unwrap();
            let (bytes, us) = time_tails(test, |out, sample| cctx.compress2(out, sample));
            println!(
                "explore: dict 16384 level 1 hash/chain log {log} (0: default) {attach:?}: {bytes} bytes/tail, {us:.2} us/tail"
            );
        }
    }
}

/// A compression context at `level` with the store's frame settings that change the size.
fn explore_context(level: i32) -> zstd::zstd_safe::CCtx<'static> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .unwrap();
    cctx.set_parameter(CParameter::ContentSizeFlag(false))
        .unwrap();
    cctx.set_parameter(CParameter::DictIdFlag(false)).unwrap();
    cctx
}

/// Compresses every tail three times (the first pass builds the dictionary tables) and returns
/// the last pass's mean bytes and microseconds per tail.
fn time_tails(
    tails: &[Vec<u8>],
    mut compress: impl FnMut(&mut Vec<u8>, &[u8]) -> Result<usize, usize>,
) -> (usize, f64) {
    let (mut total, mut started) = (0, Instant::now());
    for _ in 0..3 {
        (total, started) = (0, Instant::now());
        for tail in tails {
            let mut out = Vec::with_capacity(2048);
            total += compress(&mut out, tail).unwrap();
        }
    }
    let count = tails.len().max(1);
    (
        total / count,
        started.elapsed().as_secs_f64() * 1e6 / count as f64,
    )
}
