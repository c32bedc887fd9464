//! API list benchmarks: the full `/ip-addresses` and `/numbers` bodies of a store with 100k
//! source IPs and 100k called numbers (every tenth IP IPv6, like `perf/api.sh`'s fill), split
//! into the store's part (one read transaction: scan, sort, build the page) and the rendering
//! of the JSON body, and both together as the API's blocking task runs them.
//!
//! Run: `cargo bench -p sentrypeer --bench api_list`. `API_BENCH_ENTRIES=N` changes the number
//! of IPs and numbers (default 100000). Results: `docs/benchmarks.md`, section "API".

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use sentrypeer::api::render;
use sentrypeer::config::{OutputConfig, StoreConfig};
use sentrypeer::store::{Store, spawn_writer};

#[path = "../examples/support/fill_events.rs"]
mod fill_events;

const NO_OUTPUTS: OutputConfig = OutputConfig {
    json_log_file: None,
    syslog: false,
    syslog_socket: std::path::PathBuf::new(),
    verified_only: false,
};

/// `entries` events, each from its own IP to its own number, one microsecond apart
/// ([`fill_events::event`], as `perf/api.sh`'s fill).
fn fill(store: &Store, config: &StoreConfig, entries: u64) {
    let (sender, receiver) = crossbeam_channel::bounded(65_536);
    let writer = spawn_writer(store.clone(), receiver, &NO_OUTPUTS, config)
        .unwrap_or_else(|failure| panic!("writer: {failure}"));
    for index in 0..entries {
        let event = fill_events::event(
            index,
            entries,
            entries,
            1_764_000_000_000_000_000 + index * 1_000,
        );
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
