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

import numpy as np

from ..common.fleet import FleetTable
from ..common.node_records import decode_node
from ..common.nodes import Node
from .fleet_directory import Directory, decode_directory

_log = logging.getLogger("servertrack.store")


class ForeignEntry(NamedTuple):
    """One server or node another collector holds."""

    collector: str
    last_seen: float
    is_node: bool


class FleetMirror:
    """The other collectors' directories, and the records of their nodes (see the module's docstring)."""

    def __init__(self) -> None:
        self.tables: dict[str, FleetTable] = {}  # by collector
        self.directories: dict[str, Directory] = {}
        self.shared_at: dict[str, float] = {}  # when each collector shared its directory last
        self.refreshes = 0
        self.refused = 0  # directories (and node records) that did not decode
        self.failures = 0  # refreshes the store could not answer
        self.version = 0  # counts the refreshes that changed something: what a view's cache keys on
        self._records: dict[str, tuple[float, Node]] = {}  # foreign nodes: (record time, node as recorded)
        self._by_ip: dict[str, list[str]] | None = None

    def take(self, directories: list[tuple[str, bytes]]) -> None:
        """Hold the directories just read (``(collector, blob)``), in place of the ones before."""
        self.hold(*decode_directories(directories))

    def hold(self, decoded: dict[str, Directory], problems: list[str]) -> None:
        """Hold directories ``decode_directories`` made, counting and logging what it left out."""
        for problem in problems:
            self.refused += 1
            _log.warning("fleet: %s", problem)
        self.refreshes += 1
        shared_at = {collector: directory.ts for collector, directory in decoded.items()}
        if shared_at != self.shared_at:
            self.version += 1
            self._by_ip = None
        self.directories, self.shared_at = decoded, shared_at
        self.tables = {collector: directory.table for collector, directory in decoded.items()}

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

    def records_wanted(self) -> list[str]:
        """The other collectors' nodes whose record this mirror has not read since it last changed."""
        records = self._records
        return [name for name, changed_at in self._record_times().items()
                if (held := records.get(name)) is None or held[0] != changed_at]

    def take_records(self, records: list[tuple[str, bytes | None]]) -> None:
        """Hold the node records just read (None: none kept); forget the nodes no directory has any more."""
        self.hold_records(*decode_records(records))

    def hold_records(self, nodes: list[tuple[str, Node]], problems: list[str]) -> None:
        """Hold node records ``decode_records`` made (by the name they were read under), counting and logging
        what it left out."""
        times = self._record_times()
        for problem in problems:
            self.refused += 1
            _log.warning("fleet: %s", problem)
        for name, node in nodes:
            self._records[name] = (times.get(name, 0.0), node)
        for gone in self._records.keys() - times.keys():
            del self._records[gone]
        self._by_ip = None

    def _record_times(self) -> dict[str, float]:
        times: dict[str, float] = {}
        for directory in self.directories.values():
            table = directory.table
            for index in np.flatnonzero(table.is_node).tolist():
                times[table.names[index]] = float(directory.record_at[index])
        return times

    def node(self, name_or_ip: str) -> Node | None:
        """Another collector's node by name or (one owner only) IP address, as of its last share: its
        record with the last seen of its directory entry; None if there is none (or several own the IP)."""
        held = self._records.get(name_or_ip)
        if held is None:
            if self._by_ip is None:
                self._by_ip = {}
                for name, (_, node) in self._records.items():
                    for address in node.ips:
                        self._by_ip.setdefault(address, []).append(name)
            owners = self._by_ip.get(name_or_ip, [])
            if len(owners) != 1:
                return None
            held = self._records[owners[0]]
        node = held[1]
        entry = self.entry(node.name)
        if entry is not None and entry.last_seen > node.last_seen:
            node.last_seen = entry.last_seen
        return node

    def nodes(self) -> list[Node]:
        """Every other collector's node this mirror holds a record of."""
        return [node for name in sorted(self._records) if (node := self.node(name)) is not None]

    def counters(self) -> dict[str, object]:
        """What ``/stats`` shows of the fleet: the collectors heard of, their entries, refreshes."""
        return {"collectors": {collector: {"entries": len(table.names), "shared_at": self.shared_at[collector]}
                               for collector, table in sorted(self.tables.items())},
                "foreign_nodes": len(self._records), "refreshes": self.refreshes,
                "refused": self.refused, "refresh_failures": self.failures}


def decode_directories(directories: list[tuple[str, bytes]]) -> tuple[dict[str, Directory], list[str]]:
    """The directories of ``(collector, blob)`` that decode, by collector, and a line for each that does
    not (pure: what a refresh does off the loop)."""
    decoded: dict[str, Directory] = {}
    problems: list[str] = []
    for collector, blob in directories:
        try:
            directory = decode_directory(blob)
        except ValueError as error:
            problems.append(f"the directory of collector {collector!r} is left out: {error}")
            continue
        decoded[directory.collector] = directory
    return decoded, problems


def decode_records(records: list[tuple[str, bytes | None]]) -> tuple[list[tuple[str, Node]], list[str]]:
    """The node records of ``(name, record or None)`` that decode, as ``(name, node)``, and a line for each
    that does not."""
    nodes: list[tuple[str, Node]] = []
    problems: list[str] = []
    for name, record in records:
        if record is None:
            continue
        try:
            nodes.append((name, decode_node(record)))
        except ValueError as error:
            problems.append(f"the record of node {name!r} is left out: {error}")
    return nodes, problems
