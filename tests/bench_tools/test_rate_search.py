"""bench/peers.py's stepping search, against systems whose limit is known."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from peers import RateSearch, Step, round_rate


def search(limit: int, short_limit: int | None = None, **options: float) -> tuple[RateSearch, list[tuple[Step, bool]]]:
    """Run a search to its end against a system that passes a full step iff rate <= limit
    (a short step iff rate <= short_limit, default the same)."""
    settings = {"start": 100_000, "max_rate": 1_000_000, "seconds": 30.0, "probe_seconds": 8.0, **options}
    rates = RateSearch(**settings)  # type: ignore[arg-type]
    steps = []
    while (step := rates.next_step()) is not None:
        passed = step.rate <= (limit if step.full or short_limit is None else short_limit)
        rates.record(step, passed)
        steps.append((step, passed))
        assert len(steps) <= 100, "the search must end"
    return rates, steps


def test_brackets_with_short_steps_then_confirms_and_bisects_with_full_ones() -> None:
    rates, steps = search(200_000)
    assert [(s.rate, s.full, ok) for s, ok in steps] == [
        (100_000, False, True), (125_000, False, True), (156_000, False, True), (195_000, False, True),
        (244_000, False, False),  # bracket found
        (195_000, True, True),  # the highest short pass, confirmed over a full step
        (218_000, True, False), (206_000, True, False),  # sqrt(195 * 244), then sqrt(195 * 218)
    ]  # fmt: skip
    assert [s.seconds for s, _ in steps] == [8.0] * 5 + [30.0] * 3
    assert rates.best == 195_000 and rates.failed == 206_000 and not rates.capped


def test_only_full_steps_count() -> None:
    # Short steps pass higher than full ones: the confirmation steps down until a full step passes.
    rates, steps = search(200_000, short_limit=260_000)
    full = [(s.rate, ok) for s, ok in steps if s.full]
    assert full[0] == (244_000, False)  # the highest short pass failed over 30 s
    assert rates.best is not None and rates.best <= 200_000
    assert all(s.rate <= 200_000 for s, ok in steps if s.full and ok)


def test_steps_down_when_the_first_rate_fails() -> None:
    rates, steps = search(50_000)
    assert [s.rate for s, _ in steps[:5]] == [100_000, 80_000, 64_000, 51_000, 41_000]
    assert rates.best is not None and 41_000 <= rates.best <= 50_000


def test_capped_at_the_max_rate() -> None:
    rates, steps = search(5_000_000, max_rate=400_000)
    assert steps[-1] == (Step(400_000, 30.0, True), True)
    assert rates.best == 400_000 and rates.capped and rates.failed is None


def test_nothing_passes() -> None:
    rates, steps = search(500, start=4_000)
    assert rates.best is None and not rates.capped
    assert [s.rate for s, _ in steps] == [4_000, 3_000, 2_000, 1_000]


def test_short_mode_steps_are_all_full() -> None:
    rates, steps = search(200_000, seconds=5.0, probe_seconds=8.0)
    assert all(s.full and s.seconds == 5.0 for s, _ in steps)
    assert rates.best == 195_000  # a passing step counts at once: no confirmation step
    assert [s.rate for s, _ in steps].count(195_000) == 1


def test_bounded_by_max_steps() -> None:
    _, steps = search(900_000, start=1_000, max_steps=6)
    assert len(steps) == 6


def test_never_retries_a_failed_rate_on_the_way_up() -> None:
    # 100k fails, 80k passes: the next step up would be 100k again, so it confirms 80k instead.
    rates, steps = search(99_000)
    tried = [(s.rate, s.full) for s, _ in steps]
    assert tried[:3] == [(100_000, False), (80_000, False), (80_000, True)]
    assert len(tried) == len(set(tried)) and rates.best is not None and rates.best <= 99_000


@given(
    limit=st.integers(min_value=1_000, max_value=2_000_000),
    start=st.integers(min_value=1_000, max_value=600_000),
    slack=st.floats(min_value=1.0, max_value=1.5),
)
def test_finds_the_limit_within_the_resolution(limit: int, start: int, slack: float) -> None:
    rates, steps = search(limit, short_limit=int(limit * slack), start=start, max_steps=40)
    passed_full = [s.rate for s, ok in steps if s.full and ok]
    assert all(rate <= limit for rate in passed_full)
    assert rates.best == (max(passed_full) if passed_full else None)
    if rates.best is None:
        assert limit < 1_000 or steps[-1][0].rate == 1_000 or len(steps) == 40
        return
    if rates.capped:
        assert rates.best == 1_000_000 <= limit
    else:
        assert rates.failed is not None and rates.best <= limit < rates.failed
        # Within the resolution, or as close as rounding to thousands allows.
        assert rates.failed / rates.best <= 1.06 or round_rate(math.sqrt(rates.best * rates.failed)) in (
            rates.best, rates.failed)  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [({"factor": 1.0}, "factor"), ({"resolution": 1.0}, "resolution"), ({"max_rate": 10}, "max_rate")],
)
def test_refuses_a_search_that_cannot_end(options: dict[str, float], message: str) -> None:
    settings = {"start": 1_000, "max_rate": 10_000, "seconds": 30.0, "probe_seconds": 8.0, **options}
    with pytest.raises(ValueError, match=message):
        RateSearch(**settings)  # type: ignore[arg-type]


def test_round_rate() -> None:
    assert round_rate(1_234_567.0) == 1_235_000
    assert round_rate(10.0) == 1_000
