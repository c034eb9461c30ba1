"""How the node registry keeps a node's latest stats snapshot, and what it may cost.

Only what was validated is kept: the cleaned stats are encoded again (never
the frame's own bytes, which may repeat keys or carry data the validator
dropped). Each node may hold at most ``NODE_SNAPSHOT_BUDGET`` stored bytes and
all nodes together a total budget (``SnapshotBudget``); a snapshot that would
exceed either is refused whole, and the node keeps the one it had.

Two stored forms, told apart by ``StoredSnapshot.compressed``:

- **plain** (``compressed`` False): ``msgpack.packb(stats)`` as it is, for every
  snapshot of at most ``COMPRESS_ABOVE_BYTES`` as msgpack: nearly all of them
  (a typical one is 5-10 KiB), at no cost but the packing.
- **compact** (``compressed`` True), for larger ones: a format byte, then the
  rest. ``FORMAT_COLUMNS`` (below) for every snapshot; ``FORMAT_ZLIB``, zlib of
  the plain msgpack, only for a value the columns do not handle (no valid
  snapshot has one: a tuple, an ``ExtType``...).

Either way unpacking gives back the stats exactly: the same keys in the same
order, the same types (an int stays an int, also in a float field), the same
float bits (-0.0 and NaN included), None and unicode text as they were.

The column layout (``FORMAT_COLUMNS``), after its format byte: two little-endian
u32 (the byte lengths of the first two zlib streams), then three zlib streams:

1. *text* (level 5, preset dictionary ``_PRESET``): two u32 (the lengths of
   the skeleton and of the text), the *skeleton*, then the text columns, each
   ending a deflate block (so each gets its own Huffman codes). The skeleton is
   msgpack of the stats where a list of values of one kind is an ext value:
   ``_RECORDS``: maps that all have the same keys in the same order (disks,
   interfaces, processes), as msgpack ``[count, keys, columns]``, a column per
   key, each encoded as a list is (similar strings and numbers side by side);
   ``_TEXT``: strings (or None), as ``[bytes, digits, none_positions]``: the
   strings joined with NUL, in the text; if at least 1/8 of those bytes are
   digits, each digit is replaced by ``_DIGIT_MARK`` there and the digits are
   in stream 2 (what is left repeats more: paths, device and interface names,
   command lines);
   ``_INTEGERS`` / ``_DECIMALS`` / ``_FLOATS``: ints; floats that are all
   exact decimals (``k / 10**d`` gives each back bit for bit, ``d <= 6``, as
   psutil's rounded percentages); other floats; as ``[count, base, width,
   decimals]``, their bits in stream 3.
2. *digits* (``Z_FILTERED``): the digits of those text columns, in order.
3. *numbers* (``Z_RLE``): each int column (decimals as their ints ``k``) less
   ``base`` (its minimum, when that saves more than it costs), bit-packed at
   ``width`` bits (LSB first, the width of the largest); each other float
   column as float64 in byte planes (all first bytes, then all second bytes...).

Lists shorter than a few values stay plain in the skeleton. The parts are read
back in the order they were written; anything that does not add up (a
truncated or altered blob) raises ``CorruptSnapshot``, a ``ValueError``. A
plain blob has no checksum: only what msgpack itself refuses is caught there.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import msgpack
import numpy as np
import numpy.typing as npt

from .errors import ServerTrackError

# A typical snapshot (8-10 KiB) is kept as it is: compressing would cost ~40 µs
# a snapshot, thousands a second. Larger ones (many CPUs, disks or processes)
# are stored in the column layout (~1.5 ms for one at every bound, 79 KB as
# msgpack, ~20 KB stored), which is what keeps a node at its bounds near the budget.
COMPRESS_ABOVE_BYTES = 12 * 1024
# With the node's other records (hello fields, IP index, seq, its load-window
# row) this keeps a node under 30 KB of RSS.
NODE_SNAPSHOT_BUDGET = 20 * 1024
DEFAULT_TOTAL_SNAPSHOT_BUDGET = 1024 * 1024 * 1024

# The first byte of a compact blob: how the rest is laid out.
FORMAT_ZLIB = 1
FORMAT_COLUMNS = 2
# zlib level 5: level 6 would save ~150 B (0.7%) of a snapshot at every bound and add ~0.6 ms to its 1.5.
_COMPRESSION_LEVEL = 5
# Shorter lists stay as they are in the skeleton: a column's header would cost more than it saves.
_MIN_NUMBERS = 4
_MIN_TEXTS = 2
_MAX_DECIMALS = 6
_EXACT_FLOAT_INTEGERS = 2.0**53  # every integer below this is a float64 exactly
# The most decimals tried keep the scaled values below this, where a float64 product is off by
# less than 1/8, so rounding it finds the integer (the exactness test itself is exact anyway).
_DECIMALS_BELOW = 2.0**50
_STREAMS = struct.Struct("<II")  # after the format byte: the byte lengths of the text and digit streams
_HEADER = struct.Struct("<II")  # at the start of the text stream: the byte lengths of skeleton and text
# ext types of the skeleton (msgpack ext codes 1-5)
_RECORDS, _TEXT, _INTEGERS, _DECIMALS, _FLOATS = range(1, 6)
# the parts a reader takes columns from
_SKELETON, _TEXT_PART, _DIGITS_PART, _NUMBERS_PART = range(4)
_PART_NAMES = ("skeleton", "text", "digits", "numbers")
_NUL = "\x00"
_TEXT_OR_NONE = frozenset({str, type(None)})
# A text column whose bytes are at least 1/8 digits keeps its digits apart (mount points, device
# and interface names, command lines): what is left repeats more, and digits code in ~3.4 bits.
_DIGITS_APART_FROM = 8
_DIGITS = b"0123456789"
_DIGIT_MARK = b"\x01"  # what stands for a digit in such a column; no valid text holds it
_NOT_DIGITS = bytes(byte for byte in range(256) if byte not in _DIGITS)
_MARK_DIGITS = bytes.maketrans(_DIGITS, _DIGIT_MARK * len(_DIGITS))
# Plain Python values the skeleton holds as they are (dict and list are walked).
_SCALARS = frozenset({str, int, float, bool, type(None), bytes})

Uint64s = npt.NDArray[np.uint64]


# zlib's preset dictionary for the column layout: the keys of a stats snapshot as the skeleton spells
# them, and common strings. Only a head start for the compressor (any keys and strings work), but
# part of the format: changing it needs a new format byte.
_COMMON_STRINGS = (
    "/dev/sda1", "/dev/nvme0n1p1", "/dev/mapper/", "/boot/efi", "/var/lib/docker/overlay2/", "/run/",
    "ext4", "xfs", "btrfs", "tmpfs", "overlay", "nfs4", "vfat", "eth0", "docker0", "veth", "bond0", "enp", "ens",
    "running", "sleeping", "disk-sleep", "idle", "stopped", "zombie", "root", "systemd", "kworker/",
    "python3", "postgres", "java", "nginx", "/usr/bin/", "/usr/sbin/", "/usr/lib/", "/opt/", " --config=/etc/",
)
_PRESET = _NUL.join(_COMMON_STRINGS).encode() + msgpack.packb([
    "cpu", "percent", "per_cpu", "load_avg", "times_percent", "user", "system", "idle", "iowait", "freq_mhz",
    "memory", "total", "available", "used", "percent", "swap", "total", "used", "percent",
    "disks", "device", "mountpoint", "fstype", "total", "used", "free", "percent",
    "disk_io", "read_bytes_per_s", "write_bytes_per_s", "read_ops_per_s", "write_ops_per_s",
    "network", "interface", "rx_bytes_per_s", "tx_bytes_per_s", "rx_packets_per_s", "tx_packets_per_s",
    "rx_errors", "tx_errors", "rx_drops", "tx_drops", "processes", "count", "top_cpu",
    "pid", "name", "user", "status", "cpu_percent", "rss", "memory_percent", "create_time", "cmdline", "top_memory",
])


class CorruptSnapshot(ServerTrackError, ValueError):
    """A stored snapshot that cannot be read back as it was written (altered or truncated bytes)."""


class StoredSnapshot(NamedTuple):
    """A snapshot as the registry holds it: plain msgpack, or the compact form if ``compressed``."""

    data: bytes
    compressed: bool

    @property
    def size(self) -> int:
        """Bytes it takes (what the budgets count)."""
        return len(self.data)


def pack_snapshot(stats: dict[str, Any]) -> StoredSnapshot:
    """Encode validated ``stats`` for keeping (the compact form above ``COMPRESS_ABOVE_BYTES``)."""
    packed = msgpack.packb(stats)
    if len(packed) <= COMPRESS_ABOVE_BYTES:
        return StoredSnapshot(packed, False)
    try:
        return StoredSnapshot(_ColumnWriter().blob(stats), True)
    except _NotColumnar:
        return StoredSnapshot(bytes((FORMAT_ZLIB,)) + zlib.compress(packed, _COMPRESSION_LEVEL), True)


def unpack_snapshot(stored: StoredSnapshot) -> dict[str, Any]:
    """The stats kept in ``stored``; raise ``CorruptSnapshot`` if its bytes do not decode."""
    try:
        if not stored.compressed:
            stats = msgpack.unpackb(stored.data)
        elif stored.data[:1] == bytes((FORMAT_COLUMNS,)):
            stats = _ColumnReader(stored.data).stats()
        elif stored.data[:1] == bytes((FORMAT_ZLIB,)):
            stats = msgpack.unpackb(_inflate(stored.data[1:]))
        else:
            raise CorruptSnapshot(f"unknown stored snapshot format {stored.data[:1]!r}")
    except CorruptSnapshot:
        raise
    except Exception as error:  # zlib, msgpack, numpy or the layout: all mean corrupt bytes
        raise CorruptSnapshot(f"stored snapshot of {len(stored.data)} bytes is corrupt: {error!r}") from error
    if type(stats) is not dict:
        raise CorruptSnapshot(f"stored snapshot holds a {type(stats).__name__}, not a map")
    return stats


class _NotColumnar(Exception):
    """The value holds something the column layout does not encode; store it as zlib of msgpack."""


class _ColumnWriter:
    """Encodes one snapshot into the column layout (see the module docstring)."""

    def __init__(self) -> None:
        self.texts: list[bytes] = []
        self.digits: list[bytes] = []
        self.numbers: list[bytes] = []

    def blob(self, stats: dict[str, Any]) -> bytes:
        skeleton = msgpack.packb(self.value(stats))
        header = _HEADER.pack(len(skeleton), sum(map(len, self.texts)))
        text = _deflate([header + skeleton, *self.texts], zlib.Z_DEFAULT_STRATEGY, _PRESET)
        # Digits and bits are mostly noise, where short matches cost more than the bytes they stand for.
        digits = _deflate([b"".join(self.digits)], zlib.Z_FILTERED)
        numbers = _deflate([b"".join(self.numbers)], zlib.Z_RLE)
        return b"".join((bytes((FORMAT_COLUMNS,)), _STREAMS.pack(len(text), len(digits)), text, digits, numbers))

    def value(self, value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            if not all(type(key) is str for key in value):
                raise _NotColumnar
            return {key: self.value(entry) for key, entry in value.items()}
        if kind is list:
            return self.column(value)
        if kind not in _SCALARS:
            raise _NotColumnar
        return value

    def column(self, values: Sequence[Any]) -> Any:
        """A list as the skeleton holds it: an ext value for a column, else its encoded items."""
        kinds = set(map(type, values))
        if len(kinds) == 1:
            kind = kinds.pop()
            if kind is dict:
                keys = set(map(tuple, values))
                if len(keys) == 1:
                    return self.records(values, list(keys.pop()))
            elif kind is float and len(values) >= _MIN_NUMBERS:
                return self.floats(values)
            elif kind is int and len(values) >= _MIN_NUMBERS:
                column = self.integers(values)
                if column is not None:
                    return column
            elif kind is str and len(values) >= _MIN_TEXTS:
                column = self.text(values, [])
                if column is not None:
                    return column
        elif kinds == _TEXT_OR_NONE and len(values) >= _MIN_TEXTS:
            nones = [index for index, entry in enumerate(values) if entry is None]
            column = self.text([entry for entry in values if entry is not None], nones)
            if column is not None:
                return column
        return [self.value(entry) for entry in values]

    def records(self, values: Sequence[dict[str, Any]], keys: list[Any]) -> msgpack.ExtType:
        if not all(type(key) is str for key in keys):
            raise _NotColumnar
        # every map has these keys in this order, so its values line up
        columns = [self.column(column) for column in zip(*map(dict.values, values))]
        return msgpack.ExtType(_RECORDS, msgpack.packb([len(values), keys, columns]))

    def text(self, strings: Sequence[str], nones: list[int]) -> msgpack.ExtType | None:
        """The strings (None at ``nones`` left out) joined with NUL; their digits apart if they hold many."""
        joined = _NUL.join(strings)
        if joined.count(_NUL) != len(strings) - 1:
            return None  # a string holds NUL itself (no valid one does)
        try:
            data = joined.encode()
        except UnicodeEncodeError:
            return None  # lone surrogates: left to msgpack, which refuses them as it always did
        digits = data.translate(None, _NOT_DIGITS)
        if len(digits) * _DIGITS_APART_FROM < len(data) or _DIGIT_MARK in data:
            digits = b""
        else:
            data = data.translate(_MARK_DIGITS)
            self.digits.append(digits)
        self.texts.append(data)
        return msgpack.ExtType(_TEXT, msgpack.packb([len(data), len(digits), nones]))

    def integers(self, values: Sequence[int]) -> msgpack.ExtType | None:
        low, high = min(values), max(values)
        if low < -(2**63) or high >= 2**64 or high - low >= 2**64:
            return None  # msgpack refuses such ints anyway
        base = _base(low, high, len(values))
        if base >= 0:
            offsets = np.array(values, dtype=np.uint64)
            if base:
                offsets -= np.uint64(base)
        else:
            offsets = np.array([value - base for value in values], dtype=np.uint64)
        return self._bits(_INTEGERS, offsets, base, high - base, 0)

    def floats(self, values: Sequence[float]) -> msgpack.ExtType:
        column = self._decimals(values)
        if column is not None:
            return column
        array = np.array(values, dtype="<f8")
        self.numbers.append(array.view(np.uint8).reshape(-1, 8).T.tobytes())
        return msgpack.ExtType(_FLOATS, msgpack.packb([len(values), 0, 64, 0]))

    def _decimals(self, values: Sequence[float]) -> msgpack.ExtType | None:
        """The column as integers ``k``, if ``k / 10**d`` gives back every value exactly (same bits)."""
        low, high = min(values), max(values)
        if not (low >= 0.0 and high < _EXACT_FLOAT_INTEGERS):
            return None  # negative, NaN, infinite or too large for exact integers (NaN anywhere fails below)
        most = _MAX_DECIMALS
        while most and high * 10.0**most >= _DECIMALS_BELOW:
            most -= 1
        # A value exact with d decimals is exact with more: a measured float (all its digits) is told
        # by its first value, without numpy; then the fewest decimals the first values need.
        first, scale = values[0], 10.0**most
        if round(first * scale) / scale != first:
            return None
        probe = values[:_MIN_NUMBERS]
        if any(value != value for value in probe):
            return None  # NaN (min and max skip it when it is not first): round() cannot take it
        for fewest in range(most + 1):
            scale = 10.0**fewest
            if all(round(value * scale) / scale == value for value in probe):
                break
        array = np.array(values, dtype=np.float64)
        for decimals in range(fewest, most + 1):
            scale = 10.0**decimals
            scaled = np.rint(array * scale)
            if (scaled / scale == array).all():  # what the reader computes, bit for bit but -0.0
                break
        else:
            return None
        if low == 0.0 and np.signbit(array).any():
            return None  # -0.0, which == 0.0 (and only where the smallest value is 0)
        low_k, high_k = int(scaled.min()), int(scaled.max())
        base = _base(low_k, high_k, len(values))
        integers = scaled.astype(np.uint64)
        if base:
            integers -= np.uint64(base)
        return self._bits(_DECIMALS, integers, base, high_k - base, decimals)

    def _bits(self, ext: int, offsets: Uint64s, base: int, largest: int, decimals: int) -> msgpack.ExtType:
        width = largest.bit_length()
        if width:
            # the low bytes of each value (little-endian), then, unless whole bytes, only their low bits
            low = offsets.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :(width + 7) // 8]
            if width % 8:
                low = np.packbits(np.unpackbits(low, axis=1, bitorder="little")[:, :width], bitorder="little")
            self.numbers.append(low.tobytes())
        return msgpack.ExtType(ext, msgpack.packb([len(offsets), base, width, decimals]))


class _ColumnReader:
    """Decodes one blob of the column layout."""

    def __init__(self, blob: bytes) -> None:
        start = 1 + _STREAMS.size
        text_end, digits_size = _STREAMS.unpack_from(blob, 1)
        text_end += start
        payload = _inflate(blob[start:text_end], _PRESET)
        skeleton_size, text_size = _HEADER.unpack_from(payload)
        if _HEADER.size + skeleton_size + text_size != len(payload):
            raise CorruptSnapshot("stored snapshot's skeleton and text do not add up to their length")
        # the parts and how far each has been read
        self.parts = [payload[_HEADER.size:_HEADER.size + skeleton_size], payload[_HEADER.size + skeleton_size:],
                      _inflate(blob[text_end:text_end + digits_size]), _inflate(blob[text_end + digits_size:])]
        self.read = [0, 0, 0, 0]
        self.readers: dict[int, Callable[[Any], list[Any]]] = {
            _RECORDS: self.records, _TEXT: self.strings,
            _INTEGERS: self.integers, _DECIMALS: self.decimals, _FLOATS: self.floats,
        }

    def stats(self) -> Any:
        stats = msgpack.unpackb(self.take(_SKELETON, len(self.parts[_SKELETON])), ext_hook=self.column)
        if self.read != list(map(len, self.parts)):
            raise CorruptSnapshot("stored snapshot has data no column accounts for")
        return stats

    def column(self, ext: int, data: bytes) -> list[Any]:
        reader = self.readers.get(ext)
        if reader is None:
            raise CorruptSnapshot(f"stored snapshot has an unknown column type {ext}")
        return reader(msgpack.unpackb(data, ext_hook=self.column))

    @staticmethod
    def records(header: list[Any]) -> list[dict[str, Any]]:
        count, keys, columns = header
        if len(keys) != len(columns) or any(len(column) != count for column in columns):
            raise CorruptSnapshot("stored snapshot has columns of different lengths")
        if not keys:
            return [{} for _ in range(count)]
        return [dict(zip(keys, row)) for row in zip(*columns)]

    def strings(self, header: list[Any]) -> list[Any]:
        size, digit_count, nones = header
        data = self.take(_TEXT_PART, size)
        if digit_count:
            text = np.frombuffer(data, dtype=np.uint8).copy()
            marks = np.flatnonzero(text == _DIGIT_MARK[0])
            if len(marks) != digit_count:
                raise CorruptSnapshot("stored snapshot's text and digits do not match")
            text[marks] = np.frombuffer(self.take(_DIGITS_PART, digit_count), dtype=np.uint8)
            data = text.tobytes()
        values: list[Any] = data.decode().split(_NUL)
        for index in nones:
            values.insert(index, None)
        return values

    def integers(self, header: list[Any]) -> list[Any]:
        count, base, width, _ = header
        offsets = self.offsets(count, width)
        if base >= 0:
            return (offsets + np.uint64(base)).tolist()  # type: ignore[no-any-return]
        return [offset + base for offset in offsets.tolist()]

    def decimals(self, header: list[Any]) -> list[Any]:
        count, base, width, decimals = header
        integers = self.offsets(count, width) + np.uint64(base)
        return (integers.astype(np.float64) / 10.0**decimals).tolist()  # type: ignore[no-any-return]

    def floats(self, header: list[Any]) -> list[Any]:
        count = header[0]
        planes = np.frombuffer(self.take(_NUMBERS_PART, 8 * count), dtype=np.uint8).reshape(8, count)
        return planes.T.copy().view("<f8").ravel().tolist()  # type: ignore[no-any-return]

    def offsets(self, count: int, width: int) -> Uint64s:
        if not 0 <= width <= 64:
            raise CorruptSnapshot(f"stored snapshot has a column of {width}-bit numbers")
        if not width:
            return np.zeros(count, dtype=np.uint64)
        data = np.frombuffer(self.take(_NUMBERS_PART, (count * width + 7) // 8), dtype=np.uint8)
        values = np.zeros((count, 8), dtype=np.uint8)
        size = (width + 7) // 8
        if width % 8:
            bits = np.zeros((count, 8 * size), dtype=np.uint8)
            bits[:, :width] = np.unpackbits(data, count=count * width, bitorder="little").reshape(count, width)
            values[:, :size] = np.packbits(bits, axis=1, bitorder="little")
        else:
            values[:, :size] = data.reshape(count, size)
        return values.view("<u8").ravel()

    def take(self, part: int, size: int) -> bytes:
        """The next ``size`` bytes of ``part``."""
        start = self.read[part]
        data = self.parts[part]
        if size < 0 or start + size > len(data):
            raise CorruptSnapshot(f"stored snapshot's {_PART_NAMES[part]} ends before its columns do")
        self.read[part] = start + size
        return data[start:start + size]


def _base(low: int, high: int, count: int) -> int:
    """What to subtract from a column of ints from ``low`` to ``high``: ``low`` if that saves more
    bits than ``low`` takes to store (or the column has negative ints), else 0."""
    if low < 0 or (low and (high.bit_length() - (high - low).bit_length()) * count > 8 * len(msgpack.packb(low))):
        return low
    return 0


def _deflate(parts: list[bytes], strategy: int, preset: bytes = b"") -> bytes:
    """One zlib stream of ``parts``, each ending a deflate block (so each gets its own codes)."""
    compressor = zlib.compressobj(_COMPRESSION_LEVEL, zlib.DEFLATED, 15, 8, strategy, *((preset,) if preset else ()))
    out = []
    for part in parts:
        out.append(compressor.compress(part))
        out.append(compressor.flush(zlib.Z_BLOCK))
    out.append(compressor.flush())
    return b"".join(out)


def _inflate(stream: bytes, preset: bytes = b"") -> bytes:
    decompressor = zlib.decompressobj(zdict=preset) if preset else zlib.decompressobj()
    payload = decompressor.decompress(stream)
    if not decompressor.eof or decompressor.unused_data:
        raise CorruptSnapshot("stored snapshot's compressed stream is truncated or followed by other bytes")
    return payload


class SnapshotBudget:
    """Stored snapshot bytes: at most ``per_node`` for one node and ``total`` for all of them."""

    __slots__ = ("per_node", "total", "used")

    def __init__(self, total: int = DEFAULT_TOTAL_SNAPSHOT_BUDGET, per_node: int = NODE_SNAPSHOT_BUDGET) -> None:
        if total < 0 or per_node < 0:
            raise ValueError("snapshot budgets cannot be negative")
        self.total = total
        self.per_node = per_node
        self.used = 0

    def refusal(self, size: int, replaced: int) -> tuple[str, str] | None:
        """``(reason, message)`` if a snapshot of ``size`` bytes replacing one of ``replaced``
        bytes would break a budget, else None."""
        if size > self.per_node:
            return ("over_node_budget",
                    f"the snapshot takes {size} bytes stored, over the budget of {self.per_node} bytes per node")
        if self.used - replaced + size > self.total:
            return ("over_total_budget",
                    f"the snapshot memory budget of {self.total} bytes for all nodes is full "
                    f"({self.used} bytes held)")
        return None

    def replace(self, size: int, replaced: int) -> None:
        """Account for a snapshot of ``size`` bytes taking the place of one of ``replaced`` bytes."""
        self.used += size - replaced
