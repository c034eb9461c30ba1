"""What a collector of a fleet has not shared yet of its live state (``fleet_directory`` says what is shared).

The loop adds what each share interval's applies touched (``add``), and
forgets a period's live cells the moment its ring closes it (``closed``: the
base block that replaces them is queued right after, on the same worker, so
a live cell of a closed period is never written after its base). The store
worker takes everything at once (``take``) and writes it; a write that fails
is retried with the same entries, and what the loop adds meanwhile waits for
the next one. Bounded: one entry per (server, open bucket), and the last
``SECOND_FIELDS`` seconds of each server.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numpy as np

from ..common.aggregator import SharedLoads
from ..common.periods import BUCKETS_PER_PERIOD
from .fleet_directory import SECOND_FIELDS, live_cells, live_seconds


class LiveEntries(NamedTuple):
    """What one share writes: per (server, width, period) the live cells by bucket index, and per server its
    seconds by second."""

    buckets: dict[tuple[str, int, int], dict[int, bytes]]
    seconds: dict[str, dict[int, bytes]]
    snapshots: dict[str, bytes]  # a node's latest snapshot (``latest_snapshot``), by node

    def __len__(self) -> int:
        return sum(map(len, self.buckets.values())) + sum(map(len, self.seconds.values())) + len(self.snapshots)


class LiveShare:
    """The live cells not shared yet (see the module's docstring); safe to use from the loop and one worker.

    The loop only queues what it is given (``add``, ``closed``: array copies, no per-cell work); the worker
    replays those in order into per-bucket entries when it takes them, so the loop is not held by a share.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries = LiveEntries({}, {}, {})
        self._events: list[tuple[str, Any]] = []

    def add(self, shared: SharedLoads) -> None:
        """Keep the cells of ``shared`` (newer cells of a bucket replace older ones)."""
        with self._lock:
            self._events.append(("cells", shared))

    def add_snapshot(self, node: str, record: bytes) -> None:
        """Keep a node's newest snapshot (``latest_snapshot``) for the next share."""
        with self._lock:
            self._entries.snapshots[node] = record

    def closed(self, names: list[str], width: int, periods: np.ndarray) -> None:
        """Forget the live cells of the periods a ring just closed (their base block replaces them)."""
        if names:
            with self._lock:
                self._events.append(("closed", (names, width, periods.copy())))

    def take(self) -> LiveEntries:
        """Everything not shared yet; the share starts afresh."""
        with self._lock:
            events, self._events = self._events, []
            entries, self._entries = self._entries, LiveEntries({}, {}, {})
        for kind, event in events:
            if kind == "cells":
                _add_cells(entries, event)
            else:
                names: list[str] = event[0]
                width: int = event[1]
                periods: np.ndarray = event[2]
                buckets = entries.buckets
                if buckets:
                    for name, period in zip(names, periods.tolist()):
                        buckets.pop((name, width, period), None)
        return entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries) + len(self._events)


def _add_cells(entries: LiveEntries, shared: SharedLoads) -> None:
    """Merge ``shared`` into ``entries`` (newer cells of a bucket replace older ones)."""
    buckets, seconds, _ = entries
    for width, opened in ((60, shared.minutes), (3600, shared.hours)):
        per_period = BUCKETS_PER_PERIOD[width]
        for name, bucket, cell in zip(opened.names, opened.buckets.tolist(), live_cells(opened.cells)):
            period, index = divmod(bucket, per_period)
            buckets.setdefault((name, width, period), {})[index] = cell
    fresh = shared.seconds
    for name, second, cell in zip(fresh.names, fresh.buckets.tolist(),
                                  live_seconds(np.asarray(fresh.buckets), fresh.cells)):
        kept = seconds.setdefault(name, {})
        kept[second] = cell
        if len(kept) > SECOND_FIELDS:
            for old in sorted(kept)[:len(kept) - SECOND_FIELDS]:
                del kept[old]
