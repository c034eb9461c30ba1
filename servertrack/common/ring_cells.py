"""The arrays a ring's cells are made of: zeroed memory, exact counters as narrow as their usual values,
and four 24-bit extremes packed in three 32-bit words.

Every array is ``(blocks, slots, ROWS_PER_BLOCK)`` (see ``buckets.RingRows``),
zero when empty, and addressed here by *flat* cell index.

``WideCells`` keeps one non-negative integer per cell: a *low* array of a
fixed width, sized for what a bucket receives at one sample a second, plus a
*high* array for the bits above it. The high array may not exist at first
(a minute bucket's sums fit 32 bits at 1 Hz); it is created the first time a
cell carries past the low width, and widened (8, then 16, then 32 bits) the
first time a cell would overflow it. A value is always exact,
``low + (high << low_bits)``: nothing saturates in reach of real traffic.
Only cells that carry are written in the high array, and clearing writes only
cells that hold something there, so its pages stay untouched (and cost no
memory) where rows never carried: a server flooding its buckets costs a page
per stripe it floods, not a byte per server. Widening copies only the blocks
holding a carry. The ceiling is the low width plus 32 bits, at most ``2**63 -
1`` (int64): for a count in 8 bits, 1.1e12 samples in one bucket; for a sum
in 1e-5 percent units, 9.2e18 (9.2e11 samples of 100 %): ten times what a
collector applying a million samples a second could put in one bucket during
the 25 hours it accepts samples. A cell past it would stay at the ceiling
rather than wrap.

Extremes: a load's min and max in 1e-5 percent need 24 bits (at most 10**7 <
2**24). A slot's four (cpu min, cpu max, ram min, ram max, mins inverted as
``TOP - min`` so that empty is zero and every update is a maximum) share
three uint32 words (three arrays, ``EXTREME_NAMES``): each word holds one
value in its low 24 bits and a byte of the fourth (ram max) in its top 8.
"""

from __future__ import annotations

import math
import mmap
from typing import Any

import numpy as np
import numpy.typing as npt

HIGH_DTYPES: tuple[type[np.unsignedinteger[Any]], ...] = (np.uint8, np.uint16, np.uint32)
EXTREME_BITS = 24
EXTREME_TOP = (1 << EXTREME_BITS) - 1
EXTREME_NAMES = ("cpu_min_word", "cpu_max_word", "ram_min_word")  # the three words' arrays, by what they hold
_INT64_TOP = int(np.iinfo(np.int64).max)
_LOW24 = np.uint32(EXTREME_TOP)
_SHIFT8, _SHIFT16, _SHIFT24 = np.uint32(8), np.uint32(16), np.uint32(24)

IntArray = npt.NDArray[np.int64]
U32Array = npt.NDArray[np.uint32]


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


def pack_extremes(cpu_min_inverted: U32Array, cpu_max: U32Array, ram_min_inverted: U32Array,
                  ram_max: U32Array) -> tuple[U32Array, U32Array, U32Array]:
    """Four arrays of 24-bit values as three arrays of words (see the module docstring)."""
    return (cpu_min_inverted | (ram_max << _SHIFT24), cpu_max | ((ram_max >> _SHIFT8) << _SHIFT24),
            ram_min_inverted | ((ram_max >> _SHIFT16) << _SHIFT24))


def unpack_extremes(first: U32Array, second: U32Array, third: U32Array
                    ) -> tuple[U32Array, U32Array, U32Array, U32Array]:
    """Inverse of ``pack_extremes``: cpu min inverted, cpu max, ram min inverted, ram max."""
    ram_max = (first >> _SHIFT24) | ((second >> _SHIFT24) << _SHIFT8) | ((third >> _SHIFT24) << _SHIFT16)
    return first & _LOW24, second & _LOW24, third & _LOW24, ram_max


class WideCells:
    """One exact non-negative integer per cell (see the module docstring)."""

    def __init__(self, shape: tuple[int, ...], low: type[np.unsignedinteger[Any]],
                 high: type[np.unsignedinteger[Any]] | None = None) -> None:
        self.shape = shape
        self.low = zeroed_cells(shape, low)
        self.low_bits = np.dtype(low).itemsize * 8
        self.low_top = (1 << self.low_bits) - 1
        self.high: npt.NDArray[Any] | None = None
        if high is not None:
            self.use_high(np.dtype(high))

    @property
    def top(self) -> int:
        """The largest value the cells can hold as laid out now."""
        high_bits = 0 if self.high is None else self.high.dtype.itemsize * 8
        return min((1 << (self.low_bits + high_bits)) - 1, _INT64_TOP)

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The live arrays by suffix: ``""`` (low) and, once it exists, ``"_high"``."""
        if self.high is None:
            return {"": self.low}
        return {"": self.low, "_high": self.high}

    def take(self, flat: IntArray) -> IntArray:
        """The values at flat cell indices (any shape), as int64."""
        values = self.low.reshape(-1)[flat].astype(np.int64)
        if self.high is not None:
            values |= self.high.reshape(-1)[flat].astype(np.int64) << self.low_bits
        return values

    def add(self, flat: IntArray, values: IntArray) -> bool:
        """Add non-negative int64 ``values`` (below 2**62 each) to the cells at ``flat`` (distinct indices);
        True if the high array was widened (every cell's bytes moved then: a checkpoint must copy them all)."""
        low = self.low.reshape(-1)
        total = low[flat] + values  # int64: the low bits plus what carries out of them
        low[flat] = total.astype(low.dtype)  # the low bits (a cast wraps); the carry goes to the high array
        if total.size == 0 or total.max() <= self.low_top:
            return False
        carry = total >> self.low_bits
        carried = np.flatnonzero(carry)
        return self._add_high(flat[carried], carry[carried])

    def clear(self, flat: IntArray) -> None:
        """Set the cells at ``flat`` to zero (writing the high array only where it holds something)."""
        self.low.reshape(-1)[flat] = 0
        if self.high is not None:
            high = self.high.reshape(-1)
            held = high[flat]
            if held.any():
                high[flat[held != 0]] = 0

    def use_high(self, dtype: np.dtype[Any]) -> bool:
        """Lay the high array out as ``dtype`` (one of ``HIGH_DTYPES``, at least as wide as now), keeping
        every value; True if an existing array was widened. ``ValueError`` for another dtype."""
        if dtype not in [np.dtype(choice) for choice in HIGH_DTYPES]:
            raise ValueError(f"a high array cannot be {dtype}")
        old = self.high
        if old is not None and dtype.itemsize <= old.dtype.itemsize:
            if dtype != old.dtype:
                raise ValueError(f"the high array is {old.dtype} already, wider than {dtype}")
            return False
        self.high = zeroed_cells(self.shape, dtype.type)
        if old is None:
            return False
        # copy only the blocks that hold a carry: the others are zero, their pages stay untouched
        blocks = np.flatnonzero(old.reshape(old.shape[0], -1).any(axis=1))
        self.high[blocks] = old[blocks]
        return True

    def _add_high(self, flat: IntArray, carry: IntArray) -> bool:
        if self.high is None:
            self.use_high(np.dtype(HIGH_DTYPES[0]))
        assert self.high is not None
        total = self.high.reshape(-1)[flat].astype(np.int64) + carry
        largest = int(total.max())
        widened = False
        if largest > np.iinfo(self.high.dtype).max:
            wider = [np.dtype(choice) for choice in HIGH_DTYPES if np.iinfo(choice).max >= largest]
            widened = self.use_high(wider[0] if wider else np.dtype(HIGH_DTYPES[-1]))
        ceiling = self.top >> self.low_bits
        if largest > ceiling:  # out of reach of real traffic (see the module docstring): stay at the top
            over = total > ceiling
            total[over] = ceiling
            self.low.reshape(-1)[flat[over]] = self.low_top
        self.high.reshape(-1)[flat] = total
        return widened
