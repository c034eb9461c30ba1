"""Starting a durable store on what a directory holds: newer formats and damage are refused with one clear
error and leave the directory unlocked; a fresh directory starts empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from servertrack.common.aggregator import Aggregator
from servertrack.common.nodes import NodeRegistry
from servertrack.store.batch_log import SEGMENT_HEADER, segment_path
from servertrack.store.durable import DurableStore, StoreUnavailable
from tests.store.test_recovery import FakeClock, Service

START = 1_800_000_000.0


def recover(directory: Path) -> DurableStore:
    store = DurableStore(directory, clock=FakeClock(START))
    store.open()
    store.recover(Aggregator(8, closing=True), NodeRegistry(8))
    return store


def test_a_log_segment_of_a_newer_format_is_refused_and_the_directory_unlocked(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir(parents=True)
    newer = SEGMENT_HEADER[:-2] + b"\xff\x7f"
    segment_path(tmp_path / "log", 7).write_bytes(newer + b"\0" * 16)
    with pytest.raises(StoreUnavailable, match="newer|version"):
        recover(tmp_path)
    segment_path(tmp_path / "log", 7).unlink()
    store = recover(tmp_path)  # the lock was released: the same process may open it again
    store._release()


def test_a_damaged_checkpoint_is_refused(tmp_path: Path) -> None:
    clock = FakeClock(START)
    service = Service(tmp_path, clock, 1.0)
    service.batch.add("a", START, 1.0, 2.0)
    import asyncio

    asyncio.run(service.applier.apply_pending())
    service.close()  # writes a last checkpoint
    redo = tmp_path / "checkpoint" / "checkpoint.redo"
    data = bytearray(redo.read_bytes())
    data[len(data) // 2] ^= 0xFF
    redo.write_bytes(bytes(data))
    with pytest.raises(StoreUnavailable, match="checksum"):
        recover(tmp_path)
