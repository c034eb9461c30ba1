"""The aggregator against a naive reference model, plus its capacity and eviction rules."""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.aggregator import SILENCE_EVICTION_SECONDS, Aggregator
from servertrack.common.buckets import BucketWindow
from tests.conftest import EPOCH, FakeClock


class Sample(NamedTuple):
    ts: float
    cpu: float
    ram: float


class ReferenceModel:
    """Keeps every sample and answers windows by brute force."""

    def __init__(self) -> None:
        self.samples: dict[str, list[Sample]] = defaultdict(list)

    def apply(self, batch: list[tuple[str, float, float, float]]) -> None:
        for name, ts, cpu, ram in batch:
            self.samples[name].append(Sample(ts, cpu, ram))

    def window(self, name: str, now: float, width: int, shown: int) -> list[tuple | None]:
        current = int(now // width)
        result: list[tuple | None] = []
        for bucket in range(current - shown + 1, current + 1):
            inside = [s for s in self.samples[name] if int(s.ts // width) == bucket]
            if not inside:
                result.append(None)
                continue
            cpu = [s.cpu for s in inside]
            ram = [s.ram for s in inside]
            result.append((len(inside), sum(cpu) / len(cpu), min(cpu), max(cpu), sum(ram) / len(ram), min(ram), max(ram)))
        return result


def observed(window: BucketWindow) -> list[tuple | None]:
    result: list[tuple | None] = []
    for i, count in enumerate(window.samples.tolist()):
        if count == 0:
            result.append(None)
        else:
            result.append((
                count,
                window.cpu_sum[i] / count, float(window.cpu_min[i]), float(window.cpu_max[i]),
                window.ram_sum[i] / count, float(window.ram_min[i]), float(window.ram_max[i]),
            ))
    return result


def assert_same_windows(expected: list[tuple | None], actual: list[tuple | None]) -> None:
    assert len(expected) == len(actual)
    for want, got in zip(expected, actual):
        if want is None or got is None:
            assert want == got
            continue
        count, cpu_avg, cpu_min, cpu_max, ram_avg, ram_min, ram_max = got
        assert count == want[0]
        # min and max are exact for loads with up to five decimals; averages up to rounding
        assert (cpu_min, cpu_max, ram_min, ram_max) == (want[2], want[3], want[5], want[6])
        assert cpu_avg == pytest.approx(want[1], rel=1e-12, abs=1e-9)
        assert ram_avg == pytest.approx(want[4], rel=1e-12, abs=1e-9)


loads = st.integers(0, 10_000_000).map(lambda n: n / 100_000)  # [0, 100] with five decimals
offsets_ms = st.one_of(st.integers(-150_000, 60_000), st.integers(-86_400_000, 60_000))
samples = st.tuples(st.sampled_from(["alpha", "beta", "gamma"]), offsets_ms, loads, loads)
advances_ms = st.one_of(st.integers(0, 5_000), st.integers(0, 400_000), st.integers(0, 5 * 3_600_000))


@settings(max_examples=60)
@given(
    start_offset=st.integers(0, 7_200_000),
    steps=st.lists(st.tuples(advances_ms, st.lists(samples, max_size=40)), min_size=1, max_size=8),
    final_advance=advances_ms,
)
def test_windows_match_the_reference_model(
    start_offset: int, steps: list[tuple[int, list[tuple[str, int, float, float]]]], final_advance: int
) -> None:
    """Random samples, random timestamps, random batches, with minute/hour roll-over and ring wrap."""
    clock = FakeClock(EPOCH + start_offset / 1000)
    aggregator = Aggregator(max_servers=8, clock=clock)
    model = ReferenceModel()
    for advance, drawn in steps + [(final_advance, [])]:
        clock.advance(advance / 1000)
        batch = [(name, clock.now + offset / 1000, cpu, ram) for name, offset, cpu, ram in drawn]
        names, ts, cpu, ram = (list(column) for column in zip(*batch)) if batch else ([], [], [], [])
        assert aggregator.apply(names, ts, cpu, ram).applied == len(batch)
        model.apply(batch)
        for name in model.samples:
            windows = aggregator.windows(name)
            assert windows is not None
            assert_same_windows(model.window(name, clock.now, 60, 60), observed(windows.minutes))
            assert_same_windows(model.window(name, clock.now, 3600, 24), observed(windows.hours))


def test_hour_average_is_weighted_by_samples_not_a_mean_of_minutes(clock: FakeClock) -> None:
    aggregator = Aggregator(max_servers=4, clock=clock)
    clock.advance(1800)  # mid-hour: both minutes below are in the current hour
    minute_start = clock.now - clock.now % 60
    # minute A: one sample of 90; minute B (previous): three samples of 10
    aggregator.apply(["web"] * 4, [minute_start + 1, minute_start - 59, minute_start - 58, minute_start - 57],
                     [90.0, 10.0, 10.0, 10.0], [1.0, 1.0, 1.0, 1.0])
    windows = aggregator.windows("web")
    assert windows is not None
    hour = windows.hours
    assert hour.samples[-1] == 4
    assert hour.cpu_sum[-1] / hour.samples[-1] == 30.0  # the mean of minute means would be 50


def test_unknown_server_has_no_windows(clock: FakeClock) -> None:
    assert Aggregator(max_servers=4, clock=clock).windows("nobody") is None


def test_windows_have_60_minutes_and_24_hours_ending_now(clock: FakeClock) -> None:
    aggregator = Aggregator(max_servers=4, clock=clock)
    aggregator.apply(["web"], [clock.now], [1.0], [2.0])
    windows = aggregator.windows("web")
    assert windows is not None
    assert len(windows.minutes.samples) == 60 and len(windows.hours.samples) == 24
    assert windows.minutes.first_bucket + 59 == int(clock.now // 60)
    assert windows.hours.first_bucket + 23 == int(clock.now // 3600)
    assert windows.last_seen == clock.now


def test_new_servers_beyond_the_cap_are_refused_and_counted(clock: FakeClock) -> None:
    aggregator = Aggregator(max_servers=2, clock=clock)
    result = aggregator.apply(["a", "b", "c", "a", "d"], [clock.now] * 5, [1.0] * 5, [1.0] * 5)
    assert result == (3, 2)
    assert len(aggregator) == 2
    assert "c" not in aggregator and aggregator.windows("c") is None
    windows = aggregator.windows("a")
    assert windows is not None and windows.minutes.samples[-1] == 2


def test_servers_are_listed_sorted_and_paged(clock: FakeClock) -> None:
    aggregator = Aggregator(max_servers=10, clock=clock)
    aggregator.apply(["c", "a", "b", "d"], [clock.now] * 4, [1.0] * 4, [1.0] * 4)
    assert [name for name, _ in aggregator.servers()] == ["a", "b", "c", "d"]
    assert [name for name, _ in aggregator.servers(limit=2)] == ["a", "b"]
    assert [name for name, _ in aggregator.servers(limit=2, after="b")] == ["c", "d"]
    assert [name for name, _ in aggregator.servers(after="bb")] == ["c", "d"]
    assert aggregator.servers(after="d") == []
    aggregator.apply(["0"], [clock.now], [1.0], [1.0])
    assert aggregator.servers(limit=1) == [("0", clock.now)]


def test_servers_silent_for_24_hours_are_evicted_and_their_row_reused(clock: FakeClock) -> None:
    aggregator = Aggregator(max_servers=2, clock=clock)
    aggregator.apply(["old", "busy"], [clock.now] * 2, [50.0, 1.0], [50.0, 1.0])
    clock.advance(SILENCE_EVICTION_SECONDS - 10)
    aggregator.apply(["busy"], [clock.now], [1.0], [1.0])
    assert aggregator.evict_silent() == []
    clock.advance(11)
    assert aggregator.evict_silent() == ["old"]
    assert "old" not in aggregator and len(aggregator) == 1
    assert aggregator.evict_silent() == []
    # the freed row serves a new server, with none of the old one's data
    aggregator.apply(["new"], [clock.now], [7.0], [7.0])
    windows = aggregator.windows("new")
    assert windows is not None
    assert int(windows.hours.samples.sum()) == 1 and windows.hours.cpu_sum[-1] == 7.0
    assert aggregator.apply(["another"], [clock.now], [1.0], [1.0]).refused == 1


def test_empty_batch_is_a_no_op(clock: FakeClock) -> None:
    aggregator = Aggregator(max_servers=2, clock=clock)
    assert aggregator.apply([], [], [], []) == (0, 0)
    assert len(aggregator) == 0
