"""UTC-aligned time buckets and the fixed-size ring that stores them for every server.

A bucket is numbered ``floor(ts / width)``: minute buckets have width 60 s,
hour buckets 3600 s, so both are aligned to the UTC wall clock. Each server
owns one row of a ``BucketRing``: ``slots`` buckets kept as struct-of-arrays
(count, sums, min, max), slot ``bucket % slots``. The ring remembers per row
the newest bucket written (its *head*); every slot then holds one of the
buckets ``head - slots + 1 .. head``, and a slot is wiped the moment the head
moves past the bucket it held, so a stale slot is never read as current.

Loads are kept to five decimals (1e-5 percent): rounded once on the way in,
so sums, min and max agree. Min and max are stored as fixed-point integers
in those units (4 bytes instead of 8), the min inverted (``TOP - min``) so
that an empty slot is all zeros: rows fresh from ``zeroed_cells`` need no wiping,
and their pages are not touched before they are used.
"""

from __future__ import annotations

import math
import mmap
import time
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .periods import HistoryBlocks, periods_closing

MINUTE_SECONDS = 60
HOUR_SECONDS = 3600
MINUTES_SHOWN = 60
HOURS_SHOWN = 24
# One spare slot: a sample up to 60 s ahead lands in the next bucket without
# evicting the oldest bucket still shown.
MINUTE_SLOTS = MINUTES_SHOWN + 1
HOUR_SLOTS = HOURS_SHOWN + 1

FIXED_POINT_SCALE = 100_000.0
ROWS_PER_BLOCK = 4096
_FIXED_POINT_TOP = np.uint32(np.iinfo(np.uint32).max)
CELL_NAMES = ("count", "cpu_sum", "ram_sum", "cpu_min_inverted", "cpu_max", "ram_min_inverted", "ram_max")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def zeroed_cells(shape: tuple[int, ...], dtype: type[np.generic]) -> npt.NDArray[Any]:
    """A zero-filled array on its own anonymous mapping, in small pages.

    Pages cost nothing until touched, as with ``np.zeros``; but numpy asks for
    transparent huge pages on large arrays, and then touching one row makes
    a whole 2 MiB page resident: with a ring's blocks that rounds every
    array up to a 2 MiB step (about 280 bytes a server at 100,000 servers).
    """
    size = math.prod(shape) * np.dtype(dtype).itemsize
    if size == 0:
        return np.zeros(shape, dtype=dtype)
    region = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        region.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(region, dtype=dtype).reshape(shape)


def minute_of(ts: float) -> int:
    """Number of the UTC minute that contains epoch second ``ts``."""
    return int(ts // MINUTE_SECONDS)


def hour_of(ts: float) -> int:
    """Number of the UTC hour that contains epoch second ``ts``."""
    return int(ts // HOUR_SECONDS)


def iso_utc(epoch_seconds: float) -> str:
    """Format whole epoch seconds as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


def bucket_starts(first_bucket: int, width: int, count: int, suffix: str = "Z") -> list[str]:
    """The starts of ``count`` consecutive buckets of ``width`` seconds (1, 60 or 3600), as
    ``YYYY-MM-DDTHH:MM:SS`` + ``suffix``, in UTC.

    The same strings as ``iso_utc``, for a fraction of the cost: the date and
    coarser fields are formatted once per minute, hour or day the window spans.
    """
    unit, layout, tails = _START_PARTS[width]
    ends = _ENDS.get((width, suffix))
    if ends is None:
        ends = _ENDS[width, suffix] = [tail + suffix for tail in tails]
    prefixes: dict[int, str] = {}
    starts = []
    for bucket in range(first_bucket, first_bucket + count):
        coarse, within = divmod(bucket * width, unit)
        prefix = prefixes.get(coarse)
        if prefix is None:
            prefix = prefixes[coarse] = time.strftime(layout, time.gmtime(coarse * unit))
        starts.append(prefix + ends[within // width])
    return starts


# width -> (the coarser unit, its strftime layout, the fine fields of each bucket within it)
_START_PARTS = {
    1: (60, "%Y-%m-%dT%H:%M:", [f"{second:02d}" for second in range(60)]),
    60: (HOUR_SECONDS, "%Y-%m-%dT%H:", [f"{minute:02d}:00" for minute in range(60)]),
    HOUR_SECONDS: (86_400, "%Y-%m-%dT", [f"{hour:02d}:00:00" for hour in range(24)]),
}
_ENDS: dict[tuple[int, str], list[str]] = {}


def to_fixed_point(values: FloatArray) -> npt.NDArray[np.uint32]:
    """Loads in [0, 100] as integers in units of 1e-5."""
    return np.rint(values * FIXED_POINT_SCALE).astype(np.uint32)


def from_fixed_point(values: npt.NDArray[np.uint32]) -> FloatArray:
    """Inverse of ``to_fixed_point``: the nearest double to each stored decimal."""
    return values / FIXED_POINT_SCALE


class BucketGroups(NamedTuple):
    """Samples summed per (row, bucket): pairs unique and sorted by row, then bucket.

    ``*_min``/``*_max`` are fixed-point (see ``to_fixed_point``).
    """

    rows: IntArray
    buckets: IntArray
    samples: IntArray
    cpu_sum: FloatArray
    ram_sum: FloatArray
    cpu_min: npt.NDArray[np.uint32]
    cpu_max: npt.NDArray[np.uint32]
    ram_min: npt.NDArray[np.uint32]
    ram_max: npt.NDArray[np.uint32]


def group_samples(rows: IntArray, buckets: IntArray, cpu: FloatArray, ram: FloatArray) -> BucketGroups:
    """Sum samples (one entry each, in any order) per (row, bucket) with one sort."""
    low = int(buckets.min())
    span = int(buckets.max()) - low + 1
    order = np.argsort(rows * span + (buckets - low))
    rows, buckets = rows[order], buckets[order]
    cpu_fixed, ram_fixed = to_fixed_point(cpu[order]), to_fixed_point(ram[order])
    cpu, ram = from_fixed_point(cpu_fixed), from_fixed_point(ram_fixed)
    change = (rows[1:] != rows[:-1]) | (buckets[1:] != buckets[:-1])
    if change.all():  # the common case: one sample per server and bucket
        return BucketGroups(rows, buckets, np.ones(rows.size, dtype=np.int64), cpu, ram,
                            cpu_fixed, cpu_fixed, ram_fixed, ram_fixed)
    starts = np.flatnonzero(np.concatenate(([True], change)))
    return BucketGroups(
        rows=rows[starts],
        buckets=buckets[starts],
        samples=np.diff(np.append(starts, rows.size)),
        cpu_sum=np.add.reduceat(cpu, starts),
        ram_sum=np.add.reduceat(ram, starts),
        cpu_min=np.minimum.reduceat(cpu_fixed, starts),
        cpu_max=np.maximum.reduceat(cpu_fixed, starts),
        ram_min=np.minimum.reduceat(ram_fixed, starts),
        ram_max=np.maximum.reduceat(ram_fixed, starts),
    )


def coarsen(groups: BucketGroups, factor: int) -> BucketGroups:
    """Merge groups into buckets ``factor`` times wider (minutes -> hours), staying sorted."""
    rows = groups.rows
    buckets = groups.buckets // factor
    change = (rows[1:] != rows[:-1]) | (buckets[1:] != buckets[:-1])
    if change.all():  # the common case: one group per server in the wider bucket
        return groups._replace(buckets=buckets)
    starts = np.flatnonzero(np.concatenate(([True], change)))
    return BucketGroups(
        rows=rows[starts],
        buckets=buckets[starts],
        samples=np.add.reduceat(groups.samples, starts),
        cpu_sum=np.add.reduceat(groups.cpu_sum, starts),
        ram_sum=np.add.reduceat(groups.ram_sum, starts),
        cpu_min=np.minimum.reduceat(groups.cpu_min, starts),
        cpu_max=np.maximum.reduceat(groups.cpu_max, starts),
        ram_min=np.minimum.reduceat(groups.ram_min, starts),
        ram_max=np.maximum.reduceat(groups.ram_max, starts),
    )


class BucketWindow(NamedTuple):
    """The ``shown`` consecutive buckets ending with ``current``, oldest first (one server).

    Sums, min and max are meaningful only where ``samples`` > 0.
    """

    first_bucket: int
    width: int
    samples: npt.NDArray[np.uint32]
    cpu_sum: FloatArray
    ram_sum: FloatArray
    cpu_min: FloatArray
    cpu_max: FloatArray
    ram_min: FloatArray
    ram_max: FloatArray


class RingRows:
    """The bookkeeping every ring shares: ``slots`` buckets of ``width`` seconds per row.

    Arrays are ``(blocks, slots, ROWS_PER_BLOCK)``: blocks of rows, slot-major
    inside a block, so a batch (rows sorted) writes each stripe in address
    order, while memory becomes resident block by block as servers arrive
    (with huge pages a purely slot-major layout would make the whole capacity
    resident). Subclasses list their arrays in ``cells`` (all zero = empty).
    """

    def __init__(self, capacity: int, width: int, slots: int, shown: int) -> None:
        if shown >= slots:
            raise ValueError("a ring needs more slots than buckets shown")
        self.width = width
        self.slots = slots
        self.shown = shown
        # head 0 means "never written, all zeros": no real bucket is that old.
        self.head = zeroed_cells((capacity,), np.int64)
        self.shape = (-(-capacity // ROWS_PER_BLOCK), slots, ROWS_PER_BLOCK)
        self.cells: tuple[npt.NDArray[np.generic], ...] = ()
        # Slots written or wiped since the last ``take_dirty``: what a checkpoint must copy.
        self.dirty = np.zeros(slots, dtype=np.bool_)

    def take_dirty(self) -> IntArray:
        """The slots changed since the last call (in any row), and start counting afresh."""
        slots = np.flatnonzero(self.dirty)
        self.dirty[:] = False
        return slots

    def forget(self, rows: IntArray) -> None:
        """Empty rows entirely (servers evicted), so they can serve new servers."""
        self._clear(rows, slice(None))
        self.head[rows] = 0

    def _advance(self, rows: IntArray, buckets: IntArray) -> npt.NDArray[np.bool_] | slice:
        """Move each row's head to its newest bucket among ``(rows, buckets)`` (sorted by row, then
        bucket), wiping the slots passed; return which entries the ring can still hold."""
        head = self.head
        # a row's last entry has its newest bucket
        last = np.flatnonzero(np.append(rows[1:] != rows[:-1], True))
        last_rows, newest = rows[last], buckets[last]
        ahead = newest > head[last_rows]
        if ahead.any():
            moved, moved_to = last_rows[ahead], newest[ahead]
            self._before_move(moved, head[moved], moved_to)
            used = head[moved] != 0  # a never-written row is all zeros already
            if used.any():
                self._wipe_passed(moved[used], head[moved[used]], moved_to[used])
            head[moved] = moved_to
        keep = buckets > head[rows] - self.slots
        return slice(None) if keep.all() else keep

    def _before_move(self, rows: IntArray, old_head: IntArray, new_head: IntArray) -> None:
        """Called with the rows whose head is about to move on (``old_head`` 0: never written), before
        anything is wiped."""

    def _wipe_passed(self, rows: IntArray, old_head: IntArray, new_head: IntArray) -> None:
        """Empty the slots whose bucket the head has just moved past."""
        passed = new_head - old_head
        whole = passed >= self.slots
        if whole.any():
            self._clear(rows[whole], slice(None))
            partial = ~whole
            rows, old_head, passed = rows[partial], old_head[partial], passed[partial]
        if rows.size == 0:
            return
        if (passed == 1).all():  # the common case: every head moved one bucket on
            self._clear(rows, (old_head + 1) % self.slots)
            return
        # buckets old_head+1 .. new_head, flattened: `passed[i]` entries for row i
        total = int(passed.sum())
        group_start = np.repeat(np.cumsum(passed) - passed, passed)
        step = np.arange(1, total + 1, dtype=np.int64) - group_start
        slot = (np.repeat(old_head, passed) + step) % self.slots
        self._clear(np.repeat(rows, passed), slot)

    def _cell(self, rows: IntArray, slots: IntArray) -> IntArray:
        """Flat index of (row, slot) in the (block, slot, row-in-block) arrays."""
        block, offset = np.divmod(rows, ROWS_PER_BLOCK)
        return (block * self.slots + slots) * ROWS_PER_BLOCK + offset

    def _clear(self, rows: IntArray, slots: IntArray | slice) -> None:
        self.dirty[slots] = True
        target = (rows // ROWS_PER_BLOCK, slots, rows % ROWS_PER_BLOCK)
        for cells in self.cells:
            cells[target] = 0

    def _window_cells(self, row: int, current: int) -> tuple[int, npt.NDArray[np.bool_], tuple[int, IntArray, int]]:
        """The first bucket of the window ending with ``current``, which of its buckets the row holds,
        and the index of their cells."""
        return self._range_cells(row, current - self.shown + 1, self.shown)

    def _range_cells(self, row: int, first: int, count: int
                     ) -> tuple[int, npt.NDArray[np.bool_], tuple[int, IntArray, int]]:
        """Like ``_window_cells`` for buckets ``first .. first + count - 1``."""
        buckets = np.arange(first, first + count, dtype=np.int64)
        head = int(self.head[row])
        held = (buckets <= head) & (buckets > head - self.slots)
        block, offset = divmod(row, ROWS_PER_BLOCK)
        return first, held, (block, buckets % self.slots, offset)


class BucketRing(RingRows):
    """``slots`` buckets of ``width`` seconds per row, for ``capacity`` rows: count, sums, min, max.

    Memory is allocated once (``zeroed_cells``: pages cost nothing until touched)
    and is fixed per row: ``slots * 36`` bytes plus an 8-byte head. An empty
    slot is all zeros.

    With ``per_period`` (buckets in a period: 60 minutes an hour, 24 hours a day)
    and ``closing`` set, the ring emits the periods it is done with into
    ``closed`` as ``(rows, blocks)``, the blocks' names left for the owner of
    the rows to fill in (see ``periods``); ``flushed`` is each row's last
    period emitted as a base block (8 more bytes a row).
    """

    def __init__(self, capacity: int, width: int, slots: int, shown: int, per_period: int = 0) -> None:
        super().__init__(capacity, width, slots, shown)
        if per_period and slots > per_period + 1:
            raise ValueError("a closing ring must span at most two periods")
        self.per_period = per_period
        self.closing = False
        self.flushed = zeroed_cells((capacity,), np.int64)
        self.closed: list[tuple[IntArray, HistoryBlocks]] = []
        self.count = zeroed_cells(self.shape, np.uint32)
        self.cpu_sum = zeroed_cells(self.shape, np.float64)
        self.ram_sum = zeroed_cells(self.shape, np.float64)
        self.cpu_min_inverted = zeroed_cells(self.shape, np.uint32)
        self.cpu_max = zeroed_cells(self.shape, np.uint32)
        self.ram_min_inverted = zeroed_cells(self.shape, np.uint32)
        self.ram_max = zeroed_cells(self.shape, np.uint32)
        self.cells = (self.count, self.cpu_sum, self.ram_sum, self.cpu_min_inverted, self.cpu_max,
                      self.ram_min_inverted, self.ram_max)

    def named_cells(self) -> dict[str, npt.NDArray[Any]]:
        """The ring's arrays by name (live, ``(blocks, slots, ROWS_PER_BLOCK)``): what a checkpoint keeps."""
        return dict(zip(CELL_NAMES, self.cells))

    def add(self, groups: BucketGroups, part: int = 0) -> None:
        """Add grouped samples to their buckets, moving each row's head forward as needed.

        Groups older than what a row's ring still holds are skipped: they can
        no longer be part of any window shown. When closing, groups for a
        period already closed are also emitted as a delta block numbered
        ``part`` (the chunk's id, at least 1).
        """
        if groups.rows.size == 0:
            return
        keep = self._advance(groups.rows, groups.buckets)
        if self.closing:
            self._emit_late(groups, keep, part)
        slots = groups.buckets[keep] % self.slots
        self.dirty[slots] = True
        flat = self._cell(groups.rows[keep], slots)
        count = self.count.reshape(-1)
        count[flat] += groups.samples[keep].astype(np.uint32)
        self.cpu_sum.reshape(-1)[flat] += groups.cpu_sum[keep]
        self.ram_sum.reshape(-1)[flat] += groups.ram_sum[keep]
        _raise(self.cpu_min_inverted, flat, _FIXED_POINT_TOP - groups.cpu_min[keep])
        _raise(self.ram_min_inverted, flat, _FIXED_POINT_TOP - groups.ram_min[keep])
        _raise(self.cpu_max, flat, groups.cpu_max[keep])
        _raise(self.ram_max, flat, groups.ram_max[keep])

    def forget(self, rows: IntArray) -> None:
        """Empty rows entirely (servers evicted); when closing, emit their periods still open first."""
        if self.closing and rows.size:
            head = self.head[rows]
            used = head != 0
            rows, head = rows[used], head[used]
            next_period_start = (head // self.per_period + 1) * self.per_period
            for which, period in periods_closing(self.flushed[rows], head, next_period_start, self.slots,
                                                 self.per_period):
                self._emit_base(rows[which], period[which])
        super().forget(rows)
        self.flushed[rows] = 0

    def _before_move(self, rows: IntArray, old_head: IntArray, new_head: IntArray) -> None:
        # Every period before the head's is closed: flushed >= period(head) - 1 for every written row.
        if not self.closing:
            return
        per_period = self.per_period
        crossing = new_head // per_period > old_head // per_period
        if not crossing.any():
            return
        rows, old_head, new_head = rows[crossing], old_head[crossing], new_head[crossing]
        used = old_head != 0
        if used.any():
            for which, period in periods_closing(self.flushed[rows[used]], old_head[used], new_head[used],
                                                 self.slots, per_period):
                self._emit_base(rows[used][which], period[which])
        self.flushed[rows] = np.maximum(self.flushed[rows], new_head // per_period - 1)

    def _emit_base(self, rows: IntArray, periods: IntArray) -> None:
        """Emit what the ring holds of each row's period (before the head moves on)."""
        per_period = self.per_period
        buckets = periods[:, None] * per_period + np.arange(per_period, dtype=np.int64)
        head = self.head[rows][:, None]
        held = (buckets <= head) & (buckets > head - self.slots)
        flat = self._cell(np.broadcast_to(rows[:, None], buckets.shape), buckets % self.slots)
        all_held = bool(held.all())  # the common case: nothing to blank out but empty minima
        samples = self.count.reshape(-1)[flat]
        if not all_held:
            samples[~held] = 0
        empty = samples == 0

        def read(cells: npt.NDArray[Any], inverted: bool = False) -> npt.NDArray[Any]:
            values = cells.reshape(-1)[flat]  # a fancy index: a copy, free to change
            if inverted:
                values = _FIXED_POINT_TOP - values
                values[empty] = 0
            elif not all_held:
                values[empty] = 0
            return values

        self.closed.append((rows.copy(), HistoryBlocks(
            self.width, [], periods.copy(), np.zeros(rows.size, dtype=np.int64), samples,
            read(self.cpu_sum), read(self.ram_sum), read(self.cpu_min_inverted, True), read(self.cpu_max),
            read(self.ram_min_inverted, True), read(self.ram_max))))

    def _emit_late(self, groups: BucketGroups, keep: npt.NDArray[np.bool_] | slice, part: int) -> None:
        """Emit the kept groups that fall in a period already closed, as delta blocks numbered ``part``."""
        rows, buckets = groups.rows[keep], groups.buckets[keep]
        periods = buckets // self.per_period
        late = periods <= self.flushed[rows]
        if not late.any():
            return
        if part < 1:
            raise ValueError("a closing ring needs the chunk's id (at least 1) to number a delta")
        rows, periods, position = rows[late], periods[late], buckets[late] % self.per_period
        change = np.concatenate(([True], (rows[1:] != rows[:-1]) | (periods[1:] != periods[:-1])))
        block = np.cumsum(change) - 1
        count = int(block[-1]) + 1
        shape = (count, self.per_period)

        def cells(values: npt.NDArray[Any], dtype: type[np.generic]) -> npt.NDArray[Any]:
            out = np.zeros(shape, dtype=dtype)
            out[block, position] = values[keep][late]
            return out

        self.closed.append((rows[change], HistoryBlocks(
            self.width, [], periods[change], np.full(count, part, dtype=np.int64),
            cells(groups.samples, np.uint32), cells(groups.cpu_sum, np.float64), cells(groups.ram_sum, np.float64),
            cells(groups.cpu_min, np.uint32), cells(groups.cpu_max, np.uint32), cells(groups.ram_min, np.uint32),
            cells(groups.ram_max, np.uint32))))

    def window(self, row: int, current: int) -> BucketWindow:
        """The ``shown`` buckets of ``row`` ending with bucket ``current``, oldest first."""
        return self.read(row, current - self.shown + 1, self.shown)[0]

    def read(self, row: int, first: int, count: int) -> tuple[BucketWindow, npt.NDArray[np.bool_]]:
        """Buckets ``first .. first + count - 1`` of ``row`` (empty where not held), and which of them the
        ring holds (for those, the ring has the whole truth)."""
        first, held, index = self._range_cells(row, first, count)
        return BucketWindow(
            first_bucket=first,
            width=self.width,
            samples=np.where(held, self.count[index], 0).astype(np.uint32),
            cpu_sum=self.cpu_sum[index],
            ram_sum=self.ram_sum[index],
            cpu_min=from_fixed_point(_FIXED_POINT_TOP - self.cpu_min_inverted[index]),
            cpu_max=from_fixed_point(self.cpu_max[index]),
            ram_min=from_fixed_point(_FIXED_POINT_TOP - self.ram_min_inverted[index]),
            ram_max=from_fixed_point(self.ram_max[index]),
        ), held


def _raise(cells: npt.NDArray[np.uint32], flat: IntArray, values: npt.NDArray[np.uint32]) -> None:
    view = cells.reshape(-1)
    view[flat] = np.maximum(view[flat], values)
