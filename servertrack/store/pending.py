"""Blocks handed to the store and not written yet, readable meanwhile.

A bucket that leaves a ring is answered from the store; while the store's
thread lags (the hour's blocks of a whole fleet, a full disk being retried)
the block is only in its queue. ``PendingBlocks`` keeps an index of those by
server, and a read takes the disk's cells and the pending blocks under one
lock that the writer also holds while it writes and forgets a block: a block
is seen exactly once, in the database or pending, never both or neither.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from ..common.periods import BASE_PART, BUCKETS_PER_PERIOD, HistoryBlocks
from .history_codec import BlockCells, merge
from .records import StoredCells


class PendingBlock(NamedTuple):
    """Entry ``position`` of ``blocks`` (one server's period)."""

    blocks: HistoryBlocks
    position: int


class PendingBlocks:
    """Not-yet-written blocks by (server, width), in the order they were queued."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._by_server: dict[tuple[str, int], list[PendingBlock]] = {}

    def __len__(self) -> int:
        return sum(len(entries) for entries in list(self._by_server.values()))

    def add(self, blocks: HistoryBlocks) -> None:
        """Index ``blocks`` (on the loop, before the write job is queued)."""
        by_server, width = self._by_server, blocks.width
        for index, name in enumerate(blocks.names):
            entries = by_server.get((name, width))
            if entries is None:
                by_server[name, width] = [PendingBlock(blocks, index)]
            else:
                entries.append(PendingBlock(blocks, index))

    def written(self, blocks: HistoryBlocks, write: Callable[[HistoryBlocks], None]) -> None:
        """Write ``blocks`` and forget them, both under the lock (on the store's thread)."""
        with self.lock:
            write(blocks)
            self.forget(blocks)

    def forget(self, blocks: HistoryBlocks) -> None:
        """Drop ``blocks`` from the index (written, or given up)."""
        by_server, width = self._by_server, blocks.width
        for name in set(blocks.names):
            entries = by_server.get((name, width))
            if entries is None:
                continue
            kept = [entry for entry in entries if entry.blocks is not blocks]
            if kept:
                by_server[name, width] = kept
            else:
                del by_server[name, width]

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the writer off while the disk is read and the pending blocks are taken."""
        with self.lock:
            yield

    def of(self, name: str, width: int) -> list[PendingBlock]:
        """The pending blocks of a server, oldest first (call within ``reading``)."""
        return list(self._by_server.get((name, width), ()))


def merge_pending(stored: StoredCells, pending: list[PendingBlock]) -> StoredCells:
    """``stored`` with the pending blocks applied in order, as writing them would: a base replaces its
    period's buckets, a delta is merged into them (``history_codec.merge``, as a read merges parts)."""
    width, first, count = stored.width, stored.first_bucket, stored.samples.size
    per_period = BUCKETS_PER_PERIOD[width]
    cells = BlockCells._make(np.array(column, copy=True) for column in stored[2:])
    for blocks, index in pending:  # (blocks, position)
        start = int(blocks.periods[index]) * per_period
        low, high = max(first, start), min(first + count, start + per_period)
        if low >= high:
            continue
        mine, theirs = slice(low - first, high - first), slice(low - start, high - start)
        block = BlockCells._make(column[index, theirs] for column in blocks[4:])
        if int(blocks.parts[index]) != BASE_PART:
            block = merge(BlockCells._make(column[mine] for column in cells), block)
        for column, values in zip(cells, block):
            column[mine] = values  # type: ignore[index]
    return StoredCells(first, width, *cells)
