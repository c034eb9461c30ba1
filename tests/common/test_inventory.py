"""AgentInventory: seq accounting one message at a time and a whole run at once agree."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.inventory import BUDGET_SECONDS, MAX_COUNTED_GAP, AgentInventory
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


def test_the_first_key_to_send_owns_a_name_until_it_is_released() -> None:
    inventory = AgentInventory(10)
    assert inventory.refusal("web-01", 1, 0.0) is None  # nobody owns a name not tracked yet
    inventory.observe("web-01", 0, [], key=1)
    assert inventory.owner("web-01") == 1
    assert inventory.refusal("web-01", 1, 0.0) is None
    assert inventory.refusal("web-01", 2, 0.0) == "wrong_key"
    inventory.observe("web-01", 1, [], key=2)  # a message kept some other way does not change the owner
    assert inventory.owner("web-01") == 1
    assert inventory.release("web-01") and not inventory.release("web-01")
    assert inventory.refusal("web-01", 2, 0.0) is None
    inventory.observe_seq("web-01", 2, key=2)
    assert inventory.owner("web-01") == 2 and inventory.refusal("web-01", 1, 0.0) == "wrong_key"


def test_a_forgotten_agents_row_comes_back_with_no_owner_and_a_full_budget() -> None:
    inventory = AgentInventory(1, frame_budget=1.0)
    inventory.observe("a", 0, [], key=3)
    while inventory.refusal("a", 3, 0.0) is None:
        pass
    inventory.forget(["a"])
    inventory.observe("b", 0, [])
    assert inventory.owner("b") == 0 and inventory.refusal("b", 5, 0.0) is None


def test_owned_by_compares_a_run_of_agents_with_their_keys() -> None:
    inventory = AgentInventory(10)
    for name, key in (("a", 1), ("b", 2)):
        inventory.observe(name, 0, [], key=key)
    a, b = inventory.admit("a"), inventory.admit("b")
    assert inventory.owned_by([a, b], [1, 2])  # type: ignore[list-item]
    assert not inventory.owned_by([a, b], [1, 1])  # type: ignore[list-item]


def _budget_model(arrivals: list[float], rate: float, burst_seconds: float) -> list[bool]:
    """A token bucket of ``rate * burst_seconds`` frames, full at first, refilled at ``rate``: what GCRA is."""
    capacity = rate * burst_seconds + 1.0  # GCRA's tolerance lets one frame beyond the burst's worth through
    tokens, at, kept = capacity, None, []
    for now in arrivals:
        if at is not None:
            tokens = min(capacity, tokens + (now - at) * rate)
        at = now
        if tokens >= 1.0 - 1e-9:
            tokens -= 1.0
            kept.append(True)
        else:
            kept.append(False)
    return kept


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.one_of(st.just(0.0), st.floats(0.0, 0.5), st.floats(0.0, 30.0)), min_size=1, max_size=300),
       rate=st.sampled_from([0.5, 1.0, 10.0, 100.0]))
def test_the_frame_budget_keeps_what_a_token_bucket_keeps(gaps: list[float], rate: float) -> None:
    inventory = AgentInventory(4, frame_budget=rate)
    inventory.admit("a")
    arrivals, now = [], 1_000.0
    for gap in gaps:
        now += gap
        arrivals.append(now)
    kept = [inventory.refusal("a", 0, at) is None for at in arrivals]
    expected = _budget_model(arrivals, rate, BUDGET_SECONDS)
    # float rounding may decide a frame that arrives exactly on its due time either way: compare counts then
    assert kept == expected or abs(sum(kept) - sum(expected)) <= 1


def test_a_flood_keeps_the_burst_then_the_rate_and_a_run_is_all_or_nothing() -> None:
    inventory = AgentInventory(4, frame_budget=10.0)
    index = inventory.admit("a")
    kept = sum(inventory.refusal("a", 0, 100.0) is None for _ in range(1_000))
    assert kept == 10 * BUDGET_SECONDS + 1  # the burst's worth at one instant
    assert inventory.refusal("a", 0, 100.05) is None or inventory.refusal("a", 0, 100.1) is None  # refilled at 10/s
    other = inventory.admit("b")
    assert not inventory.within_budget_many([index, other], 100.1)  # type: ignore[list-item]  # a is spent
    assert inventory.within_budget_many([other], 100.1)  # type: ignore[list-item]  # b was not charged above


def test_no_budget_keeps_every_frame() -> None:
    inventory = AgentInventory(4, frame_budget=0.0)
    inventory.admit("a")
    assert all(inventory.refusal("a", 0, 5.0) is None for _ in range(10_000))


@settings(max_examples=200, deadline=None)
@given(run=st.lists(st.tuples(st.sampled_from("abcde"), SEQS), min_size=1, max_size=40))
def test_each_agents_loss_adds_up_to_the_total_one_by_one_and_at_once(run: list[tuple[str, int]]) -> None:
    one_by_one, at_once = AgentInventory(10), AgentInventory(10)
    for name, seq in run:
        one_by_one.observe_seq(name, seq)
    at_once.observe_many([at_once.admit(name) for name, _ in run], [seq for _, seq in run])  # type: ignore[misc]
    for inventory in (one_by_one, at_once):
        assert sum(inventory.lost_of(name) or 0 for name in "abcde") == inventory.lost
    assert [at_once.lost_of(name) for name in "abcde"] == [one_by_one.lost_of(name) for name in "abcde"]


def test_seqs_restored_after_a_restart_count_the_gap_per_agent() -> None:
    before = AgentInventory(10)
    before.observe_many([before.admit("a"), before.admit("b")], [10, 20])  # type: ignore[list-item]
    before.observe_seq("a", 12)  # 11 lost
    before.admit("c")  # no message yet: nothing to keep
    names, seqs, lost = before.export_seqs()
    assert (names, seqs.tolist(), lost.tolist()) == (["a", "b"], [12, 20], [1, 0])
    after = AgentInventory(10)
    assert after.restore_seqs(names, seqs, lost) == 2
    assert after.observe_many([after.admit("a"), after.admit("b")], [17, 21]) == 4  # type: ignore[list-item]
    assert after.observe_seq("c", 5) == 0  # new: its first message sets the seq
    assert (after.lost, after.lost_of("a"), after.lost_of("b"), after.lost_of("c")) == (4, 5, 0, 0)
    assert after.lost_of("zzz") is None
    full = AgentInventory(1)
    assert full.restore_seqs(names, seqs, lost) == 1 and full.last_seq("a") == 12 and full.last_seq("b") is None
