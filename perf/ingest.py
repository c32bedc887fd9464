#!/usr/bin/env python3
"""End-to-end UDP ingest benchmark (docs: /work/shared/spec/performance.md section 2).

For a sweep of fixed UDP rates and flat out, drive with `sentrypeer-loadgen udp`:
  (a) the bare recvmmsg sink (`sentrypeer-loadgen sink`), the loopback limit;
  (b) the release `sentrypeer` binary (-j JSON log, LMDB store, API on), for each engine
      (io_uring default, and -N portable);
  (c) with --floor, `examples/ingest_floor`: the least per-event work of (b) (scan, event, zstd
      record, JSON-log line, LMDB commit with fsync) on one thread without hand-offs, with the
      sensor's own code: a floor for (b)'s CPU per stored event, with the time of each stage.
For each step: sent, stored (or received), kernel drops (the `drops` counter of the receiver's
own sockets in /proc/net/udp; the machine-wide Udp RcvbufErrors delta of /proc/net/snmp, which
other processes' floods also raise, beside it as kernel_drops_system), app drops (events_dropped_total from /metrics when the API has it), loss %,
CPU seconds per 1,000 events (sensor: all of its threads, ended ones included, from its
process CPU-time clock in ns, per *stored* event = writer_events_committed_total read at the same
moment, with utime+stime of /proc/<pid>/stat alongside; per thread kind from
/proc/<pid>/task/*/schedstat, ended threads as "exited threads"; sink: its own getrusage, per
received datagram; the sender's CPU per datagram, from the reaped child's usage), memory
(sensor: RssAnon = heap and RssFile = file-backed pages, mostly the LMDB map, sampled from
/proc/<pid>/status through the step, peak and final, in KiB as /proc gives them; sink: its peak
RSS), database bytes per event, and (sensor) a drop timeline: the drop and commit
counters of /metrics every 0.5 s, with the second of the step at which drops began.
The sweep runs --sweeps times (default 3; the sink and the sensor alternate within each sweep,
the sender at the same priority for both); the JSON keeps every sweep, the median of every step
over the sweeps and the median of the per-sweep summaries (the headline figures).
Then a drain test per target (first sweep only): pre-fill the socket while the receiver is
stopped (SIGSTOP), SIGCONT, and time until everything is stored.
With --confirm-seconds S (issue 16's "a 60 s flood at that lossless rate stores every event"):
after the sweeps, one flood of S seconds at the first engine's median lossless rate, to the sink
and then to the sensor, and the CPU it took beside the machine's CPU count: the sensor's CPU
seconds per second (its CPU over the flood, drain included, times the achieved rate over the
datagrams sent) and the sender's (its CPU per datagram times the achieved rate).

Writes perf/results/<date>-ingest.json (or -2, -3, ... when that exists) and prints a table with
the sensor/sink ratios.
Run through perf/ingest.sh, which builds the release binaries first.

Never: sends anywhere but 127.0.0.0/8; leaves a child running (every child is killed on exit).
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
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

import tables
from binaries import identify

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


def socket_drops(port):
    """The kernel's drop counter (`drops`, last column of /proc/net/udp and udp6) summed over the
    UDP sockets bound to `port`: this receiver's own drops (a full receive buffer), unlike
    RcvbufErrors of /proc/net/snmp, which counts every socket of the machine. None when no socket
    is bound to the port (the counter goes with the socket)."""
    hex_port = f":{port:04X}"
    total, found = 0, False
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as handle:
                for line in list(handle)[1:]:
                    fields = line.split()
                    if len(fields) > 2 and fields[1].endswith(hex_port):
                        total += int(fields[-1])
                        found = True
        except (OSError, ValueError):
            pass
    return total if found else None


def proc_cpu_s(pid):
    """utime + stime of a process in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as handle:
        text = handle.read()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_cpu_precise_s(pid):
    """CPU seconds of a process, all of its threads, the ended ones included: its CPU-time clock
    (clock_gettime on the process's clock id, ns), falling back to the 10 ms ticks of
    /proc/<pid>/stat."""
    try:
        return time.clock_gettime(process_cpu_clock(pid))
    except OSError:
        return proc_cpu_s(pid)


def process_cpu_clock(pid):
    """Linux's clock id of another process's CPU time (CPUCLOCK_SCHED of the whole process, as
    clock_getcpuclockid(3) makes it)."""
    return ((~pid) << 3) | 2


def thread_cpu_ns(pid):
    """CPU ns per thread kind of a process: /proc/<pid>/task/*/schedstat summed by the thread's
    name (`comm`) with a trailing shard number dropped (`sensor-uring-0` -> `sensor-uring`), and
    "exited threads": the process's CPU clock minus its live threads (the sensor's short-lived
    dictionary thread; never below 0)."""
    by_name = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return by_name
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as handle:
                name = handle.read().strip()
            with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                ns = int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        kind = name.rstrip("0123456789").rstrip("-") or name
        by_name[kind] = by_name.get(kind, 0) + ns
    try:
        process_ns = time.clock_gettime_ns(process_cpu_clock(pid))
        by_name["exited threads"] = max(0, process_ns - sum(by_name.values()))
    except OSError:
        pass
    return by_name


def thread_cpu_us_per_event(before, after, events):
    """Microseconds of CPU per event for each thread kind between two `thread_cpu_ns` readings."""
    if not events:
        return None
    return {kind: round((ns - before.get(kind, 0)) / 1000 / events, 3)
            for kind, ns in sorted(after.items())}


def proc_hwm_kib(pid):
    return proc_status_kib(pid).get("VmHWM")


def proc_status_kib(pid):
    """The kB fields of /proc/<pid>/status that matter here (the kernel's kB are KiB)."""
    wanted = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")
    values = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                name = line.split(":", 1)[0]
                if name in wanted:
                    values[name] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return values


def kib_to_mib(kib):
    return None if kib is None else round(kib / 1024, 1)


class PeriodicSampler:
    """Calls self.sample() every `interval_s` in a thread, from construction until halt(); the
    subclass sets its own fields before calling this __init__ and appends to self.samples."""

    def __init__(self, interval_s):
        self.interval_s = interval_s
        self.samples = []
        self.started = time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def seconds(self):
        return round(time.monotonic() - self.started, 2)

    def run(self):
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval_s)

    def halt(self):
        self.done.set()
        self.thread.join(5)


class MemorySampler(PeriodicSampler):
    """Samples RssAnon (the heap), RssFile (file-backed pages: the LMDB map, the binary) and
    VmRSS of a process every `interval_s` in a thread, until stop(); keeps peak and final.
    Samples: (seconds since start, RssAnon KiB, RssFile KiB, VmRSS KiB)."""

    def __init__(self, pid, interval_s=0.25):
        self.pid = pid
        super().__init__(interval_s)

    def sample(self):
        values = proc_status_kib(self.pid)
        if "RssAnon" in values:
            self.samples.append((self.seconds(), values["RssAnon"], values.get("RssFile"),
                                 values.get("VmRSS")))

    def stop(self):
        """Takes a last sample, stops the thread and returns the summary (KiB, and MiB = /1024)."""
        self.halt()
        self.sample()
        if not self.samples:
            return {"samples": 0}
        anon = [sample[1] for sample in self.samples]
        file_backed = [sample[2] for sample in self.samples if sample[2] is not None]
        every = max(1, len(self.samples) // 120)  # at most ~120 points kept in the JSON
        return {
            "samples": len(self.samples),
            "interval_s": self.interval_s,
            "rss_anon_kib_peak": max(anon),
            "rss_anon_kib_final": anon[-1],
            "rss_anon_kib_first": anon[0],
            "rss_file_kib_peak": max(file_backed, default=None),
            "rss_file_kib_final": file_backed[-1] if file_backed else None,
            "rss_anon_mib_peak": kib_to_mib(max(anon)),
            "rss_anon_mib_final": kib_to_mib(anon[-1]),
            "rss_file_mib_peak": kib_to_mib(max(file_backed, default=None)),
            "rss_file_mib_final": kib_to_mib(file_backed[-1] if file_backed else None),
            "series_s_anon_file_vmrss_kib": series_with_last(self.samples, every),
        }


class DropSampler(PeriodicSampler):
    """Reads the sensor's drop and commit counters from /metrics every `interval_s` in a thread,
    until stop(): when in the step the drops began, and how the writer kept pace. Samples:
    (seconds since start, events_dropped_total, events committed)."""

    def __init__(self, sensor, interval_s=0.5):
        self.sensor = sensor
        super().__init__(interval_s)

    def sample(self):
        values = self.sensor.metrics()
        if "events_dropped_total" in values:
            self.samples.append((self.seconds(), int(values["events_dropped_total"]),
                                 int(values.get("writer_events_committed_total", 0))))

    def stop(self):
        """Stops the thread; returns the first sample with drops and the series (~120 points)."""
        self.halt()
        if not self.samples:
            return {"samples": 0}
        dropping = [sample for sample in self.samples if sample[1] > self.samples[0][1]]
        every = max(1, len(self.samples) // 120)
        return {
            "samples": len(self.samples),
            "interval_s": self.interval_s,
            "first_drop_s": dropping[0][0] if dropping else None,
            "series_s_dropped_committed": series_with_last(self.samples, every),
        }


def series_with_last(samples, every):
    """Every `every`-th sample, and the last one."""
    series = samples[::every]
    if series[-1] is not samples[-1]:
        series.append(samples[-1])
    return series


def unused_path(path):
    """`path`, or the first of path-2, path-3, ... (before the extension) that does not exist: a
    second run of the day keeps the first one's file."""
    stem, extension = os.path.splitext(path)
    candidate, number = path, 1
    while os.path.exists(candidate):
        number += 1
        candidate = f"{stem}-{number}{extension}"
    return candidate


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


def binaries(args, engines):
    """The binaries this run starts, identified (perf/binaries.py)."""
    paths = {"loadgen": args.loadgen}
    if engines:
        paths["sentrypeer"] = args.sentrypeer
    if args.floor:
        paths["floor"] = args.floor_binary
    return identify(paths)


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
        self.floor = args.floor_binary
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
        # The sender's CPU: the only child reaped while it runs (receivers end after it), so
        # the delta of the reaped children's usage is its own. On loopback it includes the
        # kernel's delivery of each datagram into the receiver's socket.
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"loadgen failed: {done.stderr.strip()}")
        sent = json.loads(done.stdout)
        sent["cpu_s"] = round(children_after.ru_utime + children_after.ru_stime
                              - children_before.ru_utime - children_before.ru_stime, 4)
        return sent

    def start_sink(self, extra):
        return self.start_receiver([self.loadgen, "sink"], extra)

    def start_floor(self, extra, workdir):
        """`examples/ingest_floor` with its store and log in a new directory under `workdir`."""
        directory = tempfile.mkdtemp(prefix="floor-", dir=workdir)
        return self.start_receiver([self.floor, "--dir", directory], extra)

    def start_receiver(self, command, extra):
        process = spawn(command + ["--listen", "127.0.0.1:0", "--json"] + extra,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = read_line_with_deadline(process.stderr, 10)
        match = re.search(r":(\d+)\s*$", line or "")
        if not match:
            raise RuntimeError(f"{command[0]} did not announce its address: {line!r}")
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


def finish_receiver(process, timeout):
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


def sender_cpu_us(sent):
    """The sender's CPU per datagram sent (us), its kernel delivery on loopback included."""
    return round(1e6 * sent["cpu_s"] / sent["sent"], 3) if sent.get("sent") else None


def sink_step(tools, rate, seconds):
    return receiver_step(tools.start_sink, tools, rate, seconds)


def floor_step(tools, rate, seconds, workdir):
    return receiver_step(lambda extra: tools.start_floor(extra, workdir), tools, rate, seconds)


def receiver_step(start, tools, rate, seconds):
    """One step of the sink or the floor: both announce their port, end --idle 1 s after the
    last datagram and print a JSON report."""
    started = time.monotonic()
    snmp_before = snmp_udp()
    receiver, port = start(["--idle", "1", "--duration", str(seconds + 60)])
    sent = tools.send(port, **step_counts(rate, seconds))
    # Read while the receiver still idles (--idle 1 after the last datagram): its socket's drops.
    drops = socket_drops(port)
    got = finish_receiver(receiver, timeout=30)
    drops_system = snmp_udp()["RcvbufErrors"] - snmp_before["RcvbufErrors"]
    floor = "stored" in got
    stored = got["stored"] if floor else got["received"]
    result = {
        "rate_requested": rate,
        "sent": sent["sent"],
        "rate_achieved": round(sent["rate_achieved"]),
        "sender_cpu_us_per_datagram": sender_cpu_us(sent),
        "stored": stored,
        "kernel_drops": drops if drops is not None else drops_system,
        "kernel_drops_system": drops_system,
        "app_drops": 0,
        "loss_pct": loss_pct(sent["sent"], stored),
        "cpu_s": got["cpu_s"],
        "cpu_s_per_1000": round(1000 * got["cpu_s"] / stored, 5) if stored else None,
        "cpu_per": ("stored event (the floor's process CPU, its dictionary training left out)"
                    if floor else "received datagram (the sink's getrusage, whole process)"),
        "rss_peak_kib": got["rss_peak_kib"],
        "db_bytes_per_event": round(got["db_bytes"] / stored, 1) if floor and stored else None,
        "wall_s": round(time.monotonic() - started, 2),
    }
    if floor:
        result["floor"] = {key: got[key] for key in ("received", "not_requests", "commits",
                                                     "training_cpu_s",
                                                     "stage_us_per_stored_event", "log_bytes")}
    return result


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

    def metrics(self):
        """The sentrypeer_* counters of /metrics as {name without prefix: value} ({} if the API
        does not answer). Labelled series of one name are summed."""
        try:
            url = f"http://127.0.0.1:{self.api_port}/metrics"
            text = urllib.request.urlopen(url, timeout=2).read().decode()
        except (OSError, ValueError):
            return {}
        values = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name = line.split("{")[0].split()[0].removeprefix("sentrypeer_")
            try:
                values[name] = values.get(name, 0) + float(line.split()[-1])
            except ValueError:
                continue
        return values

    def app_drops(self, metrics=None):
        """events_dropped_total from /metrics, or None if the API does not expose it."""
        metrics = self.metrics() if metrics is None else metrics
        value = metrics.get("events_dropped_total")
        return None if value is None else int(value)

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
    started = time.monotonic()
    sensor = Sensor(tools, engine, workdir)
    sampler = MemorySampler(sensor.process.pid)
    drop_sampler = DropSampler(sensor)
    try:
        committed_before = sensor.metrics().get("writer_events_committed_total", 0)
        cpu_before = proc_cpu_s(sensor.process.pid)
        cpu_precise_before = proc_cpu_precise_s(sensor.process.pid)
        threads_before = thread_cpu_ns(sensor.process.pid)
        snmp_before = snmp_udp()
        sent = tools.send(sensor.sip_port, **step_counts(rate, seconds))
        stored = sensor.wait_stored(sent["sent"])
        drops = socket_drops(sensor.sip_port)
        drops_system = snmp_udp()["RcvbufErrors"] - snmp_before["RcvbufErrors"]
        # CPU and the committed count at the same moment: CPU per *stored* event.
        cpu_ticks = proc_cpu_s(sensor.process.pid) - cpu_before
        cpu = proc_cpu_precise_s(sensor.process.pid) - cpu_precise_before
        threads_after = thread_cpu_ns(sensor.process.pid)
        metrics = sensor.metrics()
        hwm = proc_hwm_kib(sensor.process.pid)
        memory = sampler.stop()
        drop_timeline = drop_sampler.stop()
    finally:
        sampler.done.set()
        drop_sampler.done.set()
        exit_code = sensor.close()
    committed = metrics.get("writer_events_committed_total")
    committed = None if committed is None else int(committed - committed_before)
    stored_final = tools.stored(sensor.db)
    db_bytes = allocated_bytes(sensor.db)
    per_event = committed if committed is not None else stored
    result = {
        "rate_requested": rate,
        "sent": sent["sent"],
        "rate_achieved": round(sent["rate_achieved"]),
        "sender_cpu_us_per_datagram": sender_cpu_us(sent),
        "stored": stored_final,
        "stored_before_exit": stored,
        "committed_at_cpu_reading": committed,
        "kernel_drops": drops if drops is not None else drops_system,
        "kernel_drops_system": drops_system,
        "app_drops": sensor.app_drops(metrics),
        "loss_pct": loss_pct(sent["sent"], stored_final),
        "cpu_s": round(cpu, 4),
        "cpu_s_stat": round(cpu_ticks, 2),
        "cpu_s_per_1000": round(1000 * cpu / per_event, 5) if per_event else None,
        "cpu_per": "stored event (writer_events_committed_total at the CPU reading), all threads",
        "cpu_us_per_event_by_thread": thread_cpu_us_per_event(threads_before, threads_after,
                                                              per_event),
        "rss_peak_kib": hwm,
        "memory": memory,
        "drop_timeline": drop_timeline,
        "db_bytes": db_bytes,
        "db_bytes_per_event": round(db_bytes / stored_final, 1) if stored_final else None,
        "startup_ms": sensor.startup_ms,
        "exit_code": exit_code,
        "stderr_head": sensor.stderr_head,
        "wall_s": round(time.monotonic() - started, 2),
    }
    shutil.rmtree(sensor.dir, ignore_errors=True)
    return result


def sink_drain(tools, count, rcvbuf):
    snmp_before = snmp_udp()
    sink, port = tools.start_sink(["--idle", "2", "--duration", "120", "--rcvbuf", str(rcvbuf)])
    os.kill(sink.pid, signal.SIGSTOP)
    sent = tools.send(port, count=count)
    time.sleep(0.2)
    drops = socket_drops(port)
    if drops is None:
        drops = snmp_udp()["RcvbufErrors"] - snmp_before["RcvbufErrors"]
    os.kill(sink.pid, signal.SIGCONT)
    got = finish_receiver(sink, timeout=60)
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
        drops = socket_drops(sensor.sip_port)
        if drops is None:
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


def step_key(step):
    return "flat" if step["rate_requested"] is None else step["rate_requested"]


def lossless_step(steps):
    """The step that sets the lossless rate: the highest achieved rate among the steps before
    the first lossy one (steps run in rising order, flat out last). A rate counts only if every
    lower rate was lossless too, so one lucky step on a noisy machine does not set the figure."""
    best = None
    for step in steps:
        if not is_lossless(step):
            break
        if best is None or step["rate_achieved"] > best["rate_achieved"]:
            best = step
    return best


def lossless_rate(steps):
    best = lossless_step(steps)
    return best["rate_achieved"] if best else 0


def lossless_rate_max(steps):
    """Highest achieved rate of any lossless step (for reference; noisier)."""
    return max((step["rate_achieved"] for step in steps if is_lossless(step)), default=0)


def cpu_ratios(steps, sink_steps):
    """Per step: the sensor's CPU per stored event over the sink's CPU per received datagram at
    the same asked rate in the same sweep (matched by rate, not by position)."""
    sink_by_rate = {step_key(step): step for step in sink_steps}
    ratios = {}
    for step in steps:
        sink = sink_by_rate.get(step_key(step))
        if sink and step["cpu_s_per_1000"] and sink["cpu_s_per_1000"]:
            ratios[step_key(step)] = round(step["cpu_s_per_1000"] / sink["cpu_s_per_1000"], 2)
    return ratios


def memory_peaks(steps):
    def peak(field):
        values = [step.get("memory", {}).get(field) for step in steps]
        return max((value for value in values if value is not None), default=None)
    anon, file_backed = peak("rss_anon_kib_peak"), peak("rss_file_kib_peak")
    return {"rss_anon_kib_peak": anon, "rss_anon_mib_peak": kib_to_mib(anon),
            "rss_file_kib_peak": file_backed, "rss_file_mib_peak": kib_to_mib(file_backed)}


def summarize(targets):
    """One sweep's summary; also writes each sensor step's `cpu_ratio_vs_sink`."""
    sink = targets.get("sink", {"steps": []})
    sink_rate = lossless_rate(sink["steps"])
    summary = {"sink_lossless_rate": sink_rate,
               "sink_lossless_rate_max": lossless_rate_max(sink["steps"])}
    for name, target in targets.items():
        if name == "sink":
            continue
        ratios = cpu_ratios(target["steps"], sink["steps"])
        for step in target["steps"]:
            step["cpu_ratio_vs_sink"] = ratios.get(step_key(step))
        best = lossless_step(target["steps"])
        summary[name] = {
            "lossless_rate": lossless_rate(target["steps"]),
            "lossless_rate_max": lossless_rate_max(target["steps"]),
            "lossless_ratio_vs_sink": round(lossless_rate(target["steps"]) / sink_rate, 3)
            if sink_rate else None,
            "cpu_per_event_ratio_vs_sink_median": round(statistics.median(ratios.values()), 2)
            if ratios else None,
            "cpu_per_event_ratio_vs_sink_at_lossless_rate":
                ratios.get(step_key(best)) if best else None,
            **memory_peaks(target["steps"]),
        }
    return summary


def median_of(values):
    numbers = [value for value in values if isinstance(value, (int, float))
               and not isinstance(value, bool)]
    if not numbers:
        return None
    middle = statistics.median(numbers)
    if all(isinstance(value, int) for value in numbers):
        return round(middle)  # counts stay whole (an even number of sweeps averages two)
    return round(middle, 5)


MEDIAN_STEP_FIELDS = ("sent", "rate_achieved", "stored", "kernel_drops", "app_drops", "loss_pct",
                      "cpu_s", "cpu_s_per_1000", "cpu_ratio_vs_sink", "rss_peak_kib",
                      "db_bytes_per_event", "startup_ms", "wall_s", "sender_cpu_us_per_datagram")
MEDIAN_MEMORY_FIELDS = ("rss_anon_kib_peak", "rss_anon_kib_final", "rss_file_kib_peak",
                        "rss_file_kib_final")


def median_steps(sweeps):
    """Per target and asked rate: the median of each figure over the sweeps that ran it."""
    grouped = {}
    for sweep in sweeps:
        for name, target in sweep["targets"].items():
            for step in target["steps"]:
                grouped.setdefault(name, {}).setdefault(step_key(step), []).append(step)
    medians = {}
    for name, by_rate in grouped.items():
        medians[name] = {"steps": []}
        for key, steps in by_rate.items():
            step = {"rate_requested": None if key == "flat" else key, "sweeps": len(steps)}
            for field in MEDIAN_STEP_FIELDS:
                step[field] = median_of([one.get(field) for one in steps])
            memory = {field: median_of([one.get("memory", {}).get(field) for one in steps])
                      for field in MEDIAN_MEMORY_FIELDS}
            if any(value is not None for value in memory.values()):
                step["memory"] = memory
            stages = [one["floor"]["stage_us_per_stored_event"] for one in steps if "floor" in one]
            if stages:
                step["floor_stage_us_per_stored_event"] = {
                    stage: median_of([one.get(stage) for one in stages]) for stage in stages[0]}
            medians[name]["steps"].append(step)
    return medians


def counted_sweeps(sweeps, steps_per_target):
    """The sweeps whose targets all ran every step; if there is none, those with any step (a
    sweep cut short by the budget would pull the median down)."""
    def complete(sweep):
        return all(len(target["steps"]) == steps_per_target
                   for target in sweep["targets"].values())
    full = [sweep for sweep in sweeps if complete(sweep)]
    return full or [sweep for sweep in sweeps
                    if any(target["steps"] for target in sweep["targets"].values())]


def median_tree(summaries):
    """The median of every number in a list of same-shaped summaries."""
    first = next((one for one in summaries if one is not None), None)
    if isinstance(first, dict):
        return {key: median_tree([one.get(key) for one in summaries if isinstance(one, dict)])
                for key in first}
    return median_of(summaries)


def print_table(results):
    header = (f"{'target':<10} {'rate req':>9} {'sent':>9} {'achieved/s':>10} {'stored':>9} "
              f"{'kdrops':>7} {'adrops':>7} {'loss%':>7} {'cpu s/1k':>9} {'x sink':>6} "
              f"{'anon MiB':>8} {'file MiB':>8} {'db B/ev':>8} {'sender us':>9}")
    sweeps = len(results["sweeps"])
    print(f"median of {sweeps} sweep(s) per step (every sweep is in the JSON):")
    print(header)
    print("-" * len(header))
    for name, target in results["median_steps"].items():
        for step in target["steps"]:
            memory = step.get("memory", {})

            def shown(value):
                return "-" if value is None else value
            rate = "flat" if step["rate_requested"] is None else f"{step['rate_requested']:.0f}"
            print(f"{name:<10} {rate:>9} {step['sent']:>9} {step['rate_achieved']:>10} "
                  f"{step['stored']:>9} {step['kernel_drops']:>7} {shown(step['app_drops']):>7} "
                  f"{step['loss_pct']:>7} {shown(step['cpu_s_per_1000']):>9} "
                  f"{shown(step.get('cpu_ratio_vs_sink')):>6} "
                  f"{shown(kib_to_mib(memory.get('rss_anon_kib_peak'))):>8} "
                  f"{shown(kib_to_mib(memory.get('rss_file_kib_peak'))):>8} "
                  f"{shown(step['db_bytes_per_event']):>8} "
                  f"{shown(step.get('sender_cpu_us_per_datagram')):>9}")
    for name, target in results["median_steps"].items():
        for step in target["steps"]:
            stages = step.get("floor_stage_us_per_stored_event")
            if stages:
                rate = "flat" if step["rate_requested"] is None else f"{step['rate_requested']:.0f}"
                print(f"{name} {rate}: us per stored event by stage (medians): "
                      + ", ".join(f"{stage} {value}" for stage, value in sorted(stages.items())))
    for sweep in results["sweeps"]:
        for name, target in sweep["targets"].items():
            if target.get("error"):
                print(f"sweep {sweep['index']} {name}: error: {target['error']}")
            drain = target.get("drain")
            if drain:
                print(f"sweep {sweep['index']} {name} drain: {drain['sent']} sent, "
                      f"{drain['kernel_drops']} kernel drops, {drain['stored']} stored in "
                      f"{drain['drain_s']} s = {drain['drain_rate']}/s, "
                      f"{drain['cpu_us_per_event']} us CPU per event")
    print()
    # The --confirm-seconds flood, as perf/tables.py prints it.
    tables.confirm(results.get("confirm"))
    print()
    for label, summary in [(f"sweep {sweep['index']}", sweep["summary"])
                           for sweep in results["sweeps"]] + [("MEDIAN", results["summary"])]:
        print(f"{label}: sink lossless {summary.get('sink_lossless_rate')}/s")
        for name, value in summary.items():
            if isinstance(value, dict):
                print(f"  {name}: lossless {value['lossless_rate']}/s = "
                      f"{value['lossless_ratio_vs_sink']} x sink; CPU per stored event "
                      f"{value['cpu_per_event_ratio_vs_sink_median']} x sink per datagram "
                      f"(median over steps; "
                      f"{value['cpu_per_event_ratio_vs_sink_at_lossless_rate']} x at the "
                      f"lossless step); RssAnon peak {value['rss_anon_mib_peak']} MiB, "
                      f"RssFile peak {value['rss_file_mib_peak']} MiB")


# ---------------------------------------------------------------- main

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sink-only", action="store_true",
                        help="only the bare sink (no sentrypeer binary needed)")
    parser.add_argument("--floor", action="store_true",
                        help="also run examples/ingest_floor (the least per-event work on one "
                             "thread) at every step, after the sink")
    parser.add_argument("--engines", default="io_uring,portable")
    parser.add_argument("--rates", default="50000,100000,150000,200000,250000",
                        help="fixed rates (per second); flat out is always added")
    parser.add_argument("--step-seconds", type=float, default=2.0)
    parser.add_argument("--sweeps", type=int, default=3,
                        help="run the whole sweep N times; the summary is the median")
    parser.add_argument("--drain-count", type=int, default=50000)
    parser.add_argument("--drain-rcvbuf", type=int, default=256 << 20,
                        help="SO_RCVBUF of the sink and the sensor in the drain test")
    parser.add_argument("--mix", default="options,register,invite")
    parser.add_argument("--sources", default="127.0.0.0/16")
    parser.add_argument("--source-sockets", type=int, default=64)
    parser.add_argument("--source-per-message", action="store_true",
                        help="a new source address of --sources for every datagram")
    parser.add_argument("--sender-nice", type=int, default=0,
                        help="run the sending loadgen (for the sink and the sensor alike) under "
                             "`nice -n N`; 0 (default): the same priority as the receivers")
    target = os.path.abspath(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"))
    parser.add_argument("--loadgen", default=os.path.join(target, "perf/sentrypeer-loadgen"))
    parser.add_argument("--sentrypeer", default=os.path.join(target, "perf/sentrypeer"))
    parser.add_argument("--floor-binary",
                        default=os.path.join(target, "perf/examples/ingest_floor"))
    parser.add_argument("--sensor-args", default="",
                        help="extra sentrypeer arguments, e.g. '--udp-rcvbuf 268435456' so that "
                             "the drain test's pre-fill fits in the socket")
    parser.add_argument("--budget-seconds", type=float, default=570,
                        help="start no new step once this much time has passed since the "
                             "measuring began (after perf/ingest.sh's build)")
    parser.add_argument("--confirm-seconds", type=float, default=0,
                        help="after the sweeps, a flood of this many seconds at the first "
                             "engine's median lossless rate (sink, then sensor); 0 (default): "
                             "none; not counted in --budget-seconds")
    parser.add_argument("--out", default=None,
                        help="default perf/results/<date>-ingest[-sink-only][-N].json (a new file)")
    return parser.parse_args()


def cpu_budget(step):
    """CPU seconds per second of a flood: the receiver's (all of its CPU over the flood, drain
    included, at the achieved rate) and the sender's, against the machine's CPUs."""
    rate, sent = step["rate_achieved"], step["sent"]
    if not rate or not sent or step.get("sender_cpu_us_per_datagram") is None:
        return None
    receiver = step["cpu_s"] * rate / sent
    sender = step["sender_cpu_us_per_datagram"] * rate / 1e6
    return {"receiver_cpus": round(receiver, 3), "sender_cpus": round(sender, 3),
            "total_cpus": round(receiver + sender, 3), "machine_cpus": os.cpu_count()}


def confirm(tools, args, engine, rate, workdir):
    """--confirm-seconds: the sink, then the sensor, for that long at the sweeps' lossless rate."""
    sink = sink_step(tools, rate, args.confirm_seconds)
    print(f"confirm sink {rate}: {sink}", file=sys.stderr)
    sensor = sensor_step(tools, engine, rate, args.confirm_seconds, workdir)
    print(f"confirm {engine} {rate}: {sensor}", file=sys.stderr)
    ratio = (round(sensor["cpu_s_per_1000"] / sink["cpu_s_per_1000"], 2)
             if sensor["cpu_s_per_1000"] and sink["cpu_s_per_1000"] else None)
    return {"engine": engine, "rate_requested": rate, "seconds": args.confirm_seconds,
            "lossless": is_lossless(sensor), "cpu_ratio_vs_sink": ratio,
            "sink_cpu_budget": cpu_budget(sink), "sensor_cpu_budget": cpu_budget(sensor),
            "sink": sink, "sensor": sensor}


def run_sweep(tools, args, rates, engines, workdir, sweep, within_budget):
    """One sweep: at each asked rate the sink, then each engine (the same sender, the same
    priority); the drain tests after the steps when `sweep` is the first."""
    targets = sweep["targets"]
    targets["sink"] = {"steps": []}
    if args.floor:
        targets["floor"] = {"steps": []}
    for engine in engines:
        targets[engine] = {"steps": []}
    label = f"sweep {sweep['index']}"
    for rate in rates:
        if not within_budget(f"{label} rate {rate}"):
            continue
        targets["sink"]["steps"].append(sink_step(tools, rate, args.step_seconds))
        print(f"{label} sink {rate}: {targets['sink']['steps'][-1]}", file=sys.stderr)
        if args.floor:
            targets["floor"]["steps"].append(floor_step(tools, rate, args.step_seconds, workdir))
            print(f"{label} floor {rate}: {targets['floor']['steps'][-1]}", file=sys.stderr)
        for engine in engines:
            if targets[engine].get("error"):
                continue
            try:
                step = sensor_step(tools, engine, rate, args.step_seconds, workdir)
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                targets[engine]["error"] = str(error)
                print(f"{label} {engine}: {error}", file=sys.stderr)
                continue
            targets[engine]["steps"].append(step)
            print(f"{label} {engine} {rate}: {step}", file=sys.stderr)
    if sweep["index"] != 1 or args.drain_count <= 0:
        return
    targets["sink"]["drain"] = sink_drain(tools, args.drain_count, args.drain_rcvbuf)
    for engine in engines:
        if not targets[engine].get("error") and within_budget(f"{engine} drain"):
            try:
                targets[engine]["drain"] = sensor_drain(tools, engine, args.drain_count,
                                                        workdir, args.drain_rcvbuf)
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                targets[engine]["error"] = str(error)
                print(f"{label} {engine} drain: {error}", file=sys.stderr)


def summarize_all(results, steps_per_target):
    """The median per step and the headline summary: the median of the counted sweeps' own."""
    results["median_steps"] = median_steps(results["sweeps"])
    counted = counted_sweeps(results["sweeps"], steps_per_target)
    results["summary"] = median_tree([sweep["summary"] for sweep in counted]) if counted else {}
    results["summary"]["sweeps"] = len(results["sweeps"])
    results["summary"]["sweeps_counted"] = [sweep["index"] for sweep in counted]
    results["summary"]["note"] = ("median over the counted sweeps (complete ones; if none is "
                                  "complete, those with any step) of each sweep's own summary")


def main():
    args = parse_args()
    tools = Tools(args)
    rates = [float(rate) for rate in args.rates.split(",") if rate.strip()] + [None]
    engines = [] if args.sink_only else [e for e in args.engines.split(",") if e]
    started = time.monotonic()
    budget_started = time.time()
    build_seconds = os.environ.get("INGEST_BUILD_SECONDS")
    date = datetime.datetime.now(datetime.timezone.utc)
    results = {
        "benchmark": "ingest",
        "date": date.isoformat(timespec="seconds"),
        "machine": machine(),
        "command": os.environ.get("INGEST_COMMAND") or
        " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "settings": {"rates": rates, "step_seconds": args.step_seconds, "sweeps": args.sweeps,
                     "sensor_args": args.sensor_args,
                     "drain_count": args.drain_count, "mix": args.mix,
                     "sources": args.sources, "source_sockets": args.source_sockets,
                     "source_per_message": args.source_per_message,
                     "sender_nice": args.sender_nice, "floor": args.floor,
                     "confirm_seconds": args.confirm_seconds,
                     "loadgen": args.loadgen, "sentrypeer": args.sentrypeer},
        "binaries": binaries(args, engines),
        "build_seconds": int(build_seconds) if build_seconds else None,
        "units": {"rss_*_kib": "KiB as in /proc/<pid>/status", "rss_*_mib": "KiB / 1024",
                  "cpu_s_per_1000": "CPU seconds per 1,000 stored events (sensor, all threads) "
                                    "or received datagrams (sink)"},
        "sweeps": [],
    }
    workdir = tempfile.mkdtemp(prefix="sentrypeer-ingest-")
    skipped = []

    def within_budget(what):
        if time.time() - budget_started < args.budget_seconds:
            return True
        skipped.append(what)
        print(f"skipped {what}: over the {args.budget_seconds} s budget", file=sys.stderr)
        return False

    try:
        for index in range(1, args.sweeps + 1):
            sweep = {"index": index, "targets": {}}
            results["sweeps"].append(sweep)
            sweep_started = time.monotonic()
            run_sweep(tools, args, rates, engines, workdir, sweep, within_budget)
            sweep["summary"] = summarize(sweep["targets"])
            sweep["elapsed_s"] = round(time.monotonic() - sweep_started, 1)
        summarize_all(results, len(rates))
        if args.confirm_seconds > 0 and engines:
            rate = results["summary"].get(engines[0], {}).get("lossless_rate")
            if rate:
                try:
                    results["confirm"] = confirm(tools, args, engines[0], rate, workdir)
                except (RuntimeError, OSError, subprocess.SubprocessError, KeyError,
                        TypeError) as error:
                    results["confirm"] = {"engine": engines[0], "error": str(error)}
            else:
                results["confirm"] = {"engine": engines[0], "error": "no lossless rate"}
    finally:
        kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
    results["skipped"] = skipped
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    out = args.out or unused_path(os.path.join(ROOT, "perf", "results",
                                               f"{date.strftime('%Y-%m-%d')}-ingest"
                                               f"{'-sink-only' if args.sink_only else ''}.json"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
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
