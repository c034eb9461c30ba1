"""Blocks queued for the store and not written yet read as if they were written."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.periods import HistoryBlocks
from servertrack.store.durable import HistoryView
from servertrack.store.pending import PendingBlocks
from servertrack.store.sqlite_store import SqliteStore

PERIOD = 500_000  # an hour number: minute blocks of 60 buckets


def block(name: str, period: int, part: int, filled: list[tuple[int, int, int]]) -> HistoryBlocks:
    """One minute block; ``filled`` = (bucket offset, samples, load in 1e-5 units)."""
    samples = np.zeros((1, 60), dtype=np.uint32)
    loads = np.zeros((1, 60), dtype=np.uint32)
    for offset, count, load in filled:
        samples[0, offset], loads[0, offset] = count, load
    sums = samples * loads / 100_000.0
    return HistoryBlocks(60, [name], np.array([period]), np.array([part]), samples, sums, sums.copy(),
                         loads.copy(), loads.copy(), loads.copy(), loads.copy())


blocks_st = st.lists(st.builds(
    block, st.sampled_from(["a", "b"]), st.sampled_from([PERIOD, PERIOD + 1]), st.sampled_from([0, 0, 3, 4, 5, 7]),
    st.lists(st.tuples(st.integers(0, 59), st.integers(1, 60), st.integers(0, 10_000_000)), min_size=1, max_size=4,
             unique_by=lambda cell: cell[0])), min_size=1, max_size=10)


@settings(max_examples=60, deadline=None)
@given(blocks=blocks_st, split=st.integers(0, 10))
def test_a_read_sees_pending_blocks_exactly_as_written_ones(blocks: list[HistoryBlocks], split: int) -> None:
    # a delta's key (server, period, chunk id) is emitted once in a run: number them so (replays are
    # written before the service serves, never pending)
    blocks = [blocks_ if int(blocks_.parts[0]) == 0 else blocks_._replace(parts=np.array([index + 1]))
              for index, blocks_ in enumerate(blocks)]
    with tempfile.TemporaryDirectory() as temporary:
        written_all = SqliteStore(Path(temporary) / "all.sqlite3")
        half = SqliteStore(Path(temporary) / "half.sqlite3")
        pending = PendingBlocks()
        try:
            for index, blocks_ in enumerate(blocks):
                written_all.write_blocks(blocks_)
                if index < split:
                    half.write_blocks(blocks_)
                else:
                    pending.add(blocks_)
            view = HistoryView(half.reader(), pending)
            for name in ("a", "b"):
                expected = written_all.read_cells(name, 60, PERIOD * 60 + 30, 60)
                got = view.read_cells(name, 60, PERIOD * 60 + 30, 60)
                for field in ("samples", "cpu_min", "cpu_max", "ram_min", "ram_max"):
                    assert getattr(got, field).tolist() == getattr(expected, field).tolist(), (name, field)
                assert np.allclose(got.cpu_sum, expected.cpu_sum)
            # once written (under the lock), a block is read from the database only
            for blocks_ in blocks[split:]:
                pending.written(blocks_, half.write_blocks)
            assert len(pending) == 0
        finally:
            written_all.close()
            half.close()
