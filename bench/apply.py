"""In-process batch apply: 100,000 samples for 100,000 distinct servers into an ``Aggregator``.

Target: one batch apply of 100,000 samples < 200 ms.

How
    Each run builds a fresh ``Aggregator(max_servers=200000)`` (as ``serve``
    does) with an injected clock, and applies a sequence of 100,000-sample
    batches given as Python lists (what ``PendingBatch.take`` hands the
    applier), one sample per server per batch, timing each
    ``aggregator.apply`` call with ``perf_counter``:

    1. first apply: every server is new (rows allocated, pages first touched);
    2. steady applies: the same servers, the following seconds of the same minute;
    3. minute boundary: every sample in the next minute (every row's minute head moves);
    4. straddling: half the servers' samples just before a minute boundary, half just after;
    5. hour boundary: every sample in the first second of a new hour (minute and hour heads move);
    6. steady, service path: ``BatchApplier.apply_pending`` (applies in chunks of ``APPLY_CHUNK``).

    The timeline starts 170 s before an hour boundary, so 3-5 are real
    boundary crossings. Each run is a fresh Python process (as a freshly
    started service is): the first apply's cost is mostly the kernel
    faulting in the ring arrays' pages, and in a process that already freed
    such memory it is several times cheaper, which would flatter it.
    On a VM the very first touch of guest memory the host never backed is
    slower still (here, a Firecracker VM: ~3 ms per MB, so ~1 s for this
    apply), and later processes reuse pages already backed: expect the first
    run's first apply to stand out on a freshly booted machine.
    Figures are medians over ``--runs`` runs (steady applies: the median of
    all of them). ``--profile`` prints a cProfile of one first and one
    steady apply (in this process).

Usage
    python bench/apply.py                      # 100,000 samples, 5 runs
    python bench/apply.py --runs 3 --profile
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import asyncio
import cProfile
import multiprocessing
import pstats
import random
import sys
import time
from collections import defaultdict

from servertrack.collector.applier import APPLY_CHUNK, BatchApplier
from servertrack.common.aggregator import Aggregator
from servertrack.common.batch import PendingBatch
from servertrack.common.inventory import AgentInventory
from servertrack.common.stats import IngestStats

TARGET_MS = 200.0


class FakeClock:
    """A clock the benchmark moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Batches:
    """Column lists for ``count`` servers; ts/cpu/ram vary per batch."""

    def __init__(self, count: int, seed: int = 7) -> None:
        self.names = [f"srv-{i:06d}.bench" for i in range(count)]
        self.rng = random.Random(seed)
        self.count = count

    def at(self, base: float, odd_offset: float = 0.0) -> tuple[list[str], list[float], list[float], list[float]]:
        """One batch: every server gets a sample at ``base`` (+ ``odd_offset`` for odd servers) plus up to 0.5 s."""
        rnd = self.rng.random
        ts = [base + (odd_offset if i % 2 else 0.0) + rnd() * 0.5 for i in range(self.count)]
        cpu = [round(rnd() * 100.0, 2) for _ in range(self.count)]
        ram = [round(rnd() * 100.0, 2) for _ in range(self.count)]
        return self.names, ts, cpu, ram


def timed_apply(aggregator: Aggregator, clock: FakeClock, batch: tuple, now: float) -> float:
    """Milliseconds one ``aggregator.apply`` takes; checks everything was stored."""
    clock.now = now
    started = time.perf_counter()
    result = aggregator.apply(*batch)
    elapsed = (time.perf_counter() - started) * 1000.0
    if result.applied != len(batch[0]) or result.refused:
        raise RuntimeError(f"apply stored {result.applied} of {len(batch[0])} samples (refused {result.refused})")
    return elapsed


def one_run(samples: int, max_servers: int, steady_applies: int) -> dict[str, list[float]]:
    """One fresh aggregator through the whole timeline; milliseconds per scenario (run in a fresh process)."""
    batches = Batches(samples)
    warm = Aggregator(max_servers=1000, clock=FakeClock(time.time()))  # numpy first-call costs, not measured
    warm.apply(["warm"], [time.time()], [1.0], [2.0])
    hour = (int(time.time()) // 3600 + 1) * 3600
    t0 = hour - 170.0  # 10 s into a minute, 3 minutes before the hour
    clock = FakeClock(t0)
    aggregator = Aggregator(max_servers=max_servers, clock=clock)
    out: dict[str, list[float]] = defaultdict(list)
    out["first apply (100% new servers)"].append(timed_apply(aggregator, clock, batches.at(t0), t0 + 1))
    for k in range(1, steady_applies + 1):
        out["steady apply (same minute)"].append(
            timed_apply(aggregator, clock, batches.at(t0 + k), t0 + k + 1)
        )
    cross = hour - 120.0  # next minute starts
    out["minute boundary (all rows move)"].append(
        timed_apply(aggregator, clock, batches.at(cross), cross + 1)
    )
    straddle = hour - 60.0
    out["straddling a minute boundary (half move)"].append(
        timed_apply(aggregator, clock, batches.at(straddle, odd_offset=-0.6), straddle + 1)
    )
    out["hour boundary (minute + hour rows move)"].append(
        timed_apply(aggregator, clock, batches.at(float(hour)), hour + 1)
    )
    # The service path: PendingBatch -> BatchApplier (in chunks of APPLY_CHUNK), same hour as above.
    pending = PendingBatch()
    applier = BatchApplier(pending, aggregator, AgentInventory(max_servers), IngestStats(), clock=clock)
    for k in range(2, 2 + max(1, steady_applies // 2)):
        pending.extend(*batches.at(hour + k))
        clock.now = hour + k + 1
        started = time.perf_counter()
        applied = asyncio.run(applier.apply_pending())
        out[f"steady via BatchApplier.apply_pending ({APPLY_CHUNK:,}-sample chunks)"].append((time.perf_counter() - started) * 1000.0)
        if applied != batches.count:
            raise RuntimeError(f"applier stored {applied} of {batches.count}")
    return out


def profile(batches: Batches, max_servers: int) -> None:
    """cProfile of one first apply and one steady apply."""
    t0 = (int(time.time()) // 3600 + 1) * 3600 - 170.0
    clock = FakeClock(t0 + 1)
    aggregator = Aggregator(max_servers=max_servers, clock=clock)
    for label, ts in (("first apply", t0), ("steady apply", t0 + 1)):
        batch = batches.at(ts)
        clock.now = ts + 1
        profiler = cProfile.Profile()
        profiler.enable()
        aggregator.apply(*batch)
        profiler.disable()
        print(f"-- profile of one {label} ({batches.count:,} samples), top 12 by cumulative time")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(12)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100_000, help="samples = servers per batch (default %(default)s)")
    parser.add_argument("--runs", type=int, default=5, help="fresh aggregators (default %(default)s)")
    parser.add_argument("--steady", type=int, default=5, help="steady applies per run (default %(default)s)")
    parser.add_argument("--max-servers", type=int, default=200_000, help="aggregator capacity (default %(default)s)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of a first and a steady apply")
    args = parser.parse_args()
    harness.print_header(f"batch apply of {args.samples:,} samples for {args.samples:,} distinct servers (in-process)")
    results: dict[str, list[float]] = defaultdict(list)
    for run in range(1, args.runs + 1):
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            one = pool.apply_async(one_run, (args.samples, args.max_servers, args.steady)).get(timeout=600)
        shown = "; ".join(f"{label.split(' (')[0]} {harness.median(ms):.1f}" for label, ms in one.items())
        print(f"  run {run} (ms): {shown}")
        for label, ms in one.items():
            results[label].append(harness.median(ms))
    ok = True
    for label, per_run in results.items():
        harness.print_runs(label, per_run, "ms")
    for label, per_run in results.items():
        ok &= harness.verdict(label + " (median)", harness.median(per_run), TARGET_MS, "ms", False)
    if args.profile:
        profile(Batches(args.samples), args.max_servers)
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
