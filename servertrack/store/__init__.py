"""The store: where ServerTrack's data outlives the process (see ``interface`` for the one interface)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .durable import DurableStore, Retention, StoreUnavailable, default_data_dir
from .history import LoadHistory
from .interface import HistoryReader, RangeAnswer, Store
from .memory import MemoryStore

STORE_KINDS = ("sqlite", "memory")

__all__ = ["DurableStore", "HistoryReader", "LoadHistory", "MemoryStore", "RangeAnswer", "Retention", "STORE_KINDS",
           "Store", "StoreUnavailable", "default_data_dir", "make_store"]


def make_store(kind: str, data_dir: str | None, retention: Retention, clock: Callable[[], float]) -> Store:
    """The store ``serve --store KIND`` runs on (no I/O until its ``open``)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return DurableStore(Path(data_dir) if data_dir else default_data_dir(), retention, clock)
    raise ValueError(f"unknown store {kind!r}: expected one of {', '.join(STORE_KINDS)}")
