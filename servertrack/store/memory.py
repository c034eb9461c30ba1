"""``--store memory``: nothing on disk; the rings are all the history there is."""

from __future__ import annotations

from typing import Any

from ..common.aggregator import Aggregator
from ..common.inventory import AgentInventory
from ..common.nodes import NodeRegistry
from ..common.periods import HistoryBlocks
from .records import LoggedBatch


class MemoryStore:
    """The store interface with nothing behind it: a restart starts empty."""

    kind = "memory"
    logs_chunks = False

    def __init__(self) -> None:
        self._next_chunk = 1

    def open(self) -> None:
        """Nothing to open."""

    def recover(self, aggregator: Aggregator, nodes: NodeRegistry, inventory: AgentInventory | None = None) -> None:
        """Nothing to recover."""

    def new_chunk_id(self) -> int:
        """The id of the next chunk to apply."""
        chunk_id = self._next_chunk
        self._next_chunk += 1
        return chunk_id

    def log_chunk(self, batch: LoggedBatch) -> None:
        """Nothing is logged."""

    def write_history(self, blocks: list[HistoryBlocks]) -> None:
        """Nothing is kept (the aggregator does not close periods without a store)."""

    async def after_apply(self, now: float) -> None:
        """No duties."""

    async def close(self) -> None:
        """Nothing to close."""

    def open_reader(self) -> None:
        """No history to read."""
        return

    def health(self) -> dict[str, Any]:
        """The store's part of ``/healthz`` and ``/stats``."""
        return {"store": "memory", "backend": self.kind}
