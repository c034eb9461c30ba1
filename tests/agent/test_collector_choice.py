"""Which collector an agent given several publishes to (CollectorChoice), on a fake clock: silence moves it,
hearing the collector again moves it back, all silent is the pick among all, and the pick is always the
rendezvous pick over the collectors up (hypothesis, against a naive model)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.agent.collector_choice import DEFAULT_FAILOVER_AFTER, CollectorChoice
from servertrack.common.rendezvous import chosen_index, weight
from tests.conftest import FakeClock

COLLECTORS = [f"tcp://10.0.0.{number}:5556" for number in range(1, 5)]


def ranked(name: str, collectors: list[str]) -> list[int]:
    """The collectors' indexes, best first, by their rendezvous weight for ``name``."""
    return sorted(range(len(collectors)), key=lambda index: weight(collectors[index], name), reverse=True)


def choice_for(name: str = "web-01.example", collectors: list[str] = COLLECTORS,
               failover_after: float = 3.0) -> tuple[CollectorChoice, FakeClock]:
    clock = FakeClock(1000.0)
    return CollectorChoice(name, collectors, failover_after, clock), clock


def test_at_the_start_every_collector_is_up_and_the_pick_is_todays() -> None:
    choice, clock = choice_for()
    assert choice.up() == [0, 1, 2, 3] and not choice.all_down()
    assert choice.pick() == chosen_index("web-01.example", COLLECTORS)
    clock.advance(2.9)  # nothing heard, but not silent for failover_after yet
    assert choice.up() == [0, 1, 2, 3]
    assert choice.seconds_to_change() == pytest.approx(0.1)


def test_a_silent_pick_is_left_for_the_next_best_and_taken_back_when_heard_again() -> None:
    choice, clock = choice_for()
    first, second, *_ = ranked("web-01.example", COLLECTORS)
    for _ in range(6):  # everyone but the pick keeps talking
        clock.advance(0.5)
        for index in range(4):
            if index != first:
                choice.heard(index)
    assert not choice.is_up(first) and choice.pick() == second
    assert choice.move_reason(first, second) == f"collector {COLLECTORS[first]} silent for 3.0 s"
    choice.heard(first)  # it is back
    assert choice.is_up(first) and choice.pick() == first
    assert choice.move_reason(second, first) == f"collector {COLLECTORS[first]} is heard again"


def test_silent_for_exactly_failover_after_is_down() -> None:
    choice, clock = choice_for(failover_after=1.0)
    clock.advance(1.0 - 1e-9)
    assert choice.up() == [0, 1, 2, 3]
    clock.advance(1e-9)
    assert choice.up() == [] and choice.seconds_to_change() is None


def test_all_silent_is_the_pick_among_all_and_the_first_heard_is_taken() -> None:
    choice, clock = choice_for()
    best, _, third, _ = ranked("web-01.example", COLLECTORS)
    clock.advance(10.0)
    assert choice.all_down() and choice.pick() == best  # where it goes without failover
    choice.heard(third)
    assert choice.up() == [third] and choice.pick() == third
    assert choice.move_reason(best, third) == f"collector {COLLECTORS[best]} silent for 10.0 s"
    clock.advance(3.0)
    assert choice.pick() == best
    assert choice.move_reason(third, best) == f"collector {COLLECTORS[third]} silent for 3.0 s and every other too"


def test_a_single_collector_is_always_the_pick() -> None:
    choice, clock = choice_for(collectors=COLLECTORS[:1])
    assert choice.pick() == 0
    clock.advance(1e6)
    assert choice.pick() == 0 and choice.all_down()


def test_ties_go_to_the_first_collector_up_in_the_lists_order() -> None:
    clock = FakeClock(0.0)
    choice = CollectorChoice("n1", COLLECTORS, 3.0, clock, weigh=lambda candidate, key: 7)
    assert choice.pick() == 0
    clock.advance(3.0)
    for index in (1, 2, 3):
        choice.heard(index)
    assert choice.pick() == 1
    choice.heard(0)
    assert choice.pick() == 0


def test_a_collector_set_aside_is_never_picked_while_another_can_be() -> None:
    choice, clock = choice_for()
    best, second, *_ = ranked("web-01.example", COLLECTORS)
    choice.set_aside(best)
    assert choice.pick() == second
    choice.heard(best)
    assert choice.pick() == second
    clock.advance(100.0)  # all silent: among all but the one set aside
    assert choice.pick() == second
    for index in range(4):
        choice.set_aside(index)
    assert choice.pick() == best  # nothing left: among all, as without failover


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        CollectorChoice("n1", [], 3.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            CollectorChoice("n1", COLLECTORS, bad)
    assert CollectorChoice("n1", COLLECTORS).failover_after == DEFAULT_FAILOVER_AFTER


# An event: advance the clock, or hear from one collector.
_events = st.lists(st.one_of(st.tuples(st.just("advance"), st.floats(0.0, 5.0)),
                             st.tuples(st.just("heard"), st.integers(0, 7))), max_size=40)
_collector_lists = st.lists(st.integers(1024, 65535).map(lambda port: f"tcp://10.0.0.9:{port}"), min_size=1,
                            max_size=8, unique=True)


@settings(max_examples=200)
@given(name=st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True), collectors=_collector_lists,
       failover_after=st.floats(1.0, 600.0), events=_events)
def test_the_pick_is_always_the_rendezvous_pick_over_the_collectors_up(
    name: str, collectors: list[str], failover_after: float, events: list[tuple[str, float]]
) -> None:
    clock = FakeClock(5000.0)
    choice = CollectorChoice(name, collectors, failover_after, clock)
    heard = [clock.now] * len(collectors)  # the naive model: when each was last heard
    for kind, value in events:
        if kind == "advance":
            clock.advance(value)
        else:
            index = int(value) % len(collectors)
            choice.heard(index)
            heard[index] = clock.now
        up = [index for index in range(len(collectors)) if clock.now - heard[index] < failover_after]
        among = up or list(range(len(collectors)))
        best = max(among, key=lambda index: (weight(collectors[index], name), -index))
        assert choice.up() == up
        assert choice.pick() == best
        if up:
            expected = min(heard[index] for index in up) + failover_after - clock.now
            assert choice.seconds_to_change() == pytest.approx(expected)
