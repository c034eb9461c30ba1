"""Graceful shutdown: SIGINT and SIGTERM set an asyncio event instead of killing the process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[asyncio.Event]:
    """While inside, SIGINT/SIGTERM set ``stop``; the previous handlers come back on exit."""
    loop = asyncio.get_running_loop()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            # getsignal gives None for a handler not set from Python: leave the default then
            if handler is not None:
                signal.signal(signum, handler)
