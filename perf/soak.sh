#!/bin/sh
# Soak: steady UDP ingest against the release binary, VmRSS sampled every 10 s.
#
#   cargo build --release -p sentrypeer -p sentrypeer-loadgen
#   perf/soak.sh [SECS] [RATE] [OUT_DIR]      # defaults: 600 s, 5000 events/s, a temp dir
#
# Loopback only. Writes OUT_DIR/rss.tsv (elapsed_s, vmrss_kib, rssanon_kib, rssfile_kib,
# events_total, committed_total, dropped_total) and OUT_DIR/loadgen.json, prints the summary
# (start, min, max, end) of VmRSS and of RssAnon, then deletes the store (about 170 bytes per
# event). VmRSS includes RssFile: the pages of the LMDB map the process touched, which track the
# store size and are clean page cache the kernel can drop; RssAnon is the heap.
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
printf 'elapsed_s\tvmrss_kib\trssanon_kib\trssfile_kib\tevents_total\tcommitted_total\tdropped_total\n' \
    >"$out/rss.tsv"
while kill -0 "$gen_pid" 2>/dev/null; do
    now=$(date +%s)
    rss=$(awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%s\t", $2 }' "/proc/$pid/status")
    printf '%s\t%s%s\t%s\t%s\n' $((now - start)) "$rss" "$(metric sentrypeer_events_total)" \
        "$(metric sentrypeer_writer_events_committed_total)" \
        "$(metric sentrypeer_events_dropped_total)" >>"$out/rss.tsv"
    sleep 10
done
wait "$gen_pid"
for col in 2 3; do
    awk -F'\t' -v c="$col" 'NR == 1 { name = $c }
        NR == 2 { first = $c; min = $c; max = $c }
        NR > 1 { if ($c < min) min = $c; if ($c > max) max = $c; last = $c; n++; ev = $5; dr = $7 }
        END { printf "samples %d  %s: start %d  min %d  max %d  end %d  events %s  dropped %s\n",
              n, name, first, min, max, last, ev, dr }' "$out/rss.tsv"
done
cat "$out/loadgen.json"
echo "store: $(du -h "$data/soak.db" | cut -f1)"
