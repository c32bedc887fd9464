#!/usr/bin/env bash
# API latency under load (performance.md §3): fill a tempdir store with 1,000,000 events from
# 100,000 source IPs and 100,000 called numbers through the public writer API
# (examples/fill_store.rs), start the API on it, keep a writer thread ingesting INGEST_RATE
# events/s (in-process, through the writer channel; not UDP), and time with one keep-alive client:
# 2000 look-ups each of /ip-addresses/{ip} and /numbers/{n}, 10 full /ip-addresses and /numbers
# (100k entries each), 3 nftables lists and 10 /events?limit=100.
# Writes perf/results/<date>-api.json (with git SHA, kernel, CPU, command). Bounded: 10 minutes.
#
# Environment: EVENTS (1000000), IPS (100000), NUMBERS (100000), INGEST_RATE (20000), OUT.
set -euo pipefail

cd "$(dirname "$0")/.."
events=${EVENTS:-1000000}
ips=${IPS:-100000}
numbers=${NUMBERS:-100000}
rate=${INGEST_RATE:-20000}
date=$(date -u +%Y-%m-%d)
out=${OUT:-"perf/results/$date-api.json"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cargo build --release -q --example fill_store
command=(target/release/examples/fill_store --db "$tmp/sentrypeer.db" --events "$events"
    --ips "$ips" --numbers "$numbers" --ingest-rate "$rate" --bench "$tmp/bench.json")
timeout 600 "${command[@]}"

python3 - "$tmp/bench.json" "$out" "${command[*]}" <<'PY'
import json, platform, subprocess, sys, datetime
bench = json.load(open(sys.argv[1]))
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
report = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "git_sha": sha,
    "kernel": platform.release(),
    "cpu": cpu,
    "cpus": len(__import__("os").sched_getaffinity(0)),
    "command": sys.argv[3].replace(sys.argv[1].rsplit("/", 1)[0], "$TMP"),
    **bench,
}
json.dump(report, open(sys.argv[2], "w"), indent=2)
print(json.dumps(report, indent=2))
PY
echo "wrote $out"
