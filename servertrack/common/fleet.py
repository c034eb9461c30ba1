"""The fleet view: every server and node in one table, filtered, sorted and paged on the server side.

A dashboard showing 100,000 servers cannot fetch them all every few seconds,
so the table is cut down here and only one page leaves the process. The
table is columns (numpy arrays plus the name list), one entry per server or
node, built in name order: every other sort is a stable argsort, so ties keep
name order and a page is the same from one refresh to the next.

State: a node's is its registry's (``nodes.node_state``, paused included); a
server that no agent reports (its loads come over HTTP) is judged by the same
rule from its last sample, as if it sampled every second.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .aggregator import Aggregator
from .nodes import (
    DEFAULT_INTERVAL,
    NODE_STATES,
    OFFLINE,
    ONLINE,
    PAUSED,
    STALE,
    STALE_AFTER_INTERVALS,
    NodeRegistry,
)

SORT_KEYS = ("name", "state", "cpu", "ram", "last_seen")
STATE_CODES = {state: code for code, state in enumerate(NODE_STATES)}  # online, paused, stale, offline
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_OFFSET = 10_000_000
MAX_TEXT = 253  # a server name's longest


@dataclass(frozen=True)
class FleetQuery:
    """What one page of the fleet view asks for.

    ``text``: a name contains it (lower case, as names are); ``name``: the name is exactly
    this (one entry or none: a server's own view asks so); ``state``: one of
    ``NODE_STATES``; ``min_cpu`` / ``min_ram``: current load at least this
    (servers with no current load are left out); ``sort``: one of ``SORT_KEYS``,
    ``descending`` to reverse it (entries without a value sort last either
    way); ``offset`` and ``limit`` cut the page.
    """

    text: str = ""
    name: str | None = None
    state: str | None = None
    min_cpu: float | None = None
    min_ram: float | None = None
    sort: str = "name"
    descending: bool = False
    offset: int = 0
    limit: int = DEFAULT_LIMIT


class FleetTable(NamedTuple):
    """Every server and node, one entry each, in name order."""

    names: list[str]
    is_node: npt.NDArray[np.bool_]
    states: npt.NDArray[np.int8]  # STATE_CODES
    last_seen: npt.NDArray[np.float64]  # NaN: never (a node known only from a hello has a time)
    cpu: npt.NDArray[np.float64]  # NaN: no current load
    ram: npt.NDArray[np.float64]
    served: npt.NDArray[np.bool_] | None = None  # a server with loads (not a node known only from a hello); None: all


class FleetPage(NamedTuple):
    """One page: the entries shown (indexes into the table), how many matched the query, and how many
    entries the whole fleet has in each state."""

    indexes: npt.NDArray[np.int64]
    matched: int
    states: dict[str, int]


def server_states(last_seen: npt.NDArray[np.float64], now: float, offline_after: float) -> npt.NDArray[np.int8]:
    """The state codes of servers no agent reports, from their last sample: ``node_state``'s rule for a
    node sampling every second (online within 3 s, offline after ``offline_after`` s, stale between)."""
    silence = now - last_seen
    states = np.full(last_seen.shape, STATE_CODES[STALE], dtype=np.int8)
    states[silence <= STALE_AFTER_INTERVALS * DEFAULT_INTERVAL] = STATE_CODES[ONLINE]
    states[~(silence <= offline_after)] = STATE_CODES[OFFLINE]  # NaN (never seen) is offline too
    return states


def fleet_table(aggregator: Aggregator, nodes: NodeRegistry, now: float) -> FleetTable:
    """The table of every server the aggregator holds and every node the registry holds, as of ``now``.

    A node is usually a server too (its agent's samples): its entry takes the registry's state. A node
    known only from a hello or a snapshot gets an entry with no load.
    """
    columns = aggregator.fleet_columns()
    names = columns.names
    states = server_states(columns.last_seen, now, nodes.offline_after)
    is_node = np.zeros(len(names), dtype=np.bool_)
    last_seen, cpu, ram = columns.last_seen, columns.cpu, columns.ram
    node_names, node_seen, node_codes = nodes.state_columns(now)
    if node_names:
        rows = aggregator.rows_of(node_names)
        served = rows >= 0
        at = columns.positions[rows[served]]
        is_node[at] = True
        states[at] = node_codes[served]
        last_seen[at] = np.maximum(last_seen[at], node_seen[served])
        if not served.all():
            names, is_node, states, last_seen, cpu, ram, with_loads = _with_unserved(
                names, is_node, states, last_seen, cpu, ram,
                [(node_names[index], int(node_codes[index]), float(node_seen[index]))
                 for index in np.flatnonzero(~served).tolist()])
            return FleetTable(names, is_node, states, last_seen, cpu, ram, with_loads)
    return FleetTable(names, is_node, states, last_seen, cpu, ram, np.ones(len(names), dtype=np.bool_))


def with_foreign(own: FleetTable, foreign: list[FleetTable], now: float, offline_after: float) -> FleetTable:
    """``own`` with the other collectors' tables (``store.fleet_mirror``) merged in, in name order; a name in
    several keeps the entry seen last. A foreign entry's state is judged again as of ``now`` from its last
    seen (a paused node stays paused until it is offline)."""
    tables = [own] + [table for table in foreign if table.names]
    if len(tables) == 1:
        return own
    adjusted = [own]
    for table in tables[1:]:
        states = server_states(table.last_seen, now, offline_after)
        paused = (table.states == STATE_CODES[PAUSED]) & (states != STATE_CODES[OFFLINE])
        states[paused] = STATE_CODES[PAUSED]
        adjusted.append(table._replace(states=states))
    names = [name for table in adjusted for name in table.names]
    columns = [np.concatenate([getattr(table, field) for table in adjusted])
               for field in ("is_node", "states", "last_seen", "cpu", "ram")]
    served = np.concatenate([table.served if table.served is not None else np.ones(len(table.names), np.bool_)
                             for table in adjusted])
    seen = np.nan_to_num(columns[2], nan=-np.inf)
    order = sorted(range(len(names)), key=lambda index: (names[index], -seen[index]))
    keep = [index for position, index in enumerate(order)
            if position == 0 or names[index] != names[order[position - 1]]]
    picked = np.array(keep, dtype=np.int64)
    is_node, states, last_seen, cpu, ram = (column[picked] for column in columns)
    return FleetTable([names[index] for index in keep], is_node, states, last_seen, cpu, ram, served[picked])


def fleet_servers(table: FleetTable, limit: int, after: str | None = None) -> list[tuple[str, float]]:
    """Up to ``limit`` servers of ``table`` (entries with loads) in name order after ``after``, as
    ``(name, last_seen)``: ``GET /servers`` for a fleet."""
    at = 0 if after is None else bisect.bisect_right(table.names, after)
    served = table.served
    page: list[tuple[str, float]] = []
    for index in range(at, len(table.names)):
        if served is None or served[index]:
            page.append((table.names[index], float(table.last_seen[index])))
            if len(page) == limit:
                break
    return page


class FleetView:
    """The fleet table, built at most once a second and again whenever the aggregator changes (a batch
    applied): every page, filter and viewer of that second reads the same table. A node's own change (a
    hello saying it is paused) shows within a second."""

    def __init__(self, aggregator: Aggregator, nodes: NodeRegistry, clock: Callable[[], float],
                 mirror: Any = None) -> None:
        """``mirror``: the other collectors' directories (``store.fleet_mirror.FleetMirror``), for a fleet."""
        self.aggregator = aggregator
        self.nodes = nodes
        self.clock = clock
        self.mirror = mirror
        self._key: tuple[int, int, int] | None = None
        self._table: FleetTable | None = None
        self.builds = 0

    def table(self) -> FleetTable:
        """The table as of this second."""
        now = self.clock()
        key = (int(now // 1), self.aggregator.changes, self.mirror.version if self.mirror is not None else 0)
        if self._table is None or key != self._key:
            self._table = fleet_table(self.aggregator, self.nodes, now)
            if self.mirror is not None:
                self._table = with_foreign(self._table, list(self.mirror.tables.values()), now,
                                           self.nodes.offline_after)
            self._key = key
            self.builds += 1
        return self._table


def _with_unserved(names: list[str], is_node: npt.NDArray[np.bool_], states: npt.NDArray[np.int8],
                   last_seen: npt.NDArray[np.float64], cpu: npt.NDArray[np.float64], ram: npt.NDArray[np.float64],
                   extra: list[tuple[str, int, float]]) -> tuple[Any, ...]:
    """The columns with the nodes that are no server (``(name, state, last seen)``) inserted in name order."""
    extra.sort()
    at = [bisect.bisect_left(names, name) for name, _, _ in extra]
    names = sorted(names + [name for name, _, _ in extra])  # two sorted runs: merged in one pass
    return (names, np.insert(is_node, at, True), np.insert(states, at, [code for _, code, _ in extra]),
            np.insert(last_seen, at, [seen for _, _, seen in extra]), np.insert(cpu, at, np.nan),
            np.insert(ram, at, np.nan), np.insert(np.ones(len(is_node), dtype=np.bool_), at, False))


def fleet_page(table: FleetTable, query: FleetQuery) -> FleetPage:
    """The page of ``table`` that ``query`` asks for."""
    counts = np.bincount(table.states, minlength=len(NODE_STATES))
    states = {state: int(counts[code]) for state, code in STATE_CODES.items()}
    chosen = _matching(table, query)
    matched = int(chosen.size)
    if query.sort != "name":
        chosen = chosen[_order(_sort_values(table, query.sort)[chosen], query.descending)]
    elif query.descending:
        chosen = chosen[::-1]
    return FleetPage(chosen[query.offset:query.offset + query.limit], matched, states)


def _matching(table: FleetTable, query: FleetQuery) -> npt.NDArray[np.int64]:
    """Indexes of the entries the query's filters keep, in name order."""
    keep = np.ones(len(table.names), dtype=np.bool_)
    if query.state is not None:
        keep &= table.states == STATE_CODES[query.state]
    # NaN compares false: an entry with no current load is left out by a load filter
    if query.min_cpu is not None:
        keep &= table.cpu >= query.min_cpu
    if query.min_ram is not None:
        keep &= table.ram >= query.min_ram
    if query.name is not None:
        at = bisect.bisect_left(table.names, query.name)
        found = (at < len(table.names) and table.names[at] == query.name and bool(keep[at])
                 and query.text in query.name)
        return np.array([at] if found else [], dtype=np.int64)
    if query.text:
        text = query.text
        names = table.names
        candidates = np.flatnonzero(keep).tolist() if not keep.all() else range(len(names))
        return np.fromiter((index for index in candidates if text in names[index]), dtype=np.int64)
    return np.flatnonzero(keep)


def _sort_values(table: FleetTable, key: str) -> npt.NDArray[np.float64]:
    if key == "state":
        return table.states.astype(np.float64)
    values: npt.NDArray[np.float64] = getattr(table, key)
    return values


def _order(values: npt.NDArray[np.float64], descending: bool) -> npt.NDArray[np.int64]:
    """A stable order of ``values`` (ties keep their order), NaN last whichever the direction."""
    keyed = -values if descending else values
    # argsort puts NaN last already; stability keeps name order among equal values
    return np.argsort(keyed, kind="stable")
