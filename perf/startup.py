#!/usr/bin/env python3
"""Start-up to listening (performance.md: under 100 ms), warm and cold.

    perf/startup.py [--binary PATH] [--runs N] MODE [MODE ...]

MODE is `warm` (start as is), `cold` (sync and drop the page cache before each start; needs
root) or `after-build` (touch src/main.rs and relink the perf build just before each start, as
a fresh-clone run of perf/ingest.sh starts right after its build). Each start is perf/ingest.py's
`Sensor` (`-j -l LOG -f DB --sip-listen 127.0.0.1:P -a --api-listen ... -z ...`, a fresh store,
timed until the UDP port is bound and the API accepts, polled every 10 ms), then stopped.
Loopback only. Prints one line per mode with every start's milliseconds.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingest  # noqa: E402  (Sensor: how the ingest runs start and time the sensor)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = ["cargo", "build", "--profile", "perf", "-p", "sentrypeer", "--no-default-features",
         "--bin", "sentrypeer"]


def prepare(mode):
    if mode == "cold":
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as caches:
            caches.write("3\n")
    elif mode == "after-build":
        os.utime(os.path.join(ROOT, "src", "main.rs"))
        subprocess.run(BUILD, cwd=ROOT, stderr=subprocess.DEVNULL, check=True)


def start_once(binary):
    """One start of `ingest.Sensor` (the same flags and readiness check as the ingest runs)."""
    workdir = tempfile.mkdtemp(prefix="startup-")
    try:
        tools = types.SimpleNamespace(sentrypeer=binary, sensor_args=[])
        sensor = ingest.Sensor(tools, "io_uring", workdir)
        sensor.close()
        return sensor.startup_ms
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "perf", "sentrypeer"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("modes", nargs="+", choices=["warm", "cold", "after-build"])
    options = parser.parse_args()
    for mode in options.modes:
        times = []
        for _ in range(options.runs):
            prepare(mode)
            times.append(start_once(options.binary))
        print(f"{mode}: {times} ms")


if __name__ == "__main__":
    main()
