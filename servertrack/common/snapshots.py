"""How the node registry keeps a node's latest stats snapshot, and what it may cost.

Only what was validated is kept: the cleaned stats are encoded again as
msgpack (never the frame's own bytes, which may repeat keys or carry data the
validator dropped), and compressed when large. Each node may hold at most
``NODE_SNAPSHOT_BUDGET`` stored bytes and all nodes together a total budget
(``SnapshotBudget``); a snapshot that would exceed either is refused whole,
and the node keeps the one it had.
"""

from __future__ import annotations

import zlib
from typing import Any, NamedTuple

import msgpack

# A typical snapshot (8-10 KiB) is kept as it is: compressing costs ~40 µs a
# snapshot, thousands a second. Larger ones (many CPUs, disks or processes)
# compress 3-5x, which is what keeps a node at its bounds inside the budget.
COMPRESS_ABOVE_BYTES = 12 * 1024
# With the node's other records (hello fields, IP index, seq, its load-window
# row) this keeps a node under 30 KB of RSS.
NODE_SNAPSHOT_BUDGET = 20 * 1024
DEFAULT_TOTAL_SNAPSHOT_BUDGET = 1024 * 1024 * 1024
_COMPRESSION_LEVEL = 1


class StoredSnapshot(NamedTuple):
    """A snapshot as the registry holds it: msgpack bytes, zlib-compressed if ``compressed``."""

    data: bytes
    compressed: bool

    @property
    def size(self) -> int:
        """Bytes it takes (what the budgets count)."""
        return len(self.data)


def pack_snapshot(stats: dict[str, Any]) -> StoredSnapshot:
    """Encode validated ``stats`` for keeping (compressed above ``COMPRESS_ABOVE_BYTES``)."""
    packed = msgpack.packb(stats)
    if len(packed) <= COMPRESS_ABOVE_BYTES:
        return StoredSnapshot(packed, False)
    return StoredSnapshot(zlib.compress(packed, _COMPRESSION_LEVEL), True)


def unpack_snapshot(stored: StoredSnapshot) -> dict[str, Any]:
    """The stats kept in ``stored``."""
    data = zlib.decompress(stored.data) if stored.compressed else stored.data
    stats: dict[str, Any] = msgpack.unpackb(data)
    return stats


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
