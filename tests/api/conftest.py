"""Fixtures of the HTTP API tests (the helpers live in ``live_api.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from live_api import START, LiveApi

from tests.conftest import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """The fake clock every object of the app reads, at ``live_api.START``."""
    return FakeClock(START)


@pytest.fixture
def make_api(clock: FakeClock) -> Iterator[Callable[..., LiveApi]]:
    """Start the app over fresh objects: ``make_api(max_servers=..., batch_limit=..., with_history=...)``."""
    started: list[LiveApi] = []

    def start(max_servers: int = 10_000, batch_limit: int | None = None, with_history: bool = False) -> LiveApi:
        api = LiveApi(clock, max_servers=max_servers, batch_limit=batch_limit, with_history=with_history)
        started.append(api)
        api.start()
        return api

    yield start
    for api in started:
        api.close()


@pytest.fixture
def api(make_api: Callable[..., LiveApi]) -> LiveApi:
    """The app with default limits: 10,000 servers, an unbounded pending batch."""
    return make_api()


@pytest.fixture
def seeded_api(api: LiveApi) -> LiveApi:
    """The app holding some data, so that "changes nothing" is a real check.

    ``seed-01`` has an applied sample; ``seed-02`` has one still pending.
    """
    api.record("seed-01", cpu=10.0, ram=20.0)
    api.apply()
    api.record("seed-02", cpu=30.0, ram=40.0)
    return api
