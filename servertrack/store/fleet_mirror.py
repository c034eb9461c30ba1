"""What this collector knows of the rest of its fleet: the other collectors' directories, read back.

Refreshed from the store every ``--share-every`` seconds off the loop
(``LoadHistory.refresh_fleet``); the loop reads the tables it holds. A
directory that does not decode is left out and counted; one whose collector
stopped sharing stays, so the servers of a collector that died stay listed
(their state turns offline with time, as their last-seen ages).
"""

from __future__ import annotations

import bisect
import logging
from typing import NamedTuple

from ..common.fleet import FleetTable
from .fleet_directory import decode_directory

_log = logging.getLogger("servertrack.store")


class ForeignEntry(NamedTuple):
    """One server or node another collector holds."""

    collector: str
    last_seen: float
    is_node: bool


class FleetMirror:
    """The other collectors' directories (see the module's docstring)."""

    def __init__(self) -> None:
        self.tables: dict[str, FleetTable] = {}  # by collector
        self.shared_at: dict[str, float] = {}  # when each collector shared its directory last
        self.refreshes = 0
        self.refused = 0  # directories that did not decode
        self.failures = 0  # refreshes the store could not answer
        self.version = 0  # counts the refreshes that changed something: what a view's cache keys on

    def take(self, directories: list[tuple[str, bytes]]) -> None:
        """Hold the directories just read (``(collector, blob)``), in place of the ones before."""
        tables: dict[str, FleetTable] = {}
        shared_at: dict[str, float] = {}
        for collector, blob in directories:
            try:
                named, ts, table = decode_directory(blob)
            except ValueError as error:
                self.refused += 1
                _log.warning("fleet: the directory of collector %r is left out: %s", collector, error)
                continue
            tables[named] = table
            shared_at[named] = ts
        self.refreshes += 1
        if shared_at != self.shared_at or tables.keys() != self.tables.keys():
            self.version += 1
        self.tables, self.shared_at = tables, shared_at

    def entry(self, name: str) -> ForeignEntry | None:
        """The newest entry of ``name`` in another collector's directory, or None."""
        found: ForeignEntry | None = None
        for collector, table in self.tables.items():
            at = bisect.bisect_left(table.names, name)
            if at < len(table.names) and table.names[at] == name:
                seen = float(table.last_seen[at])
                if found is None or not seen <= found.last_seen:
                    found = ForeignEntry(collector, seen, bool(table.is_node[at]))
        return found

    def counters(self) -> dict[str, object]:
        """What ``/stats`` shows of the fleet: the collectors heard of, their entries, refreshes."""
        return {"collectors": {collector: {"entries": len(table.names), "shared_at": self.shared_at[collector]}
                               for collector, table in sorted(self.tables.items())},
                "refreshes": self.refreshes, "refused_directories": self.refused,
                "refresh_failures": self.failures}

    def entries(self) -> int:
        """How many entries the other directories hold together."""
        return sum(len(table.names) for table in self.tables.values())

