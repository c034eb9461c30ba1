"""Disk per server-day of minute and hour history in the SQLite store, and its write time.

Targets: file size / servers after one day <= 32 KB (goal 16 KB: Netdata's
dbengine keeps a per-minute point of sum, count, min and max in ~6 bytes,
~17 KB per server-day for our two loads); writing 100,000 closed minute
blocks (encode + one transaction) well under 5 s.

How
    Each run opens a fresh ``SqliteStore`` in a temporary directory and
    writes one simulated UTC day for ``--servers`` servers the way the
    service does: every hour one ``write_blocks`` of every server's minute
    block for that hour (60 minutes of 60 samples: one a second), and at the
    end of the day one of every server's hour block (24 hours of 3600
    samples). Loads (cpu and ram) are random walks per second (Gaussian
    steps of ``--step`` percentage points, reflected at 0 and 100), reported
    at ``--resolution`` percent (0.01, the agent's, or 1e-5, the finest the
    aggregator keeps), and summed per bucket in float64 as the aggregator
    does. Only the ``write_blocks`` calls are timed (the walks are not).

    Then ``PRAGMA wal_checkpoint(TRUNCATE)`` and: bytes per server-day = file
    size / servers (also the packed cells alone, without SQLite's keys and
    pages); write time per 100k blocks = the hourly writes' total time /
    their blocks x 100,000; bytes the process wrote to disk per hourly write
    (``/proc/self/io``: WAL frames, checkpoints); and the time to read one
    server's day by minute (24 blocks) through a reader, p50 and p99 over
    200 random servers. Figures are medians of ``--runs`` runs.

Usage
    python bench/history_disk.py                        # 10,000 servers, 0.01 %, 3 runs
    python bench/history_disk.py --resolution 1e-5
    python bench/history_disk.py --servers 100000 --runs 1
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import contextlib
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from servertrack.store.records import HOUR_WIDTH, MINUTE_WIDTH, HistoryBlocks
from servertrack.store.sqlite_store import SqliteStore

LIMIT_BYTES = 32 * 1024
GOAL_BYTES = 16 * 1024
TARGET_WRITE_SECONDS = 5.0
DAY = 1_800_000_000 // 86_400  # a UTC day number (2027-01-15)
CHUNK_SERVERS = 1000  # servers simulated at a time (bounds the per-second arrays)
DISTINCT_SERVERS = 10_000  # more servers repeat these walks (each block is packed on its own: same bytes, same work)


def written_bytes() -> int:
    """Bytes this process has caused to be written to storage (Linux ``/proc/self/io``), or 0."""
    try:
        with open("/proc/self/io") as io:
            for line in io:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Loads:
    """Per-second random walks of cpu and ram for ``servers`` servers, hour after hour."""

    def __init__(self, servers: int, step: float, resolution: float, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.step = step
        self.units = max(1, round(resolution * 1e5))  # a reported value is a multiple of this many 1e-5 %
        self.state = self.rng.uniform(5.0, 95.0, (2, servers))

    def hour(self, rows: slice) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per load, the minute sums (float percent), min and max (fixed point) of the next hour, ``[rows, 60]``."""
        out = []
        for load in range(2):
            start = self.state[load, rows]
            walk = start[:, None] + np.cumsum(self.rng.normal(0.0, self.step, (start.size, 3600)), axis=1)
            walk = 100.0 - np.abs(100.0 - np.abs(walk) % 200.0)  # reflected into 0..100
            self.state[load, rows] = walk[:, -1]
            fixed = (np.rint(walk * (1e5 / self.units)) * self.units).astype(np.int64).reshape(start.size, 60, 60)
            out.append(((fixed / 1e5).sum(axis=2), fixed.min(axis=2).astype(np.uint32),
                        fixed.max(axis=2).astype(np.uint32)))
        return out


def minute_blocks(names: list[str], period: int, loads: Loads) -> HistoryBlocks:
    """Every server's base block of minute buckets for hour ``period``."""
    n = min(len(names), DISTINCT_SERVERS)
    sums = np.empty((2, n, 60))
    lows = np.empty((2, n, 60), dtype=np.uint32)
    highs = np.empty((2, n, 60), dtype=np.uint32)
    for start in range(0, n, CHUNK_SERVERS):
        rows = slice(start, min(n, start + CHUNK_SERVERS))
        for load, (total, low, high) in enumerate(loads.hour(rows)):
            sums[load, rows], lows[load, rows], highs[load, rows] = total, low, high
    repeat = -(-len(names) // n)

    def tiled(cells: np.ndarray) -> np.ndarray:
        return np.tile(cells, (repeat, 1))[:len(names)] if repeat > 1 else cells
    return HistoryBlocks(MINUTE_WIDTH, names, np.full(len(names), period, np.int64), np.zeros(len(names), np.int64),
                         np.full((len(names), 60), 60, np.uint32), tiled(sums[0]), tiled(sums[1]), tiled(lows[0]),
                         tiled(highs[0]), tiled(lows[1]), tiled(highs[1]))


class DayRollup:
    """Every server's hour buckets of the day, rolled up from its minute blocks as they are written."""

    def __init__(self, names: list[str], day: int) -> None:
        n = len(names)
        self.names, self.day = names, day
        self.samples = np.zeros((n, 24), np.uint32)
        self.sums = np.zeros((2, n, 24))
        self.lows = np.zeros((2, n, 24), np.uint32)
        self.highs = np.zeros((2, n, 24), np.uint32)

    def add(self, hour: int, blocks: HistoryBlocks) -> None:
        self.samples[:, hour] = blocks.samples.sum(axis=1)
        for load, (total, low, high) in enumerate(((blocks.cpu_sum, blocks.cpu_min, blocks.cpu_max),
                                                   (blocks.ram_sum, blocks.ram_min, blocks.ram_max))):
            self.sums[load, :, hour] = total.sum(axis=1)
            self.lows[load, :, hour] = low.min(axis=1)
            self.highs[load, :, hour] = high.max(axis=1)

    def blocks(self) -> HistoryBlocks:
        n = len(self.names)
        return HistoryBlocks(HOUR_WIDTH, self.names, np.full(n, self.day, np.int64), np.zeros(n, np.int64),
                             self.samples, self.sums[0], self.sums[1], self.lows[0], self.highs[0], self.lows[1],
                             self.highs[1])


def one_run(args: argparse.Namespace, seed: int) -> dict[str, float]:
    names = [f"srv-{index:06d}.bench" for index in range(args.servers)]
    loads = Loads(min(args.servers, DISTINCT_SERVERS), args.step, args.resolution, seed)
    with tempfile.TemporaryDirectory(prefix="servertrack-disk-") as directory:
        store = SqliteStore(Path(directory) / "history.sqlite3")
        try:
            rollup = DayRollup(names, DAY)
            write_seconds = 0.0
            disk_bytes = 0
            for hour in range(24):
                blocks = minute_blocks(names, DAY * 24 + hour, loads)
                rollup.add(hour, blocks)
                before, started = written_bytes(), time.perf_counter()
                store.write_blocks(blocks)
                write_seconds += time.perf_counter() - started
                disk_bytes += written_bytes() - before
            store.write_blocks(rollup.blocks())
            store.checkpoint()
            size = store.path.stat().st_size
            with contextlib.closing(sqlite3.connect(store.path)) as raw:  # the packed cells alone
                cells = sum(raw.execute(f"SELECT total(length(cells)) FROM {table}").fetchone()[0]
                            for table in ("minute_blocks", "hour_blocks"))
            reads = []
            reader = store.reader()
            rng = np.random.default_rng(seed)
            for index in rng.integers(0, args.servers, 200).tolist():
                started = time.perf_counter()
                day = reader.read_cells(names[index], MINUTE_WIDTH, DAY * 1440, 1440)
                reads.append(time.perf_counter() - started)
                assert int(day.samples.sum()) == 86_400
            reader.close()
        finally:
            store.close()
    return {
        "bytes": size / args.servers,
        "cells": cells / args.servers,
        "write": write_seconds / (24 * args.servers) * 100_000,
        "disk_mb": disk_bytes / 24 / 1e6,
        "read_p50": float(np.percentile(reads, 50)) * 1e3,
        "read_p99": float(np.percentile(reads, 99)) * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=10_000, help="servers simulated (default %(default)s)")
    parser.add_argument("--resolution", type=float, default=0.01,
                        help="reported load resolution in percent: 0.01 (agents) or 1e-5 (default %(default)s)")
    parser.add_argument("--step", type=float, default=0.2,
                        help="standard deviation of a load's change per second, in points (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="fresh stores (default %(default)s)")
    args = parser.parse_args()
    harness.print_header(f"minute + hour history on disk: one day of {args.servers:,} servers, loads at "
                         f"{args.resolution:g} % resolution, random walks of {args.step:g} points/s")
    runs = []
    for run in range(1, args.runs + 1):
        figures = one_run(args, seed=run)
        runs.append(figures)
        print(f"  run {run}: {figures['bytes']:,.0f} B/server-day ({figures['cells']:,.0f} B of packed cells), "
              f"write {figures['write']:.2f} s per 100k blocks, {figures['disk_mb']:,.1f} MB written per hourly "
              f"write, a day by minute read in {figures['read_p50']:.2f} ms (p99 {figures['read_p99']:.2f} ms)")
    per_day = [figures["bytes"] for figures in runs]
    writes = [figures["write"] for figures in runs]
    harness.print_runs("bytes per server-day", per_day, "B")
    harness.print_runs("write time per 100k minute blocks", writes, "s")
    harness.verdict("bytes per server-day vs the 16 KB goal (median)", harness.median(per_day), GOAL_BYTES, "B", False)
    ok = harness.verdict("bytes per server-day (median)", harness.median(per_day), LIMIT_BYTES, "B", False)
    ok &= harness.verdict("write time per 100k minute blocks (median)", harness.median(writes), TARGET_WRITE_SECONDS,
                          "s", False)
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
