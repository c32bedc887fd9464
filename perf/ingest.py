#!/usr/bin/env python3
"""End-to-end UDP ingest benchmark (docs: /work/shared/spec/performance.md section 2).

For a sweep of fixed UDP rates and flat out, drive with `sentrypeer-loadgen udp`:
  (a) the bare recvmmsg sink (`sentrypeer-loadgen sink`), the loopback limit;
  (b) the release `sentrypeer` binary (-j JSON log, LMDB store, API on), for each engine
      (io_uring default, and -N portable).
For each step: sent, stored (or received), kernel drops (Udp RcvbufErrors delta in
/proc/net/snmp), app drops (events_dropped_total from /metrics when the API has it), loss %,
CPU seconds per 1,000 events (sensor: ns counters of /proc/<pid>/task/*/schedstat, with
utime+stime of /proc/<pid>/stat alongside; sink: its own getrusage), peak RSS (VmHWM),
database bytes per event.
Then a drain test per target: pre-fill the socket while the receiver is stopped (SIGSTOP),
SIGCONT, and time until everything is stored.

Writes perf/results/<date>-ingest.json and prints a table with the sensor/sink ratios.
Run through perf/ingest.sh, which builds the release binaries first.

Never: sends anywhere but 127.0.0.0/8; leaves a child running (every child is killed on exit).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CHILDREN = []  # every process we start, killed at exit


# ---------------------------------------------------------------- /proc readers

def snmp_udp():
    """The Udp counters of /proc/net/snmp as a dict (IPv4; loopback traffic here is IPv4)."""
    with open("/proc/net/snmp") as handle:
        lines = [line.split() for line in handle if line.startswith("Udp:")]
    names, values = lines[0][1:], lines[1][1:]
    return {name: int(value) for name, value in zip(names, values)}


def proc_cpu_s(pid):
    """utime + stime of a process in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as handle:
        text = handle.read()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_cpu_precise_s(pid):
    """CPU seconds of a process from the ns counters in /proc/<pid>/task/*/schedstat (threads
    alive now), falling back to the 10 ms ticks of /proc/<pid>/stat."""
    total_ns = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                total_ns += int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return proc_cpu_s(pid)
    return total_ns / 1e9


def proc_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def allocated_bytes(path):
    """Disk space really used by a file or a directory tree (sparse LMDB files count as used)."""
    if not os.path.exists(path):
        return 0
    if os.path.isfile(path):
        return os.stat(path).st_blocks * 512
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            total += os.stat(os.path.join(folder, name)).st_blocks * 512
    return total


def machine():
    model = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sha = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "git_sha": sha,
        "loadavg_start": os.getloadavg(),
        "rmem_max": int(open("/proc/sys/net/core/rmem_max").read()),
    }


# ---------------------------------------------------------------- processes

def spawn(args, **kwargs):
    process = subprocess.Popen(args, **kwargs)
    CHILDREN.append(process)
    return process


def stop(process, sig=signal.SIGTERM, timeout=10):
    if process.poll() is None:
        try:
            os.kill(process.pid, signal.SIGCONT)
            process.send_signal(sig)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    return process.returncode


def kill_all():
    for process in CHILDREN:
        if process.poll() is None:
            try:
                os.kill(process.pid, signal.SIGCONT)
            except OSError:
                pass
            process.kill()


def free_port(kind=socket.SOCK_STREAM):
    """A port free for both UDP and TCP on 127.0.0.1 (the sensor binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
            try:
                with socket.socket(socket.AF_INET, other) as second:
                    second.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def udp_port_bound(port):
    hex_port = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as handle:
                if any(line.split()[1].endswith(hex_port) for line in list(handle)[1:]):
                    return True
        except OSError:
            pass
    return False


def tcp_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- loadgen

class Tools:
    def __init__(self, args):
        self.loadgen = args.loadgen
        self.sentrypeer = args.sentrypeer
        self.sensor_args = args.sensor_args.split()
        # Lower CPU priority for the sender: on a machine where it shares the cores with the
        # sensor, the sensor's threads run when they have work, and the sender gets the rest.
        self.sender_prefix = ["nice", "-n", str(args.sender_nice)] if args.sender_nice else []
        self.traffic = ["--mix", args.mix, "--sources", args.sources, "--seed", "1"]
        if args.source_per_message:
            self.traffic.append("--source-per-message")
        else:
            self.traffic += ["--source-sockets", str(args.source_sockets)]

    def send(self, port, count=None, rate=None, duration=None, timeout=120):
        args = self.sender_prefix + [self.loadgen, "udp", "--target", f"127.0.0.1:{port}",
                                     "--json"] + self.traffic
        if count is not None:
            args += ["--count", str(count)]
        if rate is not None:
            args += ["--rate", str(rate)]
        if duration is not None:
            args += ["--duration", str(duration)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"loadgen failed: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def start_sink(self, extra):
        process = spawn([self.loadgen, "sink", "--listen", "127.0.0.1:0", "--json"] + extra,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = read_line_with_deadline(process.stderr, 10)
        match = re.search(r":(\d+)\s*$", line or "")
        if not match:
            raise RuntimeError(f"sink did not announce its address: {line!r}")
        return process, int(match.group(1))

    def stored(self, db):
        """Events in the database, from `sentrypeer stats -f <db>` (`events: N`)."""
        done = subprocess.run([self.sentrypeer, "stats", "-f", db], capture_output=True,
                              text=True, timeout=30)
        match = re.search(r"events:\s*(\d+)", done.stdout)
        if not match:
            raise RuntimeError(f"no 'events: N' in sentrypeer stats output: {done.stdout!r} "
                               f"{done.stderr!r}")
        return int(match.group(1))


def read_line_with_deadline(stream, seconds):
    result = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(seconds)
    return result[0] if result else None


def finish_sink(process, timeout):
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process, signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
    return json.loads(out)


# ---------------------------------------------------------------- steps

def step_counts(rate, seconds):
    """loadgen arguments for one step: a count at a fixed rate, or a duration flat out."""
    if rate is None:
        return {"duration": seconds}
    return {"count": int(rate * seconds), "rate": rate}


def loss_pct(sent, got):
    return round(100.0 * (sent - got) / sent, 4) if sent else None


def sink_step(tools, rate, seconds):
    snmp_before = snmp_udp()
    sink, port = tools.start_sink(["--idle", "1", "--duration", str(seconds + 60)])
    sent = tools.send(port, **step_counts(rate, seconds))
    got = finish_sink(sink, timeout=30)
    drops = snmp_udp()["RcvbufErrors"] - snmp_before["RcvbufErrors"]
    received = got["received"]
    return {
        "rate_requested": rate,
        "sent": sent["sent"],
        "rate_achieved": round(sent["rate_achieved"]),
        "stored": received,
        "kernel_drops": drops,
        "app_drops": 0,
        "loss_pct": loss_pct(sent["sent"], received),
        "cpu_s": got["cpu_s"],
        "cpu_s_per_1000": round(1000 * got["cpu_s"] / received, 5) if received else None,
        "rss_peak_kib": got["rss_peak_kib"],
        "db_bytes_per_event": None,
    }


class Sensor:
    """One running `sentrypeer` in its own temporary directory."""

    def __init__(self, tools, engine, workdir, extra_args=()):
        self.tools = tools
        self.dir = tempfile.mkdtemp(prefix=f"ingest-{engine}-", dir=workdir)
        self.db = os.path.join(self.dir, "db")
        self.json_log = os.path.join(self.dir, "json.log")
        self.sip_port = free_port(socket.SOCK_DGRAM)
        self.api_port = free_port()
        tls_port = free_port()
        args = [tools.sentrypeer, "-j", "-l", self.json_log, "-f", self.db,
                "--sip-listen", f"127.0.0.1:{self.sip_port}", "-a",
                "--api-listen", f"127.0.0.1:{self.api_port}", "-z", f"127.0.0.1:{tls_port}"]
        if engine == "portable":
            args.append("-N")
        args += tools.sensor_args
        args += list(extra_args)
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "w")
        started = time.monotonic()
        self.process = spawn(args, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = started + 20
        while not (udp_port_bound(self.sip_port) and tcp_accepts(self.api_port)):
            if self.process.poll() is not None:
                raise RuntimeError(f"sentrypeer exited ({self.process.returncode}); see "
                                   f"{self.stderr.name}")
            if time.monotonic() > deadline:
                raise RuntimeError("sentrypeer did not start listening within 20 s")
            time.sleep(0.01)
        self.startup_ms = round((time.monotonic() - started) * 1000, 1)

    def app_drops(self):
        """Sum of events_dropped_total in /metrics, or None if the API does not expose it."""
        try:
            url = f"http://127.0.0.1:{self.api_port}/metrics"
            text = urllib.request.urlopen(url, timeout=2).read().decode()
        except (OSError, ValueError):
            return None
        values = [float(line.split()[-1]) for line in text.splitlines()
                  if line.startswith("events_dropped_total") or
                  line.startswith("sentrypeer_events_dropped_total")]
        return int(sum(values)) if values else None

    def wait_stored(self, expected, settle_s=2.0, timeout_s=30.0, interval_s=0.2):
        """Polls the store until it holds `expected` events or stops growing for `settle_s`."""
        deadline = time.monotonic() + timeout_s
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            stored = self.tools.stored(self.db)
            if stored >= expected:
                return stored
            if stored != last:
                last, last_change = stored, time.monotonic()
            elif time.monotonic() - last_change >= settle_s:
                return stored
            time.sleep(interval_s)
        return last

    def close(self):
        code = stop(self.process, signal.SIGTERM)
        self.stderr.close()
        with open(self.stderr.name, errors="replace") as handle:
            self.stderr_head = handle.read(400)
        return code


def sensor_step(tools, engine, rate, seconds, workdir):
    sensor = Sensor(tools, engine, workdir)
    try:
        cpu_before = proc_cpu_s(sensor.process.pid)
        cpu_precise_before = proc_cpu_precise_s(sensor.process.pid)
        snmp_before = snmp_udp()
        sent = tools.send(sensor.sip_port, **step_counts(rate, seconds))
        stored = sensor.wait_stored(sent["sent"])
        drops = snmp_udp()["RcvbufErrors"] - snmp_before["RcvbufErrors"]
        cpu_ticks = proc_cpu_s(sensor.process.pid) - cpu_before
        cpu = proc_cpu_precise_s(sensor.process.pid) - cpu_precise_before
        hwm = proc_hwm_kib(sensor.process.pid)
        app_drops = sensor.app_drops()
    finally:
        exit_code = sensor.close()
    stored_final = tools.stored(sensor.db)
    db_bytes = allocated_bytes(sensor.db)
    result = {
        "rate_requested": rate,
        "sent": sent["sent"],
        "rate_achieved": round(sent["rate_achieved"]),
        "stored": stored_final,
        "stored_before_exit": stored,
        "kernel_drops": drops,
        "app_drops": app_drops,
        "loss_pct": loss_pct(sent["sent"], stored_final),
        "cpu_s": round(cpu, 4),
        "cpu_s_stat": round(cpu_ticks, 2),
        "cpu_s_per_1000": round(1000 * cpu / stored_final, 5) if stored_final else None,
        "rss_peak_kib": hwm,
        "db_bytes": db_bytes,
        "db_bytes_per_event": round(db_bytes / stored_final, 1) if stored_final else None,
        "startup_ms": sensor.startup_ms,
        "exit_code": exit_code,
        "stderr_head": sensor.stderr_head,
    }
    shutil.rmtree(sensor.dir, ignore_errors=True)
    return result


def sink_drain(tools, count, rcvbuf):
    snmp_before = snmp_udp()
    sink, port = tools.start_sink(["--idle", "2", "--duration", "120", "--rcvbuf", str(rcvbuf)])
    os.kill(sink.pid, signal.SIGSTOP)
    sent = tools.send(port, count=count)
    time.sleep(0.2)
    drops = snmp_udp()["RcvbufErrors"] - snmp_before["RcvbufErrors"]
    os.kill(sink.pid, signal.SIGCONT)
    got = finish_sink(sink, timeout=60)
    return {
        "sent": sent["sent"],
        "kernel_drops": drops,
        "stored": got["received"],
        "drain_s": round(got["duration_s"], 4),
        "drain_rate": round(got["rate"]),
        "cpu_us_per_event": round(got["cpu_us_per_datagram"], 3),
        "note": "sink: first-to-last datagram after SIGCONT; rcvbuf forced to --rcvbuf",
    }


def sensor_drain(tools, engine, count, workdir, rcvbuf):
    # The same socket buffer as the sink's drain, so that the pre-fill fits in both.
    sensor = Sensor(tools, engine, workdir, ["--udp-rcvbuf", str(rcvbuf)])
    try:
        snmp_before = snmp_udp()
        os.kill(sensor.process.pid, signal.SIGSTOP)
        sent = tools.send(sensor.sip_port, count=count)
        time.sleep(0.2)
        drops = snmp_udp()["RcvbufErrors"] - snmp_before["RcvbufErrors"]
        cpu_before = proc_cpu_precise_s(sensor.process.pid)
        started = time.monotonic()
        os.kill(sensor.process.pid, signal.SIGCONT)
        expected = sent["sent"] - drops
        stored = sensor.wait_stored(expected, settle_s=2.0, interval_s=0.02)
        elapsed = time.monotonic() - started
        if stored < expected:
            elapsed -= 2.0  # it settled short of expected: do not count the settle wait
        cpu = proc_cpu_precise_s(sensor.process.pid) - cpu_before
    finally:
        sensor.close()
    shutil.rmtree(sensor.dir, ignore_errors=True)
    return {
        "sent": sent["sent"],
        "kernel_drops": drops,
        "stored": stored,
        "drain_s": round(elapsed, 4),
        "drain_rate": round(stored / elapsed) if elapsed > 0 else None,
        "cpu_us_per_event": round(cpu * 1e6 / stored, 3) if stored else None,
        "note": "sensor: SIGCONT to stored==sent-drops, polled with `sentrypeer stats` every 20 ms",
    }


# ---------------------------------------------------------------- summary

def is_lossless(step):
    return step["loss_pct"] == 0 and step["kernel_drops"] == 0 and not step["app_drops"]


def lossless_rate(steps):
    """Achieved rate of the last step before the first lossy one (steps run in rising order,
    flat out last): a rate counts only if every lower rate was lossless too, so one lucky step
    on a noisy machine does not set the figure."""
    rate = 0
    for step in steps:
        if not is_lossless(step):
            break
        rate = max(rate, step["rate_achieved"])
    return rate


def lossless_rate_max(steps):
    """Highest achieved rate of any lossless step (for reference; noisier)."""
    return max((step["rate_achieved"] for step in steps if is_lossless(step)), default=0)


def summarize(results):
    sink = results["targets"]["sink"]
    summary = {"sink_lossless_rate": lossless_rate(sink["steps"]),
               "sink_lossless_rate_max": lossless_rate_max(sink["steps"])}
    for name, target in results["targets"].items():
        if name == "sink":
            continue
        rate = lossless_rate(target["steps"])
        ratios = []
        for step, sink_step_result in zip(target["steps"], sink["steps"]):
            if step["cpu_s_per_1000"] and sink_step_result["cpu_s_per_1000"]:
                ratios.append(step["cpu_s_per_1000"] / sink_step_result["cpu_s_per_1000"])
        summary[name] = {
            "lossless_rate": rate,
            "lossless_rate_max": lossless_rate_max(target["steps"]),
            "lossless_ratio_vs_sink": round(rate / summary["sink_lossless_rate"], 3)
            if summary["sink_lossless_rate"] else None,
            "cpu_per_event_ratio_vs_sink_median": round(statistics.median(ratios), 2)
            if ratios else None,
        }
    return summary


def print_table(results):
    header = (f"{'target':<10} {'rate req':>9} {'sent':>9} {'achieved/s':>10} {'stored':>9} "
              f"{'kdrops':>7} {'adrops':>7} {'loss%':>7} {'cpu s/1k':>9} {'rss KiB':>8} "
              f"{'db B/ev':>8}")
    print(header)
    print("-" * len(header))
    for name, target in results["targets"].items():
        for step in target["steps"]:
            rate = "flat" if step["rate_requested"] is None else f"{step['rate_requested']:.0f}"
            print(f"{name:<10} {rate:>9} {step['sent']:>9} {step['rate_achieved']:>10} "
                  f"{step['stored']:>9} {step['kernel_drops']:>7} "
                  f"{'-' if step['app_drops'] is None else step['app_drops']:>7} "
                  f"{step['loss_pct']:>7} {step['cpu_s_per_1000'] or '-':>9} "
                  f"{step['rss_peak_kib'] or '-':>8} {step['db_bytes_per_event'] or '-':>8}")
        if target.get("error"):
            print(f"{name:<10} error: {target['error']}")
        drain = target.get("drain")
        if drain:
            print(f"{name:<10} drain: {drain['sent']} sent, {drain['kernel_drops']} kernel drops, "
                  f"{drain['stored']} stored in {drain['drain_s']} s = {drain['drain_rate']}/s, "
                  f"{drain['cpu_us_per_event']} us CPU per event")
    print()
    summary = results["summary"]
    print(f"sink lossless rate: {summary['sink_lossless_rate']}/s (every step up to it "
          f"lossless; best single lossless step {summary['sink_lossless_rate_max']}/s)")
    for name, value in summary.items():
        if isinstance(value, dict):
            print(f"{name}: lossless {value['lossless_rate']}/s = "
                  f"{value['lossless_ratio_vs_sink']} x sink; CPU per event "
                  f"{value['cpu_per_event_ratio_vs_sink_median']} x sink (median over steps)")


# ---------------------------------------------------------------- main

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sink-only", action="store_true",
                        help="only the bare sink (no sentrypeer binary needed)")
    parser.add_argument("--engines", default="io_uring,portable")
    parser.add_argument("--rates", default="10000,50000,100000,150000,200000,250000,300000,350000",
                        help="fixed rates (per second); flat out is always added")
    parser.add_argument("--step-seconds", type=float, default=2.0)
    parser.add_argument("--drain-count", type=int, default=50000)
    parser.add_argument("--drain-rcvbuf", type=int, default=256 << 20,
                        help="SO_RCVBUF of the sink and the sensor in the drain test")
    parser.add_argument("--mix", default="options,register,invite")
    parser.add_argument("--sources", default="127.0.0.0/16")
    parser.add_argument("--source-sockets", type=int, default=64)
    parser.add_argument("--source-per-message", action="store_true",
                        help="a new source address of --sources for every datagram")
    parser.add_argument("--sender-nice", type=int, default=0,
                        help="run the sending loadgen under `nice -n N` (0: as is), e.g. 10 so "
                             "that on a shared machine it does not take CPU the sensor needs")
    parser.add_argument("--loadgen", default=os.path.join(ROOT, "target/perf/sentrypeer-loadgen"))
    parser.add_argument("--sentrypeer", default=os.path.join(ROOT, "target/perf/sentrypeer"))
    parser.add_argument("--sensor-args", default="",
                        help="extra sentrypeer arguments, e.g. '--udp-rcvbuf 268435456' so that "
                             "the drain test's pre-fill fits in the socket")
    parser.add_argument("--budget-seconds", type=float, default=570,
                        help="skip the remaining steps once this much time has passed")
    parser.add_argument("--out", default=None, help="default perf/results/<date>-ingest[-sink-only].json")
    return parser.parse_args()


def main():
    args = parse_args()
    tools = Tools(args)
    rates = [float(rate) for rate in args.rates.split(",") if rate.strip()] + [None]
    engines = [] if args.sink_only else [e for e in args.engines.split(",") if e]
    started = time.monotonic()
    date = datetime.datetime.now(datetime.timezone.utc)
    results = {
        "benchmark": "ingest",
        "date": date.isoformat(timespec="seconds"),
        "machine": machine(),
        "command": os.environ.get("INGEST_COMMAND") or
        " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "settings": {"rates": rates, "step_seconds": args.step_seconds,
                     "sensor_args": args.sensor_args,
                     "drain_count": args.drain_count, "mix": args.mix,
                     "sources": args.sources, "source_sockets": args.source_sockets,
                     "source_per_message": args.source_per_message,
                     "sender_nice": args.sender_nice},
        "targets": {},
    }
    workdir = tempfile.mkdtemp(prefix="sentrypeer-ingest-")
    skipped = []

    def within_budget(what):
        if time.monotonic() - started < args.budget_seconds:
            return True
        skipped.append(what)
        print(f"skipped {what}: over the {args.budget_seconds} s budget", file=sys.stderr)
        return False

    try:
        sink = {"steps": []}
        results["targets"]["sink"] = sink
        for rate in rates:
            sink["steps"].append(sink_step(tools, rate, args.step_seconds))
            print(f"sink {rate}: {sink['steps'][-1]}", file=sys.stderr)
        sink["drain"] = sink_drain(tools, args.drain_count, args.drain_rcvbuf)
        for engine in engines:
            target = {"steps": []}
            results["targets"][engine] = target
            try:
                for rate in rates:
                    if within_budget(f"{engine} rate {rate}"):
                        step = sensor_step(tools, engine, rate, args.step_seconds, workdir)
                        target["steps"].append(step)
                        print(f"{engine} {rate}: {step}", file=sys.stderr)
                if within_budget(f"{engine} drain"):
                    target["drain"] = sensor_drain(tools, engine, args.drain_count, workdir,
                                                   args.drain_rcvbuf)
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                target["error"] = str(error)
                print(f"{engine}: {error}", file=sys.stderr)
    finally:
        kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
    results["skipped"] = skipped
    results["summary"] = summarize(results)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    out = args.out or os.path.join(ROOT, "perf", "results",
                                   f"{date.strftime('%Y-%m-%d')}-ingest"
                                   f"{'-sink-only' if args.sink_only else ''}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    print_table(results)
    print(f"\nwrote {out} in {results['elapsed_s']} s")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        kill_all()
        sys.exit(130)
