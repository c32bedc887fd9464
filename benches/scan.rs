//! The SIP scanner and the reply builder on `tests/corpus/valid`, next to a full SIP parser
//! (`rsip`) on the same messages so the ratio is visible (performance.md).
//!
//! IDs: `sip_scanner/scan/<file>` (the scan alone), `sip_scanner/scan_fields/<file>` (scan plus
//! the event fields: called number and user agent), `sip_scanner/rsip/<file>` (rsip's
//! `SipMessage::try_from`), `sip_reply/build/<file>`. Each result is checked once before timing.
//!
//! On a shared, loaded machine criterion's means move by 2x between runs. With
//! `SIP_BENCH_PAIRED=1` the binary instead times scan and rsip in alternating rounds and prints
//! the fastest round of each (the one least disturbed by other processes) as a Markdown table.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};

use sentrypeer::config::limits::REPLY_BYTES_MAX;
use sentrypeer::sip::{build_reply, scan};

/// `(file stem, bytes)` of every `tests/corpus/valid/*.sip`, sorted by name.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/valid");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&folder)
        .expect("tests/corpus/valid is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "sip"))
        .map(|path| {
            let stem = path
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).expect("corpus file is readable");
            (stem, bytes)
        })
        .collect();
    files.sort();
    files
}

fn bench_scanner(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("sip_scanner");
    let mut scratch = Vec::with_capacity(1024);
    for (name, bytes) in corpus() {
        let bytes = bytes.as_slice();
        let request = scan(bytes).unwrap_or_else(|error| panic!("{name}: {error:?}"));
        assert!(!request.method.is_empty(), "{name}");
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("scan/{name}"), |bencher| {
            bencher.iter(|| scan(black_box(bytes)));
        });
        group.bench_function(format!("scan_fields/{name}"), |bencher| {
            bencher.iter(|| {
                let request = scan(black_box(bytes)).ok()?;
                let called_bytes = request.called_number(&mut scratch).map_or(0, <[u8]>::len);
                Some(
                    called_bytes
                        + request
                            .user_agent_value(&mut scratch)
                            .map_or(0, <[u8]>::len),
                )
            });
        });
        match rsip::SipMessage::try_from(bytes) {
            Ok(message) => {
                assert!(message.is_request(), "{name}: rsip did not see a request");
                group.bench_function(format!("rsip/{name}"), |bencher| {
                    bencher.iter(|| rsip::SipMessage::try_from(black_box(bytes)));
                });
            }
            Err(error) => {
                eprintln!("sip_scanner/rsip/{name}: skipped, rsip cannot parse it: {error}")
            }
        }
    }
    group.finish();
}

fn bench_reply(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("sip_reply");
    let mut out = Vec::with_capacity(REPLY_BYTES_MAX);
    let server = b"FPBX-16.0.33(18.13.0)";
    for (name, bytes) in corpus() {
        let Ok(request) = scan(&bytes) else { continue };
        let Some(reply) = build_reply(&request, server, b"as7f3c", &mut out) else {
            continue;
        };
        assert!(
            out.starts_with(b"SIP/2.0 200 OK\r\n") && reply.len == out.len(),
            "{name}"
        );
        group.throughput(Throughput::Bytes(reply.len as u64));
        group.bench_function(format!("build/{name}"), |bencher| {
            bencher.iter(|| build_reply(black_box(&request), server, b"as7f3c", &mut out));
        });
    }
    group.finish();
}

/// Nanoseconds per call of `routine`: the fastest of `rounds` rounds of `calls` calls.
fn fastest_round_ns(rounds: u32, calls: u32, mut routine: impl FnMut()) -> f64 {
    let mut fastest = Duration::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..calls {
            routine();
        }
        fastest = fastest.min(start.elapsed());
    }
    fastest.as_nanos() as f64 / f64::from(calls)
}

/// Scan, scan plus fields, rsip and reply, in alternating rounds per file; prints a table.
fn paired() {
    println!("| message | bytes | scan ns | scan+fields ns | rsip ns | rsip / scan | reply ns |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut scratch = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(REPLY_BYTES_MAX);
    for (name, bytes) in corpus() {
        let bytes = bytes.as_slice();
        let request = scan(bytes).unwrap_or_else(|error| panic!("{name}: {error:?}"));
        let rsip_ok = rsip::SipMessage::try_from(bytes).is_ok();
        let (mut scan_ns, mut fields_ns, mut rsip_ns, mut reply_ns) =
            (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..20 {
            scan_ns = scan_ns.min(fastest_round_ns(10, 2_000, || {
                let _ = black_box(scan(black_box(bytes)));
            }));
            fields_ns = fields_ns.min(fastest_round_ns(10, 2_000, || {
                if let Ok(request) = scan(black_box(bytes)) {
                    black_box(request.called_number(&mut scratch));
                    black_box(request.user_agent_value(&mut scratch));
                }
            }));
            if rsip_ok {
                rsip_ns = rsip_ns.min(fastest_round_ns(10, 100, || {
                    let _ = black_box(rsip::SipMessage::try_from(black_box(bytes)));
                }));
            }
            reply_ns = reply_ns.min(fastest_round_ns(10, 2_000, || {
                let _ = black_box(build_reply(
                    black_box(&request),
                    b"FPBX-16.0.33(18.13.0)",
                    b"as7f3c",
                    &mut out,
                ));
            }));
        }
        let (rsip_cell, ratio_cell) = if rsip_ok {
            (
                format!("{rsip_ns:.0}"),
                format!("{:.1}x", rsip_ns / scan_ns),
            )
        } else {
            ("parse error".to_owned(), "-".to_owned())
        };
        println!(
            "| {name} | {} | {scan_ns:.0} | {fields_ns:.0} | {rsip_cell} | {ratio_cell} | {reply_ns:.0} |",
            bytes.len()
        );
    }
}

criterion_group!(benches, bench_scanner, bench_reply);

fn main() {
    if std::env::var_os("SIP_BENCH_PAIRED").is_some() {
        paired();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
