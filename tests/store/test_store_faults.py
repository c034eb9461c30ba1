"""Store failures while ingesting, in process with real threads and a real loop: the batch log's writes fail
with ENOSPC and the SQLite writer with "database or disk is full" for a while, then work again.

Meanwhile ingest goes on (every tick's samples are applied to memory and readable), the failures are
counted (``failing``, per worker ``failures``) and logged at most once a minute per worker, the queues stay
within their byte caps (what does not fit is ``refused``, counted); once the disk works again the store
recovers by itself (``ok``, the queues drain), and a restart afterwards has every sample applied (the
checkpoints after the fault carry what the log refused)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from servertrack.collector.applier import BatchApplier
from servertrack.common.aggregator import Aggregator
from servertrack.common.batch import PendingBatch
from servertrack.common.inventory import AgentInventory
from servertrack.common.nodes import NodeRegistry
from servertrack.common.stats import IngestStats
from servertrack.store import durable, worker
from servertrack.store.durable import DurableStore, Retention

NAMES = [f"fault-{index:02d}.example" for index in range(20)]
QUEUE_CAP = 8 * 1024  # bytes the log's queue may hold: small, so the fault fills it (a tick logs ~1.6 KB)
HISTORY_CAP = 4 * 1024 * 1024  # the history queue's: a checkpoint's job (the rings' changed stripes) fits


class Disk:
    """The thin I/O edge, broken on demand: the log's ``os.write`` (ENOSPC) and the SQLite writer's
    transactions ("database or disk is full")."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: DurableStore) -> None:
        self.full = False
        self.refusals = 0
        real_write = os.write

        def write(fd: int, data: Any) -> int:
            if self.full and fd > 2:
                self.refusals += 1
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", write)
        sqlite = store._history
        for method in ("write_blocks", "save_nodes", "write_snapshots"):
            monkeypatch.setattr(sqlite, method, self._guarded(getattr(sqlite, method)))

    def _guarded(self, method: Any) -> Any:
        def guarded(*args: Any) -> Any:
            if self.full:
                self.refusals += 1
                raise sqlite3.OperationalError("database or disk is full")
            return method(*args)
        return guarded


class Monitor:
    """The store-facing half of a service: aggregator, registry, applier on a loop, the durable store."""

    def __init__(self, directory: Path) -> None:
        self.store = DurableStore(directory, Retention(checkpoint_every=0.3))
        self.aggregator = Aggregator(64, closing=True)
        self.nodes = NodeRegistry(64)
        self.batch = PendingBatch()
        self.applier = BatchApplier(self.batch, self.aggregator, AgentInventory(64), IngestStats(), interval=0.1,
                                    nodes=self.nodes, store=self.store)
        self.store.open()
        self.store.recover(self.aggregator, self.nodes)
        self.sent = 0

    def held(self) -> int:
        """Samples the minute windows hold, over every server."""
        total = 0
        for name in NAMES:
            windows = self.aggregator.windows(name)
            total += 0 if windows is None else int(windows.minutes.samples.sum())
        return total

    async def ingest_for(self, seconds: float) -> None:
        """One sample per server every 0.05 s, for ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            now = time.time()
            self.batch.extend(NAMES, [now] * len(NAMES), [12.5] * len(NAMES), [50.0] * len(NAMES))
            self.sent += len(NAMES)
            await asyncio.sleep(0.05)


def health(monitor: Monitor) -> dict[str, Any]:
    return monitor.store.health()


async def until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {what}"
        await asyncio.sleep(0.02)


def test_a_failing_disk_keeps_ingest_going_is_counted_bounded_and_recovers_by_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(durable, "LOG_QUEUE_BYTES", QUEUE_CAP)
    monkeypatch.setattr(durable, "STORE_QUEUE_BYTES", HISTORY_CAP)
    monkeypatch.setattr(worker, "RETRY_MOST_SECONDS", 0.2)
    monitor = Monitor(tmp_path)
    disk = Disk(monkeypatch, monitor.store)
    seen_queued: list[int] = []

    async def scenario() -> None:
        applier = asyncio.create_task(monitor.applier.run())
        await monitor.ingest_for(0.5)
        await until(lambda: monitor.held() == monitor.sent, 5, "samples applied")
        assert health(monitor)["store"] == "ok"

        disk.full = True
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # the disk is full: every tick is still applied to memory
            before = monitor.sent
            await monitor.ingest_for(0.25)
            await until(lambda: monitor.held() >= before, 2, "samples applied while the disk is full")
            body = health(monitor)
            seen_queued.append(body["log"]["queued_bytes"])
            assert body["history"]["queued_bytes"] <= HISTORY_CAP
        await until(lambda: monitor.held() == monitor.sent, 2, "every sample applied while the disk is full")
        body = health(monitor)
        assert body["store"] == "failing" and disk.refusals > 0
        assert body["log"]["failures"] > 0 and "No space left" in body["log"]["last_error"]
        assert body["log"]["refused"] > 0  # the queue filled up: refused, counted, not grown

        disk.full = False
        await until(lambda: health(monitor)["store"] == "ok", 5, "the store to recover by itself")
        await monitor.ingest_for(0.5)
        await until(lambda: monitor.held() == monitor.sent
                    and health(monitor)["log"]["queued_jobs"] == health(monitor)["history"]["queued_jobs"] == 0,
                    5, "the queues to drain")
        checkpoints = monitor.store.checkpoints
        await until(lambda: monitor.store.checkpoints > checkpoints, 5, "a checkpoint after the fault")
        applier.cancel()
        with pytest.raises(asyncio.CancelledError):
            await applier
        await monitor.applier.apply_pending()
        await monitor.store.close()

    with caplog.at_level(logging.ERROR, logger="servertrack.store"):
        asyncio.run(scenario())
    assert 0 < max(seen_queued) <= QUEUE_CAP
    assert caplog.text.count("write failed, retrying") <= 2  # once a minute at most, per worker
    sent = monitor.sent
    restarted = Monitor(tmp_path)
    try:
        assert restarted.held() == sent  # nothing applied is lost, not even what the log refused
    finally:
        asyncio.run(restarted.store.close())


def test_a_checkpoint_whose_log_rotation_was_late_counts_nothing_twice_after_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(durable, "ROTATE_WAIT_SECONDS", 0.05)
    monitor = Monitor(tmp_path)
    log = monitor.store._log
    assert log is not None
    release = threading.Event()
    real_rotate = log.rotate

    def slow_rotate() -> int:
        release.wait(10)  # the log thread is behind: the checkpoint cannot copy the rings yet
        return real_rotate()

    monkeypatch.setattr(log, "rotate", slow_rotate)

    async def apply_tick() -> None:
        now = time.time()
        monitor.batch.extend(NAMES, [now] * len(NAMES), [12.5] * len(NAMES), [50.0] * len(NAMES))
        monitor.sent += len(NAMES)
        await monitor.applier.apply_pending()

    async def scenario() -> None:
        await apply_tick()
        await asyncio.sleep(0.35)
        started = time.monotonic()
        await apply_tick()  # a checkpoint is due: its rotation waits, the apply does not
        assert time.monotonic() - started < 1 and monitor.store._rotating is not None
        for _ in range(3):
            await apply_tick()  # logged after the rotation, applied before the rings are copied
        release.set()
        await until(lambda: monitor.store._rotating is not None and monitor.store._rotating.done(), 5, "the rotation")
        await apply_tick()  # the checkpoint is finished now, with the chunks above in it
        await until(lambda: monitor.store.checkpoints == 1, 5, "the checkpoint written")

    asyncio.run(scenario())
    assert monitor.held() == monitor.sent
    for store_worker in (monitor.store._log_worker, monitor.store._store_worker):
        assert store_worker is not None
        store_worker.close(5)  # everything queued is on disk: then the process dies (no last checkpoint)
    monitor.store._release()
    restarted = Monitor(tmp_path)
    try:
        assert restarted.store.recovery.checkpoint_rows == len(NAMES)
        assert restarted.held() == monitor.sent  # once each: the chunks in the checkpoint are not replayed
    finally:
        asyncio.run(restarted.store.close())
