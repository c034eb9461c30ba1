"""Ring cell arrays: exact counters that widen instead of overflowing, and packed 24-bit extremes, against
plain Python integers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.ring_cells import (
    EXTREME_TOP,
    WideCells,
    pack_extremes,
    unpack_extremes,
)

SHAPE = (3, 5, 4096)  # 3 blocks of 5 slots
CELLS = 3 * 5 * 4096


def add(cells: WideCells, flat: list[int], values: list[int]) -> bool:
    return cells.add(np.array(flat, dtype=np.int64), np.array(values, dtype=np.int64))


def value(cells: WideCells, index: int) -> int:
    return int(cells.take(np.array([index], dtype=np.int64))[0])


@pytest.mark.parametrize(("low", "steps", "high_after"), [
    # a minute bucket's count: 8 bits at 1 Hz, a high byte from 256, 16 high bits from 65,536
    (np.uint8, [255, 1, 65_535 - 256, 1, 2**24 - 1 - 65_536, 1], [None, "u1", "u1", "u2", "u2", "u4"]),
    # a minute bucket's sum in 1e-5 percent: 429 and 430 samples of 100 %, then past 2**40
    (np.uint32, [429 * 10**7, 10**7, 2**40 - 430 * 10**7 - 1, 1], [None, "u1", "u1", "u2"]),
])
def test_every_bound_is_crossed_exactly(low: type[np.unsignedinteger], steps: list[int],
                                        high_after: list[str | None]) -> None:
    cells = WideCells(SHAPE, low)
    total = 0
    for step, high in zip(steps, high_after, strict=True):
        add(cells, [7, 8], [step, 1])
        total += step
        assert value(cells, 7) == total
        assert (None if cells.high is None else cells.high.dtype.str[1:]) == high
    assert value(cells, 8) == len(steps)


def test_a_high_array_appears_only_with_the_first_carry_and_holds_only_carries() -> None:
    cells = WideCells(SHAPE, np.uint8)
    add(cells, list(range(0, CELLS, 97)), [255] * len(range(0, CELLS, 97)))
    assert cells.high is None and list(cells.arrays()) == [""]
    add(cells, [97 * 5], [1])
    assert cells.high is not None and list(cells.arrays()) == ["", "_high"]
    assert np.flatnonzero(cells.high).tolist() == [97 * 5]
    cells.clear(np.array([97 * 5, 97 * 6], dtype=np.int64))
    assert not cells.high.any()
    assert value(cells, 97 * 5) == 0 and value(cells, 97 * 6) == 0 and value(cells, 97 * 7) == 255


def test_widening_keeps_every_value_and_reports_it() -> None:
    cells = WideCells(SHAPE, np.uint8, np.uint8)
    block = 5 * 4096
    assert not add(cells, [3, block * 2 + 9], [300, 4_400])  # high bytes 1 and 17: no widening
    assert add(cells, [3], [255 * 256])  # high 1 + 255 > 255: widened to 16 bits
    assert cells.high is not None and cells.high.dtype == np.uint16
    assert value(cells, 3) == 300 + 255 * 256 and value(cells, block * 2 + 9) == 4_400
    assert not add(cells, [block * 2 + 9], [1])


def test_the_ceiling_is_held_not_wrapped() -> None:
    assert WideCells(SHAPE, np.uint8, np.uint32).top == 2**40 - 1
    cells = WideCells(SHAPE, np.uint32, np.uint32)
    assert cells.top == 2**63 - 1
    add(cells, [1], [2**62])
    add(cells, [1], [2**62])
    add(cells, [1], [2**62])
    assert value(cells, 1) == 2**63 - 1


def test_use_high_refuses_what_it_cannot_hold() -> None:
    cells = WideCells(SHAPE, np.uint8, np.uint16)
    with pytest.raises(ValueError):
        cells.use_high(np.dtype(np.uint8))  # narrower than the array is
    with pytest.raises(ValueError):
        cells.use_high(np.dtype(np.float64))
    assert not cells.use_high(np.dtype(np.uint16))


operations = st.lists(st.one_of(
    st.tuples(st.just("add"), st.lists(st.tuples(st.integers(0, 40), st.one_of(
        st.integers(0, 300), st.integers(0, 10**8), st.integers(0, 2**41), st.integers(0, 2**58))), max_size=12)),
    st.tuples(st.just("clear"), st.lists(st.integers(0, 40), max_size=6)),
), max_size=30)


@settings(max_examples=300)
@given(low=st.sampled_from([np.uint8, np.uint16, np.uint32]), ops=operations)
def test_cells_equal_plain_integers(low: type[np.unsignedinteger], ops: list) -> None:
    cells = WideCells(SHAPE, low)
    ceiling = min(2 ** (np.iinfo(low).bits + 32) - 1, 2**63 - 1)  # out of reach of real traffic
    spread = np.arange(41, dtype=np.int64) * 1499  # cells in every block and slot
    model = [0] * 41
    for kind, arguments in ops:
        if kind == "add":
            merged: dict[int, int] = {}
            for index, amount in arguments:
                merged[index] = merged.get(index, 0) + amount
            add(cells, [int(spread[index]) for index in merged], list(merged.values()))
            for index, amount in merged.items():
                model[index] = min(model[index] + amount, ceiling)
        else:
            distinct = sorted(set(arguments))
            cells.clear(spread[distinct])
            for index in distinct:
                model[index] = 0
        assert cells.take(spread).tolist() == model


@given(st.lists(st.tuples(*[st.integers(0, EXTREME_TOP)] * 4), min_size=1, max_size=50))
def test_four_extremes_round_trip_through_three_words(values: list[tuple[int, int, int, int]]) -> None:
    columns = [np.array(column, dtype=np.uint32) for column in zip(*values)]
    words = pack_extremes(*columns)
    assert all(word.dtype == np.uint32 for word in words) and len(words) == 3
    assert [column.tolist() for column in unpack_extremes(*words)] == [column.tolist() for column in columns]
