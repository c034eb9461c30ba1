"""The node registry's pause state: desired vs reported, re-assertion on a mismatch, and the state a
paused node reads as time passes (injected clock, no sleeping)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servertrack.common.nodes import (
    NODE_STATES,
    OFFLINE,
    ONLINE,
    PAUSED,
    STALE,
    Node,
    NodeRegistry,
    UnknownNode,
    node_state,
    paused_hello_period,
)
from tests.conftest import FakeClock

INTERVAL = 2.0
INFO = {"hostname": "h", "boot_time": 1.0, "os": "Linux", "platform": "x86_64", "cpu_count": 2,
        "memory_total": 1, "agent_version": "0.1.0", "interval": INTERVAL}


class Mismatches:
    """The registry's ``on_mismatch``: records the node names and the state each was meant to be in."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, node: Node) -> None:
        self.calls.append((node.name, node.paused))


@pytest.fixture
def mismatches() -> Mismatches:
    return Mismatches()


@pytest.fixture
def registry(clock: FakeClock, mismatches: Mismatches) -> NodeRegistry:
    return NodeRegistry(10, clock, offline_after=300.0, on_mismatch=mismatches)


def test_paused_is_a_node_state() -> None:
    assert PAUSED == "paused" and PAUSED in NODE_STATES
    assert set(NODE_STATES) == {"online", "paused", "stale", "offline"}


@given(silence=st.floats(0, 1000), interval=st.floats(0.01, 100), offline_after=st.floats(1, 600),
       said_bye=st.booleans())
def test_a_paused_node_is_judged_by_its_hello_period(silence: float, interval: float, offline_after: float,
                                                     said_bye: bool) -> None:
    now = 1_000_000.0 + silence
    silence = now - 1_000_000.0
    state = node_state(1_000_000.0, interval, said_bye, now, offline_after, paused=True)
    if said_bye or silence > offline_after:
        assert state == OFFLINE
    elif silence <= 3 * 2 * interval:  # three hellos of a paused agent (one every 2 intervals) missed at most
        assert state == PAUSED
    else:
        assert state == STALE


def test_a_paused_agent_says_hello_often_enough_for_the_collectors_rule() -> None:
    assert paused_hello_period(1.0, 60.0) == 2.0
    assert paused_hello_period(0.2, 60.0) == pytest.approx(0.4)
    assert paused_hello_period(3600.0, 60.0) == 60.0  # never less often than the usual hellos
    assert paused_hello_period(1.0, 0.5) == 0.5


def test_a_hello_saying_paused_makes_the_node_read_paused_between_hellos(registry: NodeRegistry,
                                                                         clock: FakeClock) -> None:
    node = registry.hello("n1", ["10.0.0.1"], INFO, paused=True)
    assert node.reported_paused and node.paused
    for _ in range(5):  # hellos every 2 intervals: never stale in between
        clock.advance(2 * INTERVAL - 0.01)
        assert registry.state(node) == PAUSED
        registry.hello("n1", ["10.0.0.1"], INFO, paused=True)
    assert [n.name for n, _ in registry.nodes(state=PAUSED)] == ["n1"]
    assert registry.nodes(state=ONLINE) == []
    clock.advance(6 * INTERVAL + 0.01)  # three hellos missed
    assert registry.state(node) == STALE
    clock.advance(300.0)
    assert registry.state(node) == OFFLINE


def test_a_bye_from_a_paused_node_is_offline(registry: NodeRegistry, clock: FakeClock) -> None:
    node = registry.hello("n1", [], INFO, paused=True)
    registry.bye("n1", clock.now)
    assert registry.state(node) == OFFLINE


def test_without_a_desired_state_the_reported_one_is_adopted_and_nothing_is_sent(
    registry: NodeRegistry, mismatches: Mismatches
) -> None:
    # A restarted collector learns the state from the agent.
    assert registry.hello("n1", [], INFO, paused=True).desired_paused is True
    assert registry.hello("n2", [], INFO, paused=False).desired_paused is False
    assert mismatches.calls == []


def test_a_hello_that_disagrees_with_the_desired_state_is_reasserted_every_time(
    registry: NodeRegistry, mismatches: Mismatches, clock: FakeClock
) -> None:
    registry.hello("n1", [], INFO)
    registry.set_paused("n1", True)
    registry.hello("n1", [], INFO, paused=False)  # e.g. the agent restarted, or missed the message
    clock.advance(0.1)
    registry.hello("n1", [], INFO, paused=False)
    assert mismatches.calls == [("n1", True), ("n1", True)]
    registry.hello("n1", [], INFO, paused=True)  # obeyed
    assert mismatches.calls == [("n1", True), ("n1", True)]
    registry.set_paused("n1", False)
    registry.hello("n1", [], INFO, paused=True)
    assert mismatches.calls[-1] == ("n1", False)


def test_samples_of_a_node_that_should_be_paused_reassert_at_most_once_a_second(
    registry: NodeRegistry, mismatches: Mismatches, clock: FakeClock
) -> None:
    registry.hello("n1", [], INFO, paused=False)
    registry.set_paused("n1", True)
    for _ in range(25):  # 2.5 s of samples every 0.1 s
        registry.seen("n1", clock.now)
        clock.advance(0.1)
    assert mismatches.calls == [("n1", True)] * 3


def test_samples_of_a_node_meant_to_sample_reassert_nothing(
    registry: NodeRegistry, mismatches: Mismatches, clock: FakeClock
) -> None:
    registry.hello("n1", [], INFO, paused=True)
    registry.set_paused("n1", False)
    registry.seen("n1", clock.now)
    assert mismatches.calls == []


def test_a_sample_or_snapshot_proves_the_node_is_not_paused(registry: NodeRegistry, clock: FakeClock) -> None:
    from tests.node_fixtures import stats_body

    node = registry.hello("n1", [], INFO, paused=True)
    registry.seen("n1", clock.now)
    assert not node.reported_paused and registry.state(node) == ONLINE
    registry.hello("n1", [], INFO, paused=True)
    registry.record_stats("n1", stats_body(), clock.now, clock.now)
    assert not node.reported_paused


def test_an_agent_that_does_not_report_its_pause_state_is_never_asked_again(
    registry: NodeRegistry, mismatches: Mismatches, clock: FakeClock
) -> None:
    # an older agent, or a node registered over HTTP: it has no control channel
    node = registry.hello("old", [], INFO)
    assert not node.controllable and node.desired_paused is None and not node.paused
    registry.set_paused("old", True)
    registry.hello("old", [], INFO)
    for _ in range(3):
        clock.advance(1.0)
        registry.seen("old", clock.now)
    assert mismatches.calls == []
    assert node.paused and registry.state(node) == ONLINE  # asked, but it samples on
    registry.hello("old", [], INFO, paused=False)  # upgraded: now it reports, and is told
    assert node.controllable and mismatches.calls == [("old", True)]


def test_the_desired_state_wins_over_the_reported_one_once_set(registry: NodeRegistry) -> None:
    node = registry.hello("n1", [], INFO, paused=False)
    registry.set_paused("n1", True)
    assert node.paused and not node.reported_paused
    # the state is what the agent does, not what was asked
    assert registry.state(node) == ONLINE


def test_set_paused_of_an_unknown_node_raises_and_adds_nothing(registry: NodeRegistry) -> None:
    with pytest.raises(UnknownNode):
        registry.set_paused("ghost", True)
    assert len(registry) == 0


def test_set_all_paused_names_every_node(registry: NodeRegistry) -> None:
    for name in ("b", "a", "c"):
        registry.hello(name, [], INFO)
    assert registry.set_all_paused(True) == ["a", "b", "c"]
    assert all(node.desired_paused for node, _ in registry.nodes())
    assert registry.set_all_paused(False) == ["a", "b", "c"]
    assert not any(node.paused for node, _ in registry.nodes())


def test_a_node_removed_forgets_its_desired_state(registry: NodeRegistry, mismatches: Mismatches) -> None:
    registry.hello("n1", [], INFO)
    registry.set_paused("n1", True)
    registry.remove("n1")
    node = registry.hello("n1", [], INFO, paused=False)
    assert node.desired_paused is False and mismatches.calls == []


def test_without_a_listener_a_mismatch_changes_nothing_else(clock: FakeClock) -> None:
    registry = NodeRegistry(10, clock)
    registry.hello("n1", [], INFO)
    registry.set_paused("n1", True)
    node = registry.hello("n1", [], INFO, paused=False)
    registry.seen("n1", clock.now)
    assert node.desired_paused is True and not node.reported_paused


@given(steps=st.lists(st.tuples(st.sampled_from(["wait", "sample", "hello", "hello_paused", "bye", "pause",
                                                 "resume"]), st.floats(0, 30)), max_size=30))
def test_registry_pause_states_match_a_model(steps: list[tuple[str, float]]) -> None:
    clock = FakeClock()
    calls = Mismatches()
    registry = NodeRegistry(10, clock, offline_after=300.0, on_mismatch=calls)
    registry.hello("n1", [], INFO, paused=False)
    desired: bool = False
    reported, last_heard, said_bye, expected_calls = False, clock.now, False, 0
    last_reassert = float("-inf")
    for action, seconds in steps:
        clock.advance(seconds)
        if action == "sample":
            registry.seen("n1", clock.now)
            reported, last_heard, said_bye = False, clock.now, False
            if desired and clock.now - last_reassert >= 1.0:
                expected_calls += 1
                last_reassert = clock.now
        elif action in ("hello", "hello_paused"):
            reported = action == "hello_paused"
            registry.hello("n1", [], INFO, paused=reported)
            last_heard, said_bye = clock.now, False
            if desired != reported:
                expected_calls += 1
                last_reassert = clock.now
        elif action == "bye":
            registry.bye("n1", clock.now)
            last_heard, said_bye = clock.now, True
        elif action in ("pause", "resume"):
            desired = action == "pause"
            registry.set_paused("n1", desired)
        node = registry.get("n1")
        assert node is not None
        silence = clock.now - last_heard
        if said_bye or silence > 300:
            expected = OFFLINE
        elif reported:
            expected = PAUSED if silence <= 12.0 else STALE
        else:
            expected = ONLINE if silence <= 6.0 else STALE
        assert registry.state(node) == expected
        assert node.paused is desired
        assert len(calls.calls) == expected_calls
