"""Checkpoints of the aggregator's minute and hour rings: a ring image on disk, updated in place through a redo file.

A full copy of the rings is about 2 KB a server (200 MB at 100,000 servers):
far too much to write every minute. Between two checkpoints only a few slots
of each ring change (the current minute and hour, late samples), so a
checkpoint writes just those slots, in two steps:

1. ``checkpoint.redo``: everything the checkpoint holds (the rows' names,
   last-seen times, ring heads, the changed slots of every array, the log
   segment replay starts from), written to a temporary file, checksummed,
   fsynced and renamed into place: the rename is the commit;
2. the changed slots are then written into the image files (one per ring
   array, laid out as the array is in memory, sparse where rows were never
   used), and fsynced; image files no checkpoint refers to any more are
   then removed.

A crash during step 2 leaves an image part old and part new; loading applies
the redo file again (it is idempotent), so the image plus the redo file is
always exactly the last committed checkpoint. The second ring (last minute by
second) is not kept: a restart rebuilds it from the log.

Format 2 records each array's dtype and shape in the redo file and names
the image file after its dtype (``minutes.count.u1.cells``): when a ring
widens an array (see ``ring_cells.WideCells``) it marks every slot changed,
so the next checkpoint writes the whole array into a new file, and the old
one is removed once that checkpoint is committed. Format 1 (uint32 counts,
float64 sums, four uint32 extremes a slot, ``minutes.count.cells``) is read
and converted: its values come back exactly, every slot is marked changed
so the next checkpoint rewrites the rings in format 2, and its files are
removed then.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import msgpack
import numpy as np

from ..common.aggregator import Aggregator, AggregatorChanges
from ..common.buckets import (
    FIXED_POINT_MAX,
    FIXED_POINT_SCALE,
    ROWS_PER_BLOCK,
    BucketRing,
)
from ..common.errors import ServerTrackError

MAGIC = b"STCKPT\x00\x02"
FORMAT_VERSION = 2
V1_MAGIC = b"STCKPT\x00\x01"
# Format 1's arrays, in the order its redo file holds them.
V1_ARRAYS = {"count": "<u4", "cpu_sum": "<f8", "ram_sum": "<f8", "cpu_min_inverted": "<u4", "cpu_max": "<u4",
             "ram_min_inverted": "<u4", "ram_max": "<u4"}
REDO_NAME = "checkpoint.redo"
IMAGE_SUFFIX = ".cells"
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_U32_TOP = int(np.iinfo(np.uint32).max)


class CorruptCheckpoint(ServerTrackError):
    """The checkpoint on disk cannot be read (a bad checksum, a newer format, a missing image)."""


class CheckpointInfo(NamedTuple):
    """Where a loaded checkpoint leaves off: replay the log from ``log_segment``; chunk ids go on from
    ``next_chunk``."""

    log_segment: int
    next_chunk: int
    written_at: float
    rows: int


def image_name(ring_name: str, cells_name: str, dtype: np.dtype[Any]) -> str:
    """The image file of one ring array in format 2 (its dtype in the name: ``hours.cpu_sum.u4.cells``)."""
    return f"{ring_name}.{cells_name}.{dtype.str[1:]}{IMAGE_SUFFIX}"


def write_checkpoint(directory: Path, changes: AggregatorChanges, log_segment: int, next_chunk: int,
                     written_at: float) -> int:
    """Commit a checkpoint (redo file), then bring the image files up to it; return the bytes written."""
    directory.mkdir(parents=True, exist_ok=True)
    used = len(changes.names)
    meta: dict[str, Any] = {
        "version": FORMAT_VERSION, "log_segment": log_segment, "next_chunk": next_chunk,
        "written_at": written_at, "rows": used, "rows_per_block": ROWS_PER_BLOCK, "names": changes.names,
        "rings": {name: {"slots": ring.slots.tolist(), "slot_count": ring.slot_count, "head": ring.head.dtype.str,
                         "arrays": {cells: stripe.dtype.str for cells, stripe in ring.stripes.items()}}
                  for name, ring in changes.rings.items()},
    }
    parts: list[bytes | memoryview] = [MAGIC]
    packed = msgpack.packb(meta)
    parts += [_LENGTH.pack(len(packed)), packed, _bytes(changes.last_seen)]
    for ring in changes.rings.values():
        parts.append(_bytes(ring.head))
        parts += [_bytes(stripe) for stripe in ring.stripes.values()]
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    parts.append(_CRC.pack(crc))
    temporary = directory / (REDO_NAME + ".tmp")
    written = 0
    with open(temporary, "wb") as redo:
        for part in parts:
            written += redo.write(part)
        redo.flush()
        os.fsync(redo.fileno())
    os.replace(temporary, directory / REDO_NAME)
    _fsync_directory(directory)
    written += _write_stripes(directory, changes)
    _remove_other_images(directory, {image_name(ring_name, cells, stripe.dtype)
                                     for ring_name, ring in changes.rings.items()
                                     for cells, stripe in ring.stripes.items()})
    return written


def load_checkpoint(directory: Path, aggregator: Aggregator) -> CheckpointInfo | None:
    """Load the last committed checkpoint into a fresh ``aggregator`` (image, then the redo file on top,
    which is also written into the image again); None when there is none. A format-1 checkpoint is
    converted (see the module docstring)."""
    redo_path = directory / REDO_NAME
    if not redo_path.exists():
        return None
    data = redo_path.read_bytes()
    if len(data) < len(MAGIC) + _LENGTH.size + _CRC.size or not data.startswith(MAGIC[:6]):
        raise CorruptCheckpoint(f"{redo_path} is not a ServerTrack checkpoint")
    version = data[:len(MAGIC)]
    if version not in (MAGIC, V1_MAGIC):
        raise CorruptCheckpoint(f"{redo_path} was written by a newer ServerTrack (format {data[6:8].hex()})")
    body, (crc,) = memoryview(data)[:-_CRC.size], _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(body) != crc:
        raise CorruptCheckpoint(f"{redo_path} fails its checksum")
    (meta_length,) = _LENGTH.unpack_from(data, len(MAGIC))
    reader = _Body(redo_path, body, len(MAGIC) + _LENGTH.size + meta_length)
    meta = msgpack.unpackb(body[len(MAGIC) + _LENGTH.size:reader.offset])
    expected = 1 if version == V1_MAGIC else FORMAT_VERSION
    if meta.get("version") != expected or meta.get("rows_per_block") != ROWS_PER_BLOCK:
        raise CorruptCheckpoint(f"{redo_path} has an unknown layout")
    rings = aggregator.named_rings()
    if set(meta["rings"]) != set(rings):
        raise CorruptCheckpoint(f"{redo_path} has an unknown layout")
    used = int(meta["rows"])
    last_seen = reader.take(np.dtype(np.float64), used)
    if version == V1_MAGIC:
        heads = {ring_name: _load_v1_ring(directory, reader, ring_name, ring, meta["rings"][ring_name], used)
                 for ring_name, ring in rings.items()}
    else:
        heads = {ring_name: _load_ring(directory, reader, ring_name, ring, meta["rings"][ring_name], used)
                 for ring_name, ring in rings.items()}
    aggregator.restore(meta["names"], last_seen, heads)
    if version == V1_MAGIC:
        for ring in rings.values():  # the next checkpoint rewrites everything in format 2
            ring.dirty[:] = True
    else:
        _write_image_slots(directory, aggregator, meta)
    return CheckpointInfo(int(meta["log_segment"]), int(meta["next_chunk"]), float(meta["written_at"]), used)


class _Body:
    """Reads the arrays of a checked redo file in order."""

    def __init__(self, path: Path, body: memoryview, offset: int) -> None:
        self.path, self.body, self.offset = path, body, offset

    def take(self, dtype: np.dtype[Any], count: int) -> np.ndarray:
        size = dtype.itemsize * count
        if self.offset + size > len(self.body):
            raise CorruptCheckpoint(f"{self.path} is shorter than its header says")
        array = np.frombuffer(self.body, dtype=dtype, count=count, offset=self.offset)
        self.offset += size
        return array


def _load_ring(directory: Path, reader: _Body, ring_name: str, ring: BucketRing, ring_meta: dict[str, Any],
               used: int) -> np.ndarray:
    """Lay ``ring`` out as the checkpoint says, read its images and the redo's stripes into it; its heads."""
    unknown = CorruptCheckpoint(f"{reader.path} has an unknown layout")
    try:
        dtypes = {name: np.dtype(text) for name, text in ring_meta["arrays"].items()}
        head_dtype = np.dtype(ring_meta["head"])
        ring.adopt_layout(dtypes)
    except (TypeError, ValueError):
        raise unknown from None
    if ring_meta["slot_count"] != ring.slots or head_dtype.kind not in "ui":
        raise unknown
    cells_by_name = ring.named_cells()
    blocks = -(-used // ROWS_PER_BLOCK)
    heads = reader.take(head_dtype, used)
    slots = np.array(ring_meta["slots"], dtype=np.int64)
    for cells_name, dtype in dtypes.items():
        cells = cells_by_name[cells_name]
        _read_image(directory / image_name(ring_name, cells_name, dtype), cells, blocks)
        stripe = reader.take(dtype, blocks * slots.size * ROWS_PER_BLOCK)
        cells[:blocks, slots, :] = stripe.reshape(blocks, slots.size, ROWS_PER_BLOCK)
    return heads


def _load_v1_ring(directory: Path, reader: _Body, ring_name: str, ring: BucketRing, ring_meta: dict[str, Any],
                  used: int) -> np.ndarray:
    """Convert a ring of format 1 (image and redo stripes) into ``ring``, block by block; its heads."""
    if ring_meta["slot_count"] != ring.slots or ring_meta["arrays"] != V1_ARRAYS:
        raise CorruptCheckpoint(f"{reader.path} has an unknown layout")
    blocks = -(-used // ROWS_PER_BLOCK)
    heads = reader.take(np.dtype(np.int64), used)
    reader.take(np.dtype(np.int64), used)  # the last period each row emitted: derived from its head now
    slots = np.array(ring_meta["slots"], dtype=np.int64)
    stripes = {name: reader.take(np.dtype(dtype), blocks * slots.size * ROWS_PER_BLOCK).reshape(
        blocks, slots.size, ROWS_PER_BLOCK) for name, dtype in V1_ARRAYS.items()}
    for block in range(blocks):
        old = {}
        for name, dtype in V1_ARRAYS.items():
            cells = np.zeros((ring.slots, ROWS_PER_BLOCK), dtype=dtype)
            _read_v1_block(directory / f"{ring_name}.{name}{IMAGE_SUFFIX}", cells, block)
            cells[slots] = stripes[name][block]
            old[name] = cells
        filled = np.flatnonzero(old["count"])
        if filled.size:
            ring.load_cells(block * ring.slots * ROWS_PER_BLOCK + filled, *_v1_values(old, filled))
    return heads


def _v1_values(old: dict[str, np.ndarray], filled: np.ndarray) -> tuple[np.ndarray, ...]:
    """The format-1 cells at ``filled`` as ``BucketRing.load_cells`` takes them: counts, exact sums in
    fixed-point units (a float64 sum of such values rounds back to its integer), extremes."""
    def picked(name: str) -> np.ndarray:
        return old[name].reshape(-1)[filled]

    def units(name: str) -> np.ndarray:
        return np.clip(np.rint(picked(name) * FIXED_POINT_SCALE), 0, None).astype(np.int64)

    def fixed(name: str, inverted: bool = False) -> np.ndarray:
        values = picked(name).astype(np.int64)
        return np.clip(_U32_TOP - values if inverted else values, 0, FIXED_POINT_MAX).astype(np.uint32)

    return (picked("count").astype(np.int64), units("cpu_sum"), units("ram_sum"), fixed("cpu_min_inverted", True),
            fixed("cpu_max"), fixed("ram_min_inverted", True), fixed("ram_max"))


def _write_stripes(directory: Path, changes: AggregatorChanges) -> int:
    """Write the changed slots into the image files (step 2 of a checkpoint)."""
    written = 0
    for ring_name, ring in changes.rings.items():
        for cells_name, stripe in ring.stripes.items():
            path = directory / image_name(ring_name, cells_name, stripe.dtype)
            written += _pwrite_slots(path, stripe, ring.slots, ring.slot_count)
    return written


def _write_image_slots(directory: Path, aggregator: Aggregator, meta: dict[str, Any]) -> None:
    """Redo step 2 from the loaded state, so the image matches the checkpoint before anything new lands."""
    blocks = -(-int(meta["rows"]) // ROWS_PER_BLOCK)
    for ring_name, ring in aggregator.named_rings().items():
        slots = np.array(meta["rings"][ring_name]["slots"], dtype=np.int64)
        for cells_name, cells in ring.named_cells().items():
            _pwrite_slots(directory / image_name(ring_name, cells_name, cells.dtype), cells[:blocks, slots, :],
                          slots, ring.slots)


def _remove_other_images(directory: Path, keep: set[str]) -> None:
    """Remove the image files the committed checkpoint does not use (an array widened since, format 1)."""
    for path in directory.glob("*" + IMAGE_SUFFIX):
        if path.name not in keep:
            path.unlink(missing_ok=True)


def _pwrite_slots(path: Path, stripe: np.ndarray, slots: np.ndarray, slot_count: int) -> int:
    """Write ``stripe`` (``[blocks, len(slots), ROWS_PER_BLOCK]``) at its slots' places in the image file."""
    if stripe.size == 0:
        return 0
    stripe_bytes = ROWS_PER_BLOCK * stripe.dtype.itemsize
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    written = 0
    try:
        for block in range(stripe.shape[0]):
            for index, slot in enumerate(slots.tolist()):
                position = (block * slot_count + slot) * stripe_bytes
                written += os.pwrite(descriptor, np.ascontiguousarray(stripe[block, index]).data, position)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return written


def _read_image(path: Path, cells: np.ndarray, blocks: int) -> None:
    """Read the image of ``cells`` (its first ``blocks`` blocks) into the live array; a missing or short
    file leaves zeros (slots never written). Only stripes holding something are copied: the pages of
    the others stay untouched (a high array is mostly zeros)."""
    if blocks == 0 or not path.exists():
        return
    buffer = np.zeros(cells.shape[1:], dtype=cells.dtype)
    with open(path, "rb", buffering=0) as image:
        for block in range(blocks):
            target = buffer.reshape(-1).view(np.uint8).data
            filled = _read_into(image, target)
            if filled < len(target):
                target[filled:] = bytes(len(target) - filled)
            held = buffer.reshape(buffer.shape[0], -1).any(axis=1)
            if held.any():
                cells[block, held] = buffer[held]
            if filled < len(target):
                return


def _read_v1_block(path: Path, cells: np.ndarray, block: int) -> None:
    """Read block ``block`` of a format-1 image (``cells`` is ``[slots, ROWS_PER_BLOCK]``, zero); a missing
    or short file leaves zeros."""
    if not path.exists():
        return
    with open(path, "rb", buffering=0) as image:
        image.seek(block * cells.nbytes)
        _read_into(image, cells.reshape(-1).view(np.uint8).data)


def _read_into(image: Any, target: memoryview) -> int:
    """Fill ``target`` from ``image`` as far as it goes; the bytes read."""
    filled = 0
    while filled < len(target):
        count = image.readinto(target[filled:])
        if not count:
            break
        filled += count
    return filled


def _bytes(array: np.ndarray) -> memoryview:
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
