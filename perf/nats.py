#!/usr/bin/env python3
"""Fleet throughput: events per second from a sensor to a hub through NATS JetStream
(performance.md: the publisher keeps up with the sensor's lossless ingest rate).

One `nats-server -js` (temporary store, loopback ports), one hub (`sentrypeer -R --nats-ingest`)
and one sensor (`sentrypeer --nats-url ... -j`, the configuration of perf/ingest.sh) on loopback.
For each rate, `sentrypeer-loadgen udp --rate R --duration S` floods the sensor; every 0.5 s the
script reads the sensor's /metrics (events committed; the publisher's counters, every
`sentrypeer_nats_*` sample) and the hub's (`nats_ingest_stored_total`). Per step:
  - sensor_stored_per_s: events the sensor committed per second of the flood;
  - published_per_s: events JetStream acknowledged to the sensor's publisher per second of the
    flood, and the backlog (committed - acknowledged) at the flood's end and its peak;
  - hub_stored_per_s: events the hub committed per second of the flood;
  - catch_up_s: from the flood's end until the hub holds every event the sensor stored;
  - end_to_end_per_s: the step's events / (flood + catch-up seconds);
  - keeps_up: the publisher's rate is at least 0.95 x the sensor's store rate and its backlog
    at the flood's end is under one second of the sensor's rate;
  - cpu_ms_per_1000: CPU time (user + system, from /proc) from the flood's start to the end of
    the catch-up, per 1,000 of the step's events, of the sensor's `nats-publisher` thread, of
    `nats-server` and of the hub; their sum is what carrying one event to the hub costs, and
    2 cores / that sum is the rate this path could reach with nothing else running.
Then the hub alone: it is stopped, a flood at --drain-rate for --seconds goes into the stream,
and once the publisher has it all, the hub starts again on its store and durable consumer; its
rate through that backlog (from its start, start-up included) is hub_drain.hub_stored_per_s.
Writes perf/results/<date>-nats.json and prints a table. Run through perf/nats.sh.

Never: sends anywhere but 127.0.0.0/8; leaves a child running (every child is killed at exit).
"""

import argparse
import atexit
import datetime
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CHILDREN = []


def kill_children():
    for child in CHILDREN:
        if child.poll() is None:
            child.kill()
            child.wait()


atexit.register(kill_children)


def free_port():
    """A loopback port free for both TCP and UDP."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def wait_for(what, check, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def metrics(api_port):
    """Every unlabelled sample and every sentrypeer_nats_* sample (labels kept) of /metrics."""
    found = {}
    for line in get(f"http://127.0.0.1:{api_port}/metrics").splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        if "{" in key and not key.startswith("sentrypeer_nats_"):
            continue
        try:
            found[key] = float(value)
        except ValueError:
            pass
    return found


def published(sample):
    """Events JetStream acknowledged to the publisher: the first acknowledged counter found."""
    for key in ("sentrypeer_nats_acknowledged_total", "sentrypeer_nats_acked_total",
                "sentrypeer_nats_published_acknowledged_total",
                "sentrypeer_nats_events_acknowledged_total"):
        if key in sample:
            return sample[key]
    keys = [k for k in sample if k.startswith("sentrypeer_nats_") and "ack" in k
            and "ingest" not in k and "error" not in k]
    return sample[keys[0]] if keys else None


def cpu_ticks(pid, thread=None):
    """User + system clock ticks of a process, or of its thread named `thread` (0 if gone)."""
    paths = [f"/proc/{pid}/stat"]
    if thread is not None:
        paths = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as handle:
                if handle.read().strip() == thread:
                    paths.append(f"/proc/{pid}/task/{tid}/stat")
    total = 0
    for path in paths:
        with open(path) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def cpu_sample(pids):
    """Ticks of the publisher thread, nats-server and the hub; None when one is gone."""
    try:
        return {"publisher": cpu_ticks(pids["sensor"], "nats-publisher"),
                "nats_server": cpu_ticks(pids["nats"]), "hub": cpu_ticks(pids["hub"])}
    except OSError:
        return None


def cpu_per_1000(before, after, events):
    """ms of CPU per 1,000 events per part, and their sum."""
    if before is None or after is None or events <= 0:
        return None
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    out = {k: round((after[k] - before[k]) * tick_ms * 1000 / events, 1) for k in before}
    out["sum"] = round(sum(out.values()), 1)
    return out


def start(command, log_path, cwd):
    log = open(log_path, "w")
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                             stdin=subprocess.DEVNULL)
    CHILDREN.append(child)
    return child


def start_nats(args, tmp):
    port, monitor = free_port(), free_port()
    os.makedirs(f"{tmp}/nats-store")
    with open(f"{tmp}/nats.conf", "w") as handle:
        handle.write(f'listen: "127.0.0.1:{port}"\nhttp: "127.0.0.1:{monitor}"\n'
                     f'jetstream {{\n  store_dir: "{tmp}/nats-store"\n}}\n')
    nats = start([args.nats_server, "-js", "-c", f"{tmp}/nats.conf"], f"{tmp}/nats.log", tmp)
    wait_for("nats-server", lambda: "ok" in get(f"http://127.0.0.1:{monitor}/healthz"), 20)
    return f"nats://127.0.0.1:{port}", nats


def start_node(args, tmp, name, extra):
    """Starts (or restarts, on the same store) a node; returns (API port, process)."""
    os.makedirs(f"{tmp}/{name}", exist_ok=True)
    api = free_port()
    command = [args.sentrypeer, "-f", f"{tmp}/{name}/sentrypeer.db", "-a",
               "--api-listen", f"127.0.0.1:{api}"] + extra
    child = start(command, f"{tmp}/{name}.log", f"{tmp}/{name}")
    wait_for(name, lambda: get(f"http://127.0.0.1:{api}/health-check") is not None, 20)
    return api, child


def hub_drain(args, tmp, url, sensor_api, sip, hub, pids):
    """The hub alone: stopped while the sensor publishes a flood into the stream, then started
    again; its rate through the stored backlog (the durable consumer resumes). On the way, the
    publisher alone (no hub, no flood): its rate through the backlog left when the flood ends."""
    hub.terminate()
    hub.wait(timeout=30)
    before = metrics(sensor_api)
    committed0 = before.get("sentrypeer_writer_events_committed_total", 0)
    published0 = published(before) or 0
    subprocess.run([args.loadgen, "udp", "--target", f"127.0.0.1:{sip}", "--rate",
                    str(args.drain_rate), "--duration", str(args.seconds), "--sources",
                    "127.0.0.0/16", "--seed", "2"], capture_output=True, timeout=120)
    flood_end = metrics(sensor_api)
    left = (flood_end.get("sentrypeer_writer_events_committed_total", 0) - committed0) \
        - ((published(flood_end) or 0) - published0)
    alone = dict(pids, hub=pids["sensor"])
    cpu0, started = cpu_sample(alone), time.monotonic()
    def all_published():
        sample = metrics(sensor_api)
        stored = sample.get("sentrypeer_writer_events_committed_total", 0) - committed0
        return stored > 0 and (published(sample) or 0) - published0 >= stored
    wait_for("the publisher to empty its backlog", all_published, args.catch_up_seconds)
    publish_s = time.monotonic() - started
    cpu = cpu_per_1000(cpu0, cpu_sample(alone), left)
    publisher = {"backlog": int(left), "seconds": round(publish_s, 2),
                 "published_per_s": round(left / publish_s) if left > 0 else None,
                 "cpu_ms_per_1000": cpu and {"publisher": cpu["publisher"],
                                             "nats_server": cpu["nats_server"]}}
    backlog = metrics(sensor_api).get("sentrypeer_writer_events_committed_total", 0) - committed0
    started = time.monotonic()
    hub_api, hub = start_node(args, tmp, "hub", ["-R", "--nats-ingest", "--nats-url", url])
    wait_for("the hub to store the backlog",
             lambda: metrics(hub_api).get("sentrypeer_nats_ingest_stored_total", 0) >= backlog,
             args.catch_up_seconds)
    elapsed = time.monotonic() - started
    hub_cpu = cpu_ticks(hub.pid) * 1000 / os.sysconf("SC_CLK_TCK") * 1000 / backlog
    return {"events": int(backlog), "seconds_from_start": round(elapsed, 2),
            "hub_stored_per_s": round(backlog / elapsed),
            "hub_cpu_ms_per_1000": round(hub_cpu, 1), "publisher_alone": publisher}, hub_api


def step(args, rate, ports, pids):
    sensor_api, hub_api, sip = ports
    cpu0 = cpu_sample(pids)
    before_sensor, before_hub = metrics(sensor_api), metrics(hub_api)
    committed0 = before_sensor.get("sentrypeer_writer_events_committed_total", 0)
    published0 = published(before_sensor) or 0
    hub0 = before_hub.get("sentrypeer_nats_ingest_stored_total", 0)
    loadgen = subprocess.Popen(
        [args.loadgen, "udp", "--target", f"127.0.0.1:{sip}", "--rate", str(rate),
         "--duration", str(args.seconds), "--sources", "127.0.0.0/16", "--seed", "1", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    CHILDREN.append(loadgen)
    started = time.monotonic()
    backlog_peak = 0
    while loadgen.poll() is None:
        time.sleep(0.5)
        sample = metrics(sensor_api)
        backlog = (sample.get("sentrypeer_writer_events_committed_total", 0) - committed0) \
            - ((published(sample) or 0) - published0)
        backlog_peak = max(backlog_peak, backlog)
    flood_s = time.monotonic() - started
    report = json.loads(loadgen.stdout.read() or "{}")
    end_sensor, end_hub = metrics(sensor_api), metrics(hub_api)
    stored = end_sensor.get("sentrypeer_writer_events_committed_total", 0) - committed0
    acked = (published(end_sensor) or 0) - published0
    hub_stored = end_hub.get("sentrypeer_nats_ingest_stored_total", 0) - hub0
    flood_end = time.monotonic()
    catch_up_s = None
    deadline = flood_end + args.catch_up_seconds
    while time.monotonic() < deadline:
        sensor_now = metrics(sensor_api).get("sentrypeer_writer_events_committed_total", 0)
        hub_now = metrics(hub_api).get("sentrypeer_nats_ingest_stored_total", 0)
        if hub_now - hub0 >= sensor_now - committed0:
            catch_up_s = time.monotonic() - flood_end
            break
        time.sleep(0.1)
    total = metrics(sensor_api).get("sentrypeer_writer_events_committed_total", 0) - committed0
    cpu = cpu_per_1000(cpu0, cpu_sample(pids), total)
    sensor_rate = stored / flood_s
    publish_rate = acked / flood_s
    backlog_end = stored - acked
    return {
        "rate": rate, "flood_s": round(flood_s, 2), "sent": report.get("sent"),
        "sensor_stored": int(stored), "sensor_stored_per_s": round(sensor_rate),
        "published_per_s": round(publish_rate), "backlog_at_flood_end": int(backlog_end),
        "backlog_peak": int(backlog_peak), "hub_stored_per_s": round(hub_stored / flood_s),
        "events": int(total), "catch_up_s": None if catch_up_s is None else round(catch_up_s, 2),
        "end_to_end_per_s": None if catch_up_s is None
        else round(total / (flood_s + catch_up_s)),
        "keeps_up": publish_rate >= 0.95 * sensor_rate and backlog_end < sensor_rate,
        "cpu_ms_per_1000": cpu,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10000,20000,50000,150000")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--catch-up-seconds", type=float, default=180)
    parser.add_argument("--drain-rate", type=int, default=20000,
                        help="UDP rate of the flood published while the hub is stopped")
    parser.add_argument("--sentrypeer", required=True)
    parser.add_argument("--loadgen", required=True)
    parser.add_argument("--nats-server", default="nats-server")
    parser.add_argument("--out", default=f"perf/results/{datetime.date.today()}-nats.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url, nats = start_nats(args, tmp)
        hub_api, hub = start_node(args, tmp, "hub", ["-R", "--nats-ingest", "--nats-url", url])
        sip, tls = free_port(), free_port()
        sensor_api, sensor = start_node(args, tmp, "sensor", [
            "--nats-url", url, "--sip-listen", f"127.0.0.1:{sip}", "-z", f"127.0.0.1:{tls}",
            "-j", "-l", f"{tmp}/sensor/json.log"])
        steps = []
        for rate in [int(r) for r in args.rates.split(",")]:
            pids = {"sensor": sensor.pid, "nats": nats.pid, "hub": hub.pid}
            steps.append(step(args, rate, (sensor_api, hub_api, sip), pids))
            print(json.dumps(steps[-1]), flush=True)
        drain, hub_api = hub_drain(args, tmp, url, sensor_api, sip, hub, pids)
        print(json.dumps({"hub_drain": drain}), flush=True)
        final_sensor, final_hub = metrics(sensor_api), metrics(hub_api)
        kill_children()
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip(),
        "kernel": platform.release(), "cpus": os.cpu_count(),
        "load_at_end": open("/proc/loadavg").read().split()[:3],
        "nats_server": subprocess.run([args.nats_server, "--version"], capture_output=True,
                                      text=True).stdout.strip(),
        "command": " ".join(sys.argv), "steps": steps, "hub_drain": drain,
        "sensor_nats_metrics": {k: v for k, v in final_sensor.items()
                                if k.startswith("sentrypeer_nats_")},
        "hub_nats_metrics": {k: v for k, v in final_hub.items()
                             if k.startswith("sentrypeer_nats_")},
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(f"{'rate':>8} {'stored/s':>9} {'published/s':>11} {'hub/s':>8} {'backlog':>8} "
          f"{'catch-up s':>10} {'e2e/s':>8} keeps up")
    for s in steps:
        print(f"{s['rate']:>8} {s['sensor_stored_per_s']:>9} {s['published_per_s']:>11} "
              f"{s['hub_stored_per_s']:>8} {s['backlog_at_flood_end']:>8} "
              f"{str(s['catch_up_s']):>10} {str(s['end_to_end_per_s']):>8} {s['keeps_up']}")
    print(f"hub alone, through a stored backlog of {drain['events']} events: "
          f"{drain['hub_stored_per_s']}/s ({drain['seconds_from_start']} s from its start)")
    alone = drain["publisher_alone"]
    print(f"publisher alone, through a backlog of {alone['backlog']} events: "
          f"{alone['published_per_s']}/s ({alone['seconds']} s)")
    for s in steps:
        print(f"{s['rate']:>8} CPU ms per 1,000 events: {s['cpu_ms_per_1000']}")
    print(args.out)


if __name__ == "__main__":
    main()
