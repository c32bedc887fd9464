#!/usr/bin/env bash
# Per-thread CPU of the sensor per committed event, for A/B comparisons of builds.
#
#   perf/thread-cost.sh RATE SECONDS BINARY [BINARY ...]
#
# For each binary in turn (list one several times, alternated, for rounds): starts it in a fresh
# directory with perf/ingest.py's sensor flags (-j -l json.log -f db, the API and TLS on loopback
# ports), floods it with target/perf/sentrypeer-loadgen (perf/ingest.py's traffic: the
# options/register/invite mix from 127.0.0.0/16, 64 source sockets) at RATE/s for SECONDS, waits
# 1.5 s, reads the CPU time of every thread (/proc/PID/task/*/schedstat) and the metrics, and
# prints one line: sent, achieved rate, committed, app and kernel drops, RssAnon peak (sampled
# every 0.2 s), then each thread's CPU in us per committed event (the shard threads together as
# "sensor") and their sum. The results of record in perf/results/*-ab.txt before 2026-12-08 were
# taken with this script under /tmp/lp/ab.sh. Loopback only; the directory is removed.
set -euo pipefail
if [[ $# -lt 3 ]]; then
    sed -n '4p' "$0" >&2
    exit 2
fi
RATE=$1
SECONDS_ASKED=$2
shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOADGEN=${CARGO_TARGET_DIR:-$ROOT/target}/perf/sentrypeer-loadgen

one() {
    local binary dir sensor sender peak rss metrics
    binary=$(realpath "$1")
    dir=$(mktemp -d /tmp/thread-cost.XXXX)
    cd "$dir"
    "$binary" -j -l json.log -f db --sip-listen 127.0.0.1:25060 -a --api-listen 127.0.0.1:28082 \
        -z 127.0.0.1:25061 2>stderr.log &
    sensor=$!
    for _ in $(seq 100); do
        curl -sf 127.0.0.1:28082/health-check >/dev/null && break
        sleep 0.1
    done
    if ! curl -sf 127.0.0.1:28082/health-check >/dev/null; then
        echo "the sensor did not start; its stderr:" >&2
        cat stderr.log >&2
        kill "$sensor" 2>/dev/null || true
        rm -rf "$dir"
        exit 1
    fi
    snapshot > before.txt
    "$LOADGEN" udp --target 127.0.0.1:25060 --json --mix options,register,invite \
        --sources 127.0.0.0/16 --seed 1 --source-sockets 64 --rate "$RATE" \
        --duration "$SECONDS_ASKED" > loadgen.json &
    sender=$!
    peak=0
    while kill -0 "$sender" 2>/dev/null; do
        rss=$(awk '/RssAnon/{print $2}' "/proc/$sensor/status")
        ((rss > peak)) && peak=$rss
        sleep 0.2
    done
    sleep 1.5
    snapshot > after.txt
    metrics=$(curl -s 127.0.0.1:28082/metrics)
    kill -INT "$sensor"
    wait "$sensor" || true
    python3 - "$metrics" "$peak" <<'PY'
import collections, json, sys
metrics = {}
for line in sys.argv[1].splitlines():
    if line and not line.startswith("#"):
        name, _, value = line.rpartition(" ")
        metrics[name] = float(value)
committed = int(metrics["sentrypeer_writer_events_committed_total"])
def load(path):
    threads = collections.defaultdict(int)
    for line in open(path):
        name, cpu_ns = line.rsplit(" ", 1)
        threads["sensor" if name.startswith("sensor") else name] += int(cpu_ns)
    return threads
before, after = load("before.txt"), load("after.txt")
costs = {name: (after[name] - before[name]) / 1000 / committed for name in sorted(after)}
sender = json.load(open("loadgen.json"))
print(f"sent {sender['sent']} ach {round(sender['rate_achieved'])} committed {committed} "
      f"dropped {int(metrics['sentrypeer_events_dropped_total'])} "
      f"kdrops {int(metrics['sentrypeer_sip_udp_kernel_drops_total'])} "
      f"rssanon {int(sys.argv[2]) / 1024:.1f} MiB | "
      + " ".join(f"{name} {cost:.2f}" for name, cost in costs.items() if cost > 0.05)
      + f" | all {sum(costs.values()):.2f} us")
PY
    cd /
    rm -rf "$dir"
}

snapshot() {
    for task in /proc/"$sensor"/task/*; do
        echo "$(cat "$task/comm") $(cut -d' ' -f1 "$task/schedstat")"
    done
}

for binary in "$@"; do
    echo -n "$binary: "
    one "$binary"
done
