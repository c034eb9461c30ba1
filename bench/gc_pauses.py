"""Cycle-collector pauses in a serving process: 100,000 servers, 50,000 samples/s over ZeroMQ, GETs meanwhile.

No target: whether collections matter at the scale of the GET p99 target
(2 ms, issue 10), and what the collector has to walk.

How
    The service is a real ``servertrack serve`` (``--store memory`` unless
    ``--store`` is given, ``--max-servers 200000``) started through this
    script's probe mode, which installs a ``gc.callbacks`` hook that times
    every collection (generation, duration, objects collected) and then runs
    the ordinary command line; at exit it writes what it saw, plus the
    collector's counts, thresholds, frozen objects and the objects it still
    tracks, to a JSON file. Nothing of the probe ships in ``servertrack``.

    The load generator (``loadgen.py``) reports ``--servers`` servers at
    ``--ingest-rate`` samples/s; once all are loaded, wrk reads a random
    server's window (``get_random.lua``, ``-t1 -c1``) for ``--seconds`` per
    run, ``--runs`` times; then the service is stopped. Pauses are counted
    from the first wrk run on (the service's start-up and the first fill
    are shown apart).

Usage
    python bench/gc_pauses.py                         # 100,000 servers, 50,000/s, 3 x 30 s
    python bench/gc_pauses.py --seconds 10 --runs 1
"""

from __future__ import annotations  # noqa: I001 (harness must come first)

import harness  # first: puts this checkout on sys.path

import argparse
import gc
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import http_api

GENERATIONS = (0, 1, 2)


# -- probe mode: runs inside the service ----------------------------------------------------------


def probe(out_path: str, argv: list[str]) -> int:
    """Run ``servertrack`` with ``argv``, timing every collection; write the record to ``out_path`` at exit."""
    pauses: list[tuple[float, int, float, int, list[tuple[str, int]]]] = []  # (when, generation, seconds,
    # collected, the largest containers among the objects it walked)
    started: list[float] = [0.0]
    largest: list[list[tuple[str, int]]] = [[]]
    clock = time.perf_counter

    def on_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            # what a young collection walks: the young objects and everything they hold (noted before
            # the clock starts, so not counted in the pause)
            largest[0] = [] if info["generation"] == 2 else _largest(gc.get_objects(info["generation"]))
            started[0] = clock()
        else:
            pauses.append((time.time(), info["generation"], clock() - started[0], info["collected"], largest[0]))

    gc.callbacks.append(on_collection)
    from servertrack.cli import main

    try:
        return main(argv)
    finally:
        gc.callbacks.remove(on_collection)
        record = {
            "pauses": pauses,
            "threshold": gc.get_threshold(),
            "count": gc.get_count(),
            "frozen": gc.get_freeze_count(),
            "tracked": {str(generation): len(gc.get_objects(generation)) for generation in GENERATIONS},
            "stats": gc.get_stats(),
            "types": Counter(type(obj).__name__ for obj in gc.get_objects(2)).most_common(8),
        }
        with open(out_path, "w") as out:
            json.dump(record, out)


def _largest(objects: list[Any], keep: int = 3) -> list[tuple[str, int]]:
    """How many ``objects`` there are (as ``("objects", count)``), then the ``keep`` largest containers
    among them: (type name, length)."""
    sizes = [(len(objects), "objects")]
    for obj in objects:
        if isinstance(obj, (list, dict, set, tuple, bytearray)):
            sizes.append((len(obj), type(obj).__name__))
    return [(name, size) for size, name in sizes[:1] + sorted(sizes[1:], reverse=True)[:keep]]


# -- driver mode ---------------------------------------------------------------------------------


class _ThroughProbe(harness.Process):
    """A process whose ``python -m servertrack ...`` command runs through this script's probe mode."""

    record_path = ""

    def __init__(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> None:
        argv = list(argv)
        if argv[1:3] == ["-m", "servertrack"]:
            argv = [harness.PYTHON, os.path.abspath(__file__), "--probe", self.record_path, "--", *argv[3:]]
        super().__init__(argv, *args, **kwargs)


class ProbedService(harness.Service, _ThroughProbe):
    """``harness.Service`` (same flags, ready line, stop), its process started through the probe: the
    MRO puts ``_ThroughProbe`` between ``Service`` and ``Process``."""

    def __init__(self, record_path: str, flags: Sequence[str]) -> None:
        self.record_path = record_path
        super().__init__(max_servers=200_000, flags=flags)


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile (nearest rank) of ``values``; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def report(record: dict[str, Any], measured_from: float, measured_to: float) -> None:
    """Print pauses per generation inside and before the measured span, and what the collector tracks."""
    pauses = record["pauses"]
    span = measured_to - measured_from
    for label, inside in (("before the measured runs (start-up, first fill)", False),
                          (f"during the measured runs ({span:.0f} s)", True)):
        print(f"  collections {label}:")
        for generation in GENERATIONS:
            ms = [seconds * 1000 for when, gen, seconds, _, _ in pauses
                  if gen == generation and (measured_from <= when <= measured_to) == inside
                  and (inside or when < measured_from)]
            if not ms:
                print(f"    gen {generation}: none")
                continue
            over = sum(1 for value in ms if value > 1.0)
            rate = f", {len(ms) / span:.1f}/s" if inside and span > 0 else ""
            print(f"    gen {generation}: {len(ms):,}{rate}; median {percentile(ms, 0.5):.3f} ms, "
                  f"p99 {percentile(ms, 0.99):.3f} ms, max {max(ms):.3f} ms, total {sum(ms):.1f} ms, over 1 ms: {over}")
    slow = [(seconds, gen, held) for when, gen, seconds, _, held in pauses
            if measured_from <= when <= measured_to and seconds > 0.001 and gen < 2]
    for seconds, gen, held in sorted(slow, reverse=True)[:5]:
        print(f"    a gen {gen} collection of {seconds * 1000:.2f} ms walked (objects, then the largest): {held}")
    print(f"  at exit: tracked objects per generation {record['tracked']}, frozen {record['frozen']:,}, "
          f"thresholds {record['threshold']}")
    print(f"  the most common tracked (unfrozen, oldest generation) types at exit: {record['types']}")


def drive(args: argparse.Namespace) -> int:
    harness.print_header("Cycle-collector pauses while serving")
    flags = [] if args.store is None else ["--store", args.store]
    if args.store == "sqlite":
        flags += ["--data-dir", tempfile.mkdtemp(prefix="servertrack-gc-")]
    record_path = tempfile.mktemp(prefix="servertrack-gc-", suffix=".json")
    load_seconds = math.ceil(args.servers / args.ingest_rate)
    planned = args.runs * (args.seconds + 3) + 2 * load_seconds + 40
    service = ProbedService(record_path, flags)
    try:
        argv = harness.loadgen_argv(service.ingest, args.ingest_rate, args.servers, planned)
        with harness.Process(argv, name="loadgen") as loadgen:
            if loadgen.read_line(timeout=60) != "measuring":
                raise RuntimeError("loadgen did not start")
            loaded = service.wait_for(lambda s: s["servers"] >= args.servers, timeout=load_seconds + 30)
            if loaded["servers"] < args.servers:
                raise RuntimeError(f"only {loaded['servers']:,} of {args.servers:,} servers loaded")
            time.sleep(2.0)
            url = service.url + "/servers"
            measured_from = time.time()
            for run in range(1, args.runs + 1):
                before = service.stats()
                result = http_api.run_wrk(url, "get_random.lua", args.seconds, 1, [str(args.servers), args.path])
                after = service.stats()
                http_api.print_wrk(run, result)
                print(f"         applied meanwhile {after['applied'] - before['applied']:,} samples, lost {after['lost']:,}")
            measured_to = time.time()
            loadgen.stop()
    finally:
        service.stop()
    try:
        with open(record_path) as source:
            record = json.load(source)
    finally:
        os.unlink(record_path)
    report(record, measured_from, measured_to)
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--probe":
        separator = sys.argv.index("--")
        return probe(sys.argv[2], sys.argv[separator + 1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="wrk duration per run (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="wrk runs (default %(default)s)")
    parser.add_argument("--servers", type=int, default=100_000, help="distinct servers (default %(default)s)")
    parser.add_argument("--ingest-rate", type=int, default=50_000, help="ZeroMQ samples/s (default %(default)s)")
    parser.add_argument("--path", default="/servers/%s/loads", help="GET path, %%s the name (default %(default)s)")
    parser.add_argument("--store", choices=("memory", "sqlite"), default=None, help="serve --store (default memory)")
    return drive(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
