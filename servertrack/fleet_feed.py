"""``servertrack top``'s data: one bounded page of the fleet read over the HTTP API, refreshed by a
background thread so the screen answers keys while a refresh is under way.

The API lists servers by name only (``GET /servers?limit=N``), so a refresh
reads the first ``limit`` servers by name and sorts *that page* by cpu: in
a fleet larger than the page the busiest server may not be in it (the
status line says so). Per server, ``GET /servers/NAME/seconds`` gives the
current cpu and ram (its newest second with samples) and
``GET /nodes/NAME`` its state (a 404: a server that only posts loads, no
state). A refresh thus costs ``2 * limit + 1`` requests, sent from a small
pool of threads; each waits at most ``timeout`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .client import ClientError, ServerTrackClient, node_path, server_seconds_path
from .common.text import escape_unprintable
from .fleet_top import FleetRow, FleetView

DEFAULT_LIMIT = 50
MAX_LIMIT = 1_000
FETCH_THREADS = 8
T = TypeVar("T")
R = TypeVar("R")


def map_in_threads(function: Callable[[T], R], items: Sequence[T], threads: int) -> list[R]:
    """``[function(item) for item in items]`` computed by up to ``threads`` daemon threads (a quitting
    process never waits for them, unlike a ``ThreadPoolExecutor``'s); the first exception is re-raised."""
    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    taken = iter(range(len(items)))
    lock = threading.Lock()

    def work() -> None:
        while not errors:
            with lock:
                index = next(taken, None)
            if index is None:
                return
            try:
                results[index] = function(items[index])
            except Exception as error:  # noqa: BLE001 - re-raised by the caller's thread
                errors.append(error)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(min(threads, len(items)))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return results


def _newest(seconds: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """``(cpu, ram)`` of the newest second with samples, or ``(None, None)``."""
    for bucket in reversed(seconds):
        if bucket.get("samples") and isinstance(bucket.get("cpu"), (int, float)):
            ram = bucket.get("ram")
            return float(bucket["cpu"]), float(ram) if isinstance(ram, (int, float)) else None
    return None, None


def _problem(error: ClientError) -> str:
    """What went wrong, for the status line (escaped again when shown)."""
    if error.status is None:
        return escape_unprintable(error.message)
    return f"HTTP {error.status}: {escape_unprintable(error.message)}"


class FleetFeed:
    """Reads one page of the fleet through ``client``: ``read()`` once, or ``start()`` a thread that
    refreshes every ``interval`` s (``latest()`` is its newest ``FleetView``) until ``stop()``."""

    def __init__(self, client: ServerTrackClient, limit: int = DEFAULT_LIMIT, interval: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.limit = limit
        self.interval = interval
        self._clock = clock
        self._view = FleetView(limit=limit)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None

    def _row(self, entry: dict[str, Any]) -> FleetRow:
        name = str(entry.get("server"))
        cpu = ram = None
        state = None
        try:
            seconds = self.client.call("GET", server_seconds_path(name))
            if isinstance(seconds, dict) and isinstance(seconds.get("seconds"), list):
                cpu, ram = _newest(seconds["seconds"])
        except ClientError as error:
            if error.status is None:
                raise
        try:
            node = self.client.call("GET", node_path(name))
            if isinstance(node, dict) and node.get("state") is not None:
                state = str(node["state"])
        except ClientError as error:
            if error.status is None:
                raise
        last_seen = entry.get("last_seen")
        return FleetRow(name, state, cpu, ram, None if last_seen is None else str(last_seen))

    def read(self) -> FleetView:
        """One refresh: the page of servers and each one's figures, or the last rows with the problem."""
        now = time.strftime("%H:%M:%S", time.gmtime(self._clock()))
        try:
            page = self.client.call("GET", f"/servers?limit={self.limit}")
            entries = page.get("servers") if isinstance(page, dict) else None
            if not isinstance(entries, list):
                raise ClientError(200, "GET /servers did not answer a list of servers")
            entries = [entry for entry in entries[:self.limit] if isinstance(entry, dict)]
            rows = tuple(map_in_threads(self._row, entries, FETCH_THREADS))
        except ClientError as error:
            with self._lock:
                last = self._view
            return FleetView(last.rows, last.more, _problem(error), last.fetched_at, self.limit)
        return FleetView(rows, page.get("next_after") is not None, None, now, self.limit)

    def latest(self) -> FleetView:
        """The newest view read (an empty one before the first refresh ends)."""
        with self._lock:
            return self._view

    def wait_changed(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a new view; True if one came (and clear the flag)."""
        changed = self._changed.wait(timeout)
        self._changed.clear()
        return changed

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                view = self.read()
            except Exception as error:  # noqa: BLE001 - a traceback must not land on the curses screen
                view = FleetView(self._view.rows, self._view.more, f"unexpected answer: {error!r}",
                                 self._view.fetched_at, self.limit)
            with self._lock:
                self._view = view
            self._changed.set()
            self._stopping.wait(self.interval)

    def start(self) -> None:
        """Refresh in a daemon thread (it never holds the process up when the screen quits)."""
        self._thread = threading.Thread(target=self._run, name="servertrack-top-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing; a refresh under way is not waited for (its requests time out by themselves)."""
        self._stopping.set()
