"""``servertrack top``'s data: one bounded page of the fleet read over the HTTP API, refreshed by a
background thread so the screen answers keys while a refresh is under way.

A refresh is one ``GET /fleet?sort=KEY&limit=N`` (see ``api.fleet_handlers``): the service sorts the whole
fleet (cpu or ram highest first, or by name) and answers its first ``N`` rows with their state, current
cpu and ram (the newest second with samples) and last seen, so the busiest servers are shown whatever the
fleet's size. Changing the sort key refreshes at once. Each request waits at most ``timeout`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from .client import ClientError, ServerTrackClient
from .common.fleet import MAX_LIMIT
from .common.text import escape_unprintable
from .fleet_top import SORT_KEYS, FleetRow, FleetView

DEFAULT_LIMIT = 50


def _load(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


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
        self.sort_key = "cpu"
        self._view = FleetView(limit=limit)
        self._wake = threading.Event()  # a new sort key: refresh now
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None

    def set_sort(self, key: str) -> None:
        """Sort by ``key`` (one of ``SORT_KEYS``) from the next refresh on, which starts at once."""
        if key not in SORT_KEYS:
            raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}, got {key!r}")
        self.sort_key = key
        self._wake.set()

    def read(self) -> FleetView:
        """One refresh: the first page of the fleet by the sort key, or the last rows with the problem."""
        now = time.strftime("%H:%M:%S", time.gmtime(self._clock()))
        key = self.sort_key
        query = urlencode({"sort": key, "order": "asc" if key == "name" else "desc", "limit": self.limit})
        try:
            page = self.client.call("GET", f"/fleet?{query}")
            entries = page.get("rows") if isinstance(page, dict) else None
            if not isinstance(entries, list):
                raise ClientError(200, "GET /fleet did not answer a page of rows")
            rows = tuple(FleetRow(str(entry.get("name")), _text(entry.get("state")), _load(entry.get("cpu")),
                                  _load(entry.get("ram")), _text(entry.get("last_seen")))
                         for entry in entries[:self.limit] if isinstance(entry, dict))
            matched = page.get("matched")
            total = matched if isinstance(matched, int) and not isinstance(matched, bool) else len(rows)
        except ClientError as error:
            with self._lock:
                last = self._view
            return FleetView(last.rows, last.more, _problem(error), last.fetched_at, self.limit, last.total,
                             last.sorted_by)
        return FleetView(rows, total > len(rows), None, now, self.limit, total, key)

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
                                 self._view.fetched_at, self.limit, self._view.total, self._view.sorted_by)
            with self._lock:
                self._view = view
            self._changed.set()
            self._wake.wait(self.interval)
            self._wake.clear()

    def start(self) -> None:
        """Refresh in a daemon thread (it never holds the process up when the screen quits)."""
        self._thread = threading.Thread(target=self._run, name="servertrack-top-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing; a refresh under way is not waited for (its requests time out by themselves)."""
        self._stopping.set()
        self._wake.set()
