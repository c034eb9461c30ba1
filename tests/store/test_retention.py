"""Retention, with an injected clock: history older than ``--keep-*`` goes, and the store's file stops growing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from tests.store.test_recovery import FakeClock, Service

DAY = 86_400.0
START = 1_800_000_000.0 - 1_800_000_000.0 % DAY  # midnight UTC
SERVERS = [f"kept-{index:02d}" for index in range(20)]


def one_day(service: Service, clock: FakeClock) -> None:
    """A day of samples: every server, one per minute, applied hour by hour (late by up to an hour)."""
    for _ in range(24):
        for name in SERVERS:
            for minute in range(60):
                service.batch.add(name, clock.now + minute * 60.0, 10.0 + minute % 7, 50.0)
        clock.now += 3600
        asyncio.run(service.applier.apply_pending())


def stored_periods(service: Service) -> dict[str, list[int]]:
    sqlite = service.store._history
    return {table: [row[0] for row in sqlite._connection.execute(
        f"SELECT DISTINCT period FROM {table} ORDER BY period")]
        for table in ("minute_blocks", "hour_blocks")}


def test_history_older_than_kept_is_purged_and_the_file_stops_growing(tmp_path: Path) -> None:
    clock = FakeClock(START)
    service = Service(tmp_path / "data", clock, 3600.0, keep_minutes=2 * DAY, keep_hours=4 * DAY)
    sizes = []
    try:
        for _ in range(12):
            one_day(service, clock)
            service.settle()
            sizes.append(service.store._history.size_bytes())
        periods = stored_periods(service)
        now = clock.now
        assert min(periods["minute_blocks"]) >= int((now - 2 * DAY) // 3600) - 1
        assert min(periods["hour_blocks"]) >= int((now - 4 * DAY) // DAY) - 1
        # what is kept still answers, and what is gone says where history begins
        recent = asyncio.run(service.history.loads(SERVERS[0], 60, int((now - DAY) // 60), 60))
        assert recent is not None and int(recent.window.samples.sum()) == 60 and recent.kept_from is None
        old = asyncio.run(service.history.loads(SERVERS[0], 3600, int((now - 8 * DAY) // 3600), 24))
        assert old is not None and int(old.window.samples.sum()) == 0 and old.kept_from is not None
        assert old.kept_from >= now - 4 * DAY - DAY
    finally:
        service.close()
    # once retention holds steady (after 4 days), the file stops growing: free pages are reused
    steady = sizes[5:]
    assert max(steady) <= 1.15 * steady[0], sizes
    assert np.all(np.diff(sizes[:4]) > 0)
