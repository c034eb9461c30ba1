"""The cycle collector, kept off the request path.

A service holding 100,000 servers has a few hundred thousand long-lived
container objects (inventory entries, node records, caches). Python's
collector walks all of them in each full collection: a 20-50 ms pause, at a
moment set by allocations, which is where a range query's p99 went. After
start, the long-lived objects are frozen (``gc.freeze``: ignored by the
collector, still freed by reference counting); every ``RECOLLECT_SECONDS``
they are thawed, collected once in full and frozen again, so cycles that
form among them are still reclaimed, in one planned pause instead of many.

Servers that arrive after start (the first fill of a fleet, or a wave of new
agents) add long-lived objects the start-up freeze did not see. While the
keeper runs, a full collection the collector starts by itself is followed
by a freeze (``FreezeAfterFull``): what survived it is long-lived by then,
so the next full collection walks only what arrived since, not the whole
fleet again.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

RECOLLECT_SECONDS = 600.0


def collect_and_freeze(collector: object = gc) -> float:
    """Collect everything once, then freeze what survived; return the seconds it took."""
    started = time.perf_counter()
    collector.unfreeze()  # type: ignore[attr-defined]
    collector.collect()  # type: ignore[attr-defined]
    collector.freeze()  # type: ignore[attr-defined]
    return time.perf_counter() - started


class FreezeAfterFull:
    """A ``gc.callbacks`` hook: freeze what survived each full (oldest-generation) collection."""

    OLDEST = 2

    def __init__(self, collector: object = gc) -> None:
        self.collector = collector
        self.freezes = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info.get("generation") == self.OLDEST:
            self.collector.freeze()  # type: ignore[attr-defined]
            self.freezes += 1


async def keep_collected(interval: float = RECOLLECT_SECONDS, collector: object = gc) -> None:
    """Collect and freeze every ``interval`` seconds, until cancelled; meanwhile freeze after every full
    collection (``FreezeAfterFull``, if ``collector`` takes callbacks)."""
    callbacks: list[Any] | None = getattr(collector, "callbacks", None)
    hook = FreezeAfterFull(collector)
    if callbacks is not None:
        callbacks.append(hook)
    try:
        while True:
            await asyncio.sleep(interval)
            collect_and_freeze(collector)
    finally:
        if callbacks is not None:
            callbacks.remove(hook)
