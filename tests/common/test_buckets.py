"""Time buckets: UTC alignment, and the ring's wipe-on-advance discipline."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from servertrack.common.buckets import (
    BucketRing,
    from_fixed_point,
    group_samples,
    hour_of,
    iso_utc,
    minute_of,
    to_fixed_point,
)


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
    assert groups.cpu_sum.tolist() == [20.0, 40.0, 40.0]
    assert from_fixed_point(groups.cpu_min).tolist() == [20.0, 10.0, 40.0]
    assert from_fixed_point(groups.ram_max).tolist() == [2.0, 3.0, 4.0]


@given(width=st.sampled_from([1, 60, 3600]), first=st.integers(0, 253_402_300_799 // 3600 - 100),
       count=st.integers(0, 70), suffix=st.sampled_from(["Z", ""]))
def test_bucket_starts_are_the_iso_times_of_each_bucket(width: int, first: int, count: int, suffix: str) -> None:
    from servertrack.common.buckets import bucket_starts, iso_utc

    first = first * 3600 // width + first % 997  # anywhere, not only on hour boundaries
    assert bucket_starts(first, width, count, suffix) == [iso_utc((first + i) * width)[:-1] + suffix
                                                          for i in range(count)]
