"""The agents' last seqs at a clean stop: what lets a restarted collector count what it missed.

PUB/SUB drops what agents send while the collector is down; every message
carries the agent's ``seq``, so the gap is known the moment the first
message after the restart arrives, if the collector still knows the seq
before it. ``serve`` writes every agent's last seq and its loss so far
(``AgentInventory.export_seqs``) into ``checkpoint/agent_seqs`` when it
stops cleanly (after the last batch is applied), and the next start takes
them back and *removes the file*: after a crash there is no file (the seqs
of the last checkpoint would be older than what the log replays, and the
gap would count samples the windows hold), so a crash's gap is not counted.

Format: ``MAGIC``, a msgpack map ``{"v", "names", "seq", "lost"}`` (the
arrays as little-endian uint64 bytes), a CRC-32 of everything before it.
Written to a temporary file, fsynced and renamed into place.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import msgpack
import numpy as np

FILE_NAME = "agent_seqs"
MAGIC = b"STSEQS\x00\x01"
_CRC = struct.Struct("<I")
_U64 = np.dtype("<u8")


class AgentSeqs(NamedTuple):
    """Agents (names), their last seqs and their losses so far, index by index."""

    names: list[str]
    seqs: np.ndarray
    lost: np.ndarray


def encode_agent_seqs(seqs: AgentSeqs) -> bytes:
    """``seqs`` in the format above (what the file, or the Redis store's key, holds)."""
    body = MAGIC + msgpack.packb({"v": 1, "names": seqs.names,
                                  "seq": np.asarray(seqs.seqs, dtype=_U64).tobytes(),
                                  "lost": np.asarray(seqs.lost, dtype=_U64).tobytes()})
    return body + _CRC.pack(zlib.crc32(body))


def write_agent_seqs(path: Path, seqs: AgentSeqs) -> int:
    """Write ``seqs`` to ``path`` (atomically: temporary file, fsync, rename); return the bytes written."""
    data = encode_agent_seqs(seqs)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    return len(data)


def take_agent_seqs(path: Path) -> AgentSeqs | None:
    """The seqs at ``path`` (None if there is none), and the file removed: they are good for one start
    only. ``ValueError`` if the file is not one ``write_agent_seqs`` wrote (it is removed all the same)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    path.unlink()
    return decode_agent_seqs(data, str(path))


def decode_agent_seqs(data: bytes, where: str) -> AgentSeqs:
    """What ``encode_agent_seqs`` wrote; ``ValueError`` naming ``where`` for anything else."""
    body, crc = data[:-_CRC.size], data[-_CRC.size:]
    if not body.startswith(MAGIC) or len(crc) != _CRC.size or _CRC.unpack(crc)[0] != zlib.crc32(body):
        raise ValueError(f"{where} is not an agent seq file, or is damaged")
    try:
        fields = msgpack.unpackb(body[len(MAGIC):])
        names, seq, lost = fields["names"], fields["seq"], fields["lost"]
        seqs = np.frombuffer(seq, dtype=_U64)
        losses = np.frombuffer(lost, dtype=_U64)
    except (ValueError, KeyError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
        raise ValueError(f"{where} does not decode: {error}") from None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names) \
            or not len(names) == seqs.size == losses.size:
        raise ValueError(f"{where} has fields of the wrong shape")
    return AgentSeqs(names, seqs, losses)
