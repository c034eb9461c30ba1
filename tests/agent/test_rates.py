"""Counter rates: deltas over time, 32/64-bit wraps, resets, first sight and forgotten keys."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.agent.rates import WRAP_32, WRAP_64, CounterRates, counter_delta, counter_rates

counters_64 = st.integers(min_value=0, max_value=WRAP_64 - 1)
elapsed_times = st.floats(min_value=1e-3, max_value=1e5, allow_nan=False, allow_infinity=False)


# --------------------------------------------------------------------------- counter_delta


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (0, 0, 0),
        (100, 250, 150),
        (WRAP_32 - 100, 50, 150),  # 32-bit wrap
        (WRAP_32 - 1, 0, 1),
        (WRAP_64 - 10, 5, 15),  # 64-bit wrap
        (WRAP_32 + 5, 3, None),  # a 64-bit counter far from its limit went down: reset
        (10**9, 100, None),  # far from the 32-bit limit: reset
        (WRAP_32 - 100, WRAP_32 // 2, None),  # wrapped delta of half the range: not plausible, reset
        (WRAP_32 - 100, WRAP_32 // 4 - 101, WRAP_32 // 4 - 1),  # just inside the wrap window
        (WRAP_32 - 100, WRAP_32 // 4 - 99, None),  # just outside it
    ],
)
def test_counter_delta(previous: int, current: int, expected: int | None) -> None:
    assert counter_delta(previous, current) == expected


def test_counter_rates_zero_for_new_counters_resets_and_bad_intervals() -> None:
    assert counter_rates({"a": 10}, {"a": 30, "b": 99}, 4.0) == {"a": 5.0, "b": 0.0}
    assert counter_rates({"a": 10**9}, {"a": 7}, 4.0) == {"a": 0.0}
    for elapsed in (0.0, -1.0, math.nan, math.inf):
        assert counter_rates({"a": 10}, {"a": 30}, elapsed) == {"a": 0.0}


# --------------------------------------------------------------------------- CounterRates


def test_first_feed_has_no_rates_then_delta_over_elapsed() -> None:
    rates = CounterRates()
    assert rates.update(100.0, {"eth0": {"rx": 1_000, "tx": 10}}) == {"eth0": None}
    assert rates.update(102.0, {"eth0": {"rx": 5_000, "tx": 10}}) == {"eth0": {"rx": 2_000.0, "tx": 0.0}}
    assert rates.update(106.0, {"eth0": {"rx": 5_400, "tx": 30}}) == {"eth0": {"rx": 100.0, "tx": 5.0}}


def test_a_new_key_next_to_a_known_one() -> None:
    rates = CounterRates()
    rates.update(0.0, {"eth0": {"rx": 0}})
    assert rates.update(1.0, {"eth0": {"rx": 10}, "eth1": {"rx": 10**12}}) == {"eth0": {"rx": 10.0}, "eth1": None}
    assert rates.update(2.0, {"eth0": {"rx": 20}, "eth1": {"rx": 10**12 + 4}}) == {"eth0": {"rx": 10.0}, "eth1": {"rx": 4.0}}


def test_wrap_is_counted_across_the_limit() -> None:
    rates = CounterRates()
    rates.update(0.0, {"nic": {"rx": WRAP_32 - 1_000}})
    assert rates.update(2.0, {"nic": {"rx": 3_000}}) == {"nic": {"rx": 2_000.0}}
    rates.update(10.0, {"nic": {"rx": WRAP_64 - 1}})
    assert rates.update(11.0, {"nic": {"rx": 9}}) == {"nic": {"rx": 10.0}}


def test_reset_gives_zero_then_rates_resume_from_the_new_value() -> None:
    rates = CounterRates()
    rates.update(0.0, {"nic": {"rx": 10**10}})
    assert rates.update(1.0, {"nic": {"rx": 500}}) == {"nic": {"rx": 0.0}}
    assert rates.update(2.0, {"nic": {"rx": 800}}) == {"nic": {"rx": 300.0}}


@pytest.mark.parametrize("step", [0.0, -5.0])
def test_non_positive_elapsed_gives_zero_and_moves_the_reference(step: float) -> None:
    rates = CounterRates()
    rates.update(50.0, {"d": {"n": 100}})
    assert rates.update(50.0 + step, {"d": {"n": 200}}) == {"d": {"n": 0.0}}
    assert rates.update(50.0 + step + 1.0, {"d": {"n": 250}}) == {"d": {"n": 50.0}}


def test_missing_keys_are_forgotten_and_new_again_when_they_return() -> None:
    rates = CounterRates()
    rates.update(0.0, {"a": {"n": 1}, "b": {"n": 1}})
    assert rates.update(1.0, {"a": {"n": 2}}) == {"a": {"n": 1.0}}
    assert rates.keys() == {"a"}
    assert rates.update(2.0, {"a": {"n": 3}, "b": {"n": 50}}) == {"a": {"n": 1.0}, "b": None}
    assert rates.update(3.0, {}) == {}
    assert rates.keys() == frozenset()


def test_clear_forgets_everything() -> None:
    rates = CounterRates()
    rates.update(0.0, {"a": {"n": 1}})
    rates.clear()
    assert rates.update(1.0, {"a": {"n": 2}}) == {"a": None}


def test_the_callers_mappings_are_copied() -> None:
    rates = CounterRates()
    reading = {"n": 10}
    rates.update(0.0, {"a": reading})
    reading["n"] = 10**6
    assert rates.update(1.0, {"a": {"n": 15}}) == {"a": {"n": 5.0}}


# --------------------------------------------------------------------------- properties


def _model(feeds: list[tuple[float, dict[str, dict[str, int]]]]) -> list[dict[str, dict[str, float] | None]]:
    """Naive reference: first sight None; otherwise delta/elapsed for monotonic counters, 0.0 on bad time."""
    seen: dict[str, tuple[float, dict[str, int]]] = {}
    out = []
    for ts, reading in feeds:
        result: dict[str, dict[str, float] | None] = {}
        for key, counters in reading.items():
            if key not in seen:
                result[key] = None
            else:
                then, before = seen[key]
                elapsed = ts - then
                result[key] = {
                    name: (value - before[name]) / elapsed if name in before and elapsed > 0 else 0.0
                    for name, value in counters.items()
                }
        seen = {key: (ts, dict(counters)) for key, counters in reading.items()}
        out.append(result)
    return out


@st.composite
def monotonic_feeds(draw: st.DrawFn) -> list[tuple[float, dict[str, dict[str, int]]]]:
    """Feeds over a few keys that come and go, every counter only growing, time mostly moving forward."""
    keys = ["eth0", "eth1", "wlan0"]
    totals = {key: {"rx": draw(st.integers(0, 2**40)), "tx": draw(st.integers(0, 2**40))} for key in keys}
    ts = draw(st.floats(0.0, 1e9, allow_nan=False))
    feeds = []
    for _ in range(draw(st.integers(1, 8))):
        ts += draw(st.one_of(elapsed_times, st.just(0.0), st.just(-1.0)))
        present = draw(st.sets(st.sampled_from(keys)))
        for key in present:
            for name in totals[key]:
                totals[key][name] += draw(st.integers(0, 2**30))
        feeds.append((ts, {key: dict(totals[key]) for key in sorted(present)}))
    return feeds


@settings(max_examples=150)
@given(monotonic_feeds())
def test_monotonic_counters_match_the_reference_model(feeds: list[tuple[float, dict[str, dict[str, int]]]]) -> None:
    rates = CounterRates()
    for (ts, reading), expected in zip(feeds, _model(feeds), strict=True):
        assert rates.update(ts, reading) == expected
        assert rates.keys() == set(reading)  # nothing remembered beyond the latest keys


@settings(max_examples=150)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6, allow_nan=False), counters_64), min_size=1, max_size=10))
def test_rates_are_never_negative_whatever_the_counters_do(feeds: list[tuple[float, int]]) -> None:
    rates = CounterRates()
    for ts, value in feeds:
        result = rates.update(ts, {"k": {"n": value}})["k"]
        if result is not None:
            assert result["n"] >= 0.0 and math.isfinite(result["n"])


@settings(max_examples=150)
@given(
    limit=st.sampled_from([WRAP_32, WRAP_64]),
    before_limit=st.integers(1, WRAP_32 // 8),
    after_zero=st.integers(0, WRAP_32 // 8),
    elapsed=elapsed_times,
)
def test_a_wrap_near_the_limit_counts_the_distance_across_it(limit: int, before_limit: int, after_zero: int, elapsed: float) -> None:
    rates = CounterRates()
    rates.update(0.0, {"k": {"n": limit - before_limit}})
    assert rates.update(elapsed, {"k": {"n": after_zero}}) == {"k": {"n": (before_limit + after_zero) / elapsed}}


@settings(max_examples=100)
@given(previous=st.integers(WRAP_32 // 4, WRAP_32 - WRAP_32 // 4 - 1), current=st.integers(0, WRAP_32 // 8), elapsed=elapsed_times)
def test_a_drop_far_from_any_limit_is_a_reset(previous: int, current: int, elapsed: float) -> None:
    rates = CounterRates()
    rates.update(0.0, {"k": {"n": previous}})
    assert rates.update(elapsed, {"k": {"n": current}}) == {"k": {"n": 0.0}}
