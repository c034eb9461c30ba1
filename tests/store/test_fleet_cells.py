"""How a reader builds a collector's hours from what the fleet wrote (``fleet_cells.split_hour_cells``,
``fleet_cells.provisional_hours``)."""

from __future__ import annotations

import numpy as np

from servertrack.store.fleet_cells import provisional_hours, split_hour_cells
from servertrack.store.fleet_directory import LIVE_DTYPE
from servertrack.store.history_codec import empty_cells, encode

HOUR = 480_000  # an hour number (UTC): hour 0 of day 20,000
DAY = HOUR // 24


def cell(samples: int, cpu: float, low: int = 100, high: int = 900) -> bytes:
    """A live cell of ``samples`` samples summing to ``cpu`` (and as much RAM)."""
    record = np.zeros(1, dtype=LIVE_DTYPE)
    record["samples"], record["cpu_sum"], record["ram_sum"] = samples, cpu, cpu
    record["cpu_min"], record["ram_min"], record["cpu_max"], record["ram_max"] = low, low, high, high
    return record.tobytes()


def hours_of(parts: list[tuple[int, str, bytes]], minutes: dict[int, list[tuple[str, bytes]]],
             own: str | None = None) -> tuple[dict[int, int], dict[int, int]]:
    """The samples per hour number of every collector, and of all but ``own``."""
    every, others = split_hour_cells(parts, minutes, HOUR + 2, DAY, 1, "test", own)
    return ({DAY * 24 + index: int(count) for index, count in enumerate(every.samples[0].tolist()) if count},
            {DAY * 24 + index: int(count) for index, count in enumerate(others.samples[0].tolist()) if count})


def test_the_current_hour_is_the_sum_of_a_collectors_minutes() -> None:
    minutes = {HOUR + 1: [("a/m0", cell(2, 20.0, 300, 700)), ("a/m5", cell(3, 90.0, 200, 800)),
                          ("b/m7", cell(1, 5.0))]}
    every, _ = split_hour_cells([], minutes, HOUR + 1, DAY, 1, "test", None)
    assert every.samples[0, 1] == 6 and every.cpu_sum[0, 1] == 115.0
    assert (every.cpu_min[0, 1], every.cpu_max[0, 1]) == (100, 900)  # min of mins, max of maxes
    assert hours_of([], minutes, own="b") == ({HOUR + 1: 6}, {HOUR + 1: 5})  # b's own minutes left out


def test_of_a_cell_a_provisional_copy_and_the_minutes_the_fullest_counts_alone() -> None:
    # a provisional copy older than the minutes: the minutes; an hour's cell holding a sample the minutes do
    # not (it came more than an hour late): the cell; never two of them added
    parts = [(DAY, "a/p1", cell(2, 20.0)), (DAY, "a/m2", cell(9, 90.0)), (DAY, "a/p3", cell(4, 40.0))]
    minutes = {HOUR + 1: [("a/m0", cell(5, 50.0))], HOUR + 2: [("a/m0", cell(8, 80.0))]}
    assert hours_of(parts, minutes)[0] == {HOUR + 1: 5, HOUR + 2: 9, HOUR + 3: 4}


def test_a_closed_day_is_read_from_its_base_not_from_its_last_minutes() -> None:
    base = empty_cells(24)
    base.samples[23], base.cpu_sum[23] = 60, 600.0
    for field in (base.cpu_min, base.cpu_max, base.ram_min, base.ram_max):
        field[23] = 500
    base.ram_sum[23] = 600.0
    last_hour = HOUR + 23
    parts = [(DAY, "a/0", encode(base))]
    minutes = {last_hour: [("a/0", b"?"), ("a/m59", cell(60, 600.0))]}  # the minutes' block, never decoded
    assert hours_of(parts, minutes)[0] == {last_hour: 60}


def test_an_hour_before_the_current_one_with_its_cell_written_is_that_cell() -> None:
    # written once the hour was over, it holds all the hour got (the minutes may miss a sample that came
    # more than an hour late); the hour's closed minutes block is then not decoded again
    parts = [(DAY, "a/m1", cell(3, 30.0))]
    minutes = {HOUR + 1: [("a/0", b"?"), ("a/m5", cell(5, 50.0))], HOUR + 2: [("a/m0", cell(1, 10.0))]}
    every, _ = split_hour_cells(parts, minutes, HOUR + 2, DAY, 1, "test", None)
    assert every.samples[0, 1:3].tolist() == [3, 1]


def test_an_hour_a_collector_stopped_in_is_the_one_with_only_a_provisional_copy() -> None:
    fields = [(day, field, cell(1, 1.0)) for day, field in [
        (DAY, "a/p3"),  # a stopped in hour 3 of the day
        (DAY, "b/p4"), (DAY, "b/m4"),  # b's hour 4 was over: its cell replaced the copy
        (DAY, "c/p5"), (DAY, "c/0"),  # c closed the day: its base holds the hour
        (DAY + 1, "a/p0"), (DAY + 1, "b/p1"),  # the current hour (read anyway) and a stopped b
        (DAY, "a/m2"), (DAY, "b/7"), (DAY, "x/p99"), (DAY, "pm"), (DAY, "a/pX")]]  # not provisional copies
    assert provisional_hours(fields, at_hand={HOUR + 24}) == {HOUR + 3, HOUR + 25}
    assert provisional_hours(fields) == {HOUR + 3, HOUR + 24, HOUR + 25}
    assert provisional_hours([]) == set()
    # given its minutes, the hour it stopped in counts them, not the copy a minute behind
    minutes = {HOUR + 1: [("a/m0", cell(2, 20.0)), ("a/m1", cell(1, 5.0))]}
    assert hours_of([(DAY, "a/p1", cell(2, 20.0))], minutes)[0] == {HOUR + 1: 3}  # hour 2 is the current one
