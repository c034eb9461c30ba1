"""Ingest counters of the monitoring service, shown by ``GET /stats``."""

from __future__ import annotations

from collections import Counter
from typing import Any


class IngestStats:
    """Counts of samples received, applied and dropped (by reason), and the last batch's cost."""

    __slots__ = ("received", "applied", "dropped", "last_batch_seconds", "last_batch_size")

    def __init__(self) -> None:
        self.received = 0
        self.applied = 0
        self.dropped: Counter[str] = Counter()
        self.last_batch_seconds = 0.0
        self.last_batch_size = 0

    def snapshot(self, lost: int, servers: int, pending: int, nodes: int = 0) -> dict[str, Any]:
        """The counters as the JSON object ``GET /stats`` returns."""
        return {
            "received": self.received,
            "applied": self.applied,
            "dropped": dict(sorted(self.dropped.items())),
            "lost": lost,
            "servers": servers,
            "nodes": nodes,
            "pending": pending,
            "last_batch_seconds": round(self.last_batch_seconds, 6),
            "last_batch_size": self.last_batch_size,
        }
