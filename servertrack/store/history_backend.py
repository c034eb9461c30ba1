"""The seam under ``DurableStore``: where the history goes (SQLite in the data directory, or Redis).

``DurableStore`` owns what every durable backend shares: the batch log and
the checkpoints (local recovery state), the worker threads and their byte
caps, the pending blocks, when retention and snapshots are due. What it
keeps for good it hands to a ``HistoryBackend``: closed minute and hour
blocks, node records, snapshot history, the agents' last seqs at a clean
stop. The backend's methods run on the store's worker thread (or before
serving) and let their I/O errors through (``worker.STORE_ERRORS``): the
worker counts, logs and retries them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .agent_seqs import AgentSeqs, take_agent_seqs, write_agent_seqs
from .history_codec import empty_cells
from .records import HistoryBlocks, SnapshotRecord, StoredCells
from .sqlite_store import SqliteStore


class HistoryReads(Protocol):
    """What one reading thread asks the kept history (each thread opens its own, ``HistoryBackend.reader``)."""

    def read_range(self, server: str, width: int, first_bucket: int, count: int) -> StoredCells | None:
        """Like ``read_cells``, or None when no block of ``server`` is kept (a backend may do both in one
        round trip)."""
        ...

    def read_snapshots(self, node: str, from_ts: int, to_ts: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` snapshot records of ``node`` taken in ``from_ts .. to_ts``, oldest first."""
        ...


class HistoryBackend(Protocol):
    """Where ``DurableStore`` keeps history; one writer, used by one thread at a time. ``purges``: whether
    ``purge`` and ``purge_snapshots`` have work to do (False: what is kept expires by itself)."""

    purges: bool

    def write_blocks(self, blocks: HistoryBlocks) -> None:
        """Keep ``blocks``: a base part replaces its block's parts, a delta part is added or replaced."""
        ...

    def drop_parts_after(self, chunk_id: int) -> int:
        """Delete the delta parts of chunks after ``chunk_id`` (a crash kept them from the log); how many."""
        ...

    def forget_parts_before(self, chunk_id: int) -> None:
        """Delta parts of chunks before ``chunk_id`` are in a committed checkpoint: ``drop_parts_after``
        will never ask for them (a backend may drop its index of them)."""
        ...

    def purge(self, width: int, before_period: int, limit: int = 10_000) -> int:
        """Delete at most ``limit`` blocks of periods before ``before_period``; how many went."""
        ...

    def purge_snapshots(self, before_ts: int, limit: int = 10_000) -> int:
        """Delete at most ``limit`` snapshots taken before ``before_ts``; how many went."""
        ...

    def save_nodes(self, records: Sequence[tuple[str, bytes | None]]) -> None:
        """Replace node records (bytes) or delete them (None), in order."""
        ...

    def write_snapshots(self, records: Sequence[SnapshotRecord]) -> None:
        """Keep snapshot records (one of a node at the same second is replaced)."""
        ...

    def load_nodes(self) -> list[tuple[str, bytes]]:
        """Every kept node record, by name."""
        ...

    def take_agent_seqs(self) -> AgentSeqs | None:
        """The agents' seqs the last clean stop kept (None if none), and removed: good for one start.
        ``ValueError`` if what is kept does not decode."""
        ...

    def keep_agent_seqs(self, seqs: AgentSeqs) -> None:
        """Keep the agents' last seqs for the next start (the last thing a clean stop writes)."""
        ...

    def reader(self) -> HistoryReads:
        """A reader for one thread."""
        ...

    def close(self) -> None:
        """Release the backend (readers close their own)."""
        ...


class SqliteHistory(SqliteStore):
    """``--store sqlite``'s backend: the SQLite file, and the agents' seqs in a file of the checkpoint
    directory (``agent_seqs``)."""

    purges = True

    def __init__(self, path: Path, seqs_path: Path) -> None:
        super().__init__(path)
        self.seqs_path = Path(seqs_path)

    def forget_parts_before(self, chunk_id: int) -> None:
        """Nothing to forget: the table's partial index of deltas finds them at once."""

    def take_agent_seqs(self) -> AgentSeqs | None:
        """See ``agent_seqs.take_agent_seqs``."""
        return take_agent_seqs(self.seqs_path)

    def keep_agent_seqs(self, seqs: AgentSeqs) -> None:
        """See ``agent_seqs.write_agent_seqs``."""
        write_agent_seqs(self.seqs_path, seqs)


def no_cells(first_bucket: int, width: int, count: int) -> StoredCells:
    """``count`` empty buckets from ``first_bucket``."""
    return StoredCells._make([first_bucket, width, *empty_cells(max(0, count))])
