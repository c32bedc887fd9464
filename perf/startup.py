#!/usr/bin/env python3
"""Start-up to listening (performance.md: under 100 ms), warm and cold.

    perf/startup.py [--binary PATH] [--runs N] MODE [MODE ...]

MODE is `warm` (start as is), `cold` (sync and drop the page cache before each start; needs
root) or `after-build` (touch src/main.rs and relink the perf build just before each start, as
a fresh-clone run of perf/ingest.sh starts right after its build). Each start runs the sensor as
perf/ingest.py does (`-j -l LOG -f DB --sip-listen 127.0.0.1:P -a --api-listen ... -z ...`, a
fresh store) and times it until the UDP port is bound and the API accepts, then stops it.
Loopback only. Prints one line per mode with every start's milliseconds.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingest  # noqa: E402  (free_port, udp_port_bound, tcp_accepts)

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
    workdir = tempfile.mkdtemp(prefix="startup-")
    try:
        sip_port = ingest.free_port(socket.SOCK_DGRAM)
        api_port = ingest.free_port()
        tls_port = ingest.free_port()
        args = [binary, "-j", "-l", os.path.join(workdir, "json.log"),
                "-f", os.path.join(workdir, "db"), "--sip-listen", f"127.0.0.1:{sip_port}",
                "-a", "--api-listen", f"127.0.0.1:{api_port}", "-z", f"127.0.0.1:{tls_port}"]
        started = time.monotonic()
        process = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            while not (ingest.udp_port_bound(sip_port) and ingest.tcp_accepts(api_port)):
                if process.poll() is not None:
                    raise RuntimeError(f"sentrypeer exited ({process.returncode})")
                if time.monotonic() > started + 20:
                    raise RuntimeError("sentrypeer did not start listening within 20 s")
                time.sleep(0.001)
            return round((time.monotonic() - started) * 1000, 1)
        finally:
            process.terminate()
            process.wait(timeout=20)
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
