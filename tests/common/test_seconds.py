"""The per-second ring, through the aggregator, against a naive reference model."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.aggregator import Aggregator
from servertrack.common.seconds import MAX_SECOND_SAMPLES, SECOND_SLOTS, SECONDS_SHOWN, SecondWindow
from tests.conftest import EPOCH, FakeClock

RESOLUTION = 0.01  # the ring keeps averages to hundredths of a percent


class SecondsModel:
    """Every sample kept; a second is shown while it is one of the ring's slots behind the newest."""

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[float, float, float]]] = defaultdict(list)

    def apply(self, batch: list[tuple[str, float, float, float]]) -> None:
        for name, ts, cpu, ram in batch:
            self.samples[name].append((ts, cpu, ram))

    def window(self, name: str, now: float) -> list[tuple[int, float, float] | None]:
        newest = max(int(ts // 1) for ts, _, _ in self.samples[name])
        current = int(now // 1)
        shown: list[tuple[int, float, float] | None] = []
        for second in range(current - SECONDS_SHOWN + 1, current + 1):
            inside = [(cpu, ram) for ts, cpu, ram in self.samples[name] if int(ts // 1) == second]
            if not inside or second <= newest - SECOND_SLOTS:
                shown.append(None)
                continue
            shown.append((len(inside), sum(c for c, _ in inside) / len(inside), sum(r for _, r in inside) / len(inside)))
        return shown


def observed(window: SecondWindow) -> list[tuple[int, float, float] | None]:
    return [
        (count, float(window.cpu_avg[i]), float(window.ram_avg[i])) if count else None
        for i, count in enumerate(window.samples.tolist())
    ]


loads = st.integers(0, 10_000_000).map(lambda n: n / 100_000)
offsets_ms = st.one_of(st.integers(-3_000, 1_000), st.integers(-130_000, 2_000), st.integers(-86_400_000, 60_000))
samples = st.tuples(st.sampled_from(["alpha", "beta"]), offsets_ms, loads, loads)
advances_ms = st.one_of(st.integers(0, 1_500), st.integers(0, 90_000))


@settings(max_examples=125)
@given(
    start_offset=st.integers(0, 100_000),
    steps=st.lists(st.tuples(advances_ms, st.lists(samples, max_size=30)), min_size=1, max_size=8),
)
def test_seconds_match_the_reference_model(
    start_offset: int, steps: list[tuple[int, list[tuple[str, int, float, float]]]]
) -> None:
    """Random batches: counts exact, averages within 0.01-rounding per batch that touched the second."""
    clock = FakeClock(EPOCH + start_offset / 1000)
    aggregator = Aggregator(max_servers=4, clock=clock)
    model = SecondsModel()
    tolerance = RESOLUTION / 2 * len(steps) + 1e-9
    for advance, drawn in steps:
        clock.advance(advance / 1000)
        batch = [(name, clock.now + offset / 1000, cpu, ram) for name, offset, cpu, ram in drawn]
        if batch:
            names, ts, cpu, ram = (list(column) for column in zip(*batch))
            aggregator.apply(names, ts, cpu, ram)
            model.apply(batch)
        for name in model.samples:
            windows = aggregator.windows(name)
            assert windows is not None
            assert windows.seconds.first_second == int(clock.now // 1) - SECONDS_SHOWN + 1
            for want, got in zip(model.window(name, clock.now), observed(windows.seconds), strict=True):
                if want is None or got is None:
                    assert want == got
                    continue
                assert got[0] == want[0]
                assert got[1] == pytest.approx(want[1], abs=tolerance)
                assert got[2] == pytest.approx(want[2], abs=tolerance)


def test_one_sample_a_second_is_kept_exactly_to_hundredths(clock: FakeClock) -> None:
    aggregator = Aggregator(max_servers=2, clock=clock)
    start = int(clock.now)
    for offset in range(90):  # more seconds than the ring holds: the oldest fall out
        clock.now = start + offset + 0.5
        aggregator.apply(["web"], [clock.now], [offset + 0.25], [100.0 - offset])
    window = aggregator.windows("web").seconds  # type: ignore[union-attr]
    assert window.first_second == start + 90 - SECONDS_SHOWN
    assert window.samples.tolist() == [1] * SECONDS_SHOWN
    assert window.cpu_avg.tolist() == [offset + 0.25 for offset in range(30, 90)]
    assert window.ram_avg.tolist() == [100.0 - offset for offset in range(30, 90)]


def test_a_second_merges_samples_of_several_batches(clock: FakeClock) -> None:
    aggregator = Aggregator(max_servers=2, clock=clock)
    second = int(clock.now)
    aggregator.apply(["web", "web"], [second + 0.1, second + 0.2], [10.0, 20.0], [1.0, 2.0])
    aggregator.apply(["web"], [second + 0.9], [60.0], [3.0])
    window = aggregator.windows("web").seconds  # type: ignore[union-attr]
    assert window.samples[-1] == 3
    assert window.cpu_avg[-1] == pytest.approx(30.0)
    assert window.ram_avg[-1] == pytest.approx(2.0)
    assert window.samples[:-1].sum() == 0


def test_a_flooded_second_counts_up_to_255_and_keeps_a_plausible_average(clock: FakeClock) -> None:
    aggregator = Aggregator(max_servers=2, clock=clock)
    second = int(clock.now)
    for _ in range(3):
        aggregator.apply(["web"] * 200, [second + 0.5] * 200, [50.0] * 200, [0.0] * 200)
    window = aggregator.windows("web").seconds  # type: ignore[union-attr]
    assert window.samples[-1] == MAX_SECOND_SAMPLES
    assert window.cpu_avg[-1] == 50.0
    assert window.ram_avg[-1] == 0.0


def test_an_empty_second_between_samples_is_empty_not_stale(clock: FakeClock) -> None:
    """A slot reused after the ring wrapped holds only the new second."""
    aggregator = Aggregator(max_servers=2, clock=clock)
    second = int(clock.now)
    aggregator.apply(["web"], [second + 0.5], [40.0], [40.0])
    clock.now = second + SECOND_SLOTS + 0.5  # the same slot, one lap later, with gaps in between
    aggregator.apply(["web"], [clock.now], [80.0], [10.0])
    window = aggregator.windows("web").seconds  # type: ignore[union-attr]
    assert window.samples.tolist() == [0] * (SECONDS_SHOWN - 1) + [1]
    assert (window.cpu_avg[-1], window.ram_avg[-1]) == (80.0, 10.0)


def test_evicted_servers_leave_no_seconds_behind(clock: FakeClock) -> None:
    aggregator = Aggregator(max_servers=1, clock=clock)
    aggregator.apply(["old"], [clock.now], [99.0], [99.0])
    clock.advance(24 * 3600 + 1)
    assert aggregator.evict_silent() == ["old"]
    aggregator.apply(["new"], [clock.now], [1.0], [2.0])
    window = aggregator.windows("new").seconds  # type: ignore[union-attr]
    assert int(np.count_nonzero(window.samples)) == 1
