"""In-memory aggregator: per server, 60 second, 60 minute and 24 hour buckets of cpu/ram load.

One row per server in struct-of-arrays storage (see ``buckets.BucketRing`` and
``seconds.SecondRing``), so memory per server is fixed (about 3.4 KB) whatever
it sends. Servers are
capped at ``max_servers``; rows of servers silent for 24 h are reused.
Batches are applied as arrays: names are mapped to rows with one dict lookup
each, and everything else is numpy.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import NamedTuple

import numpy as np

from .buckets import (
    HOUR_SECONDS,
    HOUR_SLOTS,
    HOURS_SHOWN,
    MINUTE_SECONDS,
    MINUTE_SLOTS,
    MINUTES_SHOWN,
    BucketRing,
    BucketWindow,
    coarsen,
    group_samples,
    zeroed_cells,
)
from .seconds import SecondRing, SecondWindow

Clock = Callable[[], float]
SILENCE_EVICTION_SECONDS = 24 * 3600.0
DEFAULT_MAX_SERVERS = 200_000


class ApplyResult(NamedTuple):
    """What one batch did: samples stored, and samples refused because the server cap was hit."""

    applied: int
    refused: int


class ServerWindows:
    """A server's second window (60), minute window (60 buckets) and hour window (24 buckets),
    oldest first, as of one instant.

    Each window is read from the rings when first asked for, so a request for
    one resolution does not pay for the other two.
    """

    __slots__ = ("name", "last_seen", "_row", "_now", "_rings", "_minutes", "_hours", "_seconds")

    def __init__(self, name: str, last_seen: float, row: int, now: float,
                 rings: tuple[SecondRing, BucketRing, BucketRing]) -> None:
        self.name = name
        self.last_seen = last_seen
        self._row = row
        self._now = now
        self._rings = rings
        self._seconds: SecondWindow | None = None
        self._minutes: BucketWindow | None = None
        self._hours: BucketWindow | None = None

    @property
    def seconds(self) -> SecondWindow:
        """The last 60 seconds, the current one last."""
        if self._seconds is None:
            self._seconds = self._rings[0].window(self._row, int(self._now // 1))
        return self._seconds

    @property
    def minutes(self) -> BucketWindow:
        """The last 60 minutes, the current one last."""
        if self._minutes is None:
            self._minutes = self._rings[1].window(self._row, int(self._now // MINUTE_SECONDS))
        return self._minutes

    @property
    def hours(self) -> BucketWindow:
        """The last 24 hours, the current one last."""
        if self._hours is None:
            self._hours = self._rings[2].window(self._row, int(self._now // HOUR_SECONDS))
        return self._hours


class Aggregator:
    """Minute and hour load windows for up to ``max_servers`` servers.

    Owned by one event loop: not thread-safe, and needs no locks.
    """

    def __init__(self, max_servers: int = DEFAULT_MAX_SERVERS, clock: Clock = time.time) -> None:
        if max_servers < 1:
            raise ValueError("max_servers must be at least 1")
        self.max_servers = max_servers
        self._clock = clock
        self._rows: dict[str, int] = {}
        self._names: list[str | None] = []
        self._free_rows: list[int] = []
        self._sorted_names: list[str] | None = None
        self._last_seen = zeroed_cells((max_servers,), np.float64)
        self._seconds = SecondRing(max_servers)
        self._minutes = BucketRing(max_servers, MINUTE_SECONDS, MINUTE_SLOTS, MINUTES_SHOWN)
        self._hours = BucketRing(max_servers, HOUR_SECONDS, HOUR_SLOTS, HOURS_SHOWN)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def apply(
        self,
        names: Sequence[str],
        ts: Sequence[float] | np.ndarray,
        cpu: Sequence[float] | np.ndarray,
        ram: Sequence[float] | np.ndarray,
    ) -> ApplyResult:
        """Add a batch of validated samples (canonical names, loads in [0, 100]).

        A new server beyond ``max_servers`` is refused (its samples counted in
        ``refused``), never stored.
        """
        count = len(names)
        if count == 0:
            return ApplyResult(0, 0)
        rows = np.fromiter(map(self._rows.get, names, repeat(-1)), dtype=np.int64, count=count)
        missing = np.flatnonzero(rows < 0)
        if missing.size:
            unknown = [names[index] for index in missing.tolist()]
            self._add_servers(list(dict.fromkeys(unknown)))
            rows[missing] = np.fromiter(map(self._rows.get, unknown, repeat(-1)), dtype=np.int64, count=missing.size)
        ts_array = np.asarray(ts, dtype=np.float64)
        cpu_array = np.asarray(cpu, dtype=np.float64)
        ram_array = np.asarray(ram, dtype=np.float64)
        refused = 0
        if missing.size and (rows < 0).any():
            kept = rows >= 0
            refused = count - int(kept.sum())
            rows, ts_array, cpu_array, ram_array = rows[kept], ts_array[kept], cpu_array[kept], ram_array[kept]
        if rows.size:
            seconds = np.floor(ts_array).astype(np.int64)
            per_second = group_samples(rows, seconds, cpu_array, ram_array)
            self._seconds.add(per_second)
            per_minute = coarsen(per_second, MINUTE_SECONDS)
            self._minutes.add(per_minute)
            self._hours.add(coarsen(per_minute, HOUR_SECONDS // MINUTE_SECONDS))
        self._last_seen[rows] = self._clock()
        return ApplyResult(int(rows.size), refused)

    def _add_servers(self, new_names: list[str]) -> None:
        """Give rows to new servers (distinct, not yet known): freed rows first, then
        never-used ones, as long as ``max_servers`` allows; the rest get none."""
        reused = [self._free_rows.pop() for _ in range(min(len(self._free_rows), len(new_names)))]
        for row, name in zip(reused, new_names):
            self._names[row] = name
        fresh_names = new_names[len(reused):len(reused) + self.max_servers - len(self._names)]
        first_fresh = len(self._names)
        self._names.extend(fresh_names)
        self._rows.update(zip(new_names, reused))
        self._rows.update(zip(fresh_names, range(first_fresh, first_fresh + len(fresh_names))))
        if reused or fresh_names:
            self._sorted_names = None

    def windows(self, name: str) -> ServerWindows | None:
        """The current second, minute and hour windows of server ``name``, or None if unknown."""
        row = self._rows.get(name)
        if row is None:
            return None
        return ServerWindows(name, float(self._last_seen[row]), row, self._clock(),
                             (self._seconds, self._minutes, self._hours))

    def servers(self, limit: int | None = None, after: str | None = None) -> list[tuple[str, float]]:
        """Known servers sorted by name as ``(name, last_seen)``, starting after ``after``."""
        if self._sorted_names is None:
            self._sorted_names = sorted(self._rows)
        names = self._sorted_names
        start = 0 if after is None else bisect.bisect_right(names, after)
        stop = len(names) if limit is None else start + limit
        last_seen = self._last_seen
        rows = self._rows
        return [(name, float(last_seen[rows[name]])) for name in names[start:stop]]

    def evict_silent(self) -> list[str]:
        """Forget servers with no sample applied for 24 h; return their names."""
        used = len(self._names)
        cutoff = self._clock() - SILENCE_EVICTION_SECONDS
        silent = np.flatnonzero(self._last_seen[:used] < cutoff)
        evicted: list[str] = []
        for row in silent.tolist():
            name = self._names[row]
            assert name is not None, "a free row is never silent: its last_seen is +inf"
            del self._rows[name]
            self._names[row] = None
            evicted.append(name)
        if evicted:
            self._free_rows.extend(silent.tolist())
            self._last_seen[silent] = np.inf
            self._seconds.forget(silent)
            self._minutes.forget(silent)
            self._hours.forget(silent)
            self._sorted_names = None
        return evicted
