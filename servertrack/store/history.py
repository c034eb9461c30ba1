"""Range reads for the API: the live rings merged with what the store keeps, read off the loop.

For each bucket of the range, the ring has the whole truth when it has
samples in it (it got every sample the store got, and maybe more not
written yet); otherwise the store's merged blocks answer. The ring is read
on the loop (a few array lookups), the store on a reader thread with its own
connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack
import numpy as np

from ..common.aggregator import Aggregator
from ..common.buckets import HOUR_SLOTS, MINUTE_SLOTS, BucketWindow, from_fixed_point
from ..common.errors import HistoryUnreadable
from ..common.nodes import NodeRegistry
from ..common.periods import BUCKETS_PER_PERIOD, MINUTE_WIDTH
from .interface import RangeAnswer
from .worker import STORE_ERRORS

READER_THREADS = 2


class LoadHistory:
    """The ``HistoryReader`` of a service: its aggregator and node registry, and its store's reader
    (``open_reader``: None for a store that keeps nothing)."""

    def __init__(self, aggregator: Aggregator, nodes: NodeRegistry, open_reader: Callable[[], Any],
                 kept_for: dict[int, float] | None, clock: Callable[[], float],
                 snapshots_kept_for: float | None = None) -> None:
        """``kept_for``: seconds of history the store keeps per bucket width (None: only the rings)."""
        self._aggregator = aggregator
        self._nodes = nodes
        self._open_reader = open_reader
        self._kept_for = kept_for
        self._clock = clock
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="servertrack-reader") \
            if kept_for is not None else None
        self.read_failures = 0  # range reads the store could not answer (each a 503 for its request)

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
        stored = None
        if self._executor is not None:
            loop = asyncio.get_running_loop()
            try:
                stored = await loop.run_in_executor(self._executor, self._read_cells, name, width, first_bucket,
                                                    count)
            except HistoryUnreadable:
                self.read_failures += 1
                raise
        if ring is None and stored is None:
            return None
        window = _merge(ring, stored, width, first_bucket, count)
        kept_from = self.kept_from(width)
        return RangeAnswer(window, kept_from if first_bucket * width < kept_from else None)

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
            rows = await loop.run_in_executor(self._executor, self._read_snapshots, node, start, stop, limit)
        except HistoryUnreadable:
            self.read_failures += 1
            raise
        return [(ts, msgpack.unpackb(sections)) for ts, sections in rows]

    def _reader(self) -> Any:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = self._open_reader()
        return reader

    def _read_cells(self, name: str, width: int, first_bucket: int, count: int) -> Any:
        try:
            return self._reader().read_range(name, width, first_bucket, count)
        except STORE_ERRORS as error:
            raise self._unreadable(error) from error

    def _read_snapshots(self, node: str, start: int, stop: int, limit: int) -> list[tuple[int, bytes]]:
        try:
            rows: list[tuple[int, bytes]] = self._reader().read_snapshots(node, start, stop, limit)
        except STORE_ERRORS as error:
            raise self._unreadable(error) from error
        return rows

    def _unreadable(self, error: Exception) -> HistoryUnreadable:
        """The error a failed read becomes; this thread's reader is dropped, so the next read opens a new
        one (a connection that broke stays broken)."""
        self._local.reader = None
        return HistoryUnreadable(f"the store cannot be read now ({type(error).__name__}: {error}); try again")


def _merge(ring: tuple[BucketWindow, np.ndarray] | None, stored: Any, width: int, first_bucket: int,
           count: int) -> BucketWindow:
    """The ring's buckets where it holds them, the store's elsewhere."""
    if stored is None:
        assert ring is not None
        return ring[0]
    disk = BucketWindow(first_bucket, width, stored.samples.astype(np.uint32), stored.cpu_sum, stored.ram_sum,
                        from_fixed_point(stored.cpu_min), from_fixed_point(stored.cpu_max),
                        from_fixed_point(stored.ram_min), from_fixed_point(stored.ram_max))
    if ring is None:
        return disk
    window = ring[0]
    # Where the ring has samples it has every sample the store has (the store's blocks come from it);
    # where it has none, it may still "hold" the bucket for a server whose row is new (after eviction).
    held = window.samples > 0
    if not held.any():
        return disk
    merged: list[Any] = [np.where(held, live, kept) for live, kept in zip(window[2:], disk[2:])]  # type: ignore[call-overload]
    return BucketWindow(first_bucket, width, *merged)
