"""Time buckets: UTC alignment, and the ring's wipe-on-advance discipline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.aggregator import Aggregator
from servertrack.common.buckets import (
    BucketGroups,
    BucketRing,
    from_fixed_point,
    group_samples,
    hour_of,
    iso_utc,
    minute_of,
    to_fixed_point,
)
from tests.conftest import FakeClock


def test_buckets_are_utc_aligned() -> None:
    assert minute_of(1_800_000_059.999) == 30_000_000
    assert minute_of(1_800_000_060.0) == 30_000_001
    assert hour_of(1_799_996_400.0) == 499_999
    assert hour_of(1_799_999_999.9) == 499_999
    assert iso_utc(30_000_001 * 60) == "2027-01-15T08:01:00Z"
    assert iso_utc(499_999 * 3600) == "2027-01-15T07:00:00Z"


def test_fixed_point_is_exact_to_five_decimals() -> None:
    values = np.array([0.0, 0.00001, 12.3, 33.33333, 99.99999, 100.0])
    assert from_fixed_point(to_fixed_point(values)).tolist() == values.tolist()


def add(ring: BucketRing, row: int, bucket: int, cpu: float, ram: float = 0.0) -> None:
    groups = group_samples(np.array([row]), np.array([bucket]), np.array([cpu]), np.array([ram]))
    ring.add(groups)


def counts(ring: BucketRing, row: int, current: int) -> list[int]:
    return ring.window(row, current).samples.tolist()


def test_window_is_oldest_first_ending_with_current() -> None:
    ring = BucketRing(capacity=2, width=60, slots=5, shown=4)
    add(ring, 0, 100, 10.0)
    add(ring, 0, 102, 20.0)
    add(ring, 0, 102, 30.0)
    window = ring.window(0, 103)
    assert window.first_bucket == 100
    assert window.samples.tolist() == [1, 0, 2, 0]
    assert window.cpu_sum[2] == 50.0
    assert (window.cpu_min[2], window.cpu_max[2]) == (20.0, 30.0)


def test_slot_of_a_previous_cycle_is_never_read_as_current() -> None:
    ring = BucketRing(capacity=1, width=60, slots=5, shown=4)
    add(ring, 0, 100, 10.0)
    add(ring, 0, 105, 50.0)  # same slot as 100, one cycle later
    assert counts(ring, 0, 105) == [0, 0, 0, 1]
    window = ring.window(0, 105)
    assert (window.cpu_min[3], window.cpu_max[3], window.cpu_sum[3]) == (50.0, 50.0, 50.0)


def test_a_long_silence_wipes_the_whole_row() -> None:
    ring = BucketRing(capacity=1, width=60, slots=5, shown=4)
    for bucket in range(100, 105):
        add(ring, 0, bucket, 1.0)
    add(ring, 0, 1_000, 2.0)
    assert counts(ring, 0, 1_000) == [0, 0, 0, 1]
    assert counts(ring, 0, 1_003) == [1, 0, 0, 0]


def test_silent_row_reads_empty_past_its_head() -> None:
    ring = BucketRing(capacity=1, width=60, slots=5, shown=4)
    add(ring, 0, 100, 1.0)
    assert counts(ring, 0, 103) == [1, 0, 0, 0]
    assert counts(ring, 0, 104) == [0, 0, 0, 0]


def test_a_future_bucket_keeps_the_oldest_shown_bucket() -> None:
    # the spare slot: head one bucket ahead of the current one
    ring = BucketRing(capacity=1, width=60, slots=5, shown=4)
    add(ring, 0, 100, 1.0)
    add(ring, 0, 104, 2.0)  # current is 103, this sample is "next minute"
    assert counts(ring, 0, 103) == [1, 0, 0, 0]
    assert counts(ring, 0, 104) == [0, 0, 0, 1]


def test_samples_older_than_the_ring_are_skipped() -> None:
    ring = BucketRing(capacity=1, width=60, slots=5, shown=4)
    add(ring, 0, 110, 1.0)
    add(ring, 0, 105, 9.0)  # 110 - 5: no longer held
    assert counts(ring, 0, 110) == [0, 0, 0, 1]
    assert ring.window(0, 110).cpu_max[3] == 1.0


def test_forgotten_row_is_wiped_on_next_write() -> None:
    ring = BucketRing(capacity=1, width=60, slots=5, shown=4)
    add(ring, 0, 100, 1.0)
    ring.forget(np.array([0]))
    assert counts(ring, 0, 100) == [0, 0, 0, 0]
    add(ring, 0, 100, 5.0)
    assert counts(ring, 0, 100) == [0, 0, 0, 1]
    assert ring.window(0, 100).cpu_sum[3] == 5.0


def test_group_samples_sums_per_row_and_bucket() -> None:
    groups = group_samples(
        rows=np.array([1, 0, 1, 1]),
        buckets=np.array([7, 7, 7, 8]),
        cpu=np.array([10.0, 20.0, 30.0, 40.0]),
        ram=np.array([1.0, 2.0, 3.0, 4.0]),
    )
    assert groups.rows.tolist() == [0, 1, 1]
    assert groups.buckets.tolist() == [7, 7, 8]
    assert groups.samples.tolist() == [1, 2, 1]
    assert groups.cpu_sum.tolist() == [2_000_000, 4_000_000, 4_000_000]  # exact, in 1e-5 percent
    assert from_fixed_point(groups.ram_sum).tolist() == [2.0, 4.0, 4.0]
    assert from_fixed_point(groups.cpu_min).tolist() == [20.0, 10.0, 40.0]
    assert from_fixed_point(groups.ram_max).tolist() == [2.0, 3.0, 4.0]


@given(width=st.sampled_from([1, 60, 3600]), first=st.integers(0, 253_402_300_799 // 3600 - 100),
       count=st.integers(0, 70), suffix=st.sampled_from(["Z", ""]))
def test_bucket_starts_are_the_iso_times_of_each_bucket(width: int, first: int, count: int, suffix: str) -> None:
    from servertrack.common.buckets import bucket_starts, iso_utc

    first = first * 3600 // width + first % 997  # anywhere, not only on hour boundaries
    assert bucket_starts(first, width, count, suffix) == [iso_utc((first + i) * width)[:-1] + suffix
                                                          for i in range(count)]


# ---------------------------------------------------------------- narrow counters, exact past every bound


def test_a_ring_is_sized_for_one_sample_a_second() -> None:
    minutes = BucketRing(capacity=2, width=60, slots=61, shown=60)
    hours = BucketRing(capacity=2, width=3600, slots=25, shown=24)
    assert {name: cells.dtype.str for name, cells in minutes.named_cells().items()} == {
        "count": "|u1", "cpu_sum": "<u4", "ram_sum": "<u4",
        "cpu_min_word": "<u4", "cpu_max_word": "<u4", "ram_min_word": "<u4"}
    assert {name: cells.dtype.str for name, cells in hours.named_cells().items()} == {
        "count": "<u2", "cpu_sum": "<u4", "cpu_sum_high": "|u1", "ram_sum": "<u4", "ram_sum_high": "|u1",
        "cpu_min_word": "<u4", "cpu_max_word": "<u4", "ram_min_word": "<u4"}


def flood(aggregator: Aggregator, name: str, ts: float, samples: int, cpu: float, ram: float,
          batches: int = 1) -> None:
    for part in np.array_split(np.arange(samples), batches):
        aggregator.apply([name] * part.size, np.full(part.size, ts), np.full(part.size, cpu),
                         np.full(part.size, ram))


@pytest.mark.parametrize("samples", [255, 256, 429, 430, 65_535, 65_536, 200_000])
@pytest.mark.parametrize("batches", [1, 3])
def test_a_flooded_minute_and_hour_stay_exact(clock: FakeClock, samples: int, batches: int) -> None:
    """Samples of 100 % (and 33.33333 %) past the 8-bit count, the 32-bit sum (430 * 10**7 > 2**32)
    and the 16-bit count; in one batch or spread over several (carries across batches)."""
    aggregator = Aggregator(max_servers=4, clock=clock)
    aggregator.apply(["calm"], [clock.now], [12.5], [50.0])
    flood(aggregator, "web", clock.now, samples, 100.0, 33.33333, batches)
    windows = aggregator.windows("web")
    assert windows is not None
    for window in (windows.minutes, windows.hours):
        assert window.samples[-1] == samples
        assert window.cpu_sum[-1] == samples * 100.0
        assert round(window.ram_sum[-1] * 100_000) == samples * 3_333_333
        assert window.cpu_sum[-1] / samples == 100.0
        assert window.ram_sum[-1] / samples == pytest.approx(33.33333, rel=1e-12)
        assert (window.cpu_min[-1], window.cpu_max[-1], window.ram_min[-1], window.ram_max[-1]) == (
            100.0, 100.0, 33.33333, 33.33333)
        assert int(window.samples[:-1].sum()) == 0
    calm = aggregator.windows("calm")
    assert calm is not None
    assert (calm.minutes.samples[-1], calm.minutes.cpu_sum[-1], calm.hours.ram_max[-1]) == (1, 12.5, 50.0)


def test_an_hour_bucket_sums_past_2_to_the_32_and_40_units(clock: FakeClock) -> None:
    aggregator = Aggregator(max_servers=2, clock=clock)
    hour_start = clock.now - clock.now % 3600
    # one sample a second for an hour: 3.6e10 units, past 2**32 (and past the minute ring's 61 slots)
    seconds = hour_start + np.arange(3600) + 0.5
    clock.now = hour_start + 3599.9
    aggregator.apply(["web"] * 3600, seconds, np.full(3600, 100.0), np.full(3600, 99.99999))
    hours = aggregator.windows("web").hours  # type: ignore[union-attr]
    assert (hours.samples[-1], hours.cpu_sum[-1], round(hours.ram_sum[-1] * 100_000)) == (
        3600, 360_000.0, 3600 * 9_999_999)
    # then past 2**40 units (109,952 samples of 100 %): the high byte widens
    flood(aggregator, "web", clock.now, 110_000, 100.0, 0.0)
    hours = aggregator.windows("web").hours  # type: ignore[union-attr]
    assert (hours.samples[-1], hours.cpu_sum[-1], round(hours.ram_sum[-1] * 100_000)) == (
        113_600, 11_360_000.0, 3600 * 9_999_999)
    assert (hours.ram_min[-1], hours.ram_max[-1]) == (0.0, 99.99999)


def snapshot(aggregator: Aggregator, names: list[str]) -> dict[str, list]:
    out = {}
    for name in names:
        windows = aggregator.windows(name)
        assert windows is not None
        out[name] = [np.asarray(field).tolist() for window in (windows.minutes, windows.hours) for field in window]
    return out


def test_widening_keeps_every_earlier_value_and_marks_every_slot_changed(clock: FakeClock) -> None:
    aggregator = Aggregator(max_servers=5000, clock=clock)
    names = [f"srv-{i}" for i in range(4200)]  # two blocks of rows
    rng = np.random.default_rng(5)
    for minute in range(70):
        ts = clock.now - minute * 60 - rng.uniform(0, 3600 * 20, len(names)) * (minute % 3 == 0)
        aggregator.apply(names, ts, np.round(rng.uniform(0, 100, len(names)), 5),
                         np.round(rng.uniform(0, 100, len(names)), 2))
    before = snapshot(aggregator, names)
    minutes, hours = aggregator.named_rings().values()
    for ring in (minutes, hours):
        ring.take_dirty()
    flood(aggregator, "srv-4100", clock.now - 120, 110_000, 100.0, 100.0)  # minute and hour sums widen
    assert minutes.named_cells()["cpu_sum_high"].dtype == np.uint16
    assert hours.named_cells()["cpu_sum_high"].dtype == np.uint16
    assert minutes.take_dirty().size == minutes.slots and hours.take_dirty().size == hours.slots
    after = snapshot(aggregator, names)
    assert {name: got for name, got in after.items() if name != "srv-4100"} == {
        name: got for name, got in before.items() if name != "srv-4100"}
    flooded = aggregator.windows("srv-4100")
    assert flooded is not None
    assert flooded.minutes.samples[-3] == before["srv-4100"][2][-3] + 110_000


class RingModel:
    """What a ring holds, by brute force: exact sums per (row, bucket), buckets older than the row's
    newest minus the slots dropped."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.head: dict[int, int] = {}
        self.cells: dict[tuple[int, int], list[int]] = {}

    def add(self, groups: list[tuple[int, int, int, int, int, int, int, int, int]]) -> None:
        for row in {group[0] for group in groups}:
            newest = max(group[1] for group in groups if group[0] == row)
            self.head[row] = max(self.head.get(row, 0), newest)
        for key in [key for key in self.cells if key[1] <= self.head[key[0]] - self.slots]:
            del self.cells[key]
        for row, bucket, samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max in groups:
            if bucket <= self.head[row] - self.slots:
                continue
            cell = self.cells.setdefault((row, bucket), [0, 0, 0, 10**7, 0, 10**7, 0])
            cell[0] += samples
            cell[1] += cpu_sum
            cell[2] += ram_sum
            cell[3], cell[4] = min(cell[3], cpu_min), max(cell[4], cpu_max)
            cell[5], cell[6] = min(cell[5], ram_min), max(cell[6], ram_max)


group_st = st.tuples(st.integers(0, 4099), st.integers(1_000, 1_012), st.one_of(
    st.integers(1, 300), st.integers(1, 70_000), st.integers(1, 2_000_000)), st.integers(0, 10**7), st.integers(0, 10**7),
    st.integers(0, 10**7), st.integers(0, 10**7))


@settings(max_examples=50)
@given(batches=st.lists(st.lists(group_st, min_size=1, max_size=12), min_size=1, max_size=10),
       width=st.sampled_from([60, 3600]))
def test_a_ring_equals_exact_integers_whatever_it_receives(batches: list, width: int) -> None:
    """Groups as large as a flood makes them: counts and sums come back exact, min and max too."""
    slots = 5
    ring = BucketRing(capacity=4100, width=width, slots=slots, shown=slots - 1)
    model = RingModel(slots)
    for drawn in batches:
        merged: dict[tuple[int, int], tuple[int, ...]] = {}
        for row, bucket, samples, cpu_a, cpu_b, ram_a, ram_b in drawn:
            cpu_low, cpu_high = sorted((cpu_a, cpu_b))
            ram_low, ram_high = sorted((ram_a, ram_b))
            # sums consistent with the extremes: samples - 1 at the low end, one at the high end
            group = (samples, cpu_low * (samples - 1) + cpu_high, ram_low * (samples - 1) + ram_high,
                     cpu_low, cpu_high, ram_low, ram_high)
            old = merged.get((row, bucket))
            merged[row, bucket] = group if old is None else (
                old[0] + group[0], old[1] + group[1], old[2] + group[2], min(old[3], group[3]),
                max(old[4], group[4]), min(old[5], group[5]), max(old[6], group[6]))
        keys = sorted(merged)
        columns = list(zip(*(merged[key] for key in keys)))
        ring.add(BucketGroups(np.array([k[0] for k in keys], dtype=np.int64), np.array([k[1] for k in keys], dtype=np.int64),
                              *(np.array(column, dtype=np.int64) for column in columns[:3]),
                              *(np.array(column, dtype=np.uint32) for column in columns[3:])))
        model.add([(key[0], key[1], *merged[key]) for key in keys])
        for row, head in model.head.items():
            window, held = ring.read(row, head - slots + 1, slots)
            for i in range(slots):
                want = model.cells.get((row, head - slots + 1 + i))
                if want is None:
                    assert not (held[i] and window.samples[i])
                    continue
                assert held[i]
                got = [int(window.samples[i]), round(window.cpu_sum[i] * 100_000), round(window.ram_sum[i] * 100_000),
                       round(window.cpu_min[i] * 100_000), round(window.cpu_max[i] * 100_000),
                       round(window.ram_min[i] * 100_000), round(window.ram_max[i] * 100_000)]
                assert got == want


def test_loads_outside_0_to_100_are_clamped_not_spilled_into_neighbours() -> None:
    assert to_fixed_point(np.array([-5.0, 0.0, 100.0, 250.0])).tolist() == [0, 0, 10_000_000, 10_000_000]
