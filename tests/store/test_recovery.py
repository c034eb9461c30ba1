"""Crash recovery, as a property: random samples, restarts (clean, or a crash that tears the log at a random
byte), clock jumps; afterwards the windows and range answers equal a naive model that keeps every sample,
except the samples of the batch whose log record the crash cut (the documented loss: what had not reached
the log when the process died). The same property holds with the history on Redis (a real server)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servertrack.collector.applier import BatchApplier
from servertrack.common.aggregator import Aggregator
from servertrack.common.batch import PendingBatch
from servertrack.common.buckets import to_fixed_point
from servertrack.common.inventory import AgentInventory
from servertrack.common.nodes import NodeRegistry
from servertrack.common.stats import IngestStats
from servertrack.store import make_store
from servertrack.store.batch_log import segment_numbers, segment_path
from servertrack.store.durable import DurableStore, Retention
from servertrack.store.history import LoadHistory
from tests.redis_servers import RedisServer

START = 1_800_000_000.0
NAMES = ["web-1", "web-2", "db"]


async def _nothing(now: float) -> None:
    return None


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Service:
    """The store-facing half of a monitor, in process: aggregator, registry, applier, store, history."""

    def __init__(self, directory: Path, clock: FakeClock, checkpoint_every: float,
                 keep_minutes: float = 7 * 86_400.0, keep_hours: float = 400 * 86_400.0,
                 store: str = "sqlite") -> None:
        retention = Retention(minutes=keep_minutes, hours=keep_hours, checkpoint_every=checkpoint_every)
        self.store: Any = DurableStore(directory, retention, clock) if store == "sqlite" else \
            make_store(store, str(directory), retention, clock)
        self.aggregator = Aggregator(16, clock=clock, closing=True)
        self.nodes = NodeRegistry(16, clock)
        self.batch = PendingBatch()
        self.applier = BatchApplier(self.batch, self.aggregator, AgentInventory(16), IngestStats(), clock=clock,
                                    nodes=self.nodes, store=self.store)
        self.store.open()
        self.store.recover(self.aggregator, self.nodes)
        self.history = LoadHistory(self.aggregator, self.nodes, self.store.open_reader,
                                   {60: keep_minutes, 3600: keep_hours}, clock)

    def settle(self) -> None:
        """Wait until the store's threads have done everything queued (what a crash then finds on disk)."""
        deadline = time.monotonic() + 20
        for worker in (self.store._store_worker, self.store._log_worker):
            assert worker is not None
            while worker.pending() and time.monotonic() < deadline:
                time.sleep(0.002)
        time.sleep(0.01)

    def crash_during(self, samples: list[tuple[str, float, float]], where: float) -> None:
        """Apply one more batch and die while its log record is written: the record is cut at byte
        ``where`` of it, and nothing after the log write happens (no history, no checkpoint), as a kill."""
        self.settle()
        log_directory = self.store.directory / "log"
        before = {number: segment_path(log_directory, number).stat().st_size for number in segment_numbers(log_directory)}
        store = self.store
        store.write_history = lambda blocks: None  # type: ignore[method-assign]
        store.after_apply = _nothing  # type: ignore[method-assign]
        for name, ts, cpu in samples:
            self.batch.add(name, ts, cpu, cpu)
        asyncio.run(self.applier.apply_pending())
        self.settle()
        self._stop_threads()
        numbers = segment_numbers(log_directory)
        newest = segment_path(log_directory, numbers[-1])
        start, end = before.get(numbers[-1], 0), newest.stat().st_size
        assert end > start, "the batch's record is in the newest segment"
        with open(newest, "r+b") as segment:
            segment.truncate(start + int((end - start) * where))

    def _stop_threads(self) -> None:
        for worker in (self.store._store_worker, self.store._log_worker):
            assert worker is not None
            worker.close(5)
        self.store._log_worker = self.store._store_worker = None
        self.store._release()
        self.history.close()

    def close(self) -> None:
        asyncio.run(self.store.close())
        self.history.close()


Model = dict[tuple[int, str, int], list[int]]  # (width, server, bucket) -> fixed-point cpu loads


def model_add(model: Model, name: str, ts: float, cpu: float) -> None:
    for width in (60, 3600):
        model[(width, name, int(ts // width))].append(int(to_fixed_point(np.array([cpu]))[0]))


samples_st = st.lists(st.tuples(st.sampled_from(NAMES), st.integers(-30, 5), st.integers(0, 10_000)),
                      min_size=1, max_size=8)
step_st = st.one_of(
    st.tuples(st.just("samples"), samples_st),
    st.tuples(st.just("advance"), st.sampled_from([1, 7, 59, 61, 600, 3599, 3601, 20_000, 90_000])),
    st.tuples(st.just("clean_restart"), st.just(0)),
    # the process dies while it writes the log record of one more batch: cut at a random byte of it
    st.tuples(st.just("crash"), st.tuples(samples_st, st.floats(0.0, 0.999))),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step_st, min_size=2, max_size=30), checkpoint_every=st.sampled_from([1.0, 30.0, 600.0]))
def test_windows_and_ranges_survive_restarts_and_torn_logs(steps: list[tuple[str, object]],
                                                          checkpoint_every: float) -> None:
    survive_restarts_and_torn_logs(steps, checkpoint_every, "sqlite")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step_st, min_size=2, max_size=30), checkpoint_every=st.sampled_from([1.0, 30.0, 600.0]))
def test_windows_and_ranges_survive_restarts_and_torn_logs_on_redis(steps: list[tuple[str, object]],
                                                                   checkpoint_every: float,
                                                                   redis_standalone: RedisServer) -> None:
    client = redis_standalone.client()
    try:
        client.flushall()  # each example starts from an empty Redis, as from an empty data dir
    finally:
        client.close()
    survive_restarts_and_torn_logs(steps, checkpoint_every, redis_standalone.url)


def survive_restarts_and_torn_logs(steps: list[tuple[str, object]], checkpoint_every: float, store: str) -> None:
    """Run ``steps`` on a store (``sqlite`` or a Redis URL), then check every answer against the model."""
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        clock = FakeClock(START)
        model: Model = defaultdict(list)
        service = Service(directory, clock, checkpoint_every, store=store)
        try:
            for kind, value in steps:
                if kind == "samples":
                    assert isinstance(value, list)
                    samples = [(name, clock.now + offset, cpu / 100.0) for name, offset, cpu in value]
                    for name, ts, cpu in samples:
                        service.batch.add(name, ts, cpu, cpu)
                    asyncio.run(service.applier.apply_pending())
                    for name, ts, cpu in samples:
                        model_add(model, name, ts, cpu)
                    clock.now += 1
                elif kind == "advance":
                    assert isinstance(value, int)
                    clock.now += value
                    asyncio.run(service.applier.apply_pending())  # the periodic duties run on time
                elif kind == "clean_restart":
                    service.close()
                    service = Service(directory, clock, checkpoint_every, store=store)
                else:
                    assert isinstance(value, tuple)
                    drawn, where = value
                    service.crash_during([(name, clock.now + offset, cpu / 100.0) for name, offset, cpu in drawn],
                                         where)
                    clock.now += 1
                    service = Service(directory, clock, checkpoint_every, store=store)
            asyncio.run(service.applier.apply_pending())
            service.settle()
            # Redis expires keys in its own (real) time: the fake clock's jumps do not age them
            check_answers(service, model, clock.now, expires_by_clock=store == "sqlite")
        finally:
            service.close()


def check_answers(service: Service, model: Model, now: float, expires_by_clock: bool = True) -> None:
    keep = {60: 7 * 86_400.0, 3600: 400 * 86_400.0}
    for (width, name, bucket), loads in model.items():
        answer = asyncio.run(service.history.loads(name, width, bucket, 1))
        period = width * (60 if width == 60 else 24)
        start = bucket * width
        purged_before = int((now - 60 - keep[width]) // period) * period  # the last purge ran within 60 s
        if start < purged_before:  # retention: gone, and the answer says where history begins
            assert not expires_by_clock or answer is None or (int(answer.window.samples[0]) == 0 and answer.kept_from is not None)
            continue
        if answer is not None and answer.kept_from is not None and start < answer.kept_from:
            continue  # at the boundary of a purge that may not have run for this very second
        if not loads:
            assert answer is None or int(answer.window.samples[0]) == 0
            continue
        assert answer is not None, (width, name, bucket)
        window = answer.window
        got = (int(window.samples[0]), round(float(window.cpu_sum[0]) * 100_000),
               round(float(window.cpu_min[0]) * 100_000), round(float(window.cpu_max[0]) * 100_000))
        assert got == (len(loads), sum(loads), min(loads), max(loads)), (width, name, bucket)
    # the live windows agree with the model too
    for name in NAMES:
        windows = service.aggregator.windows(name)
        if windows is None:
            continue
        for width, window in ((60, windows.minutes), (3600, windows.hours)):
            for offset, count in enumerate(window.samples.tolist()):
                assert count == len(model.get((width, name, window.first_bucket + offset), [])), (width, name)
