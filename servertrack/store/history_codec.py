"""One history block's cells packed into bytes and back (pure: no I/O).

A block is one server's buckets of one period (the 60 minutes of an hour or
the 24 hours of a UTC day): per bucket the sample count, the cpu and ram sums
(float64 percent) and min/max (fixed-point uint32, 1e-5 percent). Packing is
lossless in the store's terms: counts, min and max come back exactly, and a
sum comes back as the float64 ``rint(sum * 1e5) / 1e5``, so ``rint(sum * 1e5)``
round-trips. A bucket without samples is all zeros (whatever else it held).

How a block is packed (format 1), every number an integer in units of 1e-5 percent:

- which buckets have samples: one bit each, nothing when all of them do;
- per filled bucket its count, nothing when all counts are equal (60 at 1 Hz);
- per load the decimal scale ``10**k`` (k <= 3) dividing every sum, min and
  max (agents report to 0.01 %: k = 3, three digits saved three times);
- per load and filled bucket: the floor of its mean as a step from the
  previous bucket's (the first mean once), the remainder ``sum - mean * count``,
  and the distances ``mean - min`` and ``max - mean``: loads move slowly, so
  all four are small;
- each of these fields is frame-of-reference bit-packed per block: its
  smallest value once, then each value minus it in the fewest bits that hold
  the largest; the step and the remainder share one entry, as do the two
  distances (fewer, wider entries: faster to pack);
- a CRC-32 of everything before it, so a damaged blob is refused, not misread.

A block format 1 cannot hold exactly (a sum negative, not finite or past
2**50 units; an entry wider than 64 bits, which takes loads outside 0..100
or sums inconsistent with counts) is kept as plain arrays (format 2): nothing
is ever lost. ``encode_many`` and ``decode_many`` work on many blocks at once
with numpy; the Python work per block is a slice and a CRC.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ..common.buckets import FIXED_POINT_SCALE
from .records import BASE_PART, BUCKETS_PER_PERIOD, HistoryBlocks

PACKED_FORMAT = 1
RAW_FORMAT = 2
CRC_BYTES = 4
MAX_BUCKETS = 255
U32_TOP = int(np.iinfo(np.uint32).max)
# Sums are packed as integers below 2**50 units: float64 holds them (and the arithmetic on
# them) exactly, and ``rint(units / 1e5 * 1e5) == units``: two roundings stay far below 0.5.
_MAX_UNITS = float(2**50)
# Blocks encoded (decoded) at a time: enough to amortise numpy's cost per call, few enough that the
# temporaries (about 5 KB a block) are memory malloc reuses: at 1,024 blocks a chunk they come
# from fresh mappings each time, and faulting their pages in made encoding 2-3 times slower here.
_CHUNK_BLOCKS = 128
_DECODE_CHUNK_BLOCKS = 512

# Fields per filled bucket: the count, then per load (cpu, ram) the mean's step from the previous
# bucket's (0 for the first: the first mean is a field of the header), the remainder, and the
# distances of min and max from the mean.
_FIELDS = 9
_COUNT = 0
_LOAD_FIELDS = (1, 5)  # first field of cpu, of ram: step, remainder, below, above
# Entries (what is bit-packed) per filled bucket: the count, then (step, remainder) and
# (below, above) of each load, two fields in one entry (the first in the low bits).
_ENTRIES = 5
# The fixed header: format, bucket count, the two scale exponents, the bucket map's base and width
# (one bit each), per field the bit width of its base and of its values, and the bit widths of
# the two first means.
_HEADER_WIDTHS = np.array([8, 8, 2, 2, 1, 1] + [6, 6] * _FIELDS + [6, 6], dtype=np.int64)
_HEADER_OFFSETS = np.cumsum(_HEADER_WIDTHS) - _HEADER_WIDTHS
_HEADER_BITS = int(_HEADER_WIDTHS.sum())
_BASE_WIDTH_COLUMNS = slice(6, 6 + 2 * _FIELDS, 2)
_WIDTH_COLUMNS = slice(7, 7 + 2 * _FIELDS, 2)
_FIRST_WIDTH_COLUMNS = slice(6 + 2 * _FIELDS, 8 + 2 * _FIELDS)
_U64_ONE = np.uint64(1)
_U64_63 = np.uint64(63)

_RAW_DTYPES = ("<u4", "<f8", "<f8", "<u4", "<u4", "<u4", "<u4")
_RAW_ITEM_BYTES = sum(np.dtype(dtype).itemsize for dtype in _RAW_DTYPES)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
WordArray = npt.NDArray[np.uint64]


class CorruptBlock(ValueError):
    """A stored block's bytes do not decode (damaged, truncated, or not a block of this width)."""


class BlockCells(NamedTuple):
    """The cells of one block (arrays ``[buckets]``) or of many (``[blocks, buckets]``).

    Sums are float64 percent; min and max fixed-point uint32 (1e-5 percent);
    everything is zero where ``samples`` is zero.
    """

    samples: npt.NDArray[np.uint32]
    cpu_sum: FloatArray
    ram_sum: FloatArray
    cpu_min: npt.NDArray[np.uint32]
    cpu_max: npt.NDArray[np.uint32]
    ram_min: npt.NDArray[np.uint32]
    ram_max: npt.NDArray[np.uint32]


def empty_cells(shape: int | tuple[int, ...]) -> BlockCells:
    """All-zero cells of ``shape`` (``buckets`` or ``(blocks, buckets)``)."""
    u32, f64 = np.zeros(shape, np.uint32), np.zeros(shape, np.float64)
    return BlockCells(u32, f64, f64.copy(), u32.copy(), u32.copy(), u32.copy(), u32.copy())


def normalized(cells: BlockCells) -> BlockCells:
    """``cells`` in their canonical dtypes, every field of a bucket without samples zero."""
    samples = np.asarray(cells.samples, dtype=np.uint32)
    filled = samples > 0
    fields = [np.asarray(field, dtype=dtype) for field, dtype in zip(cells[1:], (np.float64, np.float64) + (np.uint32,) * 4)]
    if not filled.all():
        fields = [np.where(filled, field, field.dtype.type(0)) for field in fields]
    return BlockCells._make([samples, *fields])


def fields_of(cells: BlockCells) -> list[npt.NDArray[Any]]:
    """The fields of ``cells`` as a list of arrays (to loop over them)."""
    return list(cells)


def merge(base: BlockCells, delta: BlockCells) -> BlockCells:
    """Cells holding the samples of both: counts and sums add, min of mins, max of maxes.

    Works on one block or many (same shapes). A count saturates at 2**32 - 1.
    """
    base_filled, delta_filled = base.samples > 0, delta.samples > 0
    samples = np.minimum(base.samples.astype(np.int64) + delta.samples, U32_TOP).astype(np.uint32)

    def low(a: npt.NDArray[np.uint32], b: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
        return np.where(base_filled & delta_filled, np.minimum(a, b), np.where(base_filled, a, b)).astype(np.uint32)

    return BlockCells(
        samples=samples,
        cpu_sum=base.cpu_sum + delta.cpu_sum,
        ram_sum=base.ram_sum + delta.ram_sum,
        cpu_min=low(base.cpu_min, delta.cpu_min),
        cpu_max=np.maximum(base.cpu_max, delta.cpu_max),
        ram_min=low(base.ram_min, delta.ram_min),
        ram_max=np.maximum(base.ram_max, delta.ram_max),
    )


def merged_periods(rows: list[tuple[int, int, bytes]], per_period: int, first_period: int, spans: int,
                   where_stored: str) -> BlockCells:
    """The ``[spans, per_period]`` cells of periods ``first_period ..`` from their stored parts
    ``(period, part, blob)``, ordered by period then part (``where_stored`` names them in errors)."""
    try:
        decoded = decode_many([row[2] for row in rows], per_period)
    except CorruptBlock:
        for period, part, blob in rows:  # name the block that does not decode
            try:
                decode_many([blob], per_period)
            except CorruptBlock as error:
                raise CorruptBlock(f"{where_stored}, period {period} part {part}: {error}") from None
        raise
    where = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)) - first_period
    out = empty_cells((spans, per_period))
    if np.unique(where).size == where.size:  # one part per period: nothing to merge
        for target, source in zip(fields_of(out), fields_of(decoded)):
            target[where] = source
        return out
    for row in range(where.size):  # base and delta parts (rare): merge them in
        span = int(where[row])
        merged = merge(BlockCells._make(field[span] for field in fields_of(out)),
                       BlockCells._make(field[row] for field in fields_of(decoded)))
        for target, source in zip(fields_of(out), fields_of(merged)):
            target[span] = source
    return out


def encode(cells: BlockCells) -> bytes:
    """One block's cells (arrays ``[buckets]``) as bytes."""
    return encode_many(BlockCells._make(np.asarray(field)[None, :] for field in cells))[0]


def decode(blob: bytes, buckets: int) -> BlockCells:
    """The cells of one block of ``buckets`` buckets; ``CorruptBlock`` if ``blob`` is not one."""
    return BlockCells._make(field[0] for field in fields_of(decode_many([blob], buckets)))


def encode_many(cells: BlockCells) -> list[bytes]:
    """Each row of ``cells`` (arrays ``[blocks, buckets]``, 1 to 255 buckets) as one blob."""
    shape = np.shape(cells.samples)
    if len(shape) != 2 or not 0 < shape[1] <= MAX_BUCKETS or any(np.shape(field) != shape for field in cells):
        raise ValueError(f"cells must be arrays [blocks, buckets] of one shape, 1 to {MAX_BUCKETS} buckets")
    blobs: list[bytes] = []
    for start in range(0, shape[0], _CHUNK_BLOCKS):
        chunk = normalized(BlockCells._make(np.asarray(field)[start:start + _CHUNK_BLOCKS] for field in cells))
        blobs.extend(_encode_chunk(chunk))
    return blobs


def decode_many(blobs: Sequence[bytes], buckets: int) -> BlockCells:
    """The cells of many blocks of ``buckets`` buckets, arrays ``[len(blobs), buckets]``.

    ``CorruptBlock`` (naming the first bad blob's index) if any blob is not such a block.
    """
    packed: list[int] = []
    for index, blob in enumerate(blobs):
        if len(blob) < 2 + CRC_BYTES or zlib.crc32(blob[:-CRC_BYTES]) != int.from_bytes(blob[-CRC_BYTES:], "little"):
            raise CorruptBlock(f"block {index}: " + ("checksum mismatch" if len(blob) >= 2 + CRC_BYTES else
                                                     f"{len(blob)} bytes is too short"))
        if blob[1] != buckets:
            raise CorruptBlock(f"block {index}: holds {blob[1]} buckets, not {buckets}")
        if blob[0] == PACKED_FORMAT:
            packed.append(index)
        elif blob[0] != RAW_FORMAT:
            raise CorruptBlock(f"block {index}: unknown format {blob[0]}")
    if len(packed) == len(blobs) and 0 < len(blobs) <= _DECODE_CHUNK_BLOCKS:
        return _decode_packed(blobs, buckets, 0)
    out = empty_cells((len(blobs), buckets))
    for start in range(0, len(packed), _DECODE_CHUNK_BLOCKS):
        rows = packed[start:start + _DECODE_CHUNK_BLOCKS]
        decoded = _decode_packed([blobs[row] for row in rows], buckets, rows[0])
        for target, source in zip(fields_of(out), fields_of(decoded)):
            target[rows] = source
    for row in sorted(set(range(len(blobs))) - set(packed)):
        for target, source in zip(fields_of(out), fields_of(_decode_raw(blobs[row], buckets, row))):
            target[row] = source
    return out


# ---------------------------------------------------------------- encoding


def _encode_chunk(cells: BlockCells) -> list[bytes]:
    """Blobs of normalised cells ``[n, buckets]``: format 1 where it holds a block exactly, else 2."""
    filled = cells.samples > 0
    limit = _MAX_UNITS - 1.0  # rint must stay below 2**50
    with np.errstate(invalid="ignore", over="ignore"):  # NaN compares False: not packable
        packable = ((cells.cpu_sum >= 0) & (cells.cpu_sum * FIXED_POINT_SCALE < limit)
                    & (cells.ram_sum >= 0) & (cells.ram_sum * FIXED_POINT_SCALE < limit)).all(axis=1)
    blobs: list[bytes | None] = [None] * filled.shape[0]
    rows = np.flatnonzero(packable)
    if rows.size == filled.shape[0]:
        blobs = list(_encode_packed(cells, filled))
    elif rows.size:
        sub = BlockCells._make(field[rows] for field in fields_of(cells))
        for row, blob in zip(rows.tolist(), _encode_packed(sub, filled[rows])):
            blobs[row] = blob
    return [blob if blob is not None else _encode_raw(BlockCells._make(field[row] for field in fields_of(cells)))
            for row, blob in enumerate(blobs)]


def _encode_packed(cells: BlockCells, filled: npt.NDArray[np.bool_]) -> list[bytes | None]:
    """Format-1 blobs of ``[n, buckets]`` cells whose sums are packable; None for a block whose
    entries would not fit 64 bits."""
    n, buckets = filled.shape
    filled_count = filled.sum(axis=1)
    partial = bool(filled_count.min() < buckets)
    # Work in float64: every value is an integer below 2**52, exact, and float arithmetic is fast.
    if partial:  # the filled buckets first, in order; past them, copies of the first (min/max stay)
        order = np.argsort(~filled, axis=1, kind="stable")
        valid = np.arange(buckets) < filled_count[:, None]
        source = np.where(valid, order, order[:, :1])

        def compact(values: npt.NDArray[np.generic]) -> FloatArray:
            return np.take_along_axis(values, source, axis=1).astype(np.float64)
    else:
        def compact(values: npt.NDArray[np.generic]) -> FloatArray:
            return values.astype(np.float64)
    counts = np.maximum(compact(cells.samples), 1.0)  # 1 only in a block without samples
    fields = np.empty((n, _FIELDS, buckets), dtype=np.float64)
    fields[:, _COUNT] = counts
    firsts = np.empty((n, 2), dtype=np.float64)
    exponents = np.empty((n, 2), dtype=np.int64)
    loads = ((cells.cpu_sum, cells.cpu_min, cells.cpu_max), (cells.ram_sum, cells.ram_min, cells.ram_max))
    for load, (sums, low_cells, high_cells) in enumerate(loads):
        total, low, high = _scaled(compact(np.rint(sums * FIXED_POINT_SCALE)), compact(low_cells), compact(high_cells),
                                   exponents[:, load])
        mean = np.floor(total / counts)
        mean -= mean * counts > total  # the float quotient may round up to the next integer
        field = _LOAD_FIELDS[load]
        fields[:, field, 0] = 0.0
        np.subtract(mean[:, 1:], mean[:, :-1], out=fields[:, field, 1:])
        if partial:  # past the filled buckets a step is 0 (always in range: the first one is 0)
            fields[:, field] *= valid
        np.subtract(total, mean * counts, out=fields[:, field + 1])
        np.subtract(mean, low, out=fields[:, field + 2])
        np.subtract(high, mean, out=fields[:, field + 3])
        firsts[:, load] = mean[:, 0]

    base = fields.min(axis=2)
    widths = _bit_length(fields.max(axis=2) - base)
    fields -= base[:, :, None]
    offsets = fields.astype(np.uint64)
    if partial:
        offsets *= valid[:, None, :]
    entries = np.empty((n, _ENTRIES, buckets), dtype=np.uint64)
    entries[:, 0] = offsets[:, _COUNT]
    entry_widths = np.empty((n, _ENTRIES), dtype=np.int64)
    entry_widths[:, 0] = widths[:, _COUNT]
    low_widths = widths[:, 1::2]
    np.bitwise_or(offsets[:, 1::2], offsets[:, 2::2] << low_widths[:, :, None].view(np.uint64), out=entries[:, 1:])
    entry_widths[:, 1:] = low_widths + widths[:, 2::2]
    fits = np.asarray((entry_widths <= 64).all(axis=1))
    if not fits.all():
        return _refit(cells, filled, fits)

    header = np.zeros((n, _HEADER_WIDTHS.size), dtype=np.int64)
    header[:, 0] = PACKED_FORMAT
    header[:, 1] = buckets
    header[:, 2:4] = exponents
    header[:, 4] = filled_count == buckets  # bucket map base: 1 = all filled
    header[:, 5] = (filled_count > 0) & (filled_count < buckets)  # its width
    base_words = _zigzag(base.astype(np.int64))
    header[:, _BASE_WIDTH_COLUMNS] = _bit_length(base_words.astype(np.float64))
    header[:, _WIDTH_COLUMNS] = widths
    header[:, _FIRST_WIDTH_COLUMNS] = _bit_length(firsts)
    field_widths = np.concatenate((header[:, _BASE_WIDTH_COLUMNS], header[:, _FIRST_WIDTH_COLUMNS]), axis=1)
    field_values = np.concatenate((base_words, firsts.astype(np.uint64)), axis=1)

    map_bits = header[:, 5] * buckets
    entry_bits = entry_widths * filled_count[:, None]
    body_bits = _HEADER_BITS + field_widths.sum(axis=1) + map_bits + entry_bits.sum(axis=1)
    body_bytes = -(-body_bits // 8)
    block_start = (np.cumsum(body_bytes) - body_bytes) * 8
    fields_start = block_start + _HEADER_BITS
    map_start = fields_start + field_widths.sum(axis=1)
    entries_start = (map_start + map_bits)[:, None] + np.cumsum(entry_bits, axis=1) - entry_bits
    # Every value goes in one ascending list of (position, value); entries past a block's filled
    # buckets are 0 at the end of their stream, and streams of width 0 in every block are left out.
    columns = np.arange(buckets)
    used = np.flatnonzero(entry_widths.any(axis=0))
    if partial:
        entry_pos = entries_start[:, used, None] + np.minimum(columns, filled_count[:, None, None]) * entry_widths[:, used, None]
    else:
        entry_pos = entries_start[:, used, None] + columns * entry_widths[:, used, None]
    parts_pos = [block_start[:, None] + _HEADER_OFFSETS, fields_start[:, None] + _exclusive_cumsum(field_widths)]
    parts_values = [header.view(np.uint64), field_values]
    if partial:  # the bucket map (width 0 where a block is full or empty: then every bit is 0)
        parts_pos.append(map_start[:, None] + columns * header[:, 5:6])
        parts_values.append((filled & (header[:, 5:6] == 1)).astype(np.uint64))
    parts_pos.append(entry_pos.reshape(n, -1))
    parts_values.append(entries[:, used].reshape(n, -1))
    words = np.zeros(int(block_start[-1] + body_bytes[-1] * 8) // 64 + 2, dtype=np.uint64)
    _write_bits(words, np.concatenate(parts_pos, axis=1).ravel(), np.concatenate(parts_values, axis=1).ravel())
    data = words.view(np.uint8).tobytes()
    blobs: list[bytes | None] = []
    for start, size in zip((block_start // 8).tolist(), body_bytes.tolist()):
        body = data[start:start + size]
        blobs.append(body + zlib.crc32(body).to_bytes(CRC_BYTES, "little"))
    return blobs


def _refit(cells: BlockCells, filled: npt.NDArray[np.bool_], fits: npt.NDArray[np.bool_]) -> list[bytes | None]:
    """Encode again only the blocks that fit (their widths do not depend on the others)."""
    blobs: list[bytes | None] = [None] * fits.size
    rows = np.flatnonzero(fits)
    if rows.size:
        sub = BlockCells._make(field[rows] for field in fields_of(cells))
        for row, blob in zip(rows.tolist(), _encode_packed(sub, filled[rows])):
            blobs[row] = blob
    return blobs


def _scaled(total: FloatArray, low: FloatArray, high: FloatArray,
            exponent: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The three ``[n, buckets]`` arrays of integers (below 2**52, in float64) divided, per row, by
    the largest ``10**k`` (k <= 3) that divides every value of the row; k goes to ``exponent``.

    ``v / 10**k`` is exact when 10**k divides v, and otherwise not an integer (it lies at least
    1e-3 from one, far more than float64's rounding there), so one division tests and divides.
    Rows are tried at 1000 (agents report to 0.01 %), then what is left at 10, then at 10 again.
    """
    values = (total, low, high)
    exponent[:] = 0
    rows = np.flatnonzero(~_divide_rows(values, slice(None), 1000.0))
    exponent[:] = 3
    exponent[rows] = 0
    for k in (1, 2):
        if rows.size == 0:
            break
        rows = rows[_divide_rows(values, rows, 10.0)]
        exponent[rows] = k
    return total, low, high


def _divide_rows(values: tuple[FloatArray, ...], rows: slice | IntArray, divisor: float) -> npt.NDArray[np.bool_]:
    """Divide by ``divisor`` the ``rows`` of ``values`` where it divides every value; return which did."""
    quotients = [value[rows] / divisor for value in values]
    divides = np.ones(quotients[0].shape[0], dtype=bool)
    for quotient in quotients:
        divides &= (np.floor(quotient) == quotient).all(axis=1)
    if divides.all():
        for value, quotient in zip(values, quotients):
            value[rows] = quotient
    elif divides.any():
        chosen = np.arange(values[0].shape[0])[rows][divides]
        for value, quotient in zip(values, quotients):
            value[chosen] = quotient[divides]
    return divides


def _encode_raw(cells: BlockCells) -> bytes:
    body = bytes((RAW_FORMAT, cells.samples.size)) + b"".join(
        np.ascontiguousarray(field, dtype=dtype).tobytes() for field, dtype in zip(cells, _RAW_DTYPES))
    return body + zlib.crc32(body).to_bytes(CRC_BYTES, "little")


def _write_bits(words: WordArray, pos: IntArray, values: WordArray) -> None:
    """OR each value into the little-endian bit stream ``words`` at bit ``pos``: ``pos`` ascending,
    fields not overlapping, each value within its field."""
    word = pos >> 6
    shift = pos.view(np.uint64) & _U64_63
    starts = np.flatnonzero(np.concatenate(([True], word[1:] != word[:-1])))
    touched = word[starts]
    words[touched] |= np.bitwise_or.reduceat(values << shift, starts)
    # the part of a field that spills into the next word (two shifts: never one by 64)
    spill = values >> _U64_ONE
    spill >>= _U64_63 - shift
    words[touched + 1] |= np.bitwise_or.reduceat(spill, starts)


def _read_bits(words: WordArray, pos: IntArray, widths: IntArray) -> WordArray:
    """The fields of ``widths`` bits (0 to 64) at bit positions ``pos`` of the little-endian bit
    stream ``words`` (``pos`` and ``widths`` broadcast together)."""
    word = pos >> 6
    shift = pos.view(np.uint64) & _U64_63
    value = words[word]
    value >>= shift
    word += 1
    high = words[word]
    high <<= _U64_ONE
    shift ^= _U64_63  # 63 - shift
    high <<= shift
    value |= high
    value &= (_U64_ONE << widths.astype(np.uint64)) - _U64_ONE  # 1 << 64 is 0: all 64 bits
    return value


def _bit_length(values: FloatArray | IntArray) -> IntArray:
    """Bits needed for each non-negative integer (float64 rounding of a big one can only add one)."""
    return np.frexp(values)[1].astype(np.int64)


def _zigzag(values: IntArray) -> WordArray:
    return ((values << 1) ^ (values >> 63)).view(np.uint64)


def _unzigzag(values: WordArray) -> IntArray:
    return (values >> _U64_ONE).view(np.int64) ^ -(values & _U64_ONE).view(np.int64)


def _exclusive_cumsum(values: IntArray) -> IntArray:
    return np.cumsum(values, axis=-1) - values


# ---------------------------------------------------------------- decoding


def _decode_raw(blob: bytes, buckets: int, index: int) -> BlockCells:
    if len(blob) != 2 + buckets * _RAW_ITEM_BYTES + CRC_BYTES:
        raise CorruptBlock(f"block {index}: {len(blob)} bytes is not a plain block of {buckets} buckets")
    fields = []
    offset = 2
    for dtype in _RAW_DTYPES:
        fields.append(np.frombuffer(blob, dtype=dtype, count=buckets, offset=offset))
        offset += buckets * np.dtype(dtype).itemsize
    return normalized(BlockCells(*fields))


def _decode_packed(blobs: Sequence[bytes], buckets: int, first_index: int) -> BlockCells:
    """Cells of format-1 blobs (checked for length, CRC, format and bucket count); a blob's index in
    errors is ``first_index`` plus its position."""
    n = len(blobs)
    lengths = np.array([len(blob) for blob in blobs], dtype=np.int64)
    data = b"".join(blobs)
    # reads past a short blob's header stay inside the buffer: a header, fields and map are < 256 bytes
    words = np.frombuffer(data + bytes(256 + (-len(data)) % 8), dtype="<u8")
    block_start = (np.cumsum(lengths) - lengths) * 8
    body_bits = (lengths - CRC_BYTES) * 8

    def refuse(rows: npt.NDArray[np.bool_], why: str) -> None:
        if rows.any():
            raise CorruptBlock(f"block {first_index + int(np.flatnonzero(rows)[0])}: {why}")

    header = _read_bits(words, block_start[:, None] + _HEADER_OFFSETS, _HEADER_WIDTHS).view(np.int64)
    widths = header[:, _WIDTH_COLUMNS]
    field_widths = np.concatenate((header[:, _BASE_WIDTH_COLUMNS], header[:, _FIRST_WIDTH_COLUMNS]), axis=1)
    entry_widths = np.concatenate((widths[:, :1], widths[:, 1::2] + widths[:, 2::2]), axis=1)
    refuse((entry_widths > 64).any(axis=1) | (header[:, 4] + header[:, 5] > 1), "bad header")
    fields_start = block_start + _HEADER_BITS
    fields = _read_bits(words, fields_start[:, None] + _exclusive_cumsum(field_widths), field_widths)
    base = _unzigzag(fields[:, :_FIELDS])
    firsts = fields[:, _FIELDS:].view(np.int64)
    map_start = fields_start + field_widths.sum(axis=1)
    map_width = header[:, 5]
    columns = np.arange(buckets)
    filled = (header[:, 4:5] + _read_bits(words, map_start[:, None] + columns * map_width[:, None],
                                          map_width[:, None]).view(np.int64)) == 1
    filled_count = filled.sum(axis=1)
    entry_bits = entry_widths * filled_count[:, None]
    entries_start = (map_start + map_width * buckets)[:, None] + np.cumsum(entry_bits, axis=1) - entry_bits
    refuse(-(-(entries_start[:, -1] + entry_bits[:, -1] - block_start) // 8) * 8 != body_bits,
           "length does not match its header")
    valid = columns < filled_count[:, None]
    entry_pos = entries_start[:, :, None] + np.minimum(columns, filled_count[:, None, None]) * entry_widths[:, :, None]
    entries = _read_bits(words, entry_pos, entry_widths[:, :, None])
    entries *= valid[:, None, :]

    low_widths = widths[:, 1::2, None].astype(np.uint64)
    offsets = np.empty((n, _FIELDS, buckets), dtype=np.uint64)
    offsets[:, _COUNT] = entries[:, 0]
    offsets[:, 1::2] = entries[:, 1:] & ((_U64_ONE << low_widths) - _U64_ONE)
    offsets[:, 2::2] = entries[:, 1:] >> low_widths  # a shift by 64 gives 0
    values = offsets.view(np.int64)
    values += base[:, :, None]
    counts = values[:, _COUNT]
    refuse((valid & ((counts < 1) | (counts > U32_TOP))).any(axis=1), "bad sample count")
    counts *= valid
    loads = []
    for load, field in enumerate(_LOAD_FIELDS):
        steps = values[:, field]
        steps[:, 0] = firsts[:, load]
        mean = np.cumsum(steps, axis=1)
        scale = (10 ** header[:, 2 + load])[:, None]
        total = (mean * counts + values[:, field + 1]) * scale
        low = (mean - values[:, field + 2]) * scale
        high = (mean + values[:, field + 3]) * scale
        broken = (total < 0) | (total >= _MAX_UNITS) | (low < 0) | (low > U32_TOP) | (high < 0) | (high > U32_TOP)
        refuse((valid & broken).any(axis=1), "value out of range")
        loads.append((total * valid, low * valid, high * valid))

    if filled_count.min() < buckets:  # put the filled buckets' values back where they belong
        order = np.argsort(~filled, axis=1, kind="stable")

        def spread(compacted: IntArray) -> IntArray:
            out = np.zeros_like(compacted)
            np.put_along_axis(out, order, compacted, axis=1)
            return out
    else:
        def spread(compacted: IntArray) -> IntArray:
            return compacted
    (cpu_total, cpu_low, cpu_high), (ram_total, ram_low, ram_high) = loads
    return BlockCells(
        samples=spread(counts).astype(np.uint32),
        cpu_sum=spread(cpu_total) / FIXED_POINT_SCALE,
        ram_sum=spread(ram_total) / FIXED_POINT_SCALE,
        cpu_min=spread(cpu_low).astype(np.uint32),
        cpu_max=spread(cpu_high).astype(np.uint32),
        ram_min=spread(ram_low).astype(np.uint32),
        ram_max=spread(ram_high).astype(np.uint32),
    )


class EncodedBlocks(NamedTuple):
    """A batch of closed blocks as a backend writes them: per block its server, period, part and packed
    cells, in the batch's order, and for each ``(server, period)`` the index of its last base part (a base
    replaces every part written before it)."""

    names: list[str]
    periods: list[int]
    parts: list[int]
    blobs: list[bytes]
    last_base: dict[tuple[str, int], int]

    def kept(self, index: int) -> bool:
        """Whether block ``index`` survives the batch (no later base of the same block replaces it)."""
        return self.last_base.get((self.names[index], self.periods[index]), -1) <= index


def encode_blocks(blocks: HistoryBlocks) -> EncodedBlocks:
    """``blocks`` checked (their cells one period a row) and packed, the form every backend writes."""
    names = list(blocks.names)
    per_period = BUCKETS_PER_PERIOD[blocks.width]
    if blocks.samples.shape != (len(names), per_period):
        raise ValueError(f"{len(names)} blocks need cells of shape ({len(names)}, {per_period}), "
                         f"not {blocks.samples.shape}")
    blobs = encode_many(BlockCells(blocks.samples, blocks.cpu_sum, blocks.ram_sum, blocks.cpu_min,
                                   blocks.cpu_max, blocks.ram_min, blocks.ram_max)) if names else []
    periods, parts = blocks.periods.tolist(), blocks.parts.tolist()
    last_base: dict[tuple[str, int], int] = {}
    for index, (name, period, part) in enumerate(zip(names, periods, parts)):
        if part == BASE_PART:
            last_base[name, period] = index
    return EncodedBlocks(names, periods, parts, blobs, last_base)

