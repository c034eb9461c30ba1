"""Which asyncio event loop ``serve`` runs on: uvloop when it is installed (the ``fast`` extra), else the stdlib's.

``auto`` takes uvloop if it imports and the standard loop otherwise;
``uvloop`` insists (an error if it is missing); ``asyncio`` never uses it.
Tornado and pyzmq's asyncio sockets run on either. The default is asyncio:
at 100,000 samples/s into a real service (sqlite store, 3 interleaved runs
each) the service used 65.3 / 76.6 / 62.0 % of a core on asyncio and
73.6 / 61.5 / 57.9 % on uvloop, medians 65.3 and 61.5: within this
machine's noise, so not worth a dependency by default.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .common.errors import ServerTrackError

EVENT_LOOPS = ("auto", "uvloop", "asyncio")
T = TypeVar("T")


class EventLoopUnavailable(ServerTrackError):
    """``--event-loop uvloop`` asked for, and uvloop is not installed."""


def loop_factory(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The loop ``choice`` resolves to here, as (name, factory); a None factory is asyncio's default."""
    if choice not in EVENT_LOOPS:
        raise ValueError(f"unknown event loop {choice!r}: expected one of {', '.join(EVENT_LOOPS)}")
    if choice == "asyncio":
        return "asyncio", None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise EventLoopUnavailable("--event-loop uvloop: uvloop is not installed "
                                       "(pip install 'servertrack[fast]', or --event-loop asyncio)") from None
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """Run ``main`` to completion on the loop ``choice`` resolves to (as ``asyncio.run`` does)."""
    _, factory = loop_factory(choice)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
