"""A store's worker thread: runs jobs in order, off the event loop, and survives what the disk does.

A job that fails with an I/O error (disk full, a read-only or locked
database, a Redis node down) is retried, with a growing pause, until it succeeds or the worker
closes: jobs behind it wait, so they still run in the order they were given
(a checkpoint never lands before the history it depends on). Failures are
counted, the worker reports ``failing`` until a job succeeds again, and the
error is logged at most once a minute. The queue is bounded in bytes: a job
that does not fit is refused and counted, and the caller keeps serving.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

LOG = logging.getLogger("servertrack.store")
RETRY_FIRST_SECONDS = 0.5
RETRY_MOST_SECONDS = 5.0
LOG_EVERY_SECONDS = 60.0
# the disk's and SQLite's, and Redis' (a node down or unreachable, a timeout, a cluster re-sharding)
STORE_ERRORS: tuple[type[Exception], ...] = (OSError, sqlite3.Error, RedisError, RedisClusterException)


class StoreWorker:
    """One thread and its queue of jobs (callables); see the module's docstring."""

    def __init__(self, name: str, max_queued_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.max_queued_bytes = max_queued_bytes
        self.failures = 0
        self.refused = 0
        self.done = 0
        self.last_error = ""
        self.failing = False
        self._clock = clock
        self._queued_bytes = 0
        self._running = False  # a job taken from the queue is being attempted
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[Callable[[], Any], int, Future[Any]] | None] = queue.Queue()
        self._closing = threading.Event()
        self._logged_at = float("-inf")
        self._thread = threading.Thread(target=self._run, name=f"servertrack-{name}", daemon=True)
        self._thread.start()

    @property
    def queued_bytes(self) -> int:
        """Bytes of the jobs waiting (as their callers sized them)."""
        return self._queued_bytes

    def pending(self) -> int:
        """Jobs waiting or running."""
        return self._jobs.qsize() + self._running

    def submit(self, job: Callable[[], Any], size: int = 0) -> Future[Any] | None:
        """Queue ``job`` (holding ``size`` bytes of data); None, counted in ``refused``, when it does not fit."""
        future: Future[Any] = Future()
        with self._lock:
            if self._closing.is_set() or (size and self._queued_bytes + size > self.max_queued_bytes):
                self.refused += 1
                return None
            self._queued_bytes += size
        self._jobs.put((job, size, future))
        return future

    def close(self, timeout: float | None = None) -> bool:
        """Run what is queued, then stop; True if the thread finished within ``timeout``. Jobs that keep
        failing are given up once closing (their futures get the error)."""
        self._jobs.put(None)
        self._thread.join(timeout)
        self._closing.set()
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, size, future = item
            self._running = True
            try:
                self._attempt(job, future)
            finally:
                self._running = False
            with self._lock:
                self._queued_bytes -= size

    def _attempt(self, job: Callable[[], Any], future: Future[Any]) -> None:
        pause = RETRY_FIRST_SECONDS
        while True:
            try:
                result = job()
            except STORE_ERRORS as error:
                self._failed(error)
                if self._closing.wait(pause):
                    future.set_exception(error)
                    return
                pause = min(RETRY_MOST_SECONDS, pause * 2)
                continue
            except BaseException as error:  # a bug, not the disk: report it once, do not retry forever
                LOG.exception("store %s: a job failed", self.name)
                self.failures += 1
                future.set_exception(error)
                return
            self.failing = False
            self.done += 1
            future.set_result(result)
            return

    def _failed(self, error: BaseException) -> None:
        self.failures += 1
        self.failing = True
        self.last_error = f"{type(error).__name__}: {error}"
        now = self._clock()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            LOG.error("store %s: write failed, retrying (%d failures so far): %s", self.name, self.failures,
                      self.last_error)
