"""Node registry: registration, liveness computed from the clock, IP addressing, bounds."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servertrack.common.nodes import (
    FORGET_AFTER_SECONDS,
    OFFLINE,
    ONLINE,
    STALE,
    AmbiguousAddress,
    NodeRefused,
    NodeRegistry,
    UnknownNode,
    node_state,
)
from servertrack.common.snapshots import SnapshotBudget
from tests.conftest import FakeClock

INFO = {"hostname": "h", "boot_time": 1.0, "os": "Linux", "platform": "x86_64", "cpu_count": 2,
        "memory_total": 1, "agent_version": "0.1.0", "interval": 2.0}


@given(
    interval=st.floats(0.01, 3600),
    offline_after=st.floats(1, 10_000),
    silence=st.floats(0, 20_000),
    said_bye=st.booleans(),
)
def test_state_follows_the_definition(interval: float, offline_after: float, silence: float, said_bye: bool) -> None:
    now = 1_000_000.0 + silence
    state = node_state(1_000_000.0, interval, said_bye, now, offline_after)
    silence = now - 1_000_000.0  # the silence the clock can express
    if said_bye or silence > offline_after:
        assert state == OFFLINE
    elif silence <= 3 * interval:
        assert state == ONLINE
    else:
        assert state == STALE


@given(steps=st.lists(st.tuples(st.sampled_from(["wait", "sample", "bye", "hello"]), st.floats(0, 400)),
                      max_size=30))
def test_registry_states_match_a_model_as_time_passes(steps: list[tuple[str, float]]) -> None:
    clock = FakeClock()
    registry = NodeRegistry(10, clock, offline_after=300.0)
    registry.hello("n1", ["10.0.0.1"], INFO)
    last_heard, said_bye = clock.now, False
    for action, seconds in steps:
        clock.advance(seconds)
        if action == "sample":
            registry.seen("n1", clock.now)
            last_heard, said_bye = clock.now, False
        elif action == "bye":
            registry.bye("n1", clock.now)
            last_heard, said_bye = clock.now, True
        elif action == "hello":
            registry.hello("n1", ["10.0.0.1"], INFO)
            last_heard, said_bye = clock.now, False
        node = registry.get("n1")
        assert node is not None
        silence = clock.now - last_heard
        expected = OFFLINE if said_bye or silence > 300 else ONLINE if silence <= 6.0 else STALE
        assert registry.state(node) == expected
        assert [state for _, state in registry.nodes()] == [expected]
        assert [n.name for n, _ in registry.nodes(state=expected)] == ["n1"]


def test_hello_registers_and_updates(clock: FakeClock) -> None:
    registry = NodeRegistry(10, clock)
    node = registry.hello("n1", ["10.0.0.1"], INFO)
    assert node is not None and node.interval == 2.0 and node.registered == clock.now
    clock.advance(5)
    registry.hello("n1", ["10.0.0.2"], {**INFO, "interval": 5.0})
    node = registry.get("n1")
    assert node is not None and node.ips == ["10.0.0.2"] and node.interval == 5.0 and node.registered < clock.now
    assert registry.resolve("10.0.0.2") is node
    with pytest.raises(UnknownNode):
        registry.resolve("10.0.0.1")


def test_nodes_are_found_by_name_or_any_ip(clock: FakeClock) -> None:
    registry = NodeRegistry(10, clock)
    registry.hello("n1", ["10.0.0.1", "2001:db8::1", "2001:db8:0::1"], INFO)
    assert registry.get("n1").ips == ["10.0.0.1", "2001:db8::1"]  # type: ignore[union-attr]  # normalised, once
    registry.hello("n2", ["10.0.0.2"], INFO)
    assert registry.resolve("N1").name == "n1"
    assert registry.resolve("2001:0db8:0:0:0:0:0:1").name == "n1"  # any spelling of the address
    assert registry.resolve("10.0.0.2").name == "n2"
    with pytest.raises(UnknownNode):
        registry.resolve("10.9.9.9")
    with pytest.raises(UnknownNode):
        registry.resolve("nobody")


def test_a_shared_ip_is_ambiguous_and_names_its_owners(clock: FakeClock) -> None:
    registry = NodeRegistry(10, clock)
    registry.hello("n2", ["192.168.1.10"], INFO)
    registry.hello("n1", ["192.168.1.10"], INFO)
    with pytest.raises(AmbiguousAddress) as ambiguous:
        registry.resolve("192.168.1.10")
    assert ambiguous.value.names == ["n1", "n2"]
    registry.remove("n2")
    assert registry.resolve("192.168.1.10").name == "n1"


def test_samples_keep_a_registered_node_alive_but_register_nothing(clock: FakeClock) -> None:
    registry = NodeRegistry(10, clock)
    registry.seen("ghost", clock.now)
    assert len(registry) == 0
    registry.hello("n1", [], INFO)
    clock.advance(100)
    registry.seen("n1", clock.now)
    node = registry.get("n1")
    assert node is not None and registry.state(node) == ONLINE


def test_stats_are_kept_compactly_and_read_back(clock: FakeClock) -> None:
    registry = NodeRegistry(10, clock)
    stats = {"cpu": {"percent": 1.5}, "processes": {"count": 3}}
    node = registry.record_stats("n1", stats, ts=clock.now - 1, now=clock.now)
    assert node.snapshot is not None and node.snapshot.data == msgpack.packb(stats)
    assert node.stats() == stats and node.snapshot_ts == clock.now - 1
    assert registry.budget.used == len(msgpack.packb(stats))


def test_a_large_snapshot_is_kept_compressed_and_read_back(clock: FakeClock) -> None:
    registry = NodeRegistry(10, clock)
    stats = {"disks": [{"mountpoint": f"/srv/volume-{i:04d}/data", "total": 2**40} for i in range(1000)]}
    node = registry.record_stats("n1", stats, ts=clock.now, now=clock.now)
    assert node.snapshot is not None and node.snapshot.compressed
    assert node.snapshot.size < len(msgpack.packb(stats)) / 3
    assert node.stats() == stats and registry.budget.used == node.snapshot.size


def test_a_snapshot_over_the_node_budget_is_refused_and_the_old_one_kept(clock: FakeClock) -> None:
    budget = SnapshotBudget(total=10**6, per_node=100)
    registry = NodeRegistry(10, clock, budget=budget)
    small = {"cpu": {"percent": 1.5}}
    registry.record_stats("n1", small, clock.now, clock.now)
    with pytest.raises(NodeRefused) as refused:
        registry.record_stats("n1", {"cpu": {"percent": 1.5, "name": "x" * 200}}, clock.now + 1, clock.now + 1)
    assert refused.value.reason == "over_node_budget" and "100 bytes per node" in refused.value.message
    node = registry.get("n1")
    assert node is not None and node.stats() == small and node.snapshot_ts == clock.now
    assert budget.used == len(msgpack.packb(small))
    with pytest.raises(NodeRefused):  # nor is a new node registered by it
        registry.record_stats("n2", {"name": "x" * 200}, clock.now, clock.now)
    assert "n2" not in registry


def test_the_total_budget_refuses_new_snapshots_but_lets_a_node_replace_its_own(clock: FakeClock) -> None:
    one = {"name": "x" * 40}
    size = len(msgpack.packb(one))
    registry = NodeRegistry(10, clock, budget=SnapshotBudget(total=2 * size, per_node=1000))
    registry.record_stats("a", one, clock.now, clock.now)
    registry.record_stats("b", one, clock.now, clock.now)
    with pytest.raises(NodeRefused) as refused:
        registry.record_stats("c", one, clock.now, clock.now)
    assert refused.value.reason == "over_total_budget" and "c" not in registry
    registry.record_stats("a", {"name": "y" * 40}, clock.now, clock.now)  # same size, replaces its own
    registry.remove("b")
    assert registry.budget.used == size
    registry.record_stats("c", one, clock.now, clock.now)  # room again
    assert registry.budget.used == 2 * size


def test_the_registry_is_bounded(clock: FakeClock) -> None:
    registry = NodeRegistry(2, clock)
    registry.hello("a", [], INFO)
    registry.record_stats("b", {}, clock.now, clock.now)
    for refused in (lambda: registry.hello("c", [], INFO), lambda: registry.record_stats("d", {}, clock.now, clock.now)):
        with pytest.raises(NodeRefused) as error:
            refused()
        assert error.value.reason == "node_refused"
    assert len(registry) == 2 and registry.refused == 2
    assert registry.hello("a", ["10.0.0.1"], INFO).ips == ["10.0.0.1"]  # known nodes still update


def test_removed_and_silent_nodes_are_forgotten(clock: FakeClock) -> None:
    registry = NodeRegistry(10, clock)
    registry.hello("old", ["10.0.0.1"], INFO)
    registry.hello("gone", ["10.0.0.2"], INFO)
    assert registry.remove("gone") and not registry.remove("gone")
    with pytest.raises(UnknownNode):
        registry.resolve("10.0.0.2")
    clock.advance(FORGET_AFTER_SECONDS - 1)
    registry.hello("fresh", [], INFO)
    assert registry.forget_silent() == []
    clock.advance(2)
    assert registry.forget_silent() == ["old"]
    assert [node.name for node, _ in registry.nodes()] == ["fresh"]
