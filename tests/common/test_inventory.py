"""AgentInventory: seq accounting one message at a time and a whole run at once agree."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.inventory import MAX_COUNTED_GAP, AgentInventory
from servertrack.common.protocol import MAX_SEQ

SEQS = st.one_of(st.integers(0, 20), st.integers(0, MAX_SEQ), st.sampled_from([MAX_COUNTED_GAP, MAX_COUNTED_GAP + 1,
                                                                              MAX_COUNTED_GAP + 2, MAX_SEQ]))


@settings(max_examples=300, deadline=None)
@given(history=st.lists(st.tuples(st.sampled_from("abcd"), SEQS), max_size=12),
       run=st.lists(st.tuples(st.sampled_from("abcde"), SEQS), min_size=1, max_size=40))
def test_a_run_accounted_at_once_is_what_one_by_one_gives(history: list[tuple[str, int]],
                                                          run: list[tuple[str, int]]) -> None:
    one_by_one, at_once = AgentInventory(10), AgentInventory(10)
    for name, seq in history:
        one_by_one.observe_seq(name, seq)
        at_once.observe_seq(name, seq)
    lost_before = at_once.lost
    expected = sum(one_by_one.observe_seq(name, seq) for name, seq in run)
    indexes = [at_once.admit(name) for name, _ in run]
    assert at_once.observe_many(indexes, [seq for _, seq in run]) == expected  # type: ignore[arg-type]
    assert at_once.lost - lost_before == expected and at_once.lost == one_by_one.lost
    for name in "abcde":
        assert at_once.last_seq(name) == one_by_one.last_seq(name)


def test_gaps_count_as_lost_up_to_the_bound_and_a_step_back_is_a_restart() -> None:
    inventory = AgentInventory(10)
    index = inventory.admit("a")
    assert inventory.last_seq("a") is None  # admitted, no message yet
    assert inventory.observe_many([index, index, index], [5, 9, 3]) == 3  # type: ignore[list-item]
    assert inventory.last_seq("a") == 3
    assert inventory.observe_many([index], [3 + MAX_COUNTED_GAP + 1]) == MAX_COUNTED_GAP  # type: ignore[list-item]
    assert inventory.observe_many([index], [2**63 + 7]) == 0  # type: ignore[list-item]  # beyond the bound: a restart
    assert inventory.lost == 3 + MAX_COUNTED_GAP


def test_the_cap_holds_and_a_forgotten_agent_frees_its_place_and_state() -> None:
    inventory = AgentInventory(2)
    inventory.observe("a", 4, ["10.0.0.1"])
    inventory.observe("b", 1, [])
    assert inventory.admit("c") is None and inventory.observe("c", 1, []) == 0 and len(inventory) == 2
    inventory.forget(["a"])
    assert inventory.ips_of("a") is None and inventory.last_seq("a") is None
    inventory.observe("c", 9, ["10.0.0.3"])  # takes a's place, with none of a's state
    assert inventory.last_seq("c") == 9 and inventory.ips_of("c") == ["10.0.0.3"] and inventory.lost == 0
