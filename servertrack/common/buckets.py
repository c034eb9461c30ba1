"""UTC-aligned time buckets and the fixed-size ring that stores them for every server.

A bucket is numbered ``floor(ts / width)``: minute buckets have width 60 s,
hour buckets 3600 s, so both are aligned to the UTC wall clock. Each server
owns one row of a ``BucketRing``: ``slots`` buckets kept as struct-of-arrays
(count, sums, min, max), slot ``bucket % slots``. The ring remembers per row
the newest bucket written (its *head*); every slot then holds one of the
buckets ``head - slots + 1 .. head``, and a slot is wiped the moment the head
moves past the bucket it held, so a stale slot is never read as current.

Loads are kept to five decimals (1e-5 percent): rounded once on the way in
to fixed-point integers in those units, so counts, sums, min and max are all
exact integers. Each is stored as narrow as one sample a second allows (see
``ring_cells``): a count in 8 bits a minute bucket (16 an hour bucket), a sum
in 32 bits (40), growing exactly when a bucket receives more; the four
extremes of a slot share three 32-bit words, the mins inverted (``TOP -
min``) so that an empty slot is all zeros: rows fresh from ``zeroed_cells``
need no wiping, and their pages are not touched before they are used.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .periods import HistoryBlocks, periods_closing
from .ring_cells import (
    EXTREME_NAMES,
    EXTREME_TOP,
    HIGH_DTYPES,
    WideCells,
    pack_extremes,
    unpack_extremes,
    zeroed_cells,
)

MINUTE_SECONDS = 60
HOUR_SECONDS = 3600
MINUTES_SHOWN = 60
HOURS_SHOWN = 24
# One spare slot: a sample up to 60 s ahead lands in the next bucket without
# evicting the oldest bucket still shown.
MINUTE_SLOTS = MINUTES_SHOWN + 1
HOUR_SLOTS = HOURS_SHOWN + 1

FIXED_POINT_SCALE = 100_000.0
FIXED_POINT_MAX = 10_000_000  # 100 percent
ROWS_PER_BLOCK = 4096  # a power of two: a row's block and offset are a shift and a mask
_BLOCK_SHIFT = ROWS_PER_BLOCK.bit_length() - 1
_OFFSET_MASK = ROWS_PER_BLOCK - 1
U32_TOP = int(np.iinfo(np.uint32).max)
_EXTREME_TOP = np.uint32(EXTREME_TOP)
SUM_NAMES = ("count", "cpu_sum", "ram_sum")  # a ring's exact integers, each a ``WideCells``

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]



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
    """Loads in [0, 100] as integers in units of 1e-5 (anything outside is clamped: a value never
    spills into the bits of its neighbours in a packed slot)."""
    scaled = values * FIXED_POINT_SCALE
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, FIXED_POINT_MAX, out=scaled)
    return scaled.astype(np.uint32)


def from_fixed_point(values: npt.NDArray[np.unsignedinteger[Any]] | npt.NDArray[np.int64]) -> FloatArray:
    """Inverse of ``to_fixed_point`` (and sums in those units to percent): the nearest double to each
    stored decimal."""
    return values / FIXED_POINT_SCALE


class BucketGroups(NamedTuple):
    """Samples summed per (row, bucket): pairs unique and sorted by row, then bucket.

    Sums are exact int64 and min/max uint32, all fixed-point (see ``to_fixed_point``).
    """

    rows: IntArray
    buckets: IntArray
    samples: IntArray
    cpu_sum: IntArray
    ram_sum: IntArray
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
    change = (rows[1:] != rows[:-1]) | (buckets[1:] != buckets[:-1])
    if change.all():  # the common case: one sample per server and bucket
        return BucketGroups(rows, buckets, np.ones(rows.size, dtype=np.int64), cpu_fixed.astype(np.int64),
                            ram_fixed.astype(np.int64), cpu_fixed, cpu_fixed, ram_fixed, ram_fixed)
    starts = np.flatnonzero(np.concatenate(([True], change)))
    return BucketGroups(
        rows=rows[starts],
        buckets=buckets[starts],
        samples=np.diff(np.append(starts, rows.size)),
        cpu_sum=np.add.reduceat(cpu_fixed, starts, dtype=np.int64),
        ram_sum=np.add.reduceat(ram_fixed, starts, dtype=np.int64),
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

    Sums (percent), min and max are meaningful only where ``samples`` > 0.
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
    resident). Subclasses list
    their plain arrays in ``cells`` and their exact integers in ``wide`` (all
    zero = empty). A head is a bucket number in 32 bits: seconds since the
    epoch fit until 2106.
    """

    def __init__(self, capacity: int, width: int, slots: int, shown: int) -> None:
        if shown >= slots:
            raise ValueError("a ring needs more slots than buckets shown")
        self.width = width
        self.slots = slots
        self.shown = shown
        # head 0 means "never written, all zeros": no real bucket is that old.
        self.head = zeroed_cells((capacity,), np.uint32)
        self.shape = (-(-capacity // ROWS_PER_BLOCK), slots, ROWS_PER_BLOCK)
        self.cells: tuple[npt.NDArray[np.generic], ...] = ()
        self.wide: tuple[WideCells, ...] = ()
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
        current = head[last_rows].astype(np.int64)
        ahead = newest > current
        if ahead.any():
            moved, moved_to, old_head = last_rows[ahead], newest[ahead], current[ahead]
            self._before_move(moved, old_head, moved_to)
            used = old_head != 0  # a never-written row is all zeros already
            if used.any():
                self._wipe_passed(moved[used], old_head[used], moved_to[used])
            head[moved] = moved_to
        if last.size == rows.size:  # the common case: one entry a row, its head known without a lookup
            keep = buckets > np.maximum(current, newest) - self.slots
        else:
            keep = buckets > head[rows].astype(np.int64) - self.slots
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
        """Flat index of (row, slot) in the (block, slot, row-in-block) arrays (broadcasting)."""
        return ((rows >> _BLOCK_SHIFT) * self.slots + slots) * ROWS_PER_BLOCK + (rows & _OFFSET_MASK)

    def _clear(self, rows: IntArray, slots: IntArray | slice) -> None:
        self.dirty[slots] = True
        if isinstance(slots, slice):
            flat = self._cell(rows[:, None], np.arange(self.slots, dtype=np.int64)[None, :]).reshape(-1)
        else:
            flat = self._cell(rows, slots)
        for cells in self.cells:
            cells.reshape(-1)[flat] = 0
        for wide in self.wide:
            wide.clear(flat)

    def _range_cells(self, row: int, first: int, count: int) -> tuple[int, npt.NDArray[np.bool_], IntArray]:
        """The first of buckets ``first .. first + count - 1``, which of them the row holds, and the flat
        index of their cells."""
        buckets = np.arange(first, first + count, dtype=np.int64)
        head = int(self.head[row])
        held = (buckets <= head) & (buckets > head - self.slots)
        block, offset = divmod(row, ROWS_PER_BLOCK)
        return first, held, (block * self.slots + buckets % self.slots) * ROWS_PER_BLOCK + offset

    def _window_cells(self, row: int, current: int) -> tuple[int, npt.NDArray[np.bool_], IntArray]:
        """Like ``_range_cells`` for the window of ``shown`` buckets ending with ``current``."""
        return self._range_cells(row, current - self.shown + 1, self.shown)


def _narrowest(top: int, choices: tuple[type[np.unsignedinteger[Any]], ...]) -> type[np.unsignedinteger[Any]]:
    return next(choice for choice in choices if np.iinfo(choice).max >= top)


class BucketRing(RingRows):
    """``slots`` buckets of ``width`` seconds per row, for ``capacity`` rows: count, sums, min, max.

    Memory is allocated once (``zeroed_cells``: pages cost nothing until touched)
    and is fixed per row as long as a bucket gets at most one sample a second:
    ``slots * 21`` bytes for minute buckets, ``slots * 24`` for hour buckets,
    plus a 4-byte head. More samples in a bucket widen its ring's counters
    exactly (see ``ring_cells.WideCells``). An empty slot is all zeros.

    With ``per_period`` (buckets in a period: 60 minutes an hour, 24 hours a day)
    and ``closing`` set, the ring emits the periods it is done with into
    ``closed`` as ``(rows, blocks)``, the blocks' names left for the owner of
    the rows to fill in (see ``periods``). Every period before a row's head's
    has been emitted as a base block the moment the head left it, so the last
    period emitted is derived from the head, not stored.
    """

    def __init__(self, capacity: int, width: int, slots: int, shown: int, per_period: int = 0) -> None:
        super().__init__(capacity, width, slots, shown)
        if per_period and slots > per_period + 1:
            raise ValueError("a closing ring must span at most two periods")
        self.per_period = per_period
        self.closing = False
        self.closed: list[tuple[IntArray, HistoryBlocks]] = []
        # sized for one sample a second; past that the high parts appear or widen
        count_dtype = _narrowest(width, (np.uint8, np.uint16, np.uint32))
        sum_bits = (width * FIXED_POINT_MAX).bit_length()
        sum_high = None if sum_bits <= 32 else _narrowest((1 << (sum_bits - 32)) - 1, HIGH_DTYPES)
        self.count = WideCells(self.shape, count_dtype)
        self.cpu_sum = WideCells(self.shape, np.uint32, sum_high)
        self.ram_sum = WideCells(self.shape, np.uint32, sum_high)
        self.extremes = tuple(zeroed_cells(self.shape, np.uint32) for _ in EXTREME_NAMES)
        self.wide = (self.count, self.cpu_sum, self.ram_sum)
        self.cells = self.extremes

    def named_cells(self) -> dict[str, npt.NDArray[Any]]:
        """The ring's arrays by name (live, ``(blocks, slots, ROWS_PER_BLOCK)``): what a checkpoint keeps. A high part appears once some bucket needs it (``count_high``...)."""
        named = {name + suffix: array for name, wide in zip(SUM_NAMES, self.wide)
                 for suffix, array in wide.arrays().items()}
        named.update(zip(EXTREME_NAMES, self.extremes))
        return named

    def adopt_layout(self, dtypes: dict[str, np.dtype[Any]]) -> None:
        """Lay the (empty) ring's arrays out as ``dtypes`` by name (a layout ``named_cells`` had), so that
        stored arrays can be read into it; ``ValueError`` for a layout this ring cannot take."""
        wide = dict(zip(SUM_NAMES, self.wide))
        current = self.named_cells()
        for name, dtype in dtypes.items():
            if name.endswith("_high") and name[:-len("_high")] in wide:
                wide[name[:-len("_high")]].use_high(dtype)
            elif name not in current or current[name].dtype != dtype:
                raise ValueError(f"no array {name} of {dtype} in a ring")

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
        widened = self.count.add(flat, groups.samples[keep])
        widened |= self.cpu_sum.add(flat, groups.cpu_sum[keep])
        widened |= self.ram_sum.add(flat, groups.ram_sum[keep])
        if widened:  # every cell of a widened array moved: a checkpoint must copy every slot
            self.dirty[:] = True
        words = [cells.reshape(-1) for cells in self.extremes]
        cpu_min_inverted, cpu_max, ram_min_inverted, ram_max = unpack_extremes(*(view[flat] for view in words))
        np.maximum(cpu_min_inverted, _EXTREME_TOP - groups.cpu_min[keep], out=cpu_min_inverted)
        np.maximum(cpu_max, groups.cpu_max[keep], out=cpu_max)
        np.maximum(ram_min_inverted, _EXTREME_TOP - groups.ram_min[keep], out=ram_min_inverted)
        np.maximum(ram_max, groups.ram_max[keep], out=ram_max)
        for view, packed in zip(words, pack_extremes(cpu_min_inverted, cpu_max, ram_min_inverted, ram_max)):
            view[flat] = packed

    def load_cells(self, flat: IntArray, samples: IntArray, cpu_sum: IntArray, ram_sum: IntArray,
                   cpu_min: npt.NDArray[np.uint32], cpu_max: npt.NDArray[np.uint32],
                   ram_min: npt.NDArray[np.uint32], ram_max: npt.NDArray[np.uint32]) -> None:
        """Fill empty cells at ``flat`` (distinct) with these fixed-point values (as a checkpoint of an older
        layout is read back); heads are the caller's to set."""
        self.count.add(flat, samples)
        self.cpu_sum.add(flat, cpu_sum)
        self.ram_sum.add(flat, ram_sum)
        for cells, packed in zip(self.extremes, pack_extremes(_EXTREME_TOP - cpu_min, cpu_max, _EXTREME_TOP - ram_min,
                                                              ram_max)):
            cells.reshape(-1)[flat] = packed

    def forget(self, rows: IntArray) -> None:
        """Empty rows entirely (servers evicted); when closing, emit their periods still open first."""
        if self.closing and rows.size:
            head = self.head[rows].astype(np.int64)
            used = head != 0
            rows, head = rows[used], head[used]
            next_period_start = (head // self.per_period + 1) * self.per_period
            for which, period in periods_closing(self._flushed(head), head, next_period_start, self.slots,
                                                 self.per_period):
                self._emit_base(rows[which], period[which])
        super().forget(rows)

    def _flushed(self, head: IntArray) -> IntArray:
        """The last period emitted as a base block by rows whose head is ``head`` (not 0)."""
        return head // self.per_period - 1

    def _before_move(self, rows: IntArray, old_head: IntArray, new_head: IntArray) -> None:
        if not self.closing:
            return
        per_period = self.per_period
        crossing = (new_head // per_period > old_head // per_period) & (old_head != 0)
        if not crossing.any():
            return
        rows, old_head, new_head = rows[crossing], old_head[crossing], new_head[crossing]
        for which, period in periods_closing(self._flushed(old_head), old_head, new_head, self.slots, per_period):
            self._emit_base(rows[which], period[which])

    def _emit_base(self, rows: IntArray, periods: IntArray) -> None:
        """Emit what the ring holds of each row's period (before the head moves on)."""
        per_period = self.per_period
        buckets = periods[:, None] * per_period + np.arange(per_period, dtype=np.int64)
        head = self.head[rows].astype(np.int64)[:, None]
        held = (buckets <= head) & (buckets > head - self.slots)
        flat = self._cell(rows[:, None], buckets % self.slots)
        all_held = bool(held.all())  # the common case: nothing to blank out but empty minima
        samples = self.count.take(flat)
        if not all_held:
            samples[~held] = 0
        empty = samples == 0

        def sums(wide: WideCells) -> FloatArray:
            values = wide.take(flat)
            if not all_held:
                values[empty] = 0
            return from_fixed_point(values)

        extremes = self._extremes(flat)
        for values in extremes[1::2]:  # the maxima
            if not all_held:
                values[empty] = 0
        minima = [_EXTREME_TOP - values for values in extremes[0::2]]
        for values in minima:
            values[empty] = 0
        self.closed.append((rows.copy(), HistoryBlocks(
            self.width, [], periods.copy(), np.zeros(rows.size, dtype=np.int64),
            np.minimum(samples, U32_TOP).astype(np.uint32), sums(self.cpu_sum), sums(self.ram_sum),
            minima[0], extremes[1], minima[1], extremes[3])))

    def open_cells(self, rows: IntArray, buckets: IntArray) -> tuple[IntArray, IntArray, tuple[npt.NDArray[Any], ...]]:
        """Of the (row, bucket) pairs given, those the ring holds in a period not closed yet, and their cells
        as a block keeps them (samples uint32, sums float64 percent, min/max fixed-point uint32; zero where
        empty): ``(rows, buckets, cells)``. What a collector shares of its open periods."""
        rows = np.asarray(rows, dtype=np.int64)
        buckets = np.asarray(buckets, dtype=np.int64)
        head = self.head[rows].astype(np.int64)
        held = (head != 0) & (buckets <= head) & (buckets > head - self.slots)
        if self.per_period:
            held &= buckets // self.per_period > self._flushed(head)
        rows, buckets = rows[held], buckets[held]
        flat = self._cell(rows, buckets % self.slots)
        samples = self.count.take(flat)
        empty = samples == 0
        cpu_min_inverted, cpu_max, ram_min_inverted, ram_max = self._extremes(flat)
        minima = [_EXTREME_TOP - values for values in (cpu_min_inverted, ram_min_inverted)]
        for values in (*minima, cpu_max, ram_max):
            values[empty] = 0
        cpu_sum, ram_sum = from_fixed_point(self.cpu_sum.take(flat)), from_fixed_point(self.ram_sum.take(flat))
        cpu_sum[empty] = 0
        ram_sum[empty] = 0
        cells = (np.minimum(samples, U32_TOP).astype(np.uint32), cpu_sum, ram_sum, minima[0], cpu_max, minima[1],
                 ram_max)
        return rows, buckets, cells

    def _emit_late(self, groups: BucketGroups, keep: npt.NDArray[np.bool_] | slice, part: int) -> None:
        """Emit the kept groups that fall in a period already closed, as delta blocks numbered ``part``."""
        rows, buckets = groups.rows[keep], groups.buckets[keep]
        periods = buckets // self.per_period
        late = periods <= self._flushed(self.head[rows].astype(np.int64))
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
            cells(np.minimum(groups.samples, U32_TOP), np.uint32), from_fixed_point(cells(groups.cpu_sum, np.int64)),
            from_fixed_point(cells(groups.ram_sum, np.int64)), cells(groups.cpu_min, np.uint32),
            cells(groups.cpu_max, np.uint32), cells(groups.ram_min, np.uint32), cells(groups.ram_max, np.uint32))))

    def _extremes(self, flat: IntArray) -> tuple[npt.NDArray[np.uint32], ...]:
        """Cpu min inverted, cpu max, ram min inverted and ram max of the cells at ``flat`` (fresh arrays)."""
        return unpack_extremes(*(cells.reshape(-1)[flat] for cells in self.extremes))

    def window(self, row: int, current: int) -> BucketWindow:
        """The ``shown`` buckets of ``row`` ending with bucket ``current``, oldest first."""
        return self.read(row, current - self.shown + 1, self.shown)[0]

    def read(self, row: int, first: int, count: int) -> tuple[BucketWindow, npt.NDArray[np.bool_]]:
        """Buckets ``first .. first + count - 1`` of ``row`` (empty where not held), and which of them the
        ring holds (for those, the ring has the whole truth)."""
        first, held, flat = self._range_cells(row, first, count)
        cpu_min_inverted, cpu_max, ram_min_inverted, ram_max = self._extremes(flat)
        return BucketWindow(
            first_bucket=first,
            width=self.width,
            samples=np.where(held, np.minimum(self.count.take(flat), U32_TOP), 0).astype(np.uint32),
            cpu_sum=from_fixed_point(self.cpu_sum.take(flat)),
            ram_sum=from_fixed_point(self.ram_sum.take(flat)),
            cpu_min=from_fixed_point(_EXTREME_TOP - cpu_min_inverted),
            cpu_max=from_fixed_point(cpu_max),
            ram_min=from_fixed_point(_EXTREME_TOP - ram_min_inverted),
            ram_max=from_fixed_point(ram_max),
        ), held
