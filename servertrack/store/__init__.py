"""The store: where ServerTrack's data outlives the process (see ``interface`` for the one interface)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .durable import DurableStore, Retention, StoreUnavailable, default_data_dir
from .history import LoadHistory
from .interface import HistoryReader, RangeAnswer, Store
from .memory import MemoryStore
from .store_url import RedisTarget, parse_store

STORE_KINDS = ("sqlite", "memory", "redis", "redis+cluster")

__all__ = [
    "STORE_KINDS",
    "DurableStore",
    "HistoryReader",
    "LoadHistory",
    "MemoryStore",
    "RangeAnswer",
    "RedisTarget",
    "Retention",
    "Store",
    "StoreUnavailable",
    "default_data_dir",
    "make_store",
    "parse_store",
]


def make_store(kind: str, data_dir: str | None, retention: Retention, clock: Callable[[], float],
               password: str | None = None, ca_file: str | None = None, collector: str | None = None,
               share_every: float | None = 1.0) -> Store:
    """The store ``serve --store KIND`` runs on (no I/O until its ``open``): ``memory``, ``sqlite``, or a
    ``redis://``/``redis+cluster://`` URL (``store_url``; ``password`` and ``ca_file`` are for those), whose
    local recovery state stays in ``data_dir`` (``redis_store``). Every ``serve`` on one Redis store is a
    collector of one fleet: ``collector`` names this one (default: made and kept in ``data_dir``), and it
    shares its live state every ``share_every`` seconds (``fleet_directory``). ``ValueError`` for anything else."""
    target = parse_store(kind)
    if target == "memory":
        return MemoryStore()
    directory = Path(data_dir) if data_dir else default_data_dir()
    if target == "sqlite":
        return DurableStore(directory, retention, clock)
    assert isinstance(target, RedisTarget)
    redis_target = target

    def open_history(collector_id: str) -> Any:
        from .redis_store import open_redis_history

        return open_redis_history(redis_target, password, ca_file, {60: retention.minutes, 3600: retention.hours},
                                  retention.snapshots, clock, collector_id)

    return DurableStore(directory, retention, clock, open_history=open_history, kind=target.kind,
                        description=target.describe(), collector=collector, share_every=share_every)
