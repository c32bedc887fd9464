#!/usr/bin/env python3
"""Times the dashboard of a running sensor (performance.md: first load under 300 ms, each
endpoint p99 under 10 ms on a 1M-event store while a UDP flood runs). Used by perf/dashboard.sh.

    perf/dashboard.py --api 127.0.0.1:PORT --out FILE [--loads N] [--requests N]

First load: what the page fetches before it shows data (index, app.js, app.css, icon.svg, then
summary, series?window=1h, top for every dimension, feed), one after another on one keep-alive
connection, timed end to end; a browser fetches in parallel and then renders, which this does
not time. Endpoints: REQUESTS GETs each on one keep-alive connection, p50/p99/max. The detail
routes use the busiest IP and number of the last hour (from /dashboard/api/top). Loopback only.
"""

import argparse
import http.client
import json
import statistics
import time

DIMENSIONS = ["ip", "number", "user_agent", "method", "transport", "country", "asn"]
ASSETS = ["/dashboard", "/dashboard/app.js", "/dashboard/app.css", "/dashboard/icon.svg"]
FIRST_LOAD = ASSETS + ["/dashboard/api/summary", "/dashboard/api/series?window=1h"] + [
    f"/dashboard/api/top?dimension={d}&window=1h" for d in DIMENSIONS
] + ["/dashboard/api/feed"]


def get(conn, path):
    """One GET; returns (status, body). Raises on a transport error."""
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def percentile(sorted_values, fraction):
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def time_path(conn, path, count):
    took_ms = []
    statuses = {}
    for _ in range(count):
        started = time.perf_counter()
        status, _ = get(conn, path)
        took_ms.append((time.perf_counter() - started) * 1000.0)
        statuses[status] = statuses.get(status, 0) + 1
    took_ms.sort()
    return {
        "path": path,
        "requests": count,
        "statuses": {str(k): v for k, v in statuses.items()},
        "p50_ms": round(percentile(took_ms, 0.50), 3),
        "p99_ms": round(percentile(took_ms, 0.99), 3),
        "max_ms": round(took_ms[-1], 3),
    }


def first_loads(host, port, loads):
    took_ms = []
    for _ in range(loads):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        started = time.perf_counter()
        for path in FIRST_LOAD:
            status, _ = get(conn, path)
            if status != 200:
                raise SystemExit(f"dashboard.py: {path} answered {status}")
        took_ms.append((time.perf_counter() - started) * 1000.0)
        conn.close()
    ordered = sorted(took_ms)
    return {
        "paths": FIRST_LOAD,
        "runs_ms": [round(v, 3) for v in took_ms],
        "median_ms": round(statistics.median(took_ms), 3),
        "max_ms": round(ordered[-1], 3),
    }


def endpoint_paths(conn):
    paths = ["/dashboard/api/summary", "/dashboard/api/feed"]
    for window in ["1h", "7d", "90d"]:
        paths.append(f"/dashboard/api/series?window={window}")
        paths += [f"/dashboard/api/top?dimension={d}&window={window}" for d in DIMENSIONS]
    for dimension, route in [("ip", "ip"), ("number", "number")]:
        _, body = get(conn, f"/dashboard/api/top?dimension={dimension}&window=1h")
        items = json.loads(body)["items"]
        if items:
            paths.append(f"/dashboard/api/{route}/{items[0]['key']}")
    _, body = get(conn, "/dashboard/api/feed")
    paths.append(f"/dashboard/api/feed?after={json.loads(body)['cursor']}")
    return paths


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    host, port = args.api.rsplit(":", 1)
    if not host.startswith("127.") and host != "::1":
        raise SystemExit("dashboard.py: loopback only")
    first = first_loads(host, int(port), args.loads)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    endpoints = [time_path(conn, path, args.requests) for path in endpoint_paths(conn)]
    worst = max(endpoints, key=lambda e: e["p99_ms"])
    result = {
        "first_load": first,
        "endpoints": endpoints,
        "bars": {
            "first_load_median_ms": first["median_ms"],
            "first_load_bar_ms": 300,
            "endpoint_p99_worst_ms": worst["p99_ms"],
            "endpoint_p99_worst_path": worst["path"],
            "endpoint_p99_bar_ms": 10,
        },
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result["bars"]))


if __name__ == "__main__":
    main()
