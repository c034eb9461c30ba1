"""CPU use of a real ``servertrack agent`` publishing once a second: core samples only, and with rich stats.

Targets (issue): the core agent (``--stats-every 0``) <= 1 % of one core;
the agent with rich stats at default settings (a snapshot every 5 samples,
a process scan at most every 15 s) <= 2 % of one core.

How
    The script binds a ZeroMQ SUB socket on 127.0.0.1 (a stand-in collector
    that only counts frames, by kind) and starts ``python -m servertrack agent
    --collector tcp://127.0.0.1:PORT --name bench-agent --interval 1`` plus
    the mode's flags:

    - ``core``: ``--stats-every 0`` (samples, and a hello a minute); target <= 1 %;
    - ``default``: no further flag (snapshot every 5 samples, process scan
      every 15 s); target <= 2 %;
    - ``scan5``: ``--process-interval 5`` (a process scan for every snapshot),
      to show what the scan costs; no target.

    It skips the first ``--skip`` seconds (interpreter start-up, imports, the
    connection), then reads the agent's user + system CPU time with psutil
    (all its threads, ZeroMQ's I/O thread included) at the start and the end
    of a ``--seconds`` window: CPU % = delta CPU time / wall time * 100.
    Frames received in the window are counted by kind as a sanity check
    (about 60 samples, 12 snapshots and 1 hello a minute by default).
    ``--collector absent`` points the agent at a port where nothing listens
    instead (it keeps trying to reconnect). Each run measures every mode in
    turn, one agent at a time; figures are medians of ``--runs`` runs. psutil
    reads CPU time in 10 ms ticks, so a window of 60 s resolves ~0.02 %.

    Before the agents, the script times ``NodeStatsCollector.snapshot()``
    in-process (``--calls`` calls, 0.1 s apart): with a process scan on every
    call (``process_interval=0``) and without (the scan result cached), as
    median wall and CPU milliseconds, and the number of processes on this
    machine (the scan's cost grows with it). The first scan, which also
    creates psutil's per-process objects, is shown apart.

Usage
    python bench/agent_cpu.py                     # 60 s per mode x 3 runs
    python bench/agent_cpu.py --seconds 10 --runs 1
    python bench/agent_cpu.py --modes core        # the former benchmark alone
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack
import zmq

from servertrack.agent.node_stats import NodeStatsCollector
from servertrack.common.node_messages import encode_snapshot

# mode -> (extra agent flags, target % of one core or None, what it is)
MODES: dict[str, tuple[list[str], float | None, str]] = {
    "core": (["--stats-every", "0"], 1.0, "core agent, --stats-every 0"),
    "default": ([], 2.0, "rich stats at defaults (snapshot every 5 samples, process scan every 15 s)"),
    "scan5": (["--process-interval", "5"], None, "rich stats, --process-interval 5 (a scan per snapshot)"),
}
CALL_PAUSE_SECONDS = 0.1


@dataclass
class Frames:
    """Frames received in a window, by kind (``sample`` for v1 frames)."""

    kinds: Counter[str] = field(default_factory=Counter)
    snapshot_bytes: int = 0

    def add(self, frame: bytes) -> None:
        try:
            kind = msgpack.unpackb(frame).get("kind") or "sample"
        except (ValueError, msgpack.UnpackException, AttributeError):
            kind = "undecodable"
        self.kinds[kind] += 1
        if kind == "snapshot":
            self.snapshot_bytes += len(frame)

    def text(self) -> str:
        shown = ", ".join(f"{count} {kind}s" for kind, count in sorted(self.kinds.items())) or "no frames"
        if self.kinds["snapshot"]:
            shown += f" (avg snapshot {self.snapshot_bytes / self.kinds['snapshot']:,.0f} B)"
        return shown


def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_run(seconds: float, skip: float, interval: float, collector: str, flags: list[str]) -> tuple[float, Frames, float]:
    """CPU % of one core, frames received, and the wall time measured."""
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        if collector == "bound":
            port = sub.bind_to_random_port("tcp://127.0.0.1")
        else:
            port = free_port()
        argv = [
            harness.PYTHON, "-m", "servertrack", "agent", "--collector", f"tcp://127.0.0.1:{port}",
            "--name", "bench-agent", "--interval", str(interval), *flags,
        ]  # fmt: skip
        with harness.Process(argv, stdout=None, name="servertrack agent") as agent:
            started = time.monotonic()
            drain(sub, started + skip, Frames())
            if agent.popen.poll() is not None:
                raise RuntimeError(f"agent exited early ({agent.popen.returncode}):\n{agent.stderr_text()}")
            frames = Frames()
            cpu_start, wall_start = agent.cpu_seconds(), time.monotonic()
            drain(sub, wall_start + seconds, frames)
            cpu_end, wall_end = agent.cpu_seconds(), time.monotonic()
            if agent.popen.poll() is not None:
                raise RuntimeError(f"agent exited early ({agent.popen.returncode}):\n{agent.stderr_text()}")
    finally:
        sub.close(linger=0)
        context.term()
    wall = wall_end - wall_start
    return 100.0 * (cpu_end - cpu_start) / wall, frames, wall


def drain(sub: zmq.Socket, until: float, frames: Frames) -> None:
    """Receive frames into ``frames`` until ``until`` (monotonic)."""
    while (left := until - time.monotonic()) > 0:
        if sub.poll(max(1, int(min(left, 0.5) * 1000))):
            while True:
                try:
                    frame = sub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                frames.add(frame)


def timed(call: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return 1000.0 * (time.perf_counter() - wall), 1000.0 * (time.process_time() - cpu)


def snapshot_costs(calls: int) -> None:
    """Time ``NodeStatsCollector.snapshot()`` with and without a process scan, in this process."""
    scanning = NodeStatsCollector(process_interval=0.0)
    cached = NodeStatsCollector(process_interval=1e9)
    time.sleep(CALL_PAUSE_SECONDS)
    first_wall, first_cpu = timed(scanning.snapshot)
    cached.snapshot()  # its one scan; every later call reuses it
    with_scan: list[tuple[float, float]] = []
    without_scan: list[tuple[float, float]] = []
    for _ in range(calls):
        time.sleep(CALL_PAUSE_SECONDS)
        with_scan.append(timed(scanning.snapshot))
        time.sleep(CALL_PAUSE_SECONDS)
        without_scan.append(timed(cached.snapshot))
    stats = scanning.snapshot()
    size = len(encode_snapshot("bench-agent", time.time(), 0, stats))
    scan_wall = harness.median([w for w, _ in with_scan])
    scan_cpu = harness.median([c for _, c in with_scan])
    plain_wall = harness.median([w for w, _ in without_scan])
    plain_cpu = harness.median([c for _, c in without_scan])
    print(f"  NodeStatsCollector.snapshot() in-process, {stats['processes']['count']} processes on this machine, "
          f"snapshot frame {size:,} B; median of {calls} calls:")
    print(f"    with a process scan:    {scan_wall:.2f} ms wall, {scan_cpu:.2f} ms CPU "
          f"(first scan {first_wall:.2f} ms wall, {first_cpu:.2f} ms CPU)")
    print(f"    without (cached scan):  {plain_wall:.2f} ms wall, {plain_cpu:.2f} ms CPU")
    scan_only = max(scan_cpu - plain_cpu, 0.0)
    count = max(stats["processes"]["count"], 1)
    print(f"    the scan alone: {scan_only:.2f} ms CPU, {100.0 * scan_only / count:.2f} ms per 100 processes "
          f"(a server with 300 processes: ~{3.0 * 100.0 * scan_only / count:.0f} ms a scan)")
    for every in (15.0, 5.0):
        share = 100.0 * (plain_cpu / 5.0 + scan_only / every) / 1000.0
        print(f"    implied snapshot cost every 5 s with a scan every {every:g} s: {share:.3f} % of one core "
              f"(the scan alone {100.0 * scan_only / every / 1000.0:.3f} %)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per mode (default %(default)s)")
    parser.add_argument("--skip", type=float, default=3.0, help="start-up seconds not measured (default %(default)s)")
    parser.add_argument("--interval", type=float, default=1.0, help="agent --interval (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="runs (default %(default)s)")
    parser.add_argument(
        "--collector", choices=("bound", "absent"), default="bound", help="a SUB listening, or nothing (default bound)"
    )
    parser.add_argument("--modes", default="core,default,scan5",
                        help=f"comma-separated, of {', '.join(MODES)} (default %(default)s)")
    parser.add_argument("--calls", type=int, default=20,
                        help="in-process snapshot() calls per variant, 0 to skip (default %(default)s)")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        parser.error(f"unknown mode(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(MODES)}")
    harness.print_header(
        f"CPU of servertrack agent, interval {args.interval:g} s, collector {args.collector}, modes {', '.join(modes)}"
    )
    if args.calls > 0:
        snapshot_costs(args.calls)
    percents: dict[str, list[float]] = {mode: [] for mode in modes}
    for run in range(1, args.runs + 1):
        for mode in modes:
            flags, _, _ = MODES[mode]
            percent, frames, wall = one_run(args.seconds, args.skip, args.interval, args.collector, flags)
            percents[mode].append(percent)
            print(f"  run {run} {mode:<8} {percent:.3f} % of one core over {wall:.1f} s; received {frames.text()}")
    ok = True
    for mode in modes:
        flags, target, label = MODES[mode]
        print(f"  {mode}: {label}")
        harness.print_runs(f"  agent CPU ({mode})", percents[mode], "% of one core")
        value = harness.median(percents[mode])
        if target is None:
            print(f"    agent CPU ({mode}, median): {harness.fmt(value)} % of one core (no target)")
        else:
            ok = harness.verdict(f"  agent CPU ({mode}, median)", value, target, "% of one core", False) and ok
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
