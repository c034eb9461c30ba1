"""The cycle collector runs in full once per period, between a thaw and a freeze."""

from __future__ import annotations

import asyncio
import gc

import pytest

from servertrack.collection import collect_and_freeze, keep_collected


class RecordingCollector:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")

    def collect(self) -> int:
        self.calls.append("collect")
        return 0

    def freeze(self) -> None:
        self.calls.append("freeze")


def test_a_full_collection_comes_between_a_thaw_and_a_freeze() -> None:
    collector = RecordingCollector()
    assert collect_and_freeze(collector) >= 0
    assert collector.calls == ["unfreeze", "collect", "freeze"]


def test_the_keeper_repeats_until_cancelled() -> None:
    collector = RecordingCollector()

    async def run() -> None:
        task = asyncio.create_task(keep_collected(0.001, collector))
        while collector.calls.count("freeze") < 3:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert collector.calls[:6] == ["unfreeze", "collect", "freeze"] * 2


def test_frozen_cycles_are_reclaimed_by_the_next_period() -> None:
    class Node:
        partner: object = None

    def nodes() -> int:
        return sum(1 for obj in gc.get_objects() if isinstance(obj, Node))

    try:
        first, second = Node(), Node()
        first.partner, second.partner = second, first
        collect_and_freeze()
        assert nodes() == 0  # frozen: out of the collector's sight
        del first, second  # a cycle among frozen objects: only the next period's full collection frees it
        gc.collect()
        gc.unfreeze()
        assert nodes() == 2  # a collection while frozen did not touch them
        gc.freeze()
        collect_and_freeze()
        gc.unfreeze()
        assert nodes() == 0
    finally:
        gc.unfreeze()
