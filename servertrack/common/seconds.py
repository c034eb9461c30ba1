"""The per-second ring of every server: the last 60 seconds of cpu/ram load, in 5 bytes a second.

Second buckets are numbered ``floor(ts)`` (UTC-aligned like minutes and
hours). At this resolution a bucket usually holds one sample, so min and
max are not kept: a slot is a sample count (``uint8``) and the average cpu
and ram load in hundredths of a percent (``uint16`` each, 0..10000), the
resolution the agent itself reports. A row costs ``61 * 5`` bytes plus a
4-byte head, against 21 bytes a slot for a minute bucket.

Averages are merged exactly within a batch (the samples of one server and
second are summed first) and once per batch across batches, rounding to
0.01 each time. A second counts at most 255 samples: past that the count
stays at 255 and the average keeps moving with weight 255 for the older
samples (a server sending more than 255 samples a second is not reporting
its load, it is flooding).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .buckets import (
    FIXED_POINT_SCALE,
    ROWS_PER_BLOCK,
    BucketGroups,
    FloatArray,
    IntArray,
    RingRows,
)
from .ring_cells import zeroed_cells

SECONDS_SHOWN = 60
# One spare slot: a sample a second ahead lands without evicting the oldest second shown.
SECOND_SLOTS = SECONDS_SHOWN + 1
LOAD_SCALE = 100.0  # stored units per percent
_FIXED_POINT_PER_UNIT = FIXED_POINT_SCALE / LOAD_SCALE  # fixed-point units of a sum per stored unit
MAX_SECOND_SAMPLES = int(np.iinfo(np.uint8).max)


class SecondWindow(NamedTuple):
    """The ``shown`` consecutive seconds ending with ``current``, oldest first (one server).

    Averages are meaningful only where ``samples`` > 0.
    """

    first_second: int
    samples: npt.NDArray[np.uint32]
    cpu_avg: FloatArray
    ram_avg: FloatArray


class SecondRing(RingRows):
    """The last ``SECONDS_SHOWN`` seconds (plus a spare) of every row: sample count and averages."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity, 1, SECOND_SLOTS, SECONDS_SHOWN)
        self.count = zeroed_cells(self.shape, np.uint8)
        self.cpu_avg = zeroed_cells(self.shape, np.uint16)
        self.ram_avg = zeroed_cells(self.shape, np.uint16)
        self.cells = (self.count, self.cpu_avg, self.ram_avg)

    def add(self, groups: BucketGroups) -> None:
        """Merge samples grouped per (row, second) into their seconds (min and max are ignored).

        Seconds older than what a row's ring still holds are skipped.
        """
        if groups.rows.size == 0:
            return
        keep = self._advance(groups.rows, groups.buckets)
        flat = self._cell(groups.rows[keep], groups.buckets[keep] % self.slots)
        samples = groups.samples[keep]
        count = self.count.reshape(-1)
        held = count[flat].astype(np.int64)
        total = held + samples
        for cells, sums in ((self.cpu_avg, groups.cpu_sum[keep]), (self.ram_avg, groups.ram_sum[keep])):
            view = cells.reshape(-1)
            if held.any():
                merged = (view[flat] * held + sums / _FIXED_POINT_PER_UNIT) / total
            else:  # the common case: every second is new
                merged = sums / (samples * _FIXED_POINT_PER_UNIT)
            view[flat] = np.rint(merged).astype(np.uint16)
        count[flat] = np.minimum(total, MAX_SECOND_SAMPLES).astype(np.uint8)

    def cells_at(self, rows: IntArray, seconds: IntArray) -> tuple[IntArray, IntArray, tuple[npt.NDArray[Any], ...]]:
        """Of the (row, second) pairs given, those the ring still holds, and their cells (samples uint8,
        average cpu and ram uint16 in hundredths of a percent): ``(rows, seconds, cells)``."""
        rows = np.asarray(rows, dtype=np.int64)
        seconds = np.asarray(seconds, dtype=np.int64)
        head = self.head[rows].astype(np.int64)
        held = (head != 0) & (seconds <= head) & (seconds > head - self.slots)
        rows, seconds = rows[held], seconds[held]
        flat = self._cell(rows, seconds % self.slots)
        return rows, seconds, tuple(cells.reshape(-1)[flat] for cells in self.cells)

    def recent(self, used: int, current: int) -> tuple[IntArray, FloatArray, FloatArray]:
        """For every row below ``used``: the samples of the ``shown`` seconds ending with second ``current``,
        and their average cpu and ram load over them, weighted by samples (NaN for a row without any).

        One pass over the rows' blocks as arrays: what ``GET /metrics --export-servers`` reads at each
        scrape, for all servers at once.
        """
        blocks = -(-used // ROWS_PER_BLOCK)
        heads = np.zeros(blocks * ROWS_PER_BLOCK, dtype=np.uint32)
        heads[:used] = self.head[:used]
        # The second each slot holds in the window is the same for every row (second % slots); a row holds
        # it if its head is at most slots - 1 ahead of it (0 <= head - second < slots, in wrapping uint32:
        # a head behind it, or 0 for a row never written, wraps to a huge number).
        seconds = current - (current - np.arange(self.slots, dtype=np.int64)) % self.slots
        seconds[seconds <= current - self.shown] = current + self.slots  # the spare slot: never held
        held = (heads.reshape(blocks, 1, ROWS_PER_BLOCK) - seconds.astype(np.uint32).reshape(1, self.slots, 1)
                ) < self.slots
        weights = np.where(held, self.count[:blocks], 0).astype(np.float64)
        samples = weights.sum(axis=1).reshape(-1)[:used].astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            cpu = np.einsum("bsr,bsr->br", weights, self.cpu_avg[:blocks]).reshape(-1)[:used] / (samples * LOAD_SCALE)
            ram = np.einsum("bsr,bsr->br", weights, self.ram_avg[:blocks]).reshape(-1)[:used] / (samples * LOAD_SCALE)
        return samples, cpu, ram

    def latest(self, rows: npt.NDArray[np.int64], current: int) -> tuple[FloatArray, FloatArray]:
        """The cpu and ram averages of each row's newest second, NaN where the ring holds none of the
        ``shown`` seconds ending with ``current`` (a row silent for a minute has no current load)."""
        head = self.head[rows].astype(np.int64)
        flat = self._cell(rows, head % self.slots)
        held = (head > current - self.shown) & (self.count.reshape(-1)[flat] > 0)
        cpu = np.where(held, self.cpu_avg.reshape(-1)[flat] / LOAD_SCALE, np.nan)
        ram = np.where(held, self.ram_avg.reshape(-1)[flat] / LOAD_SCALE, np.nan)
        return cpu, ram

    def window(self, row: int, current: int) -> SecondWindow:
        """The ``shown`` seconds of ``row`` ending with second ``current``, oldest first."""
        first, held, flat = self._window_cells(row, current)
        return SecondWindow(
            first_second=first,
            samples=np.where(held, self.count.reshape(-1)[flat], 0).astype(np.uint32),
            cpu_avg=self.cpu_avg.reshape(-1)[flat] / LOAD_SCALE,
            ram_avg=self.ram_avg.reshape(-1)[flat] / LOAD_SCALE,
        )
