#!/usr/bin/env bash
# P2P benchmark: propagation time of single events between two in-process nodes on loopback,
# and gossip payload bytes per shared event (unique sources, then repeated traffic).
#
#   perf/p2p.sh [--release]
#
# Runs the ignored test `p2p::p2p_bench_propagation_and_bytes` (tests/it/p2p.rs) and prints its
# figures. The default test profile builds the signature crates optimised (see Cargo.toml), so
# debug figures are representative of the protocol; --release builds everything optimised.
# Budget: about 30 s once built. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=()
if [[ ${1:-} == --release ]]; then
    profile=(--release)
fi
echo "git $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"
cargo test "${profile[@]}" -p sentrypeer --test integration p2p::p2p_bench_propagation_and_bytes \
    -- --ignored --nocapture 2>&1 | grep -E '^(propagation|unique|repeated)|test result'
