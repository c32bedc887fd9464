#!/usr/bin/env bash
# End-to-end UDP ingest benchmark: sensor (both engines) versus the bare recvmmsg sink.
# See perf/ingest.py for what is measured; spec: performance.md section 2.
#
#   perf/ingest.sh [--sink-only] [--no-build] [--rates 10000,50000,...] [--step-seconds 2]
#                  [--engines io_uring,portable] [--drain-count 50000] [--sender-nice N] [--out FILE]
#
# Builds the binaries with the `perf` profile (release code in target/perf; sentrypeer without
# the P2P feature, which the ingest path does not touch and which is a third of a clean build),
# loadgen always, sentrypeer unless --sink-only; then runs the sweep on loopback only. Writes perf/results/<date>-ingest.json and prints a table.
# Budget: under 10 minutes on 2 cores with the defaults, clean build included (about 1 minute with --sink-only).
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
sink_only=0
args=()
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --sink-only) sink_only=1; args+=("$arg") ;;
        *) args+=("$arg") ;;
    esac
done

if [[ $build == 1 ]]; then
    if [[ $sink_only == 0 ]]; then
        cargo build --profile perf -p sentrypeer-loadgen -p sentrypeer --no-default-features \
            --bin sentrypeer-loadgen --bin sentrypeer
    else
        cargo build --profile perf -p sentrypeer-loadgen
    fi
fi

INGEST_COMMAND="perf/ingest.sh $*" exec python3 perf/ingest.py "${args[@]}"
