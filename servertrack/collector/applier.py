"""The once-a-second batch apply: moves the pending batch into the aggregator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

from ..common.aggregator import Aggregator
from ..common.batch import PendingBatch
from ..common.buckets import to_fixed_point
from ..common.inventory import AgentInventory
from ..common.nodes import NodeRegistry
from ..common.stats import IngestStats
from ..store.interface import Store
from ..store.memory import MemoryStore
from ..store.records import LoggedBatch
from .turns import give_way, nothing_waits

APPLY_INTERVAL_SECONDS = 1.0
# Samples applied between two turns of the event loop: at most this many (~3 ms
# of known servers), fewer while chunks take longer than CHUNK_SECONDS (servers
# never seen before cost their rows' first touch: up to ~7 µs a sample).
APPLY_CHUNK = 5_000
FIRST_CHUNK = 1_000
MIN_CHUNK = 250
# What a request may wait behind an apply chunk: with 2 ms (and ingest turns of 2 ms) the p99 of a GET
# under 50,000 samples/s was ~10 ms; between chunks the applier also gives way (``turns.give_way``).
CHUNK_SECONDS = 0.001
# While no request has been seen waiting for HTTP_QUIET_SECONDS, chunks grow to this time and size: each
# chunk has a fixed cost (~0.3 ms of numpy calls and its log record), so a fleet's second applied in
# 1 ms chunks takes several times the CPU of one call, and alternating with ingest turns its wall time
# grows past what a sample may wait to be visible (1.5 s at 200,000 samples/s). A request that comes
# after a quiet spell waits behind one such chunk at most; while requests keep coming (a client waits a
# few hundred µs between two), chunks stay small.
QUIET_CHUNK_SECONDS = 0.005
QUIET_APPLY_CHUNK = 25_000
HTTP_QUIET_SECONDS = 0.01
EVICTION_INTERVAL_SECONDS = 60.0


class BatchApplier:
    """Applies everything queued, in chunks that keep the event loop responsive."""

    def __init__(
        self,
        batch: PendingBatch,
        aggregator: Aggregator,
        inventory: AgentInventory,
        stats: IngestStats,
        clock: Callable[[], float] = time.time,
        interval: float = APPLY_INTERVAL_SECONDS,
        nodes: NodeRegistry | None = None,
        store: Store | None = None,
        http_waiting: Callable[[], bool] = nothing_waits,
        timer: Callable[[], float] = time.monotonic,
        work_timer: Callable[[], float] = time.thread_time,
        on_applied: Callable[[float], None] | None = None,
    ) -> None:
        """``store`` keeps each chunk (before it is applied) and the blocks it closes; default: nothing kept.
        ``http_waiting`` says whether requests wait (``HttpPressure.waiting``): between chunks they go first.
        Chunks are sized by ``work_timer`` (this thread's CPU seconds): on a busy machine, time the process
        is preempted would otherwise shrink them to where their fixed cost dominates.
        ``on_applied`` is called with the seconds each non-empty apply spent (``/metrics``' histogram)."""
        self._batch = batch
        self._aggregator = aggregator
        self._inventory = inventory
        self._stats = stats
        self._clock = clock
        self._interval = interval
        self._nodes = nodes
        self._store: Store = store if store is not None else MemoryStore()
        self._next_eviction = clock() + EVICTION_INTERVAL_SECONDS
        self._http_waiting = http_waiting
        self._timer = timer
        self._work_timer = work_timer
        self._http_seen = -HTTP_QUIET_SECONDS  # when, by ``timer``, a request was last seen waiting
        self._on_applied = on_applied

    async def run(self) -> None:
        """Apply the batch every ``interval`` seconds, on absolute deadlines, until cancelled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self._interval
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if loop.time() - deadline > self._interval:  # fell behind: do not try to catch up
                deadline = loop.time()
            await self.apply_pending(yield_between_chunks=True)

    def _chunk_limits(self) -> tuple[float, int]:
        """The time a chunk may take and the most samples it may hold: small while requests were seen
        waiting lately, larger once HTTP has been quiet for ``HTTP_QUIET_SECONDS``."""
        if self._http_waiting():
            self._http_seen = self._timer()
        if self._timer() - self._http_seen < HTTP_QUIET_SECONDS:
            return CHUNK_SECONDS, APPLY_CHUNK
        return QUIET_CHUNK_SECONDS, QUIET_APPLY_CHUNK

    async def apply_pending(self, yield_between_chunks: bool = False) -> int:
        """Apply the whole pending batch now; return how many samples were stored.

        Cancelled between two chunks (the service stopping), it applies the rest of the batch it took
        at once, then lets the cancellation through: what was taken is never dropped."""
        names, ts, cpu, ram = self._batch.take()
        cancelled = False
        applied = refused = 0
        busy = 0.0  # time spent applying, not waiting for other tasks between chunks
        start, chunk = 0, FIRST_CHUNK
        store, aggregator, work_timer = self._store, self._aggregator, self._work_timer
        now = self._clock()
        chunk_seconds, largest = self._chunk_limits()
        while start < len(names):
            stop = start + chunk
            started, work_started = time.perf_counter(), work_timer()
            chunk_id = store.new_chunk_id()
            chunk_names, chunk_ts, chunk_cpu, chunk_ram = names[start:stop], ts[start:stop], cpu[start:stop], ram[start:stop]
            if store.logs_chunks:
                store.log_chunk(LoggedBatch(chunk_id, now, chunk_names, np.floor(chunk_ts).astype(np.int64),
                                            to_fixed_point(chunk_cpu), to_fixed_point(chunk_ram)))
            result = aggregator.apply(chunk_names, chunk_ts, chunk_cpu, chunk_ram, chunk_id=chunk_id, now=now)
            closed = aggregator.take_closed()
            if closed:
                store.write_history(closed)
            busy += time.perf_counter() - started
            spent = work_timer() - work_started
            applied += result.applied
            refused += result.refused
            start = stop
            # the next chunk: as large as fits the time of a turn, judged by this one
            if spent > chunk_seconds:
                chunk = max(MIN_CHUNK, chunk // 2)
            elif spent < chunk_seconds / 2:
                chunk = min(largest, chunk * 2)
            if yield_between_chunks and start < len(names):
                try:
                    await asyncio.sleep(0)
                    if self._http_waiting():
                        self._http_seen = self._timer()
                        chunk_seconds, largest = CHUNK_SECONDS, APPLY_CHUNK
                        chunk = min(chunk, APPLY_CHUNK)
                        await give_way(self._http_waiting, self._timer)
                except asyncio.CancelledError:
                    cancelled, yield_between_chunks = True, False  # the rest now, in one go
                    chunk = QUIET_APPLY_CHUNK
        stats = self._stats
        stats.applied["sample"] += applied
        if refused:
            stats.dropped["sample"]["server_limit"] += refused
        if self._clock() >= self._next_eviction:
            self._next_eviction = self._clock() + EVICTION_INTERVAL_SECONDS
            self._inventory.forget(self._aggregator.evict_silent())
            closed = self._aggregator.take_closed()
            if closed:
                store.write_history(closed)
            if self._nodes is not None:
                self._nodes.forget_silent()
        stats.last_batch_size = len(names)
        stats.last_batch_seconds = busy
        if names and self._on_applied is not None:
            self._on_applied(busy)
        if cancelled:
            raise asyncio.CancelledError  # the stop's own apply_pending and close do the store's duties
        await store.after_apply(now)
        return applied
