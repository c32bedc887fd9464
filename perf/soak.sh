#!/bin/sh
# Soak: steady UDP ingest against the release binary, VmRSS sampled every 10 s.
#
#   cargo build --release -p sentrypeer -p sentrypeer-loadgen
#   perf/soak.sh [SECS] [RATE] [OUT_DIR]      # defaults: 600 s, 5000 events/s, a temp dir
#
# Loopback only. Writes OUT_DIR/rss.tsv (elapsed_s, vmrss_kib, events_total, committed_total,
# dropped_total) and OUT_DIR/loadgen.json, prints the RSS summary (start, min, max, end), then
# deletes the store (about 300 bytes per event).
set -eu
secs=${1:-600}
rate=${2:-5000}
out=${3:-$(mktemp -d)}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/sentrypeer
gen=$root/target/release/sentrypeer-loadgen
sip=127.0.0.1:${SOAK_SIP_PORT:-35060}
api=127.0.0.1:${SOAK_API_PORT:-35080}
mkdir -p "$out"
data=$(mktemp -d)
"$bin" -f "$data/soak.db" --sip-listen "$sip" -N -a --api-listen "$api" 2>"$out/stderr.txt" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
i=0
until curl -sf "http://$api/health-check" >/dev/null; do
    i=$((i + 1)); [ "$i" -lt 200 ] || { echo "sentrypeer did not start" >&2; exit 1; }
    sleep 0.05
done
metric() { curl -sf "http://$api/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
"$gen" udp --target "$sip" --duration "$secs" --rate "$rate" --json >"$out/loadgen.json" &
gen_pid=$!
start=$(date +%s)
printf 'elapsed_s\tvmrss_kib\tevents_total\tcommitted_total\tdropped_total\n' >"$out/rss.tsv"
while kill -0 "$gen_pid" 2>/dev/null; do
    now=$(date +%s)
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    printf '%s\t%s\t%s\t%s\t%s\n' $((now - start)) "$rss" "$(metric sentrypeer_events_total)" \
        "$(metric sentrypeer_writer_events_committed_total)" \
        "$(metric sentrypeer_events_dropped_total)" >>"$out/rss.tsv"
    sleep 10
done
wait "$gen_pid"
awk -F'\t' 'NR == 2 { first = $2; min = $2; max = $2 }
    NR > 1 { if ($2 < min) min = $2; if ($2 > max) max = $2; last = $2; n++; ev = $3; dr = $5 }
    END { printf "samples %d  VmRSS KiB: start %d  min %d  max %d  end %d  events %s  dropped %s\n",
          n, first, min, max, last, ev, dr }' "$out/rss.tsv"
cat "$out/loadgen.json"
echo "store: $(du -h "$data/soak.db" | cut -f1)"
