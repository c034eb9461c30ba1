"""The history codec: lossless round trips (counts, min/max exact; sums exact in 1e-5 units), damaged
bytes refused as ``CorruptBlock`` and nothing else, merge, and what the packing costs."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.store.history_codec import (
    BlockCells,
    CorruptBlock,
    decode,
    decode_many,
    empty_cells,
    encode,
    encode_many,
    merge,
)

TOP = 2**32 - 1
LOAD_TOP = 10_000_000  # 100 % in units of 1e-5


def units(sums: np.ndarray) -> np.ndarray:
    """Sums as the fixed-point integers the round trip keeps exactly."""
    return np.rint(np.asarray(sums) * 1e5)


def assert_same(decoded: BlockCells, original: BlockCells) -> None:
    """``decoded`` holds what ``original`` held: exact counts, min and max, sums to 1e-5; empty buckets zero."""
    filled = np.asarray(original.samples) > 0
    assert decoded.samples.dtype == np.uint32 and decoded.cpu_sum.dtype == np.float64
    np.testing.assert_array_equal(decoded.samples, original.samples)
    for name in ("cpu_min", "cpu_max", "ram_min", "ram_max"):
        assert getattr(decoded, name).dtype == np.uint32
        np.testing.assert_array_equal(getattr(decoded, name), np.where(filled, getattr(original, name), 0), name)
    for name in ("cpu_sum", "ram_sum"):
        np.testing.assert_array_equal(units(getattr(decoded, name)), np.where(filled, units(getattr(original, name)), 0),
                                      name)


@st.composite
def load_cells(draw: st.DrawFn, count: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums (float percent), min and max (fixed point) consistent with ``count`` samples per bucket, every
    sample a multiple of ``resolution`` units within 0..100 %."""
    steps = LOAD_TOP // resolution
    low = np.array(draw(st.lists(st.integers(0, steps), min_size=count.size, max_size=count.size)), dtype=np.int64)
    spread = np.array(draw(st.lists(st.integers(0, steps), min_size=count.size, max_size=count.size)), dtype=np.int64)
    high = np.minimum(low + spread, steps)
    position = np.array(draw(st.lists(st.floats(0, 1), min_size=count.size, max_size=count.size)))
    # one sample at min, one at max (when count >= 2), the rest anywhere in between
    inner = np.maximum(count.astype(np.int64) - 2, 0)
    total = np.where(count == 1, low, low + high + np.floor(inner * (low + (high - low) * position)).astype(np.int64))
    total = np.where(count == 0, 0, total)
    high = np.where(count == 1, low, high)
    return total * resolution / 1e5, (low * resolution).astype(np.uint32), (high * resolution).astype(np.uint32)


@st.composite
def blocks(draw: st.DrawFn, buckets: int | None = None) -> BlockCells:
    """One block: any counts 0..2**32-1 (often 0, often one value for all), loads at a resolution of
    1e-5 to 0.01 %."""
    size = buckets if buckets is not None else draw(st.sampled_from([24, 60]))
    count_strategy = st.one_of(st.just(0), st.integers(1, 3600), st.integers(0, TOP))
    if draw(st.booleans()):
        count = np.full(size, draw(count_strategy), dtype=np.int64)
        count[np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size)))] = 0
    else:
        count = np.array(draw(st.lists(count_strategy, min_size=size, max_size=size)), dtype=np.int64)
    resolution = draw(st.sampled_from([1, 10, 100, 1000]))
    cpu = draw(load_cells(count, resolution))
    ram = draw(load_cells(count, resolution))
    return BlockCells(count.astype(np.uint32), cpu[0], ram[0], cpu[1], cpu[2], ram[1], ram[2])


def stacked(cells: list[BlockCells]) -> BlockCells:
    return BlockCells._make(np.stack(fields) for fields in zip(*cells))


def walk_block(rng: np.random.Generator, minutes: int, per_minute: int, resolution: int) -> BlockCells:
    """An hour (or day) of a load sampled every second: a random walk, reported at ``resolution`` units."""
    def load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        walk = np.cumsum(rng.normal(0, 0.1, minutes * per_minute)) + 40.0
        fixed = (np.rint(np.clip(walk, 0, 100) * 1e5 / resolution) * resolution).astype(np.int64).reshape(minutes, per_minute)
        return (fixed / 1e5).sum(axis=1), fixed.min(axis=1).astype(np.uint32), fixed.max(axis=1).astype(np.uint32)
    cpu, ram = load(), load()
    return BlockCells(np.full(minutes, per_minute, np.uint32), cpu[0], ram[0], cpu[1], cpu[2], ram[1], ram[2])


@given(blocks())
def test_a_block_round_trips(cells: BlockCells) -> None:
    assert_same(decode(encode(cells), cells.samples.size), cells)


@settings(max_examples=20)
@given(st.lists(blocks(60), min_size=1, max_size=12))
def test_many_blocks_round_trip_and_each_blob_stands_alone(cells: list[BlockCells]) -> None:
    blobs = encode_many(stacked(cells))
    assert blobs == [encode(one) for one in cells]
    decoded = decode_many(blobs, 60)
    for row, one in enumerate(cells):
        assert_same(BlockCells._make(field[row] for field in decoded), one)


def test_blocks_beyond_one_chunk_round_trip() -> None:
    rng = np.random.default_rng(7)
    cells = stacked([walk_block(rng, 60, 60, 1000) for _ in range(300)])
    cells.samples[5, 10:20] = 0  # a partial block among full ones
    decoded = decode_many(encode_many(cells), 60)
    for row in range(300):
        assert_same(BlockCells._make(field[row] for field in decoded), BlockCells._make(field[row] for field in cells))


def test_sums_round_trip_in_fixed_point_even_when_accumulated_in_floats() -> None:
    # an aggregator adds 1e-5 multiples in float64: the sum is near, not at, units / 1e5
    values = np.array([12.34567, 0.00001, 99.99999, 33.3] * 15)
    cells = empty_cells(60)
    cells.samples[0] = values.size
    cells.cpu_sum[0] = sum(values.tolist())
    cells.ram_sum[0] = float(np.sum(values))
    cells.cpu_min[0] = cells.ram_min[0] = 1
    cells.cpu_max[0] = cells.ram_max[0] = 9_999_999
    decoded = decode(encode(cells), 60)
    assert units(decoded.cpu_sum[0]) == units(cells.cpu_sum[0]) and units(decoded.ram_sum[0]) == units(cells.ram_sum[0])


def test_what_an_empty_bucket_holds_is_not_kept() -> None:
    cells = empty_cells(24)
    cells.cpu_sum[3], cells.cpu_min[3], cells.ram_max[3] = 5.0, 7, 9  # no samples: meaningless
    decoded = decode(encode(cells), 24)
    assert all(not np.any(field) for field in decoded)


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), -float("inf"), 2.0**60, 1e300])
def test_sums_fixed_point_cannot_hold_are_kept_exactly_as_plain_arrays(value: float) -> None:
    cells = walk_block(np.random.default_rng(1), 60, 60, 1000)
    cells.ram_sum[17] = value
    blob = encode(cells)
    decoded = decode(blob, 60)
    np.testing.assert_array_equal(decoded.ram_sum, cells.ram_sum)  # bit for bit, NaN included
    np.testing.assert_array_equal(decoded.cpu_sum, cells.cpu_sum)
    np.testing.assert_array_equal(decoded.cpu_min, cells.cpu_min)


def test_loads_outside_the_domain_still_round_trip() -> None:
    # max below min, a sum far above count * 100 %, min and max at the uint32 limits
    cells = empty_cells(60)
    cells.samples[:] = TOP
    cells.cpu_min[:], cells.cpu_max[:] = TOP, 0
    cells.ram_min[:], cells.ram_max[:] = 0, TOP
    cells.cpu_sum[:] = 2.0**40 / 1e5 * np.arange(60)
    cells.ram_sum[:] = 1e9
    assert_same(decode(encode(cells), 60), cells)


# ---------------------------------------------------------------- damaged bytes


def with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


@given(st.binary(max_size=600))
def test_arbitrary_bytes_are_refused_as_corrupt_blocks(blob: bytes) -> None:
    with pytest.raises(CorruptBlock):
        decode(blob, 60)


@given(st.sampled_from([24, 60]), st.sampled_from([1, 2, 0, 3, 255]), st.binary(max_size=700))
@settings(max_examples=400)
def test_bytes_with_a_valid_checksum_decode_or_are_refused_never_crash(buckets: int, kind: int, tail: bytes) -> None:
    try:
        cells = decode(with_crc(bytes((kind, buckets)) + tail), buckets)
    except CorruptBlock:
        return
    assert cells.samples.shape == (buckets,)
    assert not np.any(cells.cpu_min[cells.samples == 0])


@given(blocks(60), st.data())
def test_any_damage_to_a_blob_is_detected(cells: BlockCells, data: st.DataObject) -> None:
    blob = bytearray(encode(cells))
    how = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if how == "flip":
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        del blob[data.draw(st.integers(0, len(blob) - 1)):]
    else:
        blob += data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(CorruptBlock):
        decode(bytes(blob), 60)


def test_a_block_of_another_width_is_refused() -> None:
    blob = encode(empty_cells(24))
    with pytest.raises(CorruptBlock, match="24 buckets, not 60"):
        decode(blob, 60)


def test_decode_many_names_the_bad_blob() -> None:
    good = encode(empty_cells(60))
    with pytest.raises(CorruptBlock, match="block 2"):
        decode_many([good, good, good[:-1] + bytes([good[-1] ^ 1])], 60)


def test_shapes_outside_a_block_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_many(empty_cells(60))  # one block's arrays, not [blocks, buckets]
    with pytest.raises(ValueError):
        encode_many(empty_cells((2, 256)))
    assert encode_many(empty_cells((0, 60))) == []
    assert decode_many([], 60).samples.shape == (0, 60)


# ---------------------------------------------------------------- merge


@given(blocks(24), blocks(24))
def test_merge_adds_counts_and_sums_and_keeps_the_extremes_of_filled_buckets(a: BlockCells, b: BlockCells) -> None:
    a, b = decode(encode(a), 24), decode(encode(b), 24)
    merged = merge(a, b)
    for bucket in range(24):
        sides = [side for side in (a, b) if side.samples[bucket] > 0]
        assert merged.samples[bucket] == min(TOP, sum(int(side.samples[bucket]) for side in sides))
        assert merged.cpu_sum[bucket] == a.cpu_sum[bucket] + b.cpu_sum[bucket]
        assert merged.ram_min[bucket] == (min(int(side.ram_min[bucket]) for side in sides) if sides else 0)
        assert merged.cpu_max[bucket] == (max(int(side.cpu_max[bucket]) for side in sides) if sides else 0)


def test_merging_with_nothing_changes_nothing() -> None:
    cells = walk_block(np.random.default_rng(3), 24, 3600, 1000)
    cells.samples[4] = 0
    cells = decode(encode(cells), 24)
    for merged in (merge(cells, empty_cells(24)), merge(empty_cells(24), cells)):
        for got, expected in zip(merged, cells):
            np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------- what it costs


def test_an_hour_at_one_hertz_and_agent_resolution_packs_into_a_few_bytes_a_minute() -> None:
    rng = np.random.default_rng(11)
    sizes = [len(encode(walk_block(rng, 60, 60, 1000))) for _ in range(20)]
    assert max(sizes) / 60 <= 10  # both loads, sum + min + max each: Netdata keeps ~6 bytes per metric
    fine = [len(encode(walk_block(rng, 60, 60, 1))) for _ in range(20)]
    assert max(fine) / 60 <= 20  # at 1e-5 resolution every value carries ~10 bits more


def test_empty_buckets_and_equal_counts_cost_almost_nothing() -> None:
    assert len(encode(empty_cells(60))) <= 24
    one = empty_cells(60)
    one.samples[30], one.cpu_sum[30], one.ram_sum[30] = 60, 600.0, 1200.0
    one.cpu_min[30] = one.cpu_max[30] = 1_000_000
    one.ram_min[30] = one.ram_max[30] = 2_000_000
    assert len(encode(one)) <= 40
    steady = walk_block(np.random.default_rng(5), 60, 60, 1000)
    varying = steady._replace(samples=steady.samples.copy())
    varying.samples[::2] = 59  # one sample short every other minute (sums untouched: still packable)
    assert len(encode(steady)) < len(encode(varying))
