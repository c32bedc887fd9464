#!/usr/bin/env bash
# Property-based test of the HTTP API against docs/openapi.yaml with schemathesis (4.x).
#
# Usage: tests/schemathesis.sh [--example]
#   default    runs the built binary: <target dir>/debug/sentrypeer -R -a --api-listen 127.0.0.1:$PORT
#              -f <tmp db> (build it first; the store is empty, so lists answer their 404s)
#   --example  runs `cargo run --example fill_store` instead: a store filled with events, the API
#              only (used before the app wiring existed; also exercises the 200 paths)
# Environment: SCHEMATHESIS (default `schemathesis`; `pip install schemathesis`), PORT (18082),
# SEED (1), MAX_EXAMPLES (30), SENTRYPEER (binary path).
# Flags known to work with schemathesis 4.32: run <schema> --url URL --checks all
# --max-examples N --seed S --no-color   (3.x spelled it --hypothesis-max-examples/--hypothesis-seed)
set -euo pipefail

cd "$(dirname "$0")/.."
schemathesis=${SCHEMATHESIS:-schemathesis}
port=${PORT:-18082}
seed=${SEED:-1}
max_examples=${MAX_EXAMPLES:-30}
tmp=$(mktemp -d)
server_pid=

cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# Where cargo puts builds (CARGO_TARGET_DIR or the workspace's target/).
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
if [ "${1:-}" = "--example" ]; then
    cargo build -q --example fill_store
    "$target/debug/examples/fill_store" --db "$tmp/sentrypeer.db" --events 2000 --ips 300 \
        --numbers 200 --serve "127.0.0.1:$port" >"$tmp/server.log" 2>&1 &
else
    binary=${SENTRYPEER:-$target/debug/sentrypeer}
    "$binary" -R -a --api-listen "127.0.0.1:$port" -f "$tmp/sentrypeer.db" >"$tmp/server.log" 2>&1 &
fi
server_pid=$!

for _ in $(seq 1 300); do
    if curl -fsS --noproxy '*' --max-time 1 "http://127.0.0.1:$port/health-check" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "schemathesis.sh: the server exited:" >&2
        cat "$tmp/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
curl -fsS --noproxy '*' --max-time 1 "http://127.0.0.1:$port/health-check" >/dev/null

"$schemathesis" run docs/openapi.yaml --url "http://127.0.0.1:$port" --checks all \
    --max-examples "$max_examples" --seed "$seed" --no-color
