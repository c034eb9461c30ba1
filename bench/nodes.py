"""Collector CPU and RSS with 10,000 full agents: 1 Hz samples, a stats snapshot every 5 s, hellos.

Targets (issue): 10,000 nodes sending snapshots every 5 s plus 1 Hz core
samples: the collector uses <= 50 % of one core and <= 30 KB (30,720 B) of
RSS per node, snapshots included.

How
    Each run starts a fresh ``servertrack serve`` (``--max-servers 200000``,
    as in production), waits ``--idle`` seconds and reads its RSS
    (RSS_empty). It then starts the fleet generator,
    ``bench/loadgen.py --fleet`` (one process, see loadgen.py), which
    simulates ``--nodes`` agents exactly as ``servertrack agent`` talks: a
    hello first and again every 60 samples, one v1 sample a second, a v2
    stats snapshot every 5 samples, one seq counter per agent across all
    three kinds; agents are phase-shifted so that N samples, N/5 snapshots
    and N/60 hellos leave every second, spread evenly over 10 ms slices.
    Snapshots are realistic in content and size (4-16 per-CPU shares,
    3 disks, 3 interfaces, ~300 processes, top_cpu and top_memory of 20
    entries with real-looking names and command lines up to ~120 characters;
    ~9 KB a frame), cut from 8 pre-packed templates with their numbers
    changed per frame.

    After ``--warmup`` seconds (every node has said hello and sent at least
    one snapshot; default 15 s), the script measures over ``--seconds``
    (default 30): the service's CPU (psutil user + system time, all threads,
    delta / wall), its RSS at the end of the window (RSS_loaded; the peak of
    one-second reads is shown too), and (RSS_loaded - RSS_empty) / N per
    node. ``/stats`` is read just before and after the window (outside the CPU
    window) for the received frame rate. The generator reports cumulative
    counts once a second (with ``time.monotonic``, system-wide on Linux), so
    its achieved sample and snapshot rates are computed over the same window:
    if it held less than 99 % of the offered rates, the run is INVALID (the
    collector was not offered the target load) and says so. After the
    generator stops, the script waits for the service to go idle and checks
    ``/stats`` (lost and every drop reason must be 0, ``servers`` == N) and
    ``GET /nodes`` (N nodes; two of them have their stats).

    Note: a 45 s run touches only the current minute and hour buckets of
    each server's load history; the full per-server cost of those rings is
    what ``memory.py`` measures (<= 4 KB per server), within this budget.

Usage
    python bench/nodes.py                       # 10,000 nodes, 15 s warm-up, 30 s window, 3 runs
    python bench/nodes.py --nodes 2000 --seconds 10 --runs 1     # short check
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import loadgen

TARGET_CPU_PERCENT = 50.0
TARGET_BYTES_PER_NODE = 30 * 1024
HELD_FRACTION = 0.99  # the generator must achieve this share of the offered rates in the window
TAIL_SECONDS = 2.0  # the generator runs this long after the window ends


@dataclass
class RunResult:
    cpu_percent: float
    rss_empty: int
    rss_loaded: int
    rss_peak: int
    bytes_per_node: float
    received_rate: float  # frames/s the collector received in the window
    offered_rate: float  # frames/s the generator sent in the window
    sample_rate: float
    snapshot_rate: float
    hello_rate: float
    generator_cpu: float  # % of one core in the window
    max_lag: float
    avg_snapshot_bytes: float
    valid: bool
    clean: bool  # lost == 0, no drops, every frame received, all servers and nodes there
    notes: list[str] = field(default_factory=list)


def generator_argv(endpoint: str, args: argparse.Namespace) -> list[str]:
    """``loadgen.py --fleet`` for the warm-up, the window and a short tail."""
    seconds = args.warmup + args.seconds + TAIL_SECONDS
    return [
        harness.PYTHON, os.path.join(harness.BENCH, "loadgen.py"), "--fleet", "--json", "--endpoint", endpoint,
        "--servers", str(args.nodes), "--seconds", f"{seconds:g}",
        "--snapshot-every", str(args.snapshot_every), "--hello-every", str(args.hello_every),
    ]  # fmt: skip


def ensure_running(process: harness.Process) -> None:
    if process.popen.poll() is not None:
        raise RuntimeError(f"{process.name} exited early ({process.popen.returncode}):\n{process.stderr_text()}")


def generator_output(process: harness.Process, timeout: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Wait for the generator to finish; return its progress reports and its final result."""
    if process.wait(timeout) is None:
        raise RuntimeError(f"{process.name} still running after {timeout:.0f} s")
    assert process.popen.stdout is not None
    progress, result = [], None
    for line in process.popen.stdout.read().decode().splitlines():
        if line.startswith("{"):
            decoded = json.loads(line)
            if "progress" in decoded:
                progress.append(decoded["progress"])
            else:
                result = decoded
    if result is None:
        raise RuntimeError(f"{process.name} printed no result\n{process.stderr_text()}")
    return progress, result


def window_rates(progress: list[dict[str, Any]], start: float, end: float) -> dict[str, float]:
    """The generator's rates (per second) and CPU (% of one core) over the reports bracketing [start, end]."""
    before = [p for p in progress if p["t"] <= start]
    after = [p for p in progress if p["t"] >= end]
    if not before or not after:
        raise RuntimeError("the generator's progress reports do not cover the measured window")
    a, b = before[-1], after[0]
    span = b["t"] - a["t"]
    rates = {key: (b[key] - a[key]) / span for key in ("samples", "snapshots", "hellos", "frames")}
    rates["cpu"] = 100.0 * (b["cpu"] - a["cpu"]) / span
    return rates


def check_nodes(service: harness.Service, nodes: int, with_stats: bool) -> tuple[str, bool]:
    """``GET /nodes``: how many, in which state (after the generator stopped, so some are stale);
    and that two nodes have their hello fields and, ``with_stats``, their stats."""
    status, body = harness.http_json("GET", service.url + "/nodes", timeout=60)
    if status == 404:
        return "GET /nodes n/a", True
    if status != 200:
        return f"GET /nodes answered {status}", False
    states = Counter(entry["state"] for entry in body["nodes"])
    ok = len(body["nodes"]) == nodes
    shown = ", ".join(f"{state} {count:,}" for state, count in sorted(states.items()))
    for index in (0, nodes // 2):
        status, detail = harness.http_json("GET", f"{service.url}/nodes/{loadgen.node_name(index)}")
        if status != 200 or detail.get("hostname") is None or (with_stats and detail.get("stats_at") is None):
            ok = False
            shown += f"; {loadgen.node_name(index)}: {status}, hello or stats missing"
    return f"nodes {len(body['nodes']):,} ({shown})", ok


def one_run(args: argparse.Namespace) -> RunResult:
    notes: list[str] = []
    with harness.Service(max_servers=args.max_servers) as service:
        time.sleep(args.idle)
        rss_empty = service.rss()
        with harness.Process(generator_argv(service.ingest, args), name="fleet generator") as generator:
            line = generator.read_line(timeout=120)  # templates, prefixes, 1 s slow-joiner wait
            if line != loadgen.START_LINE:
                raise RuntimeError(f"unexpected first line from the generator: {line!r}")
            warmup_end = time.monotonic() + args.warmup
            while (left := warmup_end - time.monotonic()) > 0:
                time.sleep(min(left, 1.0))
                ensure_running(generator)
            stats0 = service.stats()
            cpu0, t0 = service.cpu_seconds(), time.monotonic()
            rss_peak = 0
            while (left := t0 + args.seconds - time.monotonic()) > 0:
                time.sleep(min(left, 1.0))
                rss_peak = max(rss_peak, service.rss())
            cpu1, t1 = service.cpu_seconds(), time.monotonic()
            rss_loaded = service.rss()
            stats1 = service.stats()
            ensure_running(generator)
            progress, result = generator_output(generator, timeout=(args.warmup + args.seconds) * 1.5 + 60)
        final = service.wait_idle(timeout=60)
        nodes_text, nodes_ok = check_nodes(service, args.nodes, with_stats=args.snapshot_every > 0)
    wall = t1 - t0
    rates = window_rates(progress, t0, t1)
    offered_samples = float(args.nodes)
    offered_snapshots = args.nodes / args.snapshot_every if args.snapshot_every else 0.0
    valid = (
        rates["samples"] >= HELD_FRACTION * offered_samples
        and rates["snapshots"] >= HELD_FRACTION * offered_snapshots
        and not result["stopped_early"]
    )
    if not valid:
        notes.append(
            f"INVALID: the generator held {rates['samples']:,.0f} samples/s and {rates['snapshots']:,.0f} "
            f"snapshots/s of {offered_samples:,.0f} and {offered_snapshots:,.0f} offered"
        )
    sent = result["frames"] + result["warmup_sent"]
    missing = sent - final["received"]
    clean = final["lost"] == 0 and not final["dropped"] and final["servers"] == args.nodes and nodes_ok
    # Warm-up hellos sent before the subscription arrived are dropped by PUB (slow joiner): at most ~20.
    if missing > result["warmup_sent"] or missing < 0:
        clean = False
    notes.append(
        f"sent {sent:,} frames, received {final['received']:,}; lost {final['lost']}, "
        f"dropped {final['dropped'] or 'none'}; servers {final['servers']:,}; {nodes_text}"
    )
    return RunResult(
        cpu_percent=100.0 * (cpu1 - cpu0) / wall,
        rss_empty=rss_empty,
        rss_loaded=rss_loaded,
        rss_peak=max(rss_peak, rss_loaded),
        bytes_per_node=(rss_loaded - rss_empty) / args.nodes,
        received_rate=(stats1["received"] - stats0["received"]) / wall,
        offered_rate=rates["frames"],
        sample_rate=rates["samples"],
        snapshot_rate=rates["snapshots"],
        hello_rate=rates["hellos"],
        generator_cpu=rates["cpu"],
        max_lag=result["max_lag_seconds"],
        avg_snapshot_bytes=result["avg_snapshot_bytes"],
        valid=valid,
        clean=clean,
        notes=notes,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000, help="simulated agents (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=15.0,
                        help="seconds of load before the window; >= --snapshot-every + 1 (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="fresh services (default %(default)s)")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds before reading RSS_empty (default %(default)s)")
    parser.add_argument("--snapshot-every", type=int, default=loadgen.FLEET_SNAPSHOT_EVERY,
                        help="samples (seconds) between two snapshots of an agent (default %(default)s)")
    parser.add_argument("--hello-every", type=int, default=loadgen.FLEET_HELLO_EVERY,
                        help="samples (seconds) between two hellos of an agent (default %(default)s)")
    parser.add_argument("--max-servers", type=int, default=200_000, help="serve --max-servers (default %(default)s)")
    args = parser.parse_args()
    if args.nodes < 1 or args.seconds <= 0 or args.runs < 1 or args.snapshot_every < 0 or args.hello_every < 0:
        parser.error("need --nodes >= 1, --seconds > 0, --runs >= 1, --snapshot-every >= 0, --hello-every >= 0")
    if args.warmup < args.snapshot_every + 1:
        parser.error("--warmup must be at least --snapshot-every + 1 seconds, so every node has sent a snapshot")
    harness.print_header(
        f"servertrack serve with {args.nodes:,} agents: 1 sample/s, a snapshot every {args.snapshot_every} s, "
        f"a hello every {args.hello_every} s; {args.warmup:g} s warm-up, {args.seconds:g} s window"
    )
    results: list[RunResult] = []
    for run in range(1, args.runs + 1):
        r = one_run(args)
        results.append(r)
        print(
            f"  run {run}: collector CPU {r.cpu_percent:.1f} % of one core; RSS empty {r.rss_empty / 2**20:,.1f} MiB, "
            f"loaded {r.rss_loaded / 2**20:,.1f} MiB (peak {r.rss_peak / 2**20:,.1f}), {r.bytes_per_node:,.0f} B/node"
        )
        print(
            f"         generator: {r.sample_rate:,.0f} samples/s, {r.snapshot_rate:,.0f} snapshots/s "
            f"(avg {r.avg_snapshot_bytes:,.0f} B), {r.hello_rate:,.0f} hellos/s = {r.offered_rate:,.0f} frames/s, "
            f"CPU {r.generator_cpu:.0f} % of one core, max lag {r.max_lag:.3f} s; "
            f"collector received {r.received_rate:,.0f} frames/s"
        )
        for note in r.notes:
            print(f"         {note}")
    harness.print_runs("collector CPU", [r.cpu_percent for r in results], "% of one core")
    harness.print_runs("collector RSS loaded", [r.rss_loaded / 2**20 for r in results], "MiB")
    harness.print_runs("RSS per node", [r.bytes_per_node for r in results], "B")
    harness.print_runs("generator samples", [r.sample_rate for r in results], "/s")
    harness.print_runs("generator snapshots", [r.snapshot_rate for r in results], "/s")
    harness.print_runs("collector received", [r.received_rate for r in results], "frames/s")
    print(f"  average snapshot frame: {harness.median([r.avg_snapshot_bytes for r in results]):,.0f} B")
    cpu_ok = harness.verdict(
        "collector CPU (median)", harness.median([r.cpu_percent for r in results]), TARGET_CPU_PERCENT,
        "% of one core", False,
    )  # fmt: skip
    memory_ok = harness.verdict(
        "RSS per node (median)", harness.median([r.bytes_per_node for r in results]), TARGET_BYTES_PER_NODE, "B", False
    )
    valid = all(r.valid for r in results)
    clean = all(r.clean for r in results)
    print(f"  generator held the offered rates in every run: {'yes' if valid else 'NO - the figures are INVALID'}")
    print(f"  no loss, no drops, all servers and nodes present: {'yes' if clean else 'NO - see the runs above'}")
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if cpu_ok and memory_ok and valid and clean else 1


if __name__ == "__main__":
    sys.exit(main())
