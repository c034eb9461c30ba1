"""A range read while the store cannot be read (a disk or Redis fault): a JSON 503, counted, and the next
read opens a new reader and answers again."""

from __future__ import annotations

import sqlite3
from typing import Any

from live_api import START, LiveApi, assert_json_error, put_stats, register

from servertrack.store import LoadHistory
from tests.conftest import FakeClock

DAY = 86_400.0


class FlakyReader:
    """A store reader whose reads fail while ``broken`` is set, as a disk or a dropped connection does."""

    opened = 0
    broken = True

    def __init__(self) -> None:
        FlakyReader.opened += 1

    def read_range(self, name: str, width: int, first_bucket: int, count: int) -> Any:
        if FlakyReader.broken:
            raise sqlite3.OperationalError("disk I/O error")
        return None  # nothing kept: the rings answer

    def read_snapshots(self, node: str, start: int, stop: int, limit: int) -> list[tuple[int, bytes]]:
        if FlakyReader.broken:
            raise ConnectionResetError("connection reset by peer")
        return []


def test_a_range_read_of_an_unreadable_store_is_a_503_and_the_next_one_answers() -> None:
    clock = FakeClock(START)
    api = LiveApi(clock, with_history=True)
    api.history = history = LoadHistory(api.aggregator, api.nodes, FlakyReader, {60: DAY, 3600: 30 * DAY}, clock)
    FlakyReader.opened, FlakyReader.broken = 0, True
    api.start()
    try:
        api.record("web-01", cpu=10.0, ram=20.0)
        api.apply()
        register(api, "node-a", ["10.0.0.5"])
        put_stats(api, "node-a")
        window = f"from={int(START - 3600)}&to={int(START)}"
        assert_json_error(api.get(f"/servers/web-01/loads?{window}"), 503, "store cannot be read", "disk I/O error")
        assert_json_error(api.get(f"/servers/web-01/summary?{window}"), 503, "try again")
        assert_json_error(api.get(f"/nodes/node-a/cpu?{window}"), 503, "ConnectionResetError")
        assert history.read_failures == 3
        assert api.get("/servers/web-01/loads").status == 200  # the windows need no store
        FlakyReader.broken = False
        reply = api.get(f"/servers/web-01/loads?{window}")
        assert reply.status == 200 and sum(bucket["samples"] for bucket in reply.json["buckets"]) == 1
        assert api.get(f"/nodes/node-a/cpu?{window}").status == 200
        assert FlakyReader.opened >= 2  # a failed reader is dropped, a new one opened
        assert history.read_failures == 3
    finally:
        api.close()
        history.close()
