"""Bulk work on the service's loop (ingest turns, apply chunks) stepping aside for waiting requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# While HTTP work waits, bulk work keeps yielding for at most this long at a
# time: requests go first, and ingest and apply still get a turn every few
# milliseconds whatever clients do (a receive queue holds 2.5 s of samples).
YIELD_SECONDS = 0.003


def nothing_waits() -> bool:
    """The ``http_waiting`` of bulk work alone on its loop: nothing ever waits."""
    return False


async def give_way(http_waiting: Callable[[], bool], timer: Callable[[], float]) -> None:
    """Yield to the loop while ``http_waiting()``, for at most ``YIELD_SECONDS`` of ``timer``."""
    if not http_waiting():
        return
    deadline = timer() + YIELD_SECONDS
    while True:
        await asyncio.sleep(0)
        if not http_waiting() or timer() >= deadline:
            return
