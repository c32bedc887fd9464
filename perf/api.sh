#!/usr/bin/env bash
# API latency under load (performance.md §3): the look-ups and lists of the HTTP API, timed while
# the sensor ingests a real UDP flood from sentrypeer-loadgen (not an in-process feed).
#
#   perf/api.sh [--rate N | --rate-from INGEST_JSON|latest] [--flood-seconds S] [--events N]
#               [--ips N] [--numbers N] [--no-build] [--out FILE]
#
#  1. `fill_store --fill-only` (examples/fill_store.rs) fills a tempdir store with EVENTS events
#     from IPS source IPs (every tenth IPv6) and NUMBERS called numbers through the public writer
#     API, and exits.
#  2. The release binary serves that store as users run it: `sentrypeer -f DB -a --api-listen
#     127.0.0.1:PA --sip-listen 127.0.0.1:PS -z 127.0.0.1:PT -j -l LOG` (plus SENSOR_ARGS) on
#     free loopback ports, from the tempdir (it writes its self-signed TLS cert.pem/key.pem
#     there); the script waits until the API answers and the UDP port is bound. From then until
#     it stops, RssAnon (heap), RssFile (file-backed pages: the LMDB map) and VmRSS are sampled
#     from /proc/<pid>/status every 0.25 s.
#  3. `sentrypeer-loadgen udp --target 127.0.0.1:PS --rate RATE --duration FLOOD_SECONDS
#     --sources 127.0.0.0/16 --mix FLOOD_MIX --json` floods it. RATE: --rate N (default 50000/s,
#     about half the sensor's lossless rate on 2 cores), or --rate-from FILE: half the median
#     io_uring lossless rate in a perf/ingest.sh results file (`latest`: the newest such file of
#     short steps in perf/results/). The default mix is OPTIONS and
#     REGISTER only, so that /numbers stays at NUMBERS entries during the timing.
#  4. WARMUP_SECONDS into the flood, `fill_store --time-api 127.0.0.1:PA` times with one
#     keep-alive client: 2000 look-ups each of /ip-addresses/{ip} and /numbers/{n} (keys that the
#     fill stored), 10 full /ip-addresses and /numbers, 3 nftables lists, 10 /events?limit=100.
#  5. The flood ends by itself (loadgen prints its JSON report only then; a signal would kill it
#     without one), so FLOOD_SECONDS must cover warm-up and timing (checked, and recorded as
#     flood_covered_timing). The store is let settle, then the sensor is stopped.
# Writes perf/results/<date>-api.json: the timings (and, under "bars", look-up p99 and list p50/p99
# against the bars); the ingest (asked rate and where it came from, datagrams sent, events stored
# = `sentrypeer stats` after minus before, over the whole flood and over the timing window, app
# drops from /metrics); memory (RssAnon and RssFile, peak and final, KiB and MiB = KiB/1024, and
# over the timing window); store counts at each step; git SHA, kernel, CPU, load average, the
# commands. Loopback only. Bounded: every step has a timeout, the flood ends after FLOOD_SECONDS,
# and the EXIT trap stops the sensor, loadgen and the sampler and removes the tempdir. About
# 1.5 minutes on 2 cores with warm builds (the fill is 15-25 s).
#
# Relative paths (--rate-from, --out) are taken from the repository root.
# Environment (the flags win): EVENTS (1000000), IPS (100000), NUMBERS (100000), INGEST_RATE
# (50000; 0: no flood), FLOOD_SECONDS (30), WARMUP_SECONDS (2), FLOOD_MIX (options,register),
# SENSOR_ARGS (extra sentrypeer flags), OUT, NO_BUILD (1: skip cargo build), CLIENT_NICE (0: the
# timing client's nice value; negative runs it ahead of the flood's threads, so that the timing
# measures the sensor's answer rather than the client's own wait for a CPU).
set -euo pipefail

cd "$(dirname "$0")/.."
events=${EVENTS:-1000000}
ips=${IPS:-100000}
numbers=${NUMBERS:-100000}
rate=${INGEST_RATE:-50000}
rate_source="--rate (default 50000)"
[ -z "${INGEST_RATE:-}" ] || rate_source="INGEST_RATE"
flood_seconds=${FLOOD_SECONDS:-30}
warmup_seconds=${WARMUP_SECONDS:-2}
flood_mix=${FLOOD_MIX:-options,register}
no_build=${NO_BUILD:-0}
client_nice=${CLIENT_NICE:-0}
read -r -a sensor_args <<<"${SENSOR_ARGS:-}"
date=$(date -u +%Y-%m-%d)
out=${OUT:-"perf/results/$date-api.json"}
command_line="perf/api.sh $*"

usage() { sed -n '5,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
# Half the median io_uring lossless rate of a perf/ingest.sh results file (older single-sweep
# files: their summary), as an integer.
# FILE "latest": the newest perf/results/*ingest*.json (by its date) that is a run of record (short
# steps, three or more sweeps, no extra sensor flags: not an A/B trial) with an io_uring lossless
# rate. Prints "RATE FILE".
half_lossless_rate() {
    python3 - "$1" <<'PY'
import glob, json, sys


def rate_of(path):
    with open(path) as handle:
        results = json.load(handle)
    rate = ((results.get("summary") or {}).get("io_uring") or {}).get("lossless_rate")
    settings = results.get("settings") or {}
    short = settings.get("step_seconds", 99) <= 5
    return results.get("date", ""), rate if short else None, settings


def of_record(settings):
    return settings.get("sweeps", 1) >= 3 and not settings.get("sensor_args")


path = sys.argv[1]
if path == "latest":
    found = sorted((rate_of(one)[0], one) for one in glob.glob("perf/results/*ingest*.json")
                   if rate_of(one)[1] and of_record(rate_of(one)[2]))
    if not found:
        sys.exit("api.sh: no perf/results/*ingest*.json with an io_uring lossless rate")
    path = found[-1][1]
rate = rate_of(path)[1]
if not rate:
    sys.exit(f"api.sh: no io_uring lossless rate (2 s steps) in {path}")
print(int(rate // 2), path)
PY
}
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) rate=${2:?--rate N}; rate_source="--rate"; shift 2 ;;
        --rate-from)
            read -r rate rate_file < <(half_lossless_rate "${2:?--rate-from FILE|latest}")
            [ -n "$rate" ] || exit 2
            rate_source="--rate-from $2 ($rate_file): half its io_uring lossless rate"; shift 2 ;;
        --flood-seconds) flood_seconds=${2:?--flood-seconds S}; shift 2 ;;
        --events) events=${2:?--events N}; shift 2 ;;
        --ips) ips=${2:?--ips N}; shift 2 ;;
        --numbers) numbers=${2:?--numbers N}; shift 2 ;;
        --no-build) no_build=1; shift ;;
        --out) out=${2:?--out FILE}; shift 2 ;;
        *) usage ;;
    esac
done
tmp=$(mktemp -d)
sensor_pid=
loadgen_pid=
sampler_pid=

stop() { # PID: SIGTERM, wait up to 10 s, then SIGKILL
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    if [ -n "$sampler_pid" ]; then stop "$sampler_pid"; fi
    if [ -n "$loadgen_pid" ]; then stop "$loadgen_pid"; fi
    if [ -n "$sensor_pid" ]; then stop "$sensor_pid"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

if [ "$no_build" != 1 ]; then
    # The `perf` profile: release code in target/perf; without P2P, which is not used here.
    cargo build --profile perf -q -p sentrypeer -p sentrypeer-loadgen --no-default-features \
        --bin sentrypeer --bin sentrypeer-loadgen --example fill_store
fi
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
fill_store=$target/perf/examples/fill_store
sentrypeer=$target/perf/sentrypeer
loadgen=$target/perf/sentrypeer-loadgen
db=$tmp/sentrypeer.db

stats() { # NAME: `sentrypeer stats` into $tmp/stats-NAME.txt; prints the `events: N` count
    timeout 60 "$sentrypeer" stats -f "$db" >"$tmp/stats-$1.txt" &&
    awk '$1 == "events:" { print $2 }' "$tmp/stats-$1.txt"
}

# Three distinct loopback ports, each free for TCP and UDP.
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

fill_command=("$fill_store" --db "$db" --events "$events" --ips "$ips" --numbers "$numbers"
    --fill-only)
fill_started=$(date +%s.%N)
timeout 300 "${fill_command[@]}"
fill_seconds=$(python3 -c "import sys; print(round($(date +%s.%N) - $fill_started, 2))")

sensor_command=("$sentrypeer" -f "$db" -a --api-listen "127.0.0.1:$api_port"
    --sip-listen "127.0.0.1:$sip_port" -z "127.0.0.1:$tls_port" -j -l "$tmp/json.log"
    "${sensor_args[@]}")
# From the tempdir: without -t/-k the sensor writes a self-signed ./cert.pem and ./key.pem.
(cd "$tmp" && exec "${sensor_command[@]}") >"$tmp/sensor.log" 2>&1 &
sensor_pid=$!
for _ in $(seq 1 200); do
    if curl -fsS --noproxy '*' --max-time 1 "http://127.0.0.1:$api_port/health-check" \
        >/dev/null 2>&1 && [ -n "$(ss -Hlun "sport = :$sip_port")" ]; then
        break
    fi
    if ! kill -0 "$sensor_pid" 2>/dev/null; then
        echo "api.sh: sentrypeer exited:" >&2
        cat "$tmp/sensor.log" >&2
        exit 1
    fi
    sleep 0.1
done
curl -fsS --noproxy '*' --max-time 1 "http://127.0.0.1:$api_port/health-check" >/dev/null
# Memory through the run: seconds since the epoch, then RssAnon, RssFile and VmRSS in KiB.
memory_line() { # PID
    awk -v now="$(date +%s.%N)" '/^(RssAnon|RssFile|VmRSS):/ { v[$1] = $2 }
        END { if ("RssAnon:" in v) print now, v["RssAnon:"], v["RssFile:"], v["VmRSS:"] }' \
        "/proc/$1/status" 2>/dev/null
}
sample_memory() { # PID OUT: a line every 0.25 s while PID lives
    while [ -r "/proc/$1/status" ]; do
        memory_line "$1" >>"$2" || break
        sleep 0.25
    done
}
sample_memory "$sensor_pid" "$tmp/memory.txt" &
sampler_pid=$!
stored_before=$(stats before)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

loadgen_command=("$loadgen" udp --target "127.0.0.1:$sip_port" --rate "$rate"
    --duration "$flood_seconds" --sources 127.0.0.0/16 --mix "$flood_mix" --seed 1 --json)
if [ "$rate" != 0 ]; then
    "${loadgen_command[@]}" >"$tmp/loadgen.json" 2>"$tmp/loadgen.err" &
    loadgen_pid=$!
    sleep "$warmup_seconds"
else
    echo '{}' >"$tmp/loadgen.json"
fi

time_command=(nice -n "$client_nice" "$fill_store" --time-api "127.0.0.1:$api_port" --ips "$ips" --numbers "$numbers"
    --bench "$tmp/bench.json")
stored_timing_start=$(stats timing-start)
timing_started=$(date +%s.%N)
timeout 300 "${time_command[@]}"
timing_ended=$(date +%s.%N)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
stored_timing_end=$(stats timing-end)
flood_covered=false
if [ -n "$loadgen_pid" ]; then
    if kill -0 "$loadgen_pid" 2>/dev/null; then
        flood_covered=true
    else
        echo "api.sh: the flood ended before the timing did; raise FLOOD_SECONDS" >&2
    fi
    # Wait for the flood to end by itself (bounded), for its report.
    for _ in $(seq 1 $(((flood_seconds + 30) * 10))); do
        kill -0 "$loadgen_pid" 2>/dev/null || break
        sleep 0.1
    done
    stop "$loadgen_pid"
    loadgen_pid=
fi

# Let the writer commit what is queued: stop when the count holds still for 1 s (at most 30 s).
stored_after=$(stats after)
for _ in $(seq 1 30); do
    sleep 1
    now=$(stats after)
    [ "$now" = "$stored_after" ] && break
    stored_after=$now
done
curl -fsS --noproxy '*' --max-time 5 "http://127.0.0.1:$api_port/metrics" >"$tmp/metrics.txt" ||
    : >"$tmp/metrics.txt"
stop "$sampler_pid"
sampler_pid=
memory_line "$sensor_pid" >>"$tmp/memory.txt" || true # the final sample
stop "$sensor_pid"
sensor_pid=

flood_how="UDP flood from sentrypeer-loadgen into the sentrypeer binary"
[ "$rate" != 0 ] || { flood_how=none; loadgen_command=(); }
export TMP_DIR=$tmp TARGET_DIR=$target OUT_FILE=$out EVENTS_FILLED=$events SOURCE_IPS=$ips \
    CALLED_NUMBERS=$numbers FILL_SECONDS=$fill_seconds STORED_BEFORE=$stored_before \
    STORED_AFTER=$stored_after STORED_TIMING_START=$stored_timing_start \
    STORED_TIMING_END=$stored_timing_end TIMING_STARTED=$timing_started \
    TIMING_ENDED=$timing_ended LOAD_BEFORE=$load_before LOAD_AFTER=$load_after RATE=$rate \
    WARMUP_SECONDS=$warmup_seconds FLOOD_COVERED=$flood_covered FLOOD_HOW=$flood_how \
    RATE_SOURCE=$rate_source COMMAND_LINE=$command_line \
    FILL_COMMAND="${fill_command[*]}" SENSOR_COMMAND="${sensor_command[*]}" \
    FLOOD_COMMAND="${loadgen_command[*]}" TIME_COMMAND="${time_command[*]}"
python3 - <<'PY'
import datetime, json, os, platform, subprocess, sys
env = os.environ
sys.path.insert(0, "perf")
from binaries import identify
tmp = env["TMP_DIR"]
bench = json.load(open(f"{tmp}/bench.json"))
with open(f"{tmp}/loadgen.json") as file:
    text = file.read().strip()
loadgen = json.loads(text) if text else {}
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
drops = None
for line in open(f"{tmp}/metrics.txt"):
    name = line.split("{")[0].split(" ")[0]
    if name.endswith("events_dropped_total"):
        drops = (drops or 0) + int(float(line.split()[-1]))
sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                     text=True).stdout.strip()


def shown(name):
    """A command as run, with the tempdir and the cargo target dir shortened."""
    return env[name].replace(tmp, "$TMP").replace(env["TARGET_DIR"], "target") or None




def stats(name):
    """`sentrypeer stats` taken at NAME, as a dict of its counts."""
    counts = {}
    for line in open(f"{tmp}/stats-{name}.txt"):
        key, _, value = line.partition(": ")
        if key in ("events", "source_ips", "called_numbers"):
            counts[key] = int(value)
    return counts


def memory():
    """RssAnon / RssFile / VmRSS samples (KiB) over the run and over the timing window."""
    rows = []
    path = f"{tmp}/memory.txt"
    for line in open(path) if os.path.exists(path) else []:
        parts = line.split()
        if len(parts) == 4:
            rows.append([float(parts[0])] + [int(part) for part in parts[1:]])
    if not rows:
        return {"samples": 0}
    started, ended = float(env["TIMING_STARTED"]), float(env["TIMING_ENDED"])
    window = [row for row in rows if started <= row[0] <= ended] or rows

    def mib(kib):
        return round(kib / 1024, 1)
    result = {"samples": len(rows), "interval_s": 0.25,
              "units": "KiB as in /proc/<pid>/status; MiB = KiB / 1024"}
    for index, name in ((1, "rss_anon"), (2, "rss_file"), (3, "vm_rss")):
        values = [row[index] for row in rows]
        result[f"{name}_kib_first"] = values[0]
        result[f"{name}_kib_peak"] = max(values)
        result[f"{name}_kib_final"] = values[-1]
        result[f"{name}_kib_peak_during_timing"] = max(row[index] for row in window)
        result[f"{name}_mib_peak"] = mib(max(values))
        result[f"{name}_mib_final"] = mib(values[-1])
    return result


stored = int(env["STORED_AFTER"]) - int(env["STORED_BEFORE"])
flooding = env["RATE"] != "0"
flood_s = loadgen.get("duration_s")
window_s = float(env["TIMING_ENDED"]) - float(env["TIMING_STARTED"])
stored_window = int(env["STORED_TIMING_END"]) - int(env["STORED_TIMING_START"])
report = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "git_sha": sha,
    "kernel": platform.release(),
    "cpu": cpu,
    "cpus": len(os.sched_getaffinity(0)),
    "load_average_before_flood": env["LOAD_BEFORE"],
    "load_average_after_timing": env["LOAD_AFTER"],
    "command": env["COMMAND_LINE"],
    "binaries": identify({name: os.path.join(env["TARGET_DIR"], "perf", path) for name, path in
                          [("sentrypeer", "sentrypeer"), ("loadgen", "sentrypeer-loadgen"),
                           ("fill_store", "examples/fill_store")]}),
    "commands": {
        "fill": shown("FILL_COMMAND"),
        "sensor": shown("SENSOR_COMMAND"),
        "flood": shown("FLOOD_COMMAND"),
        "timing": shown("TIME_COMMAND"),
    },
    "store": {
        "events_filled": int(env["EVENTS_FILLED"]),
        "source_ips": int(env["SOURCE_IPS"]),
        "called_numbers": int(env["CALLED_NUMBERS"]),
        "fill_seconds": float(env["FILL_SECONDS"]),
        "before_flood": stats("before"),
        "timing_start": stats("timing-start"),
        "timing_end": stats("timing-end"),
        "after_flood": stats("after"),
    },
    "ingest_during_timing": {
        "how": env["FLOOD_HOW"],
        "rate_per_second_asked": int(env["RATE"]),
        "rate_from": env["RATE_SOURCE"],
        "flood_started_seconds_before_timing": float(env["WARMUP_SECONDS"]) if flooding else None,
        "flood_covered_timing": flooding and env["FLOOD_COVERED"] == "true",
        "flood": {
            "datagrams_sent": loadgen.get("sent"),
            "send_errors": loadgen.get("errors"),
            "seconds": flood_s,
            "datagrams_per_second": loadgen.get("rate_achieved"),
            "events_stored": stored,
            "events_stored_per_second": stored / flood_s if flood_s else None,
            "app_drops": drops,
        },
        "timing_window": {
            "seconds": window_s,
            "events_stored": stored_window,
            "events_stored_per_second": stored_window / window_s,
        },
        "note": "flood: the whole loadgen run (it starts before the timing and runs on after it "
                "for its --duration); events_stored = `sentrypeer stats` after it (once the count "
                "held still) minus before it. timing_window: `sentrypeer stats` just before and "
                "after the timing client (warm-up and process start included in its seconds). "
                "app_drops: events_dropped_total from /metrics at the end",
    },
    "timing": bench,
    "memory": memory(),
}
lookups = [bench.get(name, {}) for name in ("ip_lookup", "number_lookup")]
lists = [bench.get(name, {}) for name in ("ip_list_full", "number_list_full")]
report["bars"] = {
    "lookup_p99_us_max": max((one.get("p99_us", 0) for one in lookups), default=None),
    "lookup_p99_bar_us": 1000,
    "list_p50_us_max": max((one.get("p50_us", 0) for one in lists), default=None),
    "list_p99_us_max": max((one.get("p99_us", 0) for one in lists), default=None),
    "list_bar_us": 100000,
    "under_udp_flood": flooding and env["FLOOD_COVERED"] == "true",
    "rss_anon_mib_peak": report["memory"].get("rss_anon_mib_peak"),
    "rss_anon_bar_mib": 100,
    "note": "the worse of /ip-addresses/{ip} and /numbers/{n}, and of the two full lists",
}
json.dump(report, open(env["OUT_FILE"], "w"), indent=2)
print(json.dumps(report, indent=2))
PY
echo "wrote $out"
