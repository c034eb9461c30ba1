"""The cycle collector, kept off the request path.

A service holding 100,000 servers has a few hundred thousand long-lived
container objects (inventory entries, node records, caches). Python's
collector walks all of them in each full collection: a 20-50 ms pause, at a
moment set by allocations, which is where a range query's p99 went. After
start, the long-lived objects are frozen (``gc.freeze``: ignored by the
collector, still freed by reference counting); every ``RECOLLECT_SECONDS``
they are thawed, collected once in full and frozen again, so cycles that
form among them are still reclaimed, in one planned pause instead of many.
"""

from __future__ import annotations

import asyncio
import gc
import time

RECOLLECT_SECONDS = 600.0


def collect_and_freeze(collector: object = gc) -> float:
    """Collect everything once, then freeze what survived; return the seconds it took."""
    started = time.perf_counter()
    collector.unfreeze()  # type: ignore[attr-defined]
    collector.collect()  # type: ignore[attr-defined]
    collector.freeze()  # type: ignore[attr-defined]
    return time.perf_counter() - started


async def keep_collected(interval: float = RECOLLECT_SECONDS, collector: object = gc) -> None:
    """Collect and freeze every ``interval`` seconds, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        collect_and_freeze(collector)
