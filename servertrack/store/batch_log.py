"""The batch log: a write-ahead log of applied batches, in numbered segment files.

Every batch the collector applies is appended here first; a checkpoint of
the aggregator records the segment number ``rotate()`` returned, and after a
crash the service loads the checkpoint and replays the segments from that
number on. A torn last record (the process died mid-write) ends its segment
quietly; a record that fails its CRC ends its segment, counted.

Layout (all integers little-endian):

- a segment ``NNNNNNNNNNNN.log`` starts with ``SEGMENT_HEADER`` (``STLOG\\0``
  and a u16 version), then records ``u32 length | u32 crc32(payload) | payload``;
- a payload is a fixed header (``_HEADER``) and five sections: the names new
  to the segment, the name index of each sample (deltas), ``seconds``
  (offsets from a base), cpu and ram (fixed-point; u16 in units of 0.01 %
  when every value of the record is such a multiple, else u32). Each
  section is kept zlib-compressed (level 1) only where that makes it smaller.

A name costs its bytes once per segment: the ``NameTable`` of a segment
grows with the new names of each record, and samples refer to it by index.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

import numpy as np
import numpy.typing as npt

from ..common.errors import ServerTrackError
from .records import LoggedBatch

__all__ = [
    "MAX_RECORD_BYTES",
    "MAX_RECORD_SAMPLES",
    "SEGMENT_HEADER",
    "BatchLog",
    "CorruptRecord",
    "LogReplay",
    "LogVersionError",
    "NameTable",
    "decode_batch",
    "encode_batch",
    "read_segments",
    "segment_numbers",
]

LOG_VERSION = 1
_MAGIC = b"STLOG\x00"
SEGMENT_HEADER = _MAGIC + struct.pack("<H", LOG_VERSION)
MAX_RECORD_BYTES = 64 * 1024 * 1024  # a payload on disk; bigger batches are split by the caller
MAX_RECORD_SAMPLES = 1 << 24
_MAX_RAW_BYTES = 512 * 1024 * 1024  # a record's sections once decompressed
_DEFLATE_RATIO = 1032  # deflate never expands data more than this
_FRAME = struct.Struct("<II")
# batch_id, applied_at, samples, new names, flags, index code, seconds code, compressed sections,
# seconds base, first index, names section raw length, five stored section lengths
_HEADER = struct.Struct("<QdIIBBBBqII5I")
_CPU_SCALED, _RAM_SCALED, _NAMES_BY_LENGTH = 1, 2, 4
_FLAGS = _CPU_SCALED | _RAM_SCALED | _NAMES_BY_LENGTH
_LOAD_STEP = 1000  # 0.01 % in fixed-point units of 1e-5 %
_INDEX_DTYPES: tuple[np.dtype[Any], ...] = (np.dtype("<i1"), np.dtype("<i2"), np.dtype("<u4"))  # deltas; u4 wraps mod 2**32
_OFFSET_DTYPES: tuple[np.dtype[Any], ...] = (np.dtype("<u1"), np.dtype("<u2"), np.dtype("<u4"), np.dtype("<u8"))
_U16, _U32 = np.dtype("<u2"), np.dtype("<u4")
_COMPRESS_FROM = 64  # sections shorter than this are stored as they are
_SEGMENT_NAME = re.compile(r"^(\d{12,})\.log$")
_TEXT_ERRORS = "surrogatepass"  # any str round-trips, lone surrogates included


class CorruptRecord(ServerTrackError, ValueError):
    """A log record's payload does not decode: garbage, or written by a bug."""


class LogVersionError(ServerTrackError, ValueError):
    """A segment was written by a newer, unknown version of the log format."""


class NameTable:
    """The names of one segment, in the order the records introduced them."""

    __slots__ = ("_objects", "index", "names")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self._objects: npt.NDArray[np.object_] = np.empty(0, dtype=object)

    def __len__(self) -> int:
        return len(self.names)

    def extend(self, names: list[str]) -> None:
        """Append names that are not in the table yet."""
        start = len(self.names)
        self.names.extend(names)
        self.index.update(zip(names, range(start, start + len(names))))

    def truncate(self, length: int) -> None:
        """Forget every name from position ``length`` on (undo a failed ``extend``)."""
        for name in self.names[length:]:
            del self.index[name]
        del self.names[length:]
        self._objects = self._objects[:length]

    def take(self, index: npt.NDArray[np.int64]) -> list[str]:
        """The names at positions ``index`` (each below ``len(self)``), in one vectorised step."""
        known = self._objects.size
        if known < len(self.names):
            self._objects = np.concatenate([self._objects, np.array(self.names[known:], dtype=object)])
        names: list[str] = self._objects[index].tolist()
        return names


# ---------------------------------------------------------------- codec (pure)


def encode_batch(batch: LoggedBatch, names: NameTable) -> bytes:
    """The payload of one record; the batch's names new to ``names`` are added to it.

    Raises ValueError (the table unchanged) when the columns differ in length,
    a field is out of range, or the record would exceed ``MAX_RECORD_BYTES``.
    """
    count = len(batch.names)
    seconds = np.asarray(batch.seconds, dtype=np.int64)
    cpu = np.asarray(batch.cpu_fixed, dtype=np.uint32)
    ram = np.asarray(batch.ram_fixed, dtype=np.uint32)
    if not seconds.shape == cpu.shape == ram.shape == (count,):
        raise ValueError("a logged batch needs names, seconds, cpu and ram of one length")
    if count > MAX_RECORD_SAMPLES:
        raise ValueError(f"a record holds at most {MAX_RECORD_SAMPLES} samples, not {count}")
    mark = len(names)
    ids = list(map(names.index.get, batch.names))
    new: list[str] = []
    if None in ids:
        new = [name for name in dict.fromkeys(batch.names) if name not in names.index]
        names.extend(new)
        ids = list(map(names.index.__getitem__, batch.names))
    try:
        return _encode(batch, count, np.array(ids, dtype=np.int64), new, seconds, cpu, ram)
    except (ValueError, struct.error, OverflowError) as error:
        names.truncate(mark)
        raise ValueError(f"cannot log batch {batch.batch_id}: {error}") from None


def _encode(batch: LoggedBatch, count: int, index: npt.NDArray[np.int64], new: list[str],
            seconds: npt.NDArray[np.int64], cpu: npt.NDArray[np.uint32], ram: npt.NDArray[np.uint32]) -> bytes:
    flags = 0
    if any("\n" in name for name in new):
        flags |= _NAMES_BY_LENGTH
        text = "".join(new)
        name_bytes = np.array([len(name) for name in new], dtype=_U32).tobytes() + text.encode("utf-8", _TEXT_ERRORS)
    else:
        name_bytes = "\n".join(new).encode("utf-8", _TEXT_ERRORS)
    first_index = int(index[0]) if count else 0
    index_code, index_bytes = _index_deltas(index, first_index)
    base = int(seconds.min()) if count else 0
    offsets = (seconds - np.int64(base)).view(np.uint64)  # wraps: the true offset is below 2**64
    seconds_code = _narrowest(int(offsets.max()) if count else 0)
    seconds_bytes = offsets.astype(_OFFSET_DTYPES[seconds_code]).tobytes()
    cpu_scaled, cpu_bytes = _load_column(cpu)
    ram_scaled, ram_bytes = _load_column(ram)
    flags |= (_CPU_SCALED if cpu_scaled else 0) | (_RAM_SCALED if ram_scaled else 0)
    raw = (name_bytes, index_bytes, seconds_bytes, cpu_bytes, ram_bytes)
    if sum(map(len, raw)) > _MAX_RAW_BYTES:
        raise ValueError("the record is too large")
    stored, compressed = [], 0
    for position, section in enumerate(raw):
        if len(section) >= _COMPRESS_FROM:
            packed = _compress(section, text=position == 0)
            if len(packed) < len(section):
                section, compressed = packed, compressed | 1 << position
        stored.append(section)
    header = _HEADER.pack(batch.batch_id, batch.applied_at, count, len(new), flags, index_code, seconds_code,
                          compressed, base, first_index, len(name_bytes), *map(len, stored))
    payload = b"".join([header, *stored])
    if len(payload) > MAX_RECORD_BYTES:
        raise ValueError(f"the record takes {len(payload)} bytes, more than {MAX_RECORD_BYTES}")
    return payload


def _compress(data: bytes, text: bool) -> bytes:
    """zlib level 1; numeric columns with Z_RLE (runs and Huffman codes), as small and three times faster."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY if text else zlib.Z_RLE)
    return packer.compress(data) + packer.flush()


def _index_deltas(index: npt.NDArray[np.int64], first: int) -> tuple[int, bytes]:
    """Name indices as deltas from the previous (the first from ``first``), in the narrowest type."""
    deltas = np.diff(index, prepend=np.int64(first))
    low, high = (int(deltas.min()), int(deltas.max())) if deltas.size else (0, 0)
    for code, dtype in enumerate(_INDEX_DTYPES[:2]):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return code, deltas.astype(dtype).tobytes()
    return 2, (deltas & 0xFFFFFFFF).astype(_U32).tobytes()


def _narrowest(largest: int) -> int:
    """The code of the narrowest unsigned type of ``_OFFSET_DTYPES`` that holds ``largest``."""
    return next(code for code, dtype in enumerate(_OFFSET_DTYPES) if largest <= np.iinfo(dtype).max)


def _load_column(values: npt.NDArray[np.uint32]) -> tuple[bool, bytes]:
    """Loads as u16 multiples of 0.01 % when all of them are, else u32 fixed point."""
    if not values.size:
        return True, b""
    if not (values % _LOAD_STEP).any() and int(values.max()) // _LOAD_STEP <= 0xFFFF:
        return True, (values // _LOAD_STEP).astype(_U16).tobytes()
    return False, values.astype(_U32).tobytes()


def decode_batch(payload: bytes, names: NameTable) -> LoggedBatch:
    """The batch of one record payload; its new names are appended to ``names``.

    Raises ``CorruptRecord`` (the table unchanged) for anything that is not a
    payload ``encode_batch`` wrote, after checking every length against the
    payload before allocating for it.
    """
    if len(payload) < _HEADER.size:
        raise CorruptRecord(f"a record of {len(payload)} bytes is shorter than its header")
    (batch_id, applied_at, count, new_count, flags, index_code, seconds_code, compressed, base, first_index,
     names_length, *stored_lengths) = _HEADER.unpack_from(payload)
    if flags & ~_FLAGS or index_code >= len(_INDEX_DTYPES) or seconds_code >= len(_OFFSET_DTYPES) or compressed >= 32:
        raise CorruptRecord("unknown flags or column types")
    if count > MAX_RECORD_SAMPLES or new_count > count:
        raise CorruptRecord(f"bad counts: {count} samples, {new_count} new names")
    if _HEADER.size + sum(stored_lengths) != len(payload):
        raise CorruptRecord("section lengths do not add up to the record")
    expected = [
        names_length,
        count * _INDEX_DTYPES[index_code].itemsize,
        count * _OFFSET_DTYPES[seconds_code].itemsize,
        count * (2 if flags & _CPU_SCALED else 4),
        count * (2 if flags & _RAM_SCALED else 4),
    ]
    if sum(expected) > _MAX_RAW_BYTES:
        raise CorruptRecord("the record claims more data than a record can hold")
    sections: list[bytes | memoryview] = []
    offset = _HEADER.size
    view = memoryview(payload)
    for position, (stored, raw) in enumerate(zip(stored_lengths, expected)):
        section = view[offset:offset + stored]
        offset += stored
        if compressed & 1 << position:
            sections.append(_inflate(section, raw))
        elif stored == raw:
            sections.append(section)
        else:
            raise CorruptRecord(f"section {position} holds {stored} bytes, not {raw}")
    new = _decode_names(sections[0], new_count, bool(flags & _NAMES_BY_LENGTH))
    table_size = len(names) + new_count
    deltas = np.frombuffer(sections[1], dtype=_INDEX_DTYPES[index_code]).astype(np.int64)
    index = np.cumsum(deltas) + first_index if count else deltas
    if index_code == 2:
        index &= 0xFFFFFFFF
    if count and (int(index.min()) < 0 or int(index.max()) >= table_size):
        raise CorruptRecord("a sample refers to a name the segment does not have")
    offsets = np.frombuffer(sections[2], dtype=_OFFSET_DTYPES[seconds_code]).astype(np.uint64)
    seconds = (offsets + np.uint64(base & 0xFFFFFFFFFFFFFFFF)).view(np.int64)
    cpu = _decode_loads(sections[3], bool(flags & _CPU_SCALED))
    ram = _decode_loads(sections[4], bool(flags & _RAM_SCALED))
    if len(set(new)) != len(new) or not names.index.keys().isdisjoint(new):
        raise CorruptRecord("a record brings a name twice, or one the segment already has")
    names.extend(new)
    if count and int(index[0]) + count == int(index[-1]) + 1 and (deltas[1:] == 1).all():
        sample_names = names.names[int(index[0]):int(index[0]) + count]
    else:
        sample_names = names.take(index)
    return LoggedBatch(batch_id, applied_at, sample_names, seconds, cpu, ram)


def _inflate(section: memoryview, raw: int) -> bytes:
    if raw > len(section) * _DEFLATE_RATIO + 1024:
        raise CorruptRecord(f"{len(section)} compressed bytes cannot hold {raw}")
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(section, raw)
        if not inflater.eof and inflater.decompress(inflater.unconsumed_tail, 1):
            raise CorruptRecord("a compressed section is longer than it says")
    except zlib.error as error:
        raise CorruptRecord(f"a compressed section does not inflate: {error}") from None
    if len(data) != raw or not inflater.eof or inflater.unused_data:
        raise CorruptRecord("a compressed section does not match its length")
    return data


def _decode_names(section: bytes | memoryview, count: int, by_length: bool) -> list[str]:
    try:
        if not by_length:
            if count == 0:
                if len(section):
                    raise CorruptRecord("names where a record has none")
                return []
            names = bytes(section).decode("utf-8", _TEXT_ERRORS).split("\n")
            if len(names) != count:
                raise CorruptRecord(f"{len(names)} names where the record says {count}")
            return names
        if len(section) < 4 * count:
            raise CorruptRecord("the name lengths do not fit the record")
        lengths = np.frombuffer(section[:4 * count], dtype=_U32).astype(np.int64)
        text = bytes(section[4 * count:]).decode("utf-8", _TEXT_ERRORS)
    except UnicodeDecodeError as error:
        raise CorruptRecord(f"names are not text: {error}") from None
    if int(lengths.sum()) != len(text):
        raise CorruptRecord("the name lengths do not add up to the names")
    ends = np.cumsum(lengths).tolist()
    return [text[start:end] for start, end in zip([0, *ends[:-1]], ends)]


def _decode_loads(section: bytes | memoryview, scaled: bool) -> npt.NDArray[np.uint32]:
    if scaled:
        return np.frombuffer(section, dtype=_U16).astype(np.uint32) * np.uint32(_LOAD_STEP)
    return np.frombuffer(section, dtype=_U32).astype(np.uint32)


# ---------------------------------------------------------------- segment files


def segment_path(directory: Path, number: int) -> Path:
    """The file of segment ``number`` in ``directory``."""
    return directory / f"{number:012d}.log"


def segment_numbers(directory: Path) -> list[int]:
    """The numbers of the segment files in ``directory``, in increasing order (none if it is missing)."""
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(match.group(1)) for match in map(_SEGMENT_NAME.match, entries) if match)


@dataclass
class _Segment:
    number: int
    fd: int
    names: NameTable = field(default_factory=NameTable)
    offset: int = len(SEGMENT_HEADER)
    dirty: bool = True  # written since its last fsync (a new file: its directory entry too)
    new_file: bool = True


class BatchLog:
    """Appends batches to numbered segments in ``directory``; one writer thread uses it.

    Opening never appends to an existing segment: the first ``append`` starts
    segment ``highest existing + 1``. Each record is written with ``os.write``
    before ``append`` returns (in the page cache: a ``kill -9`` keeps it);
    ``sync`` makes it survive a power loss. An ``OSError`` reaches the caller
    and leaves the log usable: the segment it hit is cut back to its last
    whole record and closed, and the next ``append`` starts a new segment.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = segment_numbers(self.directory)
        self._next = existing[-1] + 1 if existing else 1
        self._segment: _Segment | None = None
        self.fsyncs = 0
        self.bytes_written = 0

    @property
    def current_segment(self) -> int | None:
        """The number of the segment appends go to, or None until the next ``append`` starts one."""
        return self._segment.number if self._segment else None

    def append(self, batch: LoggedBatch) -> None:
        """Encode ``batch`` and write it as one record (ValueError if it is too large to log)."""
        segment = self._segment or self._start_segment()
        mark = len(segment.names)
        payload = encode_batch(batch, segment.names)
        frame = _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        try:
            self._write(segment.fd, frame)
        except OSError:
            segment.names.truncate(mark)
            self._abandon(cut=True)
            raise
        segment.offset += len(frame)
        segment.dirty = True

    def sync(self) -> None:
        """fsync the current segment (and, once, the directory entry of a new one), if written since."""
        segment = self._segment
        if segment is None or not segment.dirty:
            return
        try:
            os.fsync(segment.fd)
            self.fsyncs += 1
            if segment.new_file:
                self._sync_directory()
                segment.new_file = False
        except OSError:
            # after a failed fsync the page cache no longer tells what is on disk: start afresh
            self._abandon(cut=False)
            raise
        segment.dirty = False

    def rotate(self) -> int:
        """Close (fsync) the current segment; return the segment that will hold the next ``append``."""
        if self._segment is not None:
            try:
                self.sync()
            finally:
                self._abandon(cut=False)
        return self._next

    def segments(self) -> list[int]:
        """The numbers of the segment files in the directory, in increasing order."""
        return segment_numbers(self.directory)

    def delete_before(self, segment: int) -> None:
        """Remove the segment files numbered below ``segment`` (never the one being written)."""
        if self._segment is not None and self._segment.number < segment:
            raise ValueError(f"segment {self._segment.number} is still being written")
        for number in self.segments():
            if number >= segment:
                break
            segment_path(self.directory, number).unlink(missing_ok=True)

    def close(self) -> None:
        """fsync and close the current segment; a later ``append`` would start a new one."""
        self.rotate()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start_segment(self) -> _Segment:
        number = self._next
        path = segment_path(self.directory, number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._next = number + 1  # the number is used, whatever happens to the file
        try:
            self._write(fd, SEGMENT_HEADER)
        except OSError:
            os.close(fd)
            try:
                path.unlink()
            except OSError:
                pass  # a short header reads as a torn segment
            raise
        self._segment = _Segment(number, fd)
        return self._segment

    def _write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            self.bytes_written += written
            view = view[written:]

    def _abandon(self, cut: bool) -> None:
        """Close the current segment, first cutting a partly written record off if ``cut``."""
        segment, self._segment = self._segment, None
        if segment is None:
            return
        try:
            if cut:
                os.ftruncate(segment.fd, segment.offset)
        except OSError:
            pass  # what stays is a torn tail, which reading ignores; nothing is appended after it
        finally:
            os.close(segment.fd)

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
            self.fsyncs += 1
        finally:
            os.close(fd)


# ---------------------------------------------------------------- reading


@dataclass
class LogReplay:
    """What reading the log met: records read, torn tails and corrupt segments (and where)."""

    segments: int = 0
    records: int = 0
    torn_bytes: int = 0  # bytes of incomplete records at the end of a segment
    corrupt_segments: int = 0  # segments ended early by a record that failed its checks
    dropped_bytes: int = 0  # bytes ignored after (and including) a corrupt record
    problems: list[str] = field(default_factory=list)


def read_segments(directory: Path, first: int = 0, replay: LogReplay | None = None) -> Iterator[LoggedBatch]:
    """The batches of the segments numbered ``first`` or more, in the order they were appended.

    A torn or corrupt record ends its segment and reading goes on with the
    next one; what was met is added to ``replay``. Never raises for what is
    in the files, except ``LogVersionError`` for a segment of a newer format;
    an ``OSError`` of reading propagates.
    """
    replay = replay if replay is not None else LogReplay()
    directory = Path(directory)
    for number in segment_numbers(directory):
        if number >= first:
            yield from _read_segment(segment_path(directory, number), replay)


def _read_segment(path: Path, replay: LogReplay) -> Iterator[LoggedBatch]:
    try:
        with open(path, "rb") as file:
            yield from _read_records(file, path, replay)
    except FileNotFoundError:
        return  # removed since it was listed


def _read_records(file: IO[bytes], path: Path, replay: LogReplay) -> Iterator[LoggedBatch]:
    size = os.fstat(file.fileno()).st_size
    replay.segments += 1
    head = file.read(len(SEGMENT_HEADER))
    if len(head) < len(SEGMENT_HEADER) and SEGMENT_HEADER.startswith(head):
        replay.torn_bytes += len(head)
        return
    if head[:len(_MAGIC)] != _MAGIC or len(head) < len(SEGMENT_HEADER):
        _corrupt(replay, path, 0, size, "not a batch log segment")
        return
    if head != SEGMENT_HEADER:
        raise LogVersionError(f"{path}: log version {struct.unpack('<H', head[-2:])[0]} is unknown")
    names, offset = NameTable(), len(head)
    while offset < size:
        frame = file.read(_FRAME.size)
        length, crc = _FRAME.unpack(frame) if len(frame) == _FRAME.size else (0, 0)
        if len(frame) < _FRAME.size or (length == 0 and crc == 0) or (
                length <= MAX_RECORD_BYTES and offset + _FRAME.size + length > size):
            replay.torn_bytes += size - offset  # cut mid-record (or a zero-filled tail)
            return
        if length > MAX_RECORD_BYTES:
            _corrupt(replay, path, offset, size, f"a record claims {length} bytes")
            return
        payload = file.read(length)
        if len(payload) < length:
            replay.torn_bytes += size - offset  # the file shrank while we read it
            return
        if zlib.crc32(payload) != crc:
            _corrupt(replay, path, offset, size, "a record fails its CRC")
            return
        try:
            batch = decode_batch(payload, names)
        except CorruptRecord as error:
            _corrupt(replay, path, offset, size, str(error))
            return
        offset += _FRAME.size + length
        replay.records += 1
        yield batch


def _corrupt(replay: LogReplay, path: Path, offset: int, size: int, reason: str) -> None:
    replay.corrupt_segments += 1
    replay.dropped_bytes += size - offset
    replay.problems.append(f"{path.name} at byte {offset}: {reason}; the rest of the segment is ignored")
