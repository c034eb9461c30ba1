"""Range reads for the API: the live rings merged with what the store keeps, read off the loop.

For each bucket of the range, the ring has the whole truth when it has
samples in it (it got every sample the store got, and maybe more not
written yet); otherwise the store's merged blocks answer. The ring is read
on the loop (a few array lookups), the store on a reader thread with its own
connection.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack
import numpy as np

from ..common.aggregator import Aggregator, MergedWindows, ServerWindows
from ..common.buckets import (
    HOUR_SLOTS,
    HOURS_SHOWN,
    MINUTE_SLOTS,
    MINUTES_SHOWN,
    BucketWindow,
    from_fixed_point,
)
from ..common.errors import HistoryUnreadable
from ..common.nodes import NodeRegistry
from ..common.periods import BUCKETS_PER_PERIOD, MINUTE_WIDTH
from ..common.seconds import LOAD_SCALE, SECONDS_SHOWN, SecondWindow
from ..common.snapshots import StoredSnapshot
from .fleet_directory import read_latest_snapshot
from .fleet_mirror import FleetMirror, decode_directories, decode_records
from .interface import RangeAnswer
from .worker import STORE_ERRORS

READER_THREADS = 2


class LoadHistory:
    """The ``HistoryReader`` of a service: its aggregator and node registry, and its store's reader
    (``open_reader``: None for a store that keeps nothing)."""

    def __init__(self, aggregator: Aggregator, nodes: NodeRegistry, open_reader: Callable[[], Any],
                 kept_for: dict[int, float] | None, clock: Callable[[], float],
                 snapshots_kept_for: float | None = None, fleet: bool = False) -> None:
        """``kept_for``: seconds of history the store keeps per bucket width (None: only the rings);
        ``fleet``: the store is shared by several collectors (``fleet_directory``): every read adds the
        other collectors' parts to this one's rings, and ``mirror`` holds their directories."""
        self.mirror = FleetMirror() if fleet else None
        self._controls: list[tuple[str, bool, float, str]] = []
        self._aggregator = aggregator
        self._nodes = nodes
        self._open_reader = open_reader
        self._kept_for = kept_for
        self._clock = clock
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="servertrack-reader") \
            if kept_for is not None else None
        self.read_failures = 0  # range reads the store could not answer (each a 503 for its request)
        self.fleet_fallbacks = 0  # window reads answered from this collector's rings alone (the store was down)

    def close(self) -> None:
        """Stop the reader threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def kept_from(self, width: int) -> int:
        """The epoch second where history of ``width``-second buckets begins now."""
        now = self._clock()
        if self._kept_for is None:
            slots = MINUTE_SLOTS if width == MINUTE_WIDTH else HOUR_SLOTS
            return (int(now // width) - slots + 1) * width
        period = width * BUCKETS_PER_PERIOD[width]
        return int((now - self._kept_for[width]) // period) * period

    async def loads(self, name: str, width: int, first_bucket: int, count: int) -> RangeAnswer | None:
        """See ``HistoryReader.loads``."""
        ring = self._aggregator.ring_range(name, width, first_bucket, count)
        stored = others = None
        if self._executor is not None:
            read = "read_split" if self.mirror is not None else "read_range"
            loop = asyncio.get_running_loop()
            try:
                stored = await loop.run_in_executor(self._executor, self._read, read, name, width, first_bucket,
                                                    count)
            except HistoryUnreadable:
                self.read_failures += 1
                raise
            if self.mirror is not None and stored is not None:
                stored, others = stored
        if ring is None and stored is None:
            return None
        window = _merge(ring, stored, width, first_bucket, count, others)
        kept_from = self.kept_from(width)
        return RangeAnswer(window, kept_from if first_bucket * width < kept_from else None)

    async def windows(self, name: str) -> ServerWindows | MergedWindows | None:
        """The second, minute and hour windows of server ``name`` as the whole fleet holds them: this
        collector's rings, with what the other collectors shared of it added (stale by at most their
        ``--share-every`` plus a batch); only the rings when this collector is alone. None: unknown here and
        to every other collector."""
        own = self._aggregator.windows(name)
        if self.mirror is None or self._executor is None:
            return own
        now = self._clock()
        foreign = self.mirror.entry(name)
        if foreign is None:
            # No other collector lists it: none holds a part of its last 24 hours (a collector lists a
            # server until it evicts it, after 24 h of silence), so the rings are the whole answer.
            return own
        minute, hour, second = int(now // MINUTE_WIDTH), int(now // 3600), int(now // 1)
        spans = [(MINUTE_WIDTH, minute - MINUTES_SHOWN + 1, MINUTES_SHOWN), (3600, hour - HOURS_SHOWN + 1, HOURS_SHOWN)]
        loop = asyncio.get_running_loop()
        try:
            splits, seconds = await loop.run_in_executor(self._executor, self._read, "read_fleet", name, spans)
        except HistoryUnreadable:
            self.read_failures += 1
            if own is not None:  # the store is down: this collector's own part, as a lone collector answers
                self.fleet_fallbacks += 1
                return own
            raise
        windows = []
        for (width, first, count), split in zip(spans, splits):
            ring = self._aggregator.ring_range(name, width, first, count)
            if split is None and ring is None:
                windows.append(BucketWindow(first, width, *_empty_fields(count)))
            else:
                stored, others = split if split is not None else (None, None)
                windows.append(_merge(ring, stored, width, first, count, others))
        own_seconds = own.seconds if own is not None else SecondWindow(
            second - SECONDS_SHOWN + 1, np.zeros(SECONDS_SHOWN, np.uint32), np.zeros(SECONDS_SHOWN),
            np.zeros(SECONDS_SHOWN))
        last_seen = max(own.last_seen if own is not None else -math.inf, foreign.last_seen)
        return MergedWindows(name, last_seen, merge_seconds(own_seconds, seconds), windows[0], windows[1])

    async def refresh_fleet(self) -> None:
        """Read the other collectors' directories into ``mirror`` (a failed read is counted; the tables
        before are kept)."""
        if self.mirror is None or self._executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            # read and decoded off the loop (a directory of 100,000 servers takes tens of ms); held on it
            self.mirror.hold(*await loop.run_in_executor(
                self._executor, lambda: decode_directories(self._read("read_directories"))))
            wanted = self.mirror.records_wanted()
            self.mirror.hold_records(*(await loop.run_in_executor(
                self._executor, lambda: decode_records(self._read("read_node_records", wanted))) if wanted else ([], [])))
            self._controls = await loop.run_in_executor(self._executor, self._read, "read_controls")
        except HistoryUnreadable:
            self.mirror.failures += 1

    def controls_after(self, since: float) -> list[tuple[str, bool, float, str]]:
        """The pause/resume requests the last refresh read that were made after ``since``:
        ``(node or *, paused, ts, by collector)``, oldest first."""
        return sorted((request for request in self._controls if request[2] > since), key=lambda request: request[2])

    async def foreign_snapshot(self, node: str) -> tuple[float, StoredSnapshot] | None:
        """The newest snapshot the collector holding ``node`` shared, or None."""
        if self.mirror is None or self._executor is None:
            return None
        loop = asyncio.get_running_loop()
        try:
            record = await loop.run_in_executor(self._executor, self._read, "read_latest_snapshot", node)
        except HistoryUnreadable:
            self.read_failures += 1
            raise
        if record is None:
            return None
        try:
            return read_latest_snapshot(record)
        except ValueError:
            return None

    async def node_sections(self, node: str, start: int, stop: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """See ``HistoryReader.node_sections``; without a store, the latest snapshot if it falls in the range."""
        if self._executor is None:
            found = self._nodes.get(node)
            if found is None or found.snapshot_ts is None or not start <= found.snapshot_ts <= stop:
                return []
            stats = found.stats() or {}
            return [(int(found.snapshot_ts), stats)]
        loop = asyncio.get_running_loop()
        try:
            rows = await loop.run_in_executor(self._executor, self._read, "read_snapshots", node, start, stop,
                                              limit)
        except HistoryUnreadable:
            self.read_failures += 1
            raise
        return [(ts, msgpack.unpackb(sections)) for ts, sections in rows]

    def _reader(self) -> Any:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = self._open_reader()
        return reader

    def _read(self, method: str, *args: Any) -> Any:
        """``method`` of this thread's reader (``read_range``, ``read_fleet``...) on ``args``; a store error
        becomes ``HistoryUnreadable`` (see ``_unreadable``)."""
        try:
            return getattr(self._reader(), method)(*args)
        except STORE_ERRORS as error:
            raise self._unreadable(error) from error

    def _unreadable(self, error: Exception) -> HistoryUnreadable:
        """The error a failed read becomes; this thread's reader is dropped, so the next read opens a new
        one (a connection that broke stays broken)."""
        self._local.reader = None
        return HistoryUnreadable(f"the store cannot be read now ({type(error).__name__}: {error}); try again")


def _stored_window(stored: Any, width: int, first_bucket: int) -> BucketWindow:
    return BucketWindow(first_bucket, width, stored.samples.astype(np.uint32), stored.cpu_sum, stored.ram_sum,
                        from_fixed_point(stored.cpu_min), from_fixed_point(stored.cpu_max),
                        from_fixed_point(stored.ram_min), from_fixed_point(stored.ram_max))


def _merge(ring: tuple[BucketWindow, np.ndarray] | None, stored: Any, width: int, first_bucket: int,
           count: int, others: Any = None) -> BucketWindow:
    """The ring's buckets where it holds them (with ``others``, the other collectors' parts, added), the
    store's elsewhere."""
    if stored is None:
        assert ring is not None
        return ring[0]
    disk = _stored_window(stored, width, first_bucket)
    if ring is None:
        return disk
    window = ring[0]
    # Where the ring has samples it has every sample the store has (the store's blocks come from it);
    # where it has none, it may still "hold" the bucket for a server whose row is new (after eviction).
    held = window.samples > 0
    if not held.any():
        return disk
    if others is not None:
        window = add_windows(window, _stored_window(others, width, first_bucket))
    merged: list[Any] = [np.where(held, live, kept) for live, kept in zip(window[2:], disk[2:])]  # type: ignore[call-overload]
    return BucketWindow(first_bucket, width, *merged)


def add_windows(one: BucketWindow, other: BucketWindow) -> BucketWindow:
    """Buckets holding the samples of both (counts and sums add, min of mins, max of maxes)."""
    one_filled, other_filled = one.samples > 0, other.samples > 0
    both = one_filled & other_filled

    def low(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(both, np.minimum(a, b), np.where(one_filled, a, b))

    def high(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(both, np.maximum(a, b), np.where(one_filled, a, b))

    return BucketWindow(one.first_bucket, one.width, (one.samples.astype(np.int64) + other.samples).astype(np.uint32),
                        one.cpu_sum + other.cpu_sum, one.ram_sum + other.ram_sum, low(one.cpu_min, other.cpu_min),
                        high(one.cpu_max, other.cpu_max), low(one.ram_min, other.ram_min),
                        high(one.ram_max, other.ram_max))


def merge_seconds(own: SecondWindow, shared: list[tuple[int, int, int, int]]) -> SecondWindow:
    """``own`` with the seconds other collectors shared added (``(second, samples, cpu, ram)``, loads in
    hundredths of a percent; averages weighted by samples)."""
    if not shared:
        return own
    samples = own.samples.astype(np.int64)
    cpu, ram = own.cpu_avg * samples, own.ram_avg * samples
    for second, count, cpu_avg, ram_avg in shared:
        at = second - own.first_second
        if 0 <= at < samples.size and count:
            samples[at] += count
            cpu[at] += cpu_avg / LOAD_SCALE * count
            ram[at] += ram_avg / LOAD_SCALE * count
    with np.errstate(invalid="ignore", divide="ignore"):
        return SecondWindow(own.first_second, samples.astype(np.uint32),
                            np.where(samples > 0, cpu / np.maximum(samples, 1), 0.0),
                            np.where(samples > 0, ram / np.maximum(samples, 1), 0.0))


def _empty_fields(shown: int) -> list[np.ndarray]:
    return [np.zeros(shown, np.uint32)] + [np.zeros(shown) for _ in range(6)]
