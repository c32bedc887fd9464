#!/usr/bin/env python3
"""Markdown tables for docs/benchmarks.md from perf/ingest.sh results files.

    perf/tables.py perf/results/2026-12-02-ingest.json [...]

Prints, per file, one row per step of every sweep (older single-sweep files: their `targets`),
the median per step when the file has several sweeps, and the summary, so that the document
quotes the file and nothing else. Units: CPU in ms per 1,000 events (stored events for the
sensor, received datagrams for the sink); memory in MiB = KiB / 1024 (/proc reports KiB).
Reads only the files named; writes only to stdout.
"""

import json
import sys

COLUMNS = ["target", "rate asked /s", "achieved /s", "sent", "stored", "kernel drops",
           "app drops", "loss %", "CPU ms / 1k", "x sink", "peak VmHWM MiB", "RssAnon MiB peak",
           "RssFile MiB peak", "DB B / event", "start-up ms"]
MEMORY_COLUMNS = (11, 12)  # left out for files from before the RssAnon/RssFile sampling


def number(value, digits=0):
    if value is None:
        return "-"
    if digits:
        return f"{value:,.{digits}f}"
    return f"{round(value):,}"


def mib(kib):
    return "-" if kib is None else f"{kib / 1024:,.1f}"


def ratio_by_rate(steps, sink_steps):
    """The sensor's CPU per stored event over the sink's per datagram at the same asked rate."""
    sink = {step["rate_requested"]: step for step in sink_steps}
    ratios = {}
    for step in steps:
        other = sink.get(step["rate_requested"])
        if other and step.get("cpu_s_per_1000") and other.get("cpu_s_per_1000"):
            ratios[step["rate_requested"]] = step["cpu_s_per_1000"] / other["cpu_s_per_1000"]
    return ratios


def has_memory(targets):
    return any("memory" in step for target in targets.values() for step in target["steps"])


def rows(targets):
    sink_steps = targets.get("sink", {}).get("steps", [])
    for name, target in targets.items():
        ratios = {} if name == "sink" else ratio_by_rate(target["steps"], sink_steps)
        for step in target["steps"]:
            rate = step["rate_requested"]
            memory = step.get("memory", {})
            ratio = step.get("cpu_ratio_vs_sink") or ratios.get(rate)
            cpu = step.get("cpu_s_per_1000")
            cells = (f"| {name} | {'flat' if rate is None else number(rate)} "
                   f"| {number(step['rate_achieved'])} | {number(step['sent'])} "
                   f"| {number(step['stored'])} | {number(step['kernel_drops'])} "
                   f"| {number(step['app_drops'])} | {number(step['loss_pct'], 2)} "
                   f"| {number(None if cpu is None else cpu * 1000, 2)} "
                   f"| {number(ratio, 2)} | {mib(step.get('rss_peak_kib'))} "
                   f"| {mib(memory.get('rss_anon_kib_peak'))} "
                   f"| {mib(memory.get('rss_file_kib_peak'))} "
                   f"| {number(step.get('db_bytes_per_event'), 1)} "
                   f"| {number(step.get('startup_ms'), 1)} |").split(" | ")
            if not has_memory(targets):
                cells = [cell for index, cell in enumerate(cells) if index not in MEMORY_COLUMNS]
            yield " | ".join(cells)


def table(title, targets):
    print(f"\n{title}\n")
    columns = [column for index, column in enumerate(COLUMNS)
               if has_memory(targets) or index not in MEMORY_COLUMNS]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows(targets):
        print(row)


def summary_line(summary):
    parts = [f"sink lossless {number(summary.get('sink_lossless_rate'))}/s"]
    for name, value in summary.items():
        if isinstance(value, dict):
            parts.append(f"{name} lossless {number(value.get('lossless_rate'))}/s = "
                         f"{value.get('lossless_ratio_vs_sink')} x sink, CPU per stored event "
                         f"{value.get('cpu_per_event_ratio_vs_sink_median')} x the sink's per "
                         f"datagram (median over steps)")
    return "; ".join(parts)


def drains(targets):
    for name, target in targets.items():
        drain = target.get("drain")
        if drain and drain.get("sent"):
            print(f"- drain {name}: {number(drain['sent'])} sent, "
                  f"{number(drain['kernel_drops'])} kernel drops, {number(drain['stored'])} "
                  f"stored in {drain['drain_s']} s = {number(drain['drain_rate'])}/s, "
                  f"{drain['cpu_us_per_event']} us CPU per event")


STAGES = ["receive", "scan_event", "json", "encode", "store", "log_write", "free"]


def floor_table(median_steps):
    """The floor's time per stage and every target's sender CPU, from the median steps (files
    made with `perf/ingest.sh --floor`)."""
    floor = median_steps.get("floor", {}).get("steps", [])
    if not any("floor_stage_us_per_stored_event" in step for step in floor):
        return
    print("\nFloor, us per stored event by stage (wall time while busy; medians over the "
          "sweeps), and its CPU:\n")
    print("| rate asked /s | " + " | ".join(STAGES) + " | sum of stages | CPU |")
    print("|" + "---|" * (len(STAGES) + 3))
    for step in floor:
        stages = step.get("floor_stage_us_per_stored_event") or {}
        rate = step["rate_requested"]
        cpu = step.get("cpu_s_per_1000")
        print(f"| {'flat' if rate is None else number(rate)} | "
              + " | ".join(number(stages.get(stage), 2) for stage in STAGES)
              + f" | {number(sum(stages.get(stage) or 0 for stage in STAGES), 2)} "
              f"| {number(None if cpu is None else cpu * 1000, 2)} |")
    names = list(median_steps)
    print("\nThe sender's CPU per datagram sent (us, medians; the kernel's loopback delivery "
          "included), in each target's step:\n")
    print("| rate asked /s | " + " | ".join(names) + " |")
    print("|" + "---|" * (len(names) + 1))
    by_rate = {}
    for name in names:
        for step in median_steps[name]["steps"]:
            by_rate.setdefault(step["rate_requested"], {})[name] = step.get(
                "sender_cpu_us_per_datagram")
    for rate, senders in by_rate.items():
        print(f"| {'flat' if rate is None else number(rate)} | "
              + " | ".join(number(senders.get(name), 2) for name in names) + " |")


def confirm(check):
    """The --confirm-seconds flood: its two rows and the CPU it took against the machine's."""
    if not check:
        return
    if check.get("error"):
        print(f"\nConfirm ({check.get('engine')}): {check['error']}.")
        return
    table(f"Confirm: {number(check['seconds'])} s at {number(check['rate_requested'])}/s "
          f"(the sweeps' median lossless rate):",
          {"sink": {"steps": [check["sink"]]}, check["engine"]: {"steps": [check["sensor"]]}})
    sink, sensor = check.get("sink_cpu_budget") or {}, check.get("sensor_cpu_budget") or {}
    print(f"\n{'Lossless' if check['lossless'] else 'Lossy'}; CPU seconds per second: sensor "
          f"{sensor.get('receiver_cpus')} + sender {sensor.get('sender_cpus')} = "
          f"{sensor.get('total_cpus')} of {sensor.get('machine_cpus')} (the sink's flood: "
          f"{sink.get('receiver_cpus')} + {sink.get('sender_cpus')} = {sink.get('total_cpus')}).")


def main(paths):
    for path in paths:
        with open(path) as handle:
            results = json.load(handle)
        machine = results.get("machine", {})
        print(f"\n### `{path}`: {results['date']}, git {str(machine.get('git_sha'))[:7]}, "
              f"load {[round(x, 1) for x in machine.get('loadavg_start', [])]}, "
              f"{results.get('elapsed_s')} s, `{results.get('command')}`")
        built = results.get("binaries", {})
        if built:
            print("\nBinaries: " + ", ".join(
                f"{name} sha256 {info['sha256'][:12]} (built {info['mtime']})" if "sha256" in info
                else f"{name} {info.get('error')}"
                for name, info in built.items()) + ".")
        if results.get("build_seconds") is not None:
            print(f"Build before the measuring: {results['build_seconds']} s.")
        sweeps = results.get("sweeps") or [{"index": 1, "targets": results["targets"],
                                             "summary": results.get("summary", {})}]
        for sweep in sweeps:
            table(f"Sweep {sweep['index']} of {len(sweeps)}:", sweep["targets"])
            drains(sweep["targets"])
            print(f"\nSummary: {summary_line(sweep.get('summary', {}))}.")
        if results.get("median_steps") and len(sweeps) > 1:
            table(f"Median per step over {len(sweeps)} sweeps:", results["median_steps"])
            print(f"\nMedian summary: {summary_line(results['summary'])}.")
        floor_table(results.get("median_steps") or {})
        confirm(results.get("confirm"))
        if results.get("skipped"):
            print(f"\nSkipped (over budget): {', '.join(results['skipped'])}.")


if __name__ == "__main__":
    main(sys.argv[1:])
