#!/usr/bin/env bash
# Fleet throughput through NATS JetStream: sensor -> publisher -> nats-server -> hub, on loopback
# (performance.md: the publisher keeps up with the sensor's lossless ingest rate).
#
#   perf/nats.sh [--no-build] [--rates 10000,20000,50000,150000] [--seconds 5]
#                [--drain-rate 20000] [--catch-up-seconds 180] [--out FILE]
#
# Builds sentrypeer and sentrypeer-loadgen with the `perf` profile (without the P2P feature,
# as perf/ingest.sh), then runs perf/nats.py: a `nats-server -js` on a temporary store, a hub
# (`-R --nats-ingest`) and a sensor (`--nats-url`, `-j`), and for each rate a UDP flood of
# --seconds with `sentrypeer-loadgen udp` (sources 127.0.0.0/16), then the publisher alone and
# the hub alone through a backlog published while the hub was stopped; see perf/nats.py for what
# each step reports (rates, and CPU per 1,000 events of the publisher, nats-server, hub). Writes
# perf/results/<date>-nats.json. Needs `nats-server` on PATH (Debian's package). Budget: the
# catch-up after each flood dominates (at 15-18k/s end to end, 10-20 s for the 50k/s and 150k/s
# steps); about 3-4 minutes with the defaults or with --drain-rate 50000, at most 15
# (timeout); loopback only; every child is killed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
args=()
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        *) args+=("$arg") ;;
    esac
done
command -v nats-server >/dev/null || { echo "perf/nats.sh: nats-server not on PATH" >&2; exit 1; }
if [[ $build == 1 ]]; then
    cargo build --profile perf -q -p sentrypeer -p sentrypeer-loadgen --no-default-features \
        --bin sentrypeer --bin sentrypeer-loadgen
fi
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
echo "git $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec timeout 900 python3 perf/nats.py --sentrypeer "$target/perf/sentrypeer" \
    --loadgen "$target/perf/sentrypeer-loadgen" "${args[@]}"
