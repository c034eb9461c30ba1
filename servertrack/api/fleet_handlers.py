"""``GET /fleet``: one page of every server and node, filtered, sorted and paged here (see ``common.fleet``).

The web dashboard's fleet view reads it every few seconds; so can a script.
Each entry carries its current load and a 60-minute sparkline (the minute
averages, null where a minute has no sample), so a page is drawn from one
request whatever the fleet's size. The table is the application's
``FleetView``: built at most once a second, shared by every request.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import numpy as np

from ..common.buckets import iso_utc
from ..common.errors import HistoryUnreadable
from ..common.fleet import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_TEXT,
    SORT_KEYS,
    FleetQuery,
    FleetTable,
    FleetView,
    fleet_page,
)
from ..common.nodes import NODE_STATES
from ..common.protocol import NameCache
from .handlers import ApiError, JsonHandler

_NAME_TEXT = re.compile(rf"[A-Za-z0-9._-]{{0,{MAX_TEXT}}}")  # what a server name may hold
_COUNT = re.compile(r"[0-9]{1,9}")
_LOAD = re.compile(r"[0-9]{1,3}(\.[0-9]{1,6})?")
ORDERS = ("asc", "desc")


class FleetHandler(JsonHandler):
    """``GET /fleet?q=&name=&state=&min_cpu=&min_ram=&sort=&order=&offset=&limit=``."""

    def initialize(self, view: FleetView, names: NameCache) -> None:
        self.view = view
        self.aggregator = view.aggregator
        self.names = names

    async def get(self) -> None:
        query = self.fleet_query()
        table = self.view.table()
        page = fleet_page(table, query)
        self._fleet_windows = await self.foreign_windows([table.names[index] for index in page.indexes.tolist()])
        self.write_json(200, {
            "now": iso_utc(self.view.clock()),
            "total": len(table.names),
            "matched": page.matched,
            "offset": query.offset,
            "limit": query.limit,
            "sort": query.sort,
            "order": "desc" if query.descending else "asc",
            "states": page.states,
            "rows": [self.row(table, index) for index in page.indexes.tolist()],
        })

    def single(self, name: str) -> str | None:
        """The query parameter ``name``, or None; a 400 if it is given more than once."""
        values = self.get_query_arguments(name, strip=False)
        if len(values) > 1:
            raise ApiError(400, f"{name}: give it once, got {len(values)} values")
        return values[0] if values else None

    def fleet_query(self) -> FleetQuery:
        """The request's parameters as a ``FleetQuery``, or a 400 naming the first one that is wrong."""
        text = self.single("q") or ""
        if _NAME_TEXT.fullmatch(text) is None:
            raise ApiError(400, f"q: a part of a server name, at most {MAX_TEXT} of A-Z a-z 0-9 . _ -")
        state = self.single("state") or None
        if state is not None and state not in NODE_STATES:
            raise ApiError(400, f"state must be one of {', '.join(NODE_STATES)}, got {state!r}")
        sort = self.single("sort") or "name"
        if sort not in SORT_KEYS:
            raise ApiError(400, f"sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}")
        order = self.single("order") or ("asc" if sort == "name" else "desc")
        if order not in ORDERS:
            raise ApiError(400, f"order must be asc or desc, got {order!r}")
        name = self.single("name")
        return FleetQuery(
            text=text.lower(), name=None if name is None else self.canonical_name(self.names, name), state=state, sort=sort, descending=order == "desc",
            min_cpu=self.load("min_cpu"), min_ram=self.load("min_ram"),
            offset=self.count("offset", 0, 0, MAX_OFFSET), limit=self.count("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        )

    def count(self, name: str, default: int, low: int, high: int) -> int:
        """An integer parameter from ``low`` to ``high``."""
        text = self.single(name)
        if text is None:
            return default
        if _COUNT.fullmatch(text) is None or not low <= int(text) <= high:
            raise ApiError(400, f"{name} must be an integer from {low} to {high}, got {text[:40]!r}")
        return int(text)

    def load(self, name: str) -> float | None:
        """A load threshold from 0 to 100 (percent), or None."""
        text = self.single(name)
        if text is None or text == "":
            return None
        if _LOAD.fullmatch(text) is None or float(text) > 100:
            raise ApiError(400, f"{name} must be a load from 0 to 100, got {text[:40]!r}")
        return float(text)

    def row(self, table: FleetTable, index: int) -> dict[str, Any]:
        """One entry of the page: what the table holds, and the server's 60-minute sparkline."""
        name = table.names[index]
        seen = float(table.last_seen[index])
        return {
            "name": name,
            "node": bool(table.is_node[index]),
            "state": NODE_STATES[int(table.states[index])],
            "last_seen": None if math.isnan(seen) else iso_utc(seen),
            "cpu": _load(float(table.cpu[index])),
            "ram": _load(float(table.ram[index])),
            "spark": self.sparkline(name),
        }

    async def foreign_windows(self, names: list[str]) -> dict[str, Any]:
        """For a collector of a fleet, the windows of the page's servers other collectors list (read from
        the store, concurrently; one the store cannot answer gets no sparkline)."""
        history: Any = self.application.settings.get("history")
        mirror = getattr(history, "mirror", None)
        if mirror is None:
            return {}
        foreign = [name for name in names if mirror.entry(name) is not None]
        answers = await asyncio.gather(*(history.windows(name) for name in foreign), return_exceptions=True)
        found = {}
        for name, answer in zip(foreign, answers):
            if isinstance(answer, HistoryUnreadable):
                continue
            if isinstance(answer, BaseException):
                raise answer
            found[name] = answer
        return found

    def sparkline(self, name: str) -> dict[str, Any] | None:
        """The minute averages of the last 60 minutes, oldest first (null: no sample), or None."""
        fleet_windows: dict[str, Any] = getattr(self, "_fleet_windows", {})
        windows = fleet_windows[name] if name in fleet_windows else self.aggregator.windows(name)
        if windows is None:
            return None
        minutes = windows.minutes
        samples = np.maximum(minutes.samples, 1)
        empty = minutes.samples == 0
        cpu = np.where(empty, np.nan, np.round(minutes.cpu_sum / samples, 1))
        ram = np.where(empty, np.nan, np.round(minutes.ram_sum / samples, 1))
        return {
            "start": iso_utc(minutes.first_bucket * minutes.width),
            "step": minutes.width,
            "cpu": [None if math.isnan(value) else value for value in cpu.tolist()],
            "ram": [None if math.isnan(value) else value for value in ram.tolist()],
        }


def _load(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)
