//! The SIP scanner and the reply builder on `tests/corpus/valid`, next to a full SIP parser
//! (`rsip`) on the same messages so the ratio is visible (performance.md).
//!
//! IDs: `sip_scanner/scan/<file>` (the scan alone), `sip_scanner/scan_fields/<file>` (scan plus
//! the event fields: called number and user agent), `sip_scanner/rsip/<file>` (rsip's
//! `SipMessage::try_from`), `sip_reply/build/<file>`. Each result is checked once before timing.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

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

criterion_group!(benches, bench_scanner, bench_reply);
criterion_main!(benches);
