"""The store interface's contract, for every backend that keeps data (SQLite, Redis, Redis Cluster: the
same tests for each of ``BACKENDS``): what a service applies and registers comes back after a clean restart,
and reads through ``open_reader`` see it. Only the ``Store`` protocol is used here. The Redis backends run on
real servers (``tests.redis_servers``), emptied before each test."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from servertrack.collector.applier import BatchApplier
from servertrack.common.aggregator import Aggregator
from servertrack.common.batch import PendingBatch
from servertrack.common.inventory import AgentInventory
from servertrack.common.nodes import NodeRegistry
from servertrack.common.stats import IngestStats
from servertrack.store import DurableStore, LoadHistory, Retention, Store
from servertrack.store import make_store as store_for
from tests.node_fixtures import HELLO_INFO, stats_body
from tests.store.test_recovery import FakeClock

START = 1_800_000_000.0 - 1_800_000_000.0 % 86_400 + 86_400 - 5400  # 90 minutes before midnight UTC

StoreFactory = Callable[[Path, Retention, FakeClock], Store]


def redis_backend(url_fixture: str) -> Callable[[pytest.FixtureRequest], StoreFactory]:
    """A backend on the Redis server (or cluster) that fixture ``url_fixture`` names (local state in the
    test's directory)."""
    def factory(request: pytest.FixtureRequest) -> StoreFactory:
        url = request.getfixturevalue(url_fixture)
        return lambda directory, retention, clock: store_for(url, str(directory), retention, clock)
    return factory


# name (the store's ``kind``) -> the backend, given the test's request (for the servers it needs)
BACKENDS: dict[str, Callable[[pytest.FixtureRequest], StoreFactory]] = {
    "sqlite": lambda request: lambda directory, retention, clock: DurableStore(directory, retention, clock),
    "redis": redis_backend("redis_url"),
    "redis+cluster": redis_backend("redis_cluster_url"),
}


class Monitor:
    """What a service wires around its store, in process."""

    def __init__(self, make_store: StoreFactory, directory: Path, clock: FakeClock) -> None:
        retention = Retention(snapshot_every=60.0, checkpoint_every=600.0)
        self.store = make_store(directory, retention, clock)
        self.aggregator = Aggregator(32, clock=clock, closing=True)
        self.nodes = NodeRegistry(32, clock)
        self.batch = PendingBatch()
        self.inventory = AgentInventory(32)
        self.applier = BatchApplier(self.batch, self.aggregator, self.inventory, IngestStats(), clock=clock,
                                    nodes=self.nodes, store=self.store)
        self.store.open()
        self.store.recover(self.aggregator, self.nodes, self.inventory)
        self.history = LoadHistory(self.aggregator, self.nodes, self.store.open_reader,
                                   {60: retention.minutes, 3600: retention.hours}, clock)

    def apply(self) -> None:
        asyncio.run(self.applier.apply_pending())

    def close(self) -> None:
        asyncio.run(self.store.close())
        self.history.close()


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    return BACKENDS[request.param](request)


def windows_of(monitor: Monitor, name: str) -> tuple[list[int], list[int], list[int]]:
    windows = monitor.aggregator.windows(name)
    assert windows is not None
    return (windows.seconds.samples.tolist(), windows.minutes.samples.tolist(), windows.hours.samples.tolist())


def test_a_fresh_store_starts_empty_and_healthy(make_store: StoreFactory, tmp_path: Path) -> None:
    monitor = Monitor(make_store, tmp_path, FakeClock(START))
    try:
        assert len(monitor.aggregator) == 0 and len(monitor.nodes) == 0
        assert monitor.store.health()["store"] == "ok"
        assert monitor.store.logs_chunks and monitor.store.kind in BACKENDS
        first, second = monitor.store.new_chunk_id(), monitor.store.new_chunk_id()
        assert second > first >= 1
    finally:
        monitor.close()


def test_windows_ranges_nodes_pauses_and_snapshots_survive_a_clean_restart(make_store: StoreFactory,
                                                                             tmp_path: Path) -> None:
    clock = FakeClock(START)
    monitor = Monitor(make_store, tmp_path, clock)
    try:
        monitor.nodes.hello("web-1", ["10.0.0.1"], dict(HELLO_INFO), paused=False)
        monitor.nodes.set_paused("web-1", True)
        for step in range(180):  # three hours, across midnight: hours and a day close
            for name in ("web-1", "web-2"):
                monitor.batch.add(name, clock.now, float(step % 100), 50.0)
            if step % 30 == 0:
                monitor.nodes.record_stats("web-1", stats_body(), clock.now, clock.now)
            monitor.apply()
            clock.now += 60
        before = {name: windows_of(monitor, name) for name in ("web-1", "web-2")}
        first_minute = int(START // 60)
        ranged = asyncio.run(monitor.history.loads("web-1", 60, first_minute, 180))
        chunk_before = monitor.store.new_chunk_id()
    finally:
        monitor.close()
    assert ranged is not None and ranged.window.samples.tolist() == [1] * 180
    again = Monitor(make_store, tmp_path, clock)
    try:
        assert {name: windows_of(again, name) for name in ("web-1", "web-2")} == before
        after = asyncio.run(again.history.loads("web-1", 60, first_minute, 180))
        assert after is not None
        for field in ("samples", "cpu_sum", "cpu_min", "cpu_max", "ram_sum"):
            assert np.allclose(getattr(after.window, field), getattr(ranged.window, field)), field
        node = again.nodes.get("web-1")
        assert node is not None and node.paused and node.ips == ["10.0.0.1"] and node.info == HELLO_INFO
        kept = asyncio.run(again.history.node_sections("web-1", int(START), int(clock.now), 100))
        assert len(kept) >= 3 and all(sections["cpu"] == stats_body()["cpu"] for _, sections in kept)
        assert again.store.new_chunk_id() > chunk_before  # ids go on: no key written twice for two chunks
    finally:
        again.close()
