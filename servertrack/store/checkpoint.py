"""Checkpoints of the aggregator's minute and hour rings: a ring image on disk, updated in place through a redo file.

A full copy of the rings is about 3 KB a server (300 MB at 100,000 servers):
far too much to write every minute. Between two checkpoints only a few slots
of each ring change (the current minute and hour, late samples), so a
checkpoint writes just those slots, in two steps:

1. ``checkpoint.redo``: everything the checkpoint holds (the rows' names,
   last-seen times, ring heads and flushed periods, the changed slots of every
   array, the log segment replay starts from), written to a temporary file,
   checksummed, fsynced and renamed into place: the rename is the commit;
2. the changed slots are then written into the image files (``*.cells``, one
   per ring array, laid out as the arrays are in memory, sparse where rows
   were never used), and fsynced.

A crash during step 2 leaves an image part old and part new; loading applies
the redo file again (it is idempotent), so the image plus the redo file is
always exactly the last committed checkpoint. The second ring (last minute by
second) is not kept: a restart rebuilds it from the log.
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
from ..common.buckets import ROWS_PER_BLOCK
from ..common.errors import ServerTrackError

MAGIC = b"STCKPT\x00\x01"
FORMAT_VERSION = 1
REDO_NAME = "checkpoint.redo"
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


class CorruptCheckpoint(ServerTrackError):
    """The checkpoint on disk cannot be read (a bad checksum, a newer format, a missing image)."""


class CheckpointInfo(NamedTuple):
    """Where a loaded checkpoint leaves off: replay the log from ``log_segment``; chunk ids go on from
    ``next_chunk``."""

    log_segment: int
    next_chunk: int
    written_at: float
    rows: int


def write_checkpoint(directory: Path, changes: AggregatorChanges, log_segment: int, next_chunk: int,
                     written_at: float) -> int:
    """Commit a checkpoint (redo file), then bring the image files up to it; return the bytes written."""
    directory.mkdir(parents=True, exist_ok=True)
    used = len(changes.names)
    meta: dict[str, Any] = {
        "version": FORMAT_VERSION, "log_segment": log_segment, "next_chunk": next_chunk,
        "written_at": written_at, "rows": used, "rows_per_block": ROWS_PER_BLOCK, "names": changes.names,
        "rings": {name: {"slots": ring.slots.tolist(), "slot_count": ring.slot_count,
                         "arrays": {cells: stripe.dtype.str for cells, stripe in ring.stripes.items()}}
                  for name, ring in changes.rings.items()},
    }
    parts: list[bytes | memoryview] = [MAGIC]
    packed = msgpack.packb(meta)
    parts += [_LENGTH.pack(len(packed)), packed, _bytes(changes.last_seen)]
    for ring in changes.rings.values():
        parts += [_bytes(ring.head), _bytes(ring.flushed)]
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
    return written + _write_stripes(directory, changes)


def load_checkpoint(directory: Path, aggregator: Aggregator) -> CheckpointInfo | None:
    """Load the last committed checkpoint into a fresh ``aggregator`` (image, then the redo file on top,
    which is also written into the image again); None when there is none."""
    redo_path = directory / REDO_NAME
    if not redo_path.exists():
        return None
    data = redo_path.read_bytes()
    if len(data) < len(MAGIC) + _LENGTH.size + _CRC.size or not data.startswith(MAGIC[:6]):
        raise CorruptCheckpoint(f"{redo_path} is not a ServerTrack checkpoint")
    if data[:len(MAGIC)] != MAGIC:
        raise CorruptCheckpoint(f"{redo_path} was written by a newer ServerTrack (format {data[6:8].hex()})")
    body, (crc,) = memoryview(data)[:-_CRC.size], _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(body) != crc:
        raise CorruptCheckpoint(f"{redo_path} fails its checksum")
    (meta_length,) = _LENGTH.unpack_from(data, len(MAGIC))
    offset = len(MAGIC) + _LENGTH.size
    meta = msgpack.unpackb(body[offset:offset + meta_length])
    offset += meta_length
    if meta.get("version") != FORMAT_VERSION or meta.get("rows_per_block") != ROWS_PER_BLOCK:
        raise CorruptCheckpoint(f"{redo_path} has an unknown layout")
    used = int(meta["rows"])
    blocks = -(-used // ROWS_PER_BLOCK)

    def take(dtype: np.dtype[Any], count: int) -> np.ndarray:
        nonlocal offset
        size = dtype.itemsize * count
        if offset + size > len(body):
            raise CorruptCheckpoint(f"{redo_path} is shorter than its header says")
        array = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
        offset += size
        return array

    last_seen = take(np.dtype(np.float64), used)
    heads, flushed = {}, {}
    rings = aggregator.named_rings()
    if set(meta["rings"]) != set(rings):
        raise CorruptCheckpoint(f"{redo_path} has an unknown layout")
    for ring_name, ring_meta in meta["rings"].items():
        ring = rings[ring_name]
        if ring_meta["slot_count"] != ring.slots or ring_meta["arrays"] != {
                name: cells.dtype.str for name, cells in ring.named_cells().items()}:
            raise CorruptCheckpoint(f"{redo_path} has an unknown layout")
        heads[ring_name] = take(np.dtype(np.int64), used)
        flushed[ring_name] = take(np.dtype(np.int64), used)
        slots = np.array(ring_meta["slots"], dtype=np.int64)
        for cells_name, cells in ring.named_cells().items():
            _read_image(directory / f"{ring_name}.{cells_name}.cells", cells, blocks)
            stripe = take(cells.dtype, blocks * slots.size * ROWS_PER_BLOCK).reshape(blocks, slots.size, ROWS_PER_BLOCK)
            cells[:blocks, slots, :] = stripe
    aggregator.restore(meta["names"], last_seen, heads, flushed)
    _write_image_slots(directory, aggregator, meta)
    return CheckpointInfo(int(meta["log_segment"]), int(meta["next_chunk"]), float(meta["written_at"]), used)


def _write_stripes(directory: Path, changes: AggregatorChanges) -> int:
    """Write the changed slots into the image files (step 2 of a checkpoint)."""
    written = 0
    for ring_name, ring in changes.rings.items():
        for cells_name, stripe in ring.stripes.items():
            path = directory / f"{ring_name}.{cells_name}.cells"
            written += _pwrite_slots(path, stripe, ring.slots, ring.slot_count)
    return written


def _write_image_slots(directory: Path, aggregator: Aggregator, meta: dict[str, Any]) -> None:
    """Redo step 2 from the loaded state, so the image matches the checkpoint before anything new lands."""
    blocks = -(-int(meta["rows"]) // ROWS_PER_BLOCK)
    for ring_name, ring in aggregator.named_rings().items():
        slots = np.array(meta["rings"][ring_name]["slots"], dtype=np.int64)
        for cells_name, cells in ring.named_cells().items():
            _pwrite_slots(directory / f"{ring_name}.{cells_name}.cells", cells[:blocks, slots, :], slots, ring.slots)


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
    file leaves zeros (slots never written)."""
    if blocks == 0 or not path.exists():
        return
    target = cells[:blocks].reshape(-1).view(np.uint8).data
    with open(path, "rb", buffering=0) as image:
        filled = 0
        while filled < len(target):
            count = image.readinto(target[filled:])
            if not count:
                break
            filled += count


def _bytes(array: np.ndarray) -> memoryview:
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
