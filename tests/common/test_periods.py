"""Closing periods: what the rings emit, merged by key as a store would, plus what they still hold,
is every sample the minute and hour rings accepted, exactly once."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.aggregator import Aggregator
from servertrack.common.buckets import HOUR_SLOTS, MINUTE_SLOTS
from servertrack.common.periods import BUCKETS_PER_PERIOD, HistoryBlocks

START = 1_800_000_000  # a whole day: 2027-01-15T08:00:00Z is not, but alignment is the rings' business
NAMES = ["a", "b", "c"]

Key = tuple[str, int, int]  # name, period, part


class KeyedStore:
    """A naive store: base parts replace the block and drop its deltas; any part replaces its key."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[Key, dict[int, list[float]]]] = {60: {}, 3600: {}}

    def write(self, blocks: HistoryBlocks) -> None:
        stored = self.blocks[blocks.width]
        for i, name in enumerate(blocks.names):
            period, part = int(blocks.periods[i]), int(blocks.parts[i])
            if part == 0:
                for key in [key for key in stored if key[0] == name and key[1] == period]:
                    del stored[key]
            per_period = BUCKETS_PER_PERIOD[blocks.width]
            cells = {}
            for offset in range(per_period):
                if blocks.samples[i, offset]:
                    cells[period * per_period + offset] = [
                        float(blocks.samples[i, offset]), float(blocks.cpu_sum[i, offset]),
                        float(blocks.cpu_min[i, offset]), float(blocks.cpu_max[i, offset])]
            stored[(name, period, part)] = cells

    def bucket(self, width: int, name: str, bucket: int) -> tuple[int, float, float, float]:
        samples, total, low, high = 0, 0.0, np.inf, -np.inf
        for (stored_name, _, _), cells in self.blocks[width].items():
            if stored_name == name and bucket in cells:
                count, cpu_sum, cpu_min, cpu_max = cells[bucket]
                samples += int(count)
                total += cpu_sum
                low, high = min(low, cpu_min), max(high, cpu_max)
        return samples, total, low, high


samples_st = st.lists(
    st.tuples(st.sampled_from(NAMES), st.integers(-3 * 3600, 3 * 3600), st.integers(0, 10_000)),
    min_size=1, max_size=12)
chunks_st = st.lists(st.tuples(st.integers(0, 4 * 3600), samples_st), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(chunks=chunks_st, replay_from=st.integers(0, 30))
def test_emitted_blocks_and_rings_hold_every_accepted_sample_once(
    chunks: list[tuple[int, list[tuple[str, int, int]]]], replay_from: int
) -> None:
    now = [float(START)]
    aggregator = Aggregator(10, clock=lambda: now[0], closing=True)
    store = KeyedStore()
    model: dict[int, dict[tuple[str, int], list[int]]] = {60: defaultdict(list), 3600: defaultdict(list)}
    heads: dict[int, dict[str, int]] = {60: {}, 3600: {}}
    applied = []
    for chunk_id, (advance, drawn) in enumerate(chunks, start=1):
        now[0] += advance
        # keep samples within what the service accepts: 24 h ago to 60 s ahead
        drawn = [(name, min(max(offset, -86_000), 60), cpu) for name, offset, cpu in drawn]
        names = [name for name, _, _ in drawn]
        ts = np.array([now[0] + offset for _, offset, _ in drawn])
        cpu = np.array([cpu / 100.0 for _, _, cpu in drawn])
        for width, slots in ((60, MINUTE_SLOTS), (3600, HOUR_SLOTS)):
            newest: dict[str, int] = {}
            for name, t in zip(names, ts):
                newest[name] = max(newest.get(name, 0), int(t // width))
            heads[width].update({name: max(heads[width].get(name, 0), b) for name, b in newest.items()})
            for name, t, load in zip(names, ts, cpu):
                bucket = int(t // width)
                if bucket > heads[width][name] - slots:
                    model[width][(name, bucket)].append(round(load * 100_000))
        aggregator.apply(names, ts, cpu, cpu, chunk_id=chunk_id, now=now[0])
        blocks = aggregator.take_closed()
        applied.append(blocks)
        for block in blocks:
            store.write(block)
    # a replay writes the same blocks again under the same keys: nothing counts twice
    for blocks in applied[replay_from:]:
        for block in blocks:
            store.write(block)
    for width in (60, 3600):
        for (name, bucket), loads in model[width].items():
            ring = aggregator.ring_range(name, width, bucket, 1)
            assert ring is not None
            window, held = ring
            if held[0]:
                got = (int(window.samples[0]), round(float(window.cpu_sum[0]) * 100_000),
                       round(float(window.cpu_min[0]) * 100_000), round(float(window.cpu_max[0]) * 100_000))
            else:
                count, total, low, high = store.bucket(width, name, bucket)
                got = (count, round(total * 100_000), int(low), int(high))
            assert got == (len(loads), sum(loads), min(loads), max(loads)), (width, name, bucket)


def test_an_evicted_server_emits_its_open_periods() -> None:
    now = [float(START)]
    aggregator = Aggregator(4, clock=lambda: now[0], closing=True)
    aggregator.apply(["a"], [now[0]], [10.0], [20.0], chunk_id=1)
    assert aggregator.take_closed() == []
    now[0] += 25 * 3600  # silent 24 h, but a late sample could still fall in the day it wrote
    assert aggregator.evict_silent() == []
    now[0] += 24 * 3600
    assert aggregator.evict_silent() == ["a"]
    blocks = aggregator.take_closed()
    assert sorted(block.width for block in blocks) == [60, 3600]
    for block in blocks:
        assert block.names == ["a"] and block.parts.tolist() == [0]
        assert int(block.samples.sum()) == 1


def test_a_ring_without_closing_emits_nothing() -> None:
    now = [float(START)]
    aggregator = Aggregator(4, clock=lambda: now[0])
    for step in range(3):
        aggregator.apply(["a"], [now[0] + step * 3600], [1.0], [1.0])
    assert aggregator.take_closed() == []
