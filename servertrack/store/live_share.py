"""What a collector of a fleet has not shared yet of its live state (``fleet_directory`` says what is shared).

The loop adds what each share interval's applies touched (``add``), and
forgets a period's live cells the moment its ring closes it (``closed``: the
base block that replaces them is queued right after, on the same worker, so
a live cell of a closed period is never written after its base). The store
worker takes everything at once (``take``) and writes it; a write that fails
is retried with the same entries, and what the loop adds meanwhile waits for
the next one. Bounded: one entry per (server, open bucket), and the last
``SECOND_FIELDS`` seconds of each server.

Everything stays in arrays, one entry per (server, bucket): a share of
100,000 servers is a few passes of numpy, not a Python object per cell (the
loop and the store worker share one interpreter lock).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ..common.aggregator import PAIR_SHIFT, OpenCells, SharedLoads
from ..common.periods import BUCKETS_PER_PERIOD
from ..common.seconds import SECOND_SLOTS
from .fleet_directory import LIVE_DTYPE, LIVE_SECOND_DTYPE, SECOND_FIELDS

MAX_WAITING_TAKES = 8  # takes waiting for the store before they are folded into one
# Items one C-level pass (``map`` of a C function into ``np.fromiter``) takes at a time: the store's thread
# holds the interpreter lock through such a pass (no bytecode runs in it, so no switch), and the loop waits;
# ~0.5 ms each, about the switch interval (a share of 50,000 servers' names in one pass held it ~20 ms).
GIL_SLICE = 4096
NO_NAMES = np.zeros(0, dtype=object)
_NO_INTS = np.zeros(0, dtype=np.int64)


class LiveCells(NamedTuple):
    """Live cells of one bucket width: per entry its server, period, bucket index in the period, and cell
    (``LIVE_DTYPE``)."""

    names: np.ndarray  # of str
    periods: np.ndarray  # int64
    indices: np.ndarray  # int64
    records: np.ndarray


class LiveSeconds(NamedTuple):
    """Live seconds: per entry its server, epoch second and cell (``LIVE_SECOND_DTYPE``)."""

    names: np.ndarray  # of str
    seconds: np.ndarray  # int64
    records: np.ndarray


class LiveEntries(NamedTuple):
    """What one share writes: the live cells of the minutes and the hours, the seconds, the nodes' newest
    snapshots (``latest_snapshot``, by node), and the provisional cells of the current hour (see
    ``Aggregator.shared_parts``)."""

    minutes: LiveCells
    hours: LiveCells
    seconds: LiveSeconds
    snapshots: dict[str, bytes]
    provisional_hours: LiveCells

    def __len__(self) -> int:
        return (len(self.minutes.names) + len(self.hours.names) + len(self.seconds.names) + len(self.snapshots)
                + len(self.provisional_hours.names))


def no_live_cells() -> LiveCells:
    """No cells."""
    return LiveCells(NO_NAMES, _NO_INTS, _NO_INTS, np.zeros(0, dtype=LIVE_DTYPE))


def no_live_seconds() -> LiveSeconds:
    """No seconds."""
    return LiveSeconds(NO_NAMES, _NO_INTS, np.zeros(0, dtype=LIVE_SECOND_DTYPE))


def _once_each(opened: OpenCells) -> npt.NDArray[np.int64]:
    """The positions of one entry per (server, bucket) of ``opened`` (its rows and buckets)."""
    buckets = np.asarray(opened.buckets, dtype=np.int64)
    keys = np.asarray(opened.rows, dtype=np.int64) * PAIR_SHIFT + buckets
    return np.unique(keys, return_index=True)[1]


def live_cells_of(opened: OpenCells, width: int) -> LiveCells:
    """The open buckets of one width (``Aggregator.take_shared``) as live cells, one per (server, bucket)."""
    once = _once_each(opened)
    periods, indices = np.divmod(np.asarray(opened.buckets, dtype=np.int64)[once], BUCKETS_PER_PERIOD[width])
    records = np.empty(once.size, dtype=LIVE_DTYPE)
    for name, values in zip(LIVE_DTYPE.names or (), opened.cells):
        records[name] = values[once]
    return LiveCells(np.asarray(opened.names, dtype=object)[once], periods, indices, records)


def live_seconds_of(opened: OpenCells) -> LiveSeconds:
    """The seconds ``Aggregator.take_shared`` took as live seconds, one per (server, second)."""
    once = _once_each(opened)
    seconds = np.asarray(opened.buckets, dtype=np.int64)[once]
    records = np.empty(seconds.size, dtype=LIVE_SECOND_DTYPE)
    records["second"] = seconds
    records["samples"], records["cpu"], records["ram"] = (values[once] for values in opened.cells)
    return LiveSeconds(np.asarray(opened.names, dtype=object)[once], seconds, records)


class LiveShare:
    """The live cells not shared yet (see the module's docstring); safe to use from the loop and one worker.

    The loop only queues what it is given (``add``, ``closed``: array references, no per-cell work); the
    worker replays those in order when it takes them, so the loop is not held by a share.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[str, bytes] = {}
        self._events: list[tuple[str, Any]] = []

    def add(self, shared: SharedLoads) -> None:
        """Keep the cells of ``shared`` (newer cells of a bucket replace older ones). While shares cannot be
        written (the store down), what waits is folded into one entry per (server, bucket) every
        ``MAX_WAITING_TAKES`` takes: bounded by the servers' open buckets, not by the outage's length."""
        with self._lock:
            self._events.append(("cells", shared))
            if sum(kind == "cells" for kind, _ in self._events) > MAX_WAITING_TAKES:
                self._events = [("entries", _replayed(self._events, {}))]

    def add_snapshot(self, node: str, record: bytes) -> None:
        """Keep a node's newest snapshot (``latest_snapshot``) for the next share."""
        with self._lock:
            self._snapshots[node] = record

    def closed(self, names: list[str], width: int, periods: np.ndarray) -> None:
        """Forget the live cells of the periods a ring just closed (their base block replaces them)."""
        if names:
            with self._lock:
                self._events.append(("closed", (names, width, periods.copy())))

    def take(self) -> LiveEntries:
        """Everything not shared yet; the share starts afresh."""
        with self._lock:
            events, self._events = self._events, []
            snapshots, self._snapshots = self._snapshots, {}
        return _replayed(events, snapshots)

    def __len__(self) -> int:
        with self._lock:
            return len(self._snapshots) + len(self._events)


def _replayed(events: list[tuple[str, Any]], snapshots: dict[str, bytes]) -> LiveEntries:
    """The entries ``events`` leave, in order: takes of the rings (``cells``), entries folded before
    (``entries``) and periods closed since (``closed``: their cells go)."""
    minutes: list[LiveCells] = []
    hours: list[LiveCells] = []
    provisional: list[LiveCells] = []
    seconds: list[LiveSeconds] = []
    for kind, event in events:
        if kind == "cells":
            shared: SharedLoads = event
            minutes.append(live_cells_of(shared.minutes, 60))
            hours.append(live_cells_of(shared.hours, 3600))
            provisional.append(live_cells_of(shared.provisional_hours, 3600))
            seconds.append(live_seconds_of(shared.seconds))
        elif kind == "entries":
            folded: LiveEntries = event
            minutes.append(folded.minutes)
            hours.append(folded.hours)
            provisional.append(folded.provisional_hours)
            seconds.append(folded.seconds)
        else:
            names, width, periods = event
            gone = set(zip(names, periods.tolist()))
            for of_width in ((minutes,) if width == 60 else (hours, provisional)):
                of_width[:] = [_without(part, gone) for part in of_width]
    return LiveEntries(_newest_cells(minutes), _newest_cells(hours), _newest_seconds(seconds), snapshots,
                       _newest_cells(provisional))


def _without(cells: LiveCells, gone: set[tuple[str, int]]) -> LiveCells:
    """``cells`` but those of the (server, period) pairs in ``gone``."""
    keep = np.fromiter(((name, period) not in gone for name, period in zip(cells.names.tolist(), cells.periods.tolist())),
                       dtype=bool, count=len(cells.names))
    return LiveCells(*(column[keep] for column in cells))


def sliced_map(function: Any, columns: tuple[Sequence[Any], ...], dtype: Any) -> np.ndarray:
    """``np.fromiter(map(function, *columns))`` in passes of ``GIL_SLICE`` items (see there), so that a
    thread waiting for the interpreter lock gets it between two."""
    count = len(columns[0])
    out = np.empty(count, dtype=dtype)
    for start in range(0, count, GIL_SLICE):
        part = [column[start:start + GIL_SLICE] for column in columns]
        out[start:start + len(part[0])] = np.fromiter(map(function, *part), dtype=dtype, count=len(part[0]))
    return out


def name_ids(names: npt.NDArray[np.object_]) -> npt.NDArray[np.int64]:
    """An integer per entry, equal for equal names (the position of the name's first entry)."""
    first: dict[str, int] = {}
    return sliced_map(first.setdefault, (names.tolist(), range(len(names))), np.int64)


def _last_of_groups(groups: tuple[npt.NDArray[np.int64], ...], then: tuple[npt.NDArray[np.int64], ...] = ()
                    ) -> npt.NDArray[np.int64]:
    """The positions, in order, of one entry per group of equal ``groups`` keys: the one greatest by the
    ``then`` keys, and of those the last in the arrays."""
    count = len(groups[0])
    order = np.lexsort((np.arange(count), *reversed(then), *reversed(groups)))  # the last key sorts first
    differs = np.zeros(max(count - 1, 0), dtype=bool)
    for key in groups:
        ordered = key[order]
        differs |= ordered[1:] != ordered[:-1]
    last = np.ones(count, dtype=bool)
    last[:-1] = differs  # the next one (in order) is of another group
    return np.sort(order[last])


def _newest_cells(parts: list[LiveCells]) -> LiveCells:
    """The cells of ``parts`` (oldest first) with one per (server, period, index): the newest."""
    parts = [part for part in parts if len(part.names)]
    if not parts:
        return no_live_cells()
    if len(parts) == 1:  # one take of the rings: one cell per (server, bucket) already
        return parts[0]
    joined = LiveCells(*(np.concatenate(columns) for columns in zip(*parts)))
    kept = _last_of_groups((name_ids(joined.names), joined.periods, joined.indices))
    return LiveCells(*(column[kept] for column in joined))


def _newest_seconds(parts: list[LiveSeconds]) -> LiveSeconds:
    """The seconds of ``parts`` (oldest first) with one per (server, field ``second % SECOND_FIELDS``): the
    latest second, and of one second the newest cell."""
    parts = [part for part in parts if len(part.names)]
    if not parts:
        return no_live_seconds()
    joined = parts[0] if len(parts) == 1 else LiveSeconds(*(np.concatenate(columns) for columns in zip(*parts)))
    if len(parts) == 1 and SECOND_FIELDS >= SECOND_SLOTS:
        return joined  # one take of the ring: one cell per (server, second), fewer seconds than fields
    kept = _last_of_groups((name_ids(joined.names), joined.seconds % SECOND_FIELDS), (joined.seconds,))
    return LiveSeconds(*(column[kept] for column in joined))
