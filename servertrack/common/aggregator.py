"""In-memory aggregator: per server, 60 second, 60 minute and 24 hour buckets of cpu/ram load.

One row per server in struct-of-arrays storage (see ``buckets.BucketRing`` and
``seconds.SecondRing``), so memory per server is fixed (about 2.2 KB of arrays)
whatever it sends at one sample a second. Servers are
capped at ``max_servers``; rows of servers silent for 24 h are reused.
Batches are applied as arrays: names are mapped to rows with one dict lookup
each, and everything else is numpy.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from .buckets import (
    HOUR_SECONDS,
    HOUR_SLOTS,
    HOURS_SHOWN,
    MINUTE_SECONDS,
    MINUTE_SLOTS,
    MINUTES_SHOWN,
    ROWS_PER_BLOCK,
    BucketRing,
    BucketWindow,
    coarsen,
    group_samples,
)
from .periods import BUCKETS_PER_PERIOD, HistoryBlocks
from .protocol import MAX_FUTURE_SECONDS
from .ring_cells import zeroed_cells
from .seconds import SecondRing, SecondWindow

Clock = Callable[[], float]
SILENCE_EVICTION_SECONDS = 24 * 3600.0
DAY_SECONDS = 86_400
DEFAULT_MAX_SERVERS = 200_000
# A touched (row, bucket) pair as one int64: row * PAIR_SHIFT + bucket (a bucket below 2**34: an epoch second
# until the year 2514; rows below 2**29)
PAIR_SHIFT = 1 << 34


class ApplyResult(NamedTuple):
    """What one batch did: samples stored, and samples refused because the server cap was hit."""

    applied: int
    refused: int


class RingChanges(NamedTuple):
    """One ring as a checkpoint needs it: heads of the used rows, and copies of the slots changed since
    the last checkpoint (``stripes[name]`` is ``cells[:blocks, slots, :]``, every array the ring has)."""

    head: np.ndarray
    slots: np.ndarray
    stripes: dict[str, np.ndarray]
    slot_count: int


class AggregatorChanges(NamedTuple):
    """Copies of what changed since the last ``export_changes`` (the second ring is left out: it is
    rebuilt from the log), plus the rows' names and last-seen times."""

    names: list[str | None]
    last_seen: np.ndarray
    rings: dict[str, RingChanges]


class CurrentLoads(NamedTuple):
    """The servers with samples in the last 60 seconds, in name order (at most a limit of them): their
    average cpu and ram load over those seconds, weighted by samples, and how many the limit left out."""

    names: list[str]
    cpu: np.ndarray
    ram: np.ndarray
    left_out: int


class ServerWindows:
    """A server's second window (60), minute window (60 buckets) and hour window (24 buckets),
    oldest first, as of one instant.

    Each window is read from the rings when first asked for, so a request for
    one resolution does not pay for the other two.
    """

    __slots__ = ("_hours", "_minutes", "_now", "_rings", "_row", "_seconds", "last_seen", "name")

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


class MergedWindows(NamedTuple):
    """A server's windows as a fleet holds them (``ServerWindows``' fields, read once): this collector's
    rings with the other collectors' parts added (``store.history.LoadHistory.windows``)."""

    name: str
    last_seen: float
    seconds: SecondWindow
    minutes: BucketWindow
    hours: BucketWindow


class FleetColumns(NamedTuple):
    """Every known server in name order: its row, last seen, and current cpu and ram (the newest of its last
    60 seconds, NaN when it sent nothing in them)."""

    names: list[str]
    rows: np.ndarray
    last_seen: np.ndarray
    cpu: np.ndarray
    ram: np.ndarray
    positions: np.ndarray  # positions[row]: where that row's server is in ``names`` (rows not in use: -1)


class OpenCells(NamedTuple):
    """Cells of open buckets: per entry the name, the bucket (epoch second // width) and the cells
    (``BucketRing.open_cells``, ``SecondRing.cells_at``), and the server's row. A (server, bucket) may come
    more than once (equal cells, read at the same instant): ``rows`` and ``buckets`` tell them apart."""

    names: npt.NDArray[np.object_]  # of str
    buckets: np.ndarray
    cells: tuple[np.ndarray, ...]
    rows: np.ndarray


class SharedLoads(NamedTuple):
    """What changed since the last ``take_shared``: the seconds, the minutes and hours of open periods, and
    the provisional cells of the current hour (``Aggregator.shared_parts`` says when each is shared)."""

    seconds: OpenCells
    minutes: OpenCells
    hours: OpenCells
    provisional_hours: OpenCells


def _open_cells(ring: SecondRing | BucketRing, rows: np.ndarray, buckets: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """``cells_at`` of a second ring, ``open_cells`` of a bucket ring."""
    return ring.cells_at(rows, buckets) if isinstance(ring, SecondRing) else ring.open_cells(rows, buckets)


def join_shared(parts: list[SharedLoads]) -> SharedLoads:
    """One ``SharedLoads`` of several (``Aggregator.shared_parts``: at least one)."""
    joined = []
    for kind in range(len(SharedLoads._fields)):
        cells = [part[kind] for part in parts if len(part[kind].names)] or [parts[0][kind]]
        joined.append(cells[0] if len(cells) == 1 else OpenCells(
            np.concatenate([each.names for each in cells]), np.concatenate([each.buckets for each in cells]),
            tuple(np.concatenate(columns) for columns in zip(*(each.cells for each in cells))),
            np.concatenate([each.rows for each in cells])))
    return SharedLoads(*joined)


class Aggregator:
    """Minute and hour load windows for up to ``max_servers`` servers.

    Owned by one event loop: not thread-safe, and needs no locks.
    """

    def __init__(self, max_servers: int = DEFAULT_MAX_SERVERS, clock: Clock = time.time,
                 closing: bool = False) -> None:
        """``closing``: emit the hours and days each server's rings are done with (``take_closed``), for a
        store to keep."""
        if max_servers < 1:
            raise ValueError("max_servers must be at least 1")
        self.max_servers = max_servers
        self._clock = clock
        self._rows: dict[str, int] = {}
        self._names: list[str | None] = []
        self._free_rows: list[int] = []
        self._sorted_names: list[str] | None = None
        self._sorted_rows: np.ndarray | None = None  # the rows of ``_sorted_names``, built with it
        self._positions: np.ndarray | None = None  # and where each row is in it
        self._last_seen = zeroed_cells((max_servers,), np.float64)
        self._seconds = SecondRing(max_servers)
        self._minutes = BucketRing(max_servers, MINUTE_SECONDS, MINUTE_SLOTS, MINUTES_SHOWN,
                                   per_period=BUCKETS_PER_PERIOD[MINUTE_SECONDS])
        self._hours = BucketRing(max_servers, HOUR_SECONDS, HOUR_SLOTS, HOURS_SHOWN,
                                 per_period=BUCKETS_PER_PERIOD[HOUR_SECONDS])
        self._minutes.closing = self._hours.closing = closing
        self._closed: list[HistoryBlocks] = []
        self.changes = 0  # counts the batches applied, evictions and restores: what a view's cache keys on
        # With ``sharing`` set, the (row, bucket) pairs each apply touched, for ``take_shared``.
        self.sharing = False
        self._touched: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
        # The current hour's cell of each row touched in it, held back from the shares (see ``shared_parts``):
        # the hour a row holds (-1: none), and the minute the held cells were last shared as provisional.
        self._held_hour = np.full(0, -1, dtype=np.int64)
        self._provisional_minute = -1

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
        chunk_id: int = 0,
        now: float | None = None,
    ) -> ApplyResult:
        """Add a batch of validated samples (canonical names, loads in [0, 100]).

        A new server beyond ``max_servers`` is refused (its samples counted in
        ``refused``), never stored. ``chunk_id`` numbers the batch for the
        blocks it closes (at least 1 when closing); ``now`` is the time it is
        applied at (default: the clock), as a replay gives it.
        """
        count = len(names)
        if count == 0:
            return ApplyResult(0, 0)
        rows = self._rows_of(names)
        missing = np.flatnonzero(rows < 0)
        if missing.size:
            unknown = [names[index] for index in missing.tolist()]
            self._add_servers(list(dict.fromkeys(unknown)))
            rows[missing] = self._rows_of(unknown)
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
            self._minutes.add(per_minute, chunk_id)
            per_hour = coarsen(per_minute, HOUR_SECONDS // MINUTE_SECONDS)
            self._hours.add(per_hour, chunk_id)
            if self.sharing:
                for touched, groups in zip(self._touched, (per_second, per_minute, per_hour)):
                    touched.append(groups.rows * PAIR_SHIFT + groups.buckets)
            self._collect_closed()
        self._last_seen[rows] = self._clock() if now is None else now
        self.changes += 1
        return ApplyResult(int(rows.size), refused)

    def apply_seconds(self, names: Sequence[str], seconds: np.ndarray, cpu: np.ndarray, ram: np.ndarray) -> None:
        """Add samples to the second ring only (known servers; others skipped): how a restart rebuilds the
        last minute of seconds from the log, which checkpoints leave out."""
        rows = self._rows_of(names)
        known = rows >= 0
        if known.any():
            self._seconds.add(group_samples(rows[known], np.asarray(seconds, dtype=np.int64)[known],
                                            np.asarray(cpu, dtype=np.float64)[known],
                                            np.asarray(ram, dtype=np.float64)[known]))

    def named_rings(self) -> dict[str, BucketRing]:
        """The minute and hour rings by name (what a checkpoint keeps)."""
        return {"minutes": self._minutes, "hours": self._hours}

    def export_changes(self) -> AggregatorChanges:
        """Copy what a checkpoint needs (see ``AggregatorChanges``) and start tracking changes afresh."""
        used = len(self._names)
        blocks = -(-used // ROWS_PER_BLOCK)
        rings = {}
        for name, ring in self.named_rings().items():
            slots = ring.take_dirty()
            stripes = {cells_name: cells[:blocks, slots, :].copy() for cells_name, cells in ring.named_cells().items()}
            rings[name] = RingChanges(ring.head[:used].copy(), slots, stripes, ring.slots)
        return AggregatorChanges(list(self._names), self._last_seen[:used].copy(), rings)

    def restore(self, names: list[str | None], last_seen: np.ndarray, heads: dict[str, np.ndarray]) -> None:
        """Take the rows of a checkpoint (an aggregator fresh from construction, its ring cells already
        loaded into ``named_rings()``): names by row (None: a free row), last-seen times, ring heads."""
        if self._names:
            raise ValueError("restore needs an aggregator that has no servers yet")
        used = len(names)
        if used > self.max_servers:
            raise ValueError(f"the checkpoint holds {used} rows, more than --max-servers {self.max_servers}")
        self._names = list(names)
        self._rows = {name: row for row, name in enumerate(names) if name is not None}
        self._free_rows = [row for row, name in enumerate(names) if name is None]
        self._last_seen[:used] = last_seen
        self._last_seen[self._free_rows] = np.inf
        for ring_name, ring in self.named_rings().items():
            ring.head[:used] = heads[ring_name]
            ring.take_dirty()
        self._sorted_names = None
        self.changes += 1

    def take_shared(self) -> SharedLoads:
        """The cells of what the applies since the last call touched (``sharing`` must be set; some more than
        once, see ``OpenCells``): every (server, second) still in the second ring, every (server, minute) and
        (server, hour) of a period its ring has not closed (a closed one went to the store as a delta), read
        as the rings hold them now. A server evicted since is left out."""
        return join_shared(list(self.shared_parts()))

    def shared_parts(self, most: int = 1 << 62) -> Iterator[SharedLoads]:
        """``take_shared`` in parts of at most ``most`` (server, bucket) pairs, so that the loop can serve
        others between two; what was touched is taken at the first part. No apply may run until the last
        part is read (the cells are read as the rings hold them then).

        A cell of the current hour (by the clock) is held back: it changes with every sample, and the minute
        cells of the hour, shared every time, say the same (a reader adds them up, see ``fleet_cells``). It is
        shared once its hour is over (at the first share after), and meanwhile once a minute as a
        provisional cell (what a reader falls back on once the minutes are gone)."""
        # one C-level pass builds the names as an array: no Python per (server, bucket), this runs on the loop
        names = np.array(self._names, dtype=object) if self._names else np.zeros(0, dtype=object)
        rings: tuple[SecondRing | BucketRing, ...] = (self._seconds, self._minutes, self._hours, self._hours)
        # not made unique here (a sort of every pair): the store worker does it (``OpenCells.rows``)
        taken = [np.concatenate(touched) if touched else np.zeros(0, dtype=np.int64) for touched in self._touched]
        for touched in self._touched:
            touched.clear()
        now = self._clock()
        taken[2], provisional = self._hold_current_hour(taken[2], int(now // HOUR_SECONDS), int(now // MINUTE_SECONDS))
        taken.append(provisional)
        nothing = np.zeros(0, dtype=np.int64)
        empty = [OpenCells(names[:0], *_open_cells(ring, nothing, nothing)[1:], nothing) for ring in rings]
        for kind, (pairs, ring) in enumerate(zip(taken, rings)):
            for start in range(0, max(len(pairs), 1), most):
                rows, buckets = np.divmod(pairs[start:start + most], PAIR_SHIFT)
                named = names[rows].astype(bool)  # a server evicted since (None) is left out; a name is never empty
                rows, buckets = rows[named], buckets[named]
                kept_rows, kept_buckets, cells = _open_cells(ring, rows, buckets)
                part = list(empty)
                part[kind] = OpenCells(names[kept_rows], kept_buckets, cells, kept_rows)
                yield SharedLoads(*part)

    def start_sharing(self) -> None:
        """Set ``sharing``, and hold the current hour's cell of every row applied to in it (what a restart
        recovered), so that the share after the hour writes it (``shared_parts``) as for a row just touched."""
        self.sharing = True
        hour = int(self._clock() // HOUR_SECONDS)
        used = len(self._names)
        seen = self._last_seen[:used]
        rows = np.flatnonzero((seen >= hour * HOUR_SECONDS) & np.isfinite(seen))  # an evicted row: +inf
        if rows.size:
            self._hold_current_hour(rows * PAIR_SHIFT + hour, hour, self._provisional_minute)

    def _hold_current_hour(self, pairs: npt.NDArray[np.int64], hour: int, minute: int
                           ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The hour pairs to share now, and the provisional ones: the touched pairs of ``hour`` are held
        (one per row), the rest shared; the rows held for an hour before ``hour`` are released (shared);
        once a ``minute``, the rows held for ``hour`` are shared as provisional (and stay held)."""
        held = self._held_hour
        if len(held) < len(self._names):
            grown = np.full(max(len(self._names), 2 * len(held)), -1, dtype=np.int64)
            grown[:len(held)] = held
            held = self._held_hour = grown
        shared = []
        released = np.flatnonzero((held >= 0) & (held != hour))  # before this share's rows are held again
        if released.size:
            shared.append(released * PAIR_SHIFT + held[released])
            held[released] = -1
        rows, buckets = np.divmod(pairs, PAIR_SHIFT)
        current = buckets == hour
        held[rows[current]] = hour
        shared.append(pairs[~current])
        provisional = np.zeros(0, dtype=np.int64)
        if minute != self._provisional_minute:
            self._provisional_minute = minute
            rows_held = np.flatnonzero(held == hour)
            provisional = rows_held * PAIR_SHIFT + hour
        return np.concatenate(shared) if len(shared) > 1 else shared[0], provisional

    def _rows_of(self, names: Sequence[str]) -> np.ndarray:
        """The row of each name, -1 for a server without one."""
        return np.fromiter(map(self._rows.get, names, repeat(-1)), dtype=np.int64, count=len(names))

    def take_closed(self) -> list[HistoryBlocks]:
        """The blocks closed since the last call (oldest first), by server name."""
        closed, self._closed = self._closed, []
        return closed

    def _collect_closed(self) -> None:
        """Name the rows of what the rings emitted, while the rows still belong to those servers."""
        names = self._names
        for ring in (self._minutes, self._hours):
            for rows, blocks in ring.closed:
                self._closed.append(blocks._replace(names=[names[row] or "" for row in rows.tolist()]))
            ring.closed.clear()

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

    def ring_range(self, name: str, width: int, first: int, count: int
                   ) -> tuple[BucketWindow, np.ndarray] | None:
        """Buckets of ``width`` seconds (60 or 3600) ``first .. first + count - 1`` of server ``name`` as its
        ring holds them, and which of them it holds; None if the server is unknown."""
        row = self._rows.get(name)
        if row is None:
            return None
        ring = self._minutes if width == MINUTE_SECONDS else self._hours
        return ring.read(row, first, count)

    def _names_in_order(self) -> list[str]:
        if self._sorted_names is None:
            self._sorted_names = sorted(self._rows)
            self._sorted_rows = None
        return self._sorted_names

    def servers(self, limit: int | None = None, after: str | None = None) -> list[tuple[str, float]]:
        """Known servers sorted by name as ``(name, last_seen)``, starting after ``after``."""
        names = self._names_in_order()
        start = 0 if after is None else bisect.bisect_right(names, after)
        stop = len(names) if limit is None else start + limit
        last_seen = self._last_seen
        rows = self._rows
        return [(name, float(last_seen[rows[name]])) for name in names[start:stop]]

    def current_loads(self, limit: int, now: float | None = None) -> CurrentLoads:
        """The servers with samples in the 60 seconds ending with ``now``'s (default: the clock's), the first
        ``limit`` of them by name, with their average loads over those seconds (see ``CurrentLoads``).

        Read from the second ring's arrays for all servers at once; servers without a sample in those
        seconds are not in it (no zeros made up). The name order is the one ``servers`` keeps, so the
        same servers stay in across calls while their number is over ``limit``.
        """
        current = int((self._clock() if now is None else now) // 1)
        samples, cpu, ram = self._seconds.recent(len(self._names), current)
        names = self._names_in_order()
        rows = self._rows_in_order()
        positions = np.flatnonzero(samples[rows] > 0)
        left_out = max(0, positions.size - limit)
        positions = positions[:limit]
        chosen = rows[positions]
        return CurrentLoads([names[position] for position in positions.tolist()], cpu[chosen], ram[chosen],
                            left_out)

    def _rows_in_order(self) -> np.ndarray:
        """The rows of ``_names_in_order()`` (and ``_positions``), built once per name order."""
        names = self._names_in_order()
        if self._sorted_rows is None or self._positions is None:
            rows = self._rows
            self._sorted_rows = np.fromiter((rows[name] for name in names), dtype=np.int64, count=len(names))
            self._positions = np.full(self.max_servers, -1, dtype=np.int64)
            self._positions[self._sorted_rows] = np.arange(len(names))
        return self._sorted_rows

    def fleet_columns(self) -> FleetColumns:
        """Every known server's name, row, last seen and current load, in name order, as arrays (the
        fleet view sorts and filters them)."""
        names = self._names_in_order()
        rows_in_order = self._rows_in_order()
        assert self._positions is not None  # built with the rows
        cpu, ram = self._seconds.latest(rows_in_order, int(self._clock() // 1))
        return FleetColumns(names, rows_in_order, self._last_seen[rows_in_order], cpu, ram, self._positions)

    def rows_of(self, names: Sequence[str]) -> np.ndarray:
        """The row of each server of ``names``, -1 for one that is unknown."""
        return self._rows_of(names)

    def evict_silent(self) -> list[str]:
        """Forget servers with no sample applied for 24 h; return their names."""
        used = len(self._names)
        cutoff = self._clock() - SILENCE_EVICTION_SECONDS
        if self._hours.closing:
            # A server back after its row was reused must not write into a day its old row already
            # closed for the store (it would replace that day's block): evict only once no sample still
            # accepted (24 h old at most, 60 s ahead at most) can fall in the last day the row wrote.
            cutoff = (cutoff // DAY_SECONDS) * DAY_SECONDS - MAX_FUTURE_SECONDS
        silent = np.flatnonzero(self._last_seen[:used] < cutoff)
        if silent.size == 0:
            return []
        self._seconds.forget(silent)
        self._minutes.forget(silent)
        self._hours.forget(silent)
        self._collect_closed()  # the periods still open, named before the rows are freed
        evicted: list[str] = []
        for row in silent.tolist():
            name = self._names[row]
            assert name is not None, "a free row is never silent: its last_seen is +inf"
            del self._rows[name]
            self._names[row] = None
            evicted.append(name)
        self._free_rows.extend(silent.tolist())
        self._held_hour[silent[silent < len(self._held_hour)]] = -1
        self._last_seen[silent] = np.inf
        self._sorted_names = None
        self.changes += 1
        return evicted
