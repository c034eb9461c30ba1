"""Where a real service's time goes under ZeroMQ ingest: a py-spy flame graph and a self-time table.

No target: this is the profile the ingest work is steered by.

How
    Starts ``servertrack serve`` (durable store in a temporary data dir unless
    ``--store memory``), drives it with ``bench/loadgen.py`` at ``--rate``
    samples/s from ``--servers`` servers, waits ``--settle`` seconds (every
    server seen, the first touches done), then samples the service with
    py-spy for ``--seconds`` (all threads, native frames off, 200 Hz):
    ``--out``.svg is the flame graph, and the same samples in py-spy's raw
    format give a table of the functions with the most self time and of the
    subsystems they belong to (reader, apply, store threads, HTTP, GC...).
    It also prints the service's CPU share and the samples applied per second
    over the profiled window. py-spy is not a dependency: ``pip install
    py-spy`` (it needs ptrace rights: root, or ``kernel.yama.ptrace_scope=0``).

Usage
    python bench/profile_ingest.py --rate 200000 --seconds 15 --out /tmp/ingest
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time

# Subsystems, by the first matching part of a stack (outermost function last wins: checked innermost first).
SUBSYSTEMS = (
    ("store threads", ("StoreWorker._run",)),
    ("range readers", ("LoadHistory",)),
    ("ingest reader", ("IngestReader.",)),
    ("batch apply", ("BatchApplier.",)),
    ("HTTP", ("tornado", "RequestHandler", "HTTP1")),
    ("event loop", ("_run_once", "select")),
)


def subsystem(stack: str) -> str:
    """The subsystem a py-spy raw stack belongs to."""
    for name, markers in SUBSYSTEMS:
        if any(marker in stack for marker in markers):
            return name
    return "other"


def summarize(raw_path: str, top: int) -> None:
    """Print self time by function and time by subsystem from py-spy's raw (collapsed) output."""
    total = 0
    by_function: collections.Counter[str] = collections.Counter()
    by_subsystem: collections.Counter[str] = collections.Counter()
    with open(raw_path) as raw:
        for line in raw:
            line = line.rstrip()
            if not line:
                continue
            stack, _, count_text = line.rpartition(" ")
            count = int(count_text)
            total += count
            by_function[stack.split(";")[-1]] += count
            by_subsystem[subsystem(stack)] += count
    if not total:
        print("  py-spy recorded no samples")
        return
    print(f"  {total:,} samples; by subsystem:")
    for name, count in by_subsystem.most_common():
        print(f"    {100 * count / total:5.1f} %  {name}")
    print(f"  the {top} functions with the most self time:")
    for name, count in by_function.most_common(top):
        print(f"    {100 * count / total:5.1f} %  {name[:140]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=200_000, help="samples/s offered (default %(default)s)")
    parser.add_argument("--servers", type=int, default=100_000, help="distinct servers (default %(default)s)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds before profiling (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds profiled (default %(default)s)")
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite", help="default %(default)s")
    parser.add_argument("--out", default="ingest-profile", help="output path without extension (default %(default)s)")
    parser.add_argument("--top", type=int, default=25, help="functions listed (default %(default)s)")
    args = parser.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    harness.print_header(f"ingest profile: {args.rate:,} samples/s from {args.servers:,} servers, store {args.store}")
    with tempfile.TemporaryDirectory(prefix="servertrack-profile-") as data_dir:
        flags = ["--store", args.store] + (["--data-dir", data_dir] if args.store == "sqlite" else [])
        with harness.Service(flags=flags) as service:
            load = harness.loadgen_argv(service.ingest, args.rate, args.servers, args.settle + args.seconds + 2)
            with harness.Process(load, name="loadgen"):
                time.sleep(args.settle)
                before, cpu_before, started = service.stats(), service.cpu_seconds(), time.monotonic()
                record = [spy, "record", "--pid", str(service.pid), "--rate", "200", "--nonblocking",
                          "--duration", str(max(1, int(args.seconds)))]
                subprocess.run(record + ["--output", args.out + ".svg"], check=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                after, cpu_after, ended = service.stats(), service.cpu_seconds(), time.monotonic()
                subprocess.run(record[:-1] + ["3", "--format", "raw", "--output", args.out + ".raw"], check=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    window = ended - started
    applied = after["applied"] - before["applied"]
    print(f"  service: {100 * (cpu_after - cpu_before) / window:.1f} % of one core, "
          f"{applied / window:,.0f} samples/s applied, lost {after['lost']}, dropped {after['dropped']}")
    print(f"  flame graph: {args.out}.svg")
    summarize(args.out + ".raw", args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
