"""Closing periods: how a ring hands the buckets it is done with to the store.

A minute ring's buckets are grouped by hour (60 a period), an hour ring's by
UTC day (24 a period). A server's period *closes* when its ring's head moves
into a later period: the ring then still holds every bucket of it that it
ever held (a ring spans at most two periods), so it emits them as one *base*
block before the move wipes any of them. A sample that arrives for a period
before the head's (closed), while the ring still holds that bucket, is added
to the ring as usual and also emitted as a *delta* block, numbered by the
chunk that brought it. Base and deltas together are everything the ring held; the
store merges them. A row forgotten (its server evicted) emits its periods
still open first.

Emission depends only on the ring's state and the chunks applied, in order:
re-applying the same logged chunks after a crash emits the same blocks
under the same keys, so a store that replaces by key never counts twice.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

# A block holds one server's buckets of one period: the 60 minute buckets of an hour, or the
# 24 hour buckets of a UTC day. ``period = bucket // BUCKETS_PER_PERIOD[width]``.
MINUTE_WIDTH = 60
HOUR_WIDTH = 3600
BUCKETS_PER_PERIOD = {MINUTE_WIDTH: 60, HOUR_WIDTH: 24}
BASE_PART = 0  # a block's base part; a delta part is numbered by the batch that made it (> 0)




def periods_closing(flushed: IntArray, old_head: IntArray, new_head: IntArray, slots: int,
                    per_period: int) -> list[tuple[npt.NDArray[np.bool_], IntArray]]:
    """For rows whose head moves from ``old_head`` to ``new_head`` (old heads real, not 0): the periods to
    emit as base blocks now, as ``(which rows, their period)`` pairs (at most two: a ring spans at most two
    periods). A period is emitted when it is closed by the move, not emitted yet (after ``flushed``),
    and held by the ring before the move."""
    oldest_held = (old_head - slots + 1) // per_period
    first = np.maximum(flushed + 1, oldest_held)
    last = np.minimum(new_head // per_period - 1, old_head // per_period)
    closing = []
    for step in range(2):
        period = first + step
        which = period <= last
        if which.any():
            closing.append((which, period))
    return closing


class HistoryBlocks(NamedTuple):
    """``n`` blocks of ``width``-second buckets, one per (name, period, part), cells ``[n, buckets]``.

    A base part (``part == BASE_PART``) is everything the server's ring held of
    that period when it was closed: writing it replaces the stored block and
    deletes the block's delta parts. A delta part (``part`` = the id of the
    batch that made it) holds samples that arrived after the period closed; a
    read merges base and deltas (counts and sums add, min of mins, max of maxes).
    Writing a (name, period, part) again replaces it: replaying the log after a
    crash writes the same keys, never counts twice. Sums are float64 percent;
    min/max are fixed-point uint32 (1e-5 percent), meaningful where samples > 0.
    """

    width: int
    names: list[str]
    periods: npt.NDArray[np.int64]
    parts: npt.NDArray[np.int64]
    samples: npt.NDArray[np.uint32]
    cpu_sum: npt.NDArray[np.float64]
    ram_sum: npt.NDArray[np.float64]
    cpu_min: npt.NDArray[np.uint32]
    cpu_max: npt.NDArray[np.uint32]
    ram_min: npt.NDArray[np.uint32]
    ram_max: npt.NDArray[np.uint32]
