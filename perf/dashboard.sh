#!/usr/bin/env bash
# The dashboard under load (performance.md: first load under 300 ms, each endpoint p99 under
# 10 ms on a 1M-event store while a UDP flood runs).
#
#   perf/dashboard.sh [--rate N] [--flood-seconds S] [--events N] [--no-build] [--out FILE]
#
#  1. `fill_store --fill-only` (examples/fill_store.rs) fills a tempdir store with EVENTS events
#     (100k IPs, 100k numbers) through the public writer API, which also writes the dashboard's
#     buckets. The fill's events are stamped within the last EVENTS microseconds, so they all land
#     in the current minute, hour and day buckets.
#  2. The perf-profile binary serves it: `sentrypeer -f DB -a --api-listen 127.0.0.1:PA
#     --sip-listen 127.0.0.1:PS -z 127.0.0.1:PT -j -l LOG`, from the tempdir.
#  3. `sentrypeer-loadgen udp --rate RATE --duration FLOOD_SECONDS --sources 127.0.0.0/16` floods
#     it with the default mix (new numbers and user agents keep arriving in the minute buckets).
#  4. WARMUP_SECONDS into the flood, perf/dashboard.py times the first load (20 runs) and each
#     dashboard endpoint (REQUESTS GETs each, every window), see its docstring.
#  5. The flood ends by itself; its JSON report and the store counts go into the results.
# Writes perf/results/<date>-dashboard.json. Loopback only; every step bounded; the EXIT trap
# stops the sensor and the loadgen and removes the tempdir.
# Environment (the flags win): EVENTS (1000000), INGEST_RATE (50000), FLOOD_SECONDS (40),
# WARMUP_SECONDS (3), REQUESTS (300), NO_BUILD (1: skip cargo build), OUT.
set -euo pipefail

cd "$(dirname "$0")/.."
events=${EVENTS:-1000000}
rate=${INGEST_RATE:-50000}
flood_seconds=${FLOOD_SECONDS:-40}
warmup_seconds=${WARMUP_SECONDS:-3}
requests=${REQUESTS:-300}
no_build=${NO_BUILD:-0}
out=${OUT:-"perf/results/$(date -u +%Y-%m-%d)-dashboard.json"}
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) rate=${2:?--rate N}; shift 2 ;;
        --flood-seconds) flood_seconds=${2:?--flood-seconds S}; shift 2 ;;
        --events) events=${2:?--events N}; shift 2 ;;
        --no-build) no_build=1; shift ;;
        --out) out=${2:?--out FILE}; shift 2 ;;
        *) sed -n '5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
tmp=$(mktemp -d)
sensor_pid=
loadgen_pid=
stop() { # PID: SIGTERM, wait up to 10 s, then SIGKILL
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    if [ -n "$loadgen_pid" ]; then stop "$loadgen_pid"; fi
    if [ -n "$sensor_pid" ]; then stop "$sensor_pid"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

if [ "$no_build" != 1 ]; then
    cargo build --profile perf -q -p sentrypeer -p sentrypeer-loadgen --no-default-features \
        --bin sentrypeer --bin sentrypeer-loadgen --example fill_store
fi
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
sentrypeer=$target/perf/sentrypeer
db=$tmp/sentrypeer.db
read -r api_port sip_port tls_port < <(python3 - <<'PY'
import socket
ports = []
while len(ports) < 3:
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        if port not in ports:
            ports.append(port)
print(*ports)
PY
)

timeout 300 "$target/perf/examples/fill_store" --db "$db" --events "$events" --ips 100000 \
    --numbers 100000 --fill-only
(cd "$tmp" && exec "$sentrypeer" -f "$db" -a --api-listen "127.0.0.1:$api_port" \
    --sip-listen "127.0.0.1:$sip_port" -z "127.0.0.1:$tls_port" -j -l "$tmp/json.log") \
    >"$tmp/sensor.log" 2>&1 &
sensor_pid=$!
for _ in $(seq 1 200); do
    curl -fsS --noproxy '*' --max-time 1 "http://127.0.0.1:$api_port/health-check" \
        >/dev/null 2>&1 && break
    kill -0 "$sensor_pid" 2>/dev/null || { cat "$tmp/sensor.log" >&2; exit 1; }
    sleep 0.1
done
stored_before=$(timeout 60 "$sentrypeer" stats -f "$db" | awk '$1 == "events:" { print $2 }')

"$target/perf/sentrypeer-loadgen" udp --target "127.0.0.1:$sip_port" --rate "$rate" \
    --duration "$flood_seconds" --sources 127.0.0.0/16 --seed 1 --json \
    >"$tmp/loadgen.json" 2>"$tmp/loadgen.err" &
loadgen_pid=$!
sleep "$warmup_seconds"
timeout 300 python3 perf/dashboard.py --api "127.0.0.1:$api_port" --out "$tmp/timing.json" \
    --requests "$requests"
flood_covered=false
kill -0 "$loadgen_pid" 2>/dev/null && flood_covered=true
for _ in $(seq 1 $(((flood_seconds + 30) * 10))); do
    kill -0 "$loadgen_pid" 2>/dev/null || break
    sleep 0.1
done
stop "$loadgen_pid"
loadgen_pid=
sleep 2
stored_after=$(timeout 60 "$sentrypeer" stats -f "$db" | awk '$1 == "events:" { print $2 }')
stop "$sensor_pid"
sensor_pid=

TMP_DIR=$tmp OUT_FILE=$out EVENTS_FILLED=$events RATE=$rate FLOOD_SECONDS=$flood_seconds \
    STORED_BEFORE=$stored_before STORED_AFTER=$stored_after FLOOD_COVERED=$flood_covered \
    python3 - <<'PY'
import json, os, platform, subprocess
env = os.environ
with open(f"{env['TMP_DIR']}/timing.json") as handle:
    result = json.load(handle)
try:
    with open(f"{env['TMP_DIR']}/loadgen.json") as handle:
        loadgen = json.load(handle)
except (OSError, ValueError):
    loadgen = None
result.update({
    "date": subprocess.run(["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"], capture_output=True,
                           text=True).stdout.strip(),
    "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip(),
    "kernel": platform.release(),
    "cpus": os.cpu_count(),
    "store": {"events_filled": int(env["EVENTS_FILLED"]),
              "events_before_flood": int(env["STORED_BEFORE"] or 0),
              "events_after_flood": int(env["STORED_AFTER"] or 0)},
    "flood": {"rate": int(env["RATE"]), "seconds": int(env["FLOOD_SECONDS"]),
              "covered_timing": env["FLOOD_COVERED"] == "true", "loadgen": loadgen},
})
with open(env["OUT_FILE"], "w") as handle:
    json.dump(result, handle, indent=2)
print(env["OUT_FILE"], json.dumps(result["bars"]))
PY
