#!/usr/bin/env bash
# P2P at scale (issue 20): N = 10, 25, 50, 100 libp2p nodes with the production behaviour
# (src/p2p/behaviour.rs: gossipsub configuration, message id, validation, peer scoring, topic,
# noise + yamux, Kademlia discovery through one bootstrap node) in one process, EVENTS real wire
# messages published from random nodes at RATE per second. Per N: delivery ratio, propagation
# p50/p99, duplicates per message per receiver, bytes per event. See examples/p2p_scale.rs.
#
#   perf/p2p-scale.sh [--nodes "10 25 50 100"] [--events N] [--rate R] [--transport memory|tcp]
#                     [--no-build] [--out FILE]
#
# The default transport is libp2p's in-memory one: on loopback TCP every node has the address
# 127.0.0.1, and gossipsub's IP colocation score (default: more than 10 peers on one IP score
# negative) keeps every peer out of the mesh from 11 peers on, which distinct hosts do not see.
# Writes perf/results/<date>-p2p-scale.json (one JSON object: the machine and a run per N).
# Bounded: each N gets at most RUN_TIMEOUT seconds (150; the example's own waits add up to
# at most 135 s), so under 10 minutes; about 4 minutes with a warm build (3.5 of runs).
# Loopback/in-memory only.
# Environment (the flags win): NODES, EVENTS (300), RATE (10), TRANSPORT (memory), OUT,
# NO_BUILD (1: skip cargo build), RUN_TIMEOUT (150).
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=${NODES:-"10 25 50 100"}
events=${EVENTS:-300}
rate=${RATE:-10}
transport=${TRANSPORT:-memory}
no_build=${NO_BUILD:-0}
run_timeout=${RUN_TIMEOUT:-150}
out=${OUT:-"perf/results/$(date -u +%Y-%m-%d)-p2p-scale.json"}
command_line="perf/p2p-scale.sh $*"

while [ $# -gt 0 ]; do
    case $1 in
        --nodes) nodes=$2; shift 2 ;;
        --events) events=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --transport) transport=$2; shift 2 ;;
        --no-build) no_build=1; shift ;;
        --out) out=$2; shift 2 ;;
        *) sed -n '8,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done

if [ "$no_build" != 1 ]; then
    cargo build --release --example p2p_scale >&2
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/examples/p2p_scale"

runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for n in $nodes; do
    echo "p2p-scale: $n nodes, $events events at $rate/s over $transport" >&2
    if ! timeout "$run_timeout" "$bin" "$n" "$events" "$rate" "$transport" >>"$runs"; then
        echo "{\"nodes\": $n, \"error\": \"failed or timed out after $run_timeout s\"}" >>"$runs"
    fi
    tail -n 1 "$runs" >&2
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$runs" "$out" <<PY
import json, platform, subprocess, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
report = {
    "date": subprocess.run(["date", "-u", "-Iseconds"], capture_output=True, text=True).stdout.strip(),
    "git_sha": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "kernel": platform.release(),
    "cpu": cpu,
    "cpus": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout),
    "load_average_before": "$load_before",
    "load_average_after": "$load_after",
    "command": "$command_line",
    "targets_at_100_nodes": {"delivery_ratio_min": 0.999, "propagation_ms_p99_max": 2000, "duplicates_per_message_max": 3},
    "runs": runs,
}
json.dump(report, open(sys.argv[2], "w"), indent=2)
print(f"{'nodes':>5} {'delivery':>9} {'p50 ms':>8} {'p99 ms':>8} {'dups/msg':>8} {'bytes/event':>11} {'conn':>5} {'mesh':>5}")
for r in runs:
    if "error" in r:
        print(f"{r['nodes']:>5} {r['error']}")
        continue
    print(f"{r['nodes']:>5} {r['delivery_ratio']:>9.4%} {r['propagation_ms_p50']:>8.1f} {r['propagation_ms_p99']:>8.1f} "
          f"{r['duplicates_per_message_per_receiver']:>8.2f} {r['wire_bytes_per_event']:>11.0f} "
          f"{r['connected_peers_mean']:>5.1f} {r['mesh_peers_mean']:>5.1f}")
print(f"wrote {sys.argv[2]}")
PY
