"""The fleet view's table and pages against a naive model: every entry listed once, filters, sorts, pages."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.aggregator import Aggregator
from servertrack.common.fleet import (
    SORT_KEYS,
    STATE_CODES,
    FleetQuery,
    FleetTable,
    FleetView,
    fleet_page,
    fleet_table,
    server_states,
)
from servertrack.common.nodes import NODE_STATES, NodeRegistry, node_state, node_states
from tests.conftest import EPOCH, FakeClock

NAMES = st.text(alphabet="abcx-.", min_size=1, max_size=6)
LOAD = st.one_of(st.none(), st.floats(0, 100, allow_nan=False).map(lambda value: round(value, 2)))


@st.composite
def tables(draw: st.DrawFn) -> FleetTable:
    names = sorted(draw(st.sets(NAMES, max_size=30)))
    count = len(names)
    entries = draw(st.lists(st.tuples(st.booleans(), st.sampled_from(NODE_STATES), LOAD, LOAD,
                                      st.one_of(st.none(), st.floats(EPOCH - 1e5, EPOCH))),
                            min_size=count, max_size=count))

    def column(values: list[float | None]) -> np.ndarray:
        return np.array([math.nan if value is None else value for value in values], dtype=np.float64)

    return FleetTable(
        names=names,
        is_node=np.array([entry[0] for entry in entries], dtype=np.bool_),
        states=np.array([STATE_CODES[entry[1]] for entry in entries], dtype=np.int8),
        cpu=column([entry[2] for entry in entries]),
        ram=column([entry[3] for entry in entries]),
        last_seen=column([entry[4] for entry in entries]),
    )


queries = st.builds(
    FleetQuery,
    text=st.one_of(st.just(""), st.text(alphabet="abcx-.", min_size=1, max_size=2)),
    name=st.one_of(st.none(), NAMES),
    state=st.one_of(st.none(), st.sampled_from(NODE_STATES)),
    min_cpu=st.one_of(st.none(), st.floats(0, 100).map(lambda value: round(value, 1))),
    min_ram=st.one_of(st.none(), st.floats(0, 100).map(lambda value: round(value, 1))),
    sort=st.sampled_from(SORT_KEYS),
    descending=st.booleans(),
    offset=st.integers(0, 35),
    limit=st.integers(1, 40),
)


def reference_page(table: FleetTable, query: FleetQuery) -> tuple[list[str], int]:
    """The page by brute force: filter each entry, sort with None last and name as the tie-break."""
    entries = []
    for index, name in enumerate(table.names):
        state = NODE_STATES[int(table.states[index])]
        cpu, ram, seen = (float(column[index]) for column in (table.cpu, table.ram, table.last_seen))
        if query.name is not None and name != query.name:
            continue
        if query.text not in name or (query.state is not None and state != query.state):
            continue
        if query.min_cpu is not None and not cpu >= query.min_cpu:
            continue
        if query.min_ram is not None and not ram >= query.min_ram:
            continue
        value = {"name": None, "state": float(STATE_CODES[state]), "cpu": cpu, "ram": ram, "last_seen": seen}[query.sort]
        entries.append((name, value))
    if query.sort == "name":
        ordered = sorted(name for name, _ in entries)
        if query.descending:
            ordered.reverse()
    else:
        known = [(value, name) for name, value in entries if not math.isnan(value)]
        unknown = sorted(name for name, value in entries if math.isnan(value))
        # descending by value, ascending by name among equal values
        known.sort(key=lambda pair: ((-pair[0]) if query.descending else pair[0], pair[1]))
        ordered = [name for _, name in known] + unknown
    return ordered[query.offset:query.offset + query.limit], len(entries)


@settings(max_examples=150, deadline=None)
@given(tables(), queries)
def test_a_page_is_what_brute_force_gives(table: FleetTable, query: FleetQuery) -> None:
    page = fleet_page(table, query)
    expected, matched = reference_page(table, query)
    assert [table.names[index] for index in page.indexes.tolist()] == expected
    assert page.matched == matched
    assert page.states == {state: sum(1 for code in table.states.tolist() if NODE_STATES[code] == state)
                           for state in NODE_STATES}


def test_a_server_without_an_agent_is_judged_as_sampling_every_second() -> None:
    now = EPOCH
    seen = np.array([now, now - 3, now - 3.5, now - 300, now - 301, math.nan])
    assert [NODE_STATES[code] for code in server_states(seen, now, offline_after=300).tolist()] == [
        "online", "online", "stale", "stale", "offline", "offline"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(EPOCH)


def test_the_table_lists_every_server_and_every_node_once_in_name_order(clock: FakeClock) -> None:
    aggregator = Aggregator(100, clock=clock)
    nodes = NodeRegistry(100, clock)
    # web-2 reported over HTTP 10 s ago, web-3 1000 s ago; web-1 is an agent's node sampling now; hello-only
    # has no sample. A server's last seen is when its sample arrived.
    aggregator.apply(["web-3"], [clock.now - 1000], [1.0], [2.0], now=clock.now - 1000)
    aggregator.apply(["web-2"], [clock.now - 10], [20.0], [30.0], now=clock.now - 10)
    aggregator.apply(["web-1"], [clock.now - 0.5], [55.5], [66.0])
    nodes.hello("web-1", ["10.0.0.1"], {"interval": 1.0}, now=clock.now, paused=False)
    nodes.hello("hello-only", ["10.0.0.9"], {"interval": 1.0}, now=clock.now - 5, paused=True)
    nodes.hello("zz-node", ["10.0.0.8"], {"interval": 1.0}, now=clock.now, paused=False)
    table = fleet_table(aggregator, nodes, clock.now)
    assert table.names == ["hello-only", "web-1", "web-2", "web-3", "zz-node"]
    assert table.is_node.tolist() == [True, True, False, False, True]
    assert [NODE_STATES[code] for code in table.states.tolist()] == ["paused", "online", "stale", "offline",
                                                                      "online"]
    # current load: the newest second of the last 60; none for web-3 (silent 1000 s) nor for hello-only nodes
    assert table.cpu.tolist()[1:3] == [55.5, 20.0]
    assert table.ram.tolist()[1:3] == [66.0, 30.0]
    assert all(math.isnan(table.cpu[index]) for index in (0, 3, 4))
    assert table.last_seen.tolist()[:3] == [clock.now - 5, clock.now, clock.now - 10]


def test_a_node_that_says_bye_reads_offline_and_a_paused_one_paused(clock: FakeClock) -> None:
    aggregator = Aggregator(10, clock=clock)
    nodes = NodeRegistry(10, clock)
    for name in ("a", "b"):
        aggregator.apply([name], [clock.now], [10.0], [10.0])
        nodes.hello(name, [], {"interval": 1.0}, now=clock.now, paused=name == "b")  # b's agent says it is paused
    nodes.bye("a", clock.now)
    table = fleet_table(aggregator, nodes, clock.now)
    assert [NODE_STATES[code] for code in table.states.tolist()] == ["offline", "paused"]


def test_the_table_follows_servers_added_and_evicted(clock: FakeClock) -> None:
    aggregator = Aggregator(10, clock=clock)
    nodes = NodeRegistry(10, clock)
    aggregator.apply(["b"], [clock.now], [1.0], [1.0])
    assert fleet_table(aggregator, nodes, clock.now).names == ["b"]
    aggregator.apply(["a", "c"], [clock.now, clock.now], [2.0, 3.0], [2.0, 3.0])
    table = fleet_table(aggregator, nodes, clock.now)
    assert table.names == ["a", "b", "c"] and table.cpu.tolist() == [2.0, 1.0, 3.0]
    clock.advance(2 * 86_400)
    aggregator.apply(["c"], [clock.now], [4.0], [4.0])
    aggregator.evict_silent()
    table = fleet_table(aggregator, nodes, clock.now)
    assert table.names == ["c"] and table.cpu.tolist() == [4.0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1000), st.sampled_from([0.5, 1.0, 10.0, 60.0]), st.booleans(), st.booleans()),
                min_size=1, max_size=20),
       st.sampled_from([5.0, 300.0]))
def test_node_states_at_once_are_node_state_one_by_one(nodes: list[tuple[float, float, bool, bool]],
                                                       offline_after: float) -> None:
    now = EPOCH
    columns = [np.array(column) for column in zip(*nodes)]
    codes = node_states(now - columns[0], columns[1].astype(np.float64), columns[2].astype(np.bool_),
                        columns[3].astype(np.bool_), now, offline_after)
    assert [NODE_STATES[code] for code in codes.tolist()] == [
        node_state(now - silence, interval, bye, now, offline_after, paused)
        for silence, interval, bye, paused in nodes]


def test_the_view_builds_its_table_once_a_second_and_after_every_batch(clock: FakeClock) -> None:
    aggregator = Aggregator(10, clock=clock)
    view = FleetView(aggregator, NodeRegistry(10, clock), clock)
    aggregator.apply(["a"], [clock.now], [1.0], [1.0])
    assert view.table().names == ["a"] and view.table().names == ["a"] and view.builds == 1
    aggregator.apply(["b"], [clock.now], [1.0], [1.0])
    assert view.table().names == ["a", "b"] and view.builds == 2
    clock.advance(1)
    assert view.table().states.tolist() == [0, 0] and view.builds == 3
