"""Whether HTTP work is waiting, so that bulk work on the same loop (ingest, batch apply) steps aside.

Requests and the bulk work share one event loop. A request that arrives while
the reader drains a flood, or while a batch is applied, waits for that turn to
end; with turns of a few milliseconds, that wait is the whole of a query's p99.
``HttpPressure`` lets the bulk work look, between two small steps, whether a
request is waiting: a connection (or the listening socket) has bytes that the
loop has not read yet, seen through an epoll set of its own (level-triggered,
polled with a zero timeout, ~1 µs), or a request is being answered (its
headers are read and its answer is not finished).

Pressure only shortens turns and adds yields, for a bounded time each
(``collector.turns``): a flood of requests, or a slow-loris client whose
trickle keeps a socket readable, cannot starve ingest.
"""

from __future__ import annotations

import contextlib
import select


class HttpPressure:
    """The HTTP server's sockets, watched for unread bytes, and a count of requests being answered."""

    __slots__ = ("_poller", "answering")

    def __init__(self) -> None:
        self._poller = select.epoll() if hasattr(select, "epoll") else None
        self.answering = 0

    def watch(self, fd: int) -> None:
        """Watch a listening or connected socket (a closed one leaves the set by itself)."""
        if self._poller is not None:
            with contextlib.suppress(OSError):  # already watched (a reused descriptor), or closed already
                self._poller.register(fd, select.EPOLLIN)

    def waiting(self) -> bool:
        """Whether a request is being answered or a watched socket has unread bytes."""
        if self.answering > 0:
            return True
        poller = self._poller
        return poller is not None and bool(poller.poll(0, 1))

    def close(self) -> None:
        """Release the epoll descriptor."""
        if self._poller is not None:
            self._poller.close()
            self._poller = None

