//! API list benchmarks: the full `/ip-addresses` and `/numbers` bodies of a store with 100k
//! source IPs and 100k called numbers (every tenth IP IPv6, like `perf/api.sh`'s fill), split
//! into the store's part (one read transaction: scan, sort, build the page) and the rendering
//! of the JSON body, and both together as the API's blocking task runs them.
//!
//! Run: `cargo bench -p sentrypeer --bench api_list`. `API_BENCH_ENTRIES=N` changes the number
//! of IPs and numbers (default 100000). Results: `docs/benchmarks.md`, section "API".

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use criterion::{Criterion, Throughput};
use sentrypeer::api::render;
use sentrypeer::config::{OutputConfig, StoreConfig};
use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
use sentrypeer::store::{Store, spawn_writer};
use uuid::Uuid;

const NO_OUTPUTS: OutputConfig = OutputConfig {
    json_log_file: None,
    syslog: false,
    syslog_socket: std::path::PathBuf::new(),
    verified_only: false,
};

/// Source IP `index`: IPv4 10.x.y.z, every tenth one IPv6 (as `examples/fill_store.rs`).
fn source_ip(index: u64) -> IpAddr {
    if index % 10 == 9 {
        let [.., high, low] = (index as u32).to_be_bytes().map(u16::from);
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, high, low))
    } else {
        IpAddr::V4(Ipv4Addr::from(
            0x0a00_0000_u32 | (index as u32 & 0x00ff_ffff),
        ))
    }
}

/// `entries` events, each from its own IP to its own number, one microsecond apart.
fn fill(store: &Store, config: &StoreConfig, entries: u64) {
    let (sender, receiver) = crossbeam_channel::bounded(65_536);
    let writer = spawn_writer(store.clone(), receiver, &NO_OUTPUTS, config)
        .unwrap_or_else(|failure| panic!("writer: {failure}"));
    for index in 0..entries {
        let source = SocketAddr::new(source_ip(index), 5060);
        let called = format!("00{:08}", index.wrapping_mul(7919) % entries);
        let message = format!(
            "INVITE sip:{called}@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP {source};branch=z9hG4bK{index}\r\nCall-ID: {index}@scanner\r\n\r\n"
        );
        let event = Event::new(&EventParts {
            timestamp_ns: 1_764_000_000_000_000_000 + index * 1_000,
            uuid: Uuid::new_v4(),
            node_id: Uuid::from_u128(1),
            transport: Transport::Udp,
            collected_method: CollectedMethod::Passive,
            source,
            destination: SocketAddr::from(([192, 0, 2, 1], 5060)),
            method: b"INVITE",
            called_number: Some(called.as_bytes()),
            user_agent: Some(b"friendly-scanner"),
            message: message.as_bytes(),
            source_verified: false,
            auth_username: None,
        });
        if sender.send(event).is_err() {
            panic!("the writer stopped");
        }
    }
    drop(sender);
    writer.join();
}

fn main() {
    let entries: u64 = std::env::var("API_BENCH_ENTRIES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(100_000);
    let limit = usize::try_from(entries).unwrap_or(usize::MAX);
    let dir = tempfile::tempdir().unwrap_or_else(|failure| panic!("tempdir: {failure}"));
    let config = StoreConfig {
        db_file: dir.path().join("api.db"),
        batch_events_max: 4_096,
        batch_interval: Duration::from_millis(20),
        no_sync: true,
        retention_days: None,
    };
    let store = Store::open(&config).unwrap_or_else(|failure| panic!("store: {failure}"));
    fill(&store, &config, entries);

    let mut criterion = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    let mut group = criterion.benchmark_group("api_list");
    group.throughput(Throughput::Elements(entries));
    let ips = || {
        let reader = store
            .read()
            .unwrap_or_else(|failure| panic!("read: {failure}"));
        reader
            .source_ips(None, false, limit, None)
            .unwrap_or_else(|failure| panic!("list: {failure}"))
    };
    let numbers = || {
        let reader = store
            .read()
            .unwrap_or_else(|failure| panic!("read: {failure}"));
        reader
            .called_numbers(None, limit, None)
            .unwrap_or_else(|failure| panic!("list: {failure}"))
    };
    let ip_page = ips();
    let number_page = numbers();
    assert_eq!(ip_page.items.len(), limit);
    assert_eq!(number_page.items.len(), limit);
    group.bench_function("ip_addresses/store", |b| b.iter(|| black_box(ips())));
    group.bench_function("ip_addresses/render", |b| {
        b.iter(|| black_box(render::ip_list_json(entries, &ip_page.items, None)));
    });
    group.bench_function("ip_addresses/both", |b| {
        b.iter(|| black_box(render::ip_list_json(entries, &ips().items, None)));
    });
    group.bench_function("numbers/store", |b| b.iter(|| black_box(numbers())));
    group.bench_function("numbers/render", |b| {
        b.iter(|| black_box(render::number_list_json(entries, &number_page.items, None)));
    });
    group.bench_function("numbers/both", |b| {
        b.iter(|| black_box(render::number_list_json(entries, &numbers().items, None)));
    });
    group.finish();
    criterion.final_summary();
}
