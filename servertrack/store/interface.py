"""The one store interface: everything above the store talks to these, never to a backend.

``Store`` is what the collector drives (from the event loop; a backend does
its I/O on its own threads and never blocks the caller). ``HistoryReader`` is
what the API reads ranges through: the live rings merged with what the store
keeps, answered off the loop.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from ..common.aggregator import Aggregator
from ..common.buckets import BucketWindow
from ..common.inventory import AgentInventory
from ..common.nodes import NodeRegistry
from ..common.periods import HistoryBlocks
from .records import LoggedBatch


class RangeAnswer(NamedTuple):
    """Buckets ``window.first_bucket ..`` of one server, the live rings merged with the store.

    ``kept_from`` is the epoch second where kept history of this width begins
    when the range reaches earlier than that (those buckets are empty), else None.
    """

    window: BucketWindow
    kept_from: int | None


class HistoryReader(Protocol):
    """Range reads for the API (awaited on the loop; the work runs elsewhere)."""

    async def loads(self, name: str, width: int, first_bucket: int, count: int) -> RangeAnswer | None:
        """Buckets of ``width`` seconds (60 or 3600) ``first_bucket .. first_bucket + count - 1`` of
        server ``name``, or None when neither the rings nor the store know the server."""
        ...

    async def node_sections(self, node: str, start: int, stop: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` snapshots of node ``node`` taken in whole seconds ``start .. stop``, oldest first,
        as ``(ts, {"cpu": {...}, "memory": {...}, "swap": ..., "disk_io": ..., "network": ...})``."""
        ...


class Store(Protocol):
    """What the collector drives. Called on the event loop; a backend does its I/O on its own threads.

    ``open`` and ``recover`` run once, before the service serves; then, per
    chunk of samples applied, ``new_chunk_id`` and ``log_chunk`` (when
    ``logs_chunks``) before it and ``write_history`` with the blocks it
    closed; ``after_apply`` once a second; ``close`` at the end (nothing
    queued is lost).
    """

    kind: str
    logs_chunks: bool

    def open(self) -> None:
        """Take the store (its lock, files or connection); ``ServerTrackError`` with one clear line if not."""
        ...

    def recover(self, aggregator: Aggregator, nodes: NodeRegistry, inventory: AgentInventory | None = None) -> object:
        """Load what the last run left into a fresh aggregator and registry (and, when the backend keeps
        them, the agents' last seqs into ``inventory``, so a restart's gap counts as lost); a report."""
        ...

    def new_chunk_id(self) -> int:
        """The id of the next chunk (increasing, also across restarts)."""
        ...

    def log_chunk(self, batch: LoggedBatch) -> None:
        """Keep a chunk, before it is applied, so a crash can apply it again."""
        ...

    def write_history(self, blocks: list[HistoryBlocks]) -> None:
        """Keep the blocks the rings closed."""
        ...

    async def after_apply(self, now: float) -> None:
        """Once a second, after a batch: node records, fsync, retention, snapshots, checkpoints as due."""
        ...

    async def close(self) -> None:
        """Write everything still queued and release the store."""
        ...

    def open_reader(self) -> Any:
        """A reader of the kept history for one thread, or None when nothing is kept."""
        ...

    def health(self) -> dict[str, Any]:
        """``{"store": "ok" | "failing" | "memory", ...counters}``."""
        ...
