"""The cycle collector runs in full once per period, between a thaw and a freeze."""

from __future__ import annotations

import asyncio
import gc

import pytest

from servertrack.collection import FreezeAfterFull, collect_and_freeze, keep_collected


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


class CallbackCollector(RecordingCollector):
    """A collector that, like ``gc``, takes ``callbacks``."""

    def __init__(self) -> None:
        super().__init__()
        self.callbacks: list[object] = []


def test_only_the_end_of_a_full_collection_freezes() -> None:
    collector = RecordingCollector()
    hook = FreezeAfterFull(collector)
    for phase in ("start", "stop"):
        for generation in (0, 1):
            hook(phase, {"generation": generation, "collected": 0, "uncollectable": 0})
    hook("start", {"generation": 2, "collected": 0, "uncollectable": 0})
    assert collector.calls == []
    hook("stop", {"generation": 2, "collected": 5, "uncollectable": 0})
    assert collector.calls == ["freeze"]
    assert hook.freezes == 1


def test_the_keeper_hooks_full_collections_while_it_runs() -> None:
    collector = CallbackCollector()

    async def run() -> None:
        task = asyncio.create_task(keep_collected(3600.0, collector))
        await asyncio.sleep(0)
        assert len(collector.callbacks) == 1 and isinstance(collector.callbacks[0], FreezeAfterFull)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert collector.callbacks == []
    assert collector.calls == []  # nothing collected before the first period


def test_what_a_full_collection_leaves_is_frozen_while_the_keeper_runs() -> None:
    class Record:
        pass

    def tracked() -> int:
        return sum(1 for obj in gc.get_objects() if isinstance(obj, Record))

    async def run() -> None:
        task = asyncio.create_task(keep_collected(3600.0))
        await asyncio.sleep(0)
        try:
            records = [Record() for _ in range(100)]  # servers that arrived after start
            assert tracked() == 100
            frozen = gc.get_freeze_count()
            gc.collect()  # a full collection, as the collector starts one by itself
            assert tracked() == 0 and gc.get_freeze_count() >= frozen + 100
            gc.collect(0)  # a young collection does not freeze what arrives next
            more = [Record() for _ in range(10)]
            gc.collect(1)
            assert tracked() == 10
            del records, more
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    try:
        asyncio.run(run())
        assert FreezeAfterFull not in {type(callback) for callback in gc.callbacks}
    finally:
        gc.unfreeze()
