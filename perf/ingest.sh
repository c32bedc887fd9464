#!/usr/bin/env bash
# End-to-end UDP ingest benchmark: sensor (both engines) versus the bare recvmmsg sink.
# See perf/ingest.py for what is measured; spec: performance.md section 2.
#
#   perf/ingest.sh [--sink-only] [--floor] [--no-build] [--sweeps 3] [--rates 50000,100000,...]
#                  [--step-seconds 2] [--engines io_uring,portable] [--drain-count 50000]
#                  [--sender-nice 0] [--budget-seconds 570] [--confirm-seconds 0] [--out FILE]
#
# Builds the binaries with the `perf` profile (release code in $CARGO_TARGET_DIR or target/, in
# perf/; sentrypeer without the P2P feature, which the ingest path does not touch and which is a
# third of a clean build), loadgen always, sentrypeer unless --sink-only; then runs the sweep
# --sweeps times (default 3) on loopback only (with --floor, examples/ingest_floor too: the least
# per-event work on one thread, see that file), the sender at the same priority as the receivers
# (--sender-nice 0). Writes perf/results/<date>-ingest.json (-2, -3, ... when taken: every sweep,
# the median per step and the median summary) and prints a table. --no-build runs whatever the
# target directory holds; the JSON's "binaries" names each one's SHA-256 and build time.
# Budget: no new step starts --budget-seconds (570) after the build ended, so the measuring ends
# within 10 minutes on 2 cores whatever the build took (1 min warm, 5-10 min clean); the JSON
# records the build's seconds, and lists under "skipped" any step the budget left out.
# --confirm-seconds 60: then one 60 s flood at the first engine's median lossless rate (sink,
# then sensor) with the CPU it took beside the machine's CPUs; it runs whatever the budget.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
sink_only=0
floor=()
args=()
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --sink-only) sink_only=1; args+=("$arg") ;;
        --floor) floor=(--example ingest_floor); args+=("$arg") ;;
        *) args+=("$arg") ;;
    esac
done

if [[ $build == 1 ]]; then
    build_started=$SECONDS
    if [[ $sink_only == 0 ]]; then
        cargo build --profile perf -p sentrypeer-loadgen -p sentrypeer --no-default-features \
            --bin sentrypeer-loadgen --bin sentrypeer "${floor[@]}"
    else
        cargo build --profile perf -p sentrypeer-loadgen
    fi
    INGEST_BUILD_SECONDS=$((SECONDS - build_started))
    export INGEST_BUILD_SECONDS
fi

INGEST_COMMAND="perf/ingest.sh $*" exec python3 perf/ingest.py "${args[@]}"
