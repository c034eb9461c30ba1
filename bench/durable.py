"""The durable store's figures (``serve --store sqlite``): ingest cost, crash recovery, range reads, disk.

Scenarios (``--scenario``; each prints every run's figure, the median, met / NOT MET per goal)

    ingest   In the same run a service with ``--store memory`` and then one with
             ``--store sqlite`` (a fresh data dir), each fed by the load generator at
             ``--rate`` (100,000) samples/s from ``--servers`` (100,000) servers for
             ``--settle`` (5) + ``--seconds`` (60) s; measured over the last ``--seconds``:
             applied rate (between batch landings, as ``ingest.py``), lost and dropped
             (must be 0), the service's CPU (psutil user+system of the serve process,
             all threads, % of one core) and RSS. Goal: CPU sqlite / memory <= 1.3.
             For sqlite also: the write rate in MB/min (10^6 bytes) from the serve
             process's ``/proc/PID/io`` ``write_bytes`` delta over the window, and from
             the store's own counters (log ``bytes_written`` + ``checkpoint_bytes``);
             fsyncs per second from the store's counters: log ``fsyncs`` plus, per
             checkpoint, the fsyncs ``checkpoint.py`` does (the redo file, the
             checkpoint directory, every ``*.cells`` image file: counted from the
             directory). SQLite's own fsyncs (its WAL checkpoints) are not counted:
             the store exposes no counter for them. The data dir's size at the end,
             by part (apparent and allocated: the checkpoint's image files are sparse).
    restart  Fill ``--servers`` servers with 24 h of windows over ``POST /loads`` (batches
             of 10,000; one sample per server per hour for the 24 hours the hour window
             shows, plus one per minute for the last 60 minutes, in time order), wait for
             a checkpoint (``checkpoints`` in ``/stats`` increments), run the load
             generator at ``--rate`` for ``--kill-after`` (20) s while polling ``--sampled``
             (200) servers' ``/servers/NAME/seconds`` and ``/servers/NAME/loads`` round
             robin, and ``kill -9`` the service mid-stream. Restart on the same data dir:
             time from spawn to the ready line and to the first ``/healthz`` 200 (polled
             from the spawn on a port chosen beforehand; goal <= 10 s), and the recovery
             figures of ``/stats``. Loss, two ways (goal <= 1 s of ingest each):
             *applied and lost* = per sampled server and minute bucket, (samples in its
             last poll before the kill) - (samples after the restart) where positive,
             summed, scaled to the fleet, divided by the rate: what a GET had shown and is
             gone (a sample applied after a server's last poll is not seen by it, hence):
             *lost from the kill* = of what the generator sent in the last ``--tail-window``
             (10) s before the kill ((kill - S) x rate / servers per server, from second S
             on; with evenly spread servers their send phases average out), the share the
             sampled servers' second windows lack after the restart, as seconds of ingest;
             it includes samples read but not applied (``pending``) and sent but not read
             at the kill, both estimated from a ``/stats`` taken right before it. Every
             other bucket of the sampled servers' minute, hour and second windows must be
             identical (samples, and avg/min/max where the counts agree); the first
             differences are printed. ``--kill-after 55`` (with the default 60 s
             checkpoints) shows a kill just before a checkpoint: the longest replay.
    ranges   A data dir prefilled *before* serve starts (a benchmark may prefill): for
             ``--servers`` servers, 24 h of minute blocks (period = UTC hour, 60 buckets)
             and 7 days of hour blocks (period = UTC day, 24 buckets; today's up to the
             current hour) written with ``SqliteStore.write_blocks`` (``parts`` 0, loads at
             0.01 %, 60 samples a minute and 3,600 an hour, per-bucket means a random walk,
             min/max spread around it; hour blocks generated on their own, not summed from
             the minutes). Then ``serve`` on it, the load generator at ``--range-rate``
             (50,000) samples/s over the same names, and once every server is live, wrk
             (``wrk/get_range.lua``, ``-t1 -c1 --latency``) for ``--range-seconds`` (30) s
             on ``GET /servers/{random}/loads?from=NOW-7d&to=NOW&step=hour`` and on
             ``...from=NOW-24h&to=NOW&step=minute`` (goal p99 <= 20 ms each). Also the
             prefill's file size per server. The file was just written, so its pages are
             in the page cache: these are warm-cache figures. ``--range-rate 0`` has every
             server report once, stops ingest, and measures the queries alone.
    disk     Bytes per server per day of minute+hour history: ``--disk-servers`` (1,000)
             servers for ``--disk-days`` (2) days of 1 sample/s random-walk loads (0.01 %
             steps, reflected at 0 and 100; cpu moves faster than ram), aggregated into
             24 minute blocks + 1 hour block per server per day and written as the service
             does (each hour's minute blocks of every server in one transaction, each
             day's hour blocks at its end), file size after ``PRAGMA
             wal_checkpoint(TRUNCATE)`` minus the empty database, / servers / days (goal
             16 KB, at most 32 KB; KB = 1,000 B). The blobs' own size is shown beside it.
             And bytes per node per day of snapshot history: 1,440 snapshot records (one
             a minute) of ``--snapshot-nodes`` (100) nodes, each a realistic snapshot
             (``loadgen.SnapshotTemplate``, numbers varying by minute, validated by
             ``STATS`` and kept as the service keeps it:
             ``snapshot_record(name, ts, pack_snapshot(stats))``), written a minute at a
             time; file size / nodes. If ``bench/history_disk.py`` exists, it is run
             too and its output shown.

Bounds
    Every data dir is a fresh ``tempfile.mkdtemp()`` removed at the end; all traffic is
    on 127.0.0.1; every loop is bounded in count and time; every process started is
    stopped (the killed one is reaped).

Usage
    python bench/durable.py --scenario ingest --runs 3
    python bench/durable.py --scenario restart --runs 3
    python bench/durable.py --scenario ranges --runs 3
    python bench/durable.py --scenario disk --runs 3
    python bench/durable.py --scenario ingest --seconds 10 --runs 1     # a quick check
Exit status 1 if a goal is not met, 2 if wrk is missing (ranges).
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import calendar
import contextlib
import http.client
import itertools
import math
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt
import orjson

import http_api
import loadgen
from servertrack.common.node_messages import STATS
from servertrack.common.snapshots import pack_snapshot
from servertrack.store.durable import snapshot_record
from servertrack.store.history_codec import BlockCells, encode_many
from servertrack.store.records import BASE_PART, HOUR_WIDTH, MINUTE_WIDTH, HistoryBlocks
from servertrack.store.sqlite_store import SqliteStore

GOAL_CPU_RATIO = 1.3
GOAL_RESTART_SECONDS = 10.0
GOAL_LOST_SECONDS = 1.0
GOAL_RANGE_P99_MS = 20.0
GOAL_DISK_BYTES = 16_000
LIMIT_DISK_BYTES = 32_000
POLL_SECONDS = 0.2
FILL_BATCH = 10_000  # POST /loads items per body (the API's maximum)
DAY = 86_400
LOAD_UNITS = 10_000  # 100 % in units of 0.01 %
FIXED_PER_UNIT = 1_000  # 0.01 % in the store's fixed point (1e-5 %)
CHECKPOINT_FIXED_FSYNCS = 2  # checkpoint.py: the redo file and the checkpoint directory (+1 per image file)
MB = 1e6


# ---------------------------------------------------------------- shared helpers


@contextlib.contextmanager
def fresh_data_dir() -> Iterator[Path]:
    """A new empty directory (``tempfile.mkdtemp``), removed with everything in it at the end."""
    path = Path(tempfile.mkdtemp(prefix="servertrack-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def disk_usage(path: Path) -> tuple[int, int]:
    """``(apparent bytes, allocated bytes)`` of every file under ``path``."""
    apparent = allocated = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                info = os.stat(os.path.join(root, name))
                apparent += info.st_size
                allocated += info.st_blocks * 512
    return apparent, allocated


def usage_by_part(path: Path) -> str:
    """The data dir's size per part: history file (+ WAL), log, checkpoint; apparent / allocated MB."""
    parts: dict[str, list[int]] = {}
    for entry in sorted(path.iterdir()):
        key = "history.sqlite3*" if entry.name.startswith("history.sqlite3") else entry.name
        apparent, allocated = disk_usage(entry) if entry.is_dir() else (entry.stat().st_size, entry.stat().st_blocks * 512)
        total = parts.setdefault(key, [0, 0])
        total[0] += apparent
        total[1] += allocated
    return ", ".join(f"{key} {a / MB:,.1f}/{b / MB:,.1f}" for key, (a, b) in parts.items() if a or b)


def table_usage(path: Path) -> str:
    """Pages per table of an SQLite file (``dbstat``): MB on disk, of it payload and unused, overflow pages."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "SELECT name, sum(pgsize), sum(payload), sum(unused), sum(pagetype = 'overflow') FROM dbstat "
            "GROUP BY name HAVING sum(payload) > 0 ORDER BY sum(pgsize) DESC").fetchall()
    except sqlite3.Error as error:  # dbstat is a compile-time option
        return f"(no dbstat: {error})"
    finally:
        connection.close()
    return "; ".join(f"{name} {size / MB:,.2f} MB (payload {payload / MB:,.2f}, unused {unused / MB:,.2f}, "
                     f"{overflow:,} overflow pages)" for name, size, payload, unused, overflow in rows)


def proc_write_bytes(pid: int) -> int:
    """``write_bytes`` of ``/proc/PID/io``: bytes this process (all threads) caused to be written to storage."""
    with open(f"/proc/{pid}/io", encoding="ascii") as io:
        for line in io:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/io has no write_bytes")


def store_of(stats: dict[str, Any]) -> dict[str, Any]:
    """The ``store`` object of ``/stats`` (empty for a service without one)."""
    store: dict[str, Any] = stats.get("store") or {}
    return store


def store_counter(stats: dict[str, Any], *path: str) -> int:
    """A numeric counter inside ``/stats``' store object (0 where absent)."""
    node: Any = store_of(stats)
    for key in path:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return int(node) if isinstance(node, (int, float)) else 0


def store_failures(stats: dict[str, Any]) -> int:
    """Failed store jobs (log and history workers) so far."""
    return store_counter(stats, "log", "failures") + store_counter(stats, "history", "failures")


def queued_jobs(stats: dict[str, Any]) -> int:
    """Store jobs waiting in both workers' queues."""
    return store_counter(stats, "log", "queued_jobs") + store_counter(stats, "history", "queued_jobs")


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now (for a service whose port must be known before it is ready)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sqlite_flags(data_dir: Path, args: argparse.Namespace) -> list[str]:
    """``serve`` flags of a sqlite store in ``data_dir``."""
    return ["--store", "sqlite", "--data-dir", str(data_dir), "--checkpoint-every", args.checkpoint_every]


class KeepAlive:
    """One keep-alive HTTP/1.1 connection to a 127.0.0.1 service (reconnects after an error)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send one request; return ``(status, body)``. Raises ``OSError`` / ``http.client`` errors."""
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self._connection.request(method, path, body=body, headers=headers)
            response = self._connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def get_json(self, path: str) -> tuple[int, Any]:
        """GET ``path``; ``(status, decoded JSON)``."""
        status, body = self.request("GET", path)
        return status, orjson.loads(body) if body else None

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def loadgen_process(service: harness.Service, rate: int, servers: int, seconds: float) -> harness.Process:
    """A load generator sending to ``service``, started and past its warm-up (it printed ``measuring``)."""
    generator = harness.Process(harness.loadgen_argv(service.ingest, rate, servers, seconds), name="loadgen")
    try:
        line = generator.read_line(timeout=120)
        if line != "measuring":
            raise RuntimeError(f"unexpected line from loadgen: {line!r}")
    except BaseException:
        generator.stop()
        raise
    return generator


def verdict_all(label: str, ok: bool, detail: str) -> bool:
    """Print a met / NOT MET line for a yes-or-no goal."""
    print(f"  {label}: {detail}: {'met' if ok else 'NOT MET'}")
    return ok


# ---------------------------------------------------------------- 1. ingest: memory vs sqlite


@dataclass
class IngestRun:
    store: str
    applied_rate: float
    received_rate: float
    cpu_percent: float
    rss_mib: float
    window: float
    servers: int
    lost: int
    dropped: dict[str, int]
    missing: int
    loadgen_rate: float
    max_batch_ms: float
    longest_gap_s: float  # longest time between two batch landings in the window
    write_mb_min: float = math.nan  # /proc/PID/io write_bytes
    store_mb_min: float = math.nan  # log bytes_written + checkpoint_bytes
    log_mb_min: float = math.nan
    log_fsyncs_s: float = math.nan
    checkpoints: int = 0
    fsyncs_s: float = math.nan
    image_files: int = 0
    max_queued_jobs: int = 0
    failures: int = 0
    dir_apparent: int = 0
    dir_allocated: int = 0
    dir_parts: str = ""


@dataclass
class Poll:
    at: float
    stats: dict[str, Any]
    cpu: float
    rss: int
    written: int


def measure_ingest(store: str, args: argparse.Namespace) -> IngestRun:
    """One service with ``store``, one generator, one measured window."""
    with contextlib.ExitStack() as stack:
        flags: list[str] = ["--store", "memory"]
        data_dir: Path | None = None
        if store == "sqlite":
            data_dir = stack.enter_context(fresh_data_dir())
            flags = sqlite_flags(data_dir, args)
        service = stack.enter_context(harness.Service(max_servers=args.max_servers, flags=flags))
        generator = stack.enter_context(
            loadgen_process(service, args.rate, args.servers, args.settle + args.seconds))
        start = time.monotonic()
        window_start, window_end = start + args.settle, start + args.settle + args.seconds
        polls: list[Poll] = []
        while time.monotonic() < window_end + 10:
            polls.append(Poll(time.monotonic(), service.stats(), service.cpu_seconds(), service.rss(),
                              proc_write_bytes(service.pid)))
            if polls[-1].at >= window_end:
                break
            time.sleep(max(0.0, min(POLL_SECONDS, window_end - time.monotonic())))
        result = harness.last_json_line(generator, timeout=args.settle + args.seconds + 60)
        final = service.wait_idle(timeout=60)
        steady = [p for p in polls if p.at >= window_start]
        first, last = steady[0], steady[-1]
        span = last.at - first.at
        landings = [q for p, q in itertools.pairwise(polls) if q.stats["applied"] != p.stats["applied"]]
        landings = [q for q in landings if q.at >= window_start]
        if len(landings) >= 2 and landings[-1].at > landings[0].at:
            applied_rate = (landings[-1].stats["applied"] - landings[0].stats["applied"]) / (
                landings[-1].at - landings[0].at)
        else:
            applied_rate = (last.stats["applied"] - first.stats["applied"]) / span
        gaps = [b.at - a.at for a, b in itertools.pairwise(landings)]
        sent = result["sent"] + result["warmup_sent"]
        run = IngestRun(
            store=store, applied_rate=applied_rate,
            received_rate=(last.stats["received"] - first.stats["received"]) / span,
            cpu_percent=100.0 * (last.cpu - first.cpu) / span, rss_mib=last.rss / 2**20, window=span,
            servers=final["servers"], lost=final["lost"], dropped={k: v for k, v in final["dropped"].items() if v},
            missing=sent - final["received"], loadgen_rate=result["rate"],
            max_batch_ms=1000 * max(p.stats["last_batch_seconds"] for p in steady),
            longest_gap_s=max(gaps) if gaps else math.nan,
            max_queued_jobs=max(queued_jobs(p.stats) for p in steady), failures=store_failures(final),
        )  # fmt: skip
        if data_dir is not None:
            per_minute = 60.0 / span
            log_bytes = store_counter(last.stats, "log", "bytes_written") - store_counter(first.stats, "log", "bytes_written")
            checkpoint_bytes = store_counter(last.stats, "checkpoint_bytes") - store_counter(first.stats, "checkpoint_bytes")
            log_fsyncs = store_counter(last.stats, "log", "fsyncs") - store_counter(first.stats, "log", "fsyncs")
            run.checkpoints = store_counter(last.stats, "checkpoints") - store_counter(first.stats, "checkpoints")
            run.image_files = len(list((data_dir / "checkpoint").glob("*.cells")))
            run.write_mb_min = (last.written - first.written) * per_minute / MB
            run.store_mb_min = (log_bytes + checkpoint_bytes) * per_minute / MB
            run.log_mb_min = log_bytes * per_minute / MB
            run.log_fsyncs_s = log_fsyncs / span
            run.fsyncs_s = (log_fsyncs + run.checkpoints * (CHECKPOINT_FIXED_FSYNCS + run.image_files)) / span
            run.dir_apparent, run.dir_allocated = disk_usage(data_dir)
            run.dir_parts = usage_by_part(data_dir)
    return run


def print_ingest_run(number: int, r: IngestRun) -> None:
    print(f"  run {number} {r.store:>6}: applied {r.applied_rate:,.0f}/s, received {r.received_rate:,.0f}/s over "
          f"{r.window:.1f} s; CPU {r.cpu_percent:.0f}% of one core, RSS {r.rss_mib:,.0f} MiB; max batch "
          f"{r.max_batch_ms:.0f} ms, longest gap between batches {r.longest_gap_s:.2f} s")
    print(f"               servers {r.servers:,}, lost {r.lost:,}, dropped {r.dropped or 0}, never arrived "
          f"{r.missing:,}; loadgen {r.loadgen_rate:,.0f} frames/s")
    if r.store == "sqlite":
        print(f"               writes: {r.write_mb_min:,.1f} MB/min (/proc io), store counters {r.store_mb_min:,.1f} "
              f"MB/min (log {r.log_mb_min:,.1f}); fsyncs {r.fsyncs_s:.2f}/s (log {r.log_fsyncs_s:.2f}/s + "
              f"{r.checkpoints} checkpoint(s) x {CHECKPOINT_FIXED_FSYNCS + r.image_files}); store failures "
              f"{r.failures}, most queued jobs {r.max_queued_jobs}")
        print(f"               data dir at the end {r.dir_apparent / MB:,.1f} MB apparent, "
              f"{r.dir_allocated / MB:,.1f} MB allocated ({r.dir_parts})")


def scenario_ingest(args: argparse.Namespace) -> bool:
    print(f"-- ingest: --store memory then --store sqlite in each run; {args.rate:,} samples/s from "
          f"{args.servers:,} servers, settle {args.settle:g} s, measure {args.seconds:g} s, {args.runs} run(s)")
    runs: list[tuple[IngestRun, IngestRun]] = []
    for number in range(1, args.runs + 1):
        memory = measure_ingest("memory", args)
        print_ingest_run(number, memory)
        durable = measure_ingest("sqlite", args)
        print_ingest_run(number, durable)
        print(f"               CPU sqlite / memory: {durable.cpu_percent / memory.cpu_percent:.2f}")
        runs.append((memory, durable))
    memories, durables = [m for m, _ in runs], [d for _, d in runs]
    ratios = [d.cpu_percent / m.cpu_percent for m, d in runs]
    for label, results in (("memory", memories), ("sqlite", durables)):
        harness.print_runs(f"{label}: applied rate", [r.applied_rate for r in results], "samples/s")
        harness.print_runs(f"{label}: service CPU", [r.cpu_percent for r in results], "% of one core")
        harness.print_runs(f"{label}: service RSS", [r.rss_mib for r in results], "MiB")
    harness.print_runs("CPU ratio sqlite / memory", ratios, "x")
    harness.print_runs("sqlite: write rate (/proc/PID/io write_bytes)", [r.write_mb_min for r in durables], "MB/min")
    harness.print_runs("sqlite: write rate (store counters: log + checkpoints)", [r.store_mb_min for r in durables],
                       "MB/min")
    harness.print_runs("sqlite: fsyncs (log fsyncs + checkpoint fsyncs)", [r.fsyncs_s for r in durables], "/s")
    harness.print_runs("sqlite: data dir at the end (allocated)", [r.dir_allocated / MB for r in durables], "MB")
    if harness.median([r.loadgen_rate for r in memories + durables]) < 0.99 * args.rate:
        print("  WARNING: the load generator did not reach the target rate; the figures are lower bounds")
    ok = harness.verdict("CPU sqlite / memory (median)", harness.median(ratios), GOAL_CPU_RATIO, "x", False)
    clean = all(r.lost == 0 and not r.dropped for r in memories + durables)
    ok &= verdict_all("lost == 0 and no drops, both stores, every run", clean,
                      f"lost {[r.lost for r in memories + durables]}, dropped "
                      f"{[r.dropped or 0 for r in memories + durables]}")
    ok &= verdict_all("no store failures", all(r.failures == 0 for r in durables),
                      f"failures {[r.failures for r in durables]}")
    return ok


# ---------------------------------------------------------------- 2. restart after kill -9


@dataclass
class ServerState:
    """One sampled server's windows as one poll saw them: bucket start -> (samples, cpu, ram)."""

    at: float  # wall clock when the answer arrived
    seconds: dict[str, tuple[int, Any, Any]]
    minutes: dict[str, tuple[int, Any, Any]]
    hours: dict[str, tuple[int, Any, Any]]


def read_state(client: KeepAlive, name: str) -> ServerState | None:
    """Both windows of ``name`` (None if it is unknown or the service does not answer)."""
    status, seconds = client.get_json(f"/servers/{name}/seconds")
    if status != 200:
        return None
    status, loads = client.get_json(f"/servers/{name}/loads")
    if status != 200:
        return None

    def buckets(items: list[dict[str, Any]]) -> dict[str, tuple[int, Any, Any]]:
        return {b["start"]: (int(b["samples"]), b["cpu"], b["ram"]) for b in items}

    return ServerState(time.time(), buckets(seconds["seconds"]), buckets(loads["minutes"]), buckets(loads["hours"]))


def fill_bodies(servers: int, now: float, rng: random.Random) -> Iterator[tuple[int, bytes]]:
    """``POST /loads`` bodies of ``FILL_BATCH`` items: one sample per server per hour of the hour window,
    then one per minute for the last 60 minutes, in time order (``(items, body)``)."""
    names = [loadgen.server_name(i) for i in range(servers)]
    pool = [f"{rng.uniform(0, 100):.2f}" for _ in range(4096)]
    hour, minute = int(now // 3600), int(now // 60)
    stamps = [min(h * 3600 + 5, int(now) - 1) for h in range(hour - 23, hour + 1)]
    stamps += [min(m * 60 + 30, int(now) - 1) for m in range(minute - 59, minute + 1)]
    stamps = sorted(set(stamps))
    items: list[str] = []
    spin = 0
    for ts in stamps:
        for name in names:
            spin += 1
            items.append(f'{{"server":"{name}","cpu":{pool[spin & 4095]},"ram":{pool[(spin * 7) & 4095]},"ts":{ts}}}')
            if len(items) == FILL_BATCH:
                yield len(items), ("[" + ",".join(items) + "]").encode()
                items = []
    if items:
        yield len(items), ("[" + ",".join(items) + "]").encode()


def fill_windows(service: harness.Service, servers: int, patience: float = 50.0) -> tuple[int, float]:
    """Post the 24 h fill; return ``(samples accepted, seconds)``. 503s are retried for up to ``patience``
    seconds per body."""
    now = time.time()
    if 3600 - now % 3600 < 45:  # the oldest hour must not leave the window while it is being posted
        time.sleep(3600 - now % 3600 + 1)
        now = time.time()
    client = KeepAlive(service.port, timeout=60)
    started, accepted = time.monotonic(), 0
    try:
        for count, body in fill_bodies(servers, now, random.Random(7)):
            give_up = time.monotonic() + patience
            while True:
                status, answer = client.request("POST", "/loads", body)
                if status != 503 or time.monotonic() >= give_up:
                    break
                time.sleep(0.25)
            if status != 202:
                raise RuntimeError(f"POST /loads answered {status}: {answer[:300]!r}")
            accepted += count
    finally:
        client.close()
    return accepted, time.monotonic() - started


def compare_states(name: str, before: ServerState, after: ServerState, examples: list[str]) -> dict[str, int]:
    """Bucket by bucket (the buckets both windows show): samples missing after the restart, buckets with more
    samples after (applied after the last poll), and buckets whose loads differ although the counts agree;
    the first few differences go to ``examples``."""
    tally = {"missing_minute": 0, "missing_second": 0, "missing_hour": 0, "newer": 0, "differ": 0, "compared": 0}
    for kind, old, new in (("minute", before.minutes, after.minutes), ("hour", before.hours, after.hours),
                           ("second", before.seconds, after.seconds)):
        for start, bucket in old.items():
            if start not in new:
                continue
            tally["compared"] += 1
            later = new[start]
            if later[0] > bucket[0]:
                tally["newer"] += 1
                continue
            if later[0] < bucket[0]:
                tally[f"missing_{kind}"] += bucket[0] - later[0]
            elif bucket[1:] != later[1:]:
                tally["differ"] += 1
            else:
                continue
            if len(examples) < 6:
                examples.append(f"{name} {kind} {start}: before {bucket}, after {later}")
    return tally


def epoch(start: str) -> int:
    """A bucket's ``start`` (``2026-11-25T14:19:02Z``) as epoch seconds."""
    return calendar.timegm(time.strptime(start, "%Y-%m-%dT%H:%M:%SZ"))


def samples_from(state: ServerState, first_second: int) -> int | None:
    """Samples in the second buckets from ``first_second`` on; None if the window no longer shows that second."""
    starts = {epoch(start): samples for start, (samples, _, _) in state.seconds.items()}
    if not starts or min(starts) > first_second:
        return None
    return sum(samples for second, samples in starts.items() if second >= first_second)


@dataclass
class RestartRun:
    filled: int
    fill_seconds: float
    checkpoint_wait: float
    checkpoint_age_at_kill: float
    pending_at_kill: int  # samples read but not applied yet, at the last /stats before the kill
    unread_at_kill: int  # samples sent by then but not read by the service yet (estimated)
    loadgen_rate: float
    spawn_to_ready: float
    spawn_to_health: float
    recovery: dict[str, Any]
    servers_after: int
    applied_lost: int  # samples in the sampled servers' minute buckets at their last poll, gone after
    applied_lost_seconds: float  # scaled to the fleet, / rate
    second_buckets_lost: int
    kill_loss_seconds: float  # what was sent in the last seconds before the kill and is not back, as ingest time
    kill_window: float
    poll_age_median: float
    poll_age_max: float
    differ: int
    newer: int
    compared: int
    sampled: int
    examples: list[str]
    checkpoint_bytes: int
    dir_allocated: int
    failures: int


def wait_for_checkpoint(service: harness.Service, after: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Poll ``/stats`` until ``checkpoints`` is above its value in ``after``; the stats then."""
    deadline = time.monotonic() + timeout
    stats = after
    while store_counter(stats, "checkpoints") <= store_counter(after, "checkpoints"):
        if time.monotonic() >= deadline:
            raise RuntimeError(f"no checkpoint within {timeout:.0f} s")
        time.sleep(0.5)
        stats = service.stats()
    return stats


def restart_timed(flags: list[str], max_servers: int) -> tuple[harness.Service, float, float]:
    """Start serve on a port chosen beforehand, polling ``/healthz`` from the spawn on; ``(service, spawn to
    ready line, spawn to first /healthz 200)``."""
    port = free_port()
    health: dict[str, float] = {}
    stop_probe = threading.Event()
    spawned = time.monotonic()

    def probe() -> None:
        while not stop_probe.is_set() and time.monotonic() - spawned < 120:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    health["at"] = time.monotonic()
                    return
            except (OSError, http.client.HTTPException):
                pass
            finally:
                connection.close()
            time.sleep(0.02)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        service = harness.Service(max_servers=max_servers, ready_timeout=120, flags=[*flags, "--port", str(port)])
        ready = time.monotonic() - spawned
        prober.join(timeout=15)
    finally:
        stop_probe.set()
        prober.join(timeout=5)
    return service, ready, health.get("at", math.nan) - spawned


def measure_restart(args: argparse.Namespace) -> RestartRun:
    """Fill, checkpoint, ingest, kill -9, restart; see the module's docstring."""
    stride = args.servers // args.sampled
    names = [loadgen.server_name(i * stride + (i * 37) % max(1, stride)) for i in range(args.sampled)]
    checkpoint_seconds = float(args.checkpoint_every[:-1])
    with fresh_data_dir() as data_dir:
        flags = sqlite_flags(data_dir, args)
        before: dict[str, ServerState] = {}
        with harness.Service(max_servers=args.max_servers, flags=flags) as service:
            filled, fill_seconds = fill_windows(service, args.servers)
            idle = service.wait_idle(timeout=120)
            waiting = time.monotonic()
            stats = wait_for_checkpoint(service, idle, checkpoint_seconds + 120)
            checkpoint_wait = time.monotonic() - waiting
            last_checkpoint = time.monotonic()
            client = KeepAlive(service.port)
            with loadgen_process(service, args.rate, args.servers, args.kill_after + 30) as generator:
                measuring = time.monotonic()
                kill_at = measuring + args.kill_after
                last_stats, polled = stats, 0
                while time.monotonic() < kill_at:  # bounded by kill_at: one server's two GETs a turn
                    name = names[polled % len(names)]
                    state = read_state(client, name)
                    if state is not None:
                        before[name] = state
                    polled += 1
                    if polled % 50 == 0:
                        latest = service.stats()
                        if store_counter(latest, "checkpoints") > store_counter(last_stats, "checkpoints"):
                            last_checkpoint = time.monotonic()
                        last_stats = latest
                asked = time.monotonic()
                last_stats = service.stats()  # what the service had read and applied right before the kill
                answered = time.monotonic()
                os.kill(service.pid, signal.SIGKILL)
                killed_wall, killed = time.time(), time.monotonic()
                service.popen.wait(timeout=30)
                generator.popen.send_signal(signal.SIGTERM)
                sent = harness.last_json_line(generator, timeout=30)
            client.close()
        if len(before) < len(names):
            raise RuntimeError(f"only {len(before)} of {len(names)} sampled servers were polled before the kill")
        restarted, ready, healthy = restart_timed(flags, args.max_servers)
        with restarted:
            stats_after = restarted.stats()
            client = KeepAlive(restarted.port)
            after = {}
            for name in names:
                state = read_state(client, name)
                if state is None:
                    raise RuntimeError(f"{name} is unknown after the restart")
                after[name] = state
            client.close()
            dir_allocated = disk_usage(data_dir)[1]
    examples: list[str] = []
    tallies = [compare_states(name, before[name], after[name], examples) for name in names]
    total = {key: sum(t[key] for t in tallies) for key in tallies[0]}
    # loss from the kill: samples sent in [first, kill) per server, expected (kill - first) * rate / servers each
    first = int(killed_wall - min(args.tail_window, args.kill_after - 3))
    counts = [samples_from(after[name], first) for name in names]
    if any(count is None for count in counts):
        kill_loss = math.nan  # the restart took so long that the second windows no longer reach back
    else:
        kill_loss = (killed_wall - first) - sum(c or 0 for c in counts) * args.servers / (len(names) * args.rate)
    ages = [killed_wall - state.at for state in before.values()]
    return RestartRun(
        filled=filled, fill_seconds=fill_seconds, checkpoint_wait=checkpoint_wait,
        checkpoint_age_at_kill=killed - last_checkpoint, pending_at_kill=int(last_stats.get("pending", 0)),
        unread_at_kill=int(args.rate * ((asked + answered) / 2 - measuring) - (last_stats["received"] - stats["received"])),
        loadgen_rate=sent["rate"], spawn_to_ready=ready, spawn_to_health=healthy,
        recovery=store_of(stats_after).get("recovery", {}), servers_after=stats_after["servers"],
        applied_lost=total["missing_minute"],
        applied_lost_seconds=total["missing_minute"] * args.servers / len(names) / args.rate,
        second_buckets_lost=total["missing_second"], kill_loss_seconds=kill_loss, kill_window=killed_wall - first,
        poll_age_median=harness.median(ages), poll_age_max=max(ages), differ=total["differ"],
        newer=total["newer"], compared=total["compared"], sampled=len(names), examples=examples,
        checkpoint_bytes=store_counter(last_stats, "checkpoint_bytes"), dir_allocated=dir_allocated,
        failures=store_failures(stats_after),
    )  # fmt: skip


def scenario_restart(args: argparse.Namespace) -> bool:
    print(f"-- restart: {args.servers:,} servers with 24 h of windows, a checkpoint, {args.rate:,} samples/s for "
          f"{args.kill_after:g} s, kill -9, restart; {args.sampled} servers sampled; {args.runs} run(s)")
    runs = []
    for number in range(1, args.runs + 1):
        r = measure_restart(args)
        runs.append(r)
        rec = r.recovery
        print(f"  run {number}: fill {r.filled:,} samples in {r.fill_seconds:.0f} s, a checkpoint {r.checkpoint_wait:.0f} s "
              f"later; loadgen {r.loadgen_rate:,.0f} frames/s; kill {r.checkpoint_age_at_kill:.1f} s after the last "
              f"checkpoint seen ({r.checkpoint_bytes / MB:,.1f} MB written by checkpoints); right before the kill "
              f"{r.pending_at_kill:,} samples read but not applied ({r.pending_at_kill / args.rate:.2f} s), about "
              f"{r.unread_at_kill:,} sent but not read yet ({r.unread_at_kill / args.rate:.2f} s)")
        print(f"         restart: spawn -> ready line {r.spawn_to_ready:.2f} s, spawn -> /healthz 200 "
              f"{r.spawn_to_health:.2f} s; recovery {rec}; servers after {r.servers_after:,}")
        print(f"         applied and lost: {r.applied_lost} samples in the minute windows of {r.sampled} servers "
              f"(second windows: {r.second_buckets_lost}) -> {r.applied_lost_seconds:.3f} s of ingest at fleet "
              f"scale; their last polls were {r.poll_age_median:.2f} s old at the kill (median; max "
              f"{r.poll_age_max:.2f} s)")
        print(f"         lost from the kill: of what was sent in the last {r.kill_window:.1f} s, "
              f"{r.kill_loss_seconds:.2f} s of ingest is not back")
        print(f"         windows: {r.compared:,} buckets compared, {r.differ} differ with equal counts, {r.newer} gained "
              f"samples applied after the last poll; store failures {r.failures}; data dir {r.dir_allocated / MB:,.0f} MB")
        for example in r.examples:
            print(f"           e.g. {example}")
    harness.print_runs("spawn -> ready line", [r.spawn_to_ready for r in runs], "s")
    harness.print_runs("spawn -> first /healthz 200", [r.spawn_to_health for r in runs], "s")
    harness.print_runs("recovery seconds (/stats)", [float(r.recovery.get("seconds", math.nan)) for r in runs], "s")
    harness.print_runs("replayed samples", [float(r.recovery.get("replayed_samples", math.nan)) for r in runs], "")
    harness.print_runs("applied and lost, as ingest time", [r.applied_lost_seconds for r in runs], "s")
    harness.print_runs("lost from the kill, as ingest time", [r.kill_loss_seconds for r in runs], "s")
    ok = harness.verdict("spawn -> /healthz 200 (median)", harness.median([r.spawn_to_health for r in runs]),
                         GOAL_RESTART_SECONDS, "s", False)
    ok &= harness.verdict("applied and lost (median)", harness.median([r.applied_lost_seconds for r in runs]),
                          GOAL_LOST_SECONDS, "s", False)
    ok &= harness.verdict("lost from the kill (median)", harness.median([r.kill_loss_seconds for r in runs]),
                          GOAL_LOST_SECONDS, "s", False)
    ok &= verdict_all("windows otherwise identical", all(r.differ == 0 and r.second_buckets_lost == 0 for r in runs),
                      f"buckets differing per run {[r.differ for r in runs]}, second-window samples missing per run "
                      f"{[r.second_buckets_lost for r in runs]}")
    ok &= verdict_all("every server back", all(r.servers_after >= args.servers for r in runs),
                      f"servers after {[r.servers_after for r in runs]}")
    return ok


# ---------------------------------------------------------------- synthetic history blocks


def synthetic_cells(rng: np.random.Generator, level: npt.NDArray[np.int64], buckets: int, per_bucket: int,
                    step: float, spread: float, filled: int | None = None) -> tuple[BlockCells, npt.NDArray[np.int64]]:
    """Cells of ``len(level)`` blocks of ``buckets`` buckets, ``per_bucket`` samples each at 0.01 %: each
    bucket's mean a random walk (``step`` units of 0.01 % per bucket) from ``level``, min/max spread below
    and above it (``spread`` units), a remainder so the sum is a whole number of 0.01 %. Only the first
    ``filled`` buckets have samples. Returns the cells and the walk's new level (per block)."""
    n = len(level)
    means = np.clip(level[:, None] + np.cumsum(np.rint(rng.normal(0.0, step, (n, buckets))), axis=1), 0, LOAD_UNITS)
    means = means.astype(np.int64)
    remainder = rng.integers(0, per_bucket, (n, buckets))
    remainder[means >= LOAD_UNITS] = 0
    low = np.maximum(0, means - np.rint(np.abs(rng.normal(0.0, spread, (n, buckets)))).astype(np.int64))
    high = np.minimum(LOAD_UNITS, means + np.rint(np.abs(rng.normal(0.0, spread, (n, buckets)))).astype(np.int64))
    high = np.maximum(high, np.where(remainder > 0, means + 1, means))
    sums = (means * per_bucket + remainder) / 100.0
    counts = np.full((n, buckets), per_bucket, dtype=np.uint32)
    if filled is not None:
        counts[:, filled:] = 0
    empty = counts == 0
    sums[empty] = 0.0
    low[empty] = 0
    high[empty] = 0
    fixed_low, fixed_high = (low * FIXED_PER_UNIT).astype(np.uint32), (high * FIXED_PER_UNIT).astype(np.uint32)
    return BlockCells(counts, sums, sums.copy(), fixed_low, fixed_high, fixed_low.copy(), fixed_high.copy()), means[:, -1]


def two_loads(rng: np.random.Generator, cpu: npt.NDArray[np.int64], ram: npt.NDArray[np.int64], buckets: int,
              per_bucket: int, filled: int | None = None) -> tuple[BlockCells, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Cells with cpu and ram from two walks (cpu moves faster than ram); returns the new levels."""
    scale = math.sqrt(per_bucket / 60.0)
    cpu_cells, cpu = synthetic_cells(rng, cpu, buckets, per_bucket, 40.0 * scale, 150.0 * scale, filled)
    ram_cells, ram = synthetic_cells(rng, ram, buckets, per_bucket, 5.0 * scale, 20.0 * scale, filled)
    cells = BlockCells(cpu_cells.samples, cpu_cells.cpu_sum, ram_cells.cpu_sum, cpu_cells.cpu_min, cpu_cells.cpu_max,
                       ram_cells.cpu_min, ram_cells.cpu_max)
    return cells, cpu, ram


def history_blocks(width: int, names: list[str], period: int, cells: BlockCells) -> HistoryBlocks:
    """Base blocks of one period for ``names``."""
    n = len(names)
    return HistoryBlocks(width, names, np.full(n, period, dtype=np.int64), np.full(n, BASE_PART, dtype=np.int64),
                         cells.samples, cells.cpu_sum, cells.ram_sum, cells.cpu_min, cells.cpu_max, cells.ram_min,
                         cells.ram_max)


def prefill_ranges(path: Path, servers: int, now: float, chunk: int = 10_000) -> tuple[int, int, float]:
    """24 h of minute blocks and 7 days of hour blocks for ``servers`` servers; ``(blocks, bytes, seconds)``."""
    started = time.monotonic()
    rng = np.random.default_rng(11)
    names = [loadgen.server_name(i) for i in range(servers)]
    hour, day = int(now // 3600), int(now // DAY)
    store = SqliteStore(path)
    blocks = 0
    try:
        for width, periods, buckets, per_bucket in ((MINUTE_WIDTH, range(hour - 24, hour), 60, 60),
                                                    (HOUR_WIDTH, range(day - 7, day + 1), 24, 3600)):
            cpu = rng.integers(500, 9500, servers).astype(np.int64)
            ram = rng.integers(2000, 8000, servers).astype(np.int64)
            for period in periods:
                filled = hour - day * 24 if width == HOUR_WIDTH and period == day else None
                if filled == 0:
                    continue
                for first in range(0, servers, chunk):
                    part = slice(first, min(servers, first + chunk))
                    cells, cpu[part], ram[part] = two_loads(rng, cpu[part], ram[part], buckets, per_bucket, filled)
                    store.write_blocks(history_blocks(width, names[part], period, cells))
                    blocks += part.stop - part.start
        store.checkpoint()
        size = store.size_bytes()
    finally:
        store.close()
    return blocks, size, time.monotonic() - started


# ---------------------------------------------------------------- 3. range queries


def check_range(service: harness.Service, span: int, step: str) -> str:
    """One range answer, checked: status, bucket count, how many buckets have samples."""
    now = int(time.time())
    status, body = harness.http_json(
        "GET", f"{service.url}/servers/{loadgen.server_name(123)}/loads?from={now - span}&to={now}&step={step}")
    if status != 200:
        raise RuntimeError(f"range query answered {status}: {body}")
    buckets = body["buckets"]
    filled = sum(1 for b in buckets if b["samples"])
    return f"{len(buckets)} buckets, {filled} with samples"


def scenario_ranges(args: argparse.Namespace) -> bool:
    if shutil.which("wrk") is None:
        print("wrk is not installed. Install it with:  apt-get update && apt-get install -y wrk", file=sys.stderr)
        raise SystemExit(2)
    queries = (("7 days by hour", 7 * DAY, "hour"), ("24 h by minute", DAY, "minute"))
    print(f"-- ranges: {args.servers:,} servers prefilled (24 h of minutes, 7 days of hours, on disk), serve on it, "
          f"loadgen {args.range_rate:,} samples/s, wrk -t1 -c{args.connections} --latency {args.range_seconds:g} s "
          f"per query, {args.runs} run(s)")
    ok = True
    with fresh_data_dir() as data_dir:
        blocks, size, seconds = prefill_ranges(data_dir / "history.sqlite3", args.servers, time.time())
        print(f"  prefill: {blocks:,} blocks in {seconds:.0f} s, {size / MB:,.0f} MB, {size / args.servers:,.0f} B "
              f"per server (24 minute blocks + 8 hour blocks each)")
        # --range-rate 0: every server reports at 50,000/s, then ingest stops (a baseline without ingest)
        load_rate = args.range_rate or 50_000
        load_seconds = math.ceil(args.servers / load_rate)
        planned = load_seconds + 30 + args.warmup * 2 + args.runs * 2 * (args.range_seconds + 5) + 60
        with harness.Service(max_servers=args.max_servers, ready_timeout=120, flags=sqlite_flags(data_dir, args)) \
                as service, loadgen_process(service, load_rate, args.servers,
                                            planned if args.range_rate else load_seconds) as generator:
            loaded = service.wait_for(lambda s: s["servers"] >= args.servers, timeout=load_seconds + 60)
            if loaded["servers"] < args.servers:
                raise RuntimeError(f"only {loaded['servers']:,} of {args.servers:,} servers loaded")
            if not args.range_rate:
                harness.last_json_line(generator, timeout=60)
                service.wait_idle(timeout=60)
            time.sleep(2.0)
            for label, span, step in queries:
                print(f"  check {label}: {check_range(service, span, step)}")
            results: dict[str, list[tuple[http_api.WrkResult, float]]] = {label: [] for label, _, _ in queries}
            url = service.url + "/servers"
            for label, span, step in queries:
                if args.warmup > 0:
                    http_api.run_wrk(url, "get_range.lua", args.warmup, args.connections,
                                     [str(args.servers), str(span), step])
            for number in range(1, args.runs + 1):
                for label, span, step in queries:
                    before, started = service.stats(), time.monotonic()
                    result = http_api.run_wrk(url, "get_range.lua", args.range_seconds, args.connections,
                                              [str(args.servers), str(span), step])
                    after, ended = service.stats(), time.monotonic()
                    ingest = (after["applied"] - before["applied"]) / (ended - started)
                    print(f"  run {number} {label}: " + " | ".join(result.key_lines))
                    print(f"         ingest meanwhile {ingest:,.0f} samples/s applied, lost {after['lost']:,}, "
                          f"dropped {after['dropped'] or 0}, last batch {after['last_batch_seconds'] * 1000:.0f} ms, "
                          f"store queued jobs {queued_jobs(after)}, failures {store_failures(after)}")
                    if result.non_2xx or result.errors:
                        print(f"         WARNING: {result.non_2xx} non-2xx responses, {result.errors} socket errors")
                        ok = False
                    results[label].append((result, ingest))
    for label, _, _ in queries:
        p99 = [r.latency_ms["99%"] for r, _ in results[label]]
        harness.print_runs(f"{label}: p99", p99, "ms")
        harness.print_runs(f"{label}: p50", [r.latency_ms["50%"] for r, _ in results[label]], "ms")
        harness.print_runs(f"{label}: requests/s", [r.ok_rps for r, _ in results[label]], "req/s")
        harness.print_runs(f"{label}: ingest applied meanwhile", [i for _, i in results[label]], "samples/s")
        ok &= harness.verdict(f"{label}: p99 (median)", harness.median(p99), GOAL_RANGE_P99_MS, "ms", False)
    return ok


# ---------------------------------------------------------------- 4. disk per server-day and per node-day


def second_walk(rng: np.random.Generator, start: npt.NDArray[np.int64], seconds: int, step: float) -> npt.NDArray[np.int64]:
    """Per row, ``seconds`` 1 Hz loads in 0.01 % units: a random walk from ``start`` (unreflected position),
    reflected into 0..100 %. Returns the unreflected positions (the last column continues the walk)."""
    steps = np.rint(rng.normal(0.0, step, (len(start), seconds))).astype(np.int64)
    return start[:, None] + np.cumsum(steps, axis=1)


def reflect(position: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """A walk's positions folded into 0..LOAD_UNITS (reflecting at both ends)."""
    folded = np.mod(position, 2 * LOAD_UNITS)
    return np.where(folded > LOAD_UNITS, 2 * LOAD_UNITS - folded, folded)


def bucket_cells(cpu: npt.NDArray[np.int64], ram: npt.NDArray[np.int64], width: int) -> BlockCells:
    """Cells of ``[rows, seconds]`` 1 Hz loads (0.01 % units) in buckets of ``width`` seconds."""
    rows, seconds = cpu.shape
    shaped_cpu, shaped_ram = cpu.reshape(rows, seconds // width, width), ram.reshape(rows, seconds // width, width)
    counts = np.full((rows, seconds // width), width, dtype=np.uint32)
    return BlockCells(counts, shaped_cpu.sum(axis=2) / 100.0, shaped_ram.sum(axis=2) / 100.0,
                      (shaped_cpu.min(axis=2) * FIXED_PER_UNIT).astype(np.uint32),
                      (shaped_cpu.max(axis=2) * FIXED_PER_UNIT).astype(np.uint32),
                      (shaped_ram.min(axis=2) * FIXED_PER_UNIT).astype(np.uint32),
                      (shaped_ram.max(axis=2) * FIXED_PER_UNIT).astype(np.uint32))


def concat_cells(parts: Sequence[BlockCells], axis: int) -> BlockCells:
    """Cells joined along ``axis`` (0: more blocks, 1: more buckets)."""
    return BlockCells(*(np.concatenate([getattr(p, name) for p in parts], axis=axis) for name in BlockCells._fields))


@dataclass
class DiskRun:
    servers: int
    days: int
    history_bytes: int
    per_server_day: float
    blob_per_server_day: float
    minute_blob: float
    hour_blob: float
    nodes: int
    snapshot_bytes: int
    per_node_day: float
    record_bytes: float
    seconds: float


def measure_history_disk(path: Path, servers: int, days: int, seed: int) -> tuple[int, int, float, float]:
    """Write ``days`` of 1 Hz history of ``servers`` servers as the service does; ``(file bytes - empty file,
    blob bytes, mean minute blob, mean hour blob)``."""
    rng = np.random.default_rng(seed)
    names = [loadgen.server_name(i) for i in range(servers)]
    cpu = rng.integers(500, 9500, servers).astype(np.int64)
    ram = rng.integers(2000, 8000, servers).astype(np.int64)
    store = SqliteStore(path)
    try:
        store.checkpoint()
        empty = store.size_bytes()
        first_day = int(time.time() // DAY) - days
        blob_bytes, minute_blobs, hour_blobs = 0, [], []
        for day in range(first_day, first_day + days):
            hours_of_day: list[BlockCells] = []
            for hour in range(day * 24, day * 24 + 24):
                cpu_walk = second_walk(rng, cpu, 3600, 25.0)  # cpu: 0.25 % per second
                ram_walk = second_walk(rng, ram, 3600, 2.0)  # ram: 0.02 % per second
                cpu, ram = cpu_walk[:, -1].copy(), ram_walk[:, -1].copy()
                cpu_loads, ram_loads = reflect(cpu_walk), reflect(ram_walk)
                minutes = bucket_cells(cpu_loads, ram_loads, 60)
                hours_of_day.append(bucket_cells(cpu_loads, ram_loads, 3600))
                blobs = encode_many(minutes)
                minute_blobs.append(sum(map(len, blobs)) / len(blobs))
                blob_bytes += sum(map(len, blobs))
                store.write_blocks(history_blocks(MINUTE_WIDTH, names, hour, minutes))
            day_cells = concat_cells(hours_of_day, axis=1)
            blobs = encode_many(day_cells)
            hour_blobs.append(sum(map(len, blobs)) / len(blobs))
            blob_bytes += sum(map(len, blobs))
            store.write_blocks(history_blocks(HOUR_WIDTH, names, day, day_cells))
        store.checkpoint()
        size = store.size_bytes() - empty
    finally:
        store.close()
    return size, blob_bytes, float(np.mean(minute_blobs)), float(np.mean(hour_blobs))


def measure_snapshot_disk(path: Path, nodes: int, seed: int) -> tuple[int, float]:
    """1,440 snapshot records (one a minute) of ``nodes`` nodes; ``(file bytes - empty file, mean record)``."""
    templates = [loadgen.SnapshotTemplate(k, seed) for k in range(loadgen.FLEET_TEMPLATES)]
    rng = random.Random(seed)
    pool = [round(rng.uniform(0.0, 100.0), 2) for _ in range(1024)]
    names = [loadgen.node_name(i) for i in range(nodes)]
    store = SqliteStore(path)
    try:
        store.checkpoint()
        empty = store.size_bytes()
        start = (int(time.time()) // DAY - 1) * DAY
        sections = 0
        for minute in range(1440):
            records = []
            for i, name in enumerate(names):
                raw = templates[i % len(templates)].render(pool, minute * 131 + i * 17)
                stats = STATS.check(msgpack.unpackb(bytes(raw)), "stats")
                record = snapshot_record(name, start + minute * 60 + i % 60, pack_snapshot(stats))
                sections += len(record.sections)
                records.append(record)
            store.write_snapshots(records)
        store.checkpoint()
        size = store.size_bytes() - empty
    finally:
        store.close()
    return size, sections / (1440 * nodes)


def run_history_disk_script() -> None:
    """If another helper's ``bench/history_disk.py`` exists, run it and show what it prints."""
    script = os.path.join(harness.BENCH, "history_disk.py")
    if not os.path.exists(script):
        print("  (bench/history_disk.py does not exist: the figure above is this script's own)")
        return
    print(f"  bench/history_disk.py exists; its output ({harness.PYTHON} bench/history_disk.py):")
    done = subprocess.run([harness.PYTHON, script], check=False, cwd=harness.REPO, env=harness.child_env(), capture_output=True,
                          text=True, timeout=1800)
    for line in (done.stdout + done.stderr).splitlines():
        print(f"    | {line}")


def scenario_disk(args: argparse.Namespace) -> bool:
    print(f"-- disk: {args.disk_servers:,} servers x {args.disk_days} day(s) of 1 Hz random walks -> minute + hour "
          f"blocks; {args.snapshot_nodes} nodes x 1,440 snapshot records; {args.runs} run(s)")
    runs = []
    for number in range(1, args.runs + 1):
        started = time.monotonic()
        with fresh_data_dir() as directory:
            size, blobs, minute_blob, hour_blob = measure_history_disk(
                directory / "history.sqlite3", args.disk_servers, args.disk_days, seed=number)
            history_tables = table_usage(directory / "history.sqlite3")
        with fresh_data_dir() as directory:
            snapshots, record = measure_snapshot_disk(directory / "history.sqlite3", args.snapshot_nodes, seed=number)
            snapshot_tables = table_usage(directory / "history.sqlite3")
        server_days = args.disk_servers * args.disk_days
        r = DiskRun(servers=args.disk_servers, days=args.disk_days, history_bytes=size, per_server_day=size / server_days,
                    blob_per_server_day=blobs / server_days, minute_blob=minute_blob, hour_blob=hour_blob,
                    nodes=args.snapshot_nodes, snapshot_bytes=snapshots, per_node_day=snapshots / args.snapshot_nodes,
                    record_bytes=record, seconds=time.monotonic() - started)
        runs.append(r)
        print(f"  run {number}: history file {size / MB:,.1f} MB -> {r.per_server_day:,.0f} B per server-day (the "
              f"blobs alone {r.blob_per_server_day:,.0f} B: minute block {minute_blob:.0f} B, hour block "
              f"{hour_blob:.0f} B); snapshots {snapshots / MB:,.1f} MB -> {r.per_node_day:,.0f} B per node-day "
              f"(sections {record:,.0f} B a record); {r.seconds:.0f} s")
        print(f"         history pages: {history_tables}")
        print(f"         snapshot pages: {snapshot_tables}")
    per_server = [r.per_server_day for r in runs]
    harness.print_runs("minute+hour history per server-day", per_server, "B")
    harness.print_runs("of which the blobs", [r.blob_per_server_day for r in runs], "B")
    harness.print_runs("snapshot history per node-day", [r.per_node_day for r in runs], "B")
    ok = harness.verdict("history per server-day (median), goal", harness.median(per_server), GOAL_DISK_BYTES, "B", False)
    ok &= harness.verdict("history per server-day (median), limit", harness.median(per_server), LIMIT_DISK_BYTES, "B",
                          False)
    run_history_disk_script()
    return ok


# ---------------------------------------------------------------- main


SCENARIOS = {"ingest": scenario_ingest, "restart": scenario_restart, "ranges": scenario_ranges, "disk": scenario_disk}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all", help="default all")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (default %(default)s)")
    parser.add_argument("--rate", type=int, default=100_000, help="ingest and restart: samples/s (default %(default)s)")
    parser.add_argument("--servers", type=int, default=100_000, help="distinct servers (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="ingest: measured window (default %(default)s)")
    parser.add_argument("--settle", type=float, default=5.0, help="ingest: unmeasured seconds first (default %(default)s)")
    parser.add_argument("--checkpoint-every", default="60s", help="serve --checkpoint-every (default %(default)s)")
    parser.add_argument("--kill-after", type=float, default=20.0,
                        help="restart: seconds of ingest before kill -9 (default %(default)s)")
    parser.add_argument("--sampled", type=int, default=200, help="restart: servers polled (default %(default)s)")
    parser.add_argument("--tail-window", type=float, default=10.0,
                        help="restart: seconds before the kill whose samples are counted after it (default %(default)s)")
    parser.add_argument("--range-rate", type=int, default=50_000,
                        help="ranges: ingest samples/s, 0 = none during the queries (default %(default)s)")
    parser.add_argument("--range-seconds", type=float, default=30.0, help="ranges: wrk seconds per query (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=3.0, help="ranges: unmeasured wrk seconds (default %(default)s)")
    parser.add_argument("--connections", type=int, default=1, help="ranges: wrk -c (default %(default)s)")
    parser.add_argument("--disk-servers", type=int, default=1_000, help="disk: servers (default %(default)s)")
    parser.add_argument("--disk-days", type=int, default=2, help="disk: days of history (default %(default)s)")
    parser.add_argument("--snapshot-nodes", type=int, default=100, help="disk: nodes (default %(default)s)")
    parser.add_argument("--max-servers", type=int, default=200_000, help="serve --max-servers (default %(default)s)")
    args = parser.parse_args()
    if not args.checkpoint_every.endswith("s") or not args.checkpoint_every[:-1].isdigit():
        parser.error("--checkpoint-every takes whole seconds, e.g. 60s")
    if args.sampled < 1 or args.sampled > args.servers:
        parser.error("--sampled must be between 1 and --servers")
    harness.print_header("The durable store (serve --store sqlite)")
    ok = True
    for name, scenario in SCENARIOS.items():
        if args.scenario in (name, "all"):
            ok &= scenario(args)
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
